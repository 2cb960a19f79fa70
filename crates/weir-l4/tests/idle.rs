//! A listener built from a hand-made snapshot (the attribute's 60 s floor would make an
//! end-to-end test slow): idle connections are reset after the idle timeout, active ones not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_balance::{FlowKeyMode, FlowPool, TargetCell, TargetKey};
use weir_l4::{L4Group, L4Protocol, L4Snapshot, L4Stats, NodeAddr};

async fn echo_backend() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut b = [0u8; 512];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 || s.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    a
}

#[tokio::test]
async fn idle_connections_are_reset_and_active_ones_kept() {
    let backend = echo_backend().await;
    let cell = Arc::new(TargetCell::new(
        TargetKey { id: "127.0.0.1".into(), port: backend.port() },
        backend,
        "us-east-1a".into(),
    ));
    let group = L4Group {
        arn: "tg".into(),
        all: FlowPool::new(vec![cell]),
        zones: HashMap::new(),
        cross_zone: true,
        proxy_protocol_v2: false,
        preserve_client_ip: false,
        key_mode: FlowKeyMode::FiveTuple,
        terminate_on_drain: false,
        terminate_on_unhealthy: true,
        target_tls: None,
    };
    let snap = L4Snapshot {
        listener_arn: "l".into(),
        protocol: L4Protocol::Tcp,
        tls: None,
        certificate_arns: Vec::new(),
        tcp_idle_timeout: Duration::from_secs(1),
        udp_idle_timeout: Duration::from_secs(120),
        group: Some(Arc::new(group)),
    };
    let addr = NodeAddr { addr: "127.0.0.1:0".parse().unwrap(), zone: None };
    let h = weir_l4::serve_listener(&[addr], Arc::new(ArcSwap::from_pointee(snap))).await.unwrap();
    let lb = h.local_addrs()[0];

    let mut idle = TcpStream::connect(lb).await.unwrap();
    let mut busy = TcpStream::connect(lb).await.unwrap();
    let mut b = [0u8; 16];
    for _ in 0..8 {
        busy.write_all(b"ping").await.unwrap();
        busy.read_exact(&mut b[..4]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // 2 s later: the idle connection was reset, the busy one still echoes.
    let r = idle.read(&mut b).await;
    assert!(matches!(r, Err(_) | Ok(0)), "idle connection still open: {r:?}");
    busy.write_all(b"pong").await.unwrap();
    busy.read_exact(&mut b[..4]).await.unwrap();
    assert_eq!(&b[..4], b"pong");
    assert_eq!(L4Stats::get(&h.stats.tcp_elb_resets), 1);
    h.stop().await;
}
