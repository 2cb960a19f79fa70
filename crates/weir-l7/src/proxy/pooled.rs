//! The general path's requests to HTTP/1.1 targets without a request body — HTTP/2 clients'
//! requests above all — over the fast path's per-listener connection pool, from the request's
//! own task: the request head is written from the already-processed `http` parts, the response
//! head parsed in place, and a body that came whole with the head is handed on as it is (the
//! connection goes back to the pool at once); a longer one is read by [`PooledBody`] as the
//! client takes it (chunked coding decoded, trailers kept), the connection returned when it
//! ends. This replaces, for these requests, hyper-util's client: its pool checkout, the channel
//! to a connection task, and that task's wake-ups.
//!
//! Requests with a body, upgrades, requests the desync classifier wants closed, and HTTPS/h2c
//! targets stay on hyper-util's client. `WEIR_HTTP1_FAST_PATH=off` turns this off too.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::fast::{connect, Pool, READ_CHUNK};
use crate::http1::{parse_response_head, response_fields, Body, Framing, ResponseHead};
use crate::responses::BodyError;

/// The first read's buffer: most responses of a request without a body fit whole.
const FIRST_READ: usize = 4 * 1024;

/// Why a request over the pool failed.
#[derive(Debug)]
pub(super) enum SendError {
    /// No connection (refused, unreachable, timed out): nothing reached the target.
    Connect(io::Error),
    /// The connection was lost before a response arrived.
    Lost,
    /// The response head did not arrive within the idle timeout.
    Timeout,
    /// The target answered something that is not a valid HTTP/1.x response.
    Invalid,
}

/// A response body from the pool: whole (as it came with the head) or read as the client
/// takes it.
pub(super) type PooledResponse = Either<Full<Bytes>, PooledBody>;

