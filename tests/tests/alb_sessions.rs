//! Sessions and resilience: duration-based (`AWSALB`) and application-based (`AWSALBAPP-0`)
//! stickiness with fallback when the sticky target leaves, target-group stickiness on weighted
//! forwards (`AWSALBTG`), and retrying a request on another target when the connection to the
//! first one failed before anything was sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;

use weir_tests::*;

/// The value of cookie `name` among a response's Set-Cookie headers.
fn set_cookie(r: &Resp, name: &str) -> Option<String> {
    r.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        let (k, rest) = v.split_once('=')?;
        (k == name).then(|| rest.split(';').next().unwrap_or("").to_string())
    })
}

fn sticky_yaml(name: &str, targets: &str, attrs: &[(&str, &str)]) -> String {
    let mut all = vec![("deregistration_delay.timeout_seconds", "0")];
    all.extend_from_slice(attrs);
    one_group(
        name,
        "",
        &format!("      HealthCheckEnabled: false\n{}", attributes("TargetGroupAttributes", &all)),
        targets,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_cookie_keeps_a_client_on_its_target_until_it_leaves() {
    let b = backends("lbc", 3).await;
    let mut lb = Lb::up(&sticky_yaml(
        "lbc",
        &targets_yaml(&b, 8),
        &[
            ("stickiness.enabled", "true"),
            ("stickiness.type", "lb_cookie"),
            ("stickiness.lb_cookie.duration_seconds", "120"),
        ],
    ))
    .await;
    let c = client();
    let first = send(&c, "GET", &lb.url("/"), &[]).await;
    let cookie = set_cookie(&first, "AWSALB").expect("AWSALB is set");
    assert_eq!(set_cookie(&first, "AWSALBCORS").as_deref(), Some(cookie.as_str()));
    let cors = first
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("AWSALBCORS="))
        .unwrap();
    assert!(
        cors.contains("; Expires=") && cors.ends_with("; Path=/; SameSite=None; Secure"),
        "{cors}"
    );
    let sticky = first.backend().to_string();
    for _ in 0..12 {
        let r =
            send(&c, "GET", &lb.url("/"), &[("cookie", &format!("a=b; AWSALB={cookie}"))]).await;
        assert_eq!(r.backend(), sticky, "same target every time");
    }
    // The CORS twin alone works as well.
    let r = send(&c, "GET", &lb.url("/"), &[("cookie", &format!("AWSALBCORS={cookie}"))]).await;
    assert_eq!(r.backend(), sticky);
    // A forged value is ignored rather than an error.
    let r = send(&c, "GET", &lb.url("/"), &[("cookie", "AWSALB=nonsense")]).await;
    assert_eq!(r.status, 200);

    // The sticky target leaves: the client is moved to another one and re-stuck there.
    let idx = b.iter().position(|x| x.state.name == sticky).unwrap();
    lb.deregister("lbc", b[idx].addr.port()).await;
    let r = send(&c, "GET", &lb.url("/"), &[("cookie", &format!("AWSALB={cookie}"))]).await;
    assert_eq!(r.status, 200);
    assert_ne!(r.backend(), sticky, "falls back when the sticky target is gone");
    let again = set_cookie(&r, "AWSALB").unwrap();
    assert_ne!(again, cookie);
    let moved = r.backend().to_string();
    for _ in 0..5 {
        let r = send(&c, "GET", &lb.url("/"), &[("cookie", &format!("AWSALB={again}"))]).await;
        assert_eq!(r.backend(), moved);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_cookie_follows_the_application_cookie() {
    let b = backends("appc", 3).await;
    let lb = Lb::up(&sticky_yaml(
        "appc",
        &targets_yaml(&b, 8),
        &[
            ("stickiness.enabled", "true"),
            ("stickiness.type", "app_cookie"),
            ("stickiness.app_cookie.cookie_name", "SESSION"),
        ],
    ))
    .await;
    let c = client();
    let plain = send(&c, "GET", &lb.url("/"), &[]).await;
    assert_eq!(set_cookie(&plain, "AWSALBAPP-0"), None, "no application cookie, no AWSALBAPP");
    let login = send(&c, "GET", &lb.url("/login?set_cookie=SESSION=abc"), &[]).await;
    assert_eq!(
        set_cookie(&login, "SESSION").as_deref(),
        Some("abc"),
        "the application's cookie passes"
    );
    let app = set_cookie(&login, "AWSALBAPP-0").expect("AWSALBAPP-0 set with the app cookie");
    for _ in 0..12 {
        let r = send(
            &c,
            "GET",
            &lb.url("/"),
            &[("cookie", &format!("SESSION=abc; AWSALBAPP-0={app}"))],
        )
        .await;
        assert_eq!(r.backend(), login.backend());
    }
    // Without stickiness cookies requests spread again (round robin over 3 targets).
    let seen: std::collections::HashSet<String> =
        futures_util::future::join_all((0..6).map(|_| get_owned(lb.url("/"))))
            .await
            .into_iter()
            .collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
}

async fn get_owned(url: String) -> String {
    get(&url).await.backend().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_group_stickiness_on_weighted_forward() {
    let b = backends("tgs", 2).await;
    let yaml = format!(
        r#"
Resources:
  LB:
    Type: AWS::ElasticLoadBalancingV2::LoadBalancer
    Properties: {{ Name: tgs }}
  A:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties:
      Name: tgs-a
      Protocol: HTTP
      Port: 80
      TargetType: ip
      HealthCheckEnabled: false
      Targets: [{{ Id: 127.0.0.1, Port: {} }}]
  B:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties:
      Name: tgs-b
      Protocol: HTTP
      Port: 80
      TargetType: ip
      HealthCheckEnabled: false
      Targets: [{{ Id: 127.0.0.1, Port: {} }}]
  L:
    Type: AWS::ElasticLoadBalancingV2::Listener
    Properties:
      LoadBalancerArn: !Ref LB
      Port: ${{PORT}}
      Protocol: HTTP
      DefaultActions:
        - Type: forward
          ForwardConfig:
            TargetGroups: [{{ TargetGroupArn: !Ref A, Weight: 50 }}, {{ TargetGroupArn: !Ref B, Weight: 50 }}]
            TargetGroupStickinessConfig: {{ Enabled: true, DurationSeconds: 300 }}
"#,
        b[0].addr.port(),
        b[1].addr.port()
    );
    let lb = Lb::up(&yaml).await;
    let c = client();
    for _ in 0..3 {
        let first = send(&c, "GET", &lb.url("/"), &[]).await;
        let tg = set_cookie(&first, "AWSALBTG").expect("AWSALBTG set");
        assert!(set_cookie(&first, "AWSALBTGCORS").is_some());
        for _ in 0..10 {
            let r = send(&c, "GET", &lb.url("/"), &[("cookie", &format!("AWSALBTG={tg}"))]).await;
            assert_eq!(r.backend(), first.backend(), "the cookie's group every time");
        }
    }
    // Without the cookie both groups get traffic.
    let mut names = std::collections::HashSet::new();
    for _ in 0..40 {
        names.insert(get(&lb.url("/")).await.backend().to_string());
    }
    assert_eq!(names.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_on_another_target_with_the_body() {
    let b = backends("retry", 1).await;
    let dead = free_port();
    let targets = format!("{}        - {{ Id: 127.0.0.1, Port: {dead} }}\n", targets_yaml(&b, 8));
    let lb = Lb::up(&sticky_yaml("retry", &targets, &[])).await;
    let c = client();
    for _ in 0..10 {
        let r = send(&c, "GET", &lb.url("/"), &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.backend(), "retry-1");
    }
    // A body that was never sent to the dead target is sent whole to the live one.
    let hc = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    for _ in 0..4 {
        let req = http::Request::post(lb.url("/upload"))
            .body(http_body_util::Full::new(bytes::Bytes::from(vec![b'x'; 5000])))
            .unwrap();
        let r = hc.request(req).await.unwrap();
        assert_eq!(r.status(), 200);
        let body = http_body_util::BodyExt::collect(r.into_body()).await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("body: 5000 bytes"));
    }
    let stats = lb.dp.listener_stats(&lb.listener_arn()).await.unwrap();
    assert!(
        stats.target_connection_errors.load(Ordering::Relaxed) >= 5,
        "the dead target was tried"
    );
    assert_eq!(stats.elb_5xx.load(Ordering::Relaxed), 0);
}
