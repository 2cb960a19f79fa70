//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the fuzz entry points.

use std::path::PathBuf;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        f(&data);
        n += 1;
    }
    n
}

#[test]
fn template_corpus() {
    assert!(replay("template", weir_fuzz::template) >= 5);
}

#[test]
fn query_params_corpus() {
    assert!(replay("query_params", weir_fuzz::query_params) >= 4);
}

#[test]
fn rules_corpus() {
    assert!(replay("rules", weir_fuzz::rules) >= 5);
}

#[test]
fn request_head_corpus() {
    assert!(replay("request_head", weir_fuzz::request_head) >= 7);
}

#[test]
fn proxy_v2_corpus() {
    assert!(replay("proxy_v2", weir_fuzz::proxy_v2) >= 5);
}

#[test]
fn dns_query_corpus() {
    assert!(replay("dns_query", weir_fuzz::dns_query) >= 5);
}

#[test]
fn geneve_corpus() {
    assert!(replay("geneve", weir_fuzz::geneve) >= 6);
}

#[test]
fn sigv4_corpus() {
    assert!(replay("sigv4", weir_fuzz::sigv4) >= 5);
}

#[test]
fn xml_text_corpus() {
    assert!(replay("xml_text", weir_fuzz::xml_text) >= 4);
}

#[test]
fn rpc_body_corpus() {
    assert!(replay("rpc_body", weir_fuzz::rpc_body) >= 5);
}

#[test]
fn http1_corpus() {
    assert!(replay("http1", weir_fuzz::http1) >= 9);
}

mod random {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn request_heads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), lines in proptest::collection::vec("[A-Za-z-]{1,12}: ?[ -~\t]{0,24}", 0..6)) {
            weir_fuzz::request_head(&bytes);
            let head = format!("GET / HTTP/1.1\r\n{}\r\n\r\n", lines.join("\r\n"));
            weir_fuzz::request_head(head.as_bytes());
        }

        #[test]
        fn sigv4_never_panics(auth in "(AWS4-HMAC-SHA256 )?(Credential=[A-Z/0-9a-z_]{0,40}|SignedHeaders=[a-z;-]{0,20}|Signature=[0-9a-f+%]{0,66}|, ){0,6}", date in "[0-9TZ]{0,17}", path in "[/%a-zé0-9]{0,12}", query in "[a-z%=&é0-9]{0,16}", body in "[ -~é]{0,32}") {
            weir_fuzz::sigv4(format!("{auth}\n{date}\n{path}\n{query}\n{body}").as_bytes());
        }

        #[test]
        fn xml_text_round_trips(text in "(\\PC|[\u{0}-\u{1f}<>&'\"\r\n]|\u{fffe}|\u{ffff}){0,24}") {
            weir_fuzz::xml_text(text.as_bytes());
        }

        #[test]
        fn rpc_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            weir_fuzz::rpc_body(&bytes);
        }

        #[test]
        fn http1_heads_and_bodies_never_panic(
            mode in any::<u8>(),
            status in "(HTTP/1\\.[01] [0-9]{3} [A-Za-z ]{0,8}|GET /[a-z]{0,4} HTTP/1\\.1)",
            lines in proptest::collection::vec("(Content-Length|Transfer-Encoding|Connection|Host|X-Forwarded-For|Keep-Alive|Te|X-[a-z]{1,4}): ?(chunked|close|keep-alive|gzip|[0-9]{1,3}|[a-z, -]{0,12})", 0..6),
            body in "([0-9a-fA-F]{1,3}(;[a-z=]{0,4})?\r\n[a-z]{0,6}\r\n){0,3}(0\r\n([A-Za-z-]{1,4}: [a-z]{0,3}\r\n)?\r\n)?[a-z]{0,4}",
        ) {
            let text = format!("{status}\r\n{}\r\n{body}", lines.iter().map(|l| format!("{l}\r\n")).collect::<String>());
            let mut data = vec![mode];
            data.extend_from_slice(text.as_bytes());
            weir_fuzz::http1(&data);
        }

        #[test]
        fn geneve_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
            weir_fuzz::geneve(&bytes);
        }

        #[test]
        fn proxy_v2_and_dns_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            weir_fuzz::proxy_v2(&bytes);
            let mut framed = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            framed.extend_from_slice(&bytes);
            weir_fuzz::proxy_v2(&framed);
            weir_fuzz::dns_query(&bytes);
        }

        #[test]
        fn rules_never_panic(lines in proptest::collection::vec("[a-zA-Z0-9*?./=&%:-]{0,20}", 0..8)) {
            weir_fuzz::rules(lines.join("\n").as_bytes());
        }

        #[test]
        fn query_params_never_panic(keys in proptest::collection::vec("(Actions|Conditions|Targets|Attributes|Port)(\\.member\\.[0-9]{1,4}(\\.[A-Za-z]{1,12})?){0,3}", 0..8), vals in proptest::collection::vec("[a-z0-9/*%=&.-]{0,8}", 8)) {
            let body: Vec<String> = keys.iter().zip(vals.iter()).map(|(k, v)| format!("{k}={v}")).collect();
            weir_fuzz::query_params(body.join("&").as_bytes());
        }

        #[test]
        fn template_fragments_never_panic(
            keys in proptest::collection::vec(prop_oneof![
                Just("Type: AWS::ElasticLoadBalancingV2::LoadBalancer"), Just("Type: AWS::ElasticLoadBalancingV2::TargetGroup"),
                Just("Type: AWS::ElasticLoadBalancingV2::Listener"), Just("Properties: {Port: !Ref X}"),
                Just("Properties: {Protocol: HTTP, Port: 80, Name: !Sub '${AWS::Region}'}"), Just("DependsOn: A"),
                Just("Condition: C"), Just("Properties: {LoadBalancerArn: !GetAtt A.DNSName, DefaultActions: [{Type: forward}]}"),
            ], 0..4),
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut t = String::from("Resources:\n  A:\n");
            for k in keys { t.push_str("    "); t.push_str(k); t.push('\n'); }
            weir_fuzz::template(t.as_bytes());
            weir_fuzz::template(&bytes);
        }
    }
}
