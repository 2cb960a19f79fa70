//! Configuration changes made through the ELBv2 API reach the data plane live: continuous load
//! runs while rules, targets, attributes and the listener change, and no request fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use weir_dataplane::{Dataplane, DataplaneConfig};
use weir_tests::*;

struct ApiClient {
    addr: SocketAddr,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl ApiClient {
    async fn call(&self, params: &[(&str, &str)]) -> String {
        let mut body = form_urlencoded::Serializer::new(String::new());
        body.append_pair("Version", "2015-12-01");
        for (k, v) in params {
            body.append_pair(k, v);
        }
        let req = http::Request::post(format!("http://{}/", self.addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body.finish())))
            .unwrap();
        let resp = self.http.request(req).await.unwrap();
        let status = resp.status();
        let text = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes())
            .into_owned();
        assert!(status.is_success(), "{params:?} -> {status}: {text}");
        text
    }
}

fn field(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml.find(&open).unwrap_or_else(|| panic!("no {tag} in {xml}")) + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).unwrap() + start;
    xml[start..end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_changes_under_load_fail_no_request() {
    let b = backends("live", 3).await;
    let dp = Dataplane::new(DataplaneConfig::default());
    let store = weir_store::Store::in_memory(weir_model::State::default()).unwrap();
    let api = Arc::new(weir_api::Api {
        store: tokio::sync::Mutex::new(store),
        dataplane: dp.clone(),
        auth: None,
    });
    let (addr, _task) = weir_api::serve(api, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let c = ApiClient { addr, http: Client::builder(TokioExecutor::new()).build_http() };

    let lb = field(
        &c.call(&[
            ("Action", "CreateLoadBalancer"),
            ("Name", "live"),
            ("Subnets.member.1", "subnet-0000000000000000a"),
            ("Subnets.member.2", "subnet-0000000000000000b"),
        ])
        .await,
        "LoadBalancerArn",
    );
    let tg = field(
        &c.call(&[
            ("Action", "CreateTargetGroup"),
            ("Name", "live"),
            ("Protocol", "HTTP"),
            ("Port", "80"),
            ("TargetType", "ip"),
            ("HealthCheckPath", "/health"),
        ])
        .await,
        "TargetGroupArn",
    );
    let port = |i: usize| b[i].addr.port().to_string();
    let (p0, p1, p2) = (port(0), port(1), port(2));
    c.call(&[
        ("Action", "RegisterTargets"),
        ("TargetGroupArn", &tg),
        ("Targets.member.1.Id", "127.0.0.1"),
        ("Targets.member.1.Port", &p0),
        ("Targets.member.2.Id", "127.0.0.1"),
        ("Targets.member.2.Port", &p1),
    ])
    .await;
    let listen = free_port().to_string();
    let l = field(
        &c.call(&[
            ("Action", "CreateListener"),
            ("LoadBalancerArn", &lb),
            ("Protocol", "HTTP"),
            ("Port", &listen),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", &tg),
        ])
        .await,
        "ListenerArn",
    );
    let url = format!("http://127.0.0.1:{listen}");
    assert_eq!(get(&format!("{url}/")).await.status, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, url) =
            (stop.clone(), ok.clone(), failed.clone(), format!("{url}/load"));
        workers.push(tokio::spawn(async move {
            let c = client();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
                let r = send(&c, "GET", &url, &[]).await;
                let counter =
                    if r.status == 200 && r.backend().starts_with("live-") { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let pause = || tokio::time::sleep(Duration::from_millis(250));
    pause().await;
    let rule = field(
        &c.call(&[
            ("Action", "CreateRule"),
            ("ListenerArn", &l),
            ("Priority", "10"),
            ("Conditions.member.1.Field", "path-pattern"),
            ("Conditions.member.1.Values.member.1", "/new"),
            ("Actions.member.1.Type", "fixed-response"),
            ("Actions.member.1.FixedResponseConfig.StatusCode", "200"),
            ("Actions.member.1.FixedResponseConfig.MessageBody", "new rule"),
        ])
        .await,
        "RuleArn",
    );
    assert_eq!(
        get(&format!("{url}/new")).await.body,
        "new rule",
        "a new rule applies to the next request"
    );
    pause().await;
    c.call(&[
        ("Action", "RegisterTargets"),
        ("TargetGroupArn", &tg),
        ("Targets.member.1.Id", "127.0.0.1"),
        ("Targets.member.1.Port", &p2),
    ])
    .await;
    pause().await;
    c.call(&[
        ("Action", "ModifyTargetGroupAttributes"),
        ("TargetGroupArn", &tg),
        ("Attributes.member.1.Key", "load_balancing.algorithm.type"),
        ("Attributes.member.1.Value", "least_outstanding_requests"),
    ])
    .await;
    pause().await;
    c.call(&[
        ("Action", "DeregisterTargets"),
        ("TargetGroupArn", &tg),
        ("Targets.member.1.Id", "127.0.0.1"),
        ("Targets.member.1.Port", &p0),
    ])
    .await;
    let at_deregistration = b[0].requests();
    pause().await;
    c.call(&[
        ("Action", "ModifyRule"),
        ("RuleArn", &rule),
        ("Conditions.member.1.Field", "path-pattern"),
        ("Conditions.member.1.Values.member.1", "/newer"),
    ])
    .await;
    assert_eq!(get(&format!("{url}/newer")).await.body, "new rule");
    c.call(&[
        ("Action", "ModifyLoadBalancerAttributes"),
        ("LoadBalancerArn", &lb),
        ("Attributes.member.1.Key", "idle_timeout.timeout_seconds"),
        ("Attributes.member.1.Value", "30"),
    ])
    .await;
    pause().await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed while the API changed the configuration"
    );
    assert!(ok.load(Ordering::Relaxed) > 100, "the load ran: {}", ok.load(Ordering::Relaxed));
    assert!(b[2].requests() > 0, "the target registered under load received traffic");
    assert!(
        b[0].requests() <= at_deregistration + 4,
        "the deregistered target got no new requests"
    );
    let health = c.call(&[("Action", "DescribeTargetHealth"), ("TargetGroupArn", &tg)]).await;
    assert!(
        health.contains(&format!("<Port>{p0}</Port>"))
            == health.contains("<State>draining</State>"),
        "{health}"
    );
    dp.shutdown().await;
}
