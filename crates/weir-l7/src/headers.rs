//! Header handling on the way to the target and back: hop-by-hop removal (RFC 9110 §7.6.1),
//! X-Forwarded-For/-Proto/-Port and X-Amzn-Trace-Id.

use std::net::SocketAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION};

use crate::error::ProxyError;
use crate::snapshot::{LbSettings, XffMode};

/// Most addresses ALB accepts in an incoming X-Forwarded-For (more is a 463).
pub const MAX_XFF_ADDRESSES: usize = 30;

/// The hop-by-hop fields of RFC 9110 §7.6.1 (beside those `Connection` names), which never
/// cross the load balancer.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Port`.
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
/// `X-Amzn-Trace-Id`.
pub static X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");

/// `X-Amzn-TLS-Version`.
pub static X_AMZN_TLS_VERSION: HeaderName = HeaderName::from_static("x-amzn-tls-version");
/// `X-Amzn-TLS-Cipher-Suite`.
pub static X_AMZN_TLS_CIPHER_SUITE: HeaderName = HeaderName::from_static("x-amzn-tls-cipher-suite");

/// What a connection adds to `X-Forwarded-For` and `X-Forwarded-Port`, formatted once when it
/// opens rather than for each of its requests.
#[derive(Debug)]
pub struct Forwarded {
    /// The client's address: `ip`.
    pub ip: HeaderValue,
    /// With its port (`ip:port`, `[ip]:port`), for `routing.http.xff_client_port.enabled`.
    pub ip_port: HeaderValue,
    /// The listener's port.
    pub port: HeaderValue,
}

impl Forwarded {
    /// The values for a connection from `client` to a listener on `port`.
    pub fn new(client: SocketAddr, port: u16) -> Self {
        let ip_port = match client {
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
            a => a.to_string(),
        };
        let value = |s: String| {
            HeaderValue::from_maybe_shared(bytes::Bytes::from(s))
                .unwrap_or_else(|_| HeaderValue::from_static("-"))
        };
        Self {
            ip: value(client.ip().to_string()),
            ip_port: value(ip_port),
            port: HeaderValue::from(port),
        }
    }

    /// The client's `X-Forwarded-For` entry, with or without its port.
    pub fn client(&self, with_port: bool) -> &HeaderValue {
        if with_port {
            &self.ip_port
        } else {
            &self.ip
        }
    }
}

/// Removes hop-by-hop headers, including every header named in `Connection`.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    strip_listed(h, &HOP_BY_HOP, is_hop_by_hop);
}

/// The response fields HTTP/2 forbids (RFC 9113 §8.2.2), besides those `connection` names.
pub const HTTP2_FORBIDDEN: [&str; 6] =
    ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"];

/// Drops the fields HTTP/2 forbids in a response: [`HTTP2_FORBIDDEN`] and the fields
/// `connection` names (`h2` refuses to send a response carrying any of them).
pub fn strip_for_http2(fields: &mut HeaderMap) {
    strip_listed(fields, &HTTP2_FORBIDDEN, is_http2_forbidden);
}

/// Whether `name` (lower-case, as a map holds it) is one of [`HTTP2_FORBIDDEN`].
fn is_http2_forbidden(name: &str) -> bool {
    match name.len() {
        2 => name == "te",
        7 => name == "upgrade",
        10 => name == "connection" || name == "keep-alive",
        16 => name == "proxy-connection",
        17 => name == "transfer-encoding",
        _ => false,
    }
}

/// Removes the fields in `listed` (lower-case, `connection` among them; `is_listed` tells
/// them) and every field `Connection` names.
fn strip_listed(h: &mut HeaderMap, listed: &[&str], is_listed: fn(&str) -> bool) {
    // Most messages carry none: one pass over the names instead of a lookup per field.
    if !h.keys().any(|n| is_listed(n.as_str())) {
        return;
    }
    let named: Vec<HeaderName> = h
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in listed {
        h.remove(*n);
    }
}

