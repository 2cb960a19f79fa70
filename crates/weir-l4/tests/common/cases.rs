// The connection tests, included by `connections.rs` (io_uring where the kernel has it)
// and `connections_epoll.rs` (io_uring turned off).

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

fn target(backend: std::net::SocketAddr) -> Arc<TargetCell> {
    Arc::new(TargetCell::new(
        TargetKey { id: "127.0.0.1".into(), port: backend.port() },
        backend,
        "us-east-1a".into(),
    ))
}

fn snapshot(backend: std::net::SocketAddr, idle: Duration) -> L4Snapshot {
    snapshot_of(target(backend), idle)
}

/// A listener's snapshot with `cell` its only target (unhealthy termination on).
fn snapshot_of(cell: Arc<TargetCell>, idle: Duration) -> L4Snapshot {
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
    L4Snapshot {
        listener_arn: "l".into(),
        protocol: L4Protocol::Tcp,
        tls: None,
        certificates: Vec::new(),
        elb: "net/test/0".into(),
        access_log: None,
        tcp_idle_timeout: idle,
        udp_idle_timeout: Duration::from_secs(120),
        group: Some(Arc::new(group)),
        limits: Arc::default(),
    }
}

async fn listener(snap: L4Snapshot) -> (weir_l4::L4Handle, std::net::SocketAddr) {
    if EPOLL_ONLY {
        weir_uring::disable();
    }
    let addr = NodeAddr { addr: "127.0.0.1:0".parse().unwrap(), zone: None };
    let h = weir_l4::serve_listener(&[addr], Arc::new(ArcSwap::from_pointee(snap))).await.unwrap();
    let lb = h.local_addrs()[0];
    (h, lb)
}

#[tokio::test]
async fn idle_connections_are_reset_and_active_ones_kept() {
    let (h, lb) = listener(snapshot(echo_backend().await, Duration::from_secs(1))).await;

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

#[tokio::test]
async fn bulk_transfer_arrives_intact_both_ways_and_is_counted() {
    let (h, lb) = listener(snapshot(echo_backend().await, Duration::from_secs(60))).await;
    const LEN: usize = 8 << 20;
    // Not a repeating buffer-sized pattern: a lost, doubled or reordered chunk shows.
    let data: Vec<u8> = (0..LEN).map(|i| (i * 7 + i / 4093) as u8).collect();
    let (mut r, mut w) = TcpStream::connect(lb).await.unwrap().into_split();
    // A small request/response exchange first (the copying mode), then bulk (splicing).
    w.write_all(b"hello").await.unwrap();
    let mut b = [0u8; 5];
    r.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"hello");
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        for chunk in sent.chunks(100_000) {
            w.write_all(chunk).await.unwrap();
        }
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::with_capacity(LEN);
    tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut back))
        .await
        .expect("the echo came back within 30 s")
        .unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), LEN, "echoed byte count");
    assert!(back == data, "the echoed bytes differ from those sent");
    // Counted once the connection is over: both directions, the first exchange included.
    let want = 2 * (LEN as u64 + 5);
    for _ in 0..100 {
        if L4Stats::get(&h.stats.processed_bytes_tcp) == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(L4Stats::get(&h.stats.processed_bytes_tcp), want);
    assert_eq!(L4Stats::get(&h.stats.tcp_client_resets), 0);
    assert_eq!(L4Stats::get(&h.stats.tcp_target_resets), 0);
    h.stop().await;
}

/// A target that answers each message at once and then, a moment later, speaks again on its
/// own: "x" gets "x" back, then "+".
async fn chatty_backend() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            // Small writes go out at once (no Nagle wait for the relay's delayed ACK).
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut b = [0u8; 64];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 || s.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    if s.write_all(b"+").await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    a
}

