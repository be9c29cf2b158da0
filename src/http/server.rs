//! The HTTP server: our own accept loop over hyper's HTTP/1.1 connections, so that every
//! connection is held to [`HttpLimits`] before a handler sees it. `axum::serve` has no limits
//! to set, and hyper's own header timer also runs while a keep-alive connection is idle, so one
//! setting could not say both "a head arrives within 10 s" and "an idle connection may wait a
//! minute".
//!
//! - **Connections** are capped by a semaphore: each holds a permit for as long as its socket is
//!   open, upgraded media WebSockets included (the permit travels inside the socket). One more
//!   is answered `503` with `Connection: close` and closed; the refusals are logged at most once
//!   a second, with their count, since a flood of them costs its sender nothing.
//! - **Header timeout** (slowloris): a request's head must be complete within
//!   `header_timeout` of the connection opening, or of the first byte after a keep-alive pause.
//!   Bytes dribbled in do not extend it. A connection that misses it is closed (there is no
//!   request to answer) with one log line.
//! - **Idle timeout**: a keep-alive connection that starts no request for `idle_timeout` is
//!   closed quietly.
//! - **Shutdown**: accepting stops, every connection finishes its request in flight and
//!   closes; upgraded WebSockets are no longer the server's (calls are tracked by `lifecycle`).
//!
//! HTTP/1.1 only: Plivo's webhooks, its media WebSocket and the API all speak it.

use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body, http::Request, response::Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;

use crate::config::HttpLimits;

/// Refused connections being answered at once; beyond this a refused connection is closed
/// without an answer, so a flood of refusals cannot hold sockets of its own.
pub const MAX_REFUSALS_IN_FLIGHT: usize = 64;
/// How long a refused connection is kept to deliver its 503 and read what the client sent
/// (closing with unread input would reset the connection and lose the answer).
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// The most a refused connection's input is read before it is closed.
const REFUSAL_DRAIN_BYTES: usize = 16 * 1024;
/// At most one log line per this interval about refused connections.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);
/// After an accept error that is not about one connection (out of file descriptors), the loop
/// waits this long before accepting again, as `axum::serve` does.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// The answer to a connection over the limit.
const REFUSAL_ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\n\
retry-after: 1\r\nconnection: close\r\n\r\ntoo many connections\n";

/// Serves `router` on `listener` until `stop` is cancelled, then lets every connection finish
/// its request in flight and returns once they are all closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) {
    let connections = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let mut refusal_log = RefusalLog::default();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                tracing::error!(%error, "accepting a connection failed");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        // Media frames are small and latency-bound: no Nagle delay on any connection.
        let _ = tcp.set_nodelay(true);
        // At most this much unsent data waits in the kernel: a peer that stops reading blocks
        // our writes within seconds, not after megabytes.
        let _ = socket2::SockRef::from(&tcp)
            .set_tcp_notsent_lowat(crate::http::SOCKET_NOTSENT_LOWAT_BYTES);
        match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => {
                let io = LimitedIo::new(tcp, permit);
                connections.spawn(serve_connection(
                    io,
                    peer,
                    router.clone(),
                    limits,
                    stop.clone(),
                ));
            }
            Err(_) => {
                metrics::counter!(crate::metrics::HTTP_CONNECTIONS_REFUSED).increment(1);
                refusal_log.refused(Instant::now(), peer, limits.max_connections);
                if let Ok(slot) = Arc::clone(&refusals).try_acquire_owned() {
                    connections.spawn(async move {
                        refuse(tcp).await;
                        drop(slot);
                    });
                }
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Errors about one connection (the peer gave up before we accepted): nothing to wait for.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Answers 503 and closes, after reading (a little of) what the client sent.
async fn refuse(mut tcp: TcpStream) {
    let answer = async {
        tcp.write_all(REFUSAL_ANSWER).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 1024];
        let mut drained = 0;
        while drained < REFUSAL_DRAIN_BYTES {
            match tcp.read(&mut sink).await? {
                0 => break,
                read => drained += read,
            }
        }
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, answer).await;
}

/// Logs refused connections at most once per [`REFUSAL_LOG_INTERVAL`], with how many there
/// were since the previous line.
#[derive(Debug, Default)]
struct RefusalLog {
    last_line: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    fn refused(&mut self, now: Instant, peer: std::net::SocketAddr, limit: usize) {
        self.unlogged += 1;
        if self
            .last_line
            .is_some_and(|last| now.duration_since(last) < REFUSAL_LOG_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            %peer,
            refused = self.unlogged,
            limit,
            "connection refused with 503: at VG_HTTP_MAX_CONNECTIONS"
        );
        self.last_line = Some(now);
        self.unlogged = 0;
    }
}

