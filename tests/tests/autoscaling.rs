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
