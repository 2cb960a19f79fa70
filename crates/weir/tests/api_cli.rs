//! The ELBv2 Query API driven by the real `aws` CLI and boto3 against `weir serve`: a full
//! lifecycle with traffic, AWS error codes, pagination, and state surviving a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Proc(Child);
impl Drop for Proc {
    /// SIGTERM first, so that `weir` stops what it started (Auto Scaling instances), then SIGKILL.
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(args: &[&str], ready: &str) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let proc = Proc(child);
    let mut lines = BufReader::new(out).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) if l.contains(ready) => {
                // Keep draining stdout so the child never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines.by_ref() {});
                return proc;
            }
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    panic!("{args:?} did not print {ready:?}");
}

const KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// `weir serve` with SigV4 on, accepting KEY_ID/SECRET from a credentials file in `dir`.
fn serve(dir: &Path, api: u16) -> Proc {
    serve_with(dir, api, &[])
}

/// [`serve`] with more arguments.
fn serve_with(dir: &Path, api: u16, extra: &[&str]) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let creds = dir.join("credentials");
    std::fs::write(
        &creds,
        format!("[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    let api = format!("127.0.0.1:{api}");
    let mut args = vec![
        "serve",
        "--credentials",
        creds.to_str().unwrap(),
        "--data-dir",
        dir.to_str().unwrap(),
        "--api-address",
        &api,
    ];
    args.extend_from_slice(extra);
    start(&args, "AWS API on")
}

/// Runs `aws elbv2 ARGS` against the API; Ok(JSON) or Err(stderr).
fn aws(api: u16, args: &[&str]) -> Result<Value, String> {
    aws_as(api, args, KEY_ID, SECRET)
}

/// Runs `aws elbv2 ARGS` signed with the given key pair.
fn aws_as(api: u16, args: &[&str], key_id: &str, secret: &str) -> Result<Value, String> {
    aws_cli(api, "elbv2", args, key_id, secret)
}

/// Runs `aws SERVICE ARGS` against the API; Ok(JSON) or Err(stderr).
fn aws_cli(
    api: u16,
    service: &str,
    args: &[&str],
    key_id: &str,
    secret: &str,
) -> Result<Value, String> {
    let out = Command::new("aws")
        .args([
            "--endpoint-url",
            &format!("http://127.0.0.1:{api}"),
            "--region",
            "us-east-1",
            "--output",
            "json",
            service,
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", key_id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_PAGER", "")
        .output()
        .expect("the aws CLI is installed");
    if out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn ok(api: u16, args: &[&str]) -> Value {
    aws(api, args).unwrap_or_else(|e| panic!("aws {args:?}: {e}"))
}

fn err(api: u16, args: &[&str], code: &str) {
    match aws(api, args) {
        Ok(v) => panic!("aws {args:?} succeeded: {v}"),
        Err(e) => {
            assert!(e.contains(&format!("({code})")), "aws {args:?}: expected {code}, got {e}")
        }
    }
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    http_get_host(port, path, "api.test")
}

fn http_get_host(port: u16, path: &str, host: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

fn data_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-api-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn s(v: &Value, ptr: &str) -> String {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_else(|| panic!("{ptr} in {v}")).to_string()
}

#[test]
fn aws_cli_full_lifecycle_with_traffic_errors_and_restart() {
    let dir = data_dir("cli");
    let api = free_port();
    let listen = free_port();
    let backend_port = free_port();
    let _backend = start(
        &["demo-backend", "--port", &backend_port.to_string(), "--name", "api-backend"],
        "listening",
    );
    let server = serve(&dir, api);

    let lb = ok(
        api,
        &[
            "create-load-balancer",
            "--name",
            "cli-lb",
            "--subnets",
            "subnet-0000000000000000a",
            "subnet-0000000000000000b",
        ],
    );
    let lb_arn = s(&lb, "/LoadBalancers/0/LoadBalancerArn");
    assert_eq!(s(&lb, "/LoadBalancers/0/State/Code"), "provisioning");
    assert_eq!(s(&lb, "/LoadBalancers/0/AvailabilityZones/1/ZoneName"), "us-east-1b");
    let tg = ok(
        api,
        &[
            "create-target-group",
            "--name",
            "cli-tg",
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--target-type",
            "ip",
            "--health-check-path",
            "/health",
            "--health-check-interval-seconds",
            "5",
            "--health-check-timeout-seconds",
            "2",
            "--healthy-threshold-count",
            "2",
            "--matcher",
            "HttpCode=200-299",
        ],
    );
    let tg_arn = s(&tg, "/TargetGroups/0/TargetGroupArn");
    assert_eq!(s(&tg, "/TargetGroups/0/Matcher/HttpCode"), "200-299");
    ok(
        api,
        &[
            "register-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            &format!("Id=127.0.0.1,Port={backend_port}"),
        ],
    );
    let l = ok(
        api,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &listen.to_string(),
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
    );
    let l_arn = s(&l, "/Listeners/0/ListenerArn");
    let (status, body) = http_get(listen, "/hello");
    assert_eq!((status, body.lines().next().unwrap_or_default()), (200, "api-backend"));

    let r = ok(api, &["create-rule", "--listener-arn", &l_arn, "--priority", "10", "--conditions", "Field=path-pattern,Values=/teapot", "--actions", "Type=fixed-response,FixedResponseConfig={StatusCode=418,ContentType=text/plain,MessageBody=short and stout}"]);
    let r_arn = s(&r, "/Rules/0/RuleArn");
    assert_eq!(http_get(listen, "/teapot"), (418, "short and stout".to_string()));
    ok(
        api,
        &["modify-rule", "--rule-arn", &r_arn, "--conditions", "Field=path-pattern,Values=/kettle"],
    );
    assert_eq!(http_get(listen, "/kettle").0, 418);
    assert_eq!(http_get(listen, "/teapot").0, 200);
    let r2 = ok(
        api,
        &[
            "create-rule",
            "--listener-arn",
            &l_arn,
            "--priority",
            "20",
            "--conditions",
            "Field=host-header,Values=api.test",
            "--actions",
            "Type=fixed-response,FixedResponseConfig={StatusCode=204}",
        ],
    );
    let r2_arn = s(&r2, "/Rules/0/RuleArn");
    ok(
        api,
        &[
            "set-rule-priorities",
            "--rule-priorities",
            &format!("RuleArn={r_arn},Priority=30"),
            &format!("RuleArn={r2_arn},Priority=5"),
        ],
    );
    assert_eq!(http_get(listen, "/kettle").0, 204, "the host rule now comes first");
    let rules = ok(api, &["describe-rules", "--listener-arn", &l_arn]);
    let prios: Vec<&str> = rules["Rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Priority"].as_str().unwrap())
        .collect();
    assert_eq!(prios, vec!["5", "30", "default"]);

    let attrs = ok(
        api,
        &[
            "modify-load-balancer-attributes",
            "--load-balancer-arn",
            &lb_arn,
            "--attributes",
            "Key=idle_timeout.timeout_seconds,Value=120",
        ],
    );
    assert!(attrs["Attributes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["Key"] == "idle_timeout.timeout_seconds" && a["Value"] == "120"));
    ok(
        api,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=0",
        ],
    );

    // Errors, as AWS names them; none of them changes anything.
    err(
        api,
        &[
            "create-load-balancer",
            "--name",
            "cli-lb",
            "--subnets",
            "subnet-0000000000000000a",
            "subnet-0000000000000000b",
        ],
        "DuplicateLoadBalancerName",
    );
    err(
        api,
        &["create-target-group", "--name", "cli-tg", "--protocol", "HTTP", "--port", "80"],
        "DuplicateTargetGroupName",
    );
    err(
        api,
        &[
            "create-rule",
            "--listener-arn",
            &l_arn,
            "--priority",
            "5",
            "--conditions",
            "Field=path-pattern,Values=/x",
            "--actions",
            "Type=fixed-response,FixedResponseConfig={StatusCode=200}",
        ],
        "PriorityInUse",
    );
    err(
        api,
        &[
            "describe-target-health",
            "--target-group-arn",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/none/0000000000000000",
        ],
        "TargetGroupNotFound",
    );
    err(api, &["describe-listeners", "--listener-arns", &format!("{l_arn}0")], "ListenerNotFound");
    err(api, &["delete-rule", "--rule-arn", &format!("{r_arn}0")], "RuleNotFound");
    err(
        api,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &listen.to_string(),
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
        "DuplicateListener",
    );
    err(
        api,
        &[
            "modify-load-balancer-attributes",
            "--load-balancer-arn",
            &lb_arn,
            "--attributes",
            "Key=idle_timeout.timeout_seconds,Value=0",
        ],
        "ValidationError",
    );
    err(
        api,
        &[
            "create-target-group",
            "--name",
            "bad",
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--health-check-interval-seconds",
            "5",
            "--health-check-timeout-seconds",
            "6",
        ],
        "ValidationError",
    );
    err(
        api,
        &[
            "create-load-balancer",
            "--name",
            "x",
            "--subnets",
            "subnet-nope",
            "subnet-0000000000000000a",
        ],
        "SubnetNotFound",
    );
    err(api, &["delete-target-group", "--target-group-arn", &tg_arn], "ResourceInUse");

    // Pagination: PageSize and the NextMarker/Marker round trip.
    ok(
        api,
        &[
            "create-target-group",
            "--name",
            "cli-tg2",
            "--protocol",
            "HTTP",
            "--port",
            "8080",
            "--target-type",
            "ip",
        ],
    );
    let first = ok(api, &["describe-target-groups", "--page-size", "1"]);
    assert_eq!(first["TargetGroups"].as_array().unwrap().len(), 1);
    let marker = s(&first, "/NextMarker");
    let second = ok(api, &["describe-target-groups", "--page-size", "1", "--marker", &marker]);
    assert_eq!(second["TargetGroups"].as_array().unwrap().len(), 1);
    assert!(second.get("NextMarker").is_none());
    assert_ne!(
        first["TargetGroups"][0]["TargetGroupName"],
        second["TargetGroups"][0]["TargetGroupName"]
    );
    err(api, &["describe-target-groups", "--page-size", "401"], "ValidationError");

    // Health becomes healthy (interval 5 s, threshold 2).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut state = String::new();
    while Instant::now() < deadline {
        let h = ok(api, &["describe-target-health", "--target-group-arn", &tg_arn]);
        state = s(&h, "/TargetHealthDescriptions/0/TargetHealth/State");
        if state == "healthy" {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(state, "healthy");

    // Restart: the committed state is reloaded and served again.
    drop(server);
    let server = serve(&dir, api);
    let lbs = ok(api, &["describe-load-balancers"]);
    assert_eq!(s(&lbs, "/LoadBalancers/0/LoadBalancerArn"), lb_arn);
    assert_eq!(s(&lbs, "/LoadBalancers/0/State/Code"), "active");
    assert_eq!(http_get(listen, "/kettle").0, 204, "rules survive a restart");
    assert_eq!(
        http_get_host(listen, "/other", "www.test").1.lines().next().unwrap_or_default(),
        "api-backend"
    );
    let attrs = ok(api, &["describe-load-balancer-attributes", "--load-balancer-arn", &lb_arn]);
    assert!(attrs["Attributes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["Key"] == "idle_timeout.timeout_seconds" && a["Value"] == "120"));

    // Tear down.
    ok(
        api,
        &[
            "deregister-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            &format!("Id=127.0.0.1,Port={backend_port}"),
        ],
    );
    ok(api, &["delete-listener", "--listener-arn", &l_arn]);
    ok(api, &["delete-load-balancer", "--load-balancer-arn", &lb_arn]);
    ok(api, &["delete-load-balancer", "--load-balancer-arn", &lb_arn]);
    ok(api, &["delete-target-group", "--target-group-arn", &tg_arn]);
    assert_eq!(ok(api, &["describe-load-balancers"])["LoadBalancers"], serde_json::json!([]));
    assert!(
        TcpStream::connect(("127.0.0.1", listen)).is_err(),
        "the deleted listener no longer accepts"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn boto3_lifecycle() {
    let dir = data_dir("boto3");
    let api = free_port();
    let _server = serve(&dir, api);
    let script = format!("{}/tests/boto3_lifecycle.py", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .args([&script, &format!("http://127.0.0.1:{api}"), &free_port().to_string()])
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("boto3 lifecycle ok"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigv4_rejects_unsigned_unknown_and_forged_requests() {
    let dir = data_dir("auth");
    let api = free_port();
    let _server = serve(&dir, api);
    assert!(aws(api, &["describe-load-balancers"]).is_ok(), "correctly signed requests pass");
    let forged = aws_as(api, &["describe-load-balancers"], KEY_ID, "not-the-secret").unwrap_err();
    assert!(forged.contains("(SignatureDoesNotMatch)"), "{forged}");
    let unknown = aws_as(api, &["describe-load-balancers"], "AKIDUNKNOWN", SECRET).unwrap_err();
    assert!(unknown.contains("(InvalidClientTokenId)"), "{unknown}");
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-d",
            "Action=DescribeLoadBalancers&Version=2015-12-01",
            &format!("http://127.0.0.1:{api}/"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("<Code>MissingAuthenticationToken</Code>") && text.ends_with("403"),
        "{text}"
    );
    // A rejected request changes nothing.
    assert!(aws_as(
        api,
        &["create-target-group", "--name", "sneaky", "--protocol", "HTTP", "--port", "80"],
        KEY_ID,
        "bad"
    )
    .is_err());
    assert_eq!(ok(api, &["describe-target-groups"])["TargetGroups"], serde_json::json!([]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_refuses_to_start_without_credentials_or_no_auth() {
    let dir = data_dir("noauth");
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--data-dir", dir.to_str().unwrap(), "--api-address", "127.0.0.1:0"])
        .env_remove("WEIR_ACCESS_KEY_ID")
        .env_remove("WEIR_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API credentials"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn curl_headers(url: &str) -> String {
    let out = Command::new("curl").args(["-s", "-i", "--max-time", "5", url]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_lowercase()
}

#[test]
fn tags_policies_listener_attributes_and_subnets() {
    let dir = data_dir("more");
    let api = free_port();
    let listen = free_port();
    let _server = serve(&dir, api);
    let lb = ok(
        api,
        &[
            "create-load-balancer",
            "--name",
            "more",
            "--subnets",
            "subnet-0000000000000000a",
            "subnet-0000000000000000b",
            "--tags",
            "Key=env,Value=prod",
        ],
    );
    let lb_arn = s(&lb, "/LoadBalancers/0/LoadBalancerArn");
    let tags = ok(api, &["describe-tags", "--resource-arns", &lb_arn]);
    assert_eq!(
        tags["TagDescriptions"][0]["Tags"],
        serde_json::json!([{"Key": "env", "Value": "prod"}])
    );
    ok(api, &["add-tags", "--resource-arns", &lb_arn, "--tags", "Key=team,Value=edge"]);
    ok(api, &["remove-tags", "--resource-arns", &lb_arn, "--tag-keys", "env"]);
    let tags = ok(api, &["describe-tags", "--resource-arns", &lb_arn]);
    assert_eq!(
        tags["TagDescriptions"][0]["Tags"],
        serde_json::json!([{"Key": "team", "Value": "edge"}])
    );
    err(
        api,
        &["add-tags", "--resource-arns", &format!("{lb_arn}0"), "--tags", "Key=a,Value=b"],
        "LoadBalancerNotFound",
    );
    err(
        api,
        &["add-tags", "--resource-arns", &lb_arn, "--tags", "Key=aws:x,Value=b"],
        "ValidationError",
    );

    let pol = ok(api, &["describe-ssl-policies", "--names", "ELBSecurityPolicy-TLS13-1-2-2021-06"]);
    assert_eq!(pol["SslPolicies"][0]["SslProtocols"], serde_json::json!(["TLSv1.2", "TLSv1.3"]));
    assert_eq!(s(&pol, "/SslPolicies/0/Ciphers/0/Name"), "TLS_AES_128_GCM_SHA256");
    err(api, &["describe-ssl-policies", "--names", "NoSuchPolicy"], "SSLPolicyNotFound");
    let limits = ok(api, &["describe-account-limits"]);
    assert!(limits["Limits"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["Name"] == "condition-values-per-alb-rule" && l["Max"] == "5"));

    let l = ok(
        api,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &listen.to_string(),
            "--default-actions",
            "Type=fixed-response,FixedResponseConfig={StatusCode=200,MessageBody=hi}",
            "--tags",
            "Key=tier,Value=web",
        ],
    );
    let l_arn = s(&l, "/Listeners/0/ListenerArn");
    let attrs = ok(api, &["describe-listener-attributes", "--listener-arn", &l_arn]);
    assert!(attrs["Attributes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["Key"] == "routing.http.response.server.enabled" && a["Value"] == "true"));
    assert!(curl_headers(&format!("http://127.0.0.1:{listen}/")).contains("server: awselb/2.0"));
    ok(
        api,
        &[
            "modify-listener-attributes",
            "--listener-arn",
            &l_arn,
            "--attributes",
            "Key=routing.http.response.server.enabled,Value=false",
        ],
    );
    let h = curl_headers(&format!("http://127.0.0.1:{listen}/"));
    assert!(h.starts_with("http/1.1 200") && !h.contains("server:"), "{h}");
    assert_eq!(
        ok(api, &["describe-listener-certificates", "--listener-arn", &l_arn])["Certificates"],
        serde_json::json!([])
    );
    err(
        api,
        &[
            "add-listener-certificates",
            "--listener-arn",
            &l_arn,
            "--certificates",
            "CertificateArn=arn:aws:acm:us-east-1:123456789012:certificate/x",
        ],
        "InvalidConfigurationRequest",
    );
    assert_eq!(
        ok(api, &["describe-tags", "--resource-arns", &l_arn])["TagDescriptions"][0]["Tags"][0]
            ["Key"],
        "tier"
    );

    // SetSubnets moves the zone nodes: zone c's address starts serving, zone b's stops.
    let node = {
        let dns = s(
            &ok(api, &["describe-load-balancers", "--names", "more"]),
            "/LoadBalancers/0/DNSName",
        );
        assert!(dns.starts_with("more-"));
        // Node index 1: this is the only load balancer of this server.
        1
    };
    let zb = format!("127.0.2.{node}:{listen}");
    assert!(TcpStream::connect(&zb).is_ok());
    let z = ok(
        api,
        &[
            "set-subnets",
            "--load-balancer-arn",
            &lb_arn,
            "--subnets",
            "subnet-0000000000000000a",
            "subnet-0000000000000000c",
        ],
    );
    assert_eq!(s(&z, "/AvailabilityZones/1/ZoneName"), "us-east-1c");
    assert!(TcpStream::connect(format!("127.0.3.{node}:{listen}")).is_ok(), "zone c node serves");
    assert!(TcpStream::connect(&zb).is_err(), "zone b node is gone");
    err(
        api,
        &["set-subnets", "--load-balancer-arn", &lb_arn, "--subnets", "subnet-0000000000000000a"],
        "ValidationError",
    );

    ok(api, &["delete-load-balancer", "--load-balancer-arn", &lb_arn]);
    err(api, &["describe-tags", "--resource-arns", &lb_arn], "LoadBalancerNotFound");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `aws ec2 ARGS` against the API.
fn ec2(api: u16, args: &[&str]) -> Result<Value, String> {
    aws_cli(api, "ec2", args, KEY_ID, SECRET)
}

#[test]
fn ec2_vpcs_subnets_groups_and_templates() {
    let dir = data_dir("ec2");
    let api = free_port();
    let _server = serve(&dir, api);
    let ok2 = |args: &[&str]| ec2(api, args).unwrap_or_else(|e| panic!("aws ec2 {args:?}: {e}"));
    let err2 = |args: &[&str], code: &str| {
        let e = ec2(api, args).unwrap_err();
        assert!(e.contains(&format!("({code})")), "aws ec2 {args:?}: expected {code}, got {e}");
    };
    let azs = ok2(&["describe-availability-zones"]);
    assert_eq!(azs["AvailabilityZones"].as_array().unwrap().len(), 6);
    let default = ok2(&["describe-vpcs", "--filters", "Name=is-default,Values=true"]);
    assert_eq!(s(&default, "/Vpcs/0/VpcId"), "vpc-00000000000000001");
    let vpc = s(&ok2(&["create-vpc", "--cidr-block", "10.0.0.0/16"]), "/Vpc/VpcId");
    let a = s(
        &ok2(&[
            "create-subnet",
            "--vpc-id",
            &vpc,
            "--cidr-block",
            "10.0.1.0/24",
            "--availability-zone",
            "us-east-1a",
        ]),
        "/Subnet/SubnetId",
    );
    let c = s(
        &ok2(&[
            "create-subnet",
            "--vpc-id",
            &vpc,
            "--cidr-block",
            "10.0.2.0/24",
            "--availability-zone",
            "us-east-1c",
        ]),
        "/Subnet/SubnetId",
    );
    let subnets = ok2(&["describe-subnets", "--filters", &format!("Name=vpc-id,Values={vpc}")]);
    let mut zones: Vec<&str> = subnets["Subnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["AvailabilityZone"].as_str().unwrap())
        .collect();
    zones.sort();
    assert_eq!(zones, vec!["us-east-1a", "us-east-1c"]);
    err2(
        &["create-subnet", "--vpc-id", &vpc, "--cidr-block", "10.0.1.0/25"],
        "InvalidSubnet.Conflict",
    );
    err2(
        &["create-subnet", "--vpc-id", &vpc, "--cidr-block", "192.168.0.0/24"],
        "InvalidSubnet.Range",
    );
    err2(
        &["describe-subnets", "--subnet-ids", "subnet-00000000000000999"],
        "InvalidSubnetID.NotFound",
    );
    let sg = s(
        &ok2(&[
            "create-security-group",
            "--group-name",
            "web",
            "--description",
            "web tier",
            "--vpc-id",
            &vpc,
        ]),
        "/GroupId",
    );
    err2(
        &[
            "create-security-group",
            "--group-name",
            "web",
            "--description",
            "again",
            "--vpc-id",
            &vpc,
        ],
        "InvalidGroup.Duplicate",
    );
    let lt = ok2(&[
        "create-launch-template",
        "--launch-template-name",
        "web-lt",
        "--launch-template-data",
        r#"{"ImageId":"ami-12345678","InstanceType":"t3.micro"}"#,
    ]);
    assert!(s(&lt, "/LaunchTemplate/LaunchTemplateId").starts_with("lt-"));
    assert_eq!(
        s(
            &ok2(&["describe-launch-templates", "--launch-template-names", "web-lt"]),
            "/LaunchTemplates/0/LaunchTemplateName"
        ),
        "web-lt"
    );

    // A load balancer in the new subnets lands in their zones and VPC.
    let lb = ok(
        api,
        &[
            "create-load-balancer",
            "--name",
            "in-vpc",
            "--subnets",
            &a,
            &c,
            "--security-groups",
            &sg,
        ],
    );
    assert_eq!(s(&lb, "/LoadBalancers/0/VpcId"), vpc);
    assert_eq!(s(&lb, "/LoadBalancers/0/AvailabilityZones/1/ZoneName"), "us-east-1c");
    assert_eq!(s(&lb, "/LoadBalancers/0/SecurityGroups/0"), sg);
    err(
        api,
        &["create-load-balancer", "--name", "mixed", "--subnets", &a, "subnet-0000000000000000b"],
        "InvalidConfigurationRequest",
    );
    err2(&["delete-subnet", "--subnet-id", &a], "DependencyViolation");
    err2(&["delete-vpc", "--vpc-id", &vpc], "DependencyViolation");
    ok(
        api,
        &[
            "delete-load-balancer",
            "--load-balancer-arn",
            &s(&lb, "/LoadBalancers/0/LoadBalancerArn"),
        ],
    );
    ok2(&["delete-subnet", "--subnet-id", &a]);
    ok2(&["delete-subnet", "--subnet-id", &c]);
    ok2(&["delete-security-group", "--group-id", &sg]);
    ok2(&["delete-vpc", "--vpc-id", &vpc]);
    err2(&["describe-vpcs", "--vpc-ids", &vpc], "InvalidVpcID.NotFound");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn https_listener_certificates_through_the_aws_cli() {
    let dir = data_dir("https");
    std::fs::create_dir_all(&dir).unwrap();
    let certs = dir.join("certs");
    // `weir certificate` writes DATA_DIR/certs/NAME.pem and prints the ARN.
    let mk = |name: &str, dns: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args([
                "certificate",
                name,
                "--dns-name",
                dns,
                "--certificate-dir",
                certs.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let site = mk("site", "site.test");
    let other = mk("other", "*.other.test");
    assert!(site.starts_with("arn:aws:acm:") && site.ends_with(":certificate/site"), "{site}");
    let api = free_port();
    let listen = free_port();
    let _server = serve(&dir, api);
    let lb = ok(
        api,
        &[
            "create-load-balancer",
            "--name",
            "tls",
            "--subnets",
            "subnet-0000000000000000a",
            "subnet-0000000000000000b",
        ],
    );
    let lb_arn = s(&lb, "/LoadBalancers/0/LoadBalancerArn");
    let action = "Type=fixed-response,FixedResponseConfig={StatusCode=200,MessageBody=secure}";
    let missing = "CertificateArn=arn:aws:acm:us-east-1:123456789012:certificate/missing";
    let port = listen.to_string();
    let base = [
        "create-listener",
        "--load-balancer-arn",
        &lb_arn,
        "--protocol",
        "HTTPS",
        "--port",
        &port,
        "--default-actions",
        action,
    ];
    err(api, &[&base[..], &["--certificates", missing]].concat(), "CertificateNotFound");
    err(api, &base, "ValidationError");
    err(
        api,
        &[
            &base[..],
            &["--certificates", &format!("CertificateArn={site}"), "--ssl-policy", "Nope"],
        ]
        .concat(),
        "SSLPolicyNotFound",
    );
    let l = ok(
        api,
        &[
            &base[..],
            &[
                "--certificates",
                &format!("CertificateArn={site}"),
                "--ssl-policy",
                "ELBSecurityPolicy-TLS13-1-2-2021-06",
            ],
        ]
        .concat(),
    );
    assert_eq!(s(&l, "/Listeners/0/Protocol"), "HTTPS");
    assert_eq!(s(&l, "/Listeners/0/SslPolicy"), "ELBSecurityPolicy-TLS13-1-2-2021-06");
    assert_eq!(s(&l, "/Listeners/0/Certificates/0/CertificateArn"), site);
    let l_arn = s(&l, "/Listeners/0/ListenerArn");
    ok(
        api,
        &[
            "add-listener-certificates",
            "--listener-arn",
            &l_arn,
            "--certificates",
            &format!("CertificateArn={other}"),
        ],
    );
    let c = ok(api, &["describe-listener-certificates", "--listener-arn", &l_arn]);
    assert_eq!(
        c["Certificates"],
        serde_json::json!([{"CertificateArn": site, "IsDefault": true}, {"CertificateArn": other, "IsDefault": false}])
    );
    err(
        api,
        &[
            "remove-listener-certificates",
            "--listener-arn",
            &l_arn,
            "--certificates",
            &format!("CertificateArn={site}"),
        ],
        "OperationNotPermitted",
    );

    // The listener serves TLS with the certificate SNI picks.
    // (body, the served certificate's subject alternative names) for an SNI name.
    let subject = |sni: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-k",
                "--max-time",
                "5",
                "--resolve",
                &format!("{sni}:{listen}:127.0.0.1"),
                "-w",
                "\n%{certs}",
                &format!("https://{sni}:{listen}/"),
            ])
            .output()
            .unwrap();
        let all = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, certs) = all.split_once('\n').unwrap_or((&all, ""));
        let san = certs
            .lines()
            .find(|l| l.contains("Subject Alternative Name"))
            .unwrap_or("")
            .to_string();
        (body.to_string(), san)
    };
    let (body, verbose) = subject("www.other.test");
    assert_eq!(body, "secure");
    assert!(verbose.contains("*.other.test"), "the wildcard certificate: {verbose}");
    let (_, verbose) = subject("site.test");
    assert!(verbose.contains("site.test") && !verbose.contains("*.other.test"), "{verbose}");
    ok(
        api,
        &[
            "remove-listener-certificates",
            "--listener-arn",
            &l_arn,
            "--certificates",
            &format!("CertificateArn={other}"),
        ],
    );
    let (_, verbose) = subject("www.other.test");
    assert!(!verbose.contains("*.other.test"), "removed certificates are no longer served");
    // Back to HTTP: the certificates go with it.
    let m = ok(api, &["modify-listener", "--listener-arn", &l_arn, "--protocol", "HTTP"]);
    assert!(m["Listeners"][0].get("SslPolicy").is_none());
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", &format!("http://127.0.0.1:{listen}/")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "secure");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn network_load_balancer_through_the_aws_cli() {
    // A TCP backend that greets every connection.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in backend.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = std::io::Write::write_all(&mut s, b"hello from the nlb backend\n");
        }
    });
    let dir = data_dir("nlb");
    let api = free_port();
    let listen = free_port();
    let _server = serve(&dir, api);
    let lb = ok(
        api,
        &[
            "create-load-balancer",
            "--name",
            "net",
            "--type",
            "network",
            "--subnets",
            "subnet-0000000000000000a",
        ],
    );
    assert_eq!(s(&lb, "/LoadBalancers/0/Type"), "network");
    let lb_arn = s(&lb, "/LoadBalancers/0/LoadBalancerArn");
    assert!(lb_arn.contains(":loadbalancer/net/net/"), "{lb_arn}");
    let tg = ok(
        api,
        &[
            "create-target-group",
            "--name",
            "net-tcp",
            "--protocol",
            "TCP",
            "--port",
            "80",
            "--target-type",
            "ip",
        ],
    );
    assert_eq!(s(&tg, "/TargetGroups/0/HealthCheckProtocol"), "TCP");
    let tg_arn = s(&tg, "/TargetGroups/0/TargetGroupArn");
    let a = ok(api, &["describe-target-group-attributes", "--target-group-arn", &tg_arn]);
    let attr = |k: &str| {
        a["Attributes"].as_array().unwrap().iter().find(|x| x["Key"] == k).unwrap()["Value"].clone()
    };
    assert_eq!(attr("preserve_client_ip.enabled"), "false");
    assert_eq!(attr("proxy_protocol_v2.enabled"), "false");
    ok(
        api,
        &[
            "register-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            &format!("Id=127.0.0.1,Port={backend_port}"),
        ],
    );
    let forward = format!("Type=forward,TargetGroupArn={tg_arn}");
    let port = listen.to_string();
    err(
        api,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "UDP",
            "--port",
            &port,
            "--default-actions",
            &forward,
        ],
        "IncompatibleProtocols",
    );
    let l = ok(
        api,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "TCP",
            "--port",
            &port,
            "--default-actions",
            &forward,
        ],
    );
    let l_arn = s(&l, "/Listeners/0/ListenerArn");
    ok(
        api,
        &[
            "modify-listener-attributes",
            "--listener-arn",
            &l_arn,
            "--attributes",
            "Key=tcp.idle_timeout.seconds,Value=120",
        ],
    );
    // Bytes flow through the listener to the target.
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.contains("hello from the nlb backend") && Instant::now() < deadline {
        if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", listen)) {
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            got.clear();
            let _ = std::io::Read::read_to_string(&mut c, &mut got);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(got.contains("hello from the nlb backend"), "{got:?}");
    let h = ok(api, &["describe-target-health", "--target-group-arn", &tg_arn]);
    assert_eq!(h["TargetHealthDescriptions"][0]["Target"]["Port"], backend_port);
    err(
        api,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "TLS",
            "--port",
            "8443",
            "--default-actions",
            &forward,
            "--alpn-policy",
            "HTTP2Preferred",
        ],
        "ValidationError",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["certificate", "nlb", "--dns-name", "nlb.test", "--certificate-dir"])
        .arg(dir.join("certs"))
        .output()
        .unwrap();
    let cert = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let tls_port = free_port().to_string();
    let t = ok(
        api,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "TLS",
            "--port",
            &tls_port,
            "--default-actions",
            &forward,
            "--certificates",
            &format!("CertificateArn={cert}"),
            "--alpn-policy",
            "HTTP2Preferred",
        ],
    );
    assert_eq!(s(&t, "/Listeners/0/Protocol"), "TLS");
    assert_eq!(s(&t, "/Listeners/0/AlpnPolicy/0"), "HTTP2Preferred");
    assert_eq!(s(&t, "/Listeners/0/SslPolicy"), "ELBSecurityPolicy-2016-08");
}

#[test]
fn cloudwatch_metrics_through_the_aws_cli_and_prometheus() {
    let dir = data_dir("cloudwatch");
    let api = free_port();
    let listen = free_port();
    let serve_args = |dir: &Path| {
        std::fs::create_dir_all(dir).unwrap();
        let creds = dir.join("credentials");
        std::fs::write(
            &creds,
            format!("[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
        )
        .unwrap();
        vec![
            "serve".to_string(),
            "--credentials".into(),
            creds.to_str().unwrap().into(),
            "--data-dir".into(),
            dir.to_str().unwrap().into(),
            "--api-address".into(),
            format!("127.0.0.1:{api}"),
            "--dns-address".into(),
            "off".into(),
            "--metrics-interval-seconds".into(),
            "1".into(),
        ]
    };
    let args = serve_args(&dir);
    let server = start(&args.iter().map(String::as_str).collect::<Vec<_>>(), "AWS API on");
    let lb = ok(
        api,
        &[
            "create-load-balancer",
            "--name",
            "cw",
            "--subnets",
            "subnet-0000000000000000a",
            "subnet-0000000000000000b",
        ],
    );
    let lb_arn = s(&lb, "/LoadBalancers/0/LoadBalancerArn");
    let dim = format!("app/cw/{}", lb_arn.rsplit('/').next().unwrap());
    ok(
        api,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &listen.to_string(),
            "--default-actions",
            "Type=fixed-response,FixedResponseConfig={StatusCode=200,MessageBody=ok}",
        ],
    );
    let start_time =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
            - 600)
            .to_string();
    for _ in 0..7 {
        assert_eq!(http_get(listen, "/").0, 200);
    }
    let end_time = (start_time.parse::<u64>().unwrap() + 1200).to_string();
    let cw = |args: &[&str]| aws_cli(api, "cloudwatch", args, KEY_ID, SECRET);
    let stats_args = [
        "get-metric-statistics",
        "--namespace",
        "AWS/ApplicationELB",
        "--metric-name",
        "RequestCount",
        "--dimensions",
        &format!("Name=LoadBalancer,Value={dim}"),
        "--start-time",
        &start_time,
        "--end-time",
        &end_time,
        "--period",
        "60",
        "--statistics",
        "Sum",
        "SampleCount",
    ];
    let sum = |v: &Value| -> f64 {
        v["Datapoints"].as_array().unwrap().iter().map(|d| d["Sum"].as_f64().unwrap()).sum()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut got = cw(&stats_args).unwrap();
    while sum(&got) < 7.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        got = cw(&stats_args).unwrap();
    }
    assert_eq!(sum(&got), 7.0, "{got}");
    assert_eq!(got["Label"], "RequestCount");
    assert_eq!(got["Datapoints"][0]["Unit"], "Count");
    // The JSON protocol carries epoch seconds (the CLI prints them as received), minute-aligned.
    assert!(got["Datapoints"][0]["Timestamp"].as_u64().is_some_and(|t| t % 60 == 0), "{got}");

    let listed = cw(&["list-metrics", "--namespace", "AWS/ApplicationELB"]).unwrap();
    let names: Vec<&str> = listed["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["MetricName"].as_str().unwrap())
        .collect();
    for n in ["RequestCount", "NewConnectionCount", "ActiveConnectionCount"] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let query = format!(
        r#"[{{"Id":"rc","MetricStat":{{"Metric":{{"Namespace":"AWS/ApplicationELB","MetricName":"RequestCount","Dimensions":[{{"Name":"LoadBalancer","Value":"{dim}"}}]}},"Period":60,"Stat":"Sum"}}}}]"#
    );
    let data = cw(&[
        "get-metric-data",
        "--metric-data-queries",
        &query,
        "--start-time",
        &start_time,
        "--end-time",
        &end_time,
    ])
    .unwrap();
    let values: f64 = data["MetricDataResults"][0]["Values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert_eq!(values, 7.0, "{data}");
    assert_eq!(data["MetricDataResults"][0]["StatusCode"], "Complete");

    let mut bad = stats_args.to_vec();
    bad[12] = "90";
    let e = cw(&bad).unwrap_err();
    assert!(e.contains("InvalidParameterValue"), "{e}");

    // Prometheus text on the API port, unsigned.
    let (code, text) = http_get(api, "/metrics");
    assert_eq!(code, 200);
    assert!(
        text.contains(&format!(
            "RequestCount{{namespace=\"AWS/ApplicationELB\",LoadBalancer=\"{dim}\"}} 7"
        )),
        "{text}"
    );

    // Alarms: put, evaluate (missing data treated as the alarm says), set, describe, delete.
    let put = |name: &str, treat: &str, period: &str, comparison: &str| {
        cw(&[
            "put-metric-alarm",
            "--alarm-name",
            name,
            "--namespace",
            "AWS/ApplicationELB",
            "--metric-name",
            "RequestCount",
            "--dimensions",
            &format!("Name=LoadBalancer,Value={dim}"),
            "--statistic",
            "Sum",
            "--period",
            period,
            "--evaluation-periods",
            "2",
            "--threshold",
            "1000",
            "--comparison-operator",
            comparison,
            "--treat-missing-data",
            treat,
        ])
    };
    // Whichever minutes the 7 requests fall in: "quiet" never breaches (7 is not > 1000, missing
    // is not breaching) and "dark" always does (7 < 1000, missing is breaching).
    put("quiet", "notBreaching", "60", "GreaterThanThreshold").unwrap();
    put("dark", "breaching", "60", "LessThanThreshold").unwrap();
    let e = put("odd", "missing", "45", "GreaterThanThreshold").unwrap_err();
    assert!(e.contains("InvalidParameterValue"), "{e}");
    let d = cw(&["describe-alarms", "--alarm-names", "quiet", "dark"]).unwrap();
    let state = |d: &Value, name: &str| {
        d["MetricAlarms"].as_array().unwrap().iter().find(|a| a["AlarmName"] == name).unwrap()
            ["StateValue"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(state(&d, "quiet"), "OK", "{d}");
    assert_eq!(state(&d, "dark"), "ALARM", "{d}");
    assert_eq!(d["MetricAlarms"][0]["Period"], 60);
    assert_eq!(d["MetricAlarms"][0]["Threshold"], 1000.0);
    cw(&[
        "set-alarm-state",
        "--alarm-name",
        "quiet",
        "--state-value",
        "ALARM",
        "--state-reason",
        "test",
    ])
    .unwrap();
    // (The 1-second evaluation in this test puts "quiet" back to OK at once, as CloudWatch
    // does at its next evaluation; api_live.rs checks the override itself.)
    let e = cw(&[
        "set-alarm-state",
        "--alarm-name",
        "nope",
        "--state-value",
        "OK",
        "--state-reason",
        "x",
    ])
    .unwrap_err();
    assert!(e.contains("ResourceNotFound"), "{e}");
    let d = cw(&["describe-alarms", "--alarm-names", "dark", "quiet", "--state-value", "ALARM"])
        .unwrap();
    let names: Vec<&str> = d["MetricAlarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["AlarmName"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"dark"), "{d}");
    cw(&["delete-alarms", "--alarm-names", "quiet"]).unwrap();
    let e = cw(&["delete-alarms", "--alarm-names", "quiet"]).unwrap_err();
    assert!(e.contains("ResourceNotFound"), "{e}");

    // The history and the alarms survive a restart.
    drop(server);
    let _server = start(&args.iter().map(String::as_str).collect::<Vec<_>>(), "AWS API on");
    let again = cw(&stats_args).unwrap();
    assert_eq!(sum(&again), 7.0, "{again}");
    let d = cw(&["describe-alarms"]).unwrap();
    let names: Vec<&str> = d["MetricAlarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["AlarmName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dark"]);
}

/// Waits (up to `secs`) until `check` returns Some.
fn eventually<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn autoscaling(api: u16, args: &[&str]) -> Result<Value, String> {
    aws_cli(api, "autoscaling", args, KEY_ID, SECRET)
}

/// Instance ids of a group in `state` (`InService`, ...).
fn group_instances(api: u16, group: &str, state: &str) -> Vec<String> {
    let v =
        autoscaling(api, &["describe-auto-scaling-groups", "--auto-scaling-group-names", group])
            .unwrap();
    v.pointer("/AutoScalingGroups/0/Instances")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|i| i["LifecycleState"] == state)
                .map(|i| i["InstanceId"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn processes_named(id: &str) -> bool {
    Command::new("pgrep")
        .args(["-f", &format!("demo-backend .*--name {id}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What both Auto Scaling tests stand on: launch template `web` whose user data starts a demo
/// backend on the instance's port, an `instance` target group (`names.0`, more create arguments
/// in `tg_args`, deregistration delay `delay` seconds), and an ALB (`names.1`) whose HTTP listener
/// on `listen` forwards to it. Returns the target group's and the load balancer's ARNs.
fn demo_web_behind_alb(
    api: u16,
    listen: u16,
    names: (&str, &str),
    tg_args: &[&str],
    delay: &str,
) -> (String, String) {
    let user_data = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode("exec {weir} demo-backend --port {port} --name {instance_id}")
    };
    let lt = format!("{{\"UserData\":\"{user_data}\"}}");
    ec2(
        api,
        &["create-launch-template", "--launch-template-name", "web", "--launch-template-data", &lt],
    )
    .unwrap();
    let mut args = vec![
        "create-target-group",
        "--name",
        names.0,
        "--protocol",
        "HTTP",
        "--port",
        "80",
        "--vpc-id",
        "vpc-00000000000000000",
        "--target-type",
        "instance",
    ];
    args.extend_from_slice(tg_args);
    let tg_arn = s(&ok(api, &args), "/TargetGroups/0/TargetGroupArn");
    let delay = format!("Key=deregistration_delay.timeout_seconds,Value={delay}");
    ok(
        api,
        &["modify-target-group-attributes", "--target-group-arn", &tg_arn, "--attributes", &delay],
    );
    let lb = ok(
        api,
        &[
            "create-load-balancer",
            "--name",
            names.1,
            "--subnets",
            "subnet-0000000000000000a",
            "subnet-0000000000000000b",
        ],
    );
    let lb_arn = s(&lb, "/LoadBalancers/0/LoadBalancerArn");
    ok(
        api,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &listen.to_string(),
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
    );
    (tg_arn, lb_arn)
}

#[test]
fn auto_scaling_groups_of_real_processes_through_the_aws_cli() {
    let dir = data_dir("autoscaling");
    let api = free_port();
    let listen = free_port();
    let server = serve(&dir, api);

    let (tg_arn, _) = demo_web_behind_alb(
        api,
        listen,
        ("asg-web", "asg"),
        &[
            "--health-check-path",
            "/health",
            "--health-check-interval-seconds",
            "5",
            "--health-check-timeout-seconds",
            "2",
            "--healthy-threshold-count",
            "2",
        ],
        "1",
    );

    autoscaling(
        api,
        &[
            "create-auto-scaling-group",
            "--auto-scaling-group-name",
            "web",
            "--launch-template",
            "LaunchTemplateName=web",
            "--min-size",
            "1",
            "--max-size",
            "4",
            "--desired-capacity",
            "2",
            "--vpc-zone-identifier",
            "subnet-0000000000000000a,subnet-0000000000000000b",
            "--target-group-arns",
            &tg_arn,
            "--health-check-type",
            "ELB",
            "--health-check-grace-period",
            "30",
        ],
    )
    .unwrap();
    let first = eventually(30, "two instances in service", || {
        let v = group_instances(api, "web", "InService");
        (v.len() == 2).then_some(v)
    });
    assert!(first.iter().all(|id| processes_named(id)), "each instance is a running process");
    // Both serve through the load balancer, one per zone.
    let mut seen = std::collections::BTreeSet::new();
    eventually(30, "traffic reaching both instances", || {
        let (status, body) = http_get(listen, "/");
        if status == 200 {
            seen.insert(body.lines().next().unwrap_or_default().to_string());
        }
        first.iter().all(|id| seen.iter().any(|b| b.contains(id.as_str()))).then_some(())
    });
    let inst = autoscaling(api, &["describe-auto-scaling-instances"]).unwrap();
    let zones: std::collections::BTreeSet<&str> = inst["AutoScalingInstances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["HealthStatus"], "HEALTHY");
            assert_eq!(i["AutoScalingGroupName"], "web");
            i["AvailabilityZone"].as_str().unwrap()
        })
        .collect();
    assert_eq!(zones.len(), 2, "balanced over the zones: {inst}");
    let health = ok(api, &["describe-target-health", "--target-group-arn", &tg_arn]);
    assert_eq!(health["TargetHealthDescriptions"].as_array().unwrap().len(), 2, "{health}");

    // Errors as AWS words them.
    let e = autoscaling(
        api,
        &["set-desired-capacity", "--auto-scaling-group-name", "web", "--desired-capacity", "9"],
    )
    .unwrap_err();
    assert!(e.contains("ValidationError") && e.contains("above max value 4"), "{e}");
    let e = autoscaling(
        api,
        &[
            "create-auto-scaling-group",
            "--auto-scaling-group-name",
            "web",
            "--launch-template",
            "LaunchTemplateName=web",
            "--min-size",
            "1",
            "--max-size",
            "1",
            "--vpc-zone-identifier",
            "subnet-0000000000000000a",
        ],
    )
    .unwrap_err();
    assert!(e.contains("AlreadyExists"), "{e}");
    let e = autoscaling(api, &["delete-auto-scaling-group", "--auto-scaling-group-name", "web"])
        .unwrap_err();
    assert!(e.contains("ResourceInUse"), "{e}");

    // Scale out.
    autoscaling(
        api,
        &["set-desired-capacity", "--auto-scaling-group-name", "web", "--desired-capacity", "3"],
    )
    .unwrap();
    let three = eventually(30, "three instances in service", || {
        let v = group_instances(api, "web", "InService");
        (v.len() == 3).then_some(v)
    });

    // Terminate one with a decrement: the group shrinks to two and the process stops.
    let victim = three[0].clone();
    let a = autoscaling(
        api,
        &[
            "terminate-instance-in-auto-scaling-group",
            "--instance-id",
            &victim,
            "--should-decrement-desired-capacity",
        ],
    )
    .unwrap();
    assert_eq!(a["Activity"]["StatusCode"], "InProgress", "{a}");
    eventually(30, "the terminated instance to go", || {
        let all = group_instances(api, "web", "InService");
        (!all.contains(&victim) && group_instances(api, "web", "Terminating").is_empty())
            .then_some(())
    });
    assert!(!processes_named(&victim), "its process was stopped");
    let g =
        autoscaling(api, &["describe-auto-scaling-groups", "--auto-scaling-group-names", "web"])
            .unwrap();
    assert_eq!(g["AutoScalingGroups"][0]["DesiredCapacity"], 2);

    // Kill an instance's process behind Weir's back: it is found unhealthy and replaced.
    let survivors = group_instances(api, "web", "InService");
    let killed = survivors[0].clone();
    assert!(Command::new("pkill")
        .args(["-f", &format!("demo-backend .*--name {killed}")])
        .status()
        .unwrap()
        .success());
    eventually(40, "a replacement for the killed instance", || {
        let v = group_instances(api, "web", "InService");
        (v.len() == 2 && !v.contains(&killed)).then_some(())
    });
    let acts =
        autoscaling(api, &["describe-scaling-activities", "--auto-scaling-group-name", "web"])
            .unwrap();
    let acts = acts["Activities"].as_array().unwrap();
    let launches = acts
        .iter()
        .filter(|a| {
            a["Description"].as_str().unwrap().starts_with("Launching a new EC2 instance: i-")
                && a["StatusCode"] == "Successful"
        })
        .count();
    assert!(launches >= 4, "two, one more, and the replacement: {acts:?}");
    assert!(
        acts.iter().any(|a| a["Description"] == format!("Terminating EC2 instance: {killed}")
            && a["Cause"].as_str().unwrap().contains("health check")),
        "{acts:?}"
    );

    // A forced delete stops every instance and then the group is gone.
    let last = group_instances(api, "web", "InService");
    autoscaling(
        api,
        &["delete-auto-scaling-group", "--auto-scaling-group-name", "web", "--force-delete"],
    )
    .unwrap();
    eventually(30, "the group to be deleted", || {
        let v = autoscaling(api, &["describe-auto-scaling-groups"]).unwrap();
        v["AutoScalingGroups"].as_array().unwrap().is_empty().then_some(())
    });
    for id in &last {
        assert!(!processes_named(id), "{id} still runs");
    }
    eventually(10, "the instances deregistered", || {
        let health = ok(api, &["describe-target-health", "--target-group-arn", &tg_arn]);
        health["TargetHealthDescriptions"].as_array().unwrap().is_empty().then_some(())
    });
    drop(server);
}

/// `weir serve` with Auto Scaling's target tracking measuring over 3 s and scaling in after 4 s.
fn serve_fast_scaling(dir: &Path, api: u16) -> Proc {
    serve_with(
        dir,
        api,
        &["--dns-address", "off", "--scaling-window-seconds", "3", "--scale-in-after-seconds", "4"],
    )
}

fn desired(api: u16, group: &str) -> u64 {
    let g =
        autoscaling(api, &["describe-auto-scaling-groups", "--auto-scaling-group-names", group])
            .unwrap();
    g["AutoScalingGroups"][0]["DesiredCapacity"].as_u64().unwrap()
}

#[test]
fn auto_scaling_policies_and_schedules_through_the_aws_cli() {
    let dir = data_dir("autoscaling-policies");
    let api = free_port();
    let listen = free_port();
    let server = serve_fast_scaling(&dir, api);
    let (tg_arn, lb_arn) = demo_web_behind_alb(api, listen, ("tt", "tt"), &[], "0");
    autoscaling(
        api,
        &[
            "create-auto-scaling-group",
            "--auto-scaling-group-name",
            "tt",
            "--launch-template",
            "LaunchTemplateName=web",
            "--min-size",
            "1",
            "--max-size",
            "3",
            "--vpc-zone-identifier",
            "subnet-0000000000000000a,subnet-0000000000000000b",
            "--target-group-arns",
            &tg_arn,
        ],
    )
    .unwrap();
    eventually(30, "one instance in service", || {
        (group_instances(api, "tt", "InService").len() == 1).then_some(())
    });

    // Target tracking on requests per target: 240/min (4 req/s) per instance, low
    // enough that even a slow machine's load loop asks for the maximum.
    let label = format!(
        "{}/{}",
        lb_arn.split(":loadbalancer/").nth(1).unwrap(),
        tg_arn.split(':').nth(5).unwrap()
    );
    let tt = format!(
        "{{\"PredefinedMetricSpecification\":{{\"PredefinedMetricType\":\"ALBRequestCountPerTarget\",\"ResourceLabel\":\"{label}\"}},\"TargetValue\":240}}"
    );
    let bad = tt.replace(&label, "app/x/1/targetgroup/y/2");
    let e = autoscaling(
        api,
        &[
            "put-scaling-policy",
            "--auto-scaling-group-name",
            "tt",
            "--policy-name",
            "bad",
            "--policy-type",
            "TargetTrackingScaling",
            "--target-tracking-configuration",
            &bad,
        ],
    )
    .unwrap_err();
    assert!(e.contains("ValidationError") && e.contains("ResourceLabel"), "{e}");
    let p = autoscaling(
        api,
        &[
            "put-scaling-policy",
            "--auto-scaling-group-name",
            "tt",
            "--policy-name",
            "requests",
            "--policy-type",
            "TargetTrackingScaling",
            "--estimated-instance-warmup",
            "2",
            "--target-tracking-configuration",
            &tt,
        ],
    )
    .unwrap();
    assert!(s(&p, "/PolicyARN").contains(":scalingPolicy:"), "{p}");

    // Up to 40 requests a second: even 15 (900 a minute) wants 4 instances, capped at 3.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(60);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
                let _ = http_get(listen, "/");
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    };
    eventually(45, "scale-out to 3 in service under load", || {
        (group_instances(api, "tt", "InService").len() == 3).then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().unwrap();
    // Without load it asks for the minimum, and after the scale-in delay gets it.
    eventually(45, "scale-in to 1 without load", || {
        (desired(api, "tt") == 1 && group_instances(api, "tt", "InService").len() == 1)
            .then_some(())
    });
    let pols = autoscaling(api, &["describe-policies", "--auto-scaling-group-name", "tt"]).unwrap();
    assert_eq!(pols["ScalingPolicies"][0]["TargetTrackingConfiguration"]["TargetValue"], 240.0);
    autoscaling(
        api,
        &["delete-policy", "--auto-scaling-group-name", "tt", "--policy-name", "requests"],
    )
    .unwrap();

    // Simple and step policies, executed as an alarm would.
    autoscaling(
        api,
        &[
            "put-scaling-policy",
            "--auto-scaling-group-name",
            "tt",
            "--policy-name",
            "plus-one",
            "--adjustment-type",
            "ChangeInCapacity",
            "--scaling-adjustment",
            "1",
        ],
    )
    .unwrap();
    autoscaling(
        api,
        &["execute-policy", "--auto-scaling-group-name", "tt", "--policy-name", "plus-one"],
    )
    .unwrap();
    assert_eq!(desired(api, "tt"), 2);
    autoscaling(
        api,
        &[
            "put-scaling-policy",
            "--auto-scaling-group-name",
            "tt",
            "--policy-name",
            "steps",
            "--policy-type",
            "StepScaling",
            "--adjustment-type",
            "ExactCapacity",
            "--step-adjustments",
            "MetricIntervalLowerBound=0,MetricIntervalUpperBound=10,ScalingAdjustment=1",
            "MetricIntervalLowerBound=10,ScalingAdjustment=3",
        ],
    )
    .unwrap();
    autoscaling(
        api,
        &[
            "execute-policy",
            "--auto-scaling-group-name",
            "tt",
            "--policy-name",
            "steps",
            "--metric-value",
            "75",
            "--breach-threshold",
            "50",
        ],
    )
    .unwrap();
    assert_eq!(desired(api, "tt"), 3, "a breach of 25 takes the [10, ∞) step");
    autoscaling(
        api,
        &[
            "execute-policy",
            "--auto-scaling-group-name",
            "tt",
            "--policy-name",
            "steps",
            "--metric-value",
            "55",
            "--breach-threshold",
            "50",
        ],
    )
    .unwrap();
    assert_eq!(desired(api, "tt"), 1);

    // Scheduled actions: a bad recurrence is refused, a recurring one is listed, and a one-time
    // one a few seconds ahead runs once and is then gone.
    let e = autoscaling(
        api,
        &[
            "put-scheduled-update-group-action",
            "--auto-scaling-group-name",
            "tt",
            "--scheduled-action-name",
            "bad",
            "--recurrence",
            "61 * * * *",
            "--desired-capacity",
            "2",
        ],
    )
    .unwrap_err();
    assert!(e.contains("ValidationError"), "{e}");
    autoscaling(
        api,
        &[
            "put-scheduled-update-group-action",
            "--auto-scaling-group-name",
            "tt",
            "--scheduled-action-name",
            "nightly",
            "--recurrence",
            "0 2 * * *",
            "--min-size",
            "0",
        ],
    )
    .unwrap();
    let sched =
        autoscaling(api, &["describe-scheduled-actions", "--auto-scaling-group-name", "tt"])
            .unwrap();
    assert_eq!(sched["ScheduledUpdateGroupActions"][0]["Recurrence"], "0 2 * * *", "{sched}");
    let at =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 5)
            .to_string();
    autoscaling(
        api,
        &[
            "put-scheduled-update-group-action",
            "--auto-scaling-group-name",
            "tt",
            "--scheduled-action-name",
            "soon",
            "--start-time",
            &at,
            "--desired-capacity",
            "2",
        ],
    )
    .unwrap();
    eventually(20, "the scheduled action to run", || (desired(api, "tt") == 2).then_some(()));
    let sched =
        autoscaling(api, &["describe-scheduled-actions", "--auto-scaling-group-name", "tt"])
            .unwrap();
    let names: Vec<&str> = sched["ScheduledUpdateGroupActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["ScheduledActionName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nightly"], "a one-time action is gone once it ran");
    let acts =
        autoscaling(api, &["describe-scaling-activities", "--auto-scaling-group-name", "tt"])
            .unwrap();
    assert!(
        acts["Activities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["Description"] == "Executing scheduled action soon"),
        "{acts}"
    );
    autoscaling(
        api,
        &["delete-auto-scaling-group", "--auto-scaling-group-name", "tt", "--force-delete"],
    )
    .unwrap();
    eventually(30, "the group to be deleted", || {
        let v = autoscaling(api, &["describe-auto-scaling-groups"]).unwrap();
        v["AutoScalingGroups"].as_array().unwrap().is_empty().then_some(())
    });
    drop(server);
}

fn cloudformation(api: u16, args: &[&str]) -> Result<Value, String> {
    aws_cli(api, "cloudformation", args, KEY_ID, SECRET)
}

/// `aws cloudformation deploy` (prints text, not JSON): Ok(stdout) or Err(stdout + stderr).
fn cfn_deploy(api: u16, file: &Path, stack: &str, params: &[String]) -> Result<String, String> {
    let out = Command::new("aws")
        .args(["--endpoint-url", &format!("http://127.0.0.1:{api}"), "--region", "us-east-1"])
        .args(["cloudformation", "deploy", "--no-fail-on-empty-changeset", "--stack-name", stack])
        .arg("--template-file")
        .arg(file)
        .arg("--parameter-overrides")
        .args(params)
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// The AWS-shaped ALB + Auto Scaling template (examples/aws/web-asg-alb.yaml) through
/// `aws cloudformation deploy`: created with real instances serving, updated with a
/// replacement, a failing update rolled back while traffic keeps flowing, deleted.
#[test]
fn cloudformation_stacks_through_the_aws_cli() {
    let dir = data_dir("stacks");
    let (api, listen) = (free_port(), free_port());
    let server = serve(&dir, api);
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/aws/web-asg-alb.yaml");
    let base = [
        "Subnets=subnet-0000000000000000a,subnet-0000000000000000b".to_string(),
        "VPC=vpc-00000000000000001".to_string(),
        format!("ListenerPort={listen}"),
    ];
    let out = cfn_deploy(api, &file, "web", &base).unwrap();
    assert!(out.contains("Successfully created/updated stack - web"), "{out}");
    let stack = cloudformation(api, &["describe-stacks", "--stack-name", "web"]).unwrap();
    assert_eq!(s(&stack, "/Stacks/0/StackStatus"), "CREATE_COMPLETE");
    let outputs = stack.pointer("/Stacks/0/Outputs").unwrap().to_string();
    assert!(outputs.contains(&format!(":{listen}/")), "{outputs}");
    // The group's instances (demo backends named by instance id) answer through the ALB.
    let body = eventually(60, "an instance answering through the stack's ALB", || {
        let (status, body) = http_get(listen, "/");
        (status == 200 && body.contains("i-")).then_some(body)
    });
    assert!(body.contains("i-"), "{body}");
    let resources = cloudformation(api, &["list-stack-resources", "--stack-name", "web"]).unwrap();
    assert_eq!(resources["StackResourceSummaries"].as_array().unwrap().len(), 11);
    let tg_of = || {
        let r = cloudformation(
            api,
            &[
                "describe-stack-resources",
                "--stack-name",
                "web",
                "--logical-resource-id",
                "TargetGroup",
            ],
        )
        .unwrap();
        s(&r, "/StackResources/0/PhysicalResourceId")
    };
    let tg = tg_of();

    // Update with a replacement: a new instance port replaces the target group; the listener and
    // the group move to the new one, the old one is deleted, traffic flows again.
    let mut replaced = base.to_vec();
    replaced.push("InstancePort=81".into());
    cfn_deploy(api, &file, "web", &replaced).unwrap();
    let new_tg = tg_of();
    assert_ne!(new_tg, tg);
    err(api, &["describe-target-groups", "--target-group-arns", &tg], "TargetGroupNotFound");
    let events = cloudformation(api, &["describe-stack-events", "--stack-name", "web"]).unwrap();
    let text = events.to_string();
    assert!(text.contains("Requested update requires the creation of a new physical resource"));
    assert_eq!(s(&events, "/StackEvents/0/ResourceStatus"), "UPDATE_COMPLETE");
    eventually(60, "traffic through the replacement target group", || {
        (http_get(listen, "/").0 == 200).then_some(())
    });
    // Nothing to change: the CLI says so and succeeds.
    let out = cfn_deploy(api, &file, "web", &replaced).unwrap();
    assert!(out.contains("No changes to deploy"), "{out}");
    // That empty change set stays (FAILED, as on AWS), and the CLI names change sets
    // `awscli-cloudformation-package-deploy-<epoch second>`: the next deploy in the same second
    // would get AlreadyExistsException.
    std::thread::sleep(Duration::from_millis(1100));

    // A failing update (a listener port no listener can have) rolls back; requests sent all the
    // while are all served.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut sent, mut failed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sent += 1;
                if http_get(listen, "/").0 != 200 {
                    failed += 1;
                }
            }
            (sent, failed)
        })
    };
    let mut bad = replaced.clone();
    bad[2] = "ListenerPort=70000".into();
    let out = cfn_deploy(api, &file, "web", &bad).unwrap_err();
    assert!(out.contains("Failed to create/update the stack"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = load.join().unwrap();
    assert!(sent > 0 && failed == 0, "{failed} of {sent} requests failed during the rollback");
    let stack = cloudformation(api, &["describe-stacks", "--stack-name", "web"]).unwrap();
    assert_eq!(s(&stack, "/Stacks/0/StackStatus"), "UPDATE_ROLLBACK_COMPLETE");
    assert!(s(&stack, "/Stacks/0/StackStatusReason").contains("LoadBalancerListener"));
    let events = cloudformation(api, &["describe-stack-events", "--stack-name", "web"]).unwrap();
    let failed_event = events["StackEvents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ResourceStatus"] == "UPDATE_FAILED")
        .unwrap()
        .clone();
    assert_eq!(failed_event["LogicalResourceId"], "LoadBalancerListener");
    assert_eq!(tg_of(), new_tg);
    assert_eq!(http_get(listen, "/").0, 200);

    // Templates: what was deployed, and validation naming what Weir does not support.
    let t = cloudformation(api, &["get-template", "--stack-name", "web"]).unwrap();
    assert!(t["TemplateBody"].to_string().contains("WebServerScaleUpPolicy"));
    let e = cloudformation(
        api,
        &[
            "validate-template",
            "--template-body",
            "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n",
        ],
    )
    .unwrap_err();
    assert!(e.contains("(ValidationError)") && e.contains("AWS::SNS::Topic"), "{e}");
    let v = cloudformation(
        api,
        &["validate-template", "--template-body", &std::fs::read_to_string(&file).unwrap()],
    )
    .unwrap();
    assert!(v["Parameters"].as_array().unwrap().iter().any(|p| p["ParameterKey"] == "Subnets"));

    // Delete: every resource goes, instances stop, the listener closes.
    cloudformation(api, &["delete-stack", "--stack-name", "web"]).unwrap();
    cloudformation(api, &["wait", "stack-delete-complete", "--stack-name", "web"]).unwrap();
    let e = cloudformation(api, &["describe-stacks", "--stack-name", "web"]).unwrap_err();
    assert!(e.contains("Stack with id web does not exist"), "{e}");
    assert_eq!(ok(api, &["describe-load-balancers"])["LoadBalancers"], serde_json::json!([]));
    eventually(30, "the listener to close", || {
        TcpStream::connect(("127.0.0.1", listen)).is_err().then_some(())
    });
    eventually(60, "the group's instances to stop", || {
        let g = autoscaling(api, &["describe-auto-scaling-groups"]).unwrap();
        g["AutoScalingGroups"].as_array().unwrap().is_empty().then_some(())
    });

    // `weir stack deploy|events|delete` against the same server.
    let simple = dir.join("simple.yaml");
    let port = free_port();
    std::fs::write(&simple, format!("Resources:\n  LB:\n    Type: AWS::ElasticLoadBalancingV2::LoadBalancer\n  L:\n    Type: AWS::ElasticLoadBalancingV2::Listener\n    Properties:\n      LoadBalancerArn: !Ref LB\n      Port: {port}\n      DefaultActions: [{{ Type: fixed-response, FixedResponseConfig: {{ StatusCode: \"200\", MessageBody: from-weir-stack }} }}]\n")).unwrap();
    let weir = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["stack", "--api-address", &format!("127.0.0.1:{api}")])
            .args(args)
            .env("WEIR_ACCESS_KEY_ID", KEY_ID)
            .env("WEIR_SECRET_ACCESS_KEY", SECRET)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (done, out) = weir(&["deploy", simple.to_str().unwrap()]);
    assert!(
        done && out.contains("stack simple: CREATE_COMPLETE") && out.contains("CREATE_COMPLETE"),
        "{out}"
    );
    assert_eq!(http_get(port, "/"), (200, "from-weir-stack".into()));
    let (done, out) = weir(&["events", "simple"]);
    assert!(
        done && out.lines().count() >= 4 && out.contains("AWS::ElasticLoadBalancingV2::Listener"),
        "{out}"
    );
    let (done, out) = weir(&["delete", "simple"]);
    assert!(done && out.contains("DELETE_COMPLETE"), "{out}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