#[tokio::test]
async fn bytes_a_target_sends_unprompted_are_relayed_at_once() {
    // The relay is woken by the client's bytes, relays them, and must still be waiting on the
    // target when it speaks unprompted: a direction left unregistered would only be looked at
    // on the next 250 ms watchdog tick, which 60 rounds would add up to seconds.
    let (h, lb) = listener(snapshot(chatty_backend().await, Duration::from_secs(60))).await;
    let mut c = TcpStream::connect(lb).await.unwrap();
    c.set_nodelay(true).unwrap();
    let started = std::time::Instant::now();
    let mut b = [0u8; 1];
    for _ in 0..60 {
        c.write_all(b"x").await.unwrap();
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"x");
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"+");
    }
    // 60 × 5 ms of the target's own pauses (about 0.4 s in all); a stall per round would add
    // up to 60 × 2 × 250 ms.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "60 rounds took {took:?}");
    h.stop().await;
}

#[tokio::test]
async fn stopping_a_tcp_listener_resets_its_connections() {
    let (h, lb) = listener(snapshot(echo_backend().await, Duration::from_secs(60))).await;
    let mut c = TcpStream::connect(lb).await.unwrap();
    c.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).await.unwrap();
    let stats = h.stats.clone();
    h.stop().await;
    let r = tokio::time::timeout(Duration::from_secs(2), c.read(&mut b))
        .await
        .expect("the connection ended within 2 s of the stop");
    assert!(matches!(r, Err(_) | Ok(0)), "connection still open: {r:?}");
    assert_eq!(L4Stats::get(&stats.tcp_elb_resets), 1);
}

#[tokio::test]
async fn a_target_turning_unhealthy_resets_its_connections_at_once() {
    let cell = target(echo_backend().await);
    // A 60 s idle timeout: nothing periodic would look at this connection within the second
    // the test allows; only the target's change of state can end it that soon.
    let (h, lb) = listener(snapshot_of(cell.clone(), Duration::from_secs(60))).await;
    let mut c = TcpStream::connect(lb).await.unwrap();
    c.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    cell.set_health(HealthState::Unhealthy, Reason::Timeout);
    let r = tokio::time::timeout(Duration::from_secs(1), c.read(&mut b))
        .await
        .expect("the connection ended within 1 s of its target turning unhealthy");
    assert!(matches!(r, Err(_) | Ok(0)), "connection still open: {r:?}");
    assert_eq!(L4Stats::get(&h.stats.tcp_elb_resets), 1);
    h.stop().await;
}

/// A backend that holds each connection open without writing and reports how it ended.
async fn silent_backend() -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut b = [0u8; 512];
                let mut got = Vec::new();
                let end = loop {
                    match s.read(&mut b).await {
                        Ok(0) => break "eof",
                        Ok(n) => got.extend_from_slice(&b[..n]),
                        Err(_) => break "reset",
                    }
                };
                // After a half-close the target can still answer.
                let _ = s.write_all(b"late answer").await;
                let _ = tx.send(format!("{end} {}", String::from_utf8_lossy(&got)));
            });
        }
    });
    (a, rx)
}

#[tokio::test]
async fn a_client_reset_reaches_the_target_at_once_and_a_half_close_lets_it_answer() {
    let (backend, mut ends) = silent_backend().await;
    let (h, lb) = listener(snapshot(backend, Duration::from_secs(350))).await;

    // Half-close: the target sees EOF after the bytes, and its answer still reaches the client.
    let mut c = TcpStream::connect(lb).await.unwrap();
    c.write_all(b"request").await.unwrap();
    c.shutdown().await.unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer, "late answer");
    let end = tokio::time::timeout(Duration::from_secs(2), ends.recv()).await.unwrap().unwrap();
    assert_eq!(end, "eof request");

    // Reset: the target learns at once, though it never writes.
    let c = TcpStream::connect(lb).await.unwrap();
    // Let the load balancer reach the target first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO)).unwrap();
    drop(c);
    let end = tokio::time::timeout(Duration::from_secs(2), ends.recv())
        .await
        .expect("the target's connection ended within 2 s")
        .unwrap();
    assert!(end.starts_with("reset") || end.starts_with("eof"), "{end}");
    for _ in 0..100 {
        if L4Stats::get(&h.stats.active_flows_tcp) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(L4Stats::get(&h.stats.tcp_client_resets), 1);
    assert_eq!(L4Stats::get(&h.stats.active_flows_tcp), 0);
    h.stop().await;
}

