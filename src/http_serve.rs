//! One HTTP/1 accept loop with limits, for every server in the crate: the
//! agent's `/healthz` endpoint, the reference worker's API and the trickle
//! server. A failing `accept` (out of file descriptors) pauses instead of
//! spinning, a client that never finishes its headers is dropped,
//! connections are capped (in all and per remote IP, so one client cannot
//! take them all; a refused connection gets a one-line 503 or 429 naming the
//! limit, then is closed), and a [`Shutdown`] stops accepting, then lets each
//! open connection finish its request within a grace period (none: dropped).
//!
//! [`serve`] hands every connection a clone of one service on the raw
//! socket. A server that needs more per connection implements
//! [`Connections`] and calls [`serve_connections`]: the trickle server wraps
//! each socket so its handlers can slip interim `100 Continue` responses in,
//! and counts the connections it refuses. (Its idle-channel sweep is a task
//! of its own beside this loop, stopped by the same `Shutdown`.)

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::shutdown::Shutdown;
use crate::sync::LockIgnoringPoison;

/// Errors a service or body may hand to hyper.
type BoxError = Box<dyn StdError + Send + Sync>;

/// What one listener allows.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Open connections at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// Open connections from one remote IP at once.
    pub max_connections_per_ip: usize,
    /// A client must send its request headers within this time.
    pub header_read_timeout: Duration,
    /// After shutdown, how long open connections may take to finish. Zero
    /// drops them at once, mid-request.
    pub shutdown_grace: Duration,
    /// How long a failing `accept` pauses before the next try.
    pub accept_error_pause: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            max_connections_per_ip: 64,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(2),
            accept_error_pause: Duration::from_millis(100),
        }
    }
}

/// How [`serve_connections`] sets up each accepted connection.
pub trait Connections: Send + 'static {
    /// The socket as hyper reads and writes it; a wrapper may add bytes of
    /// its own between hyper's.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The body of the service's responses.
    type Body: Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
    /// Answers the requests of one connection.
    type Service: Service<
            Request<Incoming>,
            Response = Response<Self::Body>,
            Future: Send + 'static,
            Error: Into<BoxError>,
        > + Send
        + 'static;

    /// The IO and the service for a connection just accepted from `peer`.
    fn open(&self, stream: TcpStream, peer: SocketAddr) -> (Self::Io, Self::Service);

    /// Told of each connection closed unserved at a connection limit.
    fn refused(&self, _peer: SocketAddr, _why: Refusal) {}
}

/// Which limit a connection was refused at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener's `max_connections`.
    ConnectionLimit,
    /// The peer's IP already holds `max_connections_per_ip`.
    PerIpLimit,
}

