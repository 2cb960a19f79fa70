//! Auto Scaling's reconciliation driven with a test clock: a recurring scheduled action runs in
//! its cron minute, once, and not outside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use weir_dataplane::{Dataplane, DataplaneConfig};
use weir_model::autoscaling::{GroupSpec, ScheduledAction};
use weir_model::State;

/// 2026-11-23 09:30:00 UTC, in ms.
const T0930: u64 = 1_795_426_200_000;

/// A state with group `g` (0–5 instances, `desired`) whose launch template has no user data:
/// launches fail (and are recorded) instead of starting processes.
fn state_with_group(desired: u32) -> State {
    let mut state = State::default();
    let t = state.ec2.create_launch_template("tpl", serde_json::json!({}), 0).unwrap();
    let spec = GroupSpec {
        launch_template: Some((Some(t.id), None, None)),
        min_size: Some(0),
        max_size: Some(5),
        desired_capacity: Some(desired),
        availability_zones: Some(vec!["us-east-1a".into()]),
        ..Default::default()
    };
    state.create_auto_scaling_group("g", &spec, 0).unwrap();
    state
}

fn api_over(state: State) -> weir_api::Api {
    weir_api::Api {
        store: tokio::sync::Mutex::new(weir_store::Store::in_memory(state).unwrap()),
        dataplane: Dataplane::new(DataplaneConfig::default()),
        auth: None,
        metrics: Arc::default(),
    }
}

fn desired(api: &weir_api::Api) -> u32 {
    let store = api.store.try_lock().unwrap();
    store.state().auto_scaling_group("g").unwrap().desired_capacity
}

