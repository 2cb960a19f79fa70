//! Outgoing sockets towards targets, optionally from the client's own address (client IP
//! preservation). Where the client's address is not local, this needs `IP_TRANSPARENT` (Linux,
//! `CAP_NET_ADMIN`) and a policy route delivering the targets' replies locally; see
//! `docs/nlb.md`. Without them the connection falls back to the node's own address.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Protocol, Socket, Type};

static WARNED: AtomicBool = AtomicBool::new(false);

fn new_socket(target: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(target), ty, Some(proto))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Binds `s` to the client's IP (any port) when `from` is given: transparently when allowed, so
/// non-local client addresses work too. Returns whether the address was preserved.
fn bind_client(s: &Socket, from: IpAddr, target: SocketAddr) -> bool {
    if from.is_ipv4() != target.is_ipv4() {
        return false;
    }
    let transparent = match from {
        IpAddr::V4(_) => s.set_ip_transparent_v4(true),
        IpAddr::V6(_) => s.set_ip_transparent_v6(true),
    };
    match s.bind(&SocketAddr::new(from, 0).into()) {
        Ok(()) => true,
        Err(e) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    client = %from,
                    error = %e,
                    transparent = transparent.is_ok(),
                    "cannot connect from the client's address (client IP preservation needs IP_TRANSPARENT); using the node's address"
                );
            }
            false
        }
    }
}

/// Connects to `target` over TCP, from `from`'s address when given.
pub async fn connect_tcp(
    target: SocketAddr,
    from: Option<IpAddr>,
) -> io::Result<tokio::net::TcpStream> {
    let mk = || new_socket(target, Type::STREAM, Protocol::TCP);
    let mut s = mk()?;
    if let Some(ip) = from {
        if !bind_client(&s, ip, target) {
            // A failed bind leaves the socket unusable for another bind: start over.
            s = mk()?;
        }
    }
    s.set_tcp_nodelay(true)?;
    let socket = tokio::net::TcpSocket::from_std_stream(s.into());
    socket.connect(target).await
}

/// A UDP socket connected to `target`, from `from`'s address when given.
pub fn connect_udp(target: SocketAddr, from: Option<IpAddr>) -> io::Result<tokio::net::UdpSocket> {
    let mk = || new_socket(target, Type::DGRAM, Protocol::UDP);
    let mut s = mk()?;
    let mut bound = false;
    if let Some(ip) = from {
        bound = bind_client(&s, ip, target);
        if !bound {
            s = mk()?;
        }
    }
    if !bound {
        let any: IpAddr =
            if target.is_ipv4() { IpAddr::from([0, 0, 0, 0]) } else { IpAddr::from([0u16; 8]) };
        s.bind(&SocketAddr::new(any, 0).into())?;
    }
    s.connect(&target.into())?;
    tokio::net::UdpSocket::from_std(s.into())
}

/// Makes dropping `s` send a TCP reset instead of a FIN.
pub fn reset_on_close(s: &impl std::os::fd::AsFd) {
    let _ = socket2::SockRef::from(s).set_linger(Some(std::time::Duration::ZERO));
}
