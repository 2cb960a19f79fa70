//! Helpers for Weir's end-to-end tests: real backends on loopback ports, a real data plane
//! deployed from template text, and a small HTTP client.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failed setup should panic loudly
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_dataplane::{Dataplane, DataplaneConfig, TargetHealthInfo};
use weir_demo::DemoBackend;
use weir_model::State;

pub use weir_demo;
pub use weir_model;

/// The target `127.0.0.1:port`.
pub fn ip_target(port: u16) -> weir_model::state::TargetSpec {
    weir_model::state::TargetSpec {
        id: "127.0.0.1".into(),
        port: Some(port),
        availability_zone: None,
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts `n` demo backends named `{prefix}-{i}` on free ports.
pub async fn backends(prefix: &str, n: usize) -> Vec<DemoBackend> {
    let mut v = Vec::new();
    for i in 1..=n {
        v.push(
            DemoBackend::start("127.0.0.1:0".parse().unwrap(), &format!("{prefix}-{i}"))
                .await
                .expect("backend"),
        );
    }
    v
}

/// YAML list items `- { Id: 127.0.0.1, Port: P }` for backends.
pub fn targets_yaml(b: &[DemoBackend], indent: usize) -> String {
    let pad = " ".repeat(indent);
    b.iter().map(|x| format!("{pad}- {{ Id: 127.0.0.1, Port: {} }}\n", x.addr.port())).collect()
}

/// A deployed template served by a real data plane.
pub struct Lb {
    /// The data plane.
    pub dp: Arc<Dataplane>,
    /// The deployed state.
    pub state: State,
    /// The listener port.
    pub port: u16,
}

impl Lb {
    /// Deploys `yaml` (which must use `${PORT}` as its listener port) and serves it.
    pub async fn up(yaml: &str) -> Lb {
        Self::up_with(yaml, DataplaneConfig::default()).await
    }

    /// Like [`Lb::up`], reading certificate ARNs from `dir`.
    pub async fn up_with_certs(yaml: &str, dir: &std::path::Path) -> Lb {
        let config = DataplaneConfig { certificate_dir: dir.to_path_buf(), ..Default::default() };
        Self::up_with(yaml, config).await
    }

    /// Like [`Lb::up`] with a data-plane configuration.
    pub async fn up_with(yaml: &str, config: DataplaneConfig) -> Lb {
        let port = free_port();
        let text = yaml.replace("${PORT}", &port.to_string());
        let t = weir_stack::parse_template(&text).expect("template parses");
        let mut state = State::default();
        weir_stack::deploy(&t, "test", &BTreeMap::new(), &mut state, 0).expect("template deploys");
        let dp = Dataplane::new(config);
        dp.apply(&state).await.expect("listeners bind");
        Lb { dp, state, port }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `127.0.0.1:PORT`, the public address of an internet-facing load balancer.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `127.0.Z.N:PORT`: the only load balancer's node in zone number `zone` (0 is zone a).
    pub fn node(&self, zone: usize) -> SocketAddr {
        let lb = self.state.load_balancers.values().next().expect("load balancer");
        SocketAddr::new(weir_model::zones::node_address(zone, lb.node_index).into(), self.port)
    }

    /// Changes the state with `f` and applies it live.
    pub async fn change(&mut self, f: impl FnOnce(&mut State)) {
        f(&mut self.state);
        self.dp.apply(&self.state).await.expect("apply");
    }

    /// Registers `127.0.0.1:port` in the group named `tg_name`, live.
    pub async fn register(&mut self, tg_name: &str, port: u16) {
        let tg = self.tg_arn(tg_name);
        self.change(|s| s.register_targets(&tg, &[ip_target(port)]).unwrap()).await;
    }

    /// Deregisters `127.0.0.1:port` from the group named `tg_name`, live.
    pub async fn deregister(&mut self, tg_name: &str, port: u16) {
        let tg = self.tg_arn(tg_name);
        self.change(|s| s.deregister_targets(&tg, &[ip_target(port)]).unwrap()).await;
    }

    /// The only target group named `name`.
    pub fn tg_arn(&self, name: &str) -> String {
        self.state
            .target_groups
            .values()
            .find(|t| t.name == name)
            .map(|t| t.arn.clone())
            .expect("target group")
    }

    /// The only listener's ARN.
    pub fn listener_arn(&self) -> String {
        self.state.listeners.keys().next().cloned().expect("listener")
    }

    /// Target health of a group.
    pub async fn health(&self, tg_name: &str) -> Vec<TargetHealthInfo> {
        self.dp.describe_target_health(&self.tg_arn(tg_name), &self.state).await
    }

    /// Waits (up to `secs`) until `pred` holds for the group's health.
    pub async fn wait_health(
        &self,
        tg_name: &str,
        secs: u64,
        pred: impl Fn(&[TargetHealthInfo]) -> bool,
    ) -> Vec<TargetHealthInfo> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let h = self.health(tg_name).await;
            if pred(&h) || tokio::time::Instant::now() > deadline {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let dp = self.dp.clone();
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move { dp.shutdown().await });
        }
    }
}

/// A response as tests look at it.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body as text.
    pub body: String,
}

