//! Moving bytes both ways between a client and a target.
//!
//! Plain TCP on Linux starts each direction copying through a small buffer — one read and one
//! write per message, the read's short count telling that the socket is drained, which is the
//! cheapest for request/response traffic — and switches that direction to `splice(2)` via a
//! pipe (payload never crossing into user space) at the first read that fills the buffer, the
//! sign of bulk transfer. Anything else (TLS on either side) is copied through bounded
//! buffers. Both record activity for the idle timeout and propagate half-closes; an error on
//! one side resets the other, as an NLB does.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes moved, shared with the connection's watchdog, which tells idleness from the count
/// not moving between its ticks — no clock is read per message.
#[derive(Debug, Default)]
pub struct Meter {
    /// Payload bytes moved, both directions.
    pub bytes: AtomicU64,
    /// Of those, bytes from the client to the target.
    pub from_client: AtomicU64,
}

impl Meter {
    /// Records `n` bytes moved, from the client (`up`) or to it.
    pub fn record(&self, up: bool, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        if up {
            self.from_client.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
    /// Payload bytes moved so far, both directions.
    pub fn moved(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// How a one-way copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The reading side closed cleanly; the writing side was shut down.
    Eof,
    /// The reading side reset or failed.
    ReadError,
    /// The writing side reset or failed.
    WriteError,
}

/// Which side ended a relay with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Both directions closed cleanly.
    Closed,
    /// The client reset (or failed).
    ClientReset,
    /// The target reset (or failed).
    TargetReset,
}

fn outcome(up: End, down: End) -> Outcome {
    // `up` reads the client and writes the target; `down` the reverse.
    match (up, down) {
        (End::ReadError, _) | (_, End::WriteError) => Outcome::ClientReset,
        (End::WriteError, _) | (_, End::ReadError) => Outcome::TargetReset,
        _ => Outcome::Closed,
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

/// Relays between two TCP sockets until both directions close or one side fails.
pub async fn tcp(client: &TcpStream, target: &TcpStream, meter: &Meter) -> Outcome {
    #[cfg(target_os = "linux")]
    let (up, down) = both(
        splice_one_way(client, target, meter, true),
        splice_one_way(target, client, meter, false),
    )
    .await;
    #[cfg(not(target_os = "linux"))]
    let (up, down) = both(
        copy_tcp_one_way(client, target, meter, true),
        copy_tcp_one_way(target, client, meter, false),
    )
    .await;
    finish(client, target, up, down)
}

fn finish(client: &TcpStream, target: &TcpStream, up: End, down: End) -> Outcome {
    let o = outcome(up, down);
    match o {
        Outcome::ClientReset => crate::socket::reset_on_close(target),
        Outcome::TargetReset => crate::socket::reset_on_close(client),
        Outcome::Closed => {}
    }
    o
}

fn shutdown_write(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write);
}

/// Size of a direction's copy buffer; on Linux a read that fills it switches the direction to
/// splice.
const COPY_BUF: usize = 8 * 1024;

/// Reads what `from` has into `buf` (allocated at the first readable moment, so idle
/// connections hold none). A read shorter than the buffer drained the socket, so the runtime is
/// told the socket is not readable any more: the next read waits for new data instead of
/// costing a system call that would find none.
async fn read_drained(from: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    use tokio::io::Interest;
    loop {
        from.readable().await?;
        if buf.is_empty() {
            buf.resize(COPY_BUF, 0);
        }
        let mut short = 0;
        let r = from.try_io(Interest::READABLE, || {
            match rustix::io::read(from, &mut buf[..]).map_err(io::Error::from) {
                Ok(n) if n > 0 && n < COPY_BUF => {
                    short = n;
                    Err(io::ErrorKind::WouldBlock.into())
                }
                r => r,
            }
        });
        match r {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && short > 0 => return Ok(short),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(target_os = "linux")]
async fn splice_one_way(from: &TcpStream, to: &TcpStream, meter: &Meter, up: bool) -> End {
    use rustix::pipe::{pipe_with, splice, PipeFlags, SpliceFlags};
    use tokio::io::Interest;

    // Copy while messages are small.
    if let Some(end) = copy_tcp(from, to, meter, up, true).await {
        return end;
    }

    const CHUNK: usize = 1 << 16;
    let Ok((pipe_r, pipe_w)) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC) else {
        return copy_tcp_one_way(from, to, meter, up).await;
    };
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    loop {
        // The pipe is empty here, so EAGAIN can only mean the socket has nothing to read.
        let n = loop {
            if from.readable().await.is_err() {
                return End::ReadError;
            }
            match from.try_io(Interest::READABLE, || {
                splice(from, None, &pipe_w, None, CHUNK, flags).map_err(io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return End::ReadError,
            }
        };
        if n == 0 {
            shutdown_write(to);
            return End::Eof;
        }
        let mut left = n;
        while left > 0 {
            if to.writable().await.is_err() {
                return End::WriteError;
            }
            match to.try_io(Interest::WRITABLE, || {
                splice(&pipe_r, None, to, None, left, flags).map_err(io::Error::from)
            }) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return End::WriteError,
            }
        }
        meter.record(up, n);
    }
}

/// Writes all of `b` to `to`.
async fn write_all_tcp(to: &TcpStream, mut b: &[u8]) -> io::Result<()> {
    while !b.is_empty() {
        to.writable().await?;
        match to.try_write(b) {
            Ok(m) => b = &b[m..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The portable path (and Linux's when no pipe can be had): copies until the end.
async fn copy_tcp_one_way(from: &TcpStream, to: &TcpStream, meter: &Meter, up: bool) -> End {
    // Without `until_bulk` the copy only ends with an end.
    copy_tcp(from, to, meter, up, false).await.unwrap_or(End::Eof)
}

/// Copies from `from` to `to` through a [`COPY_BUF`] buffer until one side ends; with
/// `until_bulk`, only until a read fills the buffer (`None`: go on with bulk transfer).
async fn copy_tcp(
    from: &TcpStream,
    to: &TcpStream,
    meter: &Meter,
    up: bool,
    until_bulk: bool,
) -> Option<End> {
    let mut buf = Vec::new();
    loop {
        let n = match read_drained(from, &mut buf).await {
            Ok(n) => n,
            Err(_) => return Some(End::ReadError),
        };
        if n == 0 {
            shutdown_write(to);
            return Some(End::Eof);
        }
        if write_all_tcp(to, &buf[..n]).await.is_err() {
            return Some(End::WriteError);
        }
        meter.record(up, n);
        if until_bulk && n == COPY_BUF {
            return None;
        }
    }
}

/// Relays between any two streams (TLS on one side or both) through 16 KiB buffers.
pub async fn streams<C, T>(client: C, target: T, meter: &Meter) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut tr, mut tw) = tokio::io::split(target);
    let (up, down) = both(
        copy_one_way(&mut cr, &mut tw, meter, true),
        copy_one_way(&mut tr, &mut cw, meter, false),
    )
    .await;
    outcome(up, down)
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
