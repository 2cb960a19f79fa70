//! `weir appliance`: a GENEVE bounce appliance for trying and testing a GWLB. It returns every
//! GENEVE packet to its sender unchanged (options included, as AWS requires of appliances),
//! except packets matching a drop rule, and records the flows it saw. A small HTTP server
//! answers health checks (`200` on any path) and lists the flows at `/flows`, one per line:
//! `PROTO SRC:SPORT DST:DPORT PACKETS DROPPED`.
//!
//! The decision ([`Appliance::handle`]) is sans-I/O; [`run`] is the socket loop.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use crate::geneve::Geneve;
use crate::packet::{FlowTuple, TCP, UDP};

/// Which inner packets the appliance drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropRule {
    /// IP protocol (6 TCP, 17 UDP, 1 ICMP, ...).
    pub proto: u8,
    /// Port either side of the flow uses (`None`: any).
    pub port: Option<u16>,
}

impl std::str::FromStr for DropRule {
    type Err = String;

    /// `tcp:PORT`, `udp:PORT`, `tcp`, `udp`, `icmp` or a protocol number (`47`, `47:PORT`).
    fn from_str(s: &str) -> Result<Self, String> {
        let (proto, port) = match s.split_once(':') {
            Some((p, port)) => {
                (p, Some(port.parse::<u16>().map_err(|_| format!("bad port in {s:?}"))?))
            }
            None => (s, None),
        };
        let proto = match proto.to_ascii_lowercase().as_str() {
            "tcp" => TCP,
            "udp" => UDP,
            "icmp" => 1,
            n => n
                .parse()
                .map_err(|_| format!("unknown protocol in {s:?} (tcp, udp, icmp or a number)"))?,
        };
        Ok(Self { proto, port })
    }
}

impl DropRule {
    fn matches(&self, t: &FlowTuple) -> bool {
        t.proto == self.proto && self.port.is_none_or(|p| t.sport == p || t.dport == p)
    }
}

/// Per-flow counters, by direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// Packets returned.
    pub packets: u64,
    /// Packets dropped by a rule.
    pub dropped: u64,
}

/// The appliance's state.
#[derive(Debug, Default)]
pub struct Appliance {
    /// Drop rules.
    pub rules: Vec<DropRule>,
    flows: BTreeMap<(u8, SocketAddr, SocketAddr), Seen>,
}

impl Appliance {
    /// An appliance applying `rules`.
    pub fn new(rules: Vec<DropRule>) -> Self {
        Self { rules, flows: BTreeMap::new() }
    }

    /// Whether to return `datagram` to its sender: GENEVE carrying an IP packet no rule drops.
    pub fn handle(&mut self, datagram: &[u8]) -> bool {
        let Ok(g) = Geneve::parse(datagram) else { return false };
        let Ok(t) = FlowTuple::parse(g.payload) else { return false };
        let drop = self.rules.iter().any(|r| r.matches(&t));
        let seen = self
            .flows
            .entry((t.proto, SocketAddr::new(t.src, t.sport), SocketAddr::new(t.dst, t.dport)))
            .or_default();
        if drop {
            seen.dropped += 1;
        } else {
            seen.packets += 1;
        }
        !drop
    }

    /// The flows seen, one line each (`PROTO SRC DST PACKETS DROPPED`).
    pub fn report(&self) -> String {
        let mut out = String::new();
        for ((p, s, d), seen) in &self.flows {
            let _ = writeln!(out, "{p} {s} {d} {} {}", seen.packets, seen.dropped);
        }
        out
    }
}

/// Runs the appliance: GENEVE on `listen`, health checks and `/flows` on `health` (if any).
/// Returns only on a socket error.
pub async fn run(
    listen: SocketAddr,
    health: Option<SocketAddr>,
    rules: Vec<DropRule>,
) -> io::Result<()> {
    let socket = UdpSocket::bind(listen).await?;
    let state = Arc::new(Mutex::new(Appliance::new(rules)));
    if let Some(h) = health {
        let l = TcpListener::bind(h).await?;
        tokio::spawn(serve_health(l, state.clone()));
    }
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        let bounce = state.lock().map(|mut a| a.handle(&buf[..n])).unwrap_or(false);
        if bounce {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    }
}

async fn serve_health(l: TcpListener, state: Arc<Mutex<Appliance>>) {
    loop {
        let Ok((mut s, _)) = l.accept().await else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&head);
            let path = line.split_whitespace().nth(1).unwrap_or("/");
            let body = if path == "/flows" {
                state.lock().map(|a| a.report()).unwrap_or_default()
            } else {
                "ok\n".to_string()
            };
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geneve::{GwlbMetadata, PROTO_IPV4};

    fn geneve_udp(dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, UDP, 0, 0, 10, 1, 0, 2, 10, 2, 0, 2];
        p.extend_from_slice(&4000u16.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0, 8, 0, 0]);
        let mut out = Vec::new();
        GwlbMetadata { endpoint_id: 1, attachment_id: 2, flow_cookie: 3 }
            .encode(PROTO_IPV4, &p, &mut out);
        out
    }

    #[test]
    fn bounces_unless_a_rule_drops_and_reports_flows() {
        let mut a = Appliance::new(vec!["udp:5001".parse().unwrap()]);
        assert!(a.handle(&geneve_udp(5000)));
        assert!(!a.handle(&geneve_udp(5001)));
        assert!(!a.handle(b"not geneve"));
        assert_eq!(
            a.report(),
            "17 10.1.0.2:4000 10.2.0.2:5000 1 0\n17 10.1.0.2:4000 10.2.0.2:5001 0 1\n"
        );
        assert_eq!("tcp".parse::<DropRule>(), Ok(DropRule { proto: TCP, port: None }));
        assert!("gre:x".parse::<DropRule>().is_err());
        assert!("bogus".parse::<DropRule>().is_err());
    }
}
