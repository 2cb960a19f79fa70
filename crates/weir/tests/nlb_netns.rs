//! Client IP preservation across network namespaces the test creates: a client namespace and a
//! backend namespace joined by veth pairs to the host, where the real `weir` binary serves an
//! NLB. With `preserve_client_ip.enabled` the backend sees the client's own address (the
//! connection leaves the load balancer from it, via IP_TRANSPARENT); without it, the load
//! balancer's. Needs root (CAP_NET_ADMIN); skipped elsewhere, but never under CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{run, sh, Kill};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The namespaces, links and routes of one test, removed when dropped.
struct Net {
    id: u32,
}

impl Net {
    fn client_ns(&self) -> String {
        format!("weir-c{}", self.id)
    }
    fn backend_ns(&self) -> String {
        format!("weir-b{}", self.id)
    }
    fn table(&self) -> String {
        (20_000 + self.id % 10_000).to_string()
    }
    fn veth(&self, side: char, end: char) -> String {
        format!("wv{side}{}{end}", self.id % 100_000)
    }

    /// Client 10.201.1.2 (host side 10.201.1.1), backend 10.201.2.2 (host side 10.201.2.1).
    fn create() -> Option<Net> {
        let net = Net { id: std::process::id() };
        if !sh(&["ip", "netns", "add", &net.client_ns()]) {
            return None;
        }
        run(&["ip", "netns", "add", &net.backend_ns()]);
        for (side, ns, subnet) in [('c', net.client_ns(), 1), ('b', net.backend_ns(), 2)] {
            let (host, inner) = (net.veth(side, 'h'), net.veth(side, 'n'));
            run(&["ip", "link", "add", &host, "type", "veth", "peer", "name", &inner]);
            run(&["ip", "link", "set", &inner, "netns", &ns]);
            run(&["ip", "addr", "add", &format!("10.201.{subnet}.1/24"), "dev", &host]);
            run(&["ip", "link", "set", &host, "up"]);
            let exec = |args: &[&str]| {
                let mut v = vec!["ip", "netns", "exec", ns.as_str()];
                v.extend_from_slice(args);
                run(&v);
            };
            exec(&["ip", "addr", "add", &format!("10.201.{subnet}.2/24"), "dev", &inner]);
            exec(&["ip", "link", "set", &inner, "up"]);
            exec(&["ip", "link", "set", "lo", "up"]);
            exec(&["ip", "route", "add", "default", "via", &format!("10.201.{subnet}.1")]);
        }
        // Replies from the backend to the client's address are delivered to the host's sockets
        // (the load balancer's transparent ones) instead of being forwarded.
        run(&["ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", &net.table()]);
        run(&["ip", "rule", "add", "iif", &net.veth('b', 'h'), "lookup", &net.table()]);
        Some(net)
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        sh(&["ip", "rule", "del", "iif", &self.veth('b', 'h'), "lookup", &self.table()]);
        sh(&["ip", "route", "flush", "table", &self.table()]);
        sh(&["ip", "netns", "del", &self.client_ns()]);
        sh(&["ip", "netns", "del", &self.backend_ns()]);
    }
}

fn template(port_on: u16, port_off: u16) -> String {
    let group = |name: &str, preserve: &str| {
        format!(
            r#"
  {name}:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties:
      Name: {name}
      Protocol: TCP
      Port: 8080
      TargetType: ip
      TargetGroupAttributes: [{{ Key: preserve_client_ip.enabled, Value: "{preserve}" }}]
      Targets: [{{ Id: 10.201.2.2, Port: 8080 }}]"#
        )
    };
    let listener = |name: &str, port: u16, tg: &str| {
        format!(
            r#"
  {name}:
    Type: AWS::ElasticLoadBalancingV2::Listener
    Properties:
      LoadBalancerArn: !Ref LB
      Port: {port}
      Protocol: TCP
      DefaultActions: [{{ Type: forward, TargetGroupArn: !Ref {tg} }}]"#
        )
    };
    format!(
        r#"
Resources:
  LB:
    Type: AWS::ElasticLoadBalancingV2::LoadBalancer
    Properties:
      Name: netns
      Type: network
      Subnets: [subnet-0000000000000000a]{}{}{}{}
"#,
        group("Keep", "true"),
        group("Nat", "false"),
        listener("On", port_on, "Keep"),
        listener("Off", port_off, "Nat"),
    )
}

#[test]
fn backend_in_another_namespace_sees_the_preserved_client_ip() {
    let Some(net) = Net::create() else {
        common::netns_unavailable();
        return;
    };
    let _backend = Kill(
        net.exec(
            &net.backend_ns(),
            &[
                env!("CARGO_BIN_EXE_weir"),
                "demo-backend",
                "--address",
                "10.201.2.2",
                "--port",
                "8080",
                "--name",
                "ns-backend",
            ],
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("backend starts"),
    );
    let (on, off) = (18_081, 18_082);
    let dir = std::env::temp_dir().join(format!("weir-netns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("netns.yaml");
    std::fs::write(&file, template(on, off)).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "up",
            file.to_str().unwrap(),
            "--public-address",
            "10.201.1.1",
            "--api-address",
            "127.0.0.1:0",
            "--dns-address",
            "off",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts");
    let (_weir, _, _) = common::wait_until_up(child);
    let peer = |port: u16| -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = net
                .exec(
                    &net.client_ns(),
                    &["curl", "-s", "-D", "-", "-o", "/dev/null", "--max-time", "3"],
                )
                .arg(format!("http://10.201.1.1:{port}/"))
                .output()
                .expect("curl runs");
            let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
            if let Some(l) = text.lines().find(|l| l.starts_with("x-demo-peer:")) {
                return l["x-demo-peer:".len()..].trim().to_string();
            }
            assert!(Instant::now() < deadline, "no answer through port {port}: {text}");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let kept = peer(on);
    assert!(kept.starts_with("10.201.1.2:"), "preserved client IP, got {kept}");
    let natted = peer(off);
    assert!(natted.starts_with("10.201.2.1:"), "load balancer's own address, got {natted}");
    let _ = std::fs::remove_dir_all(&dir);
    drop(net);
}
