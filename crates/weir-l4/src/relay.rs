//! Moving bytes both ways between a client and a target.
//!
//! Plain TCP goes to an io_uring (`weir_uring`) where the kernel allows it; this module
//! relays what the ring hands back (bulk transfer) and everything where there is none.
//! Plain TCP on Linux starts each direction copying through a small buffer — one read and one
//! write per message, the read's short count telling that the socket is drained, which is the
//! cheapest for request/response traffic — and switches that direction to `splice(2)` via a
//! pipe (payload never crossing into user space) at the first read that fills the buffer, the
//! sign of bulk transfer. Anything else (TLS on either side) is copied through bounded
//! buffers. Both record activity for the idle timeout and propagate half-closes; an error on
//! one side resets the other, as an NLB does.

use std::io;

use std::future::Future;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

pub use weir_uring::{End, Meter};

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Both directions closed cleanly.
    Closed,
    /// The client reset (or failed).
    ClientReset,
    /// The target reset (or failed).
    TargetReset,
    /// The watchdog ended it (idle timeout, target drained or unhealthy, listener stopping):
    /// the load balancer closes both sides.
    Stopped,
}

/// How a relay ended, from how its directions (client to target, target to client) did.
pub(crate) fn outcome(up: End, down: End) -> Outcome {
    // `up` reads the client and writes the target; `down` the reverse.
    match (up, down) {
        (End::ReadError, _) | (_, End::WriteError) => Outcome::ClientReset,
        (End::WriteError, _) | (_, End::ReadError) => Outcome::TargetReset,
        _ => Outcome::Closed,
    }
}

/// Decides, once per period, whether the load balancer must end a connection; it is given the
/// payload bytes moved so far (see [`Meter::moved`]).
pub trait Watchdog {
    /// `true`: end the connection now.
    fn must_close(&mut self, moved: u64) -> bool;
}

impl<F: FnMut(u64) -> bool> Watchdog for F {
    fn must_close(&mut self, moved: u64) -> bool {
        self(moved)
    }
}

/// Relays between two TCP sockets until both directions close, one side fails or `watchdog`
/// (asked every `period`) ends it.
///
/// One hand-written poll loop drives both directions and the watchdog's timer: a wake-up costs
/// a readiness check per direction — no per-await futures registering and unregistering
/// waiters — and the timer is looked at (an atomic load) rather than polled until it fires.
pub async fn tcp(
    client: &TcpStream,
    target: &TcpStream,
    meter: &Meter,
    period: Duration,
    watchdog: impl Watchdog,
) -> Outcome {
    resume(client, target, meter, period, watchdog, [None, None]).await
}

/// [`tcp`] for a relay begun elsewhere (on an io_uring, until bulk transfer): `ended` says how
/// the directions (client to target, target to client) that already ended did.
pub async fn resume(
    client: &TcpStream,
    target: &TcpStream,
    meter: &Meter,
    period: Duration,
    mut watchdog: impl Watchdog,
    ended: [Option<End>; 2],
) -> Outcome {
    let mut up = Flow::new(true);
    let mut down = Flow::new(false);
    (up.done, down.done) = (ended[0], ended[1]);
    let tick = tokio::time::sleep(period);
    tokio::pin!(tick);
    // The waker the armed timer holds; the timer is polled again only when it has fired or the
    // task's waker changed.
    let mut armed: Option<std::task::Waker> = None;
    let stopped = std::future::poll_fn(|cx| {
        if tick.is_elapsed() {
            if watchdog.must_close(meter.moved()) {
                return Poll::Ready(true);
            }
            tick.as_mut().reset(tokio::time::Instant::now() + period);
            armed = None;
        }
        if !armed.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            // A deadline `period` ahead cannot be ready at once.
            let _ = tick.as_mut().poll(cx);
            armed = Some(cx.waker().clone());
            // Wakers registered for the sockets are another task's: register anew.
            up.waiting = false;
            down.waiting = false;
        }
        let u = up.poll(client, target, meter, cx);
        let d = down.poll(target, client, meter, cx);
        match (u, d) {
            // A failure of one direction ends both at once.
            (Poll::Ready(e), _) | (_, Poll::Ready(e)) if e != End::Eof => Poll::Ready(false),
            // A clean end of one (a half-close) lets the other go on.
            (Poll::Ready(_), Poll::Ready(_)) => Poll::Ready(false),
            _ => Poll::Pending,
        }
    })
    .await;
    if stopped {
        return Outcome::Stopped;
    }
    let end = |f: &Flow| f.done.unwrap_or(End::Eof);
    finish(client, target, end(&up), end(&down))
}

fn finish(client: &TcpStream, target: &TcpStream, up: End, down: End) -> Outcome {
    let o = outcome(up, down);
    match o {
        Outcome::ClientReset => crate::socket::reset_on_close(target),
        Outcome::TargetReset => crate::socket::reset_on_close(client),
        Outcome::Closed | Outcome::Stopped => {}
    }
    o
}

