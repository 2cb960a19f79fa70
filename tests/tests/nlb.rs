//! NLB end to end: TCP, UDP and TCP_UDP listeners distributing flows over real backends, flow
//! and source-IP stickiness, PROXY v2 bytes checked by the backend, client-IP preservation on
//! loopback, TLS termination with SNI and ALPN (to TCP and TLS targets), draining with and
//! without connection termination, cross-zone on/off, DNS failover, and NLB access logs of TLS
//! connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use weir_balance::HealthState;
use weir_l4::L4Stats;
use weir_tests::*;

fn attrs(key: &str, pairs: &[(&str, &str)]) -> String {
    attributes(key, pairs)
}

#[tokio::test]
async fn tcp_flows_spread_over_targets_and_each_connection_stays_on_one() {
    let b = [
        tcp_backend("t1", "127.0.0.1", false).await,
        tcp_backend("t2", "127.0.0.1", false).await,
        tcp_backend("t3", "127.0.0.1", false).await,
    ];
    let lb = Lb::up(&nlb_template("TCP", "", "TCP", "", "", &b)).await;
    let mut seen = BTreeMap::new();
    for i in 0..30 {
        let mut c = LineClient::connect(lb.addr(), None).await.unwrap();
        let name = c.backend().to_string();
        for j in 0..3 {
            // Every echo comes back over the same target connection.
            assert_eq!(c.echo(&format!("m{i}-{j}")).await.unwrap(), format!("m{i}-{j}"));
        }
        *seen.entry(name).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "every target gets flows: {seen:?}");
    let stats = lb.dp.l4_stats(&lb.listener_arn()).await.unwrap();
    assert_eq!(L4Stats::get(&stats.new_flows_tcp), 30);
    // Each connection moved its 3 echoes both ways plus the greeting (counted at close).
    for _ in 0..100 {
        if L4Stats::get(&stats.active_flows_tcp) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(L4Stats::get(&stats.processed_bytes_tcp) >= 30 * 3 * 2 * 5);
    assert_eq!(L4Stats::get(&stats.active_flows_tcp), 0);
}

#[tokio::test]
async fn source_ip_stickiness_keeps_a_client_address_on_one_target() {
    let b = [
        tcp_backend("s1", "127.0.0.1", false).await,
        tcp_backend("s2", "127.0.0.1", false).await,
        tcp_backend("s3", "127.0.0.1", false).await,
    ];
    let tg = attrs(
        "TargetGroupAttributes",
        &[("stickiness.enabled", "true"), ("stickiness.type", "source_ip")],
    );
    let lb = Lb::up(&nlb_template("TCP", "", "TCP", &tg, "", &b)).await;
    let mut by_source = BTreeMap::new();
    for src in 2..14 {
        let ip = format!("127.0.0.{src}");
        let mut names = BTreeSet::new();
        for _ in 0..4 {
            let c = LineClient::connect(lb.addr(), Some(&ip)).await.unwrap();
            names.insert(c.backend().to_string());
        }
        assert_eq!(names.len(), 1, "{ip} went to {names:?}");
        by_source.insert(ip, names.into_iter().next().unwrap());
    }
    let distinct: BTreeSet<&String> = by_source.values().collect();
    assert!(distinct.len() >= 2, "sources spread over targets: {by_source:?}");
}

#[tokio::test]
async fn client_ip_is_preserved_when_enabled_and_not_otherwise() {
    let b = [tcp_backend("p", "127.0.0.1", false).await];
    for (on, want) in [("true", "127.0.0.7"), ("false", "127.0.0.1")] {
        let tg = attrs("TargetGroupAttributes", &[("preserve_client_ip.enabled", on)]);
        let lb = Lb::up(&nlb_template("TCP", "", "TCP", &tg, "", &b)).await;
        let c = LineClient::connect(lb.addr(), Some("127.0.0.7")).await.unwrap();
        let peer: SocketAddr = c.greeting.split(' ').nth(2).unwrap().parse().unwrap();
        assert_eq!(peer.ip().to_string(), want, "preserve_client_ip={on}");
    }
}

#[tokio::test]
async fn proxy_protocol_v2_header_carries_the_client_address() {
    let b = [tcp_backend("pp", "127.0.0.1", true).await];
    let tg = attrs("TargetGroupAttributes", &[("proxy_protocol_v2.enabled", "true")]);
    let lb = Lb::up(&nlb_template("TCP", "", "TCP", &tg, "", &b)).await;
    let mut c = LineClient::connect(lb.addr(), Some("127.0.0.9")).await.unwrap();
    let client = c.stream.local_addr().unwrap();
    let parts: Vec<&str> = c.greeting.split(' ').collect();
    assert_eq!(parts[..2], ["pp", "proxy"], "{}", c.greeting);
    assert_eq!(parts[2].parse::<SocketAddr>().unwrap(), client);
    assert_eq!(parts[3].parse::<SocketAddr>().unwrap(), lb.addr());
    // The header is sent once, ahead of the client's bytes, which follow untouched.
    assert_eq!(c.echo("after the header").await.unwrap(), "after the header");
}

async fn udp_round_trip(sock: &UdpSocket, to: SocketAddr, msg: &str) -> String {
    sock.send_to(msg.as_bytes(), to).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    // Replies come from the address the client sent to.
    assert_eq!(from, to);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn udp_flows_spread_and_each_flow_stays_on_one_target() {
    let b = [
        udp_backend("u1", "127.0.0.1").await,
        udp_backend("u2", "127.0.0.1").await,
        udp_backend("u3", "127.0.0.1").await,
    ];
    let lb = Lb::up(&nlb_template("UDP", "", "UDP", "", "", &b)).await;
    let mut seen = BTreeSet::new();
    // Every client socket stays open until the end: a closed one's port could be handed out
    // again, and the same address and port is the same flow, not a new one.
    let mut clients = Vec::new();
    for i in 0..24 {
        clients.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let s = &clients[i];
        let mut names = BTreeSet::new();
        for j in 0..3 {
            let r = udp_round_trip(s, lb.addr(), &format!("d{i}-{j}")).await;
            let parts: Vec<&str> = r.split(' ').collect();
            assert_eq!(parts[2], format!("d{i}-{j}"));
            names.insert(parts[0].to_string());
        }
        assert_eq!(names.len(), 1, "flow {i} moved: {names:?}");
        seen.extend(names);
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    let stats = lb.dp.l4_stats(&lb.listener_arn()).await.unwrap();
    assert_eq!(L4Stats::get(&stats.new_flows_udp), 24);
    assert_eq!(L4Stats::get(&stats.active_flows_udp), 24);
}

#[tokio::test]
async fn udp_source_ip_stickiness_keeps_every_flow_of_an_address_on_one_target() {
    let b = [
        udp_backend("v1", "127.0.0.1").await,
        udp_backend("v2", "127.0.0.1").await,
        udp_backend("v3", "127.0.0.1").await,
    ];
    let tg = attrs(
        "TargetGroupAttributes",
        &[("stickiness.enabled", "true"), ("stickiness.type", "source_ip")],
    );
    let lb = Lb::up(&nlb_template("UDP", "", "UDP", &tg, "", &b)).await;
    let mut by_source = BTreeMap::new();
    for src in 2..14 {
        let mut names = BTreeSet::new();
        // Several flows (source ports) from one address.
        for _ in 0..3 {
            let s = UdpSocket::bind(format!("127.0.0.{src}:0")).await.unwrap();
            let r = udp_round_trip(&s, lb.addr(), "hi").await;
            names.insert(r.split(' ').next().unwrap().to_string());
        }
        assert_eq!(names.len(), 1, "127.0.0.{src} went to {names:?}");
        by_source.insert(src, names.into_iter().next().unwrap());
    }
    let distinct: BTreeSet<&String> = by_source.values().collect();
    assert!(distinct.len() >= 2, "sources spread over targets: {by_source:?}");
}

#[tokio::test]
async fn tcp_udp_listener_serves_both_on_one_port() {
    // One target address with a TCP and a UDP server on the same port.
    let (tcp, udp) = loop {
        let t = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = t.local_addr().unwrap().port();
        if let Ok(u) = UdpSocket::bind(("127.0.0.1", port)).await {
            break (t, u);
        }
    };
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            let _ = s.write_all(b"tcp-side\n").await;
        }
    });
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, p)) = udp.recv_from(&mut buf).await {
            let _ = udp.send_to(&[b"udp-side ".as_slice(), &buf[..n]].concat(), p).await;
        }
    });
    let lb = Lb::up(&nlb_template("TCP_UDP", "", "TCP_UDP", "", "", &[addr])).await;
    let c = LineClient::connect(lb.addr(), None).await.unwrap();
    assert_eq!(c.greeting, "tcp-side");
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert_eq!(udp_round_trip(&s, lb.addr(), "x").await, "udp-side x");
}

