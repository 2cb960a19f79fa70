//! Weir's HTTP/2 server: the h2 crate's server connection, with the streams it accepts run
//! inside the connection's own task.
//!
//! Each stream is one future in the connection's [`FuturesUnordered`]: no task is spawned,
//! scheduled and freed per request, the streams woken by one turn of the runtime are polled in
//! one go, and the responses they complete leave in the same write (one TLS record, one system
//! call). A stream's request goes to [`Proxy::handle`] with its body as
//! [`ClientBody::H2`]; the response is sent with its body piped under HTTP/2 flow control. A
//! stream the client resets (RST_STREAM) drops its request at once, as a client closing an
//! HTTP/1 connection does (status 460 in the access log).
//!
//! The connection settings are hyper's server defaults (1 MiB stream and connection windows,
//! 16 KiB frames, 400 KiB send buffer per stream) with the listener's limits on concurrent
//! streams, header list size and pending resets.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::CatchUnwind;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use http::header;
use http::{HeaderMap, Method, Request, Response};
use hyper::body::Body;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{ConnInfo, Proxy, Served};
use crate::client_body::ClientBody;
use crate::responses::ProxyBody;
use crate::snapshot::ListenerSnapshot;

/// A stream's flow-control window, and the connection's (hyper's server defaults).
const WINDOW: u32 = 1024 * 1024;
/// The largest frame payload the server accepts.
const MAX_FRAME: u32 = 16 * 1024;
/// Bytes buffered per stream before its body waits for the client's window.
const MAX_SEND_BUFFER: usize = 400 * 1024;
/// Streams the server may reset for the client's errors before the connection is closed.
const MAX_LOCAL_RESETS: usize = 1024;
/// The error a served connection ends with.
type ConnError = Box<dyn std::error::Error + Send + Sync>;

/// A server connection and the streams it started.
pub(super) struct H2Conn<I, F, Fut> {
    state: State<I>,
    streams: FuturesUnordered<CatchUnwind<std::panic::AssertUnwindSafe<Fut>>>,
    start: F,
    /// Graceful shutdown was asked for during the handshake.
    closing: bool,
}

// The connection is the state for the connection's whole life; the handshake is brief.
#[allow(clippy::large_enum_variant)]
enum State<I> {
    Handshaking(Pin<Box<h2::server::Handshake<I, Bytes>>>),
    Serving(h2::server::Connection<I, Bytes>),
}

