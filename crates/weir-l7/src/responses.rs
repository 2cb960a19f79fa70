//! Responses the load balancer writes itself: error pages, fixed responses and redirects.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use weir_model::{FixedResponseConfig, RedirectConfig};

/// Why a response body could not be read to its end (from hyper, or from a pooled target
/// connection).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The response body type of the proxy.
pub type ProxyBody = BoxBody<Bytes, BodyError>;

/// A complete in-memory body.
pub fn full(b: impl Into<Bytes>) -> ProxyBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        460 => "Client Closed Request",
        463 => "Bad Request",
        502 => "Bad Gateway",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        _ => StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or(""),
    }
}

fn with_server(mut r: Response<ProxyBody>) -> Response<ProxyBody> {
    r.headers_mut().insert(header::SERVER, HeaderValue::from_static("awselb/2.0"));
    r
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn error_body(status: u16) -> String {
    let title = format!("{status} {}", reason(status));
    format!("<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n")
}

/// ALB's error page for `status` as raw HTTP/1.1 bytes that close the connection, for when no
/// HTTP server is left to write it (a request head that timed out).
pub fn raw_error(status: u16, server_header: bool) -> Vec<u8> {
    raw_page(status, server_header, true)
}

/// ALB's error page for `status` as raw HTTP/1.1 bytes; `close` adds `Connection: close`, and
/// a 429 carries `Retry-After: 1`.
pub fn raw_page(status: u16, server_header: bool, close: bool) -> Vec<u8> {
    let body = error_body(status);
    let server = if server_header { "Server: awselb/2.0\r\n" } else { "" };
    let connection = if close { "Connection: close\r\n" } else { "" };
    let retry = if status == 429 { "Retry-After: 1\r\n" } else { "" };
    format!(
        "HTTP/1.1 {status} {}\r\n{server}Content-Type: text/html\r\nContent-Length: {}\r\n{retry}{connection}\r\n{body}",
        reason(status),
        body.len()
    )
    .into_bytes()
}

/// The `Date` value for a response sent now (IMF-fixdate), formatted once a second per thread.
pub fn date_value() -> HeaderValue {
    use std::cell::RefCell;
    thread_local! {
        static CACHE: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((0, None)) };
    }
    let now = crate::clock::coarse_epoch_secs();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        match &c.1 {
            Some(v) if c.0 == now => v.clone(),
            _ => {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(now);
                let v = HeaderValue::try_from(crate::sticky::http_date(t))
                    .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
                *c = (now, Some(v.clone()));
                v
            }
        }
    })
}

/// ALB's HTML error page for `status`.
pub fn error_page(status: u16) -> Response<ProxyBody> {
    let body = error_body(status);
    let mut r = Response::new(full(body));
    *r.status_mut() = status_code(status);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    with_server(r)
}

/// A fixed-response action's response.
pub fn fixed(f: &FixedResponseConfig) -> Response<ProxyBody> {
    let mut r = Response::new(full(f.message_body.clone().unwrap_or_default()));
    *r.status_mut() = status_code(f.status_code);
    let ct = f.content_type.as_deref().unwrap_or("text/plain");
    if let Ok(v) = HeaderValue::from_str(&format!("{ct}; charset=utf-8")) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    with_server(r)
}

/// The original request's URL parts that redirect placeholders refer to.
#[derive(Debug, Clone, Copy)]
pub struct UrlParts<'a> {
    /// `http` or `https`.
    pub protocol: &'a str,
    /// Host without port.
    pub host: &'a str,
    /// Listener port.
    pub port: u16,
    /// Path, with leading `/`.
    pub path: &'a str,
    /// Query without `?`, possibly empty.
    pub query: &'a str,
}

fn expand(template: &str, u: &UrlParts<'_>) -> String {
    template
        .replace("#{protocol}", u.protocol)
        .replace("#{host}", u.host)
        .replace("#{port}", &u.port.to_string())
        .replace("#{path}", u.path.strip_prefix('/').unwrap_or(u.path))
        .replace("#{query}", u.query)
}

/// The `Location` of a redirect: placeholders expanded, the port left out when it is the
/// protocol's default, `?` left out when the query is empty.
pub fn redirect_location(cfg: &RedirectConfig, u: &UrlParts<'_>) -> String {
    let protocol = expand(&cfg.protocol, u).to_ascii_lowercase();
    let host = expand(&cfg.host, u);
    let port = expand(&cfg.port, u);
    let path = expand(&cfg.path, u);
    let query = expand(&cfg.query, u);
    let default_port =
        matches!((protocol.as_str(), port.as_str()), ("http", "80") | ("https", "443"));
    let mut s = format!("{protocol}://{host}");
    if !default_port {
        s.push(':');
        s.push_str(&port);
    }
    s.push_str(&path);
    if !query.is_empty() {
        s.push('?');
        s.push_str(&query);
    }
    s
}

/// A redirect action's response.
pub fn redirect(cfg: &RedirectConfig, u: &UrlParts<'_>) -> Response<ProxyBody> {
    let loc = redirect_location(cfg, u);
    let status = if cfg.status_code == 302 { 302 } else { 301 };
    let mut r = error_page(status);
    if let Ok(v) = HeaderValue::from_str(&loc) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> UrlParts<'static> {
        UrlParts { protocol: "http", host: "example.com", port: 80, path: "/a/b", query: "x=1" }
    }

    #[test]
    fn redirect_placeholders() {
        let mut c =
            RedirectConfig { protocol: "HTTPS".into(), port: "443".into(), ..Default::default() };
        assert_eq!(redirect_location(&c, &parts()), "https://example.com/a/b?x=1");
        c.port = "8443".into();
        c.path = "/new/#{path}".into();
        c.query = "".into();
        assert_eq!(redirect_location(&c, &parts()), "https://example.com:8443/new/a/b");
        let c = RedirectConfig {
            host: "www.#{host}".into(),
            query: "#{query}&y=2".into(),
            ..Default::default()
        };
        assert_eq!(
            redirect_location(&c, &UrlParts { port: 8080, ..parts() }),
            "http://www.example.com:8080/a/b?x=1&y=2"
        );
    }

    #[test]
    fn error_pages() {
        let r = error_page(503);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::SERVER], "awselb/2.0");
    }
}
