//! ALB access logs: one line per request in AWS's field order. The request path only formats
//! the line; [`weir_telemetry::log_files`] writes it off the request path into gzip files
//! rotated every 5 minutes in ELB's S3 layout (`..._app.NAME.ID_...log.gz`).

use std::net::SocketAddr;

/// One request, as an access-log entry.
#[derive(Debug, Clone, Default)]
pub struct LogRecord {
    /// `http`, `https`, `h2`, `grpcs`, `ws` or `wss`.
    pub kind: &'static str,
    /// When the response was sent, µs since the epoch.
    pub time_us: u64,
    /// `app/NAME/ID`.
    pub elb: String,
    /// The client.
    pub client: Option<SocketAddr>,
    /// The target, when one was chosen.
    pub target: Option<SocketAddr>,
    /// Seconds from receiving the request to sending it to a target (-1: not sent).
    pub request_processing: f64,
    /// Seconds the target took to start its response (-1: none).
    pub target_processing: f64,
    /// Seconds from the target's response head to sending it on (-1: none).
    pub response_processing: f64,
    /// The status sent to the client.
    pub elb_status: u16,
    /// The target's status.
    pub target_status: Option<u16>,
    /// Bytes received from the client (head and body).
    pub received_bytes: u64,
    /// Bytes sent to the client (head and body).
    pub sent_bytes: u64,
    /// `METHOD URL VERSION`.
    pub request: String,
    /// The User-Agent.
    pub user_agent: String,
    /// TLS cipher (OpenSSL name).
    pub ssl_cipher: Option<&'static str>,
    /// TLS version.
    pub ssl_protocol: Option<&'static str>,
    /// The target group.
    pub target_group_arn: Option<String>,
    /// `X-Amzn-Trace-Id`.
    pub trace_id: String,
    /// SNI name.
    pub domain_name: Option<String>,
    /// Certificate served.
    pub chosen_cert_arn: Option<String>,
    /// Matched rule priority (0: default rule, -1: no rule evaluated).
    pub matched_rule_priority: i64,
    /// When the request arrived, µs since the epoch.
    pub request_creation_us: u64,
    /// `forward`, `redirect`, `fixed-response` (or `-`).
    pub actions_executed: &'static str,
    /// The Location of a redirect.
    pub redirect_url: Option<String>,
    /// Why the load balancer answered with an error.
    pub error_reason: Option<&'static str>,
    /// The desync classification (`Acceptable`, `Ambiguous`, `Severe`) when not compliant.
    pub classification: Option<&'static str>,
    /// Why.
    pub classification_reason: Option<String>,
}

fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32 & 0xff)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn dash<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), ToString::to_string)
}

fn secs(v: f64) -> String {
    if v < 0.0 {
        "-1".into()
    } else {
        format!("{v:.3}")
    }
}

impl LogRecord {
    /// The entry in ALB's field order (space-separated, quoted fields quoted).
    pub fn line(&self) -> String {
        let target = self.target.map_or_else(|| "-".to_string(), |t| t.to_string());
        let fields = [
            self.kind.to_string(),
            weir_model::time::iso8601_micros(self.time_us),
            self.elb.clone(),
            dash(&self.client),
            target.clone(),
            secs(self.request_processing),
            secs(self.target_processing),
            secs(self.response_processing),
            self.elb_status.to_string(),
            dash(&self.target_status),
            self.received_bytes.to_string(),
            self.sent_bytes.to_string(),
            q(&self.request),
            q(if self.user_agent.is_empty() { "-" } else { &self.user_agent }),
            dash(&self.ssl_cipher),
            dash(&self.ssl_protocol),
            dash(&self.target_group_arn),
            q(&self.trace_id),
            q(self.domain_name.as_deref().unwrap_or("-")),
            q(self.chosen_cert_arn.as_deref().unwrap_or("-")),
            self.matched_rule_priority.to_string(),
            weir_model::time::iso8601_micros(self.request_creation_us),
            q(self.actions_executed),
            q(self.redirect_url.as_deref().unwrap_or("-")),
            q(self.error_reason.unwrap_or("-")),
            q(&target),
            q(&dash(&self.target_status)),
            q(self.classification.unwrap_or("-")),
            q(self.classification_reason.as_deref().unwrap_or("-")),
            "-".to_string(),
        ];
        fields.join(" ")
    }
}

/// The field names of an entry, in order (docs/alb.md documents them).
pub const FIELDS: &[&str] = &[
    "type",
    "time",
    "elb",
    "client:port",
    "target:port",
    "request_processing_time",
    "target_processing_time",
    "response_processing_time",
    "elb_status_code",
    "target_status_code",
    "received_bytes",
    "sent_bytes",
    "request",
    "user_agent",
    "ssl_cipher",
    "ssl_protocol",
    "target_group_arn",
    "trace_id",
    "domain_name",
    "chosen_cert_arn",
    "matched_rule_priority",
    "request_creation_time",
    "actions_executed",
    "redirect_url",
    "error_reason",
    "target:port_list",
    "target_status_code_list",
    "classification",
    "classification_reason",
    "conn_trace_id",
];

pub use weir_telemetry::log_files::{parse_line, read_all, AccessLog, LogTarget};

/// Queues `rec` on `log` (never waits).
pub fn log(log: &AccessLog, rec: &LogRecord) {
    log.log_line(rec.time_us / 1_000_000, rec.line());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_follow_the_alb_field_order_and_quote_safely() {
        let r = LogRecord {
            kind: "https",
            time_us: 1_530_570_180_186_641,
            elb: "app/my-lb/50dc6c495c0c9188".into(),
            client: Some("192.168.131.39:2817".parse().unwrap()),
            target: Some("10.0.0.1:80".parse().unwrap()),
            request_processing: 0.000086,
            target_processing: 0.001048,
            response_processing: 0.000057,
            elb_status: 200,
            target_status: Some(200),
            received_bytes: 0,
            sent_bytes: 57,
            request: "GET https://www.example.com:443/ HTTP/1.1".into(),
            user_agent: "curl/7.46.0 \"quoted\"".into(),
            ssl_cipher: Some("ECDHE-RSA-AES128-GCM-SHA256"),
            ssl_protocol: Some("TLSv1.2"),
            target_group_arn: Some("arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067".into()),
            trace_id: "Root=1-58337281-1d84f3d73c47ec4e58577259".into(),
            domain_name: Some("www.example.com".into()),
            chosen_cert_arn: None,
            matched_rule_priority: 1,
            request_creation_us: 1_530_570_180_185_000,
            actions_executed: "forward",
            ..Default::default()
        };
        let line = r.line();
        assert!(line.starts_with("https 2018-07-02T22:23:00.186641Z app/my-lb/50dc6c495c0c9188 192.168.131.39:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 0 57 \"GET https://www.example.com:443/ HTTP/1.1\" \"curl/7.46.0 \\\"quoted\\\"\" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:"), "{line}");
        let f = parse_line(&line);
        assert_eq!(f.len(), FIELDS.len(), "{f:?}");
        assert_eq!(f[13], "curl/7.46.0 \"quoted\"");
        assert_eq!(f[20], "1");
        assert_eq!(f[22], "forward");
        assert_eq!(f[25], "10.0.0.1:80");
        assert_eq!(f[27], "-");
    }
}