/// A parsed final response head and the bytes read with it.
struct Head {
    /// Everything read: the head (the fields' values share it) and what followed it.
    data: Bytes,
    len: usize,
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

/// Sends `head` (a complete request head, no body) to `addr` over a pooled connection or a
/// new one, and returns the target's response. A pooled connection found closed is replaced
/// once by a new one when the target cannot have acted on the request (nothing was written)
/// or acting twice is harmless (`idempotent`). The response head is awaited for `idle` from
/// `sent_at` (a clock read the caller has made anyway) or, without it, from now.
pub(super) async fn send(
    pool: &Arc<Pool>,
    addr: SocketAddr,
    head: &[u8],
    head_request: bool,
    idempotent: bool,
    idle: Duration,
    sent_at: Option<std::time::Instant>,
) -> Result<Response<PooledResponse>, SendError> {
    let mut fresh_only = false;
    loop {
        let from = match sent_at {
            Some(t) if !fresh_only => t,
            _ => std::time::Instant::now(),
        };
        let deadline = tokio::time::Instant::from_std(from) + idle;
        let (mut s, reused) = match (!fresh_only).then(|| pool.take(addr)).flatten() {
            Some(s) => (s, true),
            None => (connect(addr).await.map_err(SendError::Connect)?, false),
        };
        let written = s.write_all(head).await.is_ok();
        let result = if written {
            match tokio::time::timeout_at(deadline, read_head(&mut s, head_request)).await {
                Err(_) => Err(SendError::Timeout),
                Ok(r) => r,
            }
        } else {
            Err(SendError::Lost)
        };
        match result {
            Ok(h) => return Ok(respond(pool, addr, s, h, idle)),
            Err(SendError::Lost) if reused && !fresh_only && (!written || idempotent) => {
                fresh_only = true;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads a final response head (interim 1xx ones skipped). `Lost` when the connection ended
/// before a byte of it, `Invalid` when what came is not a valid HTTP/1.x response (a 101
/// among them: no upgrade was asked for).
async fn read_head(s: &mut TcpStream, head_request: bool) -> Result<Head, SendError> {
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    loop {
        if !buf.is_empty() {
            // Parsed as shared bytes, so that the fields' values point into them instead of
            // being copied; taken back to read more (no copy either: nothing else holds them).
            let mut data = std::mem::take(&mut buf).freeze();
            let step =
                parse_response_head(&data, head_request, |r, f| response_fields(r, f, &data));
            let interim = match step {
                ResponseHead::Final(h) => {
                    let (status, headers) = h.out;
                    let (len, framing, keep_alive) = (h.len, h.framing, h.keep_alive);
                    return Ok(Head { data, len, status, headers, framing, keep_alive });
                }
                ResponseHead::Interim(n) => {
                    data.advance(n);
                    true
                }
                ResponseHead::Partial => false,
                ResponseHead::Invalid => return Err(SendError::Invalid),
            };
            buf = data.try_into_mut().unwrap_or_else(|d| BytesMut::from(&d[..]));
            if interim {
                continue;
            }
        }
        if buf.capacity() - buf.len() < FIRST_READ / 4 {
            buf.reserve(READ_CHUNK);
        }
        match s.read_buf(&mut buf).await {
            Ok(n) if n > 0 => {}
            _ if buf.is_empty() => return Err(SendError::Lost),
            _ => return Err(SendError::Invalid),
        }
    }
}

/// The response for the client: a body already whole is handed on as it is and the connection
/// goes back to the pool; otherwise a [`PooledBody`] reads the rest.
fn respond(
    pool: &Arc<Pool>,
    addr: SocketAddr,
    s: TcpStream,
    h: Head,
    idle: Duration,
) -> Response<PooledResponse> {
    let rest = h.data.slice(h.len..);
    let whole = match h.framing {
        Framing::Empty => Some(Bytes::new()),
        Framing::Length(n) if rest.len() as u64 >= n => {
            Some(rest.slice(..usize::try_from(n).unwrap_or(usize::MAX)))
        }
        _ => None,
    };
    let body = match whole {
        Some(data) => {
            // Bytes after the response: the target is not to be trusted with another request.
            if h.keep_alive && data.len() == rest.len() {
                pool.put(addr, s);
            }
            Either::Left(Full::new(data))
        }
        None => {
            let mut buf = BytesMut::with_capacity(READ_CHUNK.max(rest.len()));
            buf.extend_from_slice(&rest);
            Either::Right(PooledBody {
                stream: Some(s),
                buf,
                body: Body::decoding(h.framing),
                pool: pool.clone(),
                addr,
                keep_alive: h.keep_alive,
                idle,
                timer: None,
                progressed: false,
                finished: false,
            })
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = h.status;
    *resp.version_mut() = Version::HTTP_11;
    *resp.headers_mut() = h.headers;
    resp
}

/// A response body read from a pooled target connection as the client takes it; the connection
/// returns to the pool when the body ends cleanly, and is closed otherwise (a body cut short
/// is an error for the client, never a shorter body).
pub(super) struct PooledBody {
    /// The target connection, until the body ends.
    stream: Option<TcpStream>,
    buf: BytesMut,
    /// Where the body ends; chunked coding decoded.
    body: Body,
    pool: Arc<Pool>,
    addr: SocketAddr,
    keep_alive: bool,
    idle: Duration,
    /// The idle timeout while waiting for the target, made on the first wait.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether bytes arrived since the timer was last set.
    progressed: bool,
    finished: bool,
}

impl PooledBody {
    /// The body ended: the connection goes back to the pool if it can carry another request.
    fn finish(&mut self) {
        self.finished = true;
        if self.keep_alive && self.buf.is_empty() && self.body.framing != Framing::Close {
            if let Some(s) = self.stream.take() {
                self.pool.put(self.addr, s);
            }
        }
    }

    /// The next frame from bytes already read, if they make one.
    fn frame(&mut self) -> Result<Option<Frame<Bytes>>, BodyError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let d =
            self.body.decode(&self.buf).map_err(|()| "malformed chunked body from the target")?;
        if let Some(r) = d.data {
            self.buf.advance(r.start);
            let data = self.buf.split_to(r.len()).freeze();
            if self.body.done() {
                self.finish();
            }
            return Ok(Some(Frame::data(data)));
        }
        self.buf.advance(d.consumed);
        if !self.body.done() {
            return Ok(None);
        }
        let trailers = self.body.take_trailers();
        self.finish();
        Ok(trailers.map(Frame::trailers))
    }

    /// Reads more of the body: the number of bytes, 0 at the end of the connection.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(stream) = &self.stream else {
            return Poll::Ready(Ok(0));
        };
        loop {
            ready!(stream.poll_read_ready(cx))?;
            self.buf.reserve(READ_CHUNK);
            match stream.try_read_buf(&mut self.buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            match this.frame() {
                Ok(Some(f)) => return Poll::Ready(Some(Ok(f))),
                Ok(None) if this.finished => return Poll::Ready(None),
                Ok(None) => {}
                Err(e) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match this.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    this.finished = true;
                    if this.body.framing == Framing::Close {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(
                        "the target closed the connection mid-body".into()
                    )));
                }
                Poll::Ready(Ok(_)) => this.progressed = true,
                Poll::Ready(Err(e)) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Pending => {
                    let deadline = tokio::time::Instant::now() + this.idle;
                    let timer = match &mut this.timer {
                        Some(t) => {
                            if std::mem::take(&mut this.progressed) {
                                t.as_mut().reset(deadline);
                            }
                            t
                        }
                        None => this.timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
                    };
                    ready!(timer.as_mut().poll(cx));
                    this.finished = true;
                    return Poll::Ready(Some(Err(
                        "the target sent nothing for the idle timeout".into()
                    )));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> SizeHint {
        match self.body.remaining() {
            Some(left) => SizeHint::with_exact(left),
            None => SizeHint::default(),
        }
    }
}
