//! Helpers shared by the binary's end-to-end tests (each test file uses some of them).
#![allow(dead_code)]

pub mod edge;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A child process killed and reaped when dropped.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command quietly; whether it succeeded.
pub fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command that must succeed.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("command runs");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Network namespaces could not be created: a failure under CI, a skip (said so) elsewhere.
pub fn netns_unavailable() {
    assert!(std::env::var_os("CI").is_none(), "CI must be able to create network namespaces");
    eprintln!("skipped: cannot create network namespaces (needs root)");
}

/// Starts `weir ARGS` and waits until it serves: see [`wait_until_up`].
pub fn start_weir<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (Kill, String, u32) {
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts");
    wait_until_up(child)
}

/// Waits until a weir started with piped stdout says it serves ("weir is up" from `up`, the API
/// line from `serve`), keeps draining its stdout, and returns the guard that kills it, what it
/// printed until then, and its pid. Fails if it exits first.
pub fn wait_until_up(mut child: Child) -> (Kill, String, u32) {
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped stdout");
    let guard = Kill(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = String::new();
    let mut up = false;
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("weir is up") || line.contains("weir serve: AWS API") {
            up = true;
            break;
        }
    }
    assert!(up, "weir did not come up: {seen}");
    // Keep reading so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (guard, seen, pid)
}

/// Whether `tool` is installed; under CI (which installs it) a missing tool is a failure.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "CI must install {tool}");
        eprintln!("skipped: {tool} is not installed");
    }
    found
}
