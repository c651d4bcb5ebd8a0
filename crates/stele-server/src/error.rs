//! The error type of the server.

use stele_index::IndexError;
use stele_store::StoreError;

/// Errors that stop the server from starting or end it.
///
/// Errors of single requests are not here: they become HTTP responses (see the
/// crate documentation for each status code).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is not usable; the message says which setting and why.
    #[error("invalid server configuration: {0}")]
    Config(String),
    /// The listening socket could not be bound or configured.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The query index could not be opened or caught up with the log.
    #[error("opening the query index: {0}")]
    Index(#[from] IndexError),
    /// The log failed while the server was running or shutting down (for example the
    /// final checkpoint could not be signed).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Serving HTTP failed.
    #[error("serving HTTP: {0}")]
    Io(#[source] std::io::Error),
    /// The sequencer thread panicked or could not be started. This is a bug.
    #[error("the sequencer thread failed: {0}")]
    Sequencer(String),
}
