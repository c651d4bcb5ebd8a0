//! The error type of the store.

use std::io;

/// Errors of the data directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O operation on a named file failed.
    #[error("{op} {file}: {source}")]
    Io {
        /// What was being done ("reading", "writing", "syncing", ...).
        op: &'static str,
        /// File name inside the data directory.
        file: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The folder is not a stele data directory.
    #[error("{0} is not a stele data directory (run `stele init` first)")]
    NotADataDir(String),
    /// `init` was asked to create a data directory where one exists.
    #[error("{0} already holds a stele data directory")]
    AlreadyInitialized(String),
    /// Another process is the writer of this data directory.
    #[error(
        "the data directory is locked by another stele process (a running `stele serve`?); send events to the server instead"
    )]
    Locked,
    /// A file was written by a newer release.
    #[error("{file} has format version {found}, but this release reads versions up to {supported}; upgrade stele")]
    UnsupportedVersion {
        /// File name.
        file: String,
        /// Version found in the file header.
        found: u16,
        /// Newest version this release reads.
        supported: u16,
    },
    /// Stored data is damaged or was tampered with; the message names where.
    #[error("damaged or tampered data: {0}")]
    Corrupt(String),
    /// A signed checkpoint covers entries that are no longer intact. Recovery never
    /// cuts below a signed checkpoint: this is damage or tampering.
    #[error(
        "the newest signed checkpoint covers {checkpoint_size} entries but only {intact_size} are intact: damage or tampering (first bad entry {intact_size}: {reason})"
    )]
    CheckpointBeyondData {
        /// Tree size of the newest checkpoint.
        checkpoint_size: u64,
        /// Entries found intact.
        intact_size: u64,
        /// Why entry `intact_size` is not intact.
        reason: String,
    },
    /// An earlier fsync failed; nothing more is acknowledged until the log is reopened
    /// and recovered (the failed write is never trusted).
    #[error("the log stopped accepting writes after a failed fsync ({0}); restart to recover")]
    Poisoned(String),
    /// The disk has no room for a commit: reserving its bytes failed before anything
    /// was written. The log stays usable; the same append succeeds once space returns.
    #[error("no space left on device: reserving {bytes} bytes in {file} failed ({source}); nothing was written")]
    NoSpace {
        /// The file whose reservation failed.
        file: String,
        /// Bytes asked for.
        bytes: u64,
        /// The I/O error (`ErrorKind::StorageFull`).
        #[source]
        source: io::Error,
    },
    /// An entry is larger than the configured limit.
    #[error("entry of {size} bytes exceeds the limit of {limit} bytes")]
    EntryTooLarge {
        /// Entry size in bytes.
        size: usize,
        /// Limit in bytes.
        limit: usize,
    },
    /// A stream name is not acceptable.
    #[error(
        "invalid stream name {0:?}: use 1-128 characters from [A-Za-z0-9._/-], not starting with '_stele/' (reserved)"
    )]
    InvalidStreamName(String),
    /// An index at or beyond the tree size was asked for.
    #[error("entry {index} does not exist (tree size {tree_size})")]
    NoSuchEntry {
        /// Requested index.
        index: u64,
        /// Current tree size.
        tree_size: u64,
    },
    /// The entry's payload was removed by retention; its leaf and every proof remain.
    #[error("entry {index}: payload deleted by retention (segment {segment}; deletion record at entry {record})")]
    Deleted {
        /// The entry.
        index: u64,
        /// The removed segment that held its payload.
        segment: u32,
        /// Index of the deletion record.
        record: u64,
    },
    /// A segment cannot be deleted now (still written to, or already deleted).
    #[error("segment {segno}: {reason}")]
    SegmentNotDeletable {
        /// The segment.
        segno: u32,
        /// Why.
        reason: String,
    },
    /// A key file or signature problem.
    #[error("signing key: {0}")]
    Key(String),
    /// The checkpoint signer gave no signature (unreachable, refused, bad answer); the
    /// log is not poisoned and keeps accepting entries.
    #[error("checkpoint signer: {0}")]
    Signer(stele_tlog::signer::SignerError),
    /// A bad argument (e.g. a proof request out of range).
    #[error("{0}")]
    InvalidArgument(String),
}

impl StoreError {
    pub(crate) fn io<'a>(op: &'static str, file: &'a str) -> impl FnOnce(io::Error) -> StoreError + 'a {
        move |source| StoreError::Io { op, file: file.to_string(), source }
    }
}

/// Result alias of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
