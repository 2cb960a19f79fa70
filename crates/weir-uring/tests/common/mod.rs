//! Connected loopback socket pairs for the relay tests, and a slow reader.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::thread::JoinHandle;
use std::time::Duration;

/// Two connected TCP sockets on 127.0.0.1: (the peer's end, the relay's end).
pub fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

/// A pair whose relay end sends into a small buffer and whose peer end has a small receive
/// window: a peer that does not read soon blocks the relay's sends.
pub fn narrow_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    peer.set_recv_buffer_size(4096).unwrap();
    peer.connect(&l.local_addr().unwrap().into()).unwrap();
    let (relay_end, _) = l.accept().unwrap();
    socket2::SockRef::from(&relay_end).set_send_buffer_size(4096).unwrap();
    relay_end.set_nodelay(true).unwrap();
    (peer.into(), relay_end)
}

/// The relay's ends, as the relay takes them (non-blocking).
pub fn fds(client: TcpStream, target: TcpStream) -> (OwnedFd, OwnedFd) {
    client.set_nonblocking(true).unwrap();
    target.set_nonblocking(true).unwrap();
    (client.into(), target.into())
}

/// Writes `n` messages of `len` bytes (byte i of the stream is `i % 251`), `gap` apart.
pub fn write_paced(mut s: TcpStream, n: usize, len: usize, gap: Duration) -> TcpStream {
    let mut at = 0usize;
    for _ in 0..n {
        let msg: Vec<u8> = (at..at + len).map(|i| (i % 251) as u8).collect();
        s.write_all(&msg).unwrap();
        at += len;
        std::thread::sleep(gap);
    }
    s
}

/// Reads `total` bytes after `delay` and checks them against [`write_paced`]'s pattern.
pub fn read_checked(mut s: TcpStream, total: usize, delay: Duration) {
    std::thread::sleep(delay);
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = vec![0u8; total];
    s.read_exact(&mut got).expect("every byte sent arrives");
    for (i, b) in got.iter().enumerate() {
        assert_eq!(*b, (i % 251) as u8, "byte {i} differs");
    }
}

/// Copies what is left from `from` to `to` until end-of-stream (what a caller does with a
/// connection the ring hands back).
pub fn finish_copy(from: OwnedFd, to: OwnedFd) {
    let (mut from, mut to) = (TcpStream::from(from), TcpStream::from(to));
    from.set_nonblocking(false).unwrap();
    to.set_nonblocking(false).unwrap();
    std::io::copy(&mut from, &mut to).unwrap();
    to.shutdown(std::net::Shutdown::Write).unwrap();
}

/// A transfer through the relay in two threads: `n` messages of `len` bytes written to
/// `client` a millisecond apart (each its own receive), then a half-close; and `backend`
/// reading them all only after 0.5 s, when its window and the relay's send buffer have long
/// been full. Join with [`join`].
pub fn paced_transfer(
    client: TcpStream,
    backend: TcpStream,
    n: usize,
    len: usize,
) -> (JoinHandle<TcpStream>, JoinHandle<()>) {
    let writer = std::thread::spawn(move || {
        let c = write_paced(client, n, len, Duration::from_millis(1));
        c.shutdown(std::net::Shutdown::Write).unwrap();
        c
    });
    let reader =
        std::thread::spawn(move || read_checked(backend, n * len, Duration::from_millis(500)));
    (writer, reader)
}

/// Waits for both threads of [`paced_transfer`] (the reader's checks included).
pub async fn join(threads: (JoinHandle<TcpStream>, JoinHandle<()>)) {
    tokio::task::spawn_blocking(move || {
        threads.0.join().unwrap();
        threads.1.join().unwrap();
    })
    .await
    .unwrap();
}
