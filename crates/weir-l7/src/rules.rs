//! The rule engine: a listener's rules compiled once per snapshot and evaluated by priority
//! against a borrowed view of each request.
//!
//! Case rules follow AWS: host names, header names and values, and query-string keys and values
//! compare case-insensitively; paths and methods compare case-sensitively; methods take no
//! wildcards. Paths are compared as sent (not percent-decoded), without the query string.
//! Query-string pairs are compared after percent-decoding. Source IPs are the client's address,
//! never `X-Forwarded-For`.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use weir_model::condition::{parse_cidr, Cidr};
use weir_model::Condition;

use crate::glob::Pattern;
use crate::snapshot::CompiledAction;

/// What the rule engine sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Method, e.g. `GET`.
    pub method: &'a str,
    /// Host name from the Host header or URI authority, without port.
    pub host: &'a str,
    /// Path, as sent.
    pub path: &'a str,
    /// Query string without `?`, if any.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Client address.
    pub source: IpAddr,
}

#[derive(Debug)]
enum Compiled {
    Host(Vec<Pattern>),
    Path(Vec<Pattern>),
    Header(http::HeaderName, Vec<Pattern>),
    Method(Vec<String>),
    Query(Vec<(Option<Pattern>, Pattern)>),
    Source(Vec<Cidr>),
    /// A condition that can never match (e.g. an invalid header name that slipped through).
    Never,
}

impl Compiled {
    fn new(c: &Condition) -> Self {
        let pats = |v: &[String], ci: bool| v.iter().map(|s| Pattern::new(s, ci)).collect();
        match c {
            Condition::HostHeader(v) => Compiled::Host(pats(v, true)),
            Condition::PathPattern(v) => Compiled::Path(pats(v, false)),
            Condition::HttpHeader { name, values } => {
                match http::HeaderName::from_bytes(name.as_bytes()) {
                    Ok(n) => Compiled::Header(n, pats(values, true)),
                    Err(_) => Compiled::Never,
                }
            }
            Condition::HttpRequestMethod(v) => Compiled::Method(v.clone()),
            Condition::QueryString(pairs) => Compiled::Query(
                pairs
                    .iter()
                    .map(|kv| {
                        (
                            kv.key.as_deref().map(|k| Pattern::new(k, true)),
                            Pattern::new(&kv.value, true),
                        )
                    })
                    .collect(),
            ),
            Condition::SourceIp(v) => {
                Compiled::Source(v.iter().filter_map(|s| parse_cidr(s).ok()).collect())
            }
        }
    }

    fn matches(&self, e: &Eval<'_, '_>) -> bool {
        let r = e.view;
        match self {
            Compiled::Host(p) => p.iter().any(|p| p.matches(r.host)),
            Compiled::Path(p) => p.iter().any(|p| p.matches(r.path)),
            Compiled::Header(name, p) => r
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| p.iter().any(|p| p.matches(v))),
            Compiled::Method(m) => m.iter().any(|m| m == r.method),
            Compiled::Query(pairs) => e.query().iter().any(|(k, v)| {
                pairs
                    .iter()
                    .any(|(pk, pv)| pk.as_ref().is_none_or(|pk| pk.matches(k)) && pv.matches(v))
            }),
            Compiled::Source(c) => c.iter().any(|c| c.contains(r.source)),
            Compiled::Never => false,
        }
    }
}

/// One request's evaluation: the view plus lazily computed, shared derived values.
struct Eval<'v, 'a> {
    view: &'v RequestView<'a>,
    query: OnceCell<Vec<(Cow<'a, str>, Cow<'a, str>)>>,
}

impl<'a> Eval<'_, 'a> {
    /// The query's `key=value` pairs, decoded once per request and only if a rule asks.
    fn query(&self) -> &[(Cow<'a, str>, Cow<'a, str>)] {
        self.query.get_or_init(|| self.view.query.map(query_pairs).unwrap_or_default())
    }
}

fn decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['+', '%']) {
        return Cow::Borrowed(s);
    }
    let spaced = s.replace('+', " ");
    Cow::Owned(percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy().into_owned())
}

fn query_pairs(q: &str) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), Cow::Borrowed("")),
        })
        .collect()
}

/// One compiled rule.
#[derive(Debug)]
pub struct CompiledRule {
    /// Priority (1–50000).
    pub priority: u32,
    conditions: Vec<Compiled>,
    /// What to do on a match.
    pub action: Arc<CompiledAction>,
}

/// A listener's rules, sorted by priority, plus the default action.
#[derive(Debug)]
pub struct CompiledRules {
    rules: Vec<CompiledRule>,
    /// Some rule has an `http-header` condition.
    uses_headers: bool,
    /// The default rule's action.
    pub default_action: Arc<CompiledAction>,
}

impl CompiledRules {
    /// Compiles `(priority, conditions, action)` triples.
    pub fn new(
        mut rules: Vec<(u32, Vec<Condition>, Arc<CompiledAction>)>,
        default_action: Arc<CompiledAction>,
    ) -> Self {
        rules.sort_by_key(|r| r.0);
        let rules = rules
            .into_iter()
            .map(|(priority, conds, action)| CompiledRule {
                priority,
                conditions: conds.iter().map(Compiled::new).collect(),
                action,
            })
            .collect::<Vec<_>>();
        let uses_headers =
            rules.iter().flat_map(|r| &r.conditions).any(|c| matches!(c, Compiled::Header(..)));
        Self { rules, uses_headers, default_action }
    }

