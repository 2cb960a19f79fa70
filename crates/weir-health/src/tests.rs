use super::*;
use tokio::net::TcpListener;
use weir_balance::TargetKey;

async fn one_shot_server(response: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(req.starts_with("GET /health HTTP/1.1\r\n"), "{req}");
                assert!(req.contains("User-Agent: ELB-HealthChecker/2.0"));
                let _ = s.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

fn spec(protocol: Protocol, matcher: &str) -> CheckSpec {
    CheckSpec {
        protocol,
        port: None,
        path: "/health".into(),
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(300),
        thresholds: Thresholds { healthy: 2, unhealthy: 2 },
        matcher: Some(Matcher::http(matcher, 200, 499).unwrap()),
    }
}

#[tokio::test]
async fn http_probe_matches_codes() {
    let ok = one_shot_server("HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(probe(ok, &spec(Protocol::Http, "200,202")).await, ProbeOutcome::Success);
    assert_eq!(probe(ok, &spec(Protocol::Http, "200")).await, ProbeOutcome::CodeMismatch(202));
    assert_eq!(probe(ok, &spec(Protocol::Http, "200-299")).await, ProbeOutcome::Success);
}

#[tokio::test]
async fn refused_and_silent_targets() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = l.local_addr().unwrap();
    drop(l);
    assert_eq!(probe(closed, &spec(Protocol::Http, "200")).await, ProbeOutcome::Failed);
    assert_eq!(probe(closed, &spec(Protocol::Tcp, "200")).await, ProbeOutcome::Failed);
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    assert_eq!(probe(addr, &spec(Protocol::Tcp, "200")).await, ProbeOutcome::Success);
    assert_eq!(probe(addr, &spec(Protocol::Http, "200")).await, ProbeOutcome::Timeout);
}

#[tokio::test]
async fn checker_drives_state_machine() {
    let addr =
        one_shot_server("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").await;
    let cell = Arc::new(TargetCell::new(
        TargetKey { id: addr.ip().to_string(), port: addr.port() },
        addr,
        "us-east-1a".into(),
    ));
    let h = spawn_checker(cell.clone(), Some(spec(Protocol::Http, "200"))).unwrap();
    for _ in 0..100 {
        if cell.state() == HealthState::Unhealthy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.abort();
    assert_eq!(cell.state(), HealthState::Unhealthy);
    assert_eq!(cell.reason(), Reason::ResponseCodeMismatch(503));
}

#[tokio::test]
async fn disabled_checks_mark_unavailable() {
    let cell = Arc::new(TargetCell::new(
        TargetKey { id: "127.0.0.1".into(), port: 1 },
        "127.0.0.1:1".parse().unwrap(),
        "us-east-1a".into(),
    ));
    assert!(spawn_checker(cell.clone(), None).is_none());
    assert_eq!(cell.state(), HealthState::Unavailable);
    assert!(cell.is_routable());
}

/// A TLS target with a self-signed certificate that answers every request with `status`.
async fn tls_server(status: u16) -> SocketAddr {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let ck = rcgen::generate_simple_self_signed(vec!["target.internal".into()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = [0u8; 2048];
                let n = tls.read(&mut buf).await.unwrap_or(0);
                assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /health HTTP/1.1"));
                let resp = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn https_probe_over_tls_without_verifying_the_target() {
    let ok = tls_server(200).await;
    assert_eq!(probe(ok, &spec(Protocol::Https, "200")).await, ProbeOutcome::Success);
    let bad = tls_server(500).await;
    assert_eq!(probe(bad, &spec(Protocol::Https, "200")).await, ProbeOutcome::CodeMismatch(500));
    // Plain HTTP against a TLS target fails; HTTPS against a plain target fails.
    assert_ne!(probe(ok, &spec(Protocol::Http, "200")).await, ProbeOutcome::Success);
    let plain = one_shot_server("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(probe(plain, &spec(Protocol::Https, "200")).await, ProbeOutcome::Failed);
}