#[tokio::test]
async fn a_recurring_schedule_runs_in_its_minute_with_a_test_clock() {
    let mut state = state_with_group(0);
    state
        .put_scheduled_action(ScheduledAction {
            name: "morning".into(),
            arn: String::new(),
            group: "g".into(),
            recurrence: Some("30 9 * * MON-FRI".into()),
            start_ms: None,
            end_ms: None,
            time_zone: Some("UTC".into()),
            min_size: None,
            max_size: None,
            desired_capacity: Some(3),
            last_run_ms: None,
        })
        .unwrap();
    let api = api_over(state);
    let dir = std::env::temp_dir().join(format!("weir-sched-{}", std::process::id()));
    let scaling = weir_api::Scaling::new(&dir);

    scaling.run_once(&api, T0930 - 1_000).await;
    assert_eq!(desired(&api), 0, "09:29:59 is not the minute");
    scaling.run_once(&api, T0930 + 5_000).await;
    assert_eq!(desired(&api), 3, "09:30 is");
    {
        let store = api.store.lock().await;
        let acts = &store.state().auto_scaling.activities;
        assert!(acts.iter().any(|a| a.description == "Executing scheduled action morning"));
        // The launches it asked for failed (no user data) and said why.
        assert!(acts.iter().any(|a| a.status_code == "Failed"
            && a.status_message.as_deref().unwrap_or_default().contains("UserData")));
    }
    // Put back by hand: the same minute does not run it again, the next day's does.
    api.store.lock().await.apply("test", "", 0, |s| s.set_desired_capacity("g", 0)).unwrap();
    scaling.run_once(&api, T0930 + 40_000).await;
    assert_eq!(desired(&api), 0, "once per minute");
    scaling.run_once(&api, T0930 + 86_400_000).await;
    assert_eq!(desired(&api), 3, "Tuesday 09:30");
    api.store.lock().await.apply("test", "", 0, |s| s.set_desired_capacity("g", 0)).unwrap();
    scaling.run_once(&api, T0930 + 5 * 86_400_000).await;
    assert_eq!(desired(&api), 0, "not on Saturday");
    scaling.provider.stop_all().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_alarm_going_into_alarm_runs_the_step_policy_it_names() {
    use weir_model::alarm::{MetricAlarm, Threshold};
    use weir_model::autoscaling::{PolicySpec, StepAdjustment};
    use weir_telemetry::alarm::AlarmState;
    let mut state = state_with_group(1);
    let step = |lower: Option<f64>, upper: Option<f64>, adjustment| StepAdjustment {
        lower: lower.map(Threshold),
        upper: upper.map(Threshold),
        adjustment,
    };
    let arn = state
        .put_scaling_policy(
            "g",
            "out",
            PolicySpec {
                policy_type: Some("StepScaling".into()),
                adjustment_type: Some("ChangeInCapacity".into()),
                step_adjustments: vec![step(Some(0.0), Some(100.0), 1), step(Some(100.0), None, 3)],
                ..Default::default()
            },
        )
        .unwrap();
    let api = api_over(state);
    // The alarm's metric: 350 requests in the minute before now, against a threshold of 200.
    let now_s = T0930 / 1000;
    let id = weir_telemetry::MetricId::new(
        "AWS/ApplicationELB",
        "RequestCount",
        &[("LoadBalancer", "app/x/1")],
    );
    api.metrics.sample(id, "Count", weir_telemetry::Kind::Counter, 350.0, now_s - 60);
    let alarm = MetricAlarm {
        name: "busy".into(),
        arn: "arn:aws:cloudwatch:us-east-1:123456789012:alarm:busy".into(),
        description: None,
        namespace: "AWS/ApplicationELB".into(),
        metric_name: "RequestCount".into(),
        dimensions: vec![("LoadBalancer".into(), "app/x/1".into())],
        statistic: "Sum".into(),
        period: 60,
        evaluation_periods: 1,
        datapoints_to_alarm: 1,
        threshold: Threshold(200.0),
        comparison: "GreaterThanThreshold".into(),
        treat_missing_data: "missing".into(),
        actions_enabled: true,
        alarm_actions: vec![arn.clone()],
        ok_actions: vec![],
        insufficient_data_actions: vec![],
        unit: None,
        updated_ms: 0,
    };
    let dir = std::env::temp_dir().join(format!("weir-alarmed-{}", std::process::id()));
    let scaling = weir_api::Scaling::new(&dir);
    scaling.on_alarms(&api, &[(alarm.clone(), AlarmState::Ok)], T0930).await;
    assert_eq!(desired(&api), 1, "OK runs nothing");
    scaling.on_alarms(&api, &[(alarm.clone(), AlarmState::Alarm)], T0930).await;
    assert_eq!(desired(&api), 4, "a breach of 150 takes the +3 step");
    let disabled = MetricAlarm { actions_enabled: false, ..alarm };
    scaling.on_alarms(&api, &[(disabled, AlarmState::Alarm)], T0930).await;
    assert_eq!(desired(&api), 4, "actions disabled");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `aws autoscaling ARGS` against the API at `addr`: Ok(JSON) or Err(stderr).
async fn aws_autoscaling(
    addr: std::net::SocketAddr,
    args: &[&str],
) -> Result<serde_json::Value, String> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("aws")
            .args(["--endpoint-url", &format!("http://{addr}"), "--region", "us-east-1"])
            .args(["--output", "json", "autoscaling"])
            .args(&args)
            .env("AWS_ACCESS_KEY_ID", "AKIDWEIRTEST")
            .env("AWS_SECRET_ACCESS_KEY", "weir-test-secret")
            .env("AWS_PAGER", "")
            .output()
            .expect("the aws CLI is installed");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok(if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        })
    })
    .await
    .unwrap()
}