fn shutdown_write(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write);
}

/// Size of a direction's copy buffer; on Linux a read that fills it switches the direction to
/// splice.
const COPY_BUF: usize = 8 * 1024;

/// Bytes a splice moves at most at once.
#[cfg(target_os = "linux")]
const CHUNK: usize = 1 << 16;

/// One direction of a TCP relay.
///
/// It starts copying through a small buffer — one read and one write per message, a read
/// shorter than the buffer telling that the socket is drained (so the runtime is told it is not
/// readable any more: the next read waits for new data instead of costing a system call that
/// would find none), which is the cheapest for request/response traffic — and on Linux moves
/// to `splice(2)` through a pipe at the first read that fills the buffer, the sign of bulk
/// transfer. The buffer is allocated at the first readable moment, so idle connections hold
/// none.
struct Flow {
    /// From the client (to the target), or the reverse.
    up: bool,
    buf: Vec<u8>,
    /// `buf[start..end]` is read and not yet written.
    start: usize,
    end: usize,
    /// The last read filled the buffer: splice once it is written.
    bulk: bool,
    /// The last read filled the buffer (the socket may still be readable).
    full: bool,
    /// The last read was short: the socket is drained and the runtime knows it, so the next
    /// read waits for readiness first rather than trying (and failing) at once.
    drained: bool,
    /// The task's waker is registered for the source's read readiness and no readiness has
    /// been seen since: a try that finds the socket not ready needs no new registration (the
    /// runtime keeps a registered waker until a readiness event wakes it, and that event
    /// leaves the socket ready until a read finds it drained).
    waiting: bool,
    #[cfg(target_os = "linux")]
    pipe: Option<Pipe>,
    /// How the direction ended, once it has.
    done: Option<End>,
}

/// A splicing direction's pipe and the bytes in it.
#[cfg(target_os = "linux")]
struct Pipe {
    r: std::os::fd::OwnedFd,
    w: std::os::fd::OwnedFd,
    held: usize,
}

impl Flow {
    fn new(up: bool) -> Self {
        Self {
            up,
            buf: Vec::new(),
            start: 0,
            end: 0,
            bulk: false,
            full: false,
            drained: false,
            waiting: false,
            #[cfg(target_os = "linux")]
            pipe: None,
            done: None,
        }
    }

    /// Moves what can be moved now; `Ready` with how the direction ended.
    fn poll(
        &mut self,
        from: &TcpStream,
        to: &TcpStream,
        meter: &Meter,
        cx: &mut Context<'_>,
    ) -> Poll<End> {
        if let Some(e) = self.done {
            return Poll::Ready(e);
        }
        #[cfg(target_os = "linux")]
        let r = if self.pipe.is_some() {
            self.poll_splice(from, to, meter, cx)
        } else {
            self.poll_copy(from, to, meter, cx)
        };
        #[cfg(not(target_os = "linux"))]
        let r = self.poll_copy(from, to, meter, cx);
        if let Poll::Ready(e) = r {
            if e == End::Eof {
                shutdown_write(to);
            }
            self.done = Some(e);
            self.buf = Vec::new();
            #[cfg(target_os = "linux")]
            {
                self.pipe = None;
            }
        }
        r
    }

    fn poll_copy(
        &mut self,
        from: &TcpStream,
        to: &TcpStream,
        meter: &Meter,
        cx: &mut Context<'_>,
    ) -> Poll<End> {
        loop {
            // Readiness is polled (registering the waker) only when a try finds the socket not
            // ready: a try costs no system call then (the runtime's readiness is consulted).
            while self.start < self.end {
                match to.try_write(&self.buf[self.start..self.end]) {
                    Ok(n) => {
                        self.start += n;
                        meter.record(self.up, n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if ready!(to.poll_write_ready(cx)).is_err() {
                            return Poll::Ready(End::WriteError);
                        }
                    }
                    Err(_) => return Poll::Ready(End::WriteError),
                }
            }
            #[cfg(target_os = "linux")]
            if self.bulk {
                use rustix::pipe::{pipe_with, PipeFlags};
                self.bulk = false;
                if let Ok((r, w)) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC) {
                    self.buf = Vec::new();
                    self.pipe = Some(Pipe { r, w, held: 0 });
                    return self.poll_splice(from, to, meter, cx);
                }
                // No pipe to be had: go on copying.
            }
            // Polled first when no buffer is held yet (it is taken once bytes are there), after
            // a read that filled the buffer (the socket may stay ready: polling spends the
            // task's budget, so a stream that never drains still lets others run) and right
            // after a short one (the socket is known to be drained: the waker is registered
            // without a try that would fail; once woken, the read is tried first).
            if self.buf.is_empty() || self.full || std::mem::take(&mut self.drained) {
                if ready!(self.wait_readable(from, cx)).is_err() {
                    return Poll::Ready(End::ReadError);
                }
                if self.buf.is_empty() {
                    self.buf.resize(COPY_BUF, 0);
                }
            }
            let buf = &mut self.buf[..];
            let mut short = 0;
            let mut tried = false;
            let r = from.try_io(Interest::READABLE, || {
                tried = true;
                match rustix::io::read(from, &mut *buf).map_err(io::Error::from) {
                    Ok(n) if n > 0 && n < COPY_BUF => {
                        // Drained: clear the readiness (by reporting WouldBlock) and keep `n`.
                        short = n;
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    r => r,
                }
            });
            if tried {
                // Readiness was seen: the registered waker may have been spent on it.
                self.waiting = false;
            }
            let n = match r {
                Ok(0) => return Poll::Ready(End::Eof),
                Ok(n) => n,
                // `short` is set only when the closure reported its own WouldBlock.
                Err(_) if short > 0 => short,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !tried && self.waiting {
                        return Poll::Pending;
                    }
                    if ready!(self.wait_readable(from, cx)).is_err() {
                        return Poll::Ready(End::ReadError);
                    }
                    continue;
                }
                Err(_) => return Poll::Ready(End::ReadError),
            };
            (self.start, self.end) = (0, n);
            self.full = n == COPY_BUF;
            self.bulk = self.full;
            self.drained = !self.full;
        }
    }

