//! Ingest formats for stele: bytes in; event byte slices, validation and
//! normalized query fields out.
//!
//! This crate owns how stele recognises events in its inputs:
//! - [`EventReader`] streams events out of a `BufRead` (for `stele import`),
//!   in JSON lines, a JSON array, concatenated JSON objects, or Kubernetes
//!   audit logs (one `Event` per line, or `EventList` documents whose items
//!   are streamed one by one), with memory bounded by the maximum event size;
//! - [`split_body`] splits an HTTP request body into events;
//! - [`parse_event`] validates one event and extracts its [`Normalized`]
//!   fields (time, actor, action, resource, outcome) in one parse;
//! - [`otlp`] decodes OpenTelemetry log requests (protobuf, OTLP/JSON) into
//!   one canonical protobuf entry per `LogRecord`, with its normalized fields.
//!
//! It does no file or network I/O of its own and knows nothing of storage,
//! hashing or HTTP. Events are kept as their exact bytes: splitters return
//! the exact slice of each event, never a re-serialization.
//!
//! Decisions that callers can rely on:
//! - An event is any JSON object that `serde_json::Value` would accept: the
//!   RFC 8259 grammar, UTF-8, no lone surrogate escapes, numbers in f64
//!   range, no trailing data, and serde_json's nesting limit of 128 (at most
//!   127 arrays and objects open at once, the event's own object included).
//!   Validation is a hand-written single-pass parser (several times faster
//!   than serde_json); unit and property tests and fuzz targets hold it to
//!   exactly serde_json's acceptance and to the field values of the
//!   serde_json implementation it replaced, which the tests keep as their
//!   reference and which still words the error messages.
//! - A UTF-8 byte-order mark is skipped at the very start of an input or
//!   body (Windows tools write one); anywhere else it is invalid JSON.
//! - Memory is bounded by the caller's maximum event size: an oversize event
//!   is skipped without being buffered and reported as
//!   [`FormatError::TooLarge`], and reading continues.
//! - A Kubernetes audit Event is `"kind": "Event"` with apiVersion
//!   `audit.k8s.io/v1` or `v1beta1`, or with no apiVersion but a string
//!   `verb` (real exports drop apiVersion); `EventList` items are audit
//!   events by context. See [`parse_event`].
//!
//! ```
//! use stele_formats::{EventReader, InputFormat, EventFormat, FieldPointers, parse_event};
//!
//! let input = b"{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"verb\":\"get\"}\n\n{\"actor\":\"bob\"}\n";
//! let mut reader = EventReader::new(&input[..], InputFormat::Auto, 1 << 20);
//! let mut formats = Vec::new();
//! while let Some(ev) = reader.next_event()? {
//!     let (format, fields) = parse_event(ev.bytes, Some(ev.format), &FieldPointers::default())?;
//!     formats.push((format, ev.location.line, fields.actor.or(fields.action)));
//! }
//! assert_eq!(formats, vec![
//!     (EventFormat::KubernetesAudit, 1, Some("get".to_string())),
//!     (EventFormat::Json, 3, Some("bob".to_string())),
//! ]);
//! # Ok::<(), stele_formats::FormatError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod body;
mod error;
mod fastjson;
mod json;
mod json_serde;
mod normalize;
pub mod otlp;
mod reader;
mod scan;

use std::fmt;
use std::str::FromStr;

pub use body::split_body;
pub use error::{BodyError, FormatError, InvalidReason, Location};
pub use normalize::{
    FieldPointers, Normalized, Normalizer, k8s_resource_path, matches, normalize_outcome, parse_event, parse_time,
};
pub use reader::{Batch, EventReader, RawEvent};

/// The format of a stored event, recorded in its on-disk leaf as one byte
/// ([`EventFormat::code`]).
///
/// Serializes as its [`EventFormat::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum EventFormat {
    /// Any JSON object.
    #[serde(rename = "json")]
    Json,
    /// A Kubernetes audit `Event` (`audit.k8s.io/v1` or `v1beta1`).
    #[serde(rename = "k8s-audit")]
    KubernetesAudit,
    /// One OpenTelemetry `LogRecord` with its resource and scope, stored as the
    /// canonical protobuf `ResourceLogs` described in [`otlp`].
    #[serde(rename = "otlp-log")]
    OtlpLog,
}

impl EventFormat {
    /// The byte stored in the leaf: `Json` = 1, `KubernetesAudit` = 2, `OtlpLog` = 5.
    /// These values are part of the on-disk format and never change.
    pub fn code(self) -> u8 {
        match self {
            EventFormat::Json => 1,
            EventFormat::KubernetesAudit => 2,
            EventFormat::OtlpLog => 5,
        }
    }

    /// The format stored as `code`, or `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<EventFormat> {
        match code {
            1 => Some(EventFormat::Json),
            2 => Some(EventFormat::KubernetesAudit),
            5 => Some(EventFormat::OtlpLog),
            _ => None,
        }
    }

    /// A short lowercase name: `json`, `k8s-audit` or `otlp-log`.
    pub fn name(self) -> &'static str {
        match self {
            EventFormat::Json => "json",
            EventFormat::KubernetesAudit => "k8s-audit",
            EventFormat::OtlpLog => "otlp-log",
        }
    }
}

impl fmt::Display for EventFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How an input to [`EventReader`] is framed. See [`EventReader`] for the
/// exact rules of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InputFormat {
    /// Detect from the first bytes (`auto`).
    #[default]
    Auto,
    /// One JSON object per line (`jsonl`).
    Jsonl,
    /// A JSON array of objects, or whitespace-separated JSON objects such as
    /// one pretty-printed object (`json`).
    Json,
    /// Kubernetes audit log: one `Event` per line, or `EventList` documents
    /// (`k8s-audit`). Every event must be a Kubernetes audit Event.
    K8sAudit,
}

impl InputFormat {
    /// The name accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Auto => "auto",
            InputFormat::Jsonl => "jsonl",
            InputFormat::Json => "json",
            InputFormat::K8sAudit => "k8s-audit",
        }
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error of `InputFormat::from_str`: the unknown name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown input format {0:?}: expected auto, jsonl, json or k8s-audit")]
pub struct UnknownInputFormat(pub String);

impl FromStr for InputFormat {
    type Err = UnknownInputFormat;

    /// Parses `auto`, `jsonl`, `json` or `k8s-audit` (exact, lowercase).
    fn from_str(s: &str) -> Result<InputFormat, UnknownInputFormat> {
        match s {
            "auto" => Ok(InputFormat::Auto),
            "jsonl" => Ok(InputFormat::Jsonl),
            "json" => Ok(InputFormat::Json),
            "k8s-audit" => Ok(InputFormat::K8sAudit),
            other => Err(UnknownInputFormat(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(EventFormat::Json.code(), 1);
        assert_eq!(EventFormat::KubernetesAudit.code(), 2);
        assert_eq!(EventFormat::OtlpLog.code(), 5);
        assert_eq!(EventFormat::OtlpLog.name(), "otlp-log");
        for f in [EventFormat::Json, EventFormat::KubernetesAudit, EventFormat::OtlpLog] {
            assert_eq!(EventFormat::from_code(f.code()), Some(f));
        }
        assert_eq!(EventFormat::from_code(0), None);
        assert_eq!(EventFormat::from_code(3), None);
    }

    #[test]
    fn input_format_names() {
        for f in [InputFormat::Auto, InputFormat::Jsonl, InputFormat::Json, InputFormat::K8sAudit] {
            assert_eq!(f.name().parse::<InputFormat>(), Ok(f));
        }
        assert!("JSON".parse::<InputFormat>().is_err());
    }
}