#[tokio::test]
async fn stopping_a_udp_listener_ends_its_flows() {
    let backend = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    tokio::spawn(async move {
        let mut b = [0u8; 512];
        while let Ok((n, p)) = backend.recv_from(&mut b).await {
            let _ = backend.send_to(&b[..n], p).await;
        }
    });
    let mut snap = snapshot(backend_addr, Duration::from_secs(350));
    snap.protocol = L4Protocol::Udp;
    let (h, lb) = listener(snap).await;
    let c = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.send_to(b"ping", lb).await.unwrap();
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), c.recv(&mut b)).await.unwrap().unwrap();
    assert_eq!(&b[..n], b"ping");
    let stats = h.stats.clone();
    assert_eq!(L4Stats::get(&stats.active_flows_udp), 1);
    h.stop().await;
    assert_eq!(L4Stats::get(&stats.active_flows_udp), 0);
}

#[tokio::test]
async fn connections_beyond_the_limits_are_closed_and_counted() {
    let mut snap = snapshot(echo_backend().await, Duration::from_secs(60));
    snap.limits = Arc::new(weir_model::Limits {
        max_connections: 3,
        max_connection_rate_per_source: 5,
        ..weir_model::Limits::default()
    });
    let (h, lb) = listener(snap).await;
    let echo = |mut s: TcpStream| async move {
        let mut b = [0u8; 4];
        let ok = s.write_all(b"ping").await.is_ok()
            && tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut b))
                .await
                .is_ok_and(|r| r.is_ok());
        (ok, s)
    };
    // Start just after a second boundary of the limiter's clock, so the whole check below falls
    // in one second of the rate window.
    while weir_balance::rate::monotonic_ms() % 1000 > 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Three connections are relayed; the fourth is closed while they are open.
    let mut open = Vec::new();
    for _ in 0..3 {
        let (ok, s) = echo(TcpStream::connect(lb).await.unwrap()).await;
        assert!(ok, "a connection within the limit was not relayed");
        open.push(s);
    }
    let (ok, _) = echo(TcpStream::connect(lb).await.unwrap()).await;
    assert!(!ok, "a connection over the limit was relayed");
    assert_eq!(L4Stats::get(&h.stats.rejected_connections), 1);
    drop(open);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Room again: the fifth new connection this second is relayed, the sixth exceeds the
    // source's rate (5 a second, the one shed at the connection limit included) and is closed.
    let (ok, _fifth) = echo(TcpStream::connect(lb).await.unwrap()).await;
    assert!(ok, "a connection within both limits was not relayed");
    let (ok, _) = echo(TcpStream::connect(lb).await.unwrap()).await;
    assert!(!ok, "a connection over the source's rate was relayed");
    assert_eq!(L4Stats::get(&h.stats.rejected_connections), 2);
    // A second later the source may connect again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (ok, _) = echo(TcpStream::connect(lb).await.unwrap()).await;
    assert!(ok, "the source was not let back in after its rate window");
    h.stop().await;
}

#[tokio::test]
async fn plain_tcp_is_relayed_on_the_path_chosen() {
    let (h, lb) = listener(snapshot(echo_backend().await, Duration::from_secs(60))).await;
    let mut c = TcpStream::connect(lb).await.unwrap();
    let mut b = [0u8; 3];
    for _ in 0..3 {
        c.write_all(b"abc").await.unwrap();
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"abc");
    }
    if EPOLL_ONLY {
        assert_eq!(weir_uring::counters().started, 0, "io_uring used though turned off");
    } else if weir_uring::available() {
        assert!(weir_uring::counters().started > 0, "io_uring available but not used");
    } else {
        eprintln!("io_uring is unavailable here: plain TCP went through epoll");
    }
    drop(c);
    h.stop().await;
}
