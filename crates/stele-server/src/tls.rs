//! TLS (rustls, ring provider) for every TCP listener: HTTP, OTLP/gRPC and syslog.
//!
//! One loader builds a `rustls::ServerConfig` from PEM files: the certificate chain
//! (leaf first), the private key (PKCS#8, PKCS#1 or SEC1) and, optionally, the CAs
//! whose client certificates are verified (mutual TLS, RFC 8446 §4.3.2). TLS 1.2 and
//! 1.3 only, rustls's safe defaults.
//!
//! **Reload without restart.** The HTTP and OTLP/gRPC listeners re-read their files
//! every `reload_interval` (default 10 s) and, when their bytes changed, build a new
//! configuration; new connections use it, open ones keep theirs. A file that does not
//! load (a half-written key, a certificate that does not match the key) is reported
//! in the server's log and the previous configuration stays in force, so that a
//! renewal in progress never takes the listener down. Watching the files (rather
//! than waiting for SIGHUP) works the same under systemd, Kubernetes secret mounts
//! (which swap a symlink) and certificate tools that cannot signal a process.
//!
//! **Client identities.** With a client CA, the verified leaf certificate's subject
//! common names and subject alternative names (DNS names, e-mail addresses, URIs) are
//! the identities the access control maps to principals (see `auth`).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use crate::listener::{Conn, LimitedListener};

/// Default `reload_interval`: certificate files are re-read every 10 s; a renewed
/// certificate is served within that, at the cost of reading three small files.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
/// Connections in the middle of a TLS handshake waiting to be served, per listener.
const HANDSHAKED_QUEUE: usize = 64;

/// The TLS settings of the HTTP and OTLP/gRPC listeners.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// PEM file with the server certificate chain, leaf first.
    pub cert_pem: PathBuf,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: PathBuf,
    /// PEM file of CA certificates whose client certificates are verified (mutual TLS).
    pub client_ca_pem: Option<PathBuf>,
    /// With a client CA: refuse the handshake of a client without a certificate
    /// (default). When false, such clients may still authenticate with a token.
    pub client_cert_required: bool,
}

impl TlsConfig {
    /// A server certificate and key, no client certificates.
    pub fn new(cert_pem: PathBuf, key_pem: PathBuf) -> TlsConfig {
        TlsConfig { cert_pem, key_pem, client_ca_pem: None, client_cert_required: true }
    }
}

/// Builds a rustls server configuration from PEM files.
///
/// # Errors
/// A file that does not read or parse, no certificate, a key that does not match, an
/// empty or invalid CA file; the message names the file.
pub(crate) fn server_config(
    cert_pem: &Path,
    key_pem: &Path,
    client_ca_pem: Option<&Path>,
    client_cert_required: bool,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, String> {
    let certs = CertificateDer::pem_file_iter(cert_pem)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("certificate {}: {e}", cert_pem.display()))?;
    if certs.is_empty() {
        return Err(format!("certificate {}: no certificate in the file", cert_pem.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_pem).map_err(|e| format!("private key {}: {e}", key_pem.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca_pem {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("client CA {}: {e}", ca.display()))? {
                let c = c.map_err(|e| format!("client CA {}: {e}", ca.display()))?;
                roots.add(c).map_err(|e| format!("client CA {}: {e}", ca.display()))?;
            }
            let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if !client_cert_required {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| format!("client CA {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| format!("certificate and key: {e}"))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A listener's TLS configuration, rebuilt when its files change.
pub(crate) struct Reloader {
    files: TlsConfig,
    alpn: Vec<Vec<u8>>,
    what: &'static str,
    current: RwLock<Arc<rustls::ServerConfig>>,
    digest: Mutex<[u8; 32]>,
}

impl Reloader {
    /// Loads the files once; an error stops the server from starting.
    pub(crate) fn new(files: &TlsConfig, alpn: &[&[u8]], what: &'static str) -> Result<Arc<Reloader>, String> {
        let digest = files_digest(files).map_err(|e| format!("{what} TLS: {e}"))?;
        let config = Reloader::build(files, alpn).map_err(|e| format!("{what} TLS: {e}"))?;
        Ok(Arc::new(Reloader {
            files: files.clone(),
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
            what,
            current: RwLock::new(Arc::new(config)),
            digest: Mutex::new(digest),
        }))
    }

    fn build(files: &TlsConfig, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, String> {
        server_config(&files.cert_pem, &files.key_pem, files.client_ca_pem.as_deref(), files.client_cert_required, alpn)
    }

    /// The acceptor for a new connection.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Re-reads the files; rebuilds the configuration when their bytes changed.
    /// Returns whether a new configuration is in force.
    pub(crate) fn check(&self) -> bool {
        let digest = match files_digest(&self.files) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("{} TLS: {e}; the previous certificate stays in use", self.what);
                return false;
            }
        };
        let mut seen = self.digest.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == digest {
            return false;
        }
        *seen = digest;
        let alpn: Vec<&[u8]> = self.alpn.iter().map(Vec::as_slice).collect();
        match Reloader::build(&self.files, &alpn) {
            Ok(c) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
                tracing::info!("{} TLS: certificate files changed; new connections use the new certificate", self.what);
                true
            }
            Err(e) => {
                tracing::error!("{} TLS: {e}; the previous certificate stays in use", self.what);
                false
            }
        }
    }
}

fn files_digest(files: &TlsConfig) -> Result<[u8; 32], String> {
    let mut h = Sha256::new();
    for p in [Some(&files.cert_pem), Some(&files.key_pem), files.client_ca_pem.as_ref()].into_iter().flatten() {
        let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize().into())
}

/// Who is at the other end of a connection: its address and, after mutual TLS, the
/// identities of its verified certificate.
#[derive(Clone, Debug)]
pub(crate) struct PeerInfo {
    pub(crate) addr: SocketAddr,
    /// Subject common names, then DNS, e-mail and URI subject alternative names.
    pub(crate) cert_ids: Option<Arc<[String]>>,
    /// Why the connection is refused (over its client's share or the listener's
    /// total, see `per_client`): every request on it is refused.
    pub(crate) refused: Option<crate::per_client::Refusal>,
}

/// The identities of a leaf certificate (DER): subject CNs and SANs.
pub(crate) fn cert_identities(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut ids: Vec<String> =
        cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok().map(str::to_string)).collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => ids.push(s.to_string()),
                _ => {}
            }
        }
    }
    ids
}

pub(crate) fn peer_ids(conn: &rustls::ServerConnection) -> Option<Arc<[String]>> {
    conn.peer_certificates().and_then(|c| c.first()).map(|leaf| cert_identities(leaf.as_ref()).into())
}

/// Starts a reload task for `reloaders`: checks their files every `interval`.
pub(crate) fn spawn_reload(reloaders: Vec<Arc<Reloader>>, interval: Duration) {
    if reloaders.is_empty() || interval.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            for r in &reloaders {
                let r = r.clone();
                let _ = tokio::task::spawn_blocking(move || r.check()).await;
            }
        }
    });
}

