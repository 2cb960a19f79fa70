use super::*;
use crate::action::{ActionKind, FixedResponseConfig, ForwardConfig, WeightedTargetGroup};

fn forward(tg: &str) -> Vec<Action> {
    vec![Action {
        order: None,
        kind: ActionKind::Forward(ForwardConfig {
            target_groups: vec![WeightedTargetGroup { target_group_arn: tg.into(), weight: 1 }],
            stickiness_enabled: false,
            stickiness_duration_seconds: 3600,
        }),
    }]
}

fn fixed() -> Vec<Action> {
    vec![Action {
        order: None,
        kind: ActionKind::FixedResponse(FixedResponseConfig {
            status_code: 404,
            content_type: None,
            message_body: None,
        }),
    }]
}

fn setup() -> (State, String, String) {
    let mut s = State::default();
    let lb = s
        .create_load_balancer("web", LoadBalancerType::Application, Scheme::InternetFacing, &[], 0)
        .unwrap();
    let tg =
        TargetGroup::new("us-east-1", "123456789012", "api", Protocol::Http, 80, TargetType::Ip)
            .unwrap();
    let tg = s.add_target_group(tg).unwrap();
    (s, lb, tg)
}

#[test]
fn lifecycle_and_errors() {
    let (mut s, lb, tg) = setup();
    assert_eq!(
        s.create_load_balancer("web", LoadBalancerType::Application, Scheme::Internal, &[], 0)
            .unwrap_err()
            .code,
        ErrorCode::DuplicateLoadBalancerName
    );
    let l = s.create_listener(&lb, 80, Protocol::Http, forward(&tg), Default::default()).unwrap();
    assert!(l.contains(":listener/app/web/"));
    assert_eq!(
        s.create_listener(&lb, 80, Protocol::Http, fixed(), Default::default()).unwrap_err().code,
        ErrorCode::DuplicateListener
    );
    let conds = || vec![Condition::PathPattern(vec!["/a".into()])];
    let r = s.create_rule(&l, 10, conds(), fixed()).unwrap();
    assert!(r.contains(":listener-rule/app/web/"));
    assert_eq!(s.create_rule(&l, 10, conds(), fixed()).unwrap_err().code, ErrorCode::PriorityInUse);
    assert!(s.create_rule(&l, 0, conds(), fixed()).is_err());
    assert!(s.create_rule(&l, 50001, conds(), fixed()).is_err());
    let missing =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/x/0000000000000000";
    assert_eq!(
        s.create_rule(&l, 11, conds(), forward(missing)).unwrap_err().code,
        ErrorCode::TargetGroupNotFound
    );
    assert_eq!(s.delete_target_group(&tg).unwrap_err().code, ErrorCode::ResourceInUse);
    let before = s.clone();
    assert!(s
        .create_rule(&l, 12, vec![Condition::HttpRequestMethod(vec!["get".into()])], fixed())
        .is_err());
    assert_eq!(s, before, "a failed operation leaves the state unchanged");
    s.delete_load_balancer(&lb).unwrap();
    assert!(s.listeners.is_empty() && s.rules.is_empty());
    s.delete_target_group(&tg).unwrap();
}

#[test]
fn targets_register_with_zones() {
    let (mut s, _lb, tg) = setup();
    let spec = |id: &str, port| TargetSpec { id: id.into(), port, availability_zone: None };
    s.register_targets(&tg, &[spec("127.0.0.1", Some(9001)), spec("127.0.2.5", None)]).unwrap();
    s.register_targets(&tg, &[spec("127.0.0.1", Some(9001))]).unwrap();
    let t = &s.target_group(&tg).unwrap().targets;
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].availability_zone, "us-east-1a");
    assert_eq!((t[1].port, t[1].availability_zone.as_str()), (80, "us-east-1b"));
    assert_eq!(
        s.register_targets(&tg, &[spec("not-an-ip", None)]).unwrap_err().code,
        ErrorCode::InvalidTarget
    );
    assert_eq!(
        s.deregister_targets(&tg, &[spec("127.0.0.9", None)]).unwrap_err().code,
        ErrorCode::InvalidTarget
    );
    s.deregister_targets(&tg, &[spec("127.0.0.1", Some(9001))]).unwrap();
    assert_eq!(s.target_group(&tg).unwrap().targets.len(), 1);
}