/// Open connections per remote IP; an entry goes when its count is zero.
#[derive(Debug, Default, Clone)]
struct PerIp(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One connection counted against its IP until dropped.
struct IpSlot {
    per_ip: PerIp,
    ip: IpAddr,
}

impl PerIp {
    fn take(&self, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut map = self.0.lock_ignoring_poison();
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            per_ip: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.per_ip.0.lock_ignoring_poison();
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Refused connections being answered at once; past it they are just closed.
const MAX_REFUSALS_ANSWERING: usize = 64;

/// Tells a refused client why in a one-line answer, then closes: its request
/// is drained briefly first, so the close does not reset the connection
/// before the answer is read.
async fn answer_refusal(mut stream: TcpStream, status: &str, why: String) {
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{why}",
        why.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Every connection gets a clone of one service, on the raw socket.
struct SharedService<S>(S);

impl<S, B> Connections for SharedService<S>
where
    S: Service<
            Request<Incoming>,
            Response = Response<B>,
            Future: Send + 'static,
            Error: Into<BoxError>,
        > + Clone
        + Send
        + 'static,
    B: Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    type Io = TcpStream;
    type Body = B;
    type Service = S;

    fn open(&self, stream: TcpStream, _peer: SocketAddr) -> (TcpStream, S) {
        (stream, self.0.clone())
    }
}

/// Serves `service` on `listener` until `shutdown` fires.
pub async fn serve<S, B>(listener: TcpListener, service: S, limits: ServeLimits, shutdown: Shutdown)
where
    S: Service<
            Request<Incoming>,
            Response = Response<B>,
            Future: Send + 'static,
            Error: Into<BoxError>,
        > + Clone
        + Send
        + 'static,
    B: Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    serve_connections(listener, SharedService(service), limits, shutdown).await;
}

/// Serves each connection as `connections` sets it up, on `listener`, until
/// `shutdown` fires.
pub async fn serve_connections<C: Connections>(
    listener: TcpListener,
    connections: C,
    limits: ServeLimits,
    mut shutdown: Shutdown,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_ip = PerIp::default();
    let answering = Arc::new(Semaphore::new(MAX_REFUSALS_ANSWERING));
    let mut open = tokio::task::JoinSet::new();
    let mut refused_logged: Option<tokio::time::Instant> = None;
    let mut refused_since_logged: u64 = 0;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.recv() => break,
            Some(_) = open.join_next(), if !open.is_empty() => continue,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "accept failed; pausing");
                tokio::time::sleep(limits.accept_error_pause).await;
                continue;
            }
        };
        let slot = per_ip.take(peer.ip(), limits.max_connections_per_ip.max(1));
        let permit = permits.clone().try_acquire_owned().ok();
        let (slot, permit) = match (slot, permit) {
            (Some(slot), Some(permit)) => (slot, permit),
            (slot, permit) => {
                let per_ip_only = permit.is_some();
                drop((slot, permit));
                let (why, status, msg) = if per_ip_only {
                    let limit = limits.max_connections_per_ip;
                    (
                        Refusal::PerIpLimit,
                        "429 Too Many Requests",
                        format!(
                            "Too many connections from {} (limit {limit} per client)\n",
                            peer.ip()
                        ),
                    )
                } else {
                    (
                        Refusal::ConnectionLimit,
                        "503 Service Unavailable",
                        format!("Too many connections (limit {})\n", limits.max_connections),
                    )
                };
                connections.refused(peer, why);
                refused_since_logged += 1;
                let now = tokio::time::Instant::now();
                if refused_logged.is_none_or(|t| now.duration_since(t) > Duration::from_secs(10)) {
                    warn!(
                        limit = limits.max_connections,
                        per_ip_limit = limits.max_connections_per_ip,
                        %peer,
                        ?why,
                        refused = refused_since_logged,
                        "connection limit reached, refusing"
                    );
                    refused_logged = Some(now);
                    refused_since_logged = 0;
                }
                match answering.clone().try_acquire_owned() {
                    Ok(answering) => {
                        tokio::spawn(async move {
                            answer_refusal(stream, status, msg).await;
                            drop(answering);
                        });
                    }
                    Err(_) => drop(stream),
                }
                continue;
            }
        };
        let (io, service) = connections.open(stream, peer);
        let mut stop = shutdown.clone();
        open.spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r {
                    debug!(%peer, error = %e, "connection ended with an error");
                },
                _ = stop.recv() => if !limits.shutdown_grace.is_zero() {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(limits.shutdown_grace, conn).await;
                }
            }
            drop(permit);
            drop(slot);
        });
    }
    if !limits.shutdown_grace.is_zero() {
        let _ = tokio::time::timeout(limits.shutdown_grace, async {
            while open.join_next().await.is_some() {}
        })
        .await;
    }
    open.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::shutdown::ShutdownTrigger;

    const PATIENCE: Duration = Duration::from_secs(10);

    async fn start(
        limits: ServeLimits,
    ) -> (SocketAddr, ShutdownTrigger, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = service_fn(|_req: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        });
        let (trigger, shutdown) = ShutdownTrigger::new();
        (
            addr,
            trigger,
            tokio::spawn(serve(listener, svc, limits, shutdown)),
        )
    }

    /// Reads until the peer closes; the bytes it sent before.
    async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
        let mut all = Vec::new();
        tokio::time::timeout(PATIENCE, s.read_to_end(&mut all))
            .await
            .expect("the server closes the connection")
            .ok();
        all
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_dropped() {
        let (addr, _stop, _task) = start(ServeLimits {
            header_read_timeout: Duration::from_millis(200),
            ..Default::default()
        })
        .await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let got = until_closed(&mut slow).await;
        assert!(
            !got.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        // The server still answers others.
        let mut ok = TcpStream::connect(addr).await.unwrap();
        ok.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(until_closed(&mut ok).await.starts_with(b"HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn connections_past_the_limit_are_closed_at_once() {
        let (addr, _stop, _task) = start(ServeLimits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(30),
            ..Default::default()
        })
        .await;
        // The first holds the only permit (headers unfinished).
        let mut first = TcpStream::connect(addr).await.unwrap();
        first.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        let _ = second.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let refused = String::from_utf8_lossy(&until_closed(&mut second).await).to_string();
        assert!(
            refused.starts_with("HTTP/1.1 503")
                && refused.ends_with("Too many connections (limit 1)\n"),
            "{refused}"
        );
        // Once the first finishes, the slot is free again (its permit goes
        // just after its socket closes: retry until a request is answered).
        first
            .write_all(b"Host: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(until_closed(&mut first).await.starts_with(b"HTTP/1.1 200"));
        tokio::time::timeout(PATIENCE, async {
            loop {
                let mut next = TcpStream::connect(addr).await.unwrap();
                let _ = next
                    .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await;
                if until_closed(&mut next).await.starts_with(b"HTTP/1.1 200") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("a connection is served once the first has ended");
    }

    #[tokio::test]
    async fn one_ip_at_its_limit_gets_429_while_another_ip_is_served() {
        let (addr, _stop, _task) = start(ServeLimits {
            max_connections: 8,
            max_connections_per_ip: 2,
            header_read_timeout: Duration::from_secs(30),
            ..Default::default()
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
            held.push(c);
        }
        let mut third = TcpStream::connect(addr).await.unwrap();
        let refused = String::from_utf8_lossy(&until_closed(&mut third).await).to_string();
        assert!(
            refused.starts_with("HTTP/1.1 429")
                && refused.contains("Too many connections from 127.0.0.1 (limit 2 per client)"),
            "{refused}"
        );
        let other = tokio::net::TcpSocket::new_v4().unwrap();
        other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut other = other.connect(addr).await.unwrap();
        other
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(until_closed(&mut other).await.starts_with(b"HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_ends_the_loop() {
        let (addr, stop, task) = start(ServeLimits::default()).await;
        stop.trigger();
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    }

    /// Serves [`SaysOk`] behind a socket that says hello first, and counts
    /// refusals.
    #[derive(Clone, Default)]
    struct Greeting {
        refused: Arc<AtomicUsize>,
    }

    /// Writes `hello\n` before hyper's first byte.
    struct Hello {
        inner: TcpStream,
        greeted: bool,
    }

    impl AsyncRead for Hello {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Hello {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            if !self.greeted {
                // Loopback takes six bytes at once; a test need not loop.
                std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_write(cx, b"hello\n"))?;
                self.greeted = true;
            }
            std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// Answers `ok` to everything.
    struct SaysOk;

    impl Service<Request<Incoming>> for SaysOk {
        type Response = Response<Full<Bytes>>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn call(&self, _req: Request<Incoming>) -> Self::Future {
            std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
        }
    }

    impl Connections for Greeting {
        type Io = Hello;
        type Body = Full<Bytes>;
        type Service = SaysOk;

        fn open(&self, stream: TcpStream, _peer: SocketAddr) -> (Hello, SaysOk) {
            let io = Hello {
                inner: stream,
                greeted: false,
            };
            (io, SaysOk)
        }

        fn refused(&self, _peer: SocketAddr, _why: Refusal) {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn connections_wrap_each_socket_and_hear_of_refusals() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let greeting = Greeting::default();
        let limits = ServeLimits {
            max_connections: 1,
            ..Default::default()
        };
        let (_stop, shutdown) = ShutdownTrigger::new();
        tokio::spawn(serve_connections(
            listener,
            greeting.clone(),
            limits,
            shutdown,
        ));
        let mut held = TcpStream::connect(addr).await.unwrap();
        held.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut refused = TcpStream::connect(addr).await.unwrap();
        // Answered by the loop itself, not the wrapped socket.
        assert!(
            until_closed(&mut refused)
                .await
                .starts_with(b"HTTP/1.1 503")
        );
        assert_eq!(greeting.refused.load(Ordering::Relaxed), 1);
        held.write_all(b"Host: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = until_closed(&mut held).await;
        assert!(
            got.starts_with(b"hello\nHTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }

    #[tokio::test]
    async fn without_a_grace_period_shutdown_drops_open_connections() {
        let (addr, stop, task) = start(ServeLimits {
            shutdown_grace: Duration::ZERO,
            header_read_timeout: Duration::from_secs(30),
            ..Default::default()
        })
        .await;
        // Half a request: with a grace period the server would wait for it.
        let mut open = TcpStream::connect(addr).await.unwrap();
        open.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        // Let the loop take the connection in before it is told to stop.
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.trigger();
        // Well inside the default grace period of 2 s.
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("serve returns at once")
            .unwrap();
        assert!(until_closed(&mut open).await.is_empty());
    }
}
