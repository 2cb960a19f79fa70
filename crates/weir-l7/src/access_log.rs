//! ALB access logs: one line per request in AWS's field order, written off the request path by
//! a task per load balancer into gzip files rotated every 5 minutes, named and laid out as ELB
//! names its S3 objects:
//! `DIR/AWSLogs/ACCOUNT/elasticloadbalancing/REGION/YYYY/MM/DD/ACCOUNT_elasticloadbalancing_REGION_app.NAME.ID_YYYYMMDDTHHMMZ_IP_RANDOM.log.gz`.
//!
//! The request path only formats a line and `try_send`s it into a bounded channel; when the
//! writer falls behind, lines are dropped and counted rather than slowing requests.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

/// Lines buffered between the request path and the writer.
const QUEUE: usize = 65_536;
/// Files cover 5 minutes.
const INTERVAL_SECS: u64 = 300;

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

/// Splits an entry into its fields (quoted fields unquoted), for tests and tools.
pub fn parse_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while chars.peek().is_some() {
        if chars.peek() == Some(&' ') {
            chars.next();
            continue;
        }
        let mut f = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            f.push(n);
                        }
                    }
                    '"' => break,
                    c => f.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ' ' {
                    break;
                }
                f.push(c);
                chars.next();
            }
        }
        out.push(f);
    }
    out
}

enum Msg {
    Line(u64, String),
    Flush(oneshot::Sender<()>),
}

/// Where a load balancer's entries go.
#[derive(Debug)]
pub struct AccessLog {
    tx: mpsc::Sender<Msg>,
    /// Entries dropped because the writer fell behind.
    pub dropped: AtomicU64,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

/// Names of the files of one load balancer.
#[derive(Debug, Clone)]
pub struct LogTarget {
    /// Root directory (the bucket, plus the prefix).
    pub dir: PathBuf,
    /// Account id.
    pub account: String,
    /// Region.
    pub region: String,
    /// `app/NAME/ID`.
    pub elb: String,
    /// The node address that appears in file names.
    pub ip: IpAddr,
}

impl LogTarget {
    fn path(&self, interval_end: u64) -> PathBuf {
        let (y, m, d, h, mi, _) = weir_model::time::parts(interval_end);
        let day = self
            .dir
            .join("AWSLogs")
            .join(&self.account)
            .join("elasticloadbalancing")
            .join(&self.region)
            .join(format!("{y:04}"))
            .join(format!("{m:02}"))
            .join(format!("{d:02}"));
        let name = format!(
            "{}_elasticloadbalancing_{}_{}_{y:04}{m:02}{d:02}T{h:02}{mi:02}Z_{}_{:08x}.log.gz",
            self.account,
            self.region,
            self.elb.replace('/', "."),
            self.ip,
            fastrand::u32(..)
        );
        day.join(name)
    }
}

struct Open {
    interval: u64,
    tmp: PathBuf,
    path: PathBuf,
    gz: flate2::write::GzEncoder<std::fs::File>,
}

fn finish(open: Option<Open>) {
    if let Some(o) = open {
        let done =
            o.gz.finish()
                .and_then(|f| f.sync_all())
                .and_then(|()| std::fs::rename(&o.tmp, &o.path));
        if let Err(e) = done {
            tracing::warn!(path = %o.path.display(), error = %e, "access log file not finished");
        }
    }
}

fn open(target: &LogTarget, interval: u64) -> std::io::Result<Open> {
    let path = target.path(interval + INTERVAL_SECS);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("gz.partial");
    let file = std::fs::File::create(&tmp)?;
    Ok(Open {
        interval,
        tmp,
        path,
        gz: flate2::write::GzEncoder::new(file, flate2::Compression::default()),
    })
}

impl AccessLog {
    /// Starts the writer task for `target`.
    pub fn start(target: LogTarget) -> Arc<Self> {
        let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
        // File I/O and compression run on a blocking thread, never on the request path.
        tokio::task::spawn_blocking(move || {
            let mut current: Option<Open> = None;
            while let Some(msg) = rx.blocking_recv() {
                match msg {
                    Msg::Line(at, line) => {
                        let interval = at - at % INTERVAL_SECS;
                        if current.as_ref().is_some_and(|o| o.interval != interval) {
                            finish(current.take());
                        }
                        if current.is_none() {
                            match open(&target, interval) {
                                Ok(o) => current = Some(o),
                                Err(e) => {
                                    tracing::warn!(dir = %target.dir.display(), error = %e, "access log file not created");
                                    continue;
                                }
                            }
                        }
                        if let Some(o) = current.as_mut() {
                            let _ = o.gz.write_all(line.as_bytes());
                            let _ = o.gz.write_all(b"\n");
                        }
                    }
                    Msg::Flush(ack) => {
                        finish(current.take());
                        let _ = ack.send(());
                    }
                }
            }
            finish(current.take());
        });
        Arc::new(Self { tx, dropped: AtomicU64::new(0) })
    }

    /// Queues an entry; never waits.
    pub fn log(&self, rec: &LogRecord) {
        let msg = Msg::Line(rec.time_us / 1_000_000, rec.line());
        if self.tx.try_send(msg).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Finishes the current file (entries queued before the call are in it).
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// Reads every finished log file under `dir` (gzip), in name order: the entries, one per line.
pub fn read_all(dir: &Path) -> std::io::Result<Vec<String>> {
    use std::io::Read;
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "gz") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut lines = Vec::new();
    for f in files {
        let mut s = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&f)?).read_to_string(&mut s)?;
        lines.extend(s.lines().map(str::to_string));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_rotate_every_five_minutes_and_are_gzip() {
        let dir = std::env::temp_dir().join(format!("weir-access-log-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = AccessLog::start(LogTarget {
            dir: dir.clone(),
            account: "123456789012".into(),
            region: "us-east-1".into(),
            elb: "app/web/abc".into(),
            ip: "127.0.1.1".parse().unwrap(),
        });
        let at = |secs: u64| LogRecord {
            kind: "http",
            time_us: secs * 1_000_000,
            request: format!("GET http://h:80/{secs} HTTP/1.1"),
            ..Default::default()
        };
        // 2026-11-23 07:55:00 .. 08:00:00 is one interval; 08:00:00 starts the next.
        let t = 1_795_420_500; // 07:55:00Z
        log.log(&at(t));
        log.log(&at(t + 299));
        log.log(&at(t + 300));
        log.flush().await;
        let mut names: Vec<String> = Vec::new();
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    names.push(p.strip_prefix(&dir).unwrap().display().to_string());
                }
            }
        }
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[0].starts_with("AWSLogs/123456789012/elasticloadbalancing/us-east-1/2026/11/23/123456789012_elasticloadbalancing_us-east-1_app.web.abc_20261123T0800Z_127.0.1.1_"), "{names:?}");
        assert!(names[1].contains("_20261123T0805Z_"), "{names:?}");
        let lines = read_all(&dir).unwrap();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("/1795420500 "), "{lines:?}");
        assert!(lines[2].contains("/1795420800 "), "{lines:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

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
