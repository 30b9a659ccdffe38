//! The accept loop: TCP, optional TLS handshake, HTTP/1.1 or HTTP/2, graceful shutdown.
//!
//! We run our own loop (rather than `axum::serve`) to terminate TLS with rustls and to hand each
//! request the peer's address and certificate chain, which certificate auth and token binding
//! need.
//!
//! Every connection is bounded: at most `max_connections` at once (past it, a new connection
//! waits briefly for a slot and is then closed), the first byte must come within
//! `first_byte_timeout`, and a connection with no request in flight is closed after
//! `idle_timeout`, whatever its protocol (HTTP/1, h2c, TLS). Idleness is measured between
//! requests rather than bytes, so HTTP/2 pings (which keep a dead peer from holding a request
//! forever) do not keep an idle connection open.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Who is on the other end of a connection; inserted into every request's extensions.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub remote_addr: SocketAddr,
    /// The client's verified certificate chain (leaf first), when it presented one.
    pub certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// Limits of the accept loop.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after shutdown starts.
    pub shutdown_grace: Duration,
    /// A connection that sends no byte for this long after it is accepted is closed.
    pub first_byte_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long a connection past `max_connections` waits for a slot before it is closed.
    pub connection_wait: Duration,
    /// HTTP/2 pings: how often, and how long to wait for the answer before closing.
    pub http2_keep_alive_interval: Duration,
    pub http2_keep_alive_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            tls: None,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            first_byte_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_connections: 1024,
            connection_wait: Duration::from_secs(1),
            http2_keep_alive_interval: Duration::from_secs(30),
            http2_keep_alive_timeout: Duration::from_secs(20),
        }
    }
}

/// What a connection did last, shared by its byte stream, its requests and its watchdog.
#[derive(Debug)]
struct Activity {
    started: Instant,
    /// Whether any byte arrived.
    spoke: AtomicBool,
    /// Requests being handled.
    in_flight: AtomicUsize,
    /// When the last request ended, in milliseconds since `started`.
    last_done_ms: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            started: Instant::now(),
            spoke: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
        })
    }

    fn since_start_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Counts one request in flight for as long as it lives.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .last_done_ms
            .store(self.0.since_start_ms(), Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Completes when the connection has been quiet too long: no byte within `first_byte`, or no
/// request in flight for `idle`.
async fn watchdog(activity: Arc<Activity>, first_byte: Duration, idle: Duration) -> &'static str {
    loop {
        let now = activity.started.elapsed();
        let wait = if !activity.spoke.load(Ordering::SeqCst) {
            if now >= first_byte {
                return "no first byte";
            }
            first_byte - now
        } else if activity.in_flight.load(Ordering::SeqCst) > 0 {
            idle
        } else {
            let last = Duration::from_millis(activity.last_done_ms.load(Ordering::SeqCst));
            let deadline = last + idle;
            if now >= deadline {
                return "idle";
            }
            deadline - now
        };
        tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
    }
}

/// A byte stream that notes when its first byte arrives.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.spoke.store(true, Ordering::Relaxed);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// At most one warning per interval for a repeated failure, with the count it stands for.
struct Throttled {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    fn new(interval: Duration) -> Throttled {
        Throttled {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(count of events since the last warning)` when a warning is due.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                let count = self.suppressed + 1;
                self.suppressed = 0;
                Some(count)
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains connections.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let acceptor = options.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(options.http2_keep_alive_interval))
        .keep_alive_timeout(options.http2_keep_alive_timeout);
    let builder = Arc::new(builder);
    let max_connections = options.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max_connections));
    let refusals = Arc::new(std::sync::Mutex::new(Throttled::new(Duration::from_secs(
        10,
    ))));
    let mut accept_errors = Throttled::new(Duration::from_secs(10));
    let mut backoff = Duration::ZERO;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, remote_addr) = match accepted {
            Ok(accepted) => {
                backoff = Duration::ZERO;
                accepted
            }
            Err(error) => {
                // Running out of file descriptors and the like: back off (up to a second),
                // keep serving the connections we have, and say so at most every 10 s.
                backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                if let Some(count) = accept_errors.due() {
                    tracing::warn!(%error, count, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {},
                    () = &mut shutdown => break,
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let slot = slots.clone().try_acquire_owned().ok();
        let slots = slots.clone();
        let refusals = refusals.clone();
        let app = app.clone();
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        let options = options.clone();
        tokio::spawn(async move {
            let _slot = match slot {
                Some(slot) => slot,
                None => match tokio::time::timeout(options.connection_wait, slots.acquire_owned())
                    .await
                {
                    Ok(Ok(slot)) => slot,
                    _ => {
                        let due = refusals
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .due();
                        if let Some(count) = due {
                            tracing::warn!(%remote_addr, count, max_connections, "connection limit reached; closing new connections");
                        }
                        return;
                    }
                },
            };
            let activity = Activity::new();
            let stream = Watched {
                inner: stream,
                activity: activity.clone(),
            };
            let serve_io = |io, peer: PeerInfo| {
                let service =
                    app.map_request(move |mut request: hyper::Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(peer.clone());
                        request
                    });
                let counted = activity.clone();
                let service = tower::service_fn(move |request| {
                    let in_flight = InFlight::enter(&counted);
                    let service = service.clone();
                    async move {
                        let response = service.oneshot(request).await;
                        drop(in_flight);
                        response
                    }
                });
                let connection =
                    builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
                watcher.watch(connection.into_owned())
            };
            let connection = async {
                match acceptor {
                    None => {
                        let peer = PeerInfo {
                            remote_addr,
                            certificates: None,
                        };
                        serve_io(Box::new(stream) as Box<dyn Io>, peer).await
                    }
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(
                            options.tls_handshake_timeout,
                            acceptor.accept(stream),
                        )
                        .await;
                        let tls = match handshake {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(error)) => {
                                tracing::debug!(%remote_addr, %error, "TLS handshake failed");
                                return Ok(());
                            }
                            Err(_) => {
                                tracing::debug!(%remote_addr, "TLS handshake timed out");
                                return Ok(());
                            }
                        };
                        let certificates = tls.get_ref().1.peer_certificates().map(|chain| {
                            Arc::new(chain.iter().map(|c| c.clone().into_owned()).collect())
                        });
                        let peer = PeerInfo {
                            remote_addr,
                            certificates,
                        };
                        serve_io(Box::new(tls) as Box<dyn Io>, peer).await
                    }
                }
            };
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%remote_addr, %error, "connection ended with an error");
                    }
                }
                reason = watchdog(activity.clone(), options.first_byte_timeout, options.idle_timeout) => {
                    tracing::debug!(%remote_addr, reason, "closing a quiet connection");
                }
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining connections");
    if tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
    Ok(())
}

/// A connection's byte stream, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}
