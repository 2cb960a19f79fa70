//! Fuzz entry points. Each takes arbitrary bytes and must never panic; the cargo-fuzz targets in
//! `fuzz/` call them, and `tests/replay.rs` replays the committed corpora through them on every
//! `cargo test`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use weir_l7::glob::Pattern;
use weir_l7::snapshot::CompiledAction;
use weir_l7::{CompiledRules, RequestView};
use weir_model::condition::QueryStringPair;
use weir_model::{Condition, FixedResponseConfig, State};

/// Template text (user input to `weir up` and, later, the CloudFormation API): parse and deploy
/// into an empty state. Errors are fine; panics are not. A failed deploy must leave the state
/// untouched.
pub fn template(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(t) = weir_stack::parse_template(&text) else {
        return;
    };
    let mut state = State::default();
    if weir_stack::deploy(&t, "fuzz", &BTreeMap::new(), &mut state, 0).is_err() {
        assert_eq!(state, State::default(), "a failed deploy changed the state");
    }
}

/// Query API form bodies (network input on every API request): parse as the API does, nest, and
/// run the shape conversions the handlers use.
pub fn query_params(data: &[u8]) {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    let v =
        weir_model::shape::nest_query_params(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let _ = weir_model::shape::actions(v.get("Actions"));
    let _ = weir_model::shape::actions(v.get("DefaultActions"));
    let _ = weir_model::shape::conditions(v.get("Conditions"));
    let _ = weir_model::shape::targets(v.get("Targets"));
    let _ = weir_model::shape::key_values(v.get("Attributes"));
    let _ = weir_model::shape::target_group(&State::default(), &v, "fuzz");
}

fn fixed(code: u16) -> Arc<CompiledAction> {
    Arc::new(CompiledAction::Fixed(FixedResponseConfig {
        status_code: code,
        content_type: None,
        message_body: None,
    }))
}

/// Rule evaluation over request parts taken from the input (network input on every request):
/// lines are method, host, path, query, header value, then a wildcard pattern and a text that is
/// also checked against a reference matcher.
pub fn rules(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\n');
    let mut next = || parts.next().unwrap_or("").to_string();
    let (method, host, path, query, header, pattern, subject) =
        (next(), next(), next(), next(), next(), next(), next());
    let rules = CompiledRules::new(
        vec![
            (
                1,
                vec![Condition::HostHeader(vec!["*.example.?om".into(), host.clone()])],
                fixed(201),
            ),
            (2, vec![Condition::PathPattern(vec!["/a/*/b?".into(), pattern.clone()])], fixed(202)),
            (
                3,
                vec![Condition::HttpHeader { name: "x-h".into(), values: vec![pattern.clone()] }],
                fixed(203),
            ),
            (
                4,
                vec![Condition::QueryString(vec![
                    QueryStringPair { key: Some("k*".into()), value: pattern.clone() },
                    QueryStringPair { key: None, value: "v".into() },
                ])],
                fixed(204),
            ),
            (
                5,
                vec![
                    Condition::HttpRequestMethod(vec![method.clone()]),
                    Condition::SourceIp(vec!["10.0.0.0/8".into(), "::/0".into()]),
                ],
                fixed(205),
            ),
        ],
        fixed(404),
    );
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&header) {
        headers.insert("x-h", v);
    }
    let view = RequestView {
        method: &method,
        host: &host,
        path: &path,
        query: Some(&query),
        headers: &headers,
        source: std::net::IpAddr::from([10, 1, 2, 3]),
    };
    let _ = rules.evaluate(&view);
    // Differential check of the wildcard matcher on short inputs.
    if pattern.len() <= 12 && subject.len() <= 24 {
        assert_eq!(
            Pattern::new(&pattern, false).matches(&subject),
            reference(pattern.as_bytes(), subject.as_bytes()),
            "pattern {pattern:?} subject {subject:?}"
        );
    }
}

fn reference(p: &[u8], t: &[u8]) -> bool {
    match (p.first(), t.first()) {
        (None, _) => t.is_empty(),
        (Some(b'*'), _) => reference(&p[1..], t) || (!t.is_empty() && reference(p, &t[1..])),
        (Some(_), None) => false,
        (Some(b'?'), Some(_)) => reference(&p[1..], &t[1..]),
        (Some(a), Some(b)) => a == b && reference(&p[1..], &t[1..]),
    }
}