#[test]
fn incompatible_and_associated_target_groups() {
    let (mut s, lb, tg) = setup();
    let tcp =
        TargetGroup::new("us-east-1", "123456789012", "tcp", Protocol::Tcp, 80, TargetType::Ip)
            .unwrap();
    let tcp = s.add_target_group(tcp).unwrap();
    assert_eq!(
        s.create_listener(&lb, 81, Protocol::Http, forward(&tcp), Default::default())
            .unwrap_err()
            .code,
        ErrorCode::IncompatibleProtocols
    );
    s.create_listener(&lb, 80, Protocol::Http, forward(&tg), Default::default()).unwrap();
    let other = s
        .create_load_balancer("other", LoadBalancerType::Application, Scheme::Internal, &[], 0)
        .unwrap();
    assert_eq!(
        s.create_listener(&other, 80, Protocol::Http, forward(&tg), Default::default())
            .unwrap_err()
            .code,
        ErrorCode::TargetGroupAssociationLimit
    );
    assert_eq!(s.load_balancer(&other).unwrap().node_index, 2);
}

#[test]
fn deletion_protection_blocks_delete() {
    let (mut s, lb, _tg) = setup();
    s.load_balancers
        .get_mut(&lb)
        .unwrap()
        .attributes
        .set("deletion_protection.enabled", "true")
        .unwrap();
    assert_eq!(s.delete_load_balancer(&lb).unwrap_err().code, ErrorCode::OperationNotPermitted);
    s.load_balancers
        .get_mut(&lb)
        .unwrap()
        .attributes
        .set("deletion_protection.enabled", "false")
        .unwrap();
    s.delete_load_balancer(&lb).unwrap();
}

#[test]
fn https_listeners_need_a_certificate_and_a_known_policy() {
    use crate::ListenerTls;
    let (mut s, lb, tg) = setup();
    let cert = |n: &str| format!("arn:aws:acm:us-east-1:123456789012:certificate/{n}");
    let tls = |certs: Vec<String>, policy: Option<&str>| ListenerTls {
        certificates: certs,
        ssl_policy: policy.map(str::to_string),
        alpn_policy: None,
    };
    let e = s.create_listener(&lb, 443, Protocol::Https, forward(&tg), tls(vec![], None));
    assert_eq!(e.unwrap_err().code, ErrorCode::ValidationError);
    let e = s.create_listener(
        &lb,
        443,
        Protocol::Https,
        forward(&tg),
        tls(vec![cert("a")], Some("Nope")),
    );
    assert_eq!(e.unwrap_err().code, ErrorCode::SSLPolicyNotFound);
    let e = s.create_listener(&lb, 80, Protocol::Http, forward(&tg), tls(vec![cert("a")], None));
    assert_eq!(e.unwrap_err().code, ErrorCode::InvalidConfigurationRequest);
    let l = s
        .create_listener(&lb, 443, Protocol::Https, forward(&tg), tls(vec![cert("a")], None))
        .unwrap();
    assert_eq!(
        s.listener(&l).unwrap().ssl_policy.as_deref(),
        Some(crate::tls_policies::DEFAULT_POLICY)
    );
    s.add_listener_certificates(&l, &[cert("b"), cert("c"), cert("b")]).unwrap();
    assert_eq!(s.listener(&l).unwrap().certificates, vec![cert("a"), cert("b"), cert("c")]);
    assert_eq!(
        s.remove_listener_certificates(&l, &[cert("a")]).unwrap_err().code,
        ErrorCode::OperationNotPermitted
    );
    s.remove_listener_certificates(&l, &[cert("b")]).unwrap();
    // A new default certificate takes the first place; the policy is kept.
    s.modify_listener(&l, None, None, None, tls(vec![cert("c")], None)).unwrap();
    assert_eq!(s.listener(&l).unwrap().certificates, vec![cert("c"), cert("a")]);
    // Back to HTTP drops TLS settings.
    s.modify_listener(&l, None, Some(Protocol::Http), None, tls(vec![], None)).unwrap();
    let got = s.listener(&l).unwrap();
    assert!(got.certificates.is_empty() && got.ssl_policy.is_none());
}