/// Serves one connection under its header and idle timeouts.
async fn serve_connection(
    io: LimitedIo,
    peer: std::net::SocketAddr,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) {
    let activity = Arc::clone(&io.activity);
    let service = ConnectionService {
        router,
        activity: Arc::clone(&activity),
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut closing = false;
    loop {
        // Closing, an idle connection is already being closed; a head being read still has
        // its deadline, so a slow client cannot hold the shutdown.
        let expiry = activity
            .clock()
            .expiry(limits)
            .filter(|(_, what)| !(closing && *what == Expiry::Idle));
        if let Some((at, _)) = expiry {
            timer.as_mut().reset(at);
        }
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            _ = activity.changed.notified() => {}
            _ = stop.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = &mut timer, if expiry.is_some() => match expiry.map(|(_, what)| what) {
                Some(Expiry::HeaderTimeout) => {
                    metrics::counter!(crate::metrics::HTTP_HEADER_TIMEOUTS).increment(1);
                    tracing::warn!(
                        %peer,
                        timeout = ?limits.header_timeout,
                        "connection closed: no complete request head within VG_HTTP_HEADER_TIMEOUT_SECS"
                    );
                    return; // Dropping the connection closes the socket.
                }
                Some(Expiry::Idle) | None => {
                    tracing::debug!(%peer, "idle keep-alive connection closed");
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            },
        }
    }
}

/// Which timeout a connection is waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    HeaderTimeout,
    Idle,
}

/// Where a connection stands, for its timeouts. Pure: time is a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnectionClock {
    /// A request's head is being read since `since`.
    Head { since: Instant },
    /// Requests whose answer is not yet written; no timeout of ours applies.
    Busy { requests: usize },
    /// Between requests since `since`.
    Idle { since: Instant },
}

impl ConnectionClock {
    fn opened(now: Instant) -> Self {
        Self::Head { since: now }
    }

    /// hyper parsed a request's head.
    fn request_started(&mut self) {
        *self = match *self {
            Self::Busy { requests } => Self::Busy {
                requests: requests + 1,
            },
            Self::Head { .. } | Self::Idle { .. } => Self::Busy { requests: 1 },
        };
    }

    /// A request's answer was written (or abandoned). Returns whether the connection is now
    /// idle.
    fn request_finished(&mut self, now: Instant) -> bool {
        if let Self::Busy { requests } = *self {
            *self = match requests {
                0 | 1 => Self::Idle { since: now },
                more => Self::Busy { requests: more - 1 },
            };
        }
        matches!(self, Self::Idle { .. })
    }

    /// Bytes arrived: after a pause they begin the next request's head.
    fn bytes_arrived(&mut self, now: Instant) {
        if let Self::Idle { .. } = self {
            *self = Self::Head { since: now };
        }
    }

    /// When the connection must be closed, and why; `None` while a request is in flight.
    fn expiry(&self, limits: HttpLimits) -> Option<(Instant, Expiry)> {
        match *self {
            Self::Head { since } => Some((since + limits.header_timeout, Expiry::HeaderTimeout)),
            Self::Idle { since } => Some((since + limits.idle_timeout, Expiry::Idle)),
            Self::Busy { .. } => None,
        }
    }
}

/// What the socket, the service and the connection's task share.
#[derive(Debug)]
struct Activity {
    clock: Mutex<ConnectionClock>,
    /// Set while idle: the next read moves the clock (one atomic load per read otherwise, which
    /// is all an upgraded media socket pays).
    watching_reads: AtomicBool,
    /// Wakes the connection's task to look at the clock again.
    changed: Notify,
}

impl Activity {
    fn clock(&self) -> std::sync::MutexGuard<'_, ConnectionClock> {
        // The clock is plain data: a panic elsewhere cannot leave it half-written.
        self.clock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn request_started(&self) {
        self.clock().request_started();
        self.changed.notify_one();
    }

    fn request_finished(&self) {
        let idle = self.clock().request_finished(Instant::now());
        self.watching_reads.store(idle, Ordering::Release);
        self.changed.notify_one();
    }

    fn bytes_arrived(&self) {
        // A plain load first: the swap, a locked instruction, only when idle.
        if self.watching_reads.load(Ordering::Acquire)
            && self.watching_reads.swap(false, Ordering::AcqRel)
        {
            self.clock().bytes_arrived(Instant::now());
            self.changed.notify_one();
        }
    }
}

