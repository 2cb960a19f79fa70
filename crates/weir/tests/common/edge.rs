//! A live `weir up` for end-to-end tests (the attack suite and hitless operations): a recording
//! backend, the weir process with its ports, resource readings, and raw HTTP exchanges.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Kill;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the backend received: one entry per request it parsed.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub content_length: bool,
    pub chunked: bool,
    pub upgrade: bool,
    pub connection_close: bool,
    /// The body as read, or `None` when it ended with an error (cut off).
    pub body: Option<Vec<u8>>,
}

/// A recording HTTP/1.1 backend (hyper): answers `ok` to everything, `/health` included.
pub struct Backend {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Backend {
    pub async fn start() -> Backend {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { continue };
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let h = req.headers();
                            let has = |n: &str| h.contains_key(n);
                            let mut s = Seen {
                                path: req.uri().path().to_string(),
                                content_length: has("content-length"),
                                chunked: h
                                    .get("transfer-encoding")
                                    .is_some_and(|v| v.as_bytes().ends_with(b"chunked")),
                                upgrade: has("upgrade") || has("http2-settings"),
                                connection_close: h
                                    .get("connection")
                                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close")),
                                body: None,
                            };
                            s.body =
                                req.into_body().collect().await.ok().map(|b| b.to_bytes().to_vec());
                            if s.path != "/health" {
                                log.lock().unwrap().push(s);
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Backend { addr, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

/// A running `weir up` of the edge template.
pub struct Edge {
    pub weir: Kill,
    pub pid: u32,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub api: SocketAddr,
    /// The NLB's TCP listener (127.0.0.1).
    pub nlb: SocketAddr,
    pub backend: Backend,
    pub dir: std::path::PathBuf,
    /// The command line weir was started with.
    pub args: Vec<String>,
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// [`super::start_weir`] off the async runtime: the guard and the pid.
pub async fn spawn_weir(args: &[String]) -> (Kill, u32) {
    let args = args.to_vec();
    let (guard, _, pid) =
        tokio::task::spawn_blocking(move || super::start_weir(&args)).await.unwrap();
    (guard, pid)
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Edge {
    /// Starts weir on the attack-suite template with extra `up` flags and template parameters
    /// (`Key=Value`).
    pub async fn start(flags: &[&str], params: &[&str]) -> Edge {
        let template = format!("{}/tests/attacks/edge.yaml", env!("CARGO_MANIFEST_DIR"));
        Self::start_template(&template, flags, params).await
    }

    /// Starts weir on `template` (which takes the edge template's parameters).
    pub async fn start_template(template: &str, flags: &[&str], params: &[&str]) -> Edge {
        let backend = Backend::start().await;
        let (http, https, api, nlb) = (free_port(), free_port(), free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("weir-edge-{}-{http}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> = ["up", template, "--no-demo-backends", "--dns-address", "off"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s = |v: &str| v.to_string();
        args.extend([s("--metrics-interval-seconds"), s("1")]);
        args.extend([s("--api-address"), format!("127.0.0.1:{api}")]);
        args.extend([s("--certificate-dir"), dir.display().to_string()]);
        args.extend([s("--access-log-dir"), dir.join("logs").display().to_string()]);
        args.extend([s("-p"), format!("HttpPort={http}"), s("-p"), format!("HttpsPort={https}")]);
        args.extend([s("-p"), format!("BackendPort={}", backend.addr.port())]);
        args.extend([s("-p"), format!("NlbPort={nlb}")]);
        for p in params {
            args.extend([s("-p"), s(p)]);
        }
        args.extend(flags.iter().map(|f| f.to_string()));
        let (weir, pid) = spawn_weir(&args).await;
        let lo = |p| SocketAddr::from(([127, 0, 0, 1], p));
        Edge {
            weir,
            pid,
            http: lo(http),
            https: lo(https),
            api: lo(api),
            nlb: lo(nlb),
            backend,
            dir,
            args,
        }
    }

    /// Resident memory of the weir process, MiB.
    pub fn rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            / 1024
    }

    /// Open descriptors of the weir process.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).unwrap().count()
    }

    /// The resource ceilings every attack is held to: resident memory and descriptors back
    /// near where they were once the attack is over.
    pub async fn assert_ceilings(&self, what: &str, fds_before: usize, rss_limit_mib: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (rss, fds) = (self.rss_mib(), self.fds());
            if rss <= rss_limit_mib && fds <= fds_before + 16 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {rss} MiB resident (ceiling {rss_limit_mib}), {fds} descriptors (before: {fds_before})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A plain request still gets the backend's answer.
    pub async fn assert_serving(&self, what: &str) {
        let r = exchange(
            self.http,
            b"GET /still-serving HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            r.text.starts_with("HTTP/1.1 200"),
            "{what}: not serving after the attack: {}",
            r.text
        );
    }

    /// The value of a counter in Prometheus text for this load balancer.
    pub async fn metric(&self, name: &str) -> f64 {
        let r =
            exchange(self.api, b"GET /metrics HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
                .await;
        r.text
            .lines()
            .filter(|l| l.starts_with(name) && l.contains("app/edge/"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// What came back on a connection: the bytes and how it ended.
pub struct Exchange {
    pub text: String,
    /// The peer closed (or reset) the connection; false when we stopped waiting.
    pub closed: bool,
}

impl Exchange {
    pub fn statuses(&self) -> Vec<u16> {
        self.text
            .split("\r\n")
            .filter_map(|l| l.strip_prefix("HTTP/1.1 "))
            .filter_map(|l| l.get(..3)?.parse().ok())
            .collect()
    }
}

/// Reads until the peer closes or is quiet for `quiet`.
pub async fn read_until_quiet(s: &mut TcpStream, quiet: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        match tokio::time::timeout(quiet, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// Sends `bytes` on a new connection and reads the answer.
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Exchange {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let (out, closed) = read_until_quiet(&mut s, Duration::from_secs(2)).await;
    Exchange { text: String::from_utf8_lossy(&out).into_owned(), closed }
}
