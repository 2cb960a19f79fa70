//! The Gateway Load Balancer end to end, in network namespaces the test creates:
//!
//! ```text
//!  client (10.1.0.x) ── gw ── server (10.2.0.2)        gw: `weir up examples/gwlb.yaml`, with
//!                        │                               policy routing that sends traffic from
//!                 appliance 1 (10.3.0.2)                 client and server into the TUN device
//!                 appliance 2 (10.4.0.2)                 gwe0 (the gateway endpoint)
//! ```
//!
//! Real TCP and UDP flows go from the client through the GWLB, GENEVE to an appliance
//! (`weir appliance`, or the Linux kernel's `geneve` device), back through the GWLB and on to
//! the server, and their replies take the same path. Checked: both directions of every flow
//! at one appliance, stickiness per tuple mode, an appliance's drop rule, failover when an
//! appliance dies, interop with the kernel. Needs root (CAP_NET_ADMIN) and `aws`; the kernel
//! test also needs a kernel with GENEVE (CONFIG_GENEVE) and is skipped, saying so, without.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{run, sh, Kill};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

fn helper() -> String {
    format!("{}/tests/gwlb_traffic.py", env!("CARGO_MANIFEST_DIR"))
}

/// The namespaces of one test, deleted (with everything in them) when dropped.
struct Net {
    prefix: String,
}

const ROLES: [&str; 5] = ["cl", "sv", "gw", "a1", "a2"];

impl Net {
    fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    fn create(tag: &str) -> Option<Net> {
        let net = Net { prefix: format!("wg{}{tag}-", std::process::id() % 100_000) };
        if !sh(&["ip", "netns", "add", &net.ns("cl")]) {
            return None;
        }
        for role in &ROLES[1..] {
            run(&["ip", "netns", "add", &net.ns(role)]);
        }
        for role in ROLES {
            run(&["ip", "-n", &net.ns(role), "link", "set", "lo", "up"]);
        }
        let gw = net.ns("gw");
        for (role, inner, outer, subnet) in [
            ("cl", "c0", "c1", 1),
            ("sv", "s0", "s1", 2),
            ("a1", "a0", "a1", 3),
            ("a2", "b0", "b1", 4),
        ] {
            let ns = net.ns(role);
            run(&[
                "ip", "link", "add", inner, "netns", &ns, "type", "veth", "peer", "name", outer,
                "netns", &gw,
            ]);
            run(&["ip", "-n", &ns, "addr", "add", &format!("10.{subnet}.0.2/24"), "dev", inner]);
            run(&["ip", "-n", &gw, "addr", "add", &format!("10.{subnet}.0.1/24"), "dev", outer]);
            run(&["ip", "-n", &ns, "link", "set", inner, "up"]);
            run(&["ip", "-n", &gw, "link", "set", outer, "up"]);
            run(&["ip", "-n", &ns, "route", "add", "default", "via", &format!("10.{subnet}.0.1")]);
        }
        // More client addresses, for the 3- and 2-tuple modes.
        for host in 10..=49 {
            run(&[
                "ip",
                "-n",
                &net.ns("cl"),
                "addr",
                "add",
                &format!("10.1.0.{host}/24"),
                "dev",
                "c0",
            ]);
        }
        // The gateway namespace routes client and server traffic into the endpoint, and what
        // comes out of the endpoint by the main table.
        net.sysctl(
            "gw",
            &[
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ],
        );
        run(&["ip", "-n", &gw, "tuntap", "add", "dev", "gwe0", "mode", "tun"]);
        run(&["ip", "-n", &gw, "link", "set", "gwe0", "up"]);
        run(&["ip", "-n", &gw, "route", "add", "default", "dev", "gwe0", "table", "100"]);
        for from in ["c1", "s1"] {
            run(&["ip", "-n", &gw, "rule", "add", "iif", from, "lookup", "100"]);
        }
        Some(net)
    }