/// A connection's socket: holds its place under the connection limit for as long as it is
/// open (also once upgraded to a WebSocket), and tells the clock when bytes arrive.
struct LimitedIo {
    tcp: TcpStream,
    activity: Arc<Activity>,
    _permit: OwnedSemaphorePermit,
}

impl LimitedIo {
    fn new(tcp: TcpStream, permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!(crate::metrics::HTTP_CONNECTIONS).increment(1.0);
        Self {
            tcp,
            activity: Arc::new(Activity {
                clock: Mutex::new(ConnectionClock::opened(Instant::now())),
                watching_reads: AtomicBool::new(false),
                changed: Notify::new(),
            }),
            _permit: permit,
        }
    }
}

impl Drop for LimitedIo {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::HTTP_CONNECTIONS).decrement(1.0);
    }
}

impl AsyncRead for LimitedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        result
    }
}

impl AsyncWrite for LimitedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The router as one connection's hyper service: each request is marked in flight from its
/// parsed head until its answer's body is written or dropped.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    activity: Arc<Activity>,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::start(Arc::clone(&self.activity));
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(request.map(Body::new)).await?;
            Ok(response.map(|body| {
                Body::new(TrackedBody {
                    body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// A request in flight on its connection, until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.request_started();
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// An answer's body that ends its request's time in flight when hyper is done with it.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HttpLimits = HttpLimits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections: 10,
    };

    #[test]
    fn a_head_is_due_within_the_header_timeout_of_the_connection_opening() {
        let opened = Instant::now();
        let clock = ConnectionClock::opened(opened);
        assert_eq!(
            clock.expiry(LIMITS),
            Some((opened + Duration::from_secs(10), Expiry::HeaderTimeout))
        );
    }

    #[test]
    fn bytes_dribbled_into_a_head_do_not_extend_it() {
        let opened = Instant::now();
        let mut clock = ConnectionClock::opened(opened);
        for second in 1..9 {
            clock.bytes_arrived(opened + Duration::from_secs(second));
        }
        assert_eq!(
            clock.expiry(LIMITS),
            Some((opened + Duration::from_secs(10), Expiry::HeaderTimeout))
        );
    }

    #[test]
    fn no_timeout_of_ours_runs_while_a_request_is_in_flight() {
        let opened = Instant::now();
        let mut clock = ConnectionClock::opened(opened);
        clock.request_started();
        assert_eq!(clock.expiry(LIMITS), None);
        clock.bytes_arrived(opened + Duration::from_secs(30));
        assert_eq!(clock.expiry(LIMITS), None, "a body being read");
    }

    #[test]
    fn after_an_answer_the_idle_timeout_runs_until_the_next_head_begins() {
        let opened = Instant::now();
        let mut clock = ConnectionClock::opened(opened);
        clock.request_started();
        let answered = opened + Duration::from_secs(1);
        assert!(clock.request_finished(answered));
        assert_eq!(
            clock.expiry(LIMITS),
            Some((answered + Duration::from_secs(60), Expiry::Idle))
        );
        let next = answered + Duration::from_secs(40);
        clock.bytes_arrived(next);
        assert_eq!(
            clock.expiry(LIMITS),
            Some((next + Duration::from_secs(10), Expiry::HeaderTimeout)),
            "the next head has its own header timeout from its first byte"
        );
        clock.request_started();
        assert_eq!(clock.expiry(LIMITS), None);
    }

    #[test]
    fn the_connection_is_idle_only_once_every_request_is_answered() {
        let opened = Instant::now();
        let mut clock = ConnectionClock::opened(opened);
        clock.request_started();
        clock.request_started();
        assert!(!clock.request_finished(opened));
        assert_eq!(clock.expiry(LIMITS), None);
        assert!(clock.request_finished(opened));
    }

    #[test]
    fn refusals_are_logged_at_most_once_a_second_with_their_count() {
        let peer = "127.0.0.1:9".parse().unwrap();
        let start = Instant::now();
        let mut log = RefusalLog::default();
        log.refused(start, peer, 2);
        assert_eq!((log.last_line, log.unlogged), (Some(start), 0));
        for millis in [100, 200, 300] {
            log.refused(start + Duration::from_millis(millis), peer, 2);
        }
        assert_eq!((log.last_line, log.unlogged), (Some(start), 3));
        let later = start + Duration::from_millis(1000);
        log.refused(later, peer, 2);
        assert_eq!((log.last_line, log.unlogged), (Some(later), 0));
    }
}
