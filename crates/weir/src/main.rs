//! `weir`: self-hosted Elastic Load Balancing. This binary is thin wiring: it parses the command
//! line, deploys templates through `weir-stack` and runs `weir-dataplane`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use weir_dataplane::{Dataplane, DataplaneConfig};
use weir_demo::DemoBackend;
use weir_model::State;

mod stack_cli;

#[derive(Parser, Debug)]
#[command(
    name = "weir",
    version,
    about = "Self-hosted Elastic Load Balancing: the AWS ELB API in front of a real data plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Binary upgrades (`docs/security.md`, hitless operations).
#[derive(clap::Args, Debug, Clone)]
struct HitlessArgs {
    /// Unix socket on which this process hands its listening sockets to a successor started
    /// with `--takeover` and the same socket.
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// Take the listening sockets over from the weir process serving --control-socket, then
    /// tell it to drain and exit: a binary upgrade that refuses no connection.
    #[arg(long, requires = "control_socket")]
    takeover: bool,
    /// Seconds a process that was taken over lets its open connections finish.
    #[arg(long, default_value_t = 30)]
    drain_seconds: u64,
}

impl HitlessArgs {
    /// The first step of a takeover, before anything is bound or the state is read: receive
    /// the predecessor's sockets. Returns the connection to say `READY` on.
    async fn take_over(&self) -> Result<Option<std::os::unix::net::UnixStream>> {
        let Some(path) = self.control_socket.clone() else {
            return Ok(None);
        };
        if !self.takeover {
            // A live predecessor's control socket is not stolen without --takeover.
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                bail!(
                    "another weir process serves the control socket {} (start with --takeover to take over from it)",
                    path.display()
                );
            }
            return Ok(None);
        }
        let shown = path.display().to_string();
        let (stream, n) =
            tokio::task::spawn_blocking(move || weir_sockets::handoff::take_over(&path))
                .await?
                .with_context(|| format!("taking over from the weir process on {shown}"))?;
        println!("weir: took over {n} listening sockets from the process on {shown}");
        Ok(Some(stream))
    }

    /// Once this process serves: tells the predecessor to drain and exit, closes sockets the new
    /// configuration does not use, and starts answering takeovers on the control socket.
    /// `upgraded` is notified when a successor has taken over from this process.
    fn serve_control(
        &self,
        predecessor: Option<std::os::unix::net::UnixStream>,
        api: &Arc<weir_api::Api>,
        upgraded: &Arc<tokio::sync::Notify>,
    ) -> Result<()> {
        if let Some(stream) = predecessor {
            weir_sockets::handoff::ready(stream).context("telling the old process to stop")?;
            let unused = weir_sockets::drop_unclaimed();
            println!("weir: the old process is draining ({unused} of its sockets unused here)");
        }
        if let Some(path) = &self.control_socket {
            let _ = std::fs::remove_file(path);
            let listener = tokio::net::UnixListener::bind(path)
                .with_context(|| format!("binding the control socket {}", path.display()))?;
            tokio::spawn(control_loop(listener, api.clone(), upgraded.clone()));
        }
        Ok(())
    }
}

/// Answers takeover requests on the control socket. While a successor reads the state, the
/// store is locked (no API call changes it); once the successor says `READY`, the lock is kept
/// for good and `upgraded` notified. A successor that fails before `READY` changes nothing.
async fn control_loop(
    listener: tokio::net::UnixListener,
    api: Arc<weir_api::Api>,
    upgraded: Arc<tokio::sync::Notify>,
) {
    use weir_sockets::handoff;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let Ok(mut s) = stream.into_std() else { continue };
        let asked = tokio::task::spawn_blocking(move || {
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
            handoff::read_request(&mut s).map(|t| (t, s))
        })
        .await;
        let Ok(Ok((true, mut s))) = asked else { continue };
        let store = api.store.lock().await;
        let done = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
            handoff::send_sockets(&mut s, &weir_sockets::open_sockets()?)?;
            // The successor may deploy a template and wait for its groups first.
            s.set_read_timeout(Some(std::time::Duration::from_secs(180)))?;
            Ok(handoff::wait_ready(&mut s))
        })
        .await;
        match done {
            Ok(Ok(true)) => {
                upgraded.notify_one();
                // Keep the store locked until this process exits.
                let _store = store;
                std::future::pending::<()>().await;
            }
            other => {
                eprintln!("weir: a takeover did not complete ({other:?}); serving on");
            }
        }
    }
}