/// A TLS client offering `alpn` that accepts any certificate (the one Weir uses towards
/// targets).
fn tls_client(alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    tokio_rustls::TlsConnector::from(Arc::new(weir_l7::upstream::insecure_client_config(alpn)))
}

#[tokio::test]
async fn tls_listener_terminates_with_sni_certificates_and_alpn_policy() {
    let dir = TempDir::new("nlb-tls");
    let (a_arn, _) = write_cert(&dir.0, "nlb-a", &["a.example"]);
    let (b_arn, b_der) = write_cert(&dir.0, "nlb-b", &["b.example"]);
    let backend = [tcp_backend("plain", "127.0.0.1", false).await];
    let listener = format!(
        "      Certificates: [{{ CertificateArn: \"{a_arn}\" }}]\n      AlpnPolicy: [HTTP2Preferred]\n      SslPolicy: ELBSecurityPolicy-TLS13-1-2-2021-06"
    );
    let mut lb =
        Lb::up_with_certs(&nlb_template("TLS", &listener, "TCP", "", "", &backend), &dir.0).await;
    let l = lb.listener_arn();
    lb.change(|s| s.add_listener_certificates(&l, std::slice::from_ref(&b_arn)).unwrap()).await;

    let tcp = tokio::net::TcpStream::connect(lb.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("b.example").unwrap();
    let mut s = tls_client(&[b"http/1.1", b"h2"]).connect(name, tcp).await.unwrap();
    {
        let (_, conn) = s.get_ref();
        // HTTP2Preferred: the server's preference (h2) wins over the client's order.
        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(conn.peer_certificates().unwrap()[0].as_ref(), &b_der[..], "SNI picks b");
        assert_eq!(conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    }
    // The target sees plaintext: its greeting, then the echo of what the client encrypted.
    let mut buf = vec![0u8; 256];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("plain peer "));
    s.write_all(b"secret\n").await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"secret\n");
    let stats = lb.dp.l4_stats(&l).await.unwrap();
    assert_eq!(L4Stats::get(&stats.new_flows_tls), 1);

    // A client offering only http/1.1 to an HTTP2Only listener fails the handshake.
    lb.change(|st| {
        st.modify_listener(
            &l,
            None,
            None,
            None,
            weir_model::ListenerTls { alpn_policy: Some("HTTP2Only".into()), ..Default::default() },
        )
        .unwrap()
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(lb.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("a.example").unwrap();
    assert!(tls_client(&[b"http/1.1"]).connect(name, tcp).await.is_err());
    for _ in 0..100 {
        if L4Stats::get(&stats.client_tls_negotiation_errors) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(L4Stats::get(&stats.client_tls_negotiation_errors), 1);
}

#[tokio::test]
async fn tls_connections_are_logged_in_nlb_access_log_format() {
    use weir_l4::conn_log::{parse_line, read_all, FIELDS};
    let dir = TempDir::new("nlb-tls-log");
    let (arn, _) = write_cert(&dir.0, "nlb-log", &["log.example"]);
    let serial =
        weir_l7::tls::CertificateStore::new(dir.0.clone()).load(&arn).unwrap().serial.clone();
    let backend = [tcp_backend("logged", "127.0.0.1", false).await];
    let listener = format!(
        "      Certificates: [{{ CertificateArn: \"{arn}\" }}]\n      AlpnPolicy: [HTTP2Preferred]\n      SslPolicy: ELBSecurityPolicy-TLS13-1-2-2021-06"
    );
    let lb_props = "      LoadBalancerAttributes:\n        - { Key: access_logs.s3.enabled, Value: \"true\" }\n        - { Key: access_logs.s3.bucket, Value: nlb-logs }";
    let logs = dir.0.join("logs");
    let config = weir_dataplane::DataplaneConfig {
        certificate_dir: dir.0.clone(),
        access_log_dir: logs.clone(),
        ..Default::default()
    };
    let lb =
        Lb::up_with(&nlb_template("TLS", &listener, "TCP", "", lb_props, &backend), config).await;
    let l = lb.listener_arn();
    let stats = lb.dp.l4_stats(&l).await.unwrap();

    // One connection that moves bytes both ways and closes cleanly.
    let tcp = tokio::net::TcpStream::connect(lb.addr()).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let name = rustls::pki_types::ServerName::try_from("log.example").unwrap();
    let mut s = tls_client(&[b"h2", b"http/1.1"]).connect(name, tcp).await.unwrap();
    let mut buf = vec![0u8; 256];
    let greeting = s.read(&mut buf).await.unwrap();
    s.write_all(b"secret\n").await.unwrap();
    let echo = s.read(&mut buf).await.unwrap();
    assert_eq!(echo, 7);
    s.shutdown().await.unwrap();
    drop(s);
    // One whose client rejects the certificate (no trusted roots): it sends an alert.
    let tcp = tokio::net::TcpStream::connect(lb.addr()).await.unwrap();
    let strict = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("log.example").unwrap();
    assert!(tokio_rustls::TlsConnector::from(Arc::new(strict)).connect(name, tcp).await.is_err());
    for _ in 0..200 {
        if L4Stats::get(&stats.active_flows_tls) == 0
            && L4Stats::get(&stats.client_tls_negotiation_errors) == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    lb.dp.flush_access_logs().await;

    let lines = read_all(&logs).unwrap();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let lb_model = lb.state.load_balancers.values().next().unwrap();
    let rows: Vec<Vec<String>> = lines.iter().map(|l| parse_line(l)).collect();
    let ok = rows.iter().find(|r| r[5] == local.to_string()).expect("the good connection");
    let bad = rows.iter().find(|r| r[5] != local.to_string()).expect("the rejected one");
    for r in &rows {
        assert_eq!(r.len(), FIELDS.len(), "{r:?}");
        assert_eq!((r[0].as_str(), r[1].as_str()), ("tls", "2.0"));
        assert_eq!(r[3], lb_model.full_name());
        assert!(r[3].starts_with("net/nlb/"), "{r:?}");
        assert_eq!(r[4], l.rsplit('/').next().unwrap());
        assert_eq!(r[6], lb.addr().to_string());
        assert!(r[7].parse::<u64>().is_ok(), "connection_time {r:?}");
        assert_eq!(r[2].len(), 19, "time {r:?}");
        assert_eq!(r[21].len(), 19, "creation time {r:?}");
    }
    assert!(ok[8].parse::<u64>().unwrap() < 5_000, "handshake ms {ok:?}");
    assert_eq!(ok[9], "7", "bytes from the client {ok:?}");
    assert_eq!(ok[10], (greeting + echo).to_string(), "bytes to the client {ok:?}");
    assert_eq!(ok[11], "-");
    assert_eq!(ok[12], arn);
    assert_eq!(ok[13], serial);
    assert!(!serial.is_empty());
    assert!(ok[14].starts_with("TLS_AES_") || ok[14].starts_with("TLS_CHACHA20"), "{ok:?}");
    assert_eq!(ok[15], "tlsv13");
    assert!(!ok[16].is_empty() && ok[16] != "-", "named group {ok:?}");
    assert_eq!(ok[17], "log.example");
    assert_eq!((ok[18].as_str(), ok[19].as_str()), ("h2", "-"));
    assert_eq!(ok[20], "h2,http/1.1");
    assert!(lines[0].contains("\"h2\",\"http/1.1\"") || lines[1].contains("\"h2\",\"http/1.1\""));
    assert_eq!(bad[8], "-", "no completed handshake {bad:?}");
    let alert: u8 = bad[11].parse().expect("the client's alert is logged");
    assert!(alert > 0, "{bad:?}");
    assert_eq!((bad[9].as_str(), bad[10].as_str()), ("0", "0"));
    let files = std::fs::read_dir(
        logs.join("nlb-logs/AWSLogs/123456789012/elasticloadbalancing/us-east-1"),
    );
    assert!(files.is_ok(), "ELB's S3 layout");
}

#[tokio::test]
async fn tls_listener_re_encrypts_to_tls_targets() {
    let dir = TempDir::new("nlb-tls-target");
    let (arn, _) = write_cert(&dir.0, "nlb-t", &["t.example"]);
    let backend = weir_demo::DemoBackend::start_tls("127.0.0.1:0".parse().unwrap(), "tls-target")
        .await
        .unwrap();
    let listener = format!("      Certificates: [{{ CertificateArn: \"{arn}\" }}]");
    let lb =
        Lb::up_with_certs(&nlb_template("TLS", &listener, "TLS", "", "", &[backend.addr]), &dir.0)
            .await;
    let tcp = tokio::net::TcpStream::connect(lb.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("t.example").unwrap();
    let mut s = tls_client(&[]).connect(name, tcp).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: t.example\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("tls-target"), "{text}");
}

async fn drain_case(terminate: bool) -> bool {
    let b = [tcp_backend("d", "127.0.0.1", false).await];
    let tg = attrs(
        "TargetGroupAttributes",
        &[
            ("deregistration_delay.timeout_seconds", "2"),
            (
                "deregistration_delay.connection_termination.enabled",
                if terminate { "true" } else { "false" },
            ),
        ],
    );
    let mut lb = Lb::up(&nlb_template("TCP", "", "TCP", &tg, "", &b)).await;
    let mut c = LineClient::connect(lb.addr(), None).await.unwrap();
    assert_eq!(c.echo("before").await.unwrap(), "before");
    let tg_arn = lb.tg_arn("nlb-tg");
    let spec = ip_target(b[0].port());
    lb.change(|s| s.deregister_targets(&tg_arn, &[spec]).unwrap()).await;
    let h = lb.health("nlb-tg").await;
    assert_eq!(h[0].state, HealthState::Draining);
    // No new flows go to a draining target: with no other target, the connection is reset.
    let refused = LineClient::connect(lb.addr(), None).await;
    assert!(refused.is_err(), "new connection reached a draining target");
    // The existing connection keeps working during the delay ...
    assert_eq!(c.echo("during").await.unwrap(), "during");
    tokio::time::sleep(Duration::from_millis(3000)).await;
    // ... and after it only without connection termination.
    c.echo("after").await.is_ok()
}

#[tokio::test]
async fn draining_with_connection_termination_closes_connections_at_the_deadline() {
    assert!(!drain_case(true).await);
}

#[tokio::test]
async fn draining_without_connection_termination_lets_connections_live_on() {
    assert!(drain_case(false).await);
}

#[tokio::test]
async fn cross_zone_off_keeps_flows_in_the_node_zone_and_on_spreads_them() {
    let a = tcp_backend("zone-a", "127.0.1.250", false).await;
    let b = tcp_backend("zone-b", "127.0.2.250", false).await;
    for (cross, want_both) in [("false", false), ("true", true)] {
        let lb_attrs =
            attrs("LoadBalancerAttributes", &[("load_balancing.cross_zone.enabled", cross)]);
        let lb = Lb::up(&nlb_template("TCP", "", "TCP", "", &lb_attrs, &[a, b])).await;
        for (zone, own) in [(0, "zone-a"), (1, "zone-b")] {
            let mut names = BTreeSet::new();
            for _ in 0..16 {
                let c = LineClient::connect(lb.node(zone), None).await.unwrap();
                names.insert(c.backend().to_string());
            }
            if want_both {
                assert_eq!(names.len(), 2, "cross-zone on, node {zone}: {names:?}");
            } else {
                assert_eq!(names, BTreeSet::from([own.to_string()]), "cross-zone off, node {zone}");
            }
        }
    }
}

fn dns_query(name: &str) -> Vec<u8> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    let mut m = Message::new();
    m.set_id(99).set_message_type(MessageType::Query).set_op_code(OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

async fn resolve(dns: SocketAddr, name: &str) -> Vec<Ipv4Addr> {
    use hickory_proto::op::Message;
    use hickory_proto::rr::RData;
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(&dns_query(name), dns).await.unwrap();
    let mut buf = vec![0u8; 1500];
    let n = tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf)).await.unwrap().unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    let mut v: Vec<Ipv4Addr> = m
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

async fn wait_dns(dns: SocketAddr, name: &str, want: &[Ipv4Addr], secs: u64) -> Vec<Ipv4Addr> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let got = resolve(dns, name).await;
        if got == want || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn dns_answers_with_zone_nodes_that_have_healthy_targets() {
    // Zone a's target is up; zone b's port has nothing listening yet.
    let a = tokio::net::TcpListener::bind("127.0.1.251:0").await.unwrap();
    let a_addr = a.local_addr().unwrap();
    let b_addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.2.251:0").unwrap();
        l.local_addr().unwrap()
    };
    let a_task = tokio::spawn(async move { while a.accept().await.is_ok() {} });
    let tg = "      HealthCheckIntervalSeconds: 5\n      HealthCheckTimeoutSeconds: 2\n      HealthyThresholdCount: 2\n      UnhealthyThresholdCount: 2";
    let lb = Lb::up(&nlb_template("TCP", "", "TCP", tg, "", &[a_addr, b_addr])).await;
    let (dns, _task) =
        weir_dataplane::dns::serve("127.0.0.1:0".parse().unwrap(), lb.dp.clone()).await.unwrap();
    let name = lb.state.load_balancers.values().next().unwrap().dns_name();
    let node = |z: usize| match lb.node(z).ip() {
        std::net::IpAddr::V4(v) => v,
        _ => unreachable!(),
    };
    // Before any target is healthy every node is answered (fail-open).
    assert_eq!(resolve(dns, &name).await, vec![node(0), node(1)]);
    // Zone a's target turns healthy: only zone a's node is answered.
    assert_eq!(wait_dns(dns, &name, &[node(0)], 15).await, vec![node(0)]);
    // Zone b's target comes up: both.
    let b = tokio::net::TcpListener::bind(b_addr).await.unwrap();
    let _b_task = tokio::spawn(async move { while b.accept().await.is_ok() {} });
    assert_eq!(wait_dns(dns, &name, &[node(0), node(1)], 15).await, vec![node(0), node(1)]);
    // Zone a loses its target: its node leaves the answer.
    a_task.abort();
    assert_eq!(wait_dns(dns, &name, &[node(1)], 20).await, vec![node(1)]);
    // Zonal names always answer with their node.
    assert_eq!(resolve(dns, &format!("us-east-1a.{name}")).await, vec![node(0)]);
}
