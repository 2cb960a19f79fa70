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
        version: ProtocolVersion::Http1,
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

/// An h2c gRPC server answering `grpc-status: status` in trailers (or in the headers of a
/// trailers-only response), and plain HTTP/2 GETs with 204.
async fn grpc_server(status: &'static str, trailers_only: bool) -> SocketAddr {
    use http_body_util::BodyExt;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        let grpc = req
                            .headers()
                            .get("content-type")
                            .is_some_and(|v| v == "application/grpc");
                        let path_ok = req.uri().path() == "/AWS.ALB/healthcheck";
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        let mut r = http::Response::builder().status(if grpc { 200 } else { 204 });
                        if !grpc {
                            return Ok::<_, std::convert::Infallible>(
                                r.body(http_body_util::Either::Left(http_body_util::Empty::<
                                    bytes::Bytes,
                                >::new(
                                )))
                                .unwrap(),
                            );
                        }
                        assert!(
                            path_ok && body.as_ref() == [0, 0, 0, 0, 0],
                            "a gRPC call with an empty message"
                        );
                        r = r.header("content-type", "application/grpc");
                        if trailers_only {
                            r = r.header("grpc-status", status);
                            return Ok(r
                                .body(http_body_util::Either::Left(http_body_util::Empty::new()))
                                .unwrap());
                        }
                        let mut t = http::HeaderMap::new();
                        t.insert("grpc-status", http::HeaderValue::from_static(status));
                        let b = TrailersOnly(Some(t));
                        Ok(r.body(http_body_util::Either::Right(b)).unwrap())
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
            });
        }
    });
    addr
}

/// A body of nothing but trailers.
struct TrailersOnly(Option<http::HeaderMap>);

impl hyper::body::Body for TrailersOnly {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.take().map(|t| Ok(hyper::body::Frame::trailers(t))))
    }
}

#[tokio::test]
async fn grpc_and_http2_probes() {
    let mut grpc = spec(Protocol::Http, "200");
    grpc.version = ProtocolVersion::Grpc;
    grpc.path = "/AWS.ALB/healthcheck".into();
    grpc.matcher = Some(Matcher::grpc("0-1").unwrap());
    for trailers_only in [false, true] {
        let ok = grpc_server("0", trailers_only).await;
        assert_eq!(probe(ok, &grpc).await, ProbeOutcome::Success, "trailers_only={trailers_only}");
        let unimplemented = grpc_server("12", trailers_only).await;
        assert_eq!(probe(unimplemented, &grpc).await, ProbeOutcome::CodeMismatch(12));
    }
    let mut h2 = spec(Protocol::Http, "204");
    h2.version = ProtocolVersion::Http2;
    assert_eq!(probe(grpc_server("0", true).await, &h2).await, ProbeOutcome::Success);
    h2.matcher = Some(Matcher::http("200", 200, 499).unwrap());
    assert_eq!(probe(grpc_server("0", true).await, &h2).await, ProbeOutcome::CodeMismatch(204));
}
