//! Unsolicited `100 Continue` on an idle POST.
//!
//! Livepeer's server sends an interim `HTTP/1.1 100 Continue` every 10 s while a
//! preconnected POST has not sent its first body byte, so proxies and NATs do
//! not drop the idle connection. hyper has no API for arbitrary 1xx responses,
//! so the connection's I/O is wrapped: a handler asks for an interim response
//! through [`InterimHandle`], and the wrapper writes it the next time hyper
//! polls the socket. This is safe because an idle POST handler has not
//! produced its response yet, so hyper has nothing of its own in flight.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::sync::LockIgnoringPoison;

const INTERIM: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[derive(Debug, Default)]
struct Shared {
    requested: AtomicUsize,
    waker: Mutex<Option<Waker>>,
}

/// Held by request handlers of one connection to ask for an interim response.
#[derive(Debug, Clone, Default)]
pub struct InterimHandle(Arc<Shared>);

impl InterimHandle {
    /// Queues one `100 Continue` and wakes the connection so it is written now.
    pub fn send_continue(&self) {
        self.0.requested.fetch_add(1, Ordering::AcqRel);
        let waker = self.0.waker.lock_ignoring_poison().take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Socket wrapper that can slip interim responses between hyper's writes.
#[derive(Debug)]
pub struct InterimIo<T> {
    inner: T,
    shared: Arc<Shared>,
    /// Bytes of the interim response already written (partial writes).
    written: usize,
    active: bool,
}

impl<T> InterimIo<T> {
    pub fn new(inner: T) -> (Self, InterimHandle) {
        let handle = InterimHandle::default();
        let io = Self {
            inner,
            shared: handle.0.clone(),
            written: 0,
            active: false,
        };
        (io, handle)
    }
}

impl<T: AsyncWrite + Unpin> InterimIo<T> {
    /// Writes pending interim responses; Ready(Ok) once none is left.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.active {
                let pending = self.shared.requested.load(Ordering::Acquire);
                if pending == 0 {
                    return Poll::Ready(Ok(()));
                }
                self.shared.requested.fetch_sub(1, Ordering::AcqRel);
                self.active = true;
                self.written = 0;
            }
            while self.written < INTERIM.len() {
                let n = match Pin::new(&mut self.inner).poll_write(cx, &INTERIM[self.written..]) {
                    Poll::Ready(Ok(n)) => n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                };
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
            }
            self.active = false;
            if let Poll::Ready(Err(e)) = Pin::new(&mut self.inner).poll_flush(cx) {
                return Poll::Ready(Err(e));
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for InterimIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        *self.shared.waker.lock_ignoring_poison() = Some(cx.waker().clone());
        // A failed interim write surfaces on the next read; a pending one is
        // retried when the socket is writable (its waker is registered).
        if let Poll::Ready(Err(e)) = self.drive(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for InterimIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Finish an interim response before any of hyper's bytes go out.
        match self.drive(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_write(cx, buf),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.drive(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.drive(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