/// Serves HTTP/2 on `io` (whose preface may still be unread); each request goes to
/// [`Proxy::handle`].
pub(super) fn serve<I>(
    proxy: &Arc<Proxy>,
    io: I,
    conn: Arc<ConnInfo>,
    snap: &ListenerSnapshot,
) -> impl Served
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut b = h2::server::Builder::new();
    b.initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_local_error_reset_streams(Some(MAX_LOCAL_RESETS))
        .max_concurrent_streams(snap.limits.max_h2_streams)
        .max_header_list_size(u32::try_from(snap.limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(snap.limits.max_h2_pending_resets);
    let proxy = proxy.clone();
    H2Conn {
        state: State::Handshaking(Box::pin(b.handshake(io))),
        streams: FuturesUnordered::new(),
        start: move |req, respond| stream(proxy.clone(), conn.clone(), req, respond),
        closing: false,
    }
}

impl<I, F, Fut> Served for H2Conn<I, F, Fut>
where
    I: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(Request<h2::RecvStream>, h2::server::SendResponse<Bytes>) -> Fut + Unpin,
    Fut: Future<Output = ()>,
{
    fn graceful_shutdown(&mut self) {
        match &mut self.state {
            State::Serving(c) => c.graceful_shutdown(),
            State::Handshaking(_) => self.closing = true,
        }
    }
}

impl<I, F, Fut> Future for H2Conn<I, F, Fut>
where
    I: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(Request<h2::RecvStream>, h2::server::SendResponse<Bytes>) -> Fut + Unpin,
    Fut: Future<Output = ()>,
{
    type Output = Result<(), ConnError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let State::Handshaking(h) = &mut this.state {
            let mut c = match h.as_mut().poll(cx) {
                Poll::Ready(Ok(c)) => c,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => return Poll::Pending,
            };
            if this.closing {
                c.graceful_shutdown();
            }
            this.state = State::Serving(c);
        }
        let State::Serving(c) = &mut this.state else {
            return Poll::Pending;
        };
        // Connection and streams in turn while either starts or finishes something (the
        // connection then writes what the streams produced), a few rounds at most per poll.
        for _ in 0..8 {
            let mut moved = false;
            loop {
                match c.poll_accept(cx) {
                    Poll::Ready(Some(Ok((req, respond)))) => {
                        let fut = (this.start)(req, respond);
                        // A stream that panics ends alone, as a task of its own would.
                        this.streams.push(std::panic::AssertUnwindSafe(fut).catch_unwind());
                        moved = true;
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.into())),
                    // The connection is closed: streams still running had no client left.
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                    Poll::Pending => break,
                }
            }
            while let Poll::Ready(Some(_)) = this.streams.poll_next_unpin(cx) {
                moved = true;
            }
            if !moved {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// One stream: the request through [`Proxy::handle`] (dropped if the client resets the
/// stream first), then the response. The request's future is boxed, so that the stream's own
/// future (moved into the connection's set of streams) stays small.
fn stream(
    proxy: Arc<Proxy>,
    conn: Arc<ConnInfo>,
    req: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) -> impl Future<Output = ()> {
    let (parts, recv) = req.into_parts();
    let handled = if parts.method == Method::CONNECT {
        // Tunnels over HTTP/2 (RFC 9113 §8.5) are not offered (no SETTINGS_ENABLE_CONNECT_
        // PROTOCOL either); a stream asking for one is refused.
        respond.send_reset(h2::Reason::REFUSED_STREAM);
        None
    } else {
        let len = content_length(&parts.headers);
        let req = Box::new(Request::from_parts(parts, ClientBody::h2(recv, len)));
        Some(Box::pin(proxy.handle(req, conn)))
    };
    answer(handled, respond)
}

/// Waits for a stream's response (giving up if the client resets the stream) and sends it.
///
/// The body's first frame is asked for the moment the response is there: a body already whole
/// (a small response read with its head, or one made here) leaves as one DATA frame behind the
/// head — no flow-control wait (h2 holds what the client's window does not take yet) and none
/// of [`pipe`]'s calls into the connection, each of which takes its lock. Only a body still
/// coming is piped, from a boxed future, so that this one (moved into the connection's set of
/// streams) stays small.
async fn answer<H>(handled: Option<Pin<Box<H>>>, mut respond: h2::server::SendResponse<Bytes>)
where
    H: Future<Output = Result<Response<ProxyBody>, std::convert::Infallible>>,
{
    let Some(mut handled) = handled else {
        return;
    };
    let answer = std::future::poll_fn(|cx| {
        match handled.as_mut().poll(cx) {
            Poll::Ready(Ok(mut r)) => {
                let len = r.body().size_hint().exact();
                let first = Pin::new(r.body_mut()).poll_frame(cx);
                return Poll::Ready(Some((r, len, first)));
            }
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => {}
        }
        // Still working: a reset from the client abandons the request.
        match respond.poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    drop(handled);
    // Everything after the wait is done by a plain function: an async body keeps a local it
    // borrowed in its state across later awaits, which made this future six times larger.
    if let Some(rest) = answer.and_then(|(resp, len, first)| send(resp, len, first, respond)) {
        rest.await;
    }
}

/// Sends a stream's response head (`len`: its body's exact length, when known), and the body
/// too when `first` — its first frame — was all of it; what is left to pipe comes back boxed.
fn send(
    resp: Response<ProxyBody>,
    len: Option<u64>,
    first: Poll<BodyFrame>,
    mut respond: h2::server::SendResponse<Bytes>,
) -> Option<Pin<Box<impl Future<Output = ()>>>> {
    let (head, body) = resp.into_parts();
    let mut head = Response::from_parts(head, ());
    let fields = head.headers_mut();
    crate::headers::strip_for_http2(fields);
    if !fields.contains_key(header::DATE) {
        fields.insert(header::DATE, crate::responses::date_value());
    }
    let first = match first {
        // No body (a HEAD request's, a 204, an empty one): the head ends the stream.
        Poll::Ready(None) => {
            let _ = respond.send_response(head, true);
            return None;
        }
        Poll::Ready(Some(Ok(frame))) if frame.is_data() && body.is_end_stream() => {
            let data = frame.into_data().unwrap_or_default();
            if !fields.contains_key(header::CONTENT_LENGTH) {
                fields.insert(header::CONTENT_LENGTH, http::HeaderValue::from(data.len()));
            }
            if let Ok(mut tx) = respond.send_response(head, data.is_empty()) {
                if !data.is_empty() {
                    let _ = tx.send_data(data, true);
                }
            }
            return None;
        }
        Poll::Ready(frame) => Some(frame),
        Poll::Pending => None,
    };
    if let Some(n) = len {
        if !fields.contains_key(header::CONTENT_LENGTH) {
            fields.insert(header::CONTENT_LENGTH, http::HeaderValue::from(n));
        }
    }
    let tx = respond.send_response(head, false).ok()?;
    Some(Box::pin(pipe(body, tx, first)))
}

/// The value of a request's `content-length`, when it has exactly one valid value (h2 checks
/// the DATA frames against it).
fn content_length(fields: &HeaderMap) -> Option<u64> {
    let mut values = fields.get_all(header::CONTENT_LENGTH).iter();
    let v = values.next()?;
    if values.next().is_some() {
        return None;
    }
    std::str::from_utf8(v.as_bytes()).ok()?.parse().ok()
}

/// A body's frame as `poll_frame` gives it.
type BodyFrame = Option<Result<hyper::body::Frame<Bytes>, crate::responses::BodyError>>;

/// Sends `body` on `tx` as DATA frames (and trailers), starting with `first` when its first
/// frame was taken already, as fast as the client's flow-control window allows; ends early,
/// resetting the stream, if the body fails or the client resets it.
async fn pipe(mut body: ProxyBody, mut tx: h2::SendStream<Bytes>, mut first: Option<BodyFrame>) {
    loop {
        let frame = match first.take() {
            Some(frame) => Some(frame),
            None => {
                std::future::poll_fn(|cx| {
                    if tx.poll_reset(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                    Pin::new(&mut body).poll_frame(cx).map(Some)
                })
                .await
            }
        };
        let frame = match frame {
            None => return, // reset by the client
            Some(None) => {
                let _ = tx.send_data(Bytes::new(), true);
                return;
            }
            Some(Some(Err(e))) => {
                tracing::debug!(error = %e, "response body failed; stream reset");
                tx.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
            Some(Some(Ok(frame))) => frame,
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    tx.reserve_capacity(0);
                    let _ = tx.send_trailers(trailers);
                    return;
                }
                continue;
            }
        };
        let eos = body.is_end_stream();
        if !data.is_empty() {
            // A claim of one byte (h2 raises it to what is buffered): a chunk waits for
            // window without pinning connection window it cannot use yet.
            tx.reserve_capacity(1);
            while tx.capacity() == 0 {
                let room = std::future::poll_fn(|cx| {
                    if tx.poll_reset(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                    tx.poll_capacity(cx)
                })
                .await;
                match room {
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                }
            }
        }
        if tx.send_data(data, eos).is_err() || eos {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_known_only_from_one_valid_value() {
        let with = |values: &[&'static str]| {
            let mut f = HeaderMap::new();
            for v in values {
                f.append(header::CONTENT_LENGTH, http::HeaderValue::from_static(v));
            }
            content_length(&f)
        };
        assert_eq!(with(&["42"]), Some(42));
        assert_eq!(with(&[]), None);
        assert_eq!(with(&["4x"]), None);
        assert_eq!(with(&["-1"]), None);
        assert_eq!(with(&["1", "1"]), None);
    }
}