/// Re-reads the template and updates the stack in place (SIGHUP on `weir up`). Listeners
/// take the new configuration as a snapshot swap: open connections are not disturbed. A
/// template that fails to deploy leaves everything as it was.
async fn reload(
    api: &weir_api::Api,
    dp: &Dataplane,
    file: &PathBuf,
    stack: &str,
    params: &BTreeMap<String, String>,
) -> Result<()> {
    let state = {
        let mut store = api.store.lock().await;
        let mut failure = None;
        let detail = format!("{stack} from {} (reload)", file.display());
        store.apply("DeployStack", &detail, now_ms(), |state| {
            if let Err(e) = load(file, stack, params, state) {
                failure = Some(e);
            }
            Ok(())
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        store.state().clone()
    };
    dp.apply(&state).await.context("applying the reloaded stack")
}

/// Ends serving: on a signal, stops everything; when taken over, stops accepting and lets open
/// connections finish for up to `--drain-seconds`.
async fn finish(
    stop: Stop,
    hitless: &HitlessArgs,
    api_task: tokio::task::JoinHandle<()>,
    dns: Option<tokio::task::JoinHandle<()>>,
    scaling: &weir_api::Scaling,
    dp: &Dataplane,
) {
    // The successor serves the API and DNS from the same sockets now.
    api_task.abort();
    if let Some(d) = dns {
        d.abort();
    }
    match stop {
        Stop::Signal => {
            println!("weir: shutting down");
            scaling.provider.stop_all().await;
            dp.shutdown().await;
        }
        Stop::Upgraded => {
            println!(
                "weir: taken over by a new process; draining for up to {} s",
                hitless.drain_seconds
            );
            scaling.provider.stop_all().await;
            dp.drain(std::time::Duration::from_secs(hitless.drain_seconds)).await;
            println!("weir: drained; exiting");
        }
    }
}

/// How the serving loop ended.
enum Stop {
    /// Ctrl-C or SIGTERM.
    Signal,
    /// A successor took over the sockets.
    Upgraded,
}

/// The data plane's protective limits (`docs/security.md`).
#[derive(clap::Args, Debug, Clone)]
struct LimitArgs {
    /// Most open client connections per listener; beyond it new ones are shed (HTTP: 503).
    #[arg(long, default_value_t = weir_model::Limits::default().max_connections)]
    max_connections: usize,
    /// Most new connections per second from one source address (IPv6: /64) per listener;
    /// 0 = no limit.
    #[arg(long, default_value_t = 0)]
    max_connection_rate_per_source: u32,
    /// Most requests per second from one source per ALB listener (beyond: 429); 0 = no limit.
    #[arg(long, default_value_t = 0)]
    max_request_rate_per_source: u32,
    /// Largest request head in bytes (beyond: 431).
    #[arg(long, default_value_t = weir_model::Limits::default().max_header_bytes)]
    max_header_bytes: usize,
    /// Largest request body in bytes (beyond: 413); 0 = no limit.
    #[arg(long, default_value_t = 0)]
    max_body_bytes: u64,
    /// Concurrent HTTP/2 streams per client connection.
    #[arg(long, default_value_t = weir_model::Limits::default().max_h2_streams)]
    max_h2_streams: u32,
    /// Seconds a client has to complete a TLS handshake.
    #[arg(long, default_value_t = 10)]
    handshake_timeout_seconds: u64,
}

impl LimitArgs {
    fn limits(&self) -> Result<weir_model::Limits> {
        let l = weir_model::Limits {
            max_connections: self.max_connections,
            max_connection_rate_per_source: self.max_connection_rate_per_source,
            max_request_rate_per_source: self.max_request_rate_per_source,
            max_header_bytes: self.max_header_bytes,
            max_body_bytes: self.max_body_bytes,
            max_h2_streams: self.max_h2_streams,
            handshake_timeout: std::time::Duration::from_secs(self.handshake_timeout_seconds),
            ..weir_model::Limits::default()
        };
        l.validate().map_err(anyhow::Error::msg)?;
        Ok(l)
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create (or update) a stack from a CloudFormation template and serve it until interrupted.
    Up {
        /// Template file (YAML or JSON).
        file: PathBuf,
        /// Stack name (default: the file's stem).
        #[arg(long)]
        stack_name: Option<String>,
        /// Template parameter, `Key=Value` (repeatable).
        #[arg(long = "parameter", short = 'p', value_name = "KEY=VALUE")]
        parameters: Vec<String>,
        /// Address internet-facing load balancers bind besides their zone nodes (repeatable).
        #[arg(long = "public-address", default_value = "127.0.0.1")]
        public_addresses: Vec<IpAddr>,
        /// Do not start the demo backends the template's `Metadata.Weir.DemoBackends` declares.
        #[arg(long)]
        no_demo_backends: bool,
        /// Where the AWS Query API listens.
        #[arg(long, default_value = "127.0.0.1:9400")]
        api_address: SocketAddr,
        /// Keep the state in this directory (as `weir serve` does): the stack is updated when it
        /// exists there already. Without it the state lives in memory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Directory certificate ARNs are looked up in (default: `certs/` beside the template).
        #[arg(long)]
        certificate_dir: Option<PathBuf>,
        /// Where the DNS responder for load balancer names listens (UDP); `off` disables it.
        #[arg(long, default_value = "127.0.0.1:8053")]
        dns_address: DnsAddress,
        /// Seconds between metric collections (CloudWatch datapoints are per minute).
        #[arg(long, default_value_t = 60, hide = true)]
        metrics_interval_seconds: u64,
        /// Where access logs are written (the `access_logs.s3.bucket` attribute names a
        /// directory in it).
        #[arg(long)]
        access_log_dir: Option<PathBuf>,
        /// Where Gateway Load Balancers send and receive GENEVE (UDP; bound only while a
        /// gateway load balancer has a listener).
        #[arg(long, default_value = "0.0.0.0:6081")]
        geneve_address: SocketAddr,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        hitless: HitlessArgs,
    },
    /// Serve the AWS Query API and the data plane, with state persisted under --data-dir.
    Serve {
        /// Where the AWS Query API listens.
        #[arg(long, default_value = "127.0.0.1:9400")]
        api_address: SocketAddr,
        /// Directory of the state database.
        #[arg(long, default_value = "./weir-data")]
        data_dir: PathBuf,
        /// Address internet-facing load balancers bind besides their zone nodes (repeatable).
        #[arg(long = "public-address", default_value = "127.0.0.1")]
        public_addresses: Vec<IpAddr>,
        /// AWS credentials file whose access keys the API accepts (SigV4). Keys in
        /// WEIR_ACCESS_KEY_ID / WEIR_SECRET_ACCESS_KEY are accepted too.
        #[arg(long)]
        credentials: Option<PathBuf>,
        /// Serve the API without authentication (local use only).
        #[arg(long, conflicts_with = "credentials")]
        no_auth: bool,
        /// Directory certificate ARNs are looked up in (default: `DATA_DIR/certs`).
        #[arg(long)]
        certificate_dir: Option<PathBuf>,
        /// Where the DNS responder for load balancer names listens (UDP); `off` disables it.
        #[arg(long, default_value = "127.0.0.1:8053")]
        dns_address: DnsAddress,
        /// Seconds between metric collections (CloudWatch datapoints are per minute).
        #[arg(long, default_value_t = 60, hide = true)]
        metrics_interval_seconds: u64,
        /// Where access logs are written (the `access_logs.s3.bucket` attribute names a
        /// directory in it).
        #[arg(long)]
        access_log_dir: Option<PathBuf>,
        /// Seconds over which Auto Scaling target tracking measures load.
        #[arg(long, default_value_t = 60, hide = true)]
        scaling_window_seconds: u64,
        /// Seconds target tracking must ask for less before it scales in.
        #[arg(long, default_value_t = 300, hide = true)]
        scale_in_after_seconds: u64,
        /// Where Gateway Load Balancers send and receive GENEVE (UDP; bound only while a
        /// gateway load balancer has a listener).
        #[arg(long, default_value = "0.0.0.0:6081")]
        geneve_address: SocketAddr,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        hitless: HitlessArgs,
    },
    /// Create a self-signed certificate (and key) in a certificate directory and print the ARN
    /// that HTTPS listeners use to name it.
    Certificate {
        /// Certificate name: the last part of its ARN and the file name (`NAME.pem`).
        name: String,
        /// DNS names it covers (repeatable; `*.example.com` for a wildcard).
        #[arg(long = "dns-name", required = true)]
        dns_names: Vec<String>,
        /// Directory to write to.
        #[arg(long, default_value = "certs")]
        certificate_dir: PathBuf,
    },
    /// Deploy, delete and inspect stacks of a running Weir through its CloudFormation API.
    Stack {
        #[command(subcommand)]
        command: StackCommand,
        /// The Weir API to talk to.
        #[arg(long, global = true, default_value = "127.0.0.1:9400")]
        api_address: SocketAddr,
    },
    /// Parse and deploy a template into an empty state without serving, and print the result.
    Validate {
        /// Template file (YAML or JSON).
        file: PathBuf,
        /// Template parameter, `Key=Value` (repeatable).
        #[arg(long = "parameter", short = 'p', value_name = "KEY=VALUE")]
        parameters: Vec<String>,
    },
    /// Run a GENEVE bounce appliance for a Gateway Load Balancer: returns every packet to the
    /// load balancer unchanged except those a drop rule matches.
    Appliance {
        /// Where GENEVE arrives.
        #[arg(long, default_value = "0.0.0.0:6081")]
        listen: SocketAddr,
        /// Where health checks are answered (HTTP 200; `/flows` lists the flows seen).
        #[arg(long)]
        health_address: Option<SocketAddr>,
        /// Drop inner packets of `tcp:PORT`, `udp:PORT`, `tcp`, `udp`, `icmp` or a protocol
        /// number (repeatable).
        #[arg(long = "drop", value_name = "RULE")]
        drop_rules: Vec<weir_l3::appliance::DropRule>,
    },
    /// Run a demo HTTP backend: answers with its name, has /health, can fail health or be slow.
    DemoBackend {
        /// Port to listen on.
        #[arg(long)]
        port: u16,
        /// Name to answer with.
        #[arg(long)]
        name: String,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        address: IpAddr,
        /// Status `/health` answers with at start.
        #[arg(long, default_value_t = 200)]
        health_status: u16,
        /// Delay of every ordinary response, in milliseconds.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
}

#[derive(Subcommand, Debug)]
enum StackCommand {
    /// Create the stack from FILE, or update it if it exists; print its events. Exits non-zero
    /// when the stack rolled back.
    Deploy {
        /// Template file (YAML or JSON).
        file: PathBuf,
        /// Stack name (default: the file's stem).
        #[arg(long)]
        stack_name: Option<String>,
        /// Template parameter, `Key=Value` (repeatable).
        #[arg(long = "parameter", short = 'p', value_name = "KEY=VALUE")]
        parameters: Vec<String>,
    },
    /// Delete a stack and every resource it created; print the events.
    Delete {
        /// Stack name.
        stack_name: String,
    },
    /// Print a stack's events, oldest first.
    Events {
        /// Stack name or id.
        stack_name: String,
    },
}

/// A stack name from a file name: CloudFormation names are letters, digits and hyphens.
fn stack_name_of(file: &std::path::Path) -> String {
    let stem = file.file_stem().map_or("stack".into(), |s| s.to_string_lossy().into_owned());
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    if name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name
    } else {
        format!("stack-{name}")
    }
}

/// `--dns-address`: a socket address, or `off`.
#[derive(Debug, Clone, Copy)]
struct DnsAddress(Option<SocketAddr>);

impl std::str::FromStr for DnsAddress {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if s == "off" {
            Ok(Self(None))
        } else {
            s.parse().map(|a| Self(Some(a)))
        }
    }
}

/// A metrics registry, with the history saved in `save` loaded when given.
fn load_metrics(save: Option<&std::path::Path>) -> Arc<weir_telemetry::Registry> {
    let registry = Arc::new(weir_telemetry::Registry::default());
    if let Some(p) = save {
        if let Err(e) = registry.load(p) {
            eprintln!("weir: metrics history in {} not loaded: {e}", p.display());
        }
    }
    registry
}

/// Every `every`: collects metrics from the data plane, evaluates alarms (running the scaling
/// policies they name), and saves the history to `save` when given.
fn start_metrics(
    dp: &Arc<Dataplane>,
    api: &Arc<weir_api::Api>,
    every: std::time::Duration,
    save: Option<PathBuf>,
    scaling: Arc<weir_api::Scaling>,
) {
    let (dp, api) = (dp.clone(), api.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = now_ms() / 1000;
            dp.collect_metrics(&api.metrics, now).await;
            let changed = api.evaluate_alarms(now).await;
            // Alarms that went into ALARM run the scaling policies among their actions.
            scaling.on_alarms(&api, &changed, now_ms()).await;
            if let Some(p) = &save {
                let (r, p) = (api.metrics.clone(), p.clone());
                // Off the runtime's worker threads: the file may be large.
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = r.save(&p) {
                        tracing::warn!(error = %e, path = %p.display(), "saving metrics failed");
                    }
                })
                .await;
            }
        }
    });
}