#[test]
fn nlb_listeners_match_their_target_group_protocols() {
    use crate::ListenerTls;
    let mut s = State::default();
    let nlb =
        s.create_load_balancer("net", LoadBalancerType::Network, Scheme::Internal, &[], 0).unwrap();
    let tg = |s: &mut State, name: &str, p: Protocol| {
        let t = TargetGroup::new("us-east-1", "123456789012", name, p, 80, TargetType::Ip).unwrap();
        s.add_target_group(t).unwrap()
    };
    let tcp = tg(&mut s, "tcp", Protocol::Tcp);
    let udp = tg(&mut s, "udp", Protocol::Udp);
    let both = tg(&mut s, "both", Protocol::TcpUdp);
    let none = ListenerTls::default;
    // ip targets over TCP do not preserve the client IP by default; UDP does.
    assert_eq!(
        s.target_group(&tcp).unwrap().attributes.get("preserve_client_ip.enabled"),
        Some("false")
    );
    assert_eq!(
        s.target_group(&udp).unwrap().attributes.get("preserve_client_ip.enabled"),
        Some("true")
    );
    let e = s.create_listener(&nlb, 53, Protocol::Udp, forward(&tcp), none()).unwrap_err();
    assert_eq!(e.code, ErrorCode::IncompatibleProtocols);
    let e = s.create_listener(&nlb, 53, Protocol::TcpUdp, forward(&udp), none()).unwrap_err();
    assert_eq!(e.code, ErrorCode::IncompatibleProtocols);
    s.create_listener(&nlb, 53, Protocol::TcpUdp, forward(&both), none()).unwrap();
    let l = s.create_listener(&nlb, 80, Protocol::Tcp, forward(&tcp), none()).unwrap();
    assert_eq!(s.listener(&l).unwrap().attributes.get("tcp.idle_timeout.seconds"), Some("350"));
    // An NLB takes no HTTP listener and no fixed-response action.
    let e = s.create_listener(&nlb, 81, Protocol::Http, forward(&tcp), none()).unwrap_err();
    assert_eq!(e.code, ErrorCode::IncompatibleProtocols);
    let e = s.modify_listener(&l, None, Some(Protocol::Https), None, none()).unwrap_err();
    assert_eq!(e.code, ErrorCode::IncompatibleProtocols);
    // TLS needs a certificate, takes an ALPN policy, and only TLS does.
    let cert = "arn:aws:acm:us-east-1:123456789012:certificate/c".to_string();
    let e = s.create_listener(&nlb, 443, Protocol::Tls, forward(&tcp), none()).unwrap_err();
    assert_eq!(e.code, ErrorCode::ValidationError);
    let bad = ListenerTls {
        certificates: vec![cert.clone()],
        ssl_policy: None,
        alpn_policy: Some("HTTP3".into()),
    };
    let e = s.create_listener(&nlb, 443, Protocol::Tls, forward(&tcp), bad).unwrap_err();
    assert_eq!(e.code, ErrorCode::ALPNPolicyNotFound);
    let ok = ListenerTls {
        certificates: vec![cert],
        ssl_policy: None,
        alpn_policy: Some("HTTP2Preferred".into()),
    };
    let t = s.create_listener(&nlb, 443, Protocol::Tls, forward(&tcp), ok).unwrap();
    assert_eq!(s.listener(&t).unwrap().alpn_policy.as_deref(), Some("HTTP2Preferred"));
    let alpn = ListenerTls { alpn_policy: Some("HTTP1Only".into()), ..Default::default() };
    let e = s.modify_listener(&l, None, None, None, alpn).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidConfigurationRequest);
    // TLS back to TCP drops the TLS settings.
    s.modify_listener(&t, None, Some(Protocol::Tcp), None, none()).unwrap();
    let got = s.listener(&t).unwrap();
    assert!(got.certificates.is_empty() && got.alpn_policy.is_none());
    let e = s.modify_listener(&l, None, Some(Protocol::Udp), None, none()).unwrap_err();
    assert_eq!(e.code, ErrorCode::IncompatibleProtocols);
}

#[test]
fn gateway_listeners_take_no_port_or_protocol_and_forward_to_geneve() {
    let mut s = State::default();
    let gw =
        s.create_load_balancer("gw", LoadBalancerType::Gateway, Scheme::Internal, &[], 0).unwrap();
    let geneve = |port| {
        TargetGroup::new("us-east-1", "123456789012", "fw", Protocol::Geneve, port, TargetType::Ip)
    };
    assert_eq!(geneve(6080).unwrap_err().code, ErrorCode::ValidationError);
    let tg = s.add_target_group(geneve(crate::GENEVE_PORT).unwrap()).unwrap();
    assert_eq!(s.listener_port_protocol(&gw, None, None).unwrap(), (6081, Protocol::Geneve));
    for (port, protocol) in [(Some(80), None), (None, Some(Protocol::Tcp))] {
        let e = s.listener_port_protocol(&gw, port, protocol).unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationError);
    }
    let l = s.create_listener(&gw, 6081, Protocol::Geneve, forward(&tg), Default::default());
    assert!(l.is_ok());
    // One listener per GWLB.
    let again = s.create_listener(&gw, 6081, Protocol::Geneve, forward(&tg), Default::default());
    assert_eq!(again.unwrap_err().code, ErrorCode::DuplicateListener);
    // Other load balancers need a port and cannot take GENEVE.
    let (mut s2, alb, http_tg) = setup();
    assert_eq!(s2.listener_port_protocol(&alb, Some(80), None).unwrap(), (80, Protocol::Http));
    assert_eq!(
        s2.listener_port_protocol(&alb, None, None).unwrap_err().code,
        ErrorCode::ValidationError
    );
    let e = s2.create_listener(&alb, 6081, Protocol::Geneve, forward(&http_tg), Default::default());
    assert_eq!(e.unwrap_err().code, ErrorCode::IncompatibleProtocols);
}
