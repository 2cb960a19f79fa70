//! The body of a client's request, whichever server read it: hyper's HTTP/1.1 server, or
//! Weir's own HTTP/2 server (`proxy::h2`), which hands over the h2 stream itself.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// Why a client's request body could not be read to its end.
pub type ClientBodyError = Box<dyn std::error::Error + Send + Sync>;

/// A client's request body.
#[derive(Debug)]
pub enum ClientBody {
    /// Read by hyper (HTTP/1.1).
    Hyper(Incoming),
    /// The DATA (and trailing HEADERS) frames of an HTTP/2 stream.
    H2(H2Body),
}

/// The body of an HTTP/2 request: the stream's DATA frames, whose flow-control window is given
/// back as they are taken (so a client can send more), then its trailers if any.
#[derive(Debug)]
pub struct H2Body {
    recv: h2::RecvStream,
    /// The bytes still to come by the request's `content-length`, when it had one.
    left: Option<u64>,
    data_done: bool,
}

impl ClientBody {
    /// The body of an HTTP/2 request whose `content-length` (if valid) was `len`.
    pub fn h2(recv: h2::RecvStream, len: Option<u64>) -> Self {
        Self::H2(H2Body { recv, left: len, data_done: false })
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            Self::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Self::H2(b) => b.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Hyper(b) => b.is_end_stream(),
            Self::H2(b) => b.recv.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Hyper(b) => b.size_hint(),
            Self::H2(b) => b.left.map_or_else(SizeHint::default, SizeHint::with_exact),
        }
    }
}

impl H2Body {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    if let Some(left) = &mut self.left {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // RST_STREAM with NO_ERROR: the client wants no more of the body sent (it has
                // its answer); the body ends there (RFC 9113 §8.1).
                Some(Err(e)) if e.reason() == Some(h2::Reason::NO_ERROR) => {
                    return Poll::Ready(None)
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(Box::new(e)))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(t) => Poll::Ready(t.map(|t| Ok(Frame::trailers(t)))),
            Err(e) if e.reason() == Some(h2::Reason::NO_ERROR) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(Box::new(e)))),
        }
    }
}
