//! Ingest formats for stele: bytes in; event byte slices, validation and
//! normalized query fields out.
//!
//! This crate owns how stele recognises events in its inputs:
//! - [`EventReader`] streams events out of a `BufRead` (for `stele import`),
//!   in JSON lines, a JSON array, concatenated JSON objects, Kubernetes
//!   audit logs (one `Event` per line, or `EventList` documents whose items
//!   are streamed one by one), AWS CloudTrail log files (`Records` streamed
//!   record by record) or Linux audit logs ([`auditd`]: records grouped into
//!   one event each), with memory bounded by the maximum event size;
//! - [`decompress`] unwraps gzip and zstd inputs as a stream;
//! - [`split_body`] splits an HTTP request body into events;
//! - [`parse_event`] validates one event, recognises its format (Kubernetes
//!   audit, CloudTrail, GCP audit, OCSF, generic JSON) and extracts its
//!   [`Normalized`] fields (time, actor, action, resource, outcome, source
//!   address, request id, producer; the mapping per format is in
//!   `docs/ingest-formats.md`).
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

pub mod auditd;
mod body;
mod cloud;
pub mod decompress;
mod derive;
mod error;
mod fastjson;
mod json;
mod json_serde;
mod normalize;
pub mod otlp;
mod reader;
mod scan;
pub mod sealed;
pub mod syslog;
mod webhook;

use std::fmt;
use std::str::FromStr;

pub use body::split_body;
pub use derive::{CaptureRecord, CaptureRecordRef, Replaced};
pub use error::{BodyError, FormatError, InvalidReason, Location};
pub use normalize::{
    FieldPointers, Normalized, Normalizer, k8s_resource_path, matches, normalize_outcome, parse_event, parse_time,
};
pub use reader::{Batch, EventReader, RawEvent, Rewrite, RewriteStop};
pub use webhook::{k8s_dedup_key, split_event_list};

/// Version of the normalization rules (which field of which format becomes which
/// [`Normalized`] field). Derived data built from normalized fields (the query index)
/// records it and is rebuilt when it changes. Raise it with every change to a mapping.
/// 3: CloudTrail, GCP audit, OCSF, Linux audit and AKS-wrapped Kubernetes events
/// recognised in `None`-hint parsing; generic JSON fills source address, request id
/// and producer from pointers.
/// 4: a field read from a sealed value keeps only its blind token
/// (`stele:sealed:v1:TOKEN`, [`sealed::index_form`]).
pub const NORMALIZATION_VERSION: u32 = 4;

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
    /// One syslog message (RFC 5424 or RFC 3164), stored as received; see
    /// [`syslog`].
    #[serde(rename = "syslog")]
    Syslog,
    /// An AWS CloudTrail record (one item of a log file's `Records` array).
    #[serde(rename = "cloudtrail")]
    CloudTrail,
    /// A Google Cloud audit log `LogEntry` (`protoPayload` an `AuditLog`).
    #[serde(rename = "gcp-audit")]
    GcpAudit,
    /// The records of one Linux audit event (same serial number), as text lines.
    #[serde(rename = "auditd")]
    Auditd,
    /// An OCSF event (any class).
    #[serde(rename = "ocsf")]
    Ocsf,
    /// One OpenTelemetry `LogRecord` with its resource and scope, stored as the
    /// canonical protobuf `ResourceLogs` described in [`otlp`].
    #[serde(rename = "otlp-log")]
    OtlpLog,
}

impl EventFormat {
    /// The byte stored in the leaf: `Json` = 1, `KubernetesAudit` = 2,
    /// `CloudTrail` = 6, `GcpAudit` = 7, `Auditd` = 8, `Ocsf` = 9 (3 is
    /// stele's own records, 4 syslog (`Syslog`), 5 OTLP logs (`OtlpLog`)).
    /// These values are part of the on-disk format and never change.
    pub fn code(self) -> u8 {
        match self {
            EventFormat::Json => 1,
            EventFormat::KubernetesAudit => 2,
            EventFormat::Syslog => 4,
            EventFormat::CloudTrail => 6,
            EventFormat::GcpAudit => 7,
            EventFormat::Auditd => 8,
            EventFormat::Ocsf => 9,
            EventFormat::OtlpLog => 5,
        }
    }

