//! The HTTP/1.1 connection loop: hyper's HTTP/1 server with stele's limits on the
//! request head, graceful shutdown, and the answer to connections over their client's
//! share.
//!
//! **Request head.** The request line and headers together may take at most
//! `max_header_bytes` (hyper's read buffer, `max_buf_size`) and 100 header fields
//! (hyper's default). Past either, hyper itself answers and closes the connection:
//! `HTTP/1.1 431 Request Header Fields Too Large` with `content-length: 0` and no
//! body (a request target longer than 65 534 bytes gets `414 URI Too Long` the same
//! way). The head is parsed before any route runs, so this answer carries no JSON
//! body; it is the only error of the server without one.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tower::ServiceExt as _;

use crate::listener::Conn;
use crate::tls::PeerInfo;

/// Default `max_header_bytes` (64 KiB): the request line and headers of stele's
/// clients are a few hundred bytes (a bearer token, a stream, an idempotency key);
/// 64 KiB is eight times the 8 KiB per header line of common proxies, so long
/// JWTs and headers added by proxies fit, while 1024 connections' heads stay within
/// 64 MiB of memory (hyper's own default is about 400 KiB).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 << 10;
/// The smallest `max_header_bytes` hyper accepts (its initial read buffer).
pub const MIN_MAX_HEADER_BYTES: usize = 8 << 10;

/// What the server learns about a connection before serving it.
pub(crate) trait Peer {
    /// The client's address and, after mutual TLS, its certificate identities.
    fn peer_info(&self) -> PeerInfo;
    /// Whether the connection is over its client's share (see [`crate::per_client`]).
    fn refused(&self) -> bool;
}

impl Peer for Conn {
    fn peer_info(&self) -> PeerInfo {
        PeerInfo { addr: self.peer(), cert_ids: None, refused: Conn::refusal(self) }
    }

    fn refused(&self) -> bool {
        Conn::refused(self)
    }
}

impl Peer for tokio_rustls::server::TlsStream<Conn> {
    fn peer_info(&self) -> PeerInfo {
        let (conn, tls) = self.get_ref();
        PeerInfo { addr: conn.peer(), cert_ids: crate::tls::peer_ids(tls), refused: conn.refusal() }
    }

    fn refused(&self) -> bool {
        self.get_ref().0.refused()
    }
}

/// Serves `router` on every connection `listener` accepts until `shutdown` completes,
/// then stops accepting, lets requests in progress finish and returns once every
/// connection is closed. Each request carries `ConnectInfo<PeerInfo>`.
pub(crate) async fn serve<L>(
    mut listener: L,
    router: Router,
    max_header_bytes: usize,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener<Addr = SocketAddr>,
    L::Io: Peer,
{
    let mut shutdown = pin!(shutdown);
    // Connections watch `stop` for the shutdown, and hold `open` until they end.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let (io, _) = tokio::select! {
            c = listener.accept() => c,
            () = &mut shutdown => break,
        };
        let (peer, refused) = (io.peer_info(), io.refused());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.max_buf_size(max_header_bytes);
        let (mut stop, open) = (stop_rx.clone(), open_rx.clone());
        if refused {
            builder.keep_alive(false);
            tokio::spawn(async move {
                let answer = hyper::service::service_fn(|_| async {
                    Ok::<_, Infallible>(crate::per_client::refusal_response())
                });
                let _ = builder.serve_connection(TokioIo::new(io), answer).await;
                drop(open);
            });
            continue;
        }
        let addr = peer.addr;
        let service = router.clone().map_request(move |mut req: axum::http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer.clone()));
            req
        });
        tokio::spawn(async move {
            let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
            let mut conn = pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(peer = %addr, "HTTP connection ended: {e}");
                        }
                        break;
                    }
                    _ = stop.wait_for(|s| *s), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(open);
        });
    }
    let _ = stop_tx.send(true);
    drop(open_rx);
    drop(listener);
    open_tx.closed().await;
}