impl Resp {
    /// The first body line: the demo backend's name.
    pub fn backend(&self) -> &str {
        self.body.lines().next().unwrap_or_default()
    }
}

/// A pooled HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// The sending side of an HTTP/2 client connection (requests without a body).
pub type H2Sender = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

/// An HTTP/2 client connection over `io` — a TCP stream (prior knowledge) or a TLS stream that
/// negotiated `h2`; its connection task runs until every sender is dropped.
pub async fn h2_client<I>(io: I) -> H2Sender
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    send
}

/// Sends a request with extra headers.
pub async fn send(
    c: &Client<HttpConnector, Empty<Bytes>>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Resp {
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let r = c.request(b.body(Empty::new()).unwrap()).await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = String::from_utf8_lossy(&r.into_body().collect().await.expect("body").to_bytes())
        .into_owned();
    Resp { status, headers, body }
}

/// GET with a fresh pooled client.
pub async fn get(url: &str) -> Resp {
    send(&client(), "GET", url, &[]).await
}

/// Writes raw bytes to `addr` and returns everything read until close or `timeout`.
pub async fn raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP response.
pub fn raw_status(resp: &str) -> u16 {
    resp.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The usual test template: one ALB named `name` (extra LB properties in `lb_props`, each line
/// indented 6 spaces), one `ip` target group named `name` (extra properties in `tg_props`, same
/// indentation) with `targets` (YAML list items indented 8), and a listener on `${PORT}` whose
/// default action forwards to the group.
pub fn one_group(name: &str, lb_props: &str, tg_props: &str, targets: &str) -> String {
    format!(
        r#"
Resources:
  LB:
    Type: AWS::ElasticLoadBalancingV2::LoadBalancer
    Properties:
      Name: {name}
{lb_props}
  TG:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties:
      Name: {name}
      Protocol: HTTP
      Port: 80
      TargetType: ip
{tg_props}
      Targets:
{targets}
  L:
    Type: AWS::ElasticLoadBalancingV2::Listener
    Properties:
      LoadBalancerArn: !Ref LB
      Port: ${{PORT}}
      Protocol: HTTP
      DefaultActions: [{{ Type: forward, TargetGroupArn: !Ref TG }}]
"#
    )
}

/// `LoadBalancerAttributes` / `TargetGroupAttributes` lines for [`one_group`].
pub fn attributes(key: &str, pairs: &[(&str, &str)]) -> String {
    let items: Vec<String> =
        pairs.iter().map(|(k, v)| format!("{{ Key: {k}, Value: \"{v}\" }}")).collect();
    format!("      {key}: [{}]", items.join(", "))
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// Creates `weir-test-{name}-{pid}`.
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("weir-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a self-signed certificate for `names` as `dir/NAME.pem`; returns its ARN and DER.
pub fn write_cert(dir: &std::path::Path, name: &str, names: &[&str]) -> (String, Vec<u8>) {
    let c =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("rcgen");
    std::fs::write(
        dir.join(format!("{name}.pem")),
        format!("{}{}", c.cert.pem(), c.key_pair.serialize_pem()),
    )
    .expect("write cert");
    (format!("arn:aws:acm:us-east-1:123456789012:certificate/{name}"), c.cert.der().to_vec())
}

/// Runs curl with `args` (5 s limit); returns (exit code, stdout).
pub fn curl(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl is installed");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A body of one data frame and then trailers.
pub struct DataThenTrailers(pub Option<Bytes>, pub Option<http::HeaderMap>);

impl hyper::body::Body for DataThenTrailers {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let f = match self.0.take() {
            Some(d) => Some(hyper::body::Frame::data(d)),
            None => self.1.take().map(hyper::body::Frame::trailers),
        };
        std::task::Poll::Ready(f.map(Ok))
    }
}

/// An h2c gRPC-style backend: every call is answered with a message naming `name`, then
/// `grpc-status: 0` in trailers; the ALB health-check path answers status 0 as well.
/// Returns its address; it serves until the test's runtime ends.
pub async fn grpc_backend(name: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        let path = req.uri().path().to_string();
                        // As gRPC servers do, refuse calls without `te: trailers`.
                        let te = req.headers().get("te").is_some_and(|v| v == "trailers");
                        let _ = req.into_body().collect().await;
                        if !te && path != "/AWS.ALB/healthcheck" {
                            let r = http::Response::builder()
                                .status(400)
                                .body(DataThenTrailers(None, None))
                                .unwrap();
                            return Ok::<_, std::convert::Infallible>(r);
                        }
                        let mut t = http::HeaderMap::new();
                        t.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let msg = format!("{name} {path}");
                        let mut framed = vec![0u8];
                        framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
                        framed.extend_from_slice(msg.as_bytes());
                        let r = http::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(DataThenTrailers(Some(Bytes::from(framed)), Some(t)))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(r)
                    },
                );
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// A TCP backend for NLB tests. On each connection it first writes one line,
/// `NAME peer ADDR` (or `NAME proxy SRC DST` after reading a PROXY v2 header when `proxy` is
/// on), then echoes everything it reads. Serves until the test's runtime ends.
pub async fn tcp_backend(name: &'static str, ip: &str, proxy: bool) -> SocketAddr {
    let l = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind tcp backend");
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, peer)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut have = 0;
                let line = if proxy {
                    loop {
                        match weir_l4::proxy_v2::decode(&buf[..have]) {
                            Ok(h) => {
                                let (src, dst) = h.addresses.expect("PROXY with addresses");
                                buf.copy_within(h.len..have, 0);
                                have -= h.len;
                                break format!("{name} proxy {src} {dst}\n");
                            }
                            Err(weir_l4::proxy_v2::DecodeError::Incomplete(_)) => {
                                match s.read(&mut buf[have..]).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => have += n,
                                }
                            }
                            Err(e) => {
                                let _ =
                                    s.write_all(format!("{name} bad-proxy {e}\n").as_bytes()).await;
                                return;
                            }
                        }
                    }
                } else {
                    format!("{name} peer {peer}\n")
                };
                if s.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
                if have > 0 && s.write_all(&buf[..have]).await.is_err() {
                    return;
                }
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A UDP backend: answers every datagram with `NAME PEER PAYLOAD`.
pub async fn udp_backend(name: &'static str, ip: &str) -> SocketAddr {
    let s = tokio::net::UdpSocket::bind((ip, 0)).await.expect("bind udp backend");
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, peer)) = s.recv_from(&mut buf).await {
            let reply = format!("{name} {peer} {}", String::from_utf8_lossy(&buf[..n]));
            let _ = s.send_to(reply.as_bytes(), peer).await;
        }
    });
    addr
}

