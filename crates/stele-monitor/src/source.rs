//! Where a log's published files come from: a [`TileSource`] over plain HTTP or a
//! local directory (a published tlog-tiles tree, or a `file://` URL).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest response body read from a source, in bytes. The largest legitimate file is
/// a full entry bundle: 256 entries of at most 65,535 bytes plus their length prefixes.
pub const MAX_BODY_BYTES: u64 = 32 << 20;

/// Why a file could not be read from a source. These are availability errors (exit 2),
/// never evidence against the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A local file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An HTTP request failed (connection, timeout, protocol, body too large).
    #[error("GET {url}: {message}")]
    Http {
        /// The URL requested.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The server answered with a status other than 200 or 404.
    #[error("GET {url}: HTTP status {status}")]
    Status {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The location given is not one this build can read.
    #[error("unsupported log location {0:?}: use https://, http://, file:// or a directory")]
    Unsupported(String),
    /// A path asked of a source tried to leave the log's prefix.
    #[error("refusing path {0:?}")]
    BadPath(String),
}

/// A read-only view of a published log: `get("checkpoint")`, `get("tile/0/000.p/5")`.
pub trait TileSource {
    /// The bytes at `path` under the log's prefix; `Ok(None)` when the file does not
    /// exist (HTTP 404).
    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, SourceError>;

    /// Where `path` lives, for messages (a URL or a file name).
    fn describe(&self, path: &str) -> String;
}

fn check_path(path: &str) -> Result<(), SourceError> {
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(SourceError::BadPath(path.to_string()));
    }
    Ok(())
}

/// A log published as files in a local directory.
#[derive(Clone, Debug)]
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    /// A source reading files under `root`.
    pub fn new(root: impl Into<PathBuf>) -> DirSource {
        DirSource { root: root.into() }
    }

    /// The directory read.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl TileSource for DirSource {
    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, SourceError> {
        check_path(path)?;
        let file = self.root.join(path);
        match std::fs::read(&file) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SourceError::Io { path: file, source: e }),
        }
    }

    fn describe(&self, path: &str) -> String {
        self.root.join(path).display().to_string()
    }
}

/// A log served over HTTPS (rustls; the Mozilla roots of `webpki-roots`, or only the
/// CAs given) or plain HTTP.
#[derive(Debug)]
pub struct HttpSource {
    base: String,
    agent: ureq::Agent,
}

impl HttpSource {
    /// A source for the log whose files are under the `https://` or `http://` URL `base`.
    pub fn new(base: &str, timeout: Duration) -> Result<HttpSource, SourceError> {
        HttpSource::with_ca(base, timeout, None)
    }

    /// Like [`HttpSource::new`], trusting only the CA certificates in `ca_pem` (PEM, one
    /// or more) for `https://` when given — for logs behind a private CA.
    pub fn with_ca(base: &str, timeout: Duration, ca_pem: Option<&[u8]>) -> Result<HttpSource, SourceError> {
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(SourceError::Unsupported(base.to_string()));
        }
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent("stele-monitor");
        if let Some(pem) = ca_pem {
            let mut certs = Vec::new();
            for item in ureq::tls::parse_pem(pem) {
                match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                    Ok(_) => {}
                    Err(e) => {
                        return Err(SourceError::Http { url: base.to_string(), message: format!("CA file: {e}") });
                    }
                }
            }
            if certs.is_empty() {
                return Err(SourceError::Http {
                    url: base.to_string(),
                    message: "CA file holds no certificate".into(),
                });
            }
            let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::new_with_certs(&certs)).build();
            builder = builder.tls_config(tls);
        }
        let config = builder.build();
        Ok(HttpSource { base: base.trim_end_matches('/').to_string(), agent: ureq::Agent::new_with_config(config) })
    }
}

impl TileSource for HttpSource {
    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, SourceError> {
        check_path(path)?;
        let url = self.describe(path);
        let http_err = |e: ureq::Error| SourceError::Http { url: url.clone(), message: e.to_string() };
        let mut resp = self.agent.get(&url).call().map_err(http_err)?;
        match resp.status().as_u16() {
            200 => Ok(Some(resp.body_mut().with_config().limit(MAX_BODY_BYTES).read_to_vec().map_err(http_err)?)),
            404 | 410 => Ok(None),
            status => Err(SourceError::Status { url, status }),
        }
    }

    fn describe(&self, path: &str) -> String {
        format!("{}/{}", self.base, path)
    }
}

/// Opens the log at `location`: an `https://` or `http://` URL, a `file://` URL or a
/// directory path.
pub fn open_source(location: &str, timeout: Duration) -> Result<Box<dyn TileSource>, SourceError> {
    open_source_with_ca(location, timeout, None)
}

/// [`open_source`], trusting only the CAs in `ca_pem` for `https://` when given.
pub fn open_source_with_ca(
    location: &str,
    timeout: Duration,
    ca_pem: Option<&[u8]>,
) -> Result<Box<dyn TileSource>, SourceError> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Ok(Box::new(HttpSource::with_ca(location, timeout, ca_pem)?));
    }
    if let Some(path) = location.strip_prefix("file://") {
        // file:///abs/path (empty host) or file://localhost/abs/path.
        let path = path.strip_prefix("localhost").unwrap_or(path);
        if !path.starts_with('/') {
            return Err(SourceError::Unsupported(location.to_string()));
        }
        return Ok(Box::new(DirSource::new(path)));
    }
    if location.contains("://") {
        return Err(SourceError::Unsupported(location.to_string()));
    }
    Ok(Box::new(DirSource::new(location)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let t = Duration::from_secs(1);
        assert!(open_source("https://log.example", t).is_ok());
        assert!(matches!(open_source("ftp://log.example", t), Err(SourceError::Unsupported(_))));
        assert!(open_source("http://log.example/prefix/", t).is_ok());
        assert!(open_source("file:///tmp", t).is_ok());
        assert!(open_source("file://localhost/tmp", t).is_ok());
        assert!(matches!(open_source("file://relative", t), Err(SourceError::Unsupported(_))));
        let h = HttpSource::new("http://log.example/p/", t).unwrap();
        assert_eq!(h.describe("checkpoint"), "http://log.example/p/checkpoint");
    }

    #[test]
    fn paths_cannot_escape() {
        let d = DirSource::new("/nonexistent");
        for bad in ["", "/etc/passwd", "../x", "tile/../../x", "tile//0"] {
            assert!(matches!(d.get(bad), Err(SourceError::BadPath(_))), "{bad}");
        }
        assert!(d.get("checkpoint").unwrap().is_none());
    }
}