/// Client request heads (network input on every HTTP/1.x request): desync classification of the
/// raw bytes and of the head as parsed, and the stickiness cookies read from its Cookie headers.
/// Classification must agree with itself, never panic, and a sticky cookie must only ever name
/// a target of the group it was issued for.
pub fn request_head(data: &[u8]) {
    use weir_l7::{desync, sticky};
    let raw = desync::classify_raw(data);
    assert_eq!(raw, desync::classify_raw(data), "classification is deterministic");
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    if let Ok(httparse::Status::Complete(_)) = req.parse(data) {
        let mut b = http::Request::builder()
            .method(req.method.unwrap_or("GET"))
            .uri(req.path.unwrap_or("/"));
        for h in req.headers.iter() {
            b = b.header(h.name, h.value);
        }
        if let Ok(parsed) = b.body(()) {
            let _ = desync::classify(&parsed, Some(data));
            let _ = desync::classify(&parsed, None);
            let tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/f/0";
            for name in [sticky::LB_COOKIE, sticky::APP_COOKIE, sticky::TG_COOKIE] {
                if let Some(v) = sticky::cookie(parsed.headers(), name) {
                    if let Some(k) = sticky::parse_target_token(v, tg) {
                        assert_eq!(
                            sticky::parse_target_token(&sticky::target_token(tg, &k), tg),
                            Some(k)
                        );
                    }
                    let _ = sticky::group_matches(v, tg);
                }
            }
        }
    }
}

/// PROXY protocol v2 headers (what a backend behind an NLB reads first): decoding never panics,
/// never claims more bytes than it was given, and an address it decodes encodes back to a
/// header that decodes to the same addresses.
pub fn proxy_v2(data: &[u8]) {
    use weir_l4::proxy_v2::{decode, encode, Transport};
    let Ok(h) = decode(data) else {
        return;
    };
    assert!(h.len <= data.len(), "header longer than its input");
    if let Some((src, dst)) = h.addresses {
        let again = decode(&encode(src, dst, h.transport.unwrap_or(Transport::Stream)));
        assert_eq!(again.map(|x| x.addresses), Ok(Some((src, dst))));
    }
}

/// DNS queries to the built-in responder (network input): any bytes either get no answer or a
/// well-formed DNS message with the query's id.
pub fn dns_query(data: &[u8]) {
    use std::sync::OnceLock;
    static TABLE: OnceLock<weir_dataplane::dns::DnsTable> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut s = State::default();
        let _ = s.create_load_balancer(
            "fuzz",
            weir_model::LoadBalancerType::Network,
            weir_model::Scheme::Internal,
            &[],
            0,
        );
        weir_dataplane::dns::DnsTable::for_state(&s)
    });
    if let Some(resp) = weir_dataplane::dns::answer(table, data) {
        assert!(resp.len() >= 12, "short DNS response");
        assert_eq!(resp[..2], data[..2], "response id differs from the query's");
        assert_eq!(resp[2] & 0x80, 0x80, "QR bit not set");
    }
}

/// GENEVE datagrams and inner IP packets (network input on the GWLB's socket and endpoints):
/// the first byte picks how the rest is used — as a datagram from an appliance, or as a packet
/// from a gateway endpoint, which must then encapsulate into GENEVE that parses back to it.
pub fn geneve(data: &[u8]) {
    use std::net::SocketAddr;
    use std::time::Instant;
    use weir_balance::{FlowKeyMode, FlowPool, HealthState, Reason, TargetCell, TargetKey};
    use weir_l3::geneve::Geneve;
    use weir_l3::{Endpoint, Gateway, GatewayLb, GatewaySnapshot};

    let Some((&mode, rest)) = data.split_first() else { return };
    if let Ok(g) = Geneve::parse(rest) {
        let _ = g.gwlb();
        let _ = g.options().count();
        assert_eq!(rest.len(), 8 + g.options.len() + g.payload.len());
    }
    let _ = weir_l3::packet::FlowTuple::parse(rest);
    let appliance = SocketAddr::from(([10, 3, 0, 2], 6081));
    let cell =
        TargetCell::new(TargetKey { id: "10.3.0.2".into(), port: 6081 }, appliance, "z".into());
    cell.set_health(HealthState::Healthy, Reason::None);
    let targets = vec![Arc::new(cell)];
    let modes = [FlowKeyMode::FiveTuple, FlowKeyMode::ThreeTuple, FlowKeyMode::TwoTuple];
    let snap = GatewaySnapshot {
        lbs: vec![GatewayLb {
            arn: "gwlb".into(),
            attachment_id: 1,
            endpoints: vec![Endpoint { id: 7, device: "gwe0".into(), zone: None }],
            all: FlowPool::new(targets.clone()),
            zones: Default::default(),
            cross_zone: mode & 4 != 0,
            mode: modes[usize::from(mode % 3)],
            rebalance_unhealthy: mode & 8 != 0,
            rebalance_deregistered: mode & 8 != 0,
            stats: Arc::default(),
        }],
    };
    let mut gw = Gateway::default();
    let now = Instant::now();
    if mode & 0x80 != 0 {
        if let Ok((endpoint, offset)) = gw.from_appliance(&snap, appliance, rest, now) {
            assert_eq!(endpoint, 7);
            assert!(offset <= rest.len());
        }
    } else {
        let mut out = Vec::new();
        if let Ok(to) = gw.from_endpoint(&snap, 7, rest, now, &mut out) {
            assert_eq!(to, appliance);
            let g = Geneve::parse(&out).expect("own encapsulation parses");
            assert_eq!(g.payload, rest);
            assert_eq!(g.gwlb().endpoint_id, Some(7));
            // And the appliance's return of it is delivered back to the endpoint.
            assert_eq!(gw.from_appliance(&snap, appliance, &out, now).map(|r| r.0), Ok(7));
        }
    }
}

