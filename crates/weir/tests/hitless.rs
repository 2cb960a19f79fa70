//! Hitless operations against a live weir under continuous h2load load (HTTP/1.1 and HTTP/2
//! at once): a configuration reload (SIGHUP on `weir up`) and a binary upgrade (`--takeover`
//! on the control socket) each fail no request and refuse no connection; and `kill -9` of
//! `weir serve` loses no API change it acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::edge::*;
use tokio::io::AsyncWriteExt;

/// h2load against `addr` for `secs` seconds: HTTP/1.1 (`h1`) or HTTP/2 prior knowledge.
fn h2load(addr: SocketAddr, secs: u32, h1: bool) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new("h2load");
    if h1 {
        cmd.args(["--h1", "-c", "8"]);
    } else {
        cmd.args(["-c", "4", "-m", "4"]);
    }
    cmd.args(["-D", &secs.to_string(), &format!("http://{addr}/")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("h2load runs")
}

/// Waits for h2load and asserts that every request it made succeeded; returns how many.
async fn no_failures(run: tokio::process::Child, what: &str) -> u64 {
    let out = tokio::time::timeout(Duration::from_secs(60), run.wait_with_output())
        .await
        .expect("h2load stops by itself")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("{what}: {text}"));
    // requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
    let num = |label: &str| -> u64 {
        line.split(',')
            .find(|p| p.trim().ends_with(label))
            .and_then(|p| p.split_whitespace().rev().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("{what}: no '{label}' in {line}"))
    };
    let (succeeded, failed, errored, timeout) =
        (num("succeeded"), num("failed"), num("errored"), num("timeout"));
    assert_eq!((failed, errored, timeout), (0, 0, 0), "{what}: {line}");
    let codes = text.lines().find(|l| l.starts_with("status codes:")).unwrap_or_default();
    assert!(codes.contains(", 0 3xx, 0 4xx, 0 5xx"), "{what}: {codes}");
    assert!(succeeded >= 200, "{what}: only {succeeded} requests: {line}");
    succeeded
}

fn signal(pid: u32, sig: &str) {
    assert!(common::sh(&["kill", sig, &pid.to_string()]), "kill {sig} {pid}");
}