/// The CPU history the predictive test seeds: 240 % in total (five instances' worth at a
/// target of 50) from 09:00 to 17:00 UTC, 20 % otherwise.
fn busy_cpu(secs: u64) -> f64 {
    if (9..17).contains(&(secs / 3600 % 24)) {
        240.0
    } else {
        20.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictive_scaling_forecasts_from_history_and_scales_ahead_of_the_hour() {
    let api = Arc::new(api_over(state_with_group(1)));
    // Three days of per-minute CPU history up to the current hour (real time: the forecast
    // API forecasts from now).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let this_hour = now - now % 3600;
    let cpu = weir_telemetry::MetricId::new(
        "AWS/EC2",
        "CPUUtilization",
        &[("AutoScalingGroupName", "g")],
    );
    for m in 0..3 * 24 * 60 {
        let t = this_hour - 3 * 86_400 + m * 60;
        api.metrics.sample(cpu.clone(), "Percent", weir_telemetry::Kind::Gauge, busy_cpu(t), t);
    }
    let (addr, _task) = weir_api::serve(api.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let put = |mode: &str| {
        let config = format!(
            r#"{{"MetricSpecifications":[{{"TargetValue":50,"PredefinedMetricPairSpecification":{{"PredefinedMetricType":"ASGCPUUtilization"}}}}],"Mode":"{mode}","SchedulingBufferTime":300}}"#
        );
        let args = [
            "put-scaling-policy",
            "--auto-scaling-group-name",
            "g",
            "--policy-name",
            "forecast",
            "--policy-type",
            "PredictiveScaling",
            "--predictive-scaling-configuration",
        ]
        .map(String::from);
        async move {
            let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
            a.push(&config);
            aws_autoscaling(addr, &a).await
        }
    };
    put("ForecastOnly").await.unwrap();
    let pols = aws_autoscaling(addr, &["describe-policies", "--auto-scaling-group-name", "g"])
        .await
        .unwrap();
    let c = &pols["ScalingPolicies"][0]["PredictiveScalingConfiguration"];
    assert_eq!(c["Mode"], "ForecastOnly", "{pols}");
    assert_eq!(c["MetricSpecifications"][0]["TargetValue"], 50.0, "{pols}");

    // The forecast: 48 hours from this hour, the daily pattern, and the capacity it takes.
    let iso = |s: u64| weir_model::time::iso8601(s);
    let f = aws_autoscaling(
        addr,
        &[
            "get-predictive-scaling-forecast",
            "--auto-scaling-group-name",
            "g",
            "--policy-name",
            "forecast",
            "--start-time",
            &iso(this_hour),
            "--end-time",
            &iso(this_hour + 48 * 3600),
        ],
    )
    .await
    .unwrap();
    let load = &f["LoadForecast"][0];
    let times = load["Timestamps"].as_array().unwrap();
    assert!(times.len() >= 47, "48 hours (47 if the hour turned meanwhile): {f}");
    assert_eq!(
        load["MetricSpecification"]["PredefinedMetricPairSpecification"]["PredefinedMetricType"],
        "ASGCPUUtilization"
    );
    for (i, t) in times.iter().enumerate() {
        let hour: u64 = t.as_str().unwrap()[11..13].parse().unwrap();
        let expect = busy_cpu(hour * 3600);
        assert!((load["Values"][i].as_f64().unwrap() - expect).abs() < 1e-6, "{t}: {f}");
        let capacity = f["CapacityForecast"]["Values"][i].as_f64().unwrap();
        assert_eq!(capacity, if expect > 100.0 { 5.0 } else { 1.0 }, "{t}: {f}");
    }

    // Bad input is refused and changes nothing.
    let err = put("Sometimes").await.unwrap_err();
    assert!(err.contains("ValidationError") && err.contains("mode"), "{err}");
    let err = aws_autoscaling(
        addr,
        &[
            "get-predictive-scaling-forecast",
            "--auto-scaling-group-name",
            "g",
            "--policy-name",
            "nope",
            "--start-time",
            &iso(this_hour),
            "--end-time",
            &iso(this_hour + 3600),
        ],
    )
    .await
    .unwrap_err();
    assert!(err.contains("ValidationError"), "{err}");

    // With a test clock: the next 09:00 UTC, when the busy hours start.
    let mut nine = this_hour - this_hour % 86_400 + 9 * 3600;
    while nine <= this_hour + 3600 {
        nine += 86_400;
    }
    let dir = std::env::temp_dir().join(format!("weir-predict-{}", std::process::id()));
    let scaling = weir_api::Scaling::new(&dir);
    scaling.run_once(&api, nine * 1000 - 240_000).await;
    assert_eq!(desired(&api), 1, "ForecastOnly never scales");
    put("ForecastAndScale").await.unwrap();
    scaling.run_once(&api, nine * 1000 - 360_000).await;
    assert_eq!(desired(&api), 1, "08:54: the busy hour is more than the 300 s buffer away");
    scaling.run_once(&api, nine * 1000 - 240_000).await;
    assert_eq!(desired(&api), 5, "08:56: raised to the forecast for 09:00");
    let acts =
        aws_autoscaling(addr, &["describe-scaling-activities", "--auto-scaling-group-name", "g"])
            .await
            .unwrap();
    assert!(acts.to_string().contains("Executing predictive scaling policy forecast"), "{acts}");
    // Held for the hour: put back by hand, the next reconciliation raises it again.
    api.store.lock().await.apply("test", "", 0, |s| s.set_desired_capacity("g", 2)).unwrap();
    scaling.run_once(&api, nine * 1000 + 1_800_000).await;
    assert_eq!(desired(&api), 5);
    // Quiet hours forecast less; predictive scaling does not scale in.
    api.store.lock().await.apply("test", "", 0, |s| s.set_desired_capacity("g", 2)).unwrap();
    scaling.run_once(&api, nine * 1000 + 9 * 3600 * 1000).await;
    assert_eq!(desired(&api), 2, "18:00: a forecast of 1 leaves 2 alone");
    scaling.provider.stop_all().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A launch provider other than local processes: each instance is a demo backend served by
/// this test's runtime on a loopback port.
#[derive(Debug, Default)]
struct InProcess {
    running: std::sync::Mutex<
        std::collections::HashMap<String, (std::net::SocketAddr, Option<weir_demo::DemoBackend>)>,
    >,
}

impl weir_scale::LaunchProvider for InProcess {
    fn launch(
        &self,
        id: &str,
        _zone: &str,
        _script: &str,
    ) -> Result<weir_scale::Launched, weir_scale::LaunchError> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        self.running.lock().unwrap().insert(id.to_string(), (addr, None));
        Ok(weir_scale::Launched { address: addr.ip(), port: addr.port() })
    }

    fn status<'a>(&'a self, id: &'a str) -> weir_scale::BoxFuture<'a, weir_scale::ProcessStatus> {
        Box::pin(async move {
            let Some((addr, started)) =
                self.running.lock().unwrap().get(id).map(|(a, b)| (*a, b.is_some()))
            else {
                return weir_scale::ProcessStatus::Gone;
            };
            if !started {
                // Started on the first look, as a process comes up a moment after its launch.
                let b = weir_demo::DemoBackend::start(addr, id).await.unwrap();
                if let Some(r) = self.running.lock().unwrap().get_mut(id) {
                    r.1 = Some(b);
                }
                return weir_scale::ProcessStatus::Starting;
            }
            match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => weir_scale::ProcessStatus::Ready,
                Err(_) => weir_scale::ProcessStatus::Starting,
            }
        })
    }

    fn cpu_seconds(&self, _id: &str) -> Option<f64> {
        None
    }

    fn stop<'a>(&'a self, id: &'a str) -> weir_scale::BoxFuture<'a, ()> {
        Box::pin(async move {
            self.running.lock().unwrap().remove(id);
        })
    }

    fn stop_all(&self) -> weir_scale::BoxFuture<'_, ()> {
        Box::pin(async move { self.running.lock().unwrap().clear() })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_run_on_any_launch_provider() {
    let mut state = State::default();
    let t = state
        .ec2
        .create_launch_template("tpl", serde_json::json!({"UserData": "c2VydmU="}), 0)
        .unwrap();
    let spec = GroupSpec {
        launch_template: Some((Some(t.id), None, None)),
        min_size: Some(0),
        max_size: Some(3),
        desired_capacity: Some(2),
        availability_zones: Some(vec!["us-east-1a".into(), "us-east-1b".into()]),
        ..Default::default()
    };
    state.create_auto_scaling_group("g", &spec, 0).unwrap();
    let api = api_over(state);
    let provider = Arc::new(InProcess::default());
    let scaling = weir_api::Scaling::with_provider(provider.clone(), 60_000, 300_000);
    let in_service = |api: &weir_api::Api| {
        let store = api.store.try_lock().unwrap();
        let g = store.state().auto_scaling_group("g").unwrap();
        g.instances
            .values()
            .filter(|i| i.lifecycle == weir_model::autoscaling::Lifecycle::InService)
            .map(|i| (i.id.clone(), i.port))
            .collect::<Vec<_>>()
    };
    let mut now = T0930;
    for _ in 0..5 {
        scaling.run_once(&api, now).await;
        now += 1000;
    }
    let up = in_service(&api);
    assert_eq!(up.len(), 2, "two instances in service");
    // They are real servers on the ports the group recorded, answering with their ids.
    for (id, port) in &up {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", *port)).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).await.unwrap();
        assert!(body.contains(id.as_str()), "{body}");
    }
    // Scaled in to one: the provider is told to stop the other.
    api.store.lock().await.apply("test", "", 0, |s| s.set_desired_capacity("g", 1)).unwrap();
    for _ in 0..3 {
        scaling.run_once(&api, now).await;
        now += 1000;
    }
    assert_eq!(in_service(&api).len(), 1);
    assert_eq!(provider.running.lock().unwrap().len(), 1, "one stopped");
    scaling.provider.stop_all().await;
    assert!(provider.running.lock().unwrap().is_empty());
}