/// SigV4 verification (every API request when credentials are configured): lines are the
/// `Authorization` header, `X-Amz-Date`, path, query, then the body. Must never panic, and a
/// request signed by [`weir_api::sigv4::sign`] over the same body verifies while the same
/// signature over another body does not.
pub fn sigv4(data: &[u8]) {
    use weir_api::sigv4::{sign, verify, Credentials};
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(5, '\n');
    let mut next = || lines.next().unwrap_or("");
    let (auth, date, path, query, body) = (next(), next(), next(), next(), next());
    let creds = Credentials::single("AKIDEXAMPLE", "wJalrXUtnFEMI");
    let host = "127.0.0.1:9400";
    let now: i64 = 1_440_938_160; // 2015-08-30T12:36:00Z
    let mut h = http::HeaderMap::new();
    h.insert(http::header::HOST, http::HeaderValue::from_static(host));
    if let Ok(v) = http::HeaderValue::from_str(auth) {
        h.insert(http::header::AUTHORIZATION, v);
    }
    if let Ok(v) = http::HeaderValue::from_str(date) {
        h.insert("x-amz-date", v);
    }
    let _ = verify(&creds, "POST", path, query, &h, body.as_bytes(), now);
    let (date, auth) = sign(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI",
        "us-east-1",
        "elasticloadbalancing",
        host,
        body.as_bytes(),
        now as u64,
    );
    let mut h = http::HeaderMap::new();
    h.insert(http::header::HOST, http::HeaderValue::from_static(host));
    h.insert("x-amz-date", http::HeaderValue::from_str(&date).expect("a date is a header value"));
    h.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&auth).expect("a signature is a header value"),
    );
    assert_eq!(verify(&creds, "POST", "/", "", &h, body.as_bytes(), now), Ok(()));
    let mut other = body.as_bytes().to_vec();
    other.push(b'x');
    assert!(verify(&creds, "POST", "/", "", &h, &other, now).is_err(), "a changed body verified");
}

/// XML responses carry user-chosen text (names, tag values, error messages that quote input):
/// any text written through the API's XML writer must come out as well-formed XML 1.0 that a
/// strict parser reads back as the same text (characters XML cannot carry become U+FFFD).
pub fn xml_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut x = weir_api::xml::Xml::default();
    x.open("R").leaf("V", &text).close("R");
    let doc = match roxmltree::Document::parse(&x.0) {
        Ok(d) => d,
        Err(e) => panic!("escaped text is not well-formed XML ({e}): {:?}", x.0),
    };
    let got: String = doc
        .root_element()
        .first_child()
        .map(|v| v.children().filter_map(|c| c.text()).collect())
        .unwrap_or_default();
    let want: String = text
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect();
    assert_eq!(got, want, "XML text did not round-trip");
}

/// CloudWatch RPC bodies (AWS JSON 1.0 and Smithy RPC v2 CBOR, network input on the API): decode
/// both ways; errors are fine, panics and runaway recursion are not.
pub fn rpc_body(data: &[u8]) {
    let _ = weir_api::decode_rpc_body(data, true);
    let _ = weir_api::decode_rpc_body(data, false);
}

