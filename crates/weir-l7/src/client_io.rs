//! The client connection as the HTTP server sees it, wrapped to remember two things hyper does
//! not tell: the raw bytes of the request head being read (for desync classification, which
//! needs what the client actually sent, before parsing normalised it), and whether a request
//! had started arriving when the header-read timeout fired (ALB answers that with 408; an idle
//! keep-alive connection is closed silently), and when a byte last moved (for the idle timeout).
//! The wrapper keeps a second handle on the stream
//! so that the 408 can still be written after hyper has given the connection up.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::stats::ListenerStats;

/// Most head bytes remembered per request (ALB's head limit; longer heads are refused anyway).
const CAPTURE_LIMIT: usize = 64 * 1024 + 4;

#[derive(Debug, Default)]
struct Capture {
    /// Bytes read since the last response bytes were written, up to the end of the head.
    bytes: Vec<u8>,
    /// A response was written since the last read: the next read starts a new request.
    fresh: bool,
    /// `bytes` holds a whole head: later bytes (the body) are not kept.
    complete: bool,
    /// Whether heads are captured at all (not for HTTP/2 connections).
    enabled: bool,
}

/// Where a request head ends in `b` (after its blank line), if it does.
fn head_end(b: &[u8]) -> Option<usize> {
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What the wrapper saw of the current request, shared with the request handler.
#[derive(Debug)]
pub struct HeadCapture {
    capture: Mutex<Capture>,
    started: Instant,
    /// Milliseconds after `started` of the last byte read or written.
    last_activity_ms: AtomicU64,
}

impl HeadCapture {
    fn new(enabled: bool) -> Self {
        Self {
            capture: Mutex::new(Capture {
                bytes: Vec::new(),
                fresh: true,
                complete: false,
                enabled,
            }),
            started: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    /// How long no byte has moved either way on the connection.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    fn lock(&self) -> MutexGuard<'_, Capture> {
        self.capture.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The raw head of the request being handled: the bytes read since the last response up
    /// to and including the blank line, if they hold a whole head.
    pub fn raw_head(&self) -> Option<Vec<u8>> {
        let c = self.lock();
        let end = head_end(&c.bytes)?;
        Some(c.bytes[..end].to_vec())
    }

    /// Whether part of a request has arrived that no response has answered yet.
    pub fn request_started(&self) -> bool {
        let c = self.lock();
        c.enabled && !c.fresh && !c.bytes.is_empty()
    }
}

/// A client stream that records head bytes for [`HeadCapture`] and counts the bytes it moves.
#[derive(Debug)]
pub struct ClientIo<I> {
    inner: Arc<Mutex<I>>,
    capture: Arc<HeadCapture>,
    stats: Option<Arc<ListenerStats>>,
    /// Whether the first write of each flush cycle waits for one turn of the runtime
    /// ([`ClientIo::coalesce_writes`]).
    coalesce: bool,
    /// This cycle's turn was taken.
    yielded: bool,
}

/// The second handle on a [`ClientIo`]'s stream.
#[derive(Debug)]
pub struct ClientIoHandle<I> {
    inner: Arc<Mutex<I>>,
    /// The capture of the same connection.
    pub capture: Arc<HeadCapture>,
}

impl<I> ClientIo<I> {
    /// Wraps `io`; returns the stream for the server and a handle kept by the connection task.
    /// `capture_heads` is off for HTTP/2 connections, whose frames are not request heads;
    /// bytes moved are added to `stats`' `processed_bytes`.
    pub fn new(
        io: I,
        capture_heads: bool,
        stats: Option<Arc<ListenerStats>>,
    ) -> (Self, ClientIoHandle<I>) {
        let inner = Arc::new(Mutex::new(io));
        let capture = Arc::new(HeadCapture::new(capture_heads));
        (
            Self {
                inner: inner.clone(),
                capture: capture.clone(),
                stats,
                coalesce: false,
                yielded: false,
            },
            ClientIoHandle { inner, capture },
        )
    }

    /// Lets the tasks already runnable go first before the first write of each flush cycle:
    /// on an HTTP/2 connection the streams whose responses are ready add their frames, and
    /// they leave in one TLS write (one system call) instead of one each. Without it the
    /// runtime runs the connection task right after each stream task that wakes it.
    pub fn coalesce_writes(&mut self) {
        self.coalesce = true;
    }

    /// Whether this write waits for a turn of the runtime (and arranges to be polled again).
    fn defer(&mut self, cx: &mut Context<'_>) -> bool {
        if self.coalesce && !self.yielded {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return true;
        }
        false
    }

    fn count(&self, n: usize) {
        if let Some(s) = &self.stats {
            s.processed_bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    fn io(&self) -> MutexGuard<'_, I> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<I: AsyncWrite + Unpin> ClientIoHandle<I> {
    /// Writes a last response on the connection (after the server gave it up) and closes it.
    pub async fn write_and_close(&self, bytes: &[u8]) {
        let mut w = Writer(&self.inner);
        let _ = w.write_all(bytes).await;
        let _ = w.shutdown().await;
    }
}

struct Writer<'a, I>(&'a Mutex<I>);

impl<I: AsyncWrite + Unpin> AsyncWrite for Writer<'_, I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let mut io = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Pin::new(&mut *io).poll_write(cx, b)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut io = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Pin::new(&mut *io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut io = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Pin::new(&mut *io).poll_shutdown(cx)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ClientIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut *self.io()).poll_read(cx, buf);
        let got = &buf.filled()[before..];
        if matches!(r, Poll::Ready(Ok(()))) && !got.is_empty() {
            self.count(got.len());
            self.capture.touch();
            let mut c = self.capture.lock();
            if c.fresh {
                c.bytes.clear();
                c.bytes.shrink_to(4096);
                c.fresh = false;
                c.complete = false;
            }
            if c.enabled && !c.complete {
                let room = CAPTURE_LIMIT.saturating_sub(c.bytes.len());
                c.bytes.extend_from_slice(&got[..got.len().min(room)]);
                c.complete = head_end(&c.bytes).is_some() || c.bytes.len() >= CAPTURE_LIMIT;
            }
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ClientIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.defer(cx) {
            return Poll::Pending;
        }
        let r = Pin::new(&mut *self.io()).poll_write(cx, b);
        if let Poll::Ready(Ok(n @ 1..)) = r {
            self.count(n);
            self.capture.touch();
            self.capture.lock().fresh = true;
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.defer(cx) {
            return Poll::Pending;
        }
        let r = Pin::new(&mut *self.io()).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n @ 1..)) = r {
            self.count(n);
            self.capture.touch();
            self.capture.lock().fresh = true;
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.io().is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut *self.io()).poll_flush(cx);
        if r.is_ready() {
            // The cycle is over: the next write waits for its turn again.
            self.yielded = false;
        }
        r
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io()).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn captures_each_head_and_knows_when_a_request_started() {
        let (client, server) = tokio::io::duplex(1024);
        let stats = Arc::new(ListenerStats::default());
        let (mut io, handle) = ClientIo::new(server, true, Some(stats.clone()));
        let mut client = client;
        assert!(!handle.capture.request_started());
        client.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = io.read(&mut buf).await.unwrap();
        assert!(n > 0);
        assert_eq!(handle.capture.raw_head().unwrap(), b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        io.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        assert_eq!(stats.processed_bytes.load(Ordering::Relaxed), 28 + 19, "both directions");
        assert!(!handle.capture.request_started(), "answered");
        client.write_all(b"GET /b HT").await.unwrap();
        let _ = io.read(&mut buf).await.unwrap();
        assert!(handle.capture.request_started());
        assert_eq!(handle.capture.raw_head(), None, "incomplete head");
        // Body bytes after a complete head are not kept.
        client.write_all(b"TP/1.1\r\nHost: y\r\n\r\nbody-bytes").await.unwrap();
        let _ = io.read(&mut buf).await.unwrap();
        assert_eq!(handle.capture.raw_head().unwrap(), b"GET /b HTTP/1.1\r\nHost: y\r\n\r\n");
        handle.write_and_close(b"HTTP/1.1 408 Request Timeout\r\n\r\n").await;
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        assert!(out.ends_with(b"408 Request Timeout\r\n\r\n"));
    }
}
