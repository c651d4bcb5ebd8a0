//! A TCP listener that holds at most a fixed number of connections open, and closes
//! connections the server has written nothing to for a while.
//!
//! The idle rule is "no response bytes for `idle_timeout`", not "no bytes at all": a
//! client that trickles a request one byte at a time (slowloris) never gets an answer,
//! so it is cut off like a connection left idle between requests. Every request the
//! server works on is bounded well below the default (bodies and queries by
//! `request_timeout`, receipts by `receipt_timeout`).
//!
//! Connections are also counted per client (see [`crate::per_client`]): one past its
//! client's share is handed out marked refused, without a connection slot, to be
//! answered and closed within [`REFUSAL_LIFETIME`], or closed at once.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::per_client::{ClientSlot, PerClient, REFUSAL_LIFETIME, REFUSAL_SLOTS, Refusal};

/// Accepts connections while fewer than the limit are open; past it, new connections
/// wait in the kernel's accept backlog until one closes, or, after
/// [`LimitedListener::refusing_past_total`], are accepted and refused like a
/// connection over its client's share.
pub(crate) struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    idle_timeout: Duration,
    per_client: Arc<PerClient>,
    /// Refused connections being answered (at most `REFUSAL_SLOTS`).
    refusals: Arc<Semaphore>,
    /// Whether a connection past the total is refused rather than left in the backlog.
    refuse_past_total: bool,
    max_connections: usize,
}

impl LimitedListener {
    /// Connections over their client's share are handed out marked refused, to be
    /// answered, while fewer than `REFUSAL_SLOTS` are; past that they are closed.
    pub(crate) fn new(
        inner: TcpListener,
        max_connections: usize,
        idle_timeout: Duration,
        per_client: Arc<PerClient>,
    ) -> LimitedListener {
        LimitedListener {
            inner,
            permits: Arc::new(Semaphore::new(max_connections)),
            idle_timeout,
            per_client,
            refusals: Arc::new(Semaphore::new(REFUSAL_SLOTS)),
            refuse_past_total: false,
            max_connections,
        }
    }

    /// Connections past `max_connections` are accepted and handed out refused
    /// ([`Refusal::Total`]), answered within [`REFUSAL_LIFETIME`] and counted, instead
    /// of waiting unanswered in the kernel's backlog. For OTLP/gRPC: a channel whose
    /// connection waits in the backlog sees each call time out, while a refusal is
    /// answered with a status exporters retry after its delay.
    pub(crate) fn refusing_past_total(mut self) -> LimitedListener {
        self.refuse_past_total = true;
        self
    }

    /// A connection slot: waits for one, or, when refusing past the total, takes one
    /// if free.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        if self.refuse_past_total {
            self.permits.clone().try_acquire_owned().ok()
        } else {
            Some(self.permits.clone().acquire_owned().await.expect("the semaphore is never closed"))
        }
    }
}

/// A connection that gives its permit back when it closes.
pub(crate) struct Conn {
    stream: TcpStream,
    /// A connection slot, or for a refused connection a refusal slot.
    _permit: OwnedSemaphorePermit,
    /// The client's share; `None` for a refused connection.
    _client: Option<ClientSlot>,
    /// Why the connection is refused; `None` for a served one.
    refusal: Option<Refusal>,
    peer: SocketAddr,
    idle_timeout: Duration,
    /// When the connection is closed unless the server writes before.
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl axum::serve::Listener for LimitedListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        // Waiting for a slot before accepting leaves connections past the total in the
        // kernel's backlog; when refusing past the total, the slot is taken after.
        let mut waited = if self.refuse_past_total { None } else { self.slot().await };
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    // Acknowledgements are small writes that must not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    let refusal = match self.per_client.try_open(addr) {
                        Some(slot) => {
                            let permit = match waited.take() {
                                Some(p) => Some(p),
                                None => self.slot().await,
                            };
                            if let Some(permit) = permit {
                                let deadline = Box::pin(tokio::time::sleep(self.idle_timeout));
                                let idle_timeout = self.idle_timeout;
                                let client = Some(slot);
                                let conn = Conn {
                                    stream,
                                    _permit: permit,
                                    _client: client,
                                    refusal: None,
                                    peer: addr,
                                    idle_timeout,
                                    deadline,
                                };
                                return (conn, addr);
                            }
                            drop(slot);
                            self.per_client.refuse_past_total(addr, self.max_connections);
                            Refusal::Total
                        }
                        None => Refusal::ClientShare,
                    };
                    // Refused: answered without a connection slot, within a fixed
                    // lifetime that writes do not extend, or closed right away.
                    if let Ok(refusal_slot) = self.refusals.clone().try_acquire_owned() {
                        let deadline = Box::pin(tokio::time::sleep(REFUSAL_LIFETIME));
                        let conn = Conn {
                            stream,
                            _permit: refusal_slot,
                            _client: None,
                            refusal: Some(refusal),
                            peer: addr,
                            idle_timeout: REFUSAL_LIFETIME,
                            deadline,
                        };
                        return (conn, addr);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionRefused
                    ) => {}
                Err(e) => {
                    // Typically out of file descriptors: wait instead of spinning.
                    tracing::error!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl Conn {
    /// Whether the connection is over its client's share (or the total) and is only
    /// to be refused.
    pub(crate) fn refused(&self) -> bool {
        self.refusal.is_some()
    }

    /// Why the connection is refused, if it is.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        self.refusal
    }

    /// The client's address.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn wrote(&mut self, r: &Poll<io::Result<usize>>) {
        if !self.refused() && matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
            let next = tokio::time::Instant::now() + self.idle_timeout;
            self.deadline.as_mut().reset(next);
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no response for {} s: closing the connection", this.idle_timeout.as_secs_f64()),
                ))),
                Poll::Pending => Poll::Pending,
            },
            ready => ready,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.wrote(&r);
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = crate::tls::PeerInfo;

    fn connect_info(&self) -> crate::tls::PeerInfo {
        crate::tls::PeerInfo { addr: self.peer, cert_ids: None, refused: self.refusal() }
    }
}

/// The connections of a [`LimitedListener`] as the stream tonic serves (plain
/// OTLP/gRPC).
pub(crate) struct Incoming {
    rx: tokio::sync::mpsc::Receiver<Conn>,
}

impl Incoming {
    pub(crate) fn new(mut listener: LimitedListener) -> Incoming {
        use axum::serve::Listener as _;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let (conn, _) = tokio::select! {
                    _ = tx.closed() => return,
                    c = listener.accept() => c,
                };
                if tx.send(conn).await.is_err() {
                    return;
                }
            }
        });
        Incoming { rx }
    }
}

impl futures_core::Stream for Incoming {
    type Item = Result<Conn, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|c| c.map(Ok))
    }
}