const RELOADED_RULE: &str = r#"
  Reloaded:
    Type: AWS::ElasticLoadBalancingV2::ListenerRule
    Properties:
      ListenerArn: !Ref Http
      Priority: 10
      Conditions: [{ Field: path-pattern, Values: [/reloaded] }]
      Actions:
        - Type: fixed-response
          FixedResponseConfig: { StatusCode: "200", ContentType: text/plain, MessageBody: reloaded }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request() {
    if !common::have("h2load") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("weir-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let original =
        std::fs::read_to_string(format!("{}/tests/attacks/edge.yaml", env!("CARGO_MANIFEST_DIR")))
            .unwrap();
    let template = dir.join("edge.yaml");
    std::fs::write(&template, &original).unwrap();
    let edge = Edge::start_template(template.to_str().unwrap(), &[], &[]).await;
    let h1 = h2load(edge.http, 8, true);
    let h2 = h2load(edge.http, 8, false);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A new rule arrives with the reload; everything else keeps serving.
    std::fs::write(&template, format!("{original}{RELOADED_RULE}")).unwrap();
    signal(edge.pid, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r =
            exchange(edge.http, b"GET /reloaded HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .await;
        if r.text.ends_with("reloaded") {
            break;
        }
        assert!(Instant::now() < deadline, "the reload did not take effect: {}", r.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A broken template is refused and the running configuration stays.
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::write(&template, "Resources: {Broken: {Type: AWS::Nope}}").unwrap();
    signal(edge.pid, "-HUP");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = exchange(edge.http, b"GET /reloaded HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await;
    assert!(r.text.ends_with("reloaded"), "a failed reload changed the configuration: {}", r.text);

    no_failures(h1, "HTTP/1.1 across reloads").await;
    no_failures(h2, "HTTP/2 across reloads").await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until `child` exits by itself.
async fn exits(child: &mut std::process::Child, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{what} did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_upgrade_under_load_fails_no_request() {
    if !common::have("h2load") {
        return;
    }
    let control = std::env::temp_dir().join(format!("weir-upgrade-{}.sock", std::process::id()));
    let control = control.to_str().unwrap().to_string();
    let mut edge = Edge::start(&["--control-socket", &control, "--drain-seconds", "20"], &[]).await;
    let h1 = h2load(edge.http, 10, true);
    let h2 = h2load(edge.http, 10, false);
    let l4 = h2load(edge.nlb, 10, true);
    // A keep-alive connection through the NLB, opened before the upgrade.
    let mut held = tokio::net::TcpStream::connect(edge.nlb).await.unwrap();
    let get = b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n";
    let answered = |b: &[u8]| String::from_utf8_lossy(b).starts_with("HTTP/1.1 200");
    held.write_all(get).await.unwrap();
    assert!(answered(&read_until_quiet(&mut held, Duration::from_millis(500)).await.0));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The new process takes the sockets; the old one drains and exits by itself.
    let mut args = edge.args.clone();
    args.push("--takeover".into());
    let (mut next, next_pid) = spawn_weir(&args).await;
    // While the old process drains, the NLB connection it carries keeps working.
    tokio::time::sleep(Duration::from_millis(500)).await;
    held.write_all(get).await.unwrap();
    let (out, _) = read_until_quiet(&mut held, Duration::from_secs(1)).await;
    assert!(
        answered(&out),
        "an NLB connection broke during the upgrade: {}",
        String::from_utf8_lossy(&out)
    );
    drop(held);
    // And the new one can be upgraded in turn, still under load. Each old process exits by
    // itself once its connections are done (busy HTTP/2 ones get GOAWAY at half the drain).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (third, third_pid) = spawn_weir(&args).await;
    exits(&mut edge.weir.0, Duration::from_secs(20), "the old process").await;
    exits(&mut next.0, Duration::from_secs(20), "the second process").await;

    no_failures(h1, "HTTP/1.1 across two upgrades").await;
    no_failures(h2, "HTTP/2 across two upgrades").await;
    no_failures(l4, "HTTP/1.1 through the NLB across two upgrades").await;
    // Only the newest process is left, serving the listeners and the API.
    assert_ne!(next_pid, third_pid);
    edge.pid = third_pid;
    edge.assert_serving("after the upgrades").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while edge.metric("RequestCount").await < 1.0 {
        assert!(Instant::now() < deadline, "the new process's API shows no requests");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(third);
    let _ = std::fs::remove_file(&control);
}

/// `POST` a Query API form to `api`; the status and body.
async fn api_call(api: SocketAddr, form: &str) -> (u16, String) {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    let r = exchange(api, req.as_bytes()).await;
    let status = r.statuses().first().copied().unwrap_or(0);
    (status, r.text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_api_change() {
    let dir = std::env::temp_dir().join(format!("weir-kill9-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let args: Vec<String> = [
        "serve",
        "--no-auth",
        "--dns-address",
        "off",
        "--data-dir",
        dir.to_str().unwrap(),
        "--api-address",
        &api.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (weir, pid) = spawn_weir(&args).await;
    // Writers create target groups as fast as they can; weir is killed mid-stream.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let acked = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("tg-{w}-{i}");
                let form = format!(
                    "Version=2015-12-01&Action=CreateTargetGroup&Name={name}&Protocol=HTTP&Port=80&TargetType=ip"
                );
                let (status, _) = api_call(api, &form).await;
                if status != 200 {
                    break;
                }
                acked.lock().unwrap().push(name);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(pid, "-9");
    for w in writers {
        let _ = w.await;
    }
    drop(weir);
    let acked = acknowledged.lock().unwrap().clone();
    assert!(acked.len() >= 10, "only {} writes before the kill", acked.len());

    // The restarted process has every acknowledged change (and a state that loads).
    let (weir, _) = spawn_weir(&args).await;
    let (status, text) =
        api_call(api, "Version=2015-12-01&Action=DescribeTargetGroups&PageSize=400").await;
    assert_eq!(status, 200, "{text}");
    let mut missing: Vec<&String> = acked
        .iter()
        .filter(|n| !text.contains(&format!("<TargetGroupName>{n}</TargetGroupName>")))
        .collect();
    if !missing.is_empty() {
        // DescribeTargetGroups pages; look the rest up by name.
        let mut still = Vec::new();
        for n in missing {
            let (s, t) = api_call(
                api,
                &format!("Version=2015-12-01&Action=DescribeTargetGroups&Names.member.1={n}"),
            )
            .await;
            if s != 200 || !t.contains(n.as_str()) {
                still.push(n);
            }
        }
        missing = still;
    }
    assert!(missing.is_empty(), "acknowledged but lost after kill -9: {missing:?}");
    drop(weir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_upgrade_keeps_the_state_and_the_api() {
    let dir = std::env::temp_dir().join(format!("weir-serve-upgrade-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let control = dir.join("weir.sock");
    std::fs::create_dir_all(&dir).unwrap();
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut args: Vec<String> =
        ["serve", "--no-auth", "--dns-address", "off", "--drain-seconds", "5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    args.extend(["--data-dir".into(), dir.display().to_string()]);
    args.extend(["--api-address".into(), api.to_string()]);
    args.extend(["--control-socket".into(), control.display().to_string()]);
    let create = |name: &str| {
        format!("Version=2015-12-01&Action=CreateTargetGroup&Name={name}&Protocol=HTTP&Port=80&TargetType=ip")
    };
    let (mut old, _) = spawn_weir(&args).await;
    assert_eq!(api_call(api, &create("before")).await.0, 200);
    // A second weir on the same control socket without --takeover is refused, clearly.
    let other = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--no-auth", "--dns-address", "off", "--api-address", "127.0.0.1:0"])
        .args(["--data-dir", dir.join("other").to_str().unwrap()])
        .args(["--control-socket", control.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("--takeover"), "{other:?}");
    args.push("--takeover".into());
    let (new, _) = spawn_weir(&args).await;
    exits(&mut old.0, Duration::from_secs(10), "the old weir serve").await;
    // The new process has the old one's state and takes changes through the same API socket.
    assert_eq!(api_call(api, &create("after")).await.0, 200);
    let (status, text) = api_call(api, "Version=2015-12-01&Action=DescribeTargetGroups").await;
    assert_eq!(status, 200, "{text}");
    for n in ["before", "after"] {
        assert!(text.contains(&format!("<TargetGroupName>{n}</TargetGroupName>")), "{n}: {text}");
    }
    drop(new);
    let _ = std::fs::remove_dir_all(&dir);
}
