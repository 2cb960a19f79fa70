//! Load-balancer log files as ELB writes them to S3: lines queued without waiting by the data
//! plane, written by a blocking thread per load balancer into gzip files rotated every 5
//! minutes, named and laid out as ELB names its objects:
//! `DIR/AWSLogs/ACCOUNT/elasticloadbalancing/REGION/YYYY/MM/DD/ACCOUNT_elasticloadbalancing_REGION_TYPE.NAME.ID_YYYYMMDDTHHMMZ_IP_RANDOM.log.gz`.
//! Shared by ALB access logs (`weir-l7`) and NLB TLS connection logs (`weir-l4`); the line
//! formats live with them. When the writer falls behind, lines are dropped and counted rather
//! than slowing traffic.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

/// Lines buffered between the data plane and the writer.
const QUEUE: usize = 65_536;
/// Files cover 5 minutes.
pub const INTERVAL_SECS: u64 = 300;

/// Splits an entry into its fields, for tests and tools: fields end at a space outside double
/// quotes; quotes are removed and `\\` escapes the next character inside them (so
/// `"h2","http/1.1"` is the one field `h2,http/1.1`).
pub fn parse_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while chars.peek().is_some() {
        if chars.peek() == Some(&' ') {
            chars.next();
            continue;
        }
        let mut f = String::new();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '"' => quoted = !quoted,
                '\\' if quoted => {
                    if let Some(n) = chars.next() {
                        f.push(n);
                    }
                }
                ' ' if !quoted => break,
                c => f.push(c),
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

/// Where a load balancer's lines go.
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
    /// `app/NAME/ID` or `net/NAME/ID`.
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

    /// Queues a line for the file of the interval holding `at` (seconds since the epoch);
    /// never waits.
    pub fn log_line(&self, at: u64, line: String) {
        if self.tx.try_send(Msg::Line(at, line)).is_err() {
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
        let dir = std::env::temp_dir().join(format!("weir-log-files-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = AccessLog::start(LogTarget {
            dir: dir.clone(),
            account: "123456789012".into(),
            region: "us-east-1".into(),
            elb: "app/web/abc".into(),
            ip: "127.0.1.1".parse().unwrap(),
        });
        let at = |secs: u64| (secs, format!("http {secs} \"GET http://h:80/{secs} HTTP/1.1\""));
        // 2026-11-23 07:55:00 .. 08:00:00 is one interval; 08:00:00 starts the next.
        let t = 1_795_420_500; // 07:55:00Z
        let (a, l) = at(t);
        log.log_line(a, l);
        let (a, l) = at(t + 299);
        log.log_line(a, l);
        let (a, l) = at(t + 300);
        log.log_line(a, l);
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
        assert_eq!(parse_line(&lines[0])[2], "GET http://h:80/1795420500 HTTP/1.1");
        assert!(lines[2].contains("/1795420800 "), "{lines:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