/// Runs Auto Scaling every second (instances as local processes, output under `dir`); returns
/// the handle that stops every instance at shutdown.
fn start_scaling(api: &Arc<weir_api::Api>, scaling: weir_api::Scaling) -> Arc<weir_api::Scaling> {
    let scaling = Arc::new(scaling);
    let (s, api) = (scaling.clone(), api.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            s.run_once(&api, now_ms()).await;
        }
    });
    scaling
}

/// Waits (at most `limit`) until every Auto Scaling group has its desired capacity in service
/// and healthy in its target groups, so what `weir up` prints as up answers at once; prints each
/// group's instances.
async fn wait_for_groups(api: &Arc<weir_api::Api>, limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let state = api.store.lock().await.state().clone();
        let mut waiting = Vec::new();
        for g in state.auto_scaling.groups.values() {
            let ready: Vec<&str> = g
                .instances
                .values()
                .filter(|i| {
                    i.lifecycle == weir_model::autoscaling::Lifecycle::InService && i.healthy
                })
                .map(|i| i.id.as_str())
                .collect();
            let mut healthy_everywhere = true;
            for arn in &g.target_group_arns {
                let health = api.dataplane.describe_target_health(arn, &state).await;
                // Instance targets by id, ip targets by address and port.
                let is_target = |id: &str, h: &weir_dataplane::TargetHealthInfo| {
                    h.id == id
                        || g.instances
                            .get(id)
                            .is_some_and(|i| i.address.to_string() == h.id && i.port == h.port)
                };
                let healthy = ready
                    .iter()
                    .filter(|id| {
                        health.iter().any(|h| {
                            is_target(id, h) && h.state == weir_dataplane::HealthState::Healthy
                        })
                    })
                    .count();
                healthy_everywhere &= healthy as u32 >= g.desired_capacity;
            }
            if (ready.len() as u32) < g.desired_capacity || !healthy_everywhere {
                waiting.push(g.name.clone());
            }
        }
        if waiting.is_empty() {
            for g in state.auto_scaling.groups.values() {
                let ids: Vec<&str> = g.instances.keys().map(String::as_str).collect();
                println!(
                    "  Auto Scaling group {}: {} instances in service ({})",
                    g.name,
                    ids.len(),
                    ids.join(", ")
                );
            }
            return;
        }
        if std::time::Instant::now() >= deadline {
            println!("  Auto Scaling groups still launching: {}", waiting.join(", "));
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Starts the DNS responder; a busy port is reported, not fatal (the load balancers still serve).
async fn start_dns(dns: DnsAddress, dp: &Arc<Dataplane>) -> Option<tokio::task::JoinHandle<()>> {
    let addr = dns.0?;
    match weir_dataplane::dns::serve(addr, dp.clone()).await {
        Ok((local, task)) => {
            println!("  DNS for *.{} on udp://{local}", weir_dataplane::dns::DOMAIN);
            Some(task)
        }
        Err(e) => {
            eprintln!("weir: DNS responder not started on {addr}: {e}");
            None
        }
    }
}

fn parse_params(raw: &[String]) -> Result<BTreeMap<String, String>> {
    raw.iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => bail!("parameter '{p}' must be KEY=VALUE"),
        })
        .collect()
}

