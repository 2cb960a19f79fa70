//! The real `weir` binary: `weir up examples/quickstart.yaml` serves what the README shows,
//! checked with curl; `weir validate` reports template errors clearly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::Kill;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

fn repo_file(rel: &str) -> String {
    format!("{}/../../{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// Starts `weir ARGS` (an `up`) and waits until it is up: see [`common::start_weir`].
fn weir_up(args: &[&str]) -> (Kill, String, u32) {
    common::start_weir(args)
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn quickstart_serves_what_the_readme_shows() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let https = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let certs = std::env::temp_dir().join(format!("weir-quickstart-certs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&certs);
    let (_guard, seen, _) = weir_up(&[
        "up",
        &repo_file("examples/quickstart.yaml"),
        "--parameter",
        &format!("ListenerPort={port}"),
        "--parameter",
        &format!("HttpsPort={https}"),
        "--api-address",
        "127.0.0.1:0",
        "--certificate-dir",
        certs.to_str().unwrap(),
    ]);
    assert!(seen.contains("DNS name: quickstart-"), "{seen}");
    let base = format!("http://127.0.0.1:{port}");

    // `weir up` reported the two groups' instances in service before saying it is up, and
    // the first requests reach both web instances (round robin), each named by its instance id.
    for group in ["web", "api"] {
        assert!(
            seen.contains(&format!("Auto Scaling group {group}: 2 instances in service")),
            "{seen}"
        );
    }
    let mut web = Vec::new();
    for _ in 0..4 {
        web.push(curl(&[&format!("{base}/")]).lines().next().unwrap_or_default().to_string());
    }
    web.sort();
    assert!(web.iter().all(|w| w.starts_with("web-i-")), "{web:?}");
    assert!(
        web[0] == web[1] && web[2] == web[3] && web[1] != web[2],
        "round robin over two: {web:?}"
    );
    assert!(curl(&[&format!("{base}/api/users")]).starts_with("api-i-"));
    let head = curl(&["-i", &format!("{base}/old/page?x=1")]);
    assert!(head.starts_with("HTTP/1.1 301"), "{head}");
    assert!(head.contains(&format!("location: http://127.0.0.1:{port}/new/page?x=1")), "{head}");
    assert_eq!(curl(&[&format!("{base}/ping")]), "pong");
    assert!(
        curl(&["-X", "POST", &format!("{base}/ping")]).starts_with("web-i-"),
        "POST /ping is not matched by the GET/HEAD rule"
    );
    // HTTPS with the demo certificate weir up created, over HTTP/2, sticky to one target.
    assert!(certs.join("quickstart.pem").is_file(), "the demo certificate was created");
    let out = curl(&["-k", "--http2", "-i", &format!("https://127.0.0.1:{https}/")]);
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    let cookie = out
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: AWSALB="))
        .and_then(|v| v.split(';').next())
        .expect("AWSALB cookie")
        .to_string();
    let sticky: Vec<String> = (0..4)
        .map(|_| {
            let b = curl(&[
                "-k",
                "-b",
                &format!("AWSALB={cookie}"),
                &format!("https://127.0.0.1:{https}/"),
            ]);
            b.lines().next().unwrap_or_default().to_string()
        })
        .collect();
    assert!(sticky.iter().all(|s| s == &sticky[0] && s.starts_with("web-")), "{sticky:?}");
    let _ = std::fs::remove_dir_all(&certs);
}

#[test]
fn validate_reports_errors_with_resource_names() {
    let dir = std::env::temp_dir().join(format!("weir-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "Resources:\n  Web:\n    Type: AWS::ElasticLoadBalancingV2::TargetGroup\n    Properties: { Name: web, Protocol: HTTP, Port: 80, HealthCheckIntervalSeconds: 5 }\n").unwrap();
    let out = weir().args(["validate", bad.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Web")
            && err.contains("Health check interval must be greater than the timeout"),
        "{err}"
    );
    let ok = weir().args(["validate", &repo_file("examples/quickstart.yaml")]).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout)
        .contains("stack quickstart: CREATE_COMPLETE, 13 resources"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn nlb_example_serves_tcp_and_tls_with_zonal_nodes() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tls = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let certs = std::env::temp_dir().join(format!("weir-nlb-certs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&certs);
    // On one event loop (the current-thread runtime, as the benchmark runs it).
    let child = weir()
        .env("TOKIO_WORKER_THREADS", "1")
        .args([
            "up",
            &repo_file("examples/nlb.yaml"),
            "--parameter",
            &format!("TcpPort={tcp}"),
            "--parameter",
            &format!("TlsPort={tls}"),
            "--api-address",
            "127.0.0.1:0",
            "--dns-address",
            "off",
            "--certificate-dir",
            certs.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("weir starts");
    let (_guard, seen, _) = common::wait_until_up(child);
    // The zone-a node's address, as printed: `tcp://127.0.1.N:PORT/`.
    let zone_a = seen
        .split_whitespace()
        .find(|w| w.starts_with("tcp://127.0.1.") && w.contains(&format!(":{tcp}/")))
        .expect("zone a node printed")
        .trim_start_matches("tcp://")
        .trim_end_matches('/')
        .to_string();

    let mut names = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let head = curl(&["-si", &format!("http://127.0.0.1:{tcp}/")]).to_ascii_lowercase();
        // TCP passthrough: the backend answers itself, and sees the client's address.
        assert!(head.contains("x-demo-peer: 127.0.0.1:"), "{head}");
        names.insert(head.lines().find(|l| l.starts_with("x-backend:")).unwrap_or("").to_string());
    }
    assert_eq!(names.len(), 2, "public address uses both zones: {names:?}");
    for _ in 0..6 {
        let body = curl(&[&format!("http://{zone_a}/")]);
        assert_eq!(body.lines().next(), Some("tcp-a"), "zone a's node stays in zone a");
    }
    let body = curl(&["-k", &format!("https://127.0.0.1:{tls}/")]);
    assert!(body.starts_with("tcp-"), "TLS terminated in front of the demo backends: {body}");
    let _ = std::fs::remove_dir_all(&certs);
}

#[test]
fn autoscaling_example_serves_from_launched_instances_and_stops_them() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (_guard, _, pid) = weir_up(&[
        "up",
        &repo_file("examples/autoscaling.yaml"),
        "--parameter",
        &format!("ListenerPort={port}"),
        "--api-address",
        "127.0.0.1:0",
        "--dns-address",
        "off",
    ]);
    // Two instances launched by the group answer through the ALB with their instance ids.
    let mut ids = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while ids.len() < 2 && Instant::now() < deadline {
        let body = curl(&[&format!("http://127.0.0.1:{port}/")]);
        if let Some(id) = body.split_whitespace().find(|w| w.starts_with("i-")) {
            ids.insert(id.to_string());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ids.len(), 2, "two instances serve: {ids:?}");
    let running = |id: &str| {
        Command::new("pgrep")
            .args(["-f", &format!("demo-backend .*--name {id}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    assert!(ids.iter().all(|id| running(id)));
    // Stopping weir stops its instances.
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ids.iter().any(|id| running(id)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!ids.iter().any(|id| running(id)), "instances outlived weir");
}

/// `weir up --data-dir`: the first run creates the stack, a later run with another parameter
/// updates it in place (the state persisted between them), a failing one rolls back and exits.
#[test]
fn up_creates_then_updates_the_stack_in_its_data_dir() {
    let dir = std::env::temp_dir().join(format!("weir-up-update-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let file = dir.join("site.yaml");
    std::fs::write(&file, format!("Parameters:\n  Body: {{ Type: String, Default: one }}\n  Priority: {{ Type: Number, Default: 5 }}\nResources:\n  LB:\n    Type: AWS::ElasticLoadBalancingV2::LoadBalancer\n  L:\n    Type: AWS::ElasticLoadBalancingV2::Listener\n    Properties:\n      LoadBalancerArn: !Ref LB\n      Port: {port}\n      DefaultActions: [{{ Type: fixed-response, FixedResponseConfig: {{ StatusCode: \"200\", MessageBody: !Ref Body }} }}]\n  R:\n    Type: AWS::ElasticLoadBalancingV2::ListenerRule\n    Properties:\n      ListenerArn: !Ref L\n      Priority: !Ref Priority\n      Conditions: [{{ Field: path-pattern, Values: [/x] }}]\n      Actions: [{{ Type: fixed-response, FixedResponseConfig: {{ StatusCode: \"204\" }} }}]\n")).unwrap();
    let data = dir.join("data");
    let base = [
        "up",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--api-address",
        "127.0.0.1:0",
        "--dns-address",
        "off",
    ];
    let (guard, seen, _) = weir_up(&base);
    assert!(seen.contains("stack site: CREATE_COMPLETE, 3 resources"), "{seen}");
    assert_eq!(curl(&[&format!("http://127.0.0.1:{port}/")]), "one");
    drop(guard);
    let mut args = base.to_vec();
    args.extend(["--parameter", "Body=two"]);
    let (guard, seen, _) = weir_up(&args);
    assert!(seen.contains("stack site: UPDATE_COMPLETE, 3 resources"), "{seen}");
    assert_eq!(curl(&[&format!("http://127.0.0.1:{port}/")]), "two");
    drop(guard);
    let mut args = base.to_vec();
    args.extend(["--parameter", "Body=three", "--parameter", "Priority=0"]);
    let out = weir().args(&args).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rolled back") && err.contains("Priority"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