/// The HTTP/1.1 fast path's parsing (network input from clients and targets). The first byte
/// picks the side: even, a request head whose fields are scanned; odd, a target response whose
/// head is rewritten for the client (the rewrite must parse, keep the status and carry no
/// hop-by-hop field) and whose body is scanned whole and split at every eighth byte (the same
/// end either way).
pub fn http1(data: &[u8]) {
    use weir_l7::http1::{self, Body};
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let mut fields = [httparse::EMPTY_HEADER; 100];
        let mut req = httparse::Request::new(&mut fields);
        if let Ok(httparse::Status::Complete(_)) = req.parse(data) {
            if let Some(f) = http1::scan_request(req.headers, 16 * 1024, mode & 2 != 0) {
                for v in f.connection.iter().chain(&f.forwarded_for) {
                    let _ = http1::tokens(v).count();
                }
            }
        }
        return;
    }
    let mut fields = [httparse::EMPTY_HEADER; http1::MAX_RESPONSE_HEADERS];
    let mut r = httparse::Response::new(&mut fields);
    let Ok(httparse::Status::Complete(n)) = r.parse(data) else {
        return;
    };
    let Some((head_len, status, framing, _)) = http1::response_framing(&r, n, mode & 2 != 0) else {
        return;
    };
    let mut out = Vec::new();
    let close = mode & 4 != 0;
    assert!(http1::write_response_head(&data[..head_len], &mut out, framing, close));
    let mut again = [httparse::EMPTY_HEADER; http1::MAX_RESPONSE_HEADERS + 2];
    let mut parsed = httparse::Response::new(&mut again);
    assert!(matches!(parsed.parse(&out), Ok(httparse::Status::Complete(l)) if l == out.len()));
    assert_eq!(parsed.code, Some(status));
    for h in parsed.headers.iter() {
        let n = h.name.to_ascii_lowercase();
        let allowed = (n == "transfer-encoding" && framing == http1::Framing::Chunked)
            || (n == "connection" && close);
        assert!(allowed || !weir_l7::headers::is_hop_by_hop(&n), "{n} passed to the client");
    }
    let rest = &data[head_len..];
    let mut whole = Body::new(framing);
    let a = whole.feed(rest);
    let mut split = Body::new(framing);
    let mut b = Ok(0);
    for piece in rest.chunks(8) {
        match split.feed(piece) {
            Ok(k) if k == piece.len() && !split.done() => b = b.map(|t| t + k),
            Ok(k) => {
                b = b.map(|t| t + k);
                break;
            }
            Err(()) => {
                b = Err(());
                break;
            }
        }
    }
    if framing != http1::Framing::Close {
        assert_eq!(a.is_ok(), b.is_ok(), "a split changed the verdict");
        if let (Ok(a), Ok(b)) = (a, b) {
            assert_eq!(a, b, "a split moved the end");
            assert_eq!(whole.done(), split.done());
        }
    }
    // The head as the general path's pooled exchange takes it: the same verdict as above, and
    // no hop-by-hop field survives.
    let shared = bytes::Bytes::copy_from_slice(data);
    let step = http1::parse_response_head(&shared, mode & 2 != 0, |r, f| {
        Some(http1::response_fields(r, f, &shared))
    });
    match step {
        http1::ResponseHead::Final(h) => {
            assert_eq!((h.len, h.status, h.framing), (head_len, status, framing));
            for name in h.out.iter().flat_map(|(_, fields)| fields.keys()) {
                assert!(!weir_l7::headers::is_hop_by_hop(name.as_str()), "{name} passed on");
            }
            // The same fields as an HTTP/2 response, with the `Connection: close` an ambiguous
            // request's answer gets: nothing `h2` refuses to send is left.
            if let Some((_, fields)) = &h.out {
                let mut f = fields.clone();
                f.append(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                weir_l7::headers::strip_for_http2(&mut f);
                for name in f.keys() {
                    let n = name.as_str();
                    assert!(!weir_l7::headers::HTTP2_FORBIDDEN.contains(&n), "{n} sent on HTTP/2");
                }
            }
        }
        http1::ResponseHead::Interim(len) => {
            assert!(len == head_len && (100..200).contains(&status) && status != 101)
        }
        http1::ResponseHead::Invalid => assert_eq!(status, 101),
        http1::ResponseHead::Partial => panic!("a complete head was partial"),
    }
    // Decoding a body (as the pooled exchange does) ends where scanning it does, and its data
    // is the body's bytes (the chunks' for chunked coding).
    let mut c = Body::decoding(framing);
    let (mut at, mut data) = (0, 0);
    let verdict = loop {
        match c.decode(&rest[at..]) {
            Err(()) => break Err(()),
            Ok(d) => {
                if let Some(r) = &d.data {
                    assert!(r.end <= d.consumed && !r.is_empty());
                    data += r.len();
                }
                at += d.consumed;
                if c.done() || (d.consumed == 0 && d.data.is_none()) || at == rest.len() {
                    break Ok(at);
                }
            }
        }
    };
    // The trailer section may be too large to keep where scanning alone accepts it.
    if let (Ok(x), Ok(y)) = (verdict, a) {
        assert_eq!(x, y, "decoding ended elsewhere");
        assert!(data <= x);
        if framing != http1::Framing::Chunked {
            assert_eq!(data, x, "only chunked coding is taken off");
        }
    }
    if c.done() {
        let _ = c.take_trailers();
    }
}
