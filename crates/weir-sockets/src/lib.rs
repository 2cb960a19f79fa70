//! Listening sockets that can outlive their process.
//!
//! Every socket Weir listens on (ALB and NLB listeners, the API, DNS, GENEVE, demo backends) is
//! opened through [`tcp_listener`] or [`udp_socket`]. The registry keeps a duplicate of each
//! open one (dropped with its [`Registration`]), so that a binary upgrade can send them all to
//! the next process ([`handoff`]); that process [`inherit`]s them, and binding one of those
//! addresses then takes the inherited socket instead of binding anew. Connections queued on a
//! listening socket are never lost: both processes accept from the same socket until the old
//! one stops. See `docs/security.md` (hitless operations).
#![forbid(unsafe_code)]

pub mod handoff;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Mutex, OnceLock};

use socket2::{Domain, Protocol, Socket, Type};

/// The transport of a listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A TCP listener.
    Tcp,
    /// A UDP socket.
    Udp,
}

#[derive(Default)]
struct Registry {
    /// Sockets received from the previous process, not yet taken.
    inherited: HashMap<(Kind, SocketAddr), OwnedFd>,
    /// Duplicates of the sockets open now, by registration id.
    open: HashMap<u64, (Kind, SocketAddr, OwnedFd)>,
    next: u64,
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps a socket in the registry; dropping it (with the socket's task) forgets it, so a
/// closed listener is never handed on.
#[derive(Debug)]
#[must_use = "the socket is forgotten when its registration drops"]
pub struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        registry().open.remove(&self.0);
    }
}

fn register(kind: Kind, local: SocketAddr, dup: OwnedFd) -> Registration {
    let mut r = registry();
    r.next += 1;
    let id = r.next;
    r.open.insert(id, (kind, local, dup));
    Registration(id)
}

fn take_inherited(kind: Kind, addr: SocketAddr) -> Option<OwnedFd> {
    if addr.port() == 0 {
        return None;
    }
    registry().inherited.remove(&(kind, addr))
}

/// A TCP listener on `addr`: the one inherited from the previous process if there is one,
/// else newly bound (`SO_REUSEADDR`, backlog 1024, as tokio's `TcpListener::bind`).
pub fn tcp_listener(addr: SocketAddr) -> io::Result<(tokio::net::TcpListener, Registration)> {
    let std = match take_inherited(Kind::Tcp, addr) {
        Some(fd) => {
            tracing::debug!(%addr, "using the inherited TCP listener");
            std::net::TcpListener::from(fd)
        }
        None => {
            let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            s.set_reuse_address(true)?;
            s.bind(&addr.into())?;
            s.listen(1024)?;
            std::net::TcpListener::from(s)
        }
    };
    std.set_nonblocking(true)?;
    let local = std.local_addr()?;
    let reg = register(Kind::Tcp, local, OwnedFd::from(std.try_clone()?));
    Ok((tokio::net::TcpListener::from_std(std)?, reg))
}

/// A UDP socket on `addr`: inherited if there is one, else newly bound.
pub fn udp_socket(addr: SocketAddr) -> io::Result<(tokio::net::UdpSocket, Registration)> {
    let std = match take_inherited(Kind::Udp, addr) {
        Some(fd) => std::net::UdpSocket::from(fd),
        None => std::net::UdpSocket::bind(addr)?,
    };
    std.set_nonblocking(true)?;
    let local = std.local_addr()?;
    let reg = register(Kind::Udp, local, OwnedFd::from(std.try_clone()?));
    Ok((tokio::net::UdpSocket::from_std(std)?, reg))
}

/// Adds sockets received from the previous process; binding their addresses takes them.
pub fn inherit(sockets: Vec<(Kind, SocketAddr, OwnedFd)>) {
    let mut r = registry();
    for (kind, addr, fd) in sockets {
        r.inherited.insert((kind, addr), fd);
    }
}

/// Duplicates of every socket open now, to hand to the next process.
pub fn open_sockets() -> io::Result<Vec<(Kind, SocketAddr, OwnedFd)>> {
    let r = registry();
    let mut v: Vec<_> = r
        .open
        .values()
        .map(|(k, a, fd)| Ok((*k, *a, fd.try_clone()?)))
        .collect::<io::Result<_>>()?;
    v.sort_by_key(|(k, a, _)| (*k as u8, *a));
    Ok(v)
}

/// Closes inherited sockets nobody took (the new configuration no longer has them).
pub fn drop_unclaimed() -> usize {
    let mut r = registry();
    let n = r.inherited.len();
    r.inherited.clear();
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sockets_are_registered_while_open_and_inherited_by_address() {
        let (l, reg) = tcp_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let (u, ureg) = udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let uaddr = u.local_addr().unwrap();
        let open = open_sockets().unwrap();
        assert!(open.iter().any(|(k, a, _)| *k == Kind::Tcp && *a == addr));
        assert!(open.iter().any(|(k, a, _)| *k == Kind::Udp && *a == uaddr));
        // The "next process": inherits the duplicates, and binding the same addresses (which
        // are still in use here) takes them instead of failing.
        inherit(open);
        drop((l, reg, u, ureg));
        let (l2, _r2) = tcp_listener(addr).unwrap();
        assert_eq!(l2.local_addr().unwrap(), addr);
        let c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_, peer) = l2.accept().await.unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        let (u2, _ur2) = udp_socket(uaddr).unwrap();
        assert_eq!(u2.local_addr().unwrap(), uaddr);
        assert_eq!(drop_unclaimed(), 0);
    }
}
