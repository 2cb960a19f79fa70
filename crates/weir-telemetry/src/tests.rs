use super::*;

fn id(name: &str) -> MetricId {
    MetricId::new(ALB, name, &[("LoadBalancer", "app/web/1"), ("AvailabilityZone", "us-east-1a")])
}

#[test]
fn samples_fold_into_minutes_and_periods() {
    let r = Registry::default();
    let t0 = 1_700_000_100; // a 5-minute boundary
    r.sample(id("RequestCount"), "Count", Kind::Counter, 3.0, t0);
    r.sample(id("RequestCount"), "Count", Kind::Counter, 4.0, t0 + 59);
    r.sample(id("RequestCount"), "Count", Kind::Counter, 5.0, t0 + 60);
    r.sample(id("RequestCount"), "Count", Kind::Counter, 1.0, t0 + 300);
    let per_minute = r.statistics(&id("RequestCount"), t0, t0 + 600, 60);
    assert_eq!(per_minute.len(), 3);
    assert_eq!(per_minute[0].0, t0);
    assert_eq!(per_minute[0].1.get("Sum"), Some(7.0));
    assert_eq!(per_minute[0].1.get("SampleCount"), Some(2.0));
    assert_eq!(per_minute[0].1.get("Average"), Some(3.5));
    assert_eq!(
        (per_minute[0].1.get("Minimum"), per_minute[0].1.get("Maximum")),
        (Some(3.0), Some(4.0))
    );
    let five = r.statistics(&id("RequestCount"), t0, t0 + 600, 300);
    assert_eq!(
        five.iter().map(|(t, s)| (*t, s.sum)).collect::<Vec<_>>(),
        vec![(t0, 12.0), (t0 + 300, 1.0)]
    );
    // The end is exclusive and unknown series are empty.
    assert_eq!(r.statistics(&id("RequestCount"), t0, t0 + 60, 60).len(), 1);
    assert!(r.statistics(&id("Nope"), t0, t0 + 600, 60).is_empty());
}

#[test]
fn retention_drops_the_oldest_minutes() {
    let r = Registry::new(3);
    for m in 0..5u64 {
        r.sample(id("X"), "Count", Kind::Gauge, m as f64, m * 60);
    }
    let all = r.statistics(&id("X"), 0, 1000, 60);
    assert_eq!(all.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![120, 180, 240]);
}

#[test]
fn list_filters_by_namespace_name_and_dimensions() {
    let r = Registry::default();
    r.sample(id("RequestCount"), "Count", Kind::Counter, 1.0, 0);
    r.sample(
        MetricId::new(ALB, "RequestCount", &[("LoadBalancer", "app/web/1")]),
        "Count",
        Kind::Counter,
        1.0,
        0,
    );
    r.sample(
        MetricId::new(NLB, "NewFlowCount", &[("LoadBalancer", "net/n/2")]),
        "Count",
        Kind::Counter,
        1.0,
        0,
    );
    assert_eq!(r.list(Some(ALB), None, &[]).len(), 2);
    assert_eq!(r.list(None, Some("NewFlowCount"), &[]).len(), 1);
    let az = [("AvailabilityZone".to_string(), None)];
    assert_eq!(r.list(Some(ALB), Some("RequestCount"), &az), vec![id("RequestCount")]);
    let wrong = [("LoadBalancer".to_string(), Some("app/other/9".to_string()))];
    assert!(r.list(None, None, &wrong).is_empty());
}

#[test]
fn prometheus_text_has_types_labels_and_current_values() {
    let r = Registry::default();
    r.sample(id("RequestCount"), "Count", Kind::Counter, 2.0, 0);
    r.sample(id("RequestCount"), "Count", Kind::Counter, 3.0, 60);
    r.sample(id("HealthyHostCount"), "Count", Kind::Gauge, 4.0, 0);
    r.sample(id("HealthyHostCount"), "Count", Kind::Gauge, 1.0, 60);
    let text = r.prometheus();
    assert!(text.contains("# TYPE RequestCount counter\n"), "{text}");
    assert!(text.contains(
        "RequestCount{namespace=\"AWS/ApplicationELB\",AvailabilityZone=\"us-east-1a\",LoadBalancer=\"app/web/1\"} 5\n"
    ), "{text}");
    assert!(text.contains("# TYPE HealthyHostCount gauge\n"));
    assert!(text.contains("HealthyHostCount{namespace=\"AWS/ApplicationELB\",AvailabilityZone=\"us-east-1a\",LoadBalancer=\"app/web/1\"} 1\n"));
}

#[test]
fn save_and_load_round_trip() {
    let dir = std::env::temp_dir().join(format!("weir-telemetry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("metrics.json");
    let r = Registry::default();
    r.sample(id("RequestCount"), "Count", Kind::Counter, 9.0, 120);
    r.save(&path).unwrap();
    let back = Registry::default();
    back.load(&path).unwrap();
    assert_eq!(
        back.statistics(&id("RequestCount"), 0, 1000, 60),
        r.statistics(&id("RequestCount"), 0, 1000, 60)
    );
    Registry::default().load(&dir.join("missing.json")).unwrap();
    std::fs::write(&path, b"not json").unwrap();
    assert!(back.load(&path).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
