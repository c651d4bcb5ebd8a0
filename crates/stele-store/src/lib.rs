//! # stele-store
//!
//! stele's storage engine: one data directory holding payload segments, fixed-width
//! leaf records, the tree's hashes as C2SP tiles, and the signed checkpoints. It owns
//! durability (group commit: nothing is acknowledged before every file it touched is
//! synced), crash recovery (an intact prefix is found and a torn tail is cut, never
//! below a signed checkpoint), reads, proofs and full verification. It does not parse
//! events (that is `stele-formats`) or index them (that is `stele-index`).
//!
//! Storage sits behind [`backend::Backend`], a small byte-level trait with a file
//! backend and an in-memory backend that can simulate a power cut.
//!
//! ```
//! use std::sync::Arc;
//! use stele_store::{backend::MemoryBackend, log::{init_backend, Log, LogOptions, NewEntry}};
//! use stele_tlog::note::NoteSigner;
//!
//! let backend = Arc::new(MemoryBackend::new());
//! init_backend(&(backend.clone() as _), "example.com/log").unwrap();
//! let signer = NoteSigner::from_seed("example.com/log", &[1; 32]).unwrap();
//! let mut log = Log::open_backend(backend, "example.com/log", signer, LogOptions::default()).unwrap();
//! let done = log.append(&[NewEntry { stream: "default", format: 1, payload: br#"{"actor":"alice"}"# }]).unwrap();
//! let cp = log.sign_checkpoint().unwrap().unwrap();
//! assert_eq!(cp.tree_size, 2); // a stream registration record, then the event
//! assert_eq!(log.reader().entry(done.indexes[0]).unwrap().payload, br#"{"actor":"alice"}"#);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backend;
pub mod checkpoints;
pub mod chunk;
pub mod clock;
pub mod error;
pub mod faults;
pub mod files;
pub mod hashes;
pub mod header;
pub mod keys;
pub mod layout;
pub mod log;
pub mod meta;
pub mod reader;
pub mod records;
pub mod recover;
pub mod retention;
pub mod signer_file;
pub mod signer_unix;
pub mod state;
pub mod streams;
pub mod timestamps;
pub mod verify;

pub use error::{Result, StoreError};
pub use log::{Log, LogOptions, NewEntry};
pub use reader::{Entry, LogReader};