/// A line-oriented TCP client of [`tcp_backend`] through a load balancer.
pub struct LineClient {
    /// The connection.
    pub stream: TcpStream,
    /// The backend's greeting line (`NAME peer ADDR` or `NAME proxy SRC DST`).
    pub greeting: String,
}

impl LineClient {
    /// Connects to `addr` (from `from`'s address when given) and reads the greeting.
    pub async fn connect(addr: SocketAddr, from: Option<&str>) -> std::io::Result<LineClient> {
        let sock = tokio::net::TcpSocket::new_v4()?;
        if let Some(ip) = from {
            sock.bind(SocketAddr::new(ip.parse().expect("ip"), 0))?;
        }
        let mut stream = sock.connect(addr).await?;
        let greeting = read_line(&mut stream).await?;
        Ok(LineClient { stream, greeting })
    }

    /// The backend's name.
    pub fn backend(&self) -> &str {
        self.greeting.split(' ').next().unwrap_or_default()
    }

    /// Sends `msg` and reads the echo.
    pub async fn echo(&mut self, msg: &str) -> std::io::Result<String> {
        self.stream.write_all(format!("{msg}\n").as_bytes()).await?;
        read_line(&mut self.stream).await
    }
}

async fn read_line(s: &mut TcpStream) -> std::io::Result<String> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no line"))??;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
        }
        if b[0] == b'\n' {
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        out.push(b[0]);
    }
}

/// An NLB template: a `network` load balancer in zones a and b (extra properties in
/// `lb_props`, indented 6), a target group with `tg_protocol` and `targets` (`[Id, Port]`
/// pairs; extra properties in `tg_props`, indented 6) and a listener on `${PORT}` with
/// `listener_protocol` (extra properties in `listener_props`, indented 6).
pub fn nlb_template(
    listener_protocol: &str,
    listener_props: &str,
    tg_protocol: &str,
    tg_props: &str,
    lb_props: &str,
    targets: &[SocketAddr],
) -> String {
    let targets: String = targets
        .iter()
        .map(|a| format!("        - {{ Id: \"{}\", Port: {} }}\n", a.ip(), a.port()))
        .collect();
    format!(
        r#"
Resources:
  LB:
    Type: AWS::ElasticLoadBalancingV2::LoadBalancer
    Properties:
      Name: nlb
      Type: network
      Subnets: [subnet-0000000000000000a, subnet-0000000000000000b]
{lb_props}
  TG:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties:
      Name: nlb-tg
      Protocol: {tg_protocol}
      Port: 80
      TargetType: ip
{tg_props}
      Targets:
{targets}
  L:
    Type: AWS::ElasticLoadBalancingV2::Listener
    Properties:
      LoadBalancerArn: !Ref LB
      Port: ${{PORT}}
      Protocol: {listener_protocol}
{listener_props}
      DefaultActions: [{{ Type: forward, TargetGroupArn: !Ref TG }}]
"#
    )
}
