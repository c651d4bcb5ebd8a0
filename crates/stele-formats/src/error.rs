//! Error types of the crate.

use std::fmt;
use std::io;

/// Where an event (or a problem) starts in a streamed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Location {
    /// 1-based line number of the first byte.
    pub line: u64,
    /// 0-based byte offset of the first byte from the start of the input
    /// (a stripped byte-order mark still counts).
    pub byte_offset: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} (byte {})", self.line, self.byte_offset)
    }
}

/// Why a single, correctly framed event was rejected.
///
/// Used by [`FormatError::InvalidEvent`] and [`BodyError::InvalidItem`]. The
/// input around the event is intact, so a reader can go on with the next one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidReason {
    /// The top-level value is not a JSON object (an array, a string, ...).
    #[error("not a JSON object")]
    NotObject,
    /// The bytes are not well-formed JSON (or not UTF-8); the message is
    /// serde_json's, with line and column counted within the event.
    #[error("invalid JSON: {message}")]
    Json {
        /// serde_json's description of the problem.
        message: String,
    },
    /// A Kubernetes audit Event was required (input format `k8s-audit`, or a
    /// [`crate::EventFormat::KubernetesAudit`] hint) but the object is not one.
    #[error("not a Kubernetes audit Event ({detail})")]
    NotK8sEvent {
        /// What was found instead, e.g. `kind is 0`.
        detail: String,
    },
    /// A Kubernetes `EventList` whose `items` member is not an array.
    #[error("Kubernetes EventList: \"items\" is not an array")]
    BadEventList,
    /// An event of another format was required (an input format such as
    /// `cloudtrail`, or a format hint) but the object does not have its shape.
    #[error("not a {format} event ({detail})")]
    NotFormat {
        /// The required format's name ([`crate::EventFormat::name`]).
        format: &'static str,
        /// What the event lacks, e.g. `no string "eventSource"`.
        detail: String,
    },
    /// Bytes that should be Linux audit records are not (see [`crate::auditd`]).
    #[error("not a Linux audit record: {detail}")]
    NotAuditRecord {
        /// What is wrong, e.g. `no "msg=audit(" stamp`.
        detail: String,
    },
    /// A stored OpenTelemetry log entry ([`crate::EventFormat::OtlpLog`]) is not a
    /// canonical OTLP record (see [`crate::otlp`]).
    #[error("{0}")]
    Otlp(crate::otlp::OtlpError),
}

/// An error from [`crate::EventReader`] or [`crate::parse_event`].
///
/// [`FormatError::is_fatal`] tells whether a reader can go on after it: a
/// reader returns `Ok(None)` for ever after a fatal error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// An event is larger than the configured maximum. The reader skipped it
    /// without buffering it and continues with the next event.
    #[error("{location}: event of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Where the event starts.
        location: Location,
        /// The event's size in bytes (for JSON lines: the line without its
        /// terminator).
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// One event was rejected; the reader continues with the next one.
    #[error("{}{reason}", DisplayLoc(location))]
    InvalidEvent {
        /// Where the event starts; `None` from [`crate::parse_event`], which
        /// sees bytes only.
        location: Option<Location>,
        /// Why it was rejected.
        reason: InvalidReason,
    },
    /// The input's framing is broken (e.g. a truncated array, a missing
    /// comma between array elements, trailing data after a document); the
    /// reader cannot find the next event and stops. Fatal.
    #[error("{location}: malformed input: {reason}")]
    Malformed {
        /// Where the problem was detected.
        location: Location,
        /// What is wrong.
        reason: String,
    },
    /// Reading from the underlying reader failed. Fatal.
    #[error("{location}: read error: {source}")]
    Io {
        /// How far the input had been read.
        location: Location,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl FormatError {
    /// True when the reader that returned this error cannot continue (it
    /// returns `Ok(None)` from then on); false when only one event was skipped.
    pub fn is_fatal(&self) -> bool {
        matches!(self, FormatError::Malformed { .. } | FormatError::Io { .. })
    }

    /// The location the error refers to, when known.
    pub fn location(&self) -> Option<Location> {
        match self {
            FormatError::TooLarge { location, .. }
            | FormatError::Malformed { location, .. }
            | FormatError::Io { location, .. } => Some(*location),
            FormatError::InvalidEvent { location, .. } => *location,
        }
    }
}

struct DisplayLoc<'a>(&'a Option<Location>);

impl fmt::Display for DisplayLoc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(l) => write!(f, "{l}: "),
            None => Ok(()),
        }
    }
}

/// An error from [`crate::split_body`]. Item indexes are 0-based and count
/// events in body order (items of a Kubernetes `EventList` are counted one
/// by one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is empty or whitespace only.
    #[error("empty body: expected a JSON object, an array of objects, or JSON lines")]
    Empty,
    /// The body is `[]` (or an EventList with no items).
    #[error("empty JSON array: no events")]
    EmptyArray,
    /// One item is larger than the limit.
    #[error("item {item}: {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// 0-based index of the item.
        item: usize,
        /// Its size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// One item is not an acceptable event.
    #[error("item {item}: {reason}")]
    InvalidItem {
        /// 0-based index of the item.
        item: usize,
        /// Why.
        reason: InvalidReason,
    },
    /// The body's framing is broken at or after item `item` (e.g. a missing
    /// comma, an unterminated array, trailing garbage).
    #[error("item {item}: malformed body at byte {byte_offset}: {reason}")]
    Malformed {
        /// 0-based index of the item being read.
        item: usize,
        /// Byte offset of the problem within the body.
        byte_offset: usize,
        /// What is wrong.
        reason: String,
    },
}
