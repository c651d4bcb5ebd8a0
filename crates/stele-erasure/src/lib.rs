//! # stele-erasure
//!
//! Erasure of personal data by crypto-shredding. Configured fields of an event (JSON
//! pointers per stream and format, [`SealingRule`]; the root pointer `""` is the whole
//! event) are sealed at ingest under a data key of the event's subject, or of the
//! rule's `subject_default` when the event names none (XChaCha20-Poly1305); data
//! keys are wrapped by a master
//! key kept in a file that may live outside the data directory. The leaf commits to
//! the sealed form (docs/format.md, "Sealed entries"), so verification, proofs and
//! bundles never need a key; while the key exists [`restore`] gives the event back
//! byte-exact. [`erase`] destroys a subject's key under a record in `_stele/erasure`,
//! deferred while a legal hold or compliance-mode retention covers the subject's
//! entries ([`carry_out_pending`] finishes it later).
//!
//! This crate owns the key store and the cryptography; the envelope's byte layout is
//! `stele_formats::sealed`. It does not decide who may erase (that is the caller's).
//!
//! ```
//! use stele_erasure::{Keys, KeyStore, MasterKey, SealingRule, Sealer, SealState, restore};
//!
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::create_dir_all(dir.path().join("keys")).unwrap();
//! let keys = Keys::with(MasterKey::from_bytes(&[9; 32]), KeyStore::open(dir.path(), true).unwrap());
//! let rule = SealingRule {
//!     stream: "k8s".into(),
//!     format: None,
//!     subject: "/user/username".into(),
//!     fields: vec!["/sourceIPs".into()],
//!     erasure_wins: false,
//!     subject_default: None,
//! };
//! let mut sealer = Sealer::new(vec![rule], keys).unwrap();
//! let event = br#"{"user":{"username":"alice"},"sourceIPs":["10.0.0.7"],"verb":"get"}"#;
//! let sealed = sealer.seal("k8s", 1, event, 0).unwrap().unwrap();
//! sealer.sync().unwrap();
//! assert!(!sealed.payload.windows(5).any(|w| w == b"alice"));
//! let view = restore(Some(sealer.keys()), sealed.format, &sealed.payload).unwrap();
//! assert_eq!((view.bytes.as_slice(), view.state), (&event[..], SealState::Restored));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod crypto;
mod erase;
mod keystore;
mod rules;
mod seal;

pub use crypto::{DataKey, MasterKey, WrappedKey};
pub use erase::{
    Attribution, ERASURE_STREAM, EraseOutcome, ErasureLog, ErasureRecord, ErasureTarget, carry_out_pending, erase,
    erase_target, erasure_log, reconcile_keys, target,
};
pub use keystore::{KeyStore, STORE_FILE, StoredKey};
pub use rules::{MAX_SUBJECT_DEFAULT_BYTES, SealingRule, rule_for};
pub use seal::{
    BatchSealer, ERASED_VALUE, IdKey, Keys, SealState, Sealed, SealedValue, Sealer, View, restore, token_text,
};

use std::path::{Path, PathBuf};

/// Erasure settings: the master key file and the sealing rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureConfig {
    /// The master key file (64 hex digits, mode 0600 or stricter); may live outside
    /// the data directory.
    pub master_key: PathBuf,
    /// Which fields of which streams are sealed (`[[erasure.rule]]`).
    #[serde(default)]
    pub rule: Vec<SealingRule>,
}

impl ErasureConfig {
    /// Opens the sealer of a writer of `data_dir`, after completing any erasure the
    /// log records whose key is still in the store (`snapshot` and `reader` view the
    /// same log).
    ///
    /// # Errors
    /// Master key, key store, rule and read errors.
    pub fn open_sealer(
        &self,
        data_dir: &Path,
        snapshot: &stele_index::Snapshot,
        reader: &stele_store::LogReader,
    ) -> Result<Sealer, ErasureError> {
        let mut keys = Keys::open(data_dir, &self.master_key, true)?;
        let read_to = reader.tree_size();
        let elog = erasure_log(snapshot, reader)?;
        reconcile_keys(&mut keys, &elog, true)?;
        keys.put_erasure_log(elog, read_to);
        Sealer::new(self.rule.clone(), keys)
    }

    /// Opens the keys for reading `data_dir`, agreeing with the log's erasure records.
    ///
    /// # Errors
    /// Master key, key store and read errors.
    pub fn open_keys(
        &self,
        data_dir: &Path,
        snapshot: &stele_index::Snapshot,
        reader: &stele_store::LogReader,
    ) -> Result<Keys, ErasureError> {
        let mut keys = Keys::open(data_dir, &self.master_key, false)?;
        let read_to = reader.tree_size();
        let elog = erasure_log(snapshot, reader)?;
        reconcile_keys(&mut keys, &elog, false)?;
        keys.put_erasure_log(elog, read_to);
        Ok(keys)
    }
}

/// Errors of sealing, restoring and erasure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErasureError {
    /// The master key file is missing, unreadable, malformed or too open.
    #[error("master key {path}: {reason}")]
    MasterKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The subject key store could not be read or written.
    #[error("subject key store {path}: {reason}")]
    KeyStore {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A sealing rule is invalid.
    #[error("{0}")]
    Config(String),
    /// A value or key did not open (damage, or another master key).
    #[error("sealed data: {0}")]
    Crypto(&'static str),
    /// The operating system's random source failed.
    #[error("random source: {0}")]
    Random(String),
    /// A sealed payload's envelope is damaged.
    #[error(transparent)]
    Envelope(#[from] stele_formats::sealed::EnvelopeError),
    /// The subject has no key: nothing of theirs was sealed, or it was erased already.
    #[error("no key for this subject: none of their events were sealed, or their key was already erased")]
    NoSuchSubject,
    /// Log errors.
    #[error(transparent)]
    Store(#[from] stele_store::StoreError),
    /// Query index errors.
    #[error(transparent)]
    Index(#[from] stele_index::IndexError),
    /// Retention (holds, policies) errors.
    #[error(transparent)]
    Retention(#[from] stele_retention::RetentionError),
}