/// Whether `name` is one of [`HOP_BY_HOP`], in any case.
pub fn is_hop_by_hop(name: &str) -> bool {
    // Told apart by length first: most fields are compared with nothing.
    let is = |h: &str| name.eq_ignore_ascii_case(h);
    match name.len() {
        2 => is("te"),
        7 => is("trailer") || is("upgrade"),
        10 => is("connection") || is("keep-alive"),
        16 => is("proxy-connection"),
        17 => is("transfer-encoding"),
        18 => is("proxy-authenticate"),
        _ => false,
    }
}

/// Whether a header name is one ALB considers invalid (anything beyond letters, digits and
/// hyphens) when `drop_invalid_header_fields` is on.
pub fn is_invalid_header_name(n: &HeaderName) -> bool {
    is_invalid_name(n.as_str())
}

/// [`is_invalid_header_name`] for a name as received.
pub fn is_invalid_name(n: &str) -> bool {
    !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// How many addresses one `X-Forwarded-For` value lists.
pub fn forwarded_addresses(v: &[u8]) -> usize {
    v.split(|b| *b == b',').filter(|a| !a.trim_ascii().is_empty()).count()
}

/// Whether an incoming `X-Amzn-Trace-Id` value carries a `Root` (and is then kept as it is).
pub fn has_trace_root(v: &[u8]) -> bool {
    v.windows(5).any(|w| w == b"Root=")
}

/// Length of a new trace id, `Root=1-<8 hex>-<24 hex>`.
pub const TRACE_ROOT_LEN: usize = 40;

/// Appends a new trace id, `Root=1-<epoch hex>-<24 hex>`.
pub fn push_trace_root(out: &mut Vec<u8>, now_secs: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Filled in place and appended at once: one capacity check instead of one per digit.
    let mut id = *b"Root=1-00000000-000000000000000000000000";
    for (i, d) in id[7..15].iter_mut().enumerate() {
        *d = HEX[((now_secs >> (28 - 4 * i)) & 0xf) as usize];
    }
    let r = fastrand::u128(..);
    for (i, d) in id[16..].iter_mut().enumerate() {
        *d = HEX[((r >> (92 - 4 * i)) & 0xf) as usize];
    }
    out.extend_from_slice(&id);
}

/// The fields the load balancer sets on a request for its target, each replacing any field
/// of that name the client sent. Gathered once, then either written into the request's map
/// ([`Outgoing::apply`], for hyper's client) or straight into an HTTP/1.1 head
/// ([`Outgoing::write_head`], the pooled client) — which costs no map insertions.
#[derive(Debug, Default)]
pub struct Outgoing {
    fields: Vec<(HeaderName, HeaderValue)>,
    /// The client's `X-Forwarded-For` is dropped (`XffMode::Remove`).
    drop_xff: bool,
}

impl Outgoing {
    /// Room for the fields a request usually gets (Host, X-Forwarded-*, a trace id).
    pub fn new() -> Self {
        Self { fields: Vec::with_capacity(6), drop_xff: false }
    }

    /// Sets `name` to `value`, replacing an earlier value set here.
    pub fn set(&mut self, name: HeaderName, value: HeaderValue) {
        match self.fields.iter_mut().find(|(n, _)| *n == name) {
            Some(f) => f.1 = value,
            None => self.fields.push((name, value)),
        }
    }

    /// Adds a field whose name is not set yet (the callers below each set distinct names).
    fn push(&mut self, name: &HeaderName, value: HeaderValue) {
        debug_assert!(self.get(name).is_none());
        self.fields.push((name.clone(), value));
    }

    /// The value set for `name`, if any.
    pub fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Writes the fields into `h`, replacing the client's of the same names.
    pub fn apply(self, h: &mut HeaderMap) {
        if self.drop_xff {
            h.remove(&X_FORWARDED_FOR);
        }
        for (n, v) in self.fields {
            h.insert(n, v);
        }
    }

    /// An HTTP/1.1 request head: the request line, the client's `fields` (each replaced field
    /// written where the client's first one was, its other values dropped), then the fields
    /// set here that the client did not send.
    pub fn write_head(&self, method: &str, path_and_query: &str, fields: &HeaderMap) -> Vec<u8> {
        let size = fields.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>()
            + self.fields.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>();
        let mut out = Vec::with_capacity(method.len() + path_and_query.len() + size + 14);
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(path_and_query.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let line = |out: &mut Vec<u8>, k: &HeaderName, v: &HeaderValue| {
            out.extend_from_slice(k.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        // Bit i: the field set at index i has been written.
        let mut written = 0u64;
        // Bit n: a field set here has a name n bytes long — most of the client's fields are
        // told apart by their length alone.
        let mut lengths =
            self.fields.iter().fold(0u64, |m, (n, _)| m | 1 << n.as_str().len().min(63));
        if self.drop_xff {
            lengths |= 1 << X_FORWARDED_FOR.as_str().len();
        }
        for (k, v) in fields {
            let name = k.as_str();
            if lengths & (1 << name.len().min(63)) == 0 {
                line(&mut out, k, v);
                continue;
            }
            if self.drop_xff && k == X_FORWARDED_FOR {
                continue;
            }
            match self.fields.iter().position(|(n, _)| n == k) {
                None => line(&mut out, k, v),
                Some(i) if i < 64 && written & (1 << i) == 0 => {
                    written |= 1 << i;
                    line(&mut out, k, &self.fields[i].1);
                }
                Some(_) => {}
            }
        }
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i >= 64 || written & (1 << i) == 0 {
                line(&mut out, k, v);
            }
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// X-Forwarded-For/-Proto/-Port per the load balancer's settings, with the connection's `fwd`
/// values, for a request carrying `h`. Errors with 463 when the incoming X-Forwarded-For holds
/// more than 30 addresses.
pub fn forwarded(
    h: &HeaderMap,
    fwd: &Forwarded,
    proto: &str,
    lb: &LbSettings,
    out: &mut Outgoing,
) -> Result<(), ProxyError> {
    let existing = h.get_all(&X_FORWARDED_FOR);
    let any = existing.iter().any(|v| v.to_str().is_ok());
    let count: usize = existing
        .iter()
        .filter(|v| v.to_str().is_ok())
        .map(|v| forwarded_addresses(v.as_bytes()))
        .sum();
    if count > MAX_XFF_ADDRESSES {
        return Err(ProxyError::too_many_forwarded());
    }
    match lb.xff_mode {
        XffMode::Preserve => {}
        XffMode::Remove => out.drop_xff = true,
        XffMode::Append => {
            let me = fwd.client(lb.xff_client_port);
            if !any {
                out.push(&X_FORWARDED_FOR, me.clone());
            } else {
                let mut joined = Vec::new();
                for v in existing.iter().filter(|v| v.to_str().is_ok()) {
                    joined.extend_from_slice(v.as_bytes());
                    joined.extend_from_slice(b", ");
                }
                joined.extend_from_slice(me.as_bytes());
                if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
                    out.push(&X_FORWARDED_FOR, v);
                }
            }
        }
    }
    out.push(
        &X_FORWARDED_PROTO,
        HeaderValue::from_static(if proto == "https" { "https" } else { "http" }),
    );
    out.push(&X_FORWARDED_PORT, fwd.port.clone());
    Ok(())
}

/// Applies X-Forwarded-For/-Proto/-Port to `h` itself ([`forwarded`], then
/// [`Outgoing::apply`]).
pub fn apply_forwarded(
    h: &mut HeaderMap,
    fwd: &Forwarded,
    proto: &str,
    lb: &LbSettings,
) -> Result<(), ProxyError> {
    let mut out = Outgoing::new();
    forwarded(h, fwd, proto, lb, &mut out)?;
    out.apply(h);
    Ok(())
}

/// Joins the separate `cookie` fields an HTTP/2 client may send into the one `Cookie` header
/// HTTP/1.1 expects (RFC 9113 §8.2.3).
pub fn join_cookies(h: &mut HeaderMap) {
    let all: Vec<&str> =
        h.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
    if all.len() > 1 {
        if let Ok(v) = HeaderValue::from_str(&all.join("; ")) {
            h.insert(http::header::COOKIE, v);
        }
    }
}

/// `X-Amzn-TLS-Version` and `X-Amzn-TLS-Cipher-Suite`, as ALB adds them when
/// `routing.http.x_amzn_tls_version_and_cipher_suite.enabled` is on.
pub fn tls_version_and_cipher(out: &mut Outgoing, version: &'static str, cipher: &'static str) {
    out.push(&X_AMZN_TLS_VERSION, HeaderValue::from_static(version));
    out.push(&X_AMZN_TLS_CIPHER_SUITE, HeaderValue::from_static(cipher));
}

/// Sets `Root=1-<epoch hex>-<24 hex>` as X-Amzn-Trace-Id unless the request's `h` carries a
/// Root already (kept as it is); returns the field's value when `want_id` (for the access log).
pub fn trace_id(h: &HeaderMap, now_secs: u64, want_id: bool, out: &mut Outgoing) -> Option<String> {
    if let Some(v) = h.get(&X_AMZN_TRACE_ID).and_then(|v| v.to_str().ok()) {
        if has_trace_root(v.as_bytes()) {
            return want_id.then(|| v.to_string());
        }
    }
    let mut id = Vec::with_capacity(TRACE_ROOT_LEN);
    push_trace_root(&mut id, now_secs);
    let text = want_id.then(|| String::from_utf8_lossy(&id).into_owned());
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(id)) {
        out.push(&X_AMZN_TRACE_ID, v);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_specific_fields_and_those_connection_names_are_dropped() {
        let mut f = HeaderMap::new();
        for (k, v) in [
            ("connection", "close, X-Private , x-other"),
            ("x-private", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("x-kept", "yes"),
            ("content-type", "text/plain"),
        ] {
            f.append(http::HeaderName::from_static(k), http::HeaderValue::from_static(v));
        }
        strip_for_http2(&mut f);
        let mut left: Vec<&str> = f.keys().map(http::HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-kept"]);
        // Nothing to drop: nothing changes.
        let before = f.clone();
        strip_for_http2(&mut f);
        assert_eq!(f, before);
    }

    #[test]
    fn every_http2_forbidden_name_is_known() {
        for h in HTTP2_FORBIDDEN {
            assert!(is_http2_forbidden(h), "{h}");
        }
        for h in HOP_BY_HOP.iter().filter(|h| !HTTP2_FORBIDDEN.contains(h)) {
            assert!(!is_http2_forbidden(h), "{h}");
        }
    }

    #[test]
    fn every_hop_by_hop_name_is_known_in_any_case() {
        for h in HOP_BY_HOP {
            assert!(is_hop_by_hop(h), "{h}");
            assert!(is_hop_by_hop(&h.to_ascii_uppercase()), "{h}");
            assert!(!is_hop_by_hop(&h[1..]), "{h}");
        }
        for other in ["host", "user-agent", "content-length", "tex", "upgrades", ""] {
            assert!(!is_hop_by_hop(other), "{other}");
        }
    }

    #[test]
    fn hop_by_hop_and_connection_tokens() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn xff_modes_and_limit() {
        let client = Forwarded::new("10.1.2.3:5555".parse().unwrap(), 80);
        let mut lb = LbSettings::default();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.1.1.1".parse().unwrap());
        apply_forwarded(&mut h, &client, "http", &lb).unwrap();
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.1.2.3");
        assert_eq!(h["x-forwarded-port"], "80");
        assert_eq!(h["x-forwarded-proto"], "http");
        lb.xff_client_port = true;
        let mut h = HeaderMap::new();
        apply_forwarded(&mut h, &client, "http", &lb).unwrap();
        assert_eq!(h["x-forwarded-for"], "10.1.2.3:5555");
        lb.xff_mode = XffMode::Remove;
        apply_forwarded(&mut h, &client, "http", &lb).unwrap();
        assert!(!h.contains_key("x-forwarded-for"));
        let many = (0..31).map(|i| format!("10.0.0.{i}")).collect::<Vec<_>>().join(",");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", many.parse().unwrap());
        assert_eq!(apply_forwarded(&mut h, &client, "http", &lb).unwrap_err().status, 463);
    }

    #[test]
    fn forwarded_values_of_v6_clients_and_other_ports() {
        let f = Forwarded::new("[2001:db8::7]:4000".parse().unwrap(), 8443);
        assert_eq!(f.client(false), "2001:db8::7");
        assert_eq!(f.client(true), "[2001:db8::7]:4000");
        let mut h = HeaderMap::new();
        apply_forwarded(&mut h, &f, "https", &LbSettings::default()).unwrap();
        assert_eq!(h["x-forwarded-for"], "2001:db8::7");
        assert_eq!(h["x-forwarded-port"], "8443");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn new_trace_ids_have_their_documented_shape() {
        let mut h = HeaderMap::new();
        let mut out = Outgoing::new();
        let id = trace_id(&h, 0x5f00_0001, true, &mut out).unwrap();
        assert_eq!(id.len(), TRACE_ROOT_LEN);
        assert!(id.starts_with("Root=1-5f000001-"), "{id}");
        assert!(id[16..].bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        out.apply(&mut h);
        assert_eq!(h["x-amzn-trace-id"], id.as_str());
        // An incoming Root is kept as it is, and nothing is set.
        let mut out = Outgoing::new();
        let kept = trace_id(&h, 1, true, &mut out).unwrap();
        assert_eq!(kept, id);
        assert!(out.get(&X_AMZN_TRACE_ID).is_none());
    }

    #[test]
    fn an_outgoing_head_replaces_fields_where_the_client_put_them() {
        let mut h = HeaderMap::new();
        h.append("host", "client.example".parse().unwrap());
        h.append("accept", "*/*".parse().unwrap());
        h.append("x-forwarded-proto", "gopher".parse().unwrap());
        h.append("x-forwarded-proto", "again".parse().unwrap());
        h.append("x-forwarded-for", "1.1.1.1".parse().unwrap());
        let mut out = Outgoing::new();
        out.set(http::header::HOST, HeaderValue::from_static("target:8080"));
        out.set(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
        out.set(X_FORWARDED_PORT.clone(), HeaderValue::from_static("80"));
        out.set(X_FORWARDED_PORT.clone(), HeaderValue::from_static("81"));
        let head = out.write_head("GET", "/a?b", &h);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "GET /a?b HTTP/1.1\r\nhost: target:8080\r\naccept: */*\r\n\
             x-forwarded-proto: http\r\nx-forwarded-for: 1.1.1.1\r\nx-forwarded-port: 81\r\n\r\n"
        );
        // The same fields written into the map instead.
        let mut m = h.clone();
        let mut again = Outgoing::new();
        again.set(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
        again.apply(&mut m);
        assert_eq!(m.get_all("x-forwarded-proto").iter().count(), 1);
        assert_eq!(m["x-forwarded-proto"], "http");
        // X-Forwarded-For dropped (XffMode::Remove) from the head and from the map.
        let lb = LbSettings { xff_mode: XffMode::Remove, ..LbSettings::default() };
        let f = Forwarded::new("10.1.2.3:5555".parse().unwrap(), 80);
        let mut out = Outgoing::new();
        forwarded(&h, &f, "http", &lb, &mut out).unwrap();
        let head = String::from_utf8(out.write_head("GET", "/", &h)).unwrap();
        assert!(!head.contains("1.1.1.1"), "{head}");
        assert!(head.contains("x-forwarded-port: 80\r\n"), "{head}");
        out.apply(&mut m);
        assert!(!m.contains_key("x-forwarded-for"));
    }
}