// ---------------------------------------------------------------------------------
// HTTP over TLS

/// An axum listener that completes TLS handshakes off the accept loop (a slow client
/// cannot hold up others) within `handshake_timeout`.
pub(crate) struct TlsListener {
    rx: mpsc::Receiver<(tokio_rustls::server::TlsStream<Conn>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub(crate) fn new(mut inner: LimitedListener, reloader: Arc<Reloader>, handshake_timeout: Duration) -> TlsListener {
        use axum::serve::Listener as _;
        let local = inner.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, rx) = mpsc::channel(HANDSHAKED_QUEUE);
        tokio::spawn(async move {
            loop {
                let (conn, addr) = tokio::select! {
                    _ = tx.closed() => return,
                    c = inner.accept() => c,
                };
                let (tx, acceptor) = (tx.clone(), reloader.acceptor());
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(conn)).await {
                        Ok(Ok(s)) => {
                            let _ = tx.send((s, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { rx, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<Conn>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task ends only when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

// ---------------------------------------------------------------------------------
// OTLP/gRPC over TLS

/// A TLS connection of the OTLP/gRPC listener, with its peer for the requests.
pub(crate) struct GrpcTlsConn {
    inner: tokio_rustls::server::TlsStream<Conn>,
    info: PeerInfo,
}

impl tonic::transport::server::Connected for GrpcTlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for GrpcTlsConn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GrpcTlsConn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The stream of handshaken OTLP/gRPC connections tonic serves.
pub(crate) struct GrpcTlsIncoming {
    rx: mpsc::Receiver<GrpcTlsConn>,
}

impl GrpcTlsIncoming {
    pub(crate) fn new(
        mut listener: LimitedListener,
        reloader: Arc<Reloader>,
        handshake_timeout: Duration,
    ) -> GrpcTlsIncoming {
        use axum::serve::Listener as _;
        let (tx, rx) = mpsc::channel(HANDSHAKED_QUEUE);
        tokio::spawn(async move {
            loop {
                let (sock, addr) = tokio::select! {
                    _ = tx.closed() => return,
                    a = listener.accept() => a,
                };
                let (tx, acceptor) = (tx.clone(), reloader.acceptor());
                tokio::spawn(async move {
                    if let Ok(Ok(s)) = tokio::time::timeout(handshake_timeout, acceptor.accept(sock)).await {
                        let info =
                            PeerInfo { addr, cert_ids: peer_ids(s.get_ref().1), refused: s.get_ref().0.refusal() };
                        let _ = tx.send(GrpcTlsConn { inner: s, info }).await;
                    }
                });
            }
        });
        GrpcTlsIncoming { rx }
    }
}

impl futures_core::Stream for GrpcTlsIncoming {
    type Item = Result<GrpcTlsConn, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|c| c.map(Ok))
    }
}