/// Writes a self-signed certificate and its key to `DIR/NAME.pem`; returns the ARN naming it.
fn create_certificate(dir: &std::path::Path, name: &str, dns_names: Vec<String>) -> Result<String> {
    let arn = format!(
        "arn:aws:acm:{}:{}:certificate/{name}",
        weir_model::ids::DEFAULT_REGION,
        weir_model::ids::DEFAULT_ACCOUNT
    );
    weir_dataplane::tls::CertificateStore::name_of(&arn)?;
    let c = rcgen::generate_simple_self_signed(dns_names).context("generating the certificate")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, format!("{}{}", c.cert.pem(), c.key_pair.serialize_pem()))
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("weir: wrote {}", path.display());
    Ok(arn)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Creates stack `stack` from `file` in `state`, or updates it when `state` holds it already.
/// Fails (with `state` as it was) when the template is invalid or the stack rolled back.
fn load(
    file: &PathBuf,
    stack: &str,
    params: &BTreeMap<String, String>,
    state: &mut State,
) -> Result<(weir_stack::Template, weir_stack::Deployment)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let template = weir_stack::parse_template(&text)?;
    let req = weir_stack::Request {
        stack_name: stack.to_string(),
        template: text,
        parameters: params.clone(),
        now_ms: now_ms(),
        ..Default::default()
    };
    let mut next = state.clone();
    match weir_stack::deploy_stack(&mut next, &req)? {
        weir_stack::Outcome::Complete => {}
        weir_stack::Outcome::RolledBack(e) => {
            bail!("stack {stack} rolled back: {e}")
        }
    }
    *state = next;
    let deployment = weir_stack::deployment(state, stack).unwrap_or_default();
    Ok((template, deployment))
}