    fn sysctl(&self, role: &str, settings: &[&str]) {
        let mut args = vec!["ip", "netns", "exec"];
        let ns = self.ns(role);
        args.push(&ns);
        args.extend(["sysctl", "-qw"]);
        args.extend_from_slice(settings);
        run(&args);
    }

    fn cmd(&self, role: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(role)]).args(args);
        c
    }

    fn spawn(&self, role: &str, args: &[&str]) -> Kill {
        Kill(
            self.cmd(role, args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("process starts"),
        )
    }

    fn python(&self, role: &str, args: &[&str]) -> Kill {
        let h = helper();
        let mut v = vec!["python3", h.as_str()];
        v.extend_from_slice(args);
        self.spawn(role, &v)
    }

    /// Runs flows (`udp|tcp SRC SPORT DST DPORT COUNT` lines) from the client; returns how
    /// many messages of each came back.
    fn flows(&self, lines: &[String]) -> Vec<u32> {
        let h = helper();
        let mut child = self
            .cmd("cl", &["python3", &h, "batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("client starts");
        child.stdin.take().unwrap().write_all(lines.join("\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let counts: Vec<u32> =
            String::from_utf8_lossy(&out.stdout).lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(counts.len(), lines.len());
        counts
    }

    /// The flows an appliance saw: (proto, src, dst) -> (returned, dropped).
    fn seen(&self, role: &str, ip: &str) -> HashMap<(u8, String, String), (u64, u64)> {
        let out = self
            .cmd(role, &["python3", &helper(), "get", &format!("http://{ip}:8080/flows")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (
                    (f[0].parse().unwrap(), f[1].to_string(), f[2].to_string()),
                    (f[3].parse().unwrap(), f[4].parse().unwrap()),
                )
            })
            .collect()
    }

    fn aws(&self, args: &[&str]) -> String {
        self.aws_service("elbv2", args)
    }

    fn aws_service(&self, service: &str, args: &[&str]) -> String {
        let out = self
            .cmd(
                "gw",
                &[
                    "aws",
                    "--endpoint-url",
                    "http://127.0.0.1:9400",
                    "--region",
                    "us-east-1",
                    "--output",
                    "text",
                    service,
                ],
            )
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "weir")
            .env("AWS_SECRET_ACCESS_KEY", "weir")
            .env("AWS_PAGER", "")
            .output()
            .expect("aws runs");
        assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Starts `weir up examples/gwlb.yaml` in the gateway namespace and waits until it serves.
    fn weir(&self, params: &[&str]) -> Kill {
        let template = format!("{}/../../examples/gwlb.yaml", env!("CARGO_MANIFEST_DIR"));
        let mut args = vec![
            WEIR,
            "up",
            &template,
            "--api-address",
            "127.0.0.1:9400",
            "--dns-address",
            "off",
            "--metrics-interval-seconds",
            "1",
        ];
        for p in params {
            args.extend(["-p", p]);
        }
        let child =
            self.cmd("gw", &args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        common::wait_until_up(child).0
    }

    /// The ARN of the template's target group of appliances.
    fn appliances_arn(&self) -> String {
        self.aws(&[
            "describe-target-groups",
            "--names",
            "appliances",
            "--query",
            "TargetGroups[0].TargetGroupArn",
        ])
    }

    fn wait_healthy(&self, tg: &str, want: usize) {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let states = self.aws(&[
                "describe-target-health",
                "--target-group-arn",
                tg,
                "--query",
                "TargetHealthDescriptions[].TargetHealth.State",
            ]);
            if states.split_whitespace().filter(|s| *s == "healthy").count() == want {
                return;
            }
            assert!(Instant::now() < deadline, "appliances not healthy: {states}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for role in ROLES {
            sh(&["ip", "netns", "del", &self.ns(role)]);
        }
    }
}

fn skip_without_root(tag: &str) -> Option<Net> {
    let net = Net::create(tag);
    if net.is_none() {
        common::netns_unavailable();
    }
    net
}

const SERVER: &str = "10.2.0.2";

fn line(proto: &str, src: &str, sport: u16, dport: u16, count: u32) -> String {
    format!("{proto} {src} {sport} {SERVER} {dport} {count}")
}

/// Which appliance (1 or 2) saw flow `proto src:sport <-> server:dport`, checking that both
/// directions were seen there and nowhere else.
fn appliance_of(
    a1: &HashMap<(u8, String, String), (u64, u64)>,
    a2: &HashMap<(u8, String, String), (u64, u64)>,
    proto: u8,
    src: &str,
    sport: u16,
    dport: u16,
) -> u8 {
    let fwd = (proto, format!("{src}:{sport}"), format!("{SERVER}:{dport}"));
    let back = (proto, fwd.2.clone(), fwd.1.clone());
    let at = |m: &HashMap<_, _>| (m.contains_key(&fwd), m.contains_key(&back));
    match (at(a1), at(a2)) {
        ((true, true), (false, false)) => 1,
        ((false, false), (true, true)) => 2,
        other => {
            panic!("flow {fwd:?}: seen at appliance 1 {:?}, appliance 2 {:?}", other.0, other.1)
        }
    }
}

#[test]
fn gwlb_flows_through_appliances_with_stickiness_drop_rules_and_failover() {
    let Some(net) = skip_without_root("t") else { return };
    let _servers = [
        net.python("sv", &["udp-echo", SERVER, "5000"]),
        net.python("sv", &["udp-echo", SERVER, "5001"]),
        net.python("sv", &["tcp-echo", SERVER, "7000"]),
    ];
    let appliance = |role: &str, ip: &str| {
        net.spawn(
            role,
            &[
                WEIR,
                "appliance",
                "--listen",
                &format!("{ip}:6081"),
                "--health-address",
                &format!("{ip}:8080"),
                "--drop",
                "udp:5001",
            ],
        )
    };
    let mut a1 = Some(appliance("a1", "10.3.0.2"));
    let _a2 = appliance("a2", "10.4.0.2");
    let _weir = net.weir(&["Appliance1=10.3.0.2", "Appliance2=10.4.0.2"]);
    let tg = net.appliances_arn();
    net.wait_healthy(&tg, 2);

    // 5-tuple (default): every flow's both directions at one appliance, flows spread over both.
    let mut lines: Vec<String> =
        (41000..41020).map(|p| line("udp", "10.1.0.2", p, 5000, 3)).collect();
    lines.extend((42000..42008).map(|p| line("tcp", "10.1.0.2", p, 7000, 3)));
    assert!(net.flows(&lines).iter().all(|&n| n == 3), "every message of every flow came back");
    let (s1, s2) = (net.seen("a1", "10.3.0.2"), net.seen("a2", "10.4.0.2"));
    let mut used = HashSet::new();
    for p in 41000..41020 {
        used.insert(appliance_of(&s1, &s2, 17, "10.1.0.2", p, 5000));
    }
    for p in 42000..42008 {
        used.insert(appliance_of(&s1, &s2, 6, "10.1.0.2", p, 7000));
    }
    assert_eq!(used.len(), 2, "28 flows, one appliance");

    // The appliances drop UDP to port 5001: nothing comes back, and the drops are counted.
    assert_eq!(net.flows(&[line("udp", "10.1.0.2", 43000, 5001, 3)]), vec![0]);
    let key = (17u8, "10.1.0.2:43000".to_string(), format!("{SERVER}:5001"));
    let dropped: u64 = [net.seen("a1", "10.3.0.2"), net.seen("a2", "10.4.0.2")]
        .iter()
        .filter_map(|m| m.get(&key).map(|c| c.1))
        .sum();
    assert_eq!(dropped, 3);

    // 3-tuple, then 2-tuple: every flow between a pair of addresses at one appliance (for the
    // 3-tuple, per protocol), pairs spread over both appliances.
    for (stickiness, hosts, base) in [
        ("source_ip_dest_ip_proto", 10..=29u8, 44000u16),
        ("source_ip_dest_ip", 30..=49u8, 45000u16),
    ] {
        net.aws(&[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg,
            "--attributes",
            "Key=stickiness.enabled,Value=true",
            &format!("Key=stickiness.type,Value={stickiness}"),
        ]);
        let mut lines = Vec::new();
        for h in hosts.clone() {
            let src = format!("10.1.0.{h}");
            lines.extend((base..base + 4).map(|p| line("udp", &src, p, 5000, 2)));
            lines.extend((base + 100..base + 102).map(|p| line("tcp", &src, p, 7000, 2)));
        }
        assert!(net.flows(&lines).iter().all(|&n| n == 2), "{stickiness}: all messages back");
        let (s1, s2) = (net.seen("a1", "10.3.0.2"), net.seen("a2", "10.4.0.2"));
        let mut per_pair = HashSet::new();
        for h in hosts {
            let src = format!("10.1.0.{h}");
            let udp: HashSet<u8> =
                (base..base + 4).map(|p| appliance_of(&s1, &s2, 17, &src, p, 5000)).collect();
            let tcp: HashSet<u8> = (base + 100..base + 102)
                .map(|p| appliance_of(&s1, &s2, 6, &src, p, 7000))
                .collect();
            assert_eq!(udp.len(), 1, "{stickiness}: UDP flows of {src} split: {udp:?}");
            assert_eq!(tcp.len(), 1, "{stickiness}: TCP flows of {src} split: {tcp:?}");
            if stickiness == "source_ip_dest_ip" {
                assert_eq!(udp, tcp, "2-tuple: TCP and UDP of {src} on different appliances");
            }
            per_pair.extend(udp);
        }
        assert_eq!(per_pair.len(), 2, "{stickiness}: 20 address pairs, one appliance");
    }

    // Failover: with `rebalance`, a flow on an appliance that dies moves to the other once
    // health checks mark it unhealthy; new flows go to the survivor.
    net.aws(&[
        "modify-target-group-attributes",
        "--target-group-arn",
        &tg,
        "--attributes",
        "Key=stickiness.enabled,Value=false",
        "Key=target_failover.on_unhealthy,Value=rebalance",
        "Key=target_failover.on_deregistration,Value=rebalance",
    ]);
    // Probe flows; the stream continues one that is on appliance 1.
    let probes: Vec<String> = (46000..46020).map(|p| line("udp", "10.1.0.2", p, 5000, 1)).collect();
    assert!(net.flows(&probes).iter().all(|&n| n == 1));
    let s1 = net.seen("a1", "10.3.0.2");
    let port = (46000..46020)
        .find(|&p| s1.contains_key(&(17, format!("10.1.0.2:{p}"), format!("{SERVER}:5000"))))
        .expect("some probe flow on appliance 1");
    let h = helper();
    let port_s = port.to_string();
    let mut stream = net
        .cmd("cl", &["python3", &h, "stream", "10.1.0.2", &port_s, SERVER, "5000", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    drop(a1.take()); // appliance 1 dies
    let out = stream.stdout.take().unwrap();
    let results: Vec<String> = BufReader::new(out).lines().map_while(Result::ok).collect();
    let _ = stream.wait();
    assert!(results.len() > 100, "stream ran: {} messages", results.len());
    assert!(results[..20].iter().all(|r| r == "ok"), "flow worked before the failure");
    assert!(results.iter().any(|r| r == "lost"), "the dead appliance lost some messages");
    let tail = &results[results.len() - 50..];
    assert!(tail.iter().all(|r| r == "ok"), "flow failed over to appliance 2: {tail:?}");
    let s2 = net.seen("a2", "10.4.0.2");
    assert!(s2.contains_key(&(17, format!("10.1.0.2:{port}"), format!("{SERVER}:5000"))));
    let lines: Vec<String> = (47000..47010).map(|p| line("udp", "10.1.0.2", p, 5000, 2)).collect();
    assert!(net.flows(&lines).iter().all(|&n| n == 2), "new flows go to the survivor");

    // CloudWatch: AWS/GatewayELB counted every flow the client opened (29 + 2 x 120 + 30).
    std::thread::sleep(Duration::from_secs(2));
    let lb_arn = net.aws(&[
        "describe-load-balancers",
        "--names",
        "gwlb",
        "--query",
        "LoadBalancers[0].LoadBalancerArn",
    ]);
    // The listener has no port or protocol, as AWS shows a GWLB's.
    let shown = net.aws(&[
        "describe-listeners",
        "--load-balancer-arn",
        &lb_arn,
        "--query",
        "Listeners[0].[Port, Protocol]",
    ]);
    assert_eq!(shown.split_whitespace().collect::<Vec<_>>(), ["None", "None"]);
    let dim = format!("Name=LoadBalancer,Value={}", lb_arn.split("loadbalancer/").nth(1).unwrap());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (start, end) = ((now - 600).to_string(), (now + 60).to_string());
    let stat = |metric: &str, statistic: &str| -> f64 {
        net.aws_service(
            "cloudwatch",
            &[
                "get-metric-statistics",
                "--namespace",
                "AWS/GatewayELB",
                "--metric-name",
                metric,
                "--dimensions",
                &dim,
                "--start-time",
                &start,
                "--end-time",
                &end,
                "--period",
                "60",
                "--statistics",
                statistic,
                "--query",
                &format!("Datapoints[].{statistic}"),
            ],
        )
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap())
        .fold(0.0, |a, b| if statistic == "Maximum" { a.max(b) } else { a + b })
    };
    assert!(stat("NewFlowCount", "Sum") >= 299.0, "NewFlowCount {}", stat("NewFlowCount", "Sum"));
    assert!(stat("ActiveFlowCount", "Maximum") >= 299.0);
    assert!(stat("ProcessedBytes", "Sum") > 0.0);
}

#[test]
fn kernel_geneve_device_as_the_appliance() {
    let Some(net) = skip_without_root("k") else { return };
    let a1 = net.ns("a1");
    if !sh(&[
        "ip",
        "-n",
        &a1,
        "link",
        "add",
        "gnv0",
        "type",
        "geneve",
        "id",
        "0",
        "remote",
        "10.3.0.1",
        "innerprotoinherit",
    ]) {
        eprintln!("skipped: this kernel cannot create geneve links (CONFIG_GENEVE is off)");
        return;
    }
    // The kernel decapsulates into gnv0, forwards, and routes back into gnv0, which
    // encapsulates towards the GWLB.
    run(&["ip", "-n", &a1, "link", "set", "gnv0", "up"]);
    net.sysctl(
        "a1",
        &[
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv4.conf.gnv0.rp_filter=0",
        ],
    );
    for dst in ["10.1.0.0/24", "10.2.0.0/24"] {
        run(&["ip", "-n", &a1, "route", "add", dst, "dev", "gnv0"]);
    }
    let _health = net.python("a1", &["http-ok", "10.3.0.2", "8080"]);
    let _servers = [
        net.python("sv", &["udp-echo", SERVER, "5000"]),
        net.python("sv", &["tcp-echo", SERVER, "7000"]),
    ];
    // Appliance 2's address has nothing behind it: unhealthy, so every flow uses the kernel.
    let _weir = net.weir(&["Appliance1=10.3.0.2", "Appliance2=10.4.0.2"]);
    let tg = net.appliances_arn();
    net.wait_healthy(&tg, 1);
    let mut lines: Vec<String> =
        (41000..41010).map(|p| line("udp", "10.1.0.2", p, 5000, 3)).collect();
    lines.extend((42000..42005).map(|p| line("tcp", "10.1.0.2", p, 7000, 3)));
    assert!(net.flows(&lines).iter().all(|&n| n == 3), "traffic through the kernel's geneve");
}
