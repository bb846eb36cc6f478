//! One HTTP/1 accept loop with limits, for the agent's `/healthz` endpoint
//! and the reference worker's API: a failing `accept` (out of file
//! descriptors) pauses instead of spinning, a client that never finishes its
//! headers is dropped, connections are capped, and shutdown stops accepting,
//! then lets each open connection finish its request within a grace period.
//! (The trickle server keeps its own loop: it wraps each socket to send
//! interim `100 Continue` responses and sweeps idle channels.)

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::{debug, warn};

/// What one listener allows.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Open connections at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// A client must send its request headers within this time.
    pub header_read_timeout: Duration,
    /// After shutdown, how long open connections may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// Resolves once `rx` turns true or its sender is gone. The guard
/// `wait_for` returns is dropped here, so callers' futures stay `Send`.
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// How long a failing `accept` pauses before the next try.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `service` on `listener` until `shutdown` turns true (or its sender
/// is dropped).
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    limits: ServeLimits,
    mut shutdown: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = tokio::task::JoinSet::new();
    let mut refused_logged: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "accept failed; pausing");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let now = tokio::time::Instant::now();
            if refused_logged.is_none_or(|t| now.duration_since(t) > Duration::from_secs(10)) {
                warn!(limit = limits.max_connections, %peer, "connection limit reached, refusing");
                refused_logged = Some(now);
            }
            drop(stream);
            continue;
        };
        let service = service.clone();
        let mut stop = shutdown.clone();
        connections.spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r {
                    debug!(%peer, error = %e, "connection ended with an error");
                },
                _ = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(limits.shutdown_grace, conn).await;
                }
            }
            drop(permit);
        });
    }
    let _ = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const PATIENCE: Duration = Duration::from_secs(10);

    async fn start(
        limits: ServeLimits,
    ) -> (SocketAddr, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = service_fn(|_req: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        });
        let (tx, rx) = watch::channel(false);
        (addr, tx, tokio::spawn(serve(listener, svc, limits, rx)))
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
        assert!(until_closed(&mut second).await.is_empty());
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
    async fn shutdown_stops_accepting_and_ends_the_loop() {
        let (addr, stop, task) = start(ServeLimits::default()).await;
        stop.send(true).unwrap();
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    }
}
