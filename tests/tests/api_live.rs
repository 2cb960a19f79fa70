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
        metrics: Arc::default(),
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

/// CloudWatch over its three wire protocols (Query XML, AWS JSON 1.0, Smithy RPC v2 CBOR)
/// answers from one registry, with errors in each protocol's form.
#[tokio::test]
async fn cloudwatch_speaks_query_json_and_cbor() {
    let dp = Dataplane::new(DataplaneConfig::default());
    let store = weir_store::Store::in_memory(weir_model::State::default()).unwrap();
    let metrics = Arc::new(weir_telemetry::Registry::default());
    let id = weir_telemetry::MetricId::new(
        weir_telemetry::ALB,
        "RequestCount",
        &[("LoadBalancer", "app/x/1")],
    );
    metrics.sample(id, "Count", weir_telemetry::Kind::Counter, 4.0, 1_800_000_000);
    let api = Arc::new(weir_api::Api {
        store: tokio::sync::Mutex::new(store),
        dataplane: dp,
        auth: None,
        metrics,
    });
    let (addr, _task) = weir_api::serve(api, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let http: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let post = |path: &str, headers: &[(&str, &str)], body: Vec<u8>| {
        let mut b = http::Request::post(format!("http://{addr}{path}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::from(body))).unwrap();
        let http = http.clone();
        async move {
            let r = http.request(req).await.unwrap();
            let status = r.status().as_u16();
            let h = r.headers().clone();
            (status, h, r.into_body().collect().await.unwrap().to_bytes().to_vec())
        }
    };
    // Query.
    let form = "Action=GetMetricStatistics&Version=2010-08-01&Namespace=AWS%2FApplicationELB&MetricName=RequestCount&Dimensions.member.1.Name=LoadBalancer&Dimensions.member.1.Value=app%2Fx%2F1&StartTime=2027-01-15T07%3A00%3A00Z&EndTime=2027-01-15T09%3A00%3A00Z&Period=60&Statistics.member.1=Sum";
    let (s, _, body) =
        post("/", &[("content-type", "application/x-www-form-urlencoded")], form.into()).await;
    let xml = String::from_utf8(body).unwrap();
    assert_eq!(s, 200, "{xml}");
    assert!(
        xml.contains("<Timestamp>2027-01-15T08:00:00Z</Timestamp><Sum>4.0</Sum><Unit>Count</Unit>"),
        "{xml}"
    );
    assert!(xml.contains("xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\""), "{xml}");
    // JSON 1.0.
    let json = serde_json::json!({"Namespace": "AWS/ApplicationELB"});
    let (s, _, body) = post(
        "/",
        &[
            ("x-amz-target", "GraniteServiceVersion20100801.ListMetrics"),
            ("content-type", "application/x-amz-json-1.0"),
        ],
        serde_json::to_vec(&json).unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["Metrics"][0]["MetricName"], "RequestCount");
    assert_eq!(v["Metrics"][0]["Dimensions"][0]["Value"], "app/x/1");
    // CBOR: a timestamp-tagged request, and an error with the query-compatible header.
    use ciborium::Value as C;
    let req = C::Map(vec![
        (C::Text("Namespace".into()), C::Text("AWS/ApplicationELB".into())),
        (C::Text("MetricName".into()), C::Text("RequestCount".into())),
        (
            C::Text("Dimensions".into()),
            C::Array(vec![C::Map(vec![
                (C::Text("Name".into()), C::Text("LoadBalancer".into())),
                (C::Text("Value".into()), C::Text("app/x/1".into())),
            ])]),
        ),
        (C::Text("StartTime".into()), C::Tag(1, Box::new(C::Float(1_799_999_000.0)))),
        (C::Text("EndTime".into()), C::Tag(1, Box::new(C::Integer(1_800_001_000u64.into())))),
        (C::Text("Period".into()), C::Integer(300.into())),
        (C::Text("Statistics".into()), C::Array(vec![C::Text("Sum".into())])),
    ]);
    let mut bytes = Vec::new();
    ciborium::into_writer(&req, &mut bytes).unwrap();
    let path = "/service/GraniteServiceVersion20100801/operation/GetMetricStatistics";
    let cbor = [("smithy-protocol", "rpc-v2-cbor"), ("content-type", "application/cbor")];
    let (s, h, body) = post(path, &cbor, bytes).await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "application/cbor");
    let v: C = ciborium::from_reader(&body[..]).unwrap();
    let dp = v.as_map().unwrap().iter().find(|(k, _)| k.as_text() == Some("Datapoints")).unwrap();
    let first = dp.1.as_array().unwrap()[0].as_map().unwrap().clone();
    let get = |k: &str| first.iter().find(|(x, _)| x.as_text() == Some(k)).unwrap().1.clone();
    assert_eq!(get("Sum"), C::Float(4.0));
    assert_eq!(get("Timestamp"), C::Tag(1, Box::new(C::Integer(1_800_000_000u64.into()))));
    let mut empty = Vec::new();
    ciborium::into_writer(&C::Map(vec![]), &mut empty).unwrap();
    let (s, h, body) = post(path, &cbor, empty).await;
    assert_eq!(s, 400);
    assert_eq!(h["x-amzn-query-error"], "MissingParameter;Sender");
    let v: C = ciborium::from_reader(&body[..]).unwrap();
    assert!(format!("{v:?}").contains("com.amazonaws.cloudwatch#MissingParameter"), "{v:?}");
    let (s, _, _) = post(path, &cbor, b"\xff\xff".to_vec()).await;
    assert_eq!(s, 400);
}

/// An alarm put through the API goes to ALARM when M of the last N complete periods breach,
/// and back to OK when they stop.
#[tokio::test]
async fn alarms_follow_the_metric() {
    let dp = Dataplane::new(DataplaneConfig::default());
    let store = weir_store::Store::in_memory(weir_model::State::default()).unwrap();
    let metrics = Arc::new(weir_telemetry::Registry::default());
    let api = Arc::new(weir_api::Api {
        store: tokio::sync::Mutex::new(store),
        dataplane: dp,
        auth: None,
        metrics: metrics.clone(),
    });
    let (addr, _task) = weir_api::serve(api.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let http: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let query = |form: String| {
        let req = http::Request::post(format!("http://{addr}/"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .unwrap();
        let http = http.clone();
        async move {
            let r = http.request(req).await.unwrap();
            let ok = r.status().is_success();
            let text = String::from_utf8_lossy(&r.into_body().collect().await.unwrap().to_bytes())
                .into_owned();
            assert!(ok, "{text}");
            text
        }
    };
    query("Action=PutMetricAlarm&Version=2010-08-01&AlarmName=busy&Namespace=AWS%2FApplicationELB&MetricName=RequestCountPerTarget&Dimensions.member.1.Name=TargetGroup&Dimensions.member.1.Value=targetgroup%2Fweb%2F1&Statistic=Sum&Period=60&EvaluationPeriods=3&DatapointsToAlarm=2&Threshold=100&ComparisonOperator=GreaterThanOrEqualToThreshold&AlarmActions.member.1=arn%3Aaws%3Aautoscaling%3Aus-east-1%3A123456789012%3AscalingPolicy%3Ax".into()).await;
    let id = weir_telemetry::MetricId::new(
        weir_telemetry::ALB,
        "RequestCountPerTarget",
        &[("TargetGroup", "targetgroup/web/1")],
    );
    let t0 = 1_900_000_020; // a minute boundary
    let add =
        |v: f64, at: u64| metrics.sample(id.clone(), "Count", weir_telemetry::Kind::Counter, v, at);
    add(150.0, t0 - 180);
    add(20.0, t0 - 120);
    assert!(api.evaluate_alarms(t0).await.iter().all(|(_, s)| s.as_str() == "OK"));
    add(120.0, t0 - 60);
    let changed = api.evaluate_alarms(t0).await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].1.as_str(), "ALARM");
    assert_eq!(changed[0].0.alarm_actions.len(), 1);
    // No change, no report.
    assert!(api.evaluate_alarms(t0 + 30).await.is_empty());
    let xml =
        query("Action=DescribeAlarms&Version=2010-08-01&AlarmNames.member.1=busy".into()).await;
    assert!(xml.contains("<StateValue>ALARM</StateValue>"), "{xml}");
    assert!(xml.contains("Threshold Crossed: 2 out of the last 3 datapoints"), "{xml}");
    assert!(xml.contains("<EvaluationPeriods>3</EvaluationPeriods>"), "{xml}");
    // SetAlarmState holds until the next evaluation.
    query(
        "Action=SetAlarmState&Version=2010-08-01&AlarmName=busy&StateValue=OK&StateReason=drill"
            .into(),
    )
    .await;
    let xml = query("Action=DescribeAlarms&Version=2010-08-01&StateValue=OK".into()).await;
    assert!(xml.contains("<StateReason>drill</StateReason>"), "{xml}");
    assert_eq!(api.evaluate_alarms(t0 + 30).await.len(), 1, "back to ALARM");
    // Quiet minutes bring it back to OK.
    add(10.0, t0);
    add(10.0, t0 + 60);
    let changed = api.evaluate_alarms(t0 + 120).await;
    assert_eq!(changed.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>(), ["OK"]);
}
