//! Rule evaluation cost with 100 rules: a hit on the last rule and a miss to the default rule.
#![allow(clippy::unwrap_used, missing_docs)] // benchmark harness: constant inputs, macro-generated items

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;
use weir_l7::snapshot::CompiledAction;
use weir_l7::{CompiledRules, RequestView};
use weir_model::condition::QueryStringPair;
use weir_model::{Condition, FixedResponseConfig};

fn fixed(code: u16) -> Arc<CompiledAction> {
    Arc::new(CompiledAction::Fixed(FixedResponseConfig {
        status_code: code,
        content_type: None,
        message_body: None,
    }))
}

fn hundred_rules() -> CompiledRules {
    let rules = (1..=100u32)
        .map(|i| {
            let conds = match i % 4 {
                0 => vec![Condition::PathPattern(vec![
                    format!("/svc{i}/*"),
                    format!("/v{i}/*.json"),
                ])],
                1 => vec![Condition::HostHeader(vec![
                    format!("svc{i}.example.com"),
                    format!("*.svc{i}.example.org"),
                ])],
                2 => vec![
                    Condition::HttpHeader {
                        name: "x-tenant".into(),
                        values: vec![format!("tenant-{i}")],
                    },
                    Condition::PathPattern(vec![format!("/t{i}/*")]),
                ],
                _ => vec![Condition::QueryString(vec![QueryStringPair {
                    key: Some("svc".into()),
                    value: format!("{i}"),
                }])],
            };
            (i, conds, fixed(200))
        })
        .collect();
    CompiledRules::new(rules, fixed(404))
}

fn bench(c: &mut Criterion) {
    let rules = hundred_rules();
    let mut headers = HeaderMap::new();
    headers.insert("user-agent", "bench".parse().unwrap());
    headers.insert("x-tenant", "tenant-none".parse().unwrap());
    let ip = "10.0.0.1".parse().unwrap();
    let last = RequestView {
        method: "GET",
        host: "www.example.com",
        path: "/svc100/items",
        query: Some("a=1"),
        headers: &headers,
        source: ip,
    };
    let miss = RequestView {
        method: "GET",
        host: "www.example.com",
        path: "/nothing/here",
        query: Some("a=1&b=2"),
        headers: &headers,
        source: ip,
    };
    c.bench_function("rules_100_match_last", |b| {
        b.iter(|| std::hint::black_box(rules.evaluate(std::hint::black_box(&last))).0)
    });
    c.bench_function("rules_100_miss_default", |b| {
        b.iter(|| std::hint::black_box(rules.evaluate(std::hint::black_box(&miss))).0)
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