    /// The format stored as `code`, or `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<EventFormat> {
        match code {
            1 => Some(EventFormat::Json),
            2 => Some(EventFormat::KubernetesAudit),
            4 => Some(EventFormat::Syslog),
            6 => Some(EventFormat::CloudTrail),
            7 => Some(EventFormat::GcpAudit),
            8 => Some(EventFormat::Auditd),
            9 => Some(EventFormat::Ocsf),
            5 => Some(EventFormat::OtlpLog),
            _ => None,
        }
    }

    /// True when an entry of this format is one JSON object (every format but
    /// `auditd` and `syslog`, whose entries are text, and `otlp-log`, protobuf).
    pub fn is_json(self) -> bool {
        match self {
            EventFormat::Json
            | EventFormat::KubernetesAudit
            | EventFormat::CloudTrail
            | EventFormat::GcpAudit
            | EventFormat::Ocsf => true,
            EventFormat::Auditd | EventFormat::Syslog | EventFormat::OtlpLog => false,
        }
    }

    /// A short lowercase name: `json`, `k8s-audit`, `cloudtrail`,
    /// `gcp-audit`, `auditd`, `ocsf`, `syslog` or `otlp-log`.
    pub fn name(self) -> &'static str {
        match self {
            EventFormat::Json => "json",
            EventFormat::KubernetesAudit => "k8s-audit",
            EventFormat::Syslog => "syslog",
            EventFormat::CloudTrail => "cloudtrail",
            EventFormat::GcpAudit => "gcp-audit",
            EventFormat::Auditd => "auditd",
            EventFormat::Ocsf => "ocsf",
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
    /// AWS CloudTrail log files: `{"Records":[...]}` documents whose records
    /// are streamed one by one, or records one per line (`cloudtrail`).
    /// Every event must be a CloudTrail record.
    CloudTrail,
    /// Google Cloud audit log entries, as JSON lines or arrays (`gcp-audit`).
    /// Every event must be an audit `LogEntry`.
    GcpAudit,
    /// OCSF events, as JSON lines, arrays or pretty-printed objects (`ocsf`).
    /// Every event must be an OCSF event.
    Ocsf,
    /// Linux audit logs (`auditd`): `type=... msg=audit(T:SERIAL): ...` lines,
    /// grouped by serial number into one event each (see [`auditd`]).
    Auditd,
}

impl InputFormat {
    /// The name accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Auto => "auto",
            InputFormat::Jsonl => "jsonl",
            InputFormat::Json => "json",
            InputFormat::K8sAudit => "k8s-audit",
            InputFormat::CloudTrail => "cloudtrail",
            InputFormat::GcpAudit => "gcp-audit",
            InputFormat::Ocsf => "ocsf",
            InputFormat::Auditd => "auditd",
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
#[error("unknown input format {0:?}: expected auto, jsonl, json, k8s-audit, cloudtrail, gcp-audit, ocsf or auditd")]
pub struct UnknownInputFormat(pub String);

impl FromStr for InputFormat {
    type Err = UnknownInputFormat;

    /// Parses `auto`, `jsonl`, `json`, `k8s-audit`, `cloudtrail`, `gcp-audit`,
    /// `ocsf` or `auditd` (exact, lowercase).
    fn from_str(s: &str) -> Result<InputFormat, UnknownInputFormat> {
        match s {
            "auto" => Ok(InputFormat::Auto),
            "jsonl" => Ok(InputFormat::Jsonl),
            "json" => Ok(InputFormat::Json),
            "k8s-audit" => Ok(InputFormat::K8sAudit),
            "cloudtrail" => Ok(InputFormat::CloudTrail),
            "gcp-audit" => Ok(InputFormat::GcpAudit),
            "ocsf" => Ok(InputFormat::Ocsf),
            "auditd" => Ok(InputFormat::Auditd),
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
        assert_eq!(EventFormat::Syslog.code(), 4);
        assert_eq!(EventFormat::Syslog.name(), "syslog");
        assert_eq!(EventFormat::CloudTrail.code(), 6);
        assert_eq!(EventFormat::GcpAudit.code(), 7);
        assert_eq!(EventFormat::Auditd.code(), 8);
        assert_eq!(EventFormat::Ocsf.code(), 9);
        let all = [
            EventFormat::Json,
            EventFormat::KubernetesAudit,
            EventFormat::CloudTrail,
            EventFormat::GcpAudit,
            EventFormat::Auditd,
            EventFormat::Ocsf,
            EventFormat::Syslog,
            EventFormat::OtlpLog,
        ];
        for f in all {
            assert_eq!(EventFormat::from_code(f.code()), Some(f));
            assert_eq!(serde_json::to_value(f).unwrap(), f.name());
        }
        assert_eq!(EventFormat::from_code(0), None);
        assert_eq!(EventFormat::from_code(3), None);
    }

    #[test]
    fn input_format_names() {
        for f in [
            InputFormat::Auto,
            InputFormat::Jsonl,
            InputFormat::Json,
            InputFormat::K8sAudit,
            InputFormat::CloudTrail,
            InputFormat::GcpAudit,
            InputFormat::Ocsf,
            InputFormat::Auditd,
        ] {
            assert_eq!(f.name().parse::<InputFormat>(), Ok(f));
        }
        assert!("JSON".parse::<InputFormat>().is_err());
    }
}