    /// Polls `from` for read readiness, noting whether the task's waker is left registered.
    fn wait_readable(&mut self, from: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let p = from.poll_read_ready(cx);
        self.waiting = p.is_pending();
        p
    }

    #[cfg(target_os = "linux")]
    fn poll_splice(
        &mut self,
        from: &TcpStream,
        to: &TcpStream,
        meter: &Meter,
        cx: &mut Context<'_>,
    ) -> Poll<End> {
        use rustix::pipe::{splice, SpliceFlags};
        let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
        let Some(pipe) = self.pipe.as_mut() else { return Poll::Ready(End::Eof) };
        loop {
            while pipe.held > 0 {
                if ready!(to.poll_write_ready(cx)).is_err() {
                    return Poll::Ready(End::WriteError);
                }
                match to.try_io(Interest::WRITABLE, || {
                    splice(&pipe.r, None, to, None, pipe.held, flags).map_err(io::Error::from)
                }) {
                    Ok(m) => {
                        pipe.held -= m;
                        meter.record(self.up, m);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return Poll::Ready(End::WriteError),
                }
            }
            if ready!(from.poll_read_ready(cx)).is_err() {
                return Poll::Ready(End::ReadError);
            }
            // The pipe is empty here, so EAGAIN can only mean the socket has nothing to read.
            match from.try_io(Interest::READABLE, || {
                splice(from, None, &pipe.w, None, CHUNK, flags).map_err(io::Error::from)
            }) {
                Ok(0) => return Poll::Ready(End::Eof),
                Ok(n) => pipe.held = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Poll::Ready(End::ReadError),
            }
        }
    }
}

/// Runs `watchdog` every `period` until it asks to close.
async fn watch(meter: &Meter, period: Duration, mut watchdog: impl Watchdog) {
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tick.tick().await;
        if watchdog.must_close(meter.moved()) {
            return;
        }
    }
}

/// Runs both directions: a clean end of one (a half-close) lets the other go on; a failure of
/// one ends both at once (the other is reported as ended cleanly).
async fn both(
    up: impl std::future::Future<Output = End>,
    down: impl std::future::Future<Output = End>,
) -> (End, End) {
    tokio::pin!(up, down);
    tokio::select! {
        u = &mut up => if u == End::Eof { (u, down.await) } else { (u, End::Eof) },
        d = &mut down => if d == End::Eof { (up.await, d) } else { (End::Eof, d) },
    }
}

/// Relays between any two streams (TLS on one side or both) through 16 KiB buffers.
///
/// `watchdog` is asked every `period`, as for [`tcp`].
pub async fn streams<C, T>(
    client: C,
    target: T,
    meter: &Meter,
    period: Duration,
    watchdog: impl Watchdog,
) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut tr, mut tw) = tokio::io::split(target);
    let relay = both(
        copy_one_way(&mut cr, &mut tw, meter, true),
        copy_one_way(&mut tr, &mut cw, meter, false),
    );
    tokio::select! {
        (up, down) = relay => outcome(up, down),
        () = watch(meter, period, watchdog) => Outcome::Stopped,
    }
}

async fn copy_one_way<R, W>(r: &mut R, w: &mut W, meter: &Meter, up: bool) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => {
                let _ = w.shutdown().await;
                return End::Eof;
            }
            Ok(n) => n,
            Err(_) => return End::ReadError,
        };
        if w.write_all(&buf[..n]).await.is_err() || w.flush().await.is_err() {
            return End::WriteError;
        }
        meter.record(up, n);
    }
}
