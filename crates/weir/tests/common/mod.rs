//! Helpers shared by the binary's end-to-end tests (each test file uses some of them).
#![allow(dead_code)]

pub mod edge;

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