fn print_summary(state: &State, d: &weir_stack::Deployment, stack: &str) {
    let status = state.stacks.get(stack).map_or("", |s| s.status.as_str());
    println!("stack {stack}: {status}, {} resources", d.resources.len());
    for lb in state.load_balancers.values() {
        println!("  load balancer {} ({}, {})", lb.name, lb.lb_type.as_str(), lb.scheme.as_str());
        println!("    DNS name: {}", lb.dns_name());
        for l in state.listeners_of(&lb.arn) {
            println!(
                "    listener {}:{} rules: {}",
                l.protocol.as_str(),
                l.port,
                state.rules_of(&l.arn).len()
            );
        }
    }
    for tg in state.target_groups.values() {
        let mut targets: Vec<String> =
            tg.targets.iter().map(|t| format!("{}:{}", t.id, t.port)).collect();
        targets.extend(
            state
                .auto_scaling
                .groups
                .values()
                .filter(|g| g.target_group_arns.contains(&tg.arn))
                .map(|g| format!("the instances of Auto Scaling group {}", g.name)),
        );
        println!(
            "  target group {} ({}:{}, {}) targets: {}",
            tg.name,
            tg.protocol.as_str(),
            tg.port,
            tg.algorithm(),
            targets.join(", ")
        );
    }
    for (k, v) in &d.outputs {
        println!("  output {k} = {v}");
    }
}

