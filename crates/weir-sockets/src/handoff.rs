//! The binary-upgrade handshake over a Unix socket (the `--control-socket`):
//!
//! 1. the new process connects and sends `TAKEOVER`;
//! 2. the old one stops changing its state and sends every open listening socket: frames of a
//!    4-byte length and a JSON list of `(kind, address)`, the descriptors attached to the
//!    length bytes (`SCM_RIGHTS`, at most [`BATCH`] per frame), the last frame marked;
//! 3. the new process serves with them and sends `READY`;
//! 4. the old one stops accepting, drains its connections and exits. If the new process goes
//!    away before `READY`, the old one carries on as if nothing happened.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::Kind;

/// What the new process sends first.
pub const TAKEOVER: &[u8] = b"TAKEOVER\n";
/// What the new process sends once it serves.
pub const READY: &[u8] = b"READY\n";
/// Most descriptors in one frame (Linux allows 253).
pub const BATCH: usize = 200;
/// Largest JSON part of a frame.
const MAX_FRAME: u32 = 1 << 20;

#[derive(serde::Serialize, serde::Deserialize)]
struct Frame {
    sockets: Vec<(Kind, SocketAddr)>,
    last: bool,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Old side: sends `sockets` (descriptors duplicated into the peer).
pub fn send_sockets(
    stream: &mut UnixStream,
    sockets: &[(Kind, SocketAddr, OwnedFd)],
) -> io::Result<()> {
    let chunks: Vec<&[(Kind, SocketAddr, OwnedFd)]> =
        if sockets.is_empty() { vec![sockets] } else { sockets.chunks(BATCH).collect() };
    for (i, chunk) in chunks.iter().enumerate() {
        let frame = Frame {
            sockets: chunk.iter().map(|(k, a, _)| (*k, *a)).collect(),
            last: i + 1 == chunks.len(),
        };
        let body = serde_json::to_vec(&frame).map_err(|e| invalid(e.to_string()))?;
        let len = u32::try_from(body.len()).map_err(|_| invalid("frame too large"))?.to_be_bytes();
        let fds: Vec<BorrowedFd<'_>> = chunk.iter().map(|(_, _, fd)| fd.as_fd()).collect();
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(BATCH))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(invalid("descriptors do not fit the control buffer"));
        }
        let sent = sendmsg(&*stream, &[IoSlice::new(&len)], &mut control, SendFlags::empty())?;
        stream.write_all(&len[sent..])?;
        stream.write_all(&body)?;
    }
    stream.flush()
}

/// New side: receives the sockets the old process sends.
pub fn receive_sockets(stream: &mut UnixStream) -> io::Result<Vec<(Kind, SocketAddr, OwnedFd)>> {
    let mut out = Vec::new();
    loop {
        let mut len = [0u8; 4];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(BATCH))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = recvmsg(
            &*stream,
            &mut [IoSliceMut::new(&mut len)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        if got.bytes == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the old process hung up"));
        }
        let fds: Vec<OwnedFd> = control
            .drain()
            .flat_map(|m| match m {
                RecvAncillaryMessage::ScmRights(fds) => fds.collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .collect();
        stream.read_exact(&mut len[got.bytes..])?;
        let n = u32::from_be_bytes(len);
        if n > MAX_FRAME {
            return Err(invalid(format!("frame of {n} bytes")));
        }
        let mut body = vec![0u8; n as usize];
        stream.read_exact(&mut body)?;
        let frame: Frame = serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
        if frame.sockets.len() != fds.len() {
            return Err(invalid(format!(
                "{} sockets described, {} descriptors received",
                frame.sockets.len(),
                fds.len()
            )));
        }
        out.extend(frame.sockets.into_iter().zip(fds).map(|((k, a), fd)| (k, a, fd)));
        if frame.last {
            return Ok(out);
        }
    }
}

/// New side: asks the process serving `control` to hand over its sockets and [`inherit`]s
/// them. Returns the connection to send `READY` on and how many sockets came.
///
/// [`inherit`]: crate::inherit
pub fn take_over(control: &Path) -> io::Result<(UnixStream, usize)> {
    let mut stream = UnixStream::connect(control)?;
    stream.write_all(TAKEOVER)?;
    let sockets = receive_sockets(&mut stream)?;
    let n = sockets.len();
    crate::inherit(sockets);
    Ok((stream, n))
}

/// New side: tells the old process to stop.
pub fn ready(mut stream: UnixStream) -> io::Result<()> {
    stream.write_all(READY)?;
    stream.flush()
}

/// Old side: reads the request line of a control connection; whether it is `TAKEOVER`.
pub fn read_request(stream: &mut UnixStream) -> io::Result<bool> {
    let mut line = [0u8; TAKEOVER.len()];
    stream.read_exact(&mut line)?;
    Ok(line == TAKEOVER)
}

/// Old side: waits for `READY` (false when the new process hung up or said something else).
pub fn wait_ready(stream: &mut UnixStream) -> bool {
    let mut line = [0u8; READY.len()];
    stream.read_exact(&mut line).is_ok() && line == READY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_cross_a_unix_socket_in_batches() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let listeners: Vec<std::net::TcpListener> =
            (0..(BATCH + 7)).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let sockets: Vec<(Kind, SocketAddr, OwnedFd)> = listeners
            .iter()
            .map(|l| (Kind::Tcp, l.local_addr().unwrap(), OwnedFd::from(l.try_clone().unwrap())))
            .collect();
        let sender = std::thread::spawn(move || send_sockets(&mut a, &sockets).map(|_| a));
        let got = receive_sockets(&mut b).unwrap();
        let mut a = sender.join().unwrap().unwrap();
        assert_eq!(got.len(), BATCH + 7);
        for ((kind, addr, fd), l) in got.into_iter().zip(&listeners) {
            assert_eq!((kind, addr), (Kind::Tcp, l.local_addr().unwrap()));
            // The received descriptor is the same listening socket.
            let received = std::net::TcpListener::from(fd);
            assert_eq!(received.local_addr().unwrap(), addr);
        }
        // An empty hand-over is one final frame; READY travels back.
        send_sockets(&mut a, &[]).unwrap();
        assert!(receive_sockets(&mut b).unwrap().is_empty());
        ready(b).unwrap();
        assert!(wait_ready(&mut a));
    }
}
