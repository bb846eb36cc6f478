//! A hand-rolled HTTP/1.1 client that shares none of the library's
//! assumptions, for checking what the server (or the worker, or the
//! supervisor endpoint) really puts on the wire.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response head: the status and the headers in the order sent.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn num(&self, name: &str) -> Option<i64> {
        self.header(name).and_then(|v| v.parse().ok())
    }
}

/// A hand-rolled HTTP/1.1 connection.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    /// Connects from the loopback address `from` (e.g. 127.0.0.2): a
    /// second client, as the server counts clients by remote IP.
    pub async fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> Raw {
        let socket = match from {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .expect("socket");
        socket
            .bind(SocketAddr::new(from, 0))
            .unwrap_or_else(|e| panic!("bind the client socket to {from}: {e}"));
        Raw {
            stream: socket.connect(addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Sends a request with no body.
    pub async fn request(&mut self, method: &str, path: &str, extra: &[(&str, &str)]) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.send(req.as_bytes()).await;
    }

    /// Starts a chunked POST; body chunks follow with `chunk` and `end`.
    pub async fn start_post(&mut self, path: &str, extra: &[(&str, &str)]) {
        let mut req =
            format!("POST {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n");
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.send(req.as_bytes()).await;
    }

    pub async fn chunk(&mut self, data: &[u8]) {
        let mut out = format!("{:x}\r\n", data.len()).into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        self.send(&out).await;
    }

    pub async fn end(&mut self) {
        self.send(b"0\r\n\r\n").await;
    }

    async fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 16384];
        let n = self.stream.read(&mut tmp).await.unwrap_or(0);
        self.buf.extend_from_slice(&tmp[..n]);
        n > 0
    }

    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..pos]).to_string();
                self.buf.drain(..pos + 2);
                return Some(line);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads one response head (interim or final); None when the peer closed.
    pub async fn head(&mut self) -> Option<Head> {
        let status_line = self.line().await?;
        let status: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            let l = self.line().await?;
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':')?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        Some(Head { status, headers })
    }

    /// Reads the final head, skipping (and counting) interim 1xx heads.
    pub async fn final_head(&mut self) -> (Head, usize) {
        let mut interim = 0;
        loop {
            let h = self.head().await.expect("response head");
            if (100..200).contains(&h.status) {
                interim += 1;
                continue;
            }
            return (h, interim);
        }
    }

    async fn exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "peer closed mid-body");
        }
        self.buf.drain(..n).collect()
    }

    /// Next chunk of a chunked body; None at the terminating chunk.
    pub async fn body_chunk(&mut self) -> Option<Vec<u8>> {
        let size_line = self.line().await.expect("chunk size");
        let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            let _ = self.line().await;
            return None;
        }
        let data = self.exact(size).await;
        let _ = self.line().await;
        Some(data)
    }

    /// Reads a whole body described by `head`.
    pub async fn body(&mut self, head: &Head) -> Vec<u8> {
        if let Some(len) = head.num("content-length") {
            return self.exact(len as usize).await;
        }
        if head
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            let mut out = Vec::new();
            while let Some(c) = self.body_chunk().await {
                out.extend(c);
            }
            return out;
        }
        Vec::new()
    }

    /// True once the server has closed the connection.
    pub async fn closed_by_peer(&mut self) -> bool {
        let mut tmp = [0u8; 64];
        matches!(self.stream.read(&mut tmp).await, Ok(0) | Err(_))
    }
}

/// One complete request/response on a fresh connection.
pub async fn simple(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> (Head, Vec<u8>) {
    let mut c = Raw::connect(addr).await;
    c.request(method, path, extra).await;
    let (h, _) = c.final_head().await;
    let body = c.body(&h).await;
    (h, body)
}

/// POSTs a whole segment on a fresh connection.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    data: &[u8],
    extra: &[(&str, &str)],
) -> (Head, Vec<u8>) {
    let mut c = Raw::connect(addr).await;
    c.start_post(path, extra).await;
    if !data.is_empty() {
        c.chunk(data).await;
    }
    c.end().await;
    let (h, _) = c.final_head().await;
    let body = c.body(&h).await;
    (h, body)
}

/// A webhook receiver on loopback that answers every POST after `delay`;
/// returns its address and the count of POSTs answered.
pub async fn slow_webhook(
    delay: std::time::Duration,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
    trickle_edge::shutdown::ShutdownTrigger,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answered = Arc::new(AtomicU64::new(0));
    let count = answered.clone();
    let svc = hyper::service::service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
        let count = count.clone();
        async move {
            tokio::time::sleep(delay).await;
            count.fetch_add(1, Ordering::Relaxed);
            Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                bytes::Bytes::new(),
            )))
        }
    });
    let (stop, shutdown) = trickle_edge::shutdown::ShutdownTrigger::new();
    tokio::spawn(trickle_edge::http_serve::serve(
        listener,
        svc,
        Default::default(),
        shutdown,
    ));
    (addr, answered, stop)
}

/// A webhook receiver on loopback that has stalled until [`open`]ed: every
/// POST waits, then, once open, is answered 200 and its JSON body recorded
/// in the order answered (the output sends one at a time, so that is the
/// order sent).
///
/// [`open`]: HeldWebhook::open
#[allow(dead_code)] // each test binary compiles the kit; not all use this
pub struct HeldWebhook {
    pub addr: std::net::SocketAddr,
    /// Bodies answered, in order.
    pub received: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    /// Requests waiting for the gate right now.
    pub waiting: std::sync::Arc<std::sync::atomic::AtomicU64>,
    gate: tokio::sync::watch::Sender<bool>,
    _stop: trickle_edge::shutdown::ShutdownTrigger,
}

#[allow(dead_code)]
impl HeldWebhook {
    pub async fn start() -> HeldWebhook {
        use http_body_util::BodyExt;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Arc::default();
        let waiting = Arc::new(AtomicU64::new(0));
        let (gate, open) = tokio::sync::watch::channel(false);
        let (rec, wait) = (received.clone(), waiting.clone());
        let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let (rec, wait, mut open) = (rec.clone(), wait.clone(), open.clone());
            async move {
                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                wait.fetch_add(1, Ordering::SeqCst);
                let _ = open.wait_for(|o| *o).await;
                wait.fetch_sub(1, Ordering::SeqCst);
                let v = body
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or(serde_json::Value::Null);
                rec.lock().unwrap().push(v);
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                    bytes::Bytes::new(),
                )))
            }
        });
        let (stop, shutdown) = trickle_edge::shutdown::ShutdownTrigger::new();
        tokio::spawn(trickle_edge::http_serve::serve(
            listener,
            svc,
            Default::default(),
            shutdown,
        ));
        HeldWebhook {
            addr,
            received,
            waiting,
            gate,
            _stop: stop,
        }
    }

    /// Lets every waiting and later request through.
    pub fn open(&self) {
        self.gate.send_replace(true);
    }

    /// The `seq` of each body answered, in order.
    pub fn seqs(&self) -> Vec<i64> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|v| v["seq"].as_i64().unwrap_or(-1))
            .collect()
    }
}