/// Creates the self-signed certificates the template's `Metadata.Weir.DemoCertificates` names
/// (`{Name, DnsNames}`) in `dir`, unless they exist already.
fn ensure_demo_certificates(template: &weir_stack::Template, dir: &std::path::Path) -> Result<()> {
    let list = template
        .body
        .pointer("/Metadata/Weir/DemoCertificates")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    for c in list {
        let name = c
            .get("Name")
            .and_then(|v| v.as_str())
            .context("DemoCertificates entries need a Name")?;
        if dir.join(format!("{name}.pem")).is_file() || dir.join(format!("{name}.crt")).is_file() {
            continue;
        }
        let names: Vec<String> = c
            .get("DnsNames")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
            .unwrap_or_else(|| vec!["localhost".to_string()]);
        create_certificate(dir, name, names)?;
    }
    Ok(())
}

async fn start_demo_backends(template: &weir_stack::Template) -> Result<Vec<DemoBackend>> {
    let list = template
        .body
        .pointer("/Metadata/Weir/DemoBackends")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for b in list {
        let name = b.get("Name").and_then(|v| v.as_str()).unwrap_or("demo").to_string();
        let port = b
            .get("Port")
            .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
            .context("DemoBackends entries need a Port")?;
        let port = u16::try_from(port).context("DemoBackends port must be 1-65535")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let backend = DemoBackend::start(addr, &name)
            .await
            .with_context(|| format!("starting demo backend {name} on {addr}"))?;
        println!("  demo backend {name} on {addr}");
        out.push(backend);
    }
    Ok(out)
}

/// Serves the AWS API over `store` on `addr`; returns the bound address and the server task.
async fn start_api(
    store: weir_store::Store,
    dp: &Arc<Dataplane>,
    auth: Option<weir_api::sigv4::Credentials>,
    addr: SocketAddr,
    metrics: Arc<weir_telemetry::Registry>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>, Arc<weir_api::Api>)> {
    let api = Arc::new(weir_api::Api {
        store: tokio::sync::Mutex::new(store),
        dataplane: dp.clone(),
        auth,
        metrics,
    });
    let (addr, task) = weir_api::serve(api.clone(), addr)
        .await
        .with_context(|| format!("binding the API on {addr}"))?;
    Ok((addr, task, api))
}

/// Raises the soft limit on open files to the hard one: every proxied connection holds two
/// descriptors, and the default soft limit (1024) would cap a listener near 500 connections,
/// far below `--max-connections`.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: l.maximum, maximum: l.maximum });
    }
}

/// mimalloc instead of the C library's allocator. Every proxied request allocates (hyper's and
/// h2's structures as well as Weir's), and glibc's bins — their consolidation included — were
/// ~12 % of the instructions of an HTTP/2 request in profiles; mimalloc's per-thread free lists
/// make those allocations several times cheaper. Built with `no_thp`: asking for transparent
/// huge pages added ~8 MiB of resident memory at rest for nothing measurable.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The number of runtime worker threads asked for in `TOKIO_WORKER_THREADS` (tokio's own
/// variable; unset: one per CPU).
fn worker_threads() -> Option<usize> {
    std::env::var("TOKIO_WORKER_THREADS").ok()?.trim().parse().ok().filter(|&n: &usize| n > 0)
}

