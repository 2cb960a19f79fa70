//! HTTPS listeners and HTTP/2: certificates chosen by SNI (exact, wildcard, default), ALPN,
//! security policies as TLS versions, TLS headers to targets, h2 and h2c clients, HTTPS and
//! HTTP/2 targets, WebSocket tunnels.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use weir_tests::*;

fn https_yaml(
    tg_name: &str,
    targets: &str,
    listener: &str,
    lb_attrs: &str,
    tg_extra: &str,
) -> String {
    format!(
        r#"
Resources:
  LB:
    Type: AWS::ElasticLoadBalancingV2::LoadBalancer
    Properties:
      Name: {tg_name}
      LoadBalancerAttributes: [{lb_attrs}]
  TG:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties:
      Name: {tg_name}
      Port: 80
      TargetType: ip
      HealthCheckEnabled: false
{tg_extra}
      Targets:
{targets}
  L:
    Type: AWS::ElasticLoadBalancingV2::Listener
    Properties:
      LoadBalancerArn: !Ref LB
      Port: ${{PORT}}
{listener}
      DefaultActions: [{{ Type: forward, TargetGroupArn: !Ref TG }}]
"#
    )
}

/// Connects with rustls (any certificate accepted) sending `sni`; returns the certificate the
/// load balancer presented and the ALPN protocol it chose.
async fn handshake(port: u16, sni: &str, alpn: &[&[u8]]) -> (Vec<u8>, Option<Vec<u8>>) {
    let cfg = weir_l7::upstream::insecure_client_config(alpn);
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.unwrap();
    let (_, c) = tls.get_ref();
    (c.peer_certificates().unwrap()[0].to_vec(), c.alpn_protocol().map(<[u8]>::to_vec))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_exact_then_wildcard_then_default_and_alpn_offers_h2() {
    let dir = TempDir::new("sni");
    let (default, default_der) = write_cert(&dir.0, "default", &["default.test"]);
    let (wild, wild_der) = write_cert(&dir.0, "wild", &["*.example.com"]);
    let (exact, exact_der) = write_cert(&dir.0, "exact", &["api.example.com"]);
    let b = backends("sni", 1).await;
    let listener =
        format!("      Protocol: HTTPS\n      Certificates: [{{ CertificateArn: {default} }}]");
    let mut yaml = https_yaml("sni", &targets_yaml(&b, 8), &listener, "", "      Protocol: HTTP");
    yaml.push_str(&format!(
        r#"  LC:
    Type: AWS::ElasticLoadBalancingV2::ListenerCertificate
    Properties:
      ListenerArn: !Ref L
      Certificates: [{{ CertificateArn: {wild} }}, {{ CertificateArn: {exact} }}]
"#
    ));
    let lb = Lb::up_with_certs(&yaml, &dir.0).await;
    let alpn: &[&[u8]] = &[b"h2", b"http/1.1"];
    let (cert, proto) = handshake(lb.port, "api.example.com", alpn).await;
    assert_eq!(cert, exact_der, "exact name wins over the wildcard");
    assert_eq!(proto.as_deref(), Some(&b"h2"[..]));
    assert_eq!(handshake(lb.port, "www.example.com", alpn).await.0, wild_der, "wildcard");
    assert_eq!(handshake(lb.port, "a.b.example.com", alpn).await.0, default_der, "one label only");
    assert_eq!(handshake(lb.port, "other.test", alpn).await.0, default_der, "default");
    let (_, proto) = handshake(lb.port, "other.test", &[b"http/1.1"]).await;
    assert_eq!(proto.as_deref(), Some(&b"http/1.1"[..]));

    // curl speaks HTTP/2 over TLS to it and gets the target's answer with X-Forwarded-Proto.
    let url = format!("https://127.0.0.1:{}/h2", lb.port);
    let (code, out) = curl(&["-k", "--http2", "-w", "\n%{http_version}", &url]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("sni-1\nGET /h2"), "{out}");
    assert!(out.contains("x-forwarded-proto: https"), "{out}");
    assert!(out.ends_with("\n2"), "{out}");
    let (_, out) = curl(&["-k", "--http1.1", "-w", "\n%{http_version}", &url]);
    assert!(out.ends_with("\n1.1"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_limit_tls_versions_and_tls_headers_reach_targets() {
    let dir = TempDir::new("policy");
    let (arn, _) = write_cert(&dir.0, "site", &["site.test"]);
    let b = backends("pol", 1).await;
    let listener = format!(
        "      Protocol: HTTPS\n      SslPolicy: ELBSecurityPolicy-TLS13-1-3-2021-06\n      Certificates: [{{ CertificateArn: {arn} }}]"
    );
    let attrs = "{ Key: routing.http.x_amzn_tls_version_and_cipher_suite.enabled, Value: \"true\" }, { Key: routing.http2.enabled, Value: \"false\" }";
    let yaml = https_yaml("pol", &targets_yaml(&b, 8), &listener, attrs, "      Protocol: HTTP");
    let lb = Lb::up_with_certs(&yaml, &dir.0).await;
    let url = format!("https://127.0.0.1:{}/", lb.port);
    let (code, out) = curl(&["-k", "--tls-max", "1.2", &url]);
    assert_ne!(code, 0, "a TLS 1.2 client is refused by a TLS 1.3-only policy: {out}");
    let (code, out) = curl(&["-k", "--http2", "-w", "\n%{http_version}", &url]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("x-amzn-tls-version: TLSv1.3"), "{out}");
    assert!(out.contains("x-amzn-tls-cipher-suite: TLS_AES_128_GCM_SHA256"), "{out}");
    assert!(out.ends_with("\n1.1"), "routing.http2.enabled=false keeps clients on HTTP/1.1: {out}");
    let stats = lb.dp.listener_stats(&lb.listener_arn()).await.unwrap();
    assert!(stats.tls_negotiation_errors.load(std::sync::atomic::Ordering::Relaxed) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_and_http2_and_https_targets() {
    let plain = backends("h2c", 1).await;
    let tls_backend =
        weir_demo::DemoBackend::start_tls("127.0.0.1:0".parse().unwrap(), "tls-1").await.unwrap();
    // HTTP/2 to an h2c target.
    let yaml = https_yaml(
        "h2t",
        &targets_yaml(&plain, 8),
        "      Protocol: HTTP",
        "",
        "      Protocol: HTTP\n      ProtocolVersion: HTTP2",
    );
    let lb = Lb::up(&yaml).await;
    let url = lb.url("/x");
    let (code, out) = curl(&["--http2-prior-knowledge", "-i", &url]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("HTTP/2 200"), "h2c from the client: {out}");
    assert!(out.contains("x-demo-version: HTTP/2.0"), "HTTP/2 to the target: {out}");
    // HTTPS targets, HTTP/1.1 and HTTP/2.
    for (version, seen) in [("HTTP1", "HTTP/1.1"), ("HTTP2", "HTTP/2.0")] {
        let yaml = https_yaml(
            &format!("tls{}", version.to_lowercase()),
            &format!("        - {{ Id: 127.0.0.1, Port: {} }}\n", tls_backend.addr.port()),
            "      Protocol: HTTP",
            "",
            &format!("      Protocol: HTTPS\n      ProtocolVersion: {version}"),
        );
        let lb = Lb::up(&yaml).await;
        let r = get(&lb.url("/secure")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.backend(), "tls-1");
        assert_eq!(r.headers["x-demo-version"], seen);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_is_tunnelled_both_ways() {
    let b = backends("ws", 1).await;
    let yaml =
        https_yaml("ws", &targets_yaml(&b, 8), "      Protocol: HTTP", "", "      Protocol: HTTP");
    let lb = Lb::up(&yaml).await;
    let url = format!("ws://127.0.0.1:{}/_demo/ws", lb.port);
    let (mut ws, resp) =
        tokio_tungstenite::connect_async(url.as_str()).await.expect("ws handshake");
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let m = ws.next().await.unwrap().unwrap();
        assert_eq!(m.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().into_data().as_ref(), &[0u8, 1, 2, 255]);
    ws.close(None).await.unwrap();
    let stats = lb.dp.listener_stats(&lb.listener_arn()).await.unwrap();
    assert_eq!(stats.websocket_upgrades.load(std::sync::atomic::Ordering::Relaxed), 1);
    // Ordinary requests still work on the same listener.
    assert_eq!(get(&lb.url("/")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_target_group_with_grpc_health_checks_and_trailers() {
    use http_body_util::BodyExt;
    let g = grpc_backend("grpc-1").await;
    let tg = "      Protocol: HTTP\n      ProtocolVersion: GRPC\n      HealthCheckEnabled: true\n      HealthCheckIntervalSeconds: 5\n      HealthCheckTimeoutSeconds: 2\n      HealthyThresholdCount: 2\n      Matcher: { GrpcCode: \"0\" }";
    let yaml = https_yaml(
        "grpc",
        &format!("        - {{ Id: 127.0.0.1, Port: {} }}\n", g.port()),
        "      Protocol: HTTP",
        "",
        tg,
    )
    .replace("      HealthCheckEnabled: false\n", "");
    let lb = Lb::up(&yaml).await;
    let h = lb.wait_health("grpc", 15, |h| h.iter().all(|t| t.state.as_str() == "healthy")).await;
    assert_eq!(h[0].state.as_str(), "healthy", "the gRPC health check passes with GrpcCode 0");
    // A gRPC call over h2c through the load balancer gets the message and the trailers.
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = http::Request::post(lb.url("/pkg.Service/Method"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let r = c.request(req).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), http::Version::HTTP_2);
    let collected = r.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers reach the client");
    assert_eq!(trailers["grpc-status"], "0");
    let data = collected.to_bytes();
    assert_eq!(&data[5..], b"grpc-1 /pkg.Service/Method");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_tls_wss() {
    let dir = TempDir::new("wss");
    let (arn, _) = write_cert(&dir.0, "wss", &["localhost"]);
    let b = backends("wss", 1).await;
    let listener =
        format!("      Protocol: HTTPS\n      Certificates: [{{ CertificateArn: {arn} }}]");
    let yaml = https_yaml("wss", &targets_yaml(&b, 8), &listener, "", "      Protocol: HTTP");
    let lb = Lb::up_with_certs(&yaml, &dir.0).await;
    let cfg = weir_l7::upstream::insecure_client_config(&[b"http/1.1"]);
    let tcp = TcpStream::connect(("127.0.0.1", lb.port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.unwrap();
    let url = format!("wss://localhost:{}/_demo/ws", lb.port);
    let (mut ws, resp) =
        tokio_tungstenite::client_async(url.as_str(), tls).await.expect("wss handshake");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("over tls")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().into_text().unwrap().as_str(), "over tls");
    ws.close(None).await.unwrap();
    let stats = lb.dp.listener_stats(&lb.listener_arn()).await.unwrap();
    assert_eq!(stats.websocket_upgrades.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_parallel_http2_streams_over_tls_each_get_their_answer() {
    use http_body_util::BodyExt;
    let dir = TempDir::new("h2par");
    let (cert, _) = write_cert(&dir.0, "h2par", &["h2par.test"]);
    let b = backends("h2par", 2).await;
    let listener =
        format!("      Protocol: HTTPS\n      Certificates: [{{ CertificateArn: {cert} }}]");
    let yaml = https_yaml("h2par", &targets_yaml(&b, 8), &listener, "", "      Protocol: HTTP");
    let lb = Lb::up_with_certs(&yaml, &dir.0).await;
    let cfg = weir_l7::upstream::insecure_client_config(&[b"h2"]);
    let tcp = TcpStream::connect(("127.0.0.1", lb.port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("h2par.test").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.unwrap();
    let send = h2_client(tls).await;
    // Rounds of 100 streams at once: responses from the streams are written together, and
    // none is held back waiting for another.
    for round in 0..3 {
        let mut tasks = Vec::new();
        for i in 0..100 {
            let mut send = send.clone();
            tasks.push(tokio::spawn(async move {
                send.ready().await.unwrap();
                let path = format!("/r{round}/s{i}");
                let req = http::Request::get(format!("https://h2par.test{path}"))
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap();
                let r = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                    let r = send.send_request(req).await.unwrap();
                    let status = r.status();
                    (status, r.into_body().collect().await.unwrap().to_bytes())
                })
                .await
                .expect("every stream is answered");
                assert_eq!(r.0, 200);
                let body = String::from_utf8_lossy(&r.1).into_owned();
                assert!(body.contains(&format!("GET {path}")), "{body}");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    assert_eq!(b.iter().map(|b| b.requests()).sum::<u64>(), 300);
}
