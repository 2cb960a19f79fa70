//! The local-process launch provider: an instance is a process started from its launch
//! template's user data, given a free loopback port; its output goes to `DIR/ID.log`; it is
//! stopped with SIGTERM, then SIGKILL after a grace period, and (through util-linux `setpriv
//! --pdeathsig`, where installed) killed if Weir dies without stopping it.
//!
//! The user data (base64, as EC2 takes it) is a shell script run with `sh -c`. Placeholders
//! `{port}`, `{address}`, `{instance_id}`, `{zone}` and `{weir}` (the running `weir` binary) are
//! replaced first, and the same values are in the environment as `WEIR_PORT`, `WEIR_ADDRESS`,
//! `WEIR_INSTANCE_ID`, `WEIR_ZONE`. So `weir demo-backend --port {port} --name {instance_id}`
//! is a complete launch template.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use tokio::process::{Child, Command};

use crate::{BoxFuture, LaunchProvider, ProcessStatus};

/// How long a stopped instance has between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Why an instance could not be launched.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The launch template has no usable user data.
    #[error("the launch template has no user data naming a command to run: {0}")]
    NoCommand(String),
    /// The process could not be started.
    #[error("could not start the instance's command: {0}")]
    Spawn(#[from] std::io::Error),
}

/// What an instance runs, from `LaunchTemplateData`.
pub fn command_of(data: &serde_json::Value) -> Result<String, LaunchError> {
    let ud = data
        .get("UserData")
        .and_then(|v| v.as_str())
        .ok_or_else(|| LaunchError::NoCommand("UserData is missing".into()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(ud.trim())
        .map_err(|e| LaunchError::NoCommand(format!("UserData is not base64: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| LaunchError::NoCommand("UserData is not UTF-8 text".into()))?;
    if text.trim().is_empty() {
        return Err(LaunchError::NoCommand("UserData is empty".into()));
    }
    Ok(text)
}

/// An instance that was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launched {
    /// Its address.
    pub address: IpAddr,
    /// Its port.
    pub port: u16,
}

struct Running {
    child: Child,
    addr: SocketAddr,
}

/// Instances as local processes.
pub struct LocalProcesses {
    dir: PathBuf,
    running: Mutex<HashMap<String, Running>>,
}

impl std::fmt::Debug for LocalProcesses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProcesses").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Whether `setpriv` (util-linux) can set a parent-death signal here.
fn has_setpriv() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::process::Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn free_port(ip: IpAddr) -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

impl LocalProcesses {
    /// A provider writing instance output under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), running: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts instance `id` in `zone` running `script`.
    pub fn launch(&self, id: &str, zone: &str, script: &str) -> Result<Launched, LaunchError> {
        let address = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let port = free_port(address)?;
        let weir = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "weir".into());
        let script = script
            .replace("{port}", &port.to_string())
            .replace("{address}", &address.to_string())
            .replace("{instance_id}", id)
            .replace("{zone}", zone)
            .replace("{weir}", &weir);
        std::fs::create_dir_all(&self.dir)?;
        let log = std::fs::File::create(self.dir.join(format!("{id}.log")))?;
        // With util-linux's setpriv, the instance is killed if Weir itself dies without stopping
        // it (SIGKILL, a crash), instead of running on unowned.
        let mut cmd = if has_setpriv() {
            let mut c = Command::new("setpriv");
            c.args(["--pdeathsig", "KILL", "--", "sh", "-c"]);
            c
        } else {
            let mut c = Command::new("sh");
            c.arg("-c");
            c
        };
        let child = cmd
            .arg(&script)
            .env("WEIR_PORT", port.to_string())
            .env("WEIR_ADDRESS", address.to_string())
            .env("WEIR_INSTANCE_ID", id)
            .env("WEIR_ZONE", zone)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        self.lock().insert(id.to_string(), Running { child, addr: SocketAddr::new(address, port) });
        Ok(Launched { address, port })
    }

    /// Whether instance `id` runs and accepts connections.
    pub async fn status(&self, id: &str) -> ProcessStatus {
        let addr = {
            let mut running = self.lock();
            let Some(r) = running.get_mut(id) else { return ProcessStatus::Gone };
            if !matches!(r.child.try_wait(), Ok(None)) {
                running.remove(id);
                return ProcessStatus::Gone;
            }
            r.addr
        };
        match tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(_)) => ProcessStatus::Ready,
            _ => ProcessStatus::Starting,
        }
    }

    /// The process id of a running instance.
    pub fn pid(&self, id: &str) -> Option<u32> {
        self.lock().get(id).and_then(|r| r.child.id())
    }

    /// Stops instance `id`: SIGTERM to its process group, SIGKILL after a grace period.
    pub async fn stop(&self, id: &str) {
        let Some(mut r) = self.lock().remove(id) else { return };
        if let Some(pid) = r.child.id().and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(STOP_GRACE, r.child.wait()).await.is_err() {
            if let Some(pid) = r.child.id().and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = r.child.wait().await;
        }
    }

    /// Stops every instance.
    pub async fn stop_all(&self) {
        let ids: Vec<String> = self.lock().keys().cloned().collect();
        for id in ids {
            self.stop(&id).await;
        }
    }

    /// Ids of the running instances.
    pub fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

/// CPU seconds process `pid` has used (user + system), from `/proc/PID/stat`.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // Linux reports in USER_HZ, 100 on every architecture it supports.
    Some(ticks / 100.0)
}

impl LaunchProvider for LocalProcesses {
    fn launch(&self, id: &str, zone: &str, script: &str) -> Result<Launched, LaunchError> {
        LocalProcesses::launch(self, id, zone, script)
    }

    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ProcessStatus> {
        Box::pin(LocalProcesses::status(self, id))
    }

    fn cpu_seconds(&self, id: &str) -> Option<f64> {
        self.pid(id).and_then(process_cpu_seconds)
    }

    fn stop<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(LocalProcesses::stop(self, id))
    }

    fn stop_all(&self) -> BoxFuture<'_, ()> {
        Box::pin(LocalProcesses::stop_all(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn user_data_names_the_command() {
        let data = serde_json::json!({ "UserData": b64("exec sleep 5") });
        assert_eq!(command_of(&data).unwrap(), "exec sleep 5");
        assert!(command_of(&serde_json::json!({})).is_err());
        assert!(command_of(&serde_json::json!({ "UserData": "%%%" })).is_err());
        assert!(command_of(&serde_json::json!({ "UserData": b64("  ") })).is_err());
    }

    #[tokio::test]
    async fn a_process_is_ready_when_its_port_accepts_and_gone_when_stopped() {
        let dir = std::env::temp_dir().join(format!("weir-scale-local-{}", std::process::id()));
        let p = LocalProcesses::new(&dir);
        // A listener on the given port via the environment and the placeholder alike.
        let script = "test \"$WEIR_PORT\" = \"{port}\" && exec python3 -c 'import socket,os,time; s=socket.socket(); s.bind((\"127.0.0.1\", int(os.environ[\"WEIR_PORT\"]))); s.listen(); time.sleep(60)'";
        let l = p.launch("i-0000000000000001", "us-east-1a", script).unwrap();
        assert_ne!(l.port, 0);
        let mut status = ProcessStatus::Starting;
        for _ in 0..100 {
            status = p.status("i-0000000000000001").await;
            if status != ProcessStatus::Starting {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(status, ProcessStatus::Ready);
        p.stop("i-0000000000000001").await;
        assert_eq!(p.status("i-0000000000000001").await, ProcessStatus::Gone);
        // A command that exits is gone.
        p.launch("i-0000000000000002", "us-east-1b", "exit 3").unwrap();
        let mut gone = false;
        for _ in 0..100 {
            if p.status("i-0000000000000002").await == ProcessStatus::Gone {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