/// Builds the runtime and runs the command on it. One worker thread gets tokio's
/// current-thread scheduler — a single event loop like one HAProxy thread or NGINX worker,
/// without the work-stealing scheduler's bookkeeping (parking, waking idle workers, stealing)
/// on every turn; more get the multi-threaded one.
fn main() -> Result<()> {
    let mut builder = match worker_threads() {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build().context("cannot start the async runtime")?.block_on(run())
}

async fn run() -> Result<()> {
    raise_open_file_limit();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| "weir=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            api_address,
            data_dir,
            public_addresses,
            credentials,
            no_auth,
            certificate_dir,
            dns_address,
            metrics_interval_seconds,
            access_log_dir,
            scaling_window_seconds,
            scale_in_after_seconds,
            geneve_address,
            limits,
            hitless,
        } => {
            let limits = limits.limits()?;
            let predecessor = hitless.take_over().await?;
            let auth = if no_auth {
                None
            } else {
                let creds = match &credentials {
                    Some(p) => weir_api::sigv4::Credentials::from_file(p)
                        .with_context(|| format!("reading credentials {}", p.display()))?,
                    None => weir_api::sigv4::Credentials::default(),
                }
                .with_env();
                if creds.is_empty() {
                    bail!("no API credentials: pass --credentials FILE, set WEIR_ACCESS_KEY_ID and WEIR_SECRET_ACCESS_KEY, or run with --no-auth");
                }
                Some(creds)
            };
            let store = weir_store::Store::open(&data_dir)
                .with_context(|| format!("opening state in {}", data_dir.display()))?;
            let certificate_dir = certificate_dir.unwrap_or_else(|| data_dir.join("certs"));
            let dp = Dataplane::new(DataplaneConfig {
                public_addresses,
                bind_zone_nodes: true,
                certificate_dir,
                access_log_dir: access_log_dir.unwrap_or_else(|| data_dir.join("access-logs")),
                geneve_address,
                limits,
            });
            if let Err(e) = dp.apply(store.state()).await {
                eprintln!("weir: some listeners could not start: {e}");
            }
            let n = store.state().load_balancers.len();
            let auth_on = auth.is_some();
            let every = std::time::Duration::from_secs(metrics_interval_seconds.max(1));
            let save = data_dir.join("metrics.json");
            let metrics = load_metrics(Some(&save));
            let (addr, api_task, api) = start_api(store, &dp, auth, api_address, metrics).await?;
            let scaling = start_scaling(
                &api,
                weir_api::Scaling::with_timing(
                    data_dir.join("instances"),
                    scaling_window_seconds.max(1) * 1000,
                    scale_in_after_seconds * 1000,
                ),
            );
            start_metrics(&dp, &api, every, Some(save), scaling.clone());
            println!("weir serve: {n} load balancers loaded from {}", data_dir.display());
            println!(
                "weir serve: SigV4 authentication {}",
                if auth_on { "on" } else { "off (--no-auth)" }
            );
            println!("weir serve: AWS API on http://{addr}/ (aws --endpoint-url http://{addr} elbv2 ...)");
            let dns = start_dns(dns_address, &dp).await;
            let upgraded = Arc::new(tokio::sync::Notify::new());
            hitless.serve_control(predecessor, &api, &upgraded)?;
            let stop = tokio::select! {
                _ = shutdown_signal() => Stop::Signal,
                _ = upgraded.notified() => Stop::Upgraded,
            };
            finish(stop, &hitless, api_task, dns, &scaling, &dp).await;
        }
        Command::Up {
            file,
            stack_name,
            parameters,
            public_addresses,
            no_demo_backends,
            api_address,
            data_dir,
            certificate_dir,
            dns_address,
            metrics_interval_seconds,
            access_log_dir,
            geneve_address,
            limits,
            hitless,
        } => {
            let limits = limits.limits()?;
            let predecessor = hitless.take_over().await?;
            let stack = stack_name.unwrap_or_else(|| stack_name_of(&file));
            let mut store = match &data_dir {
                Some(dir) => weir_store::Store::open(dir)
                    .with_context(|| format!("opening state in {}", dir.display()))?,
                None => weir_store::Store::in_memory(State::default())?,
            };
            let params = parse_params(&parameters)?;
            let (template, deployment) = {
                let mut out = None;
                let detail = format!("{stack} from {}", file.display());
                let mut failure = None;
                store.apply("DeployStack", &detail, now_ms(), |state| {
                    match load(&file, &stack, &params, state) {
                        Ok(r) => out = Some(r),
                        Err(e) => failure = Some(e),
                    }
                    Ok(())
                })?;
                match (out, failure) {
                    (Some(r), _) => r,
                    (None, Some(e)) => return Err(e),
                    (None, None) => bail!("stack {stack} was not deployed"),
                }
            };
            let state = store.state().clone();
            let _backends =
                if no_demo_backends { Vec::new() } else { start_demo_backends(&template).await? };
            let certificate_dir = certificate_dir.unwrap_or_else(|| {
                file.parent().unwrap_or(std::path::Path::new(".")).join("certs")
            });
            ensure_demo_certificates(&template, &certificate_dir)?;
            let dp = Dataplane::new(DataplaneConfig {
                public_addresses,
                bind_zone_nodes: true,
                certificate_dir,
                access_log_dir: access_log_dir.unwrap_or_else(|| PathBuf::from("weir-access-logs")),
                geneve_address,
                limits,
            });
            dp.apply(&state).await.context("starting listeners")?;
            print_summary(&state, &deployment, &stack);
            if let Some(addr) = dp.gateway_address().await {
                for lb in state.load_balancers.values() {
                    if let Some(t) = state
                        .tags
                        .get(&lb.arn)
                        .and_then(|t| t.get(weir_dataplane::GATEWAY_ENDPOINT_TAG))
                    {
                        println!("  gateway {}: endpoints {t}, GENEVE on {addr}", lb.name);
                    }
                }
            }
            for l in state.listeners.values().filter(|l| l.protocol != weir_model::Protocol::Geneve)
            {
                let addrs: Vec<String> = dp
                    .listener_addrs(&l.arn)
                    .await
                    .iter()
                    .map(|a| format!("{}://{a}/", l.protocol.as_str().to_ascii_lowercase()))
                    .collect();
                println!("  serving listener port {} on {}", l.port, addrs.join(" "));
            }
            // The quickstart needs no set-up: `up` verifies signatures only when keys are configured.
            let creds = weir_api::sigv4::Credentials::default().with_env();
            let auth = (!creds.is_empty()).then_some(creds);
            let every = std::time::Duration::from_secs(metrics_interval_seconds.max(1));
            let (addr, api_task, api) =
                start_api(store, &dp, auth, api_address, load_metrics(None)).await?;
            let instances =
                std::env::temp_dir().join(format!("weir-instances-{}", std::process::id()));
            let scaling = start_scaling(&api, weir_api::Scaling::new(instances));
            start_metrics(&dp, &api, every, None, scaling.clone());
            wait_for_groups(&api, std::time::Duration::from_secs(60)).await;
            match &data_dir {
                Some(d) => println!("  AWS API on http://{addr}/ (state in {})", d.display()),
                None => println!("  AWS API on http://{addr}/ (state in memory)"),
            }
            let dns = start_dns(dns_address, &dp).await;
            let upgraded = Arc::new(tokio::sync::Notify::new());
            hitless.serve_control(predecessor, &api, &upgraded)?;
            println!("weir is up; press Ctrl-C to stop, send SIGHUP to reload {}", file.display());
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
            let stop = loop {
                tokio::select! {
                    _ = shutdown_signal() => break Stop::Signal,
                    _ = upgraded.notified() => break Stop::Upgraded,
                    _ = hup.recv() => match reload(&api, &dp, &file, &stack, &params).await {
                        Ok(()) => println!("weir: reloaded {}", file.display()),
                        Err(e) => eprintln!("weir: reload of {} failed, still serving the previous configuration: {e:#}", file.display()),
                    },
                }
            };
            finish(stop, &hitless, api_task, dns, &scaling, &dp).await;
        }
        Command::Validate { file, parameters } => {
            let stack = stack_name_of(&file);
            let mut state = State::default();
            let (_, deployment) = load(&file, &stack, &parse_params(&parameters)?, &mut state)?;
            print_summary(&state, &deployment, &stack);
        }
        Command::Stack { command, api_address } => {
            let client = stack_cli::Client::new(api_address);
            match command {
                StackCommand::Deploy { file, stack_name, parameters } => {
                    let stack = stack_name.unwrap_or_else(|| stack_name_of(&file));
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    stack_cli::deploy(&client, &stack, &text, &parse_params(&parameters)?).await?;
                }
                StackCommand::Delete { stack_name } => {
                    stack_cli::delete(&client, &stack_name).await?
                }
                StackCommand::Events { stack_name } => {
                    stack_cli::print_events(&client.events(&stack_name).await?);
                }
            }
        }
        Command::Certificate { name, dns_names, certificate_dir } => {
            let arn = create_certificate(&certificate_dir, &name, dns_names)?;
            println!("{arn}");
        }
        Command::Appliance { listen, health_address, drop_rules } => {
            println!(
                "weir appliance: GENEVE on {listen}{}{}",
                health_address.map(|h| format!(", health on http://{h}/")).unwrap_or_default(),
                if drop_rules.is_empty() {
                    String::new()
                } else {
                    format!(", dropping {drop_rules:?}")
                }
            );
            tokio::select! {
                r = weir_l3::appliance::run(listen, health_address, drop_rules) => {
                    r.with_context(|| format!("appliance on {listen}"))?
                }
                _ = shutdown_signal() => {}
            }
        }
        Command::DemoBackend { port, name, address, health_status, delay_ms } => {
            let b = DemoBackend::start(SocketAddr::new(address, port), &name).await?;
            b.set_health(health_status);
            b.set_delay_ms(delay_ms);
            println!("demo backend {name} listening on http://{}/", b.addr);
            shutdown_signal().await;
        }
    }
    Ok(())
}
