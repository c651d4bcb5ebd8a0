//! The properties stele's fuzz targets check, as plain functions: each module's
//! `check(data)` takes arbitrary bytes and panics if a property fails. The cargo-fuzz
//! targets in `fuzz/` call them under libFuzzer; `tests/corpus.rs` replays every stored
//! corpus input and every regression input through them on stable Rust, as an ordinary
//! test, so CI checks what fuzzing found without a sanitizer toolchain.
#![forbid(unsafe_code)]

pub mod auditd_group;
pub mod bundle;
pub mod checkpoint;
pub mod cloudtrail_records;
pub mod config;
pub mod decompress;
pub mod event_reader;
pub mod json_value;
pub mod k8s_webhook;
pub mod note;
pub mod otlp_logs;
pub mod parse_event;
pub mod proof;
pub mod split_body;
pub mod store_model;
pub mod store_open;
pub mod syslog_frames;
pub mod tile_path;
pub mod timestamp_token;
mod trickle;

/// A check: takes one input, panics if a property fails.
pub type Check = fn(&[u8]);

/// Every check with its name (also the fuzz target's name and its corpus folder).
pub const CHECKS: &[(&str, Check)] = &[
    ("auditd_group", auditd_group::check),
    ("bundle", bundle::check),
    ("checkpoint", checkpoint::check),
    ("cloudtrail_records", cloudtrail_records::check),
    ("config", config::check),
    ("decompress", decompress::check),
    ("event_reader", event_reader::check),
    ("json_value", json_value::check),
    ("k8s_webhook", k8s_webhook::check),
    ("note", note::check),
    ("otlp_logs", otlp_logs::check),
    ("parse_event", parse_event::check),
    ("proof", proof::check),
    ("split_body", split_body::check),
    ("store_model", store_model::check),
    ("store_open", store_open::check),
    ("syslog_frames", syslog_frames::check),
    ("tile_path", tile_path::check),
    ("timestamp_token", timestamp_token::check),
];