    /// The first matching rule's priority (`None` for the default rule) and action.
    pub fn evaluate(&self, r: &RequestView<'_>) -> (Option<u32>, &Arc<CompiledAction>) {
        let e = Eval { view: r, query: OnceCell::new() };
        for rule in &self.rules {
            if rule.conditions.iter().all(|c| c.matches(&e)) {
                return (Some(rule.priority), &rule.action);
            }
        }
        (None, &self.default_action)
    }

    /// Whether any rule looks at request headers (an `http-header` condition): when none does,
    /// [`RequestView::headers`] may be left empty.
    pub fn uses_headers(&self) -> bool {
        self.uses_headers
    }

    /// Number of rules (excluding the default rule).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether only the default rule exists.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_model::condition::QueryStringPair;
    use weir_model::FixedResponseConfig;

    fn fixed(code: u16) -> Arc<CompiledAction> {
        Arc::new(CompiledAction::Fixed(FixedResponseConfig {
            status_code: code,
            content_type: None,
            message_body: None,
        }))
    }

    fn status(a: &CompiledAction) -> u16 {
        match a {
            CompiledAction::Fixed(f) => f.status_code,
            _ => 0,
        }
    }

    fn view<'a>(
        method: &'a str,
        host: &'a str,
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a HeaderMap,
        ip: &str,
    ) -> RequestView<'a> {
        RequestView { method, host, path, query, headers, source: ip.parse().unwrap() }
    }

    #[test]
    fn each_condition_type_and_priority() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let rules = CompiledRules::new(
            vec![
                (50, vec![Condition::PathPattern(s(&["/api/*"]))], fixed(250)),
                (10, vec![Condition::HostHeader(s(&["*.example.com"]))], fixed(210)),
                (
                    20,
                    vec![Condition::HttpHeader { name: "X-Env".into(), values: s(&["canary"]) }],
                    fixed(220),
                ),
                (30, vec![Condition::HttpRequestMethod(s(&["DELETE"]))], fixed(230)),
                (
                    40,
                    vec![Condition::QueryString(vec![QueryStringPair {
                        key: Some("v".into()),
                        value: "2*".into(),
                    }])],
                    fixed(240),
                ),
                (45, vec![Condition::SourceIp(s(&["10.0.0.0/8"]))], fixed(245)),
            ],
            fixed(404),
        );
        let h = HeaderMap::new();
        let mut canary = HeaderMap::new();
        canary.insert("x-env", "CANARY".parse().unwrap());
        let cases = [
            (view("GET", "WWW.Example.com", "/api/x", None, &h, "1.2.3.4"), 210),
            (view("GET", "other.org", "/api/x", None, &h, "1.2.3.4"), 250),
            (view("GET", "other.org", "/API/x", None, &h, "1.2.3.4"), 404),
            (view("GET", "other.org", "/", None, &canary, "1.2.3.4"), 220),
            (view("DELETE", "other.org", "/", None, &h, "1.2.3.4"), 230),
            (view("delete", "other.org", "/", None, &h, "1.2.3.4"), 404),
            (view("GET", "other.org", "/", Some("a=1&V=2%2E0"), &h, "1.2.3.4"), 240),
            (view("GET", "other.org", "/", Some("v=1"), &h, "1.2.3.4"), 404),
            (view("GET", "other.org", "/", None, &h, "10.9.8.7"), 245),
        ];
        for (v, want) in cases {
            assert_eq!(status(rules.evaluate(&v).1), want, "{v:?}");
        }
        assert_eq!(rules.evaluate(&cases_default(&h)).0, None);
    }

    fn cases_default(h: &HeaderMap) -> RequestView<'_> {
        view("GET", "none.org", "/", None, h, "1.1.1.1")
    }

    #[test]
    fn conditions_are_anded_values_ored() {
        let rules = CompiledRules::new(
            vec![(
                1,
                vec![
                    Condition::HostHeader(vec!["a.com".into(), "b.com".into()]),
                    Condition::PathPattern(vec!["/x".into()]),
                ],
                fixed(200),
            )],
            fixed(404),
        );
        let h = HeaderMap::new();
        assert_eq!(status(rules.evaluate(&view("GET", "b.com", "/x", None, &h, "1.1.1.1")).1), 200);
        assert_eq!(status(rules.evaluate(&view("GET", "b.com", "/y", None, &h, "1.1.1.1")).1), 404);
        assert_eq!(status(rules.evaluate(&view("GET", "c.com", "/x", None, &h, "1.1.1.1")).1), 404);
    }

    #[test]
    fn query_without_key_matches_any_value() {
        let rules = CompiledRules::new(
            vec![(
                1,
                vec![Condition::QueryString(vec![QueryStringPair {
                    key: None,
                    value: "blue".into(),
                }])],
                fixed(200),
            )],
            fixed(404),
        );
        let h = HeaderMap::new();
        assert_eq!(
            status(rules.evaluate(&view("GET", "a.com", "/", Some("color=BLUE"), &h, "1.1.1.1")).1),
            200
        );
        assert_eq!(
            status(rules.evaluate(&view("GET", "a.com", "/", Some("color=red"), &h, "1.1.1.1")).1),
            404
        );
        assert_eq!(status(rules.evaluate(&view("GET", "a.com", "/", None, &h, "1.1.1.1")).1), 404);
    }
}
