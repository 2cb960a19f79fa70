use super::*;
use weir_model::autoscaling::{GroupInstance, GroupSpec, Lifecycle};

const NOW: u64 = 1_800_000_000_000;

fn state_with_group(desired: u32) -> State {
    let mut s = State::default();
    let t = s.ec2.create_launch_template("web", serde_json::json!({}), 0).unwrap();
    let spec = GroupSpec {
        launch_template: Some((Some(t.id), None, None)),
        min_size: Some(0),
        max_size: Some(10),
        desired_capacity: Some(desired),
        vpc_zone_identifier: Some("subnet-0000000000000000a,subnet-0000000000000000b".into()),
        ..Default::default()
    };
    s.create_auto_scaling_group("g", &spec, 0).unwrap();
    s
}

fn add(s: &mut State, id: &str, zone: &str, lifecycle: Lifecycle, launched_ms: u64) {
    let lt = s.auto_scaling_group("g").unwrap().launch_template.clone();
    s.add_group_instance(
        "g",
        GroupInstance {
            id: id.into(),
            availability_zone: zone.into(),
            lifecycle,
            healthy: true,
            address: "127.0.0.1".parse().unwrap(),
            port: 9000,
            launched_ms,
            terminating_since_ms: None,
            launch_template: lt,
        },
    )
    .unwrap();
}

fn seen(pairs: &[(&str, ProcessStatus)]) -> Observed {
    Observed {
        processes: pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(),
        unhealthy_targets: Vec::new(),
    }
}

#[test]
fn launches_up_to_the_desired_capacity_balancing_zones() {
    let mut s = state_with_group(3);
    add(&mut s, "i-a", "us-east-1a", Lifecycle::InService, 0);
    let steps = plan(&s, &seen(&[("i-a", ProcessStatus::Ready)]), NOW);
    let zones: Vec<&str> = steps
        .iter()
        .filter_map(|st| match st {
            Step::Launch { zone, .. } => Some(zone.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(zones, ["us-east-1b", "us-east-1a"], "{steps:?}");
}

#[test]
fn ready_pending_instances_are_activated_and_gone_ones_replaced() {
    let mut s = state_with_group(2);
    add(&mut s, "i-a", "us-east-1a", Lifecycle::Pending, NOW);
    add(&mut s, "i-b", "us-east-1b", Lifecycle::InService, 0);
    let steps = plan(&s, &seen(&[("i-a", ProcessStatus::Ready)]), NOW);
    assert!(steps.contains(&Step::Activate { group: "g".into(), id: "i-a".into() }), "{steps:?}");
    assert!(steps.iter().any(|st| matches!(st, Step::MarkUnhealthy { id, .. } if id == "i-b")));
    assert!(steps.iter().any(|st| matches!(st, Step::Terminate { id, .. } if id == "i-b")));
    assert!(
        steps.iter().any(|st| matches!(st, Step::Launch { zone, .. } if zone == "us-east-1b")),
        "the replacement goes to the zone that lost one: {steps:?}"
    );
}

#[test]
fn elb_health_counts_only_after_the_grace_period() {
    let mut s = state_with_group(1);
    let spec = GroupSpec {
        health_check_type: Some("ELB".into()),
        health_check_grace_period: Some(60),
        ..Default::default()
    };
    s.update_auto_scaling_group("g", &spec).unwrap();
    add(&mut s, "i-a", "us-east-1a", Lifecycle::InService, NOW - 30_000);
    let mut o = seen(&[("i-a", ProcessStatus::Ready)]);
    o.unhealthy_targets.push("i-a".into());
    assert!(plan(&s, &o, NOW).is_empty(), "within the grace period");
    let steps = plan(&s, &o, NOW + 31_000);
    assert!(steps.iter().any(|st| matches!(st, Step::Terminate { id, .. } if id == "i-a")));
}

#[test]
fn scale_in_takes_from_the_biggest_zone_then_by_policy() {
    let mut s = state_with_group(1);
    add(&mut s, "i-a1", "us-east-1a", Lifecycle::InService, 1_000);
    add(&mut s, "i-a2", "us-east-1a", Lifecycle::InService, 2_000);
    add(&mut s, "i-b1", "us-east-1b", Lifecycle::InService, 500);
    let o = seen(&[
        ("i-a1", ProcessStatus::Ready),
        ("i-a2", ProcessStatus::Ready),
        ("i-b1", ProcessStatus::Ready),
    ]);
    let spec = GroupSpec {
        termination_policies: Some(vec!["OldestInstance".into()]),
        ..Default::default()
    };
    s.update_auto_scaling_group("g", &spec).unwrap();
    let gone: Vec<String> = plan(&s, &o, NOW)
        .into_iter()
        .filter_map(|st| match st {
            Step::Terminate { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    // Zone a has two: its oldest goes first; then the zones are even and the oldest overall.
    assert_eq!(gone, ["i-a1", "i-b1"]);
}

#[test]
fn terminating_instances_stop_after_draining() {
    let mut s = state_with_group(0);
    add(&mut s, "i-a", "us-east-1a", Lifecycle::InService, 0);
    s.set_group_instance("g", "i-a", Lifecycle::Terminating, true, NOW).unwrap();
    let o = seen(&[("i-a", ProcessStatus::Ready)]);
    // No target groups: nothing to drain.
    assert_eq!(plan(&s, &o, NOW), [Step::Stop { group: "g".into(), id: "i-a".into() }]);
}

#[test]
fn group_validation_speaks_aws() {
    let mut s = state_with_group(1);
    let e = s.set_desired_capacity("g", 11).unwrap_err();
    assert!(e.message.contains("above max value 10"), "{e:?}");
    let e = s.create_auto_scaling_group("g", &GroupSpec::default(), 0).unwrap_err();
    assert_eq!(e.code.as_str(), "AlreadyExists");
    let e = s.set_desired_capacity("nope", 1).unwrap_err();
    assert_eq!(e.message, "AutoScalingGroup name not found - nope");
    add(&mut s, "i-a", "us-east-1a", Lifecycle::InService, 0);
    assert_eq!(s.delete_auto_scaling_group("g", false).unwrap_err().code.as_str(), "ResourceInUse");
    s.delete_auto_scaling_group("g", true).unwrap();
    assert_eq!(s.auto_scaling_group("g").unwrap().desired_capacity, 0);
    s.remove_group_instance("g", "i-a").unwrap();
    assert!(
        s.auto_scaling_group("g").is_err(),
        "a force-deleted group goes with its last instance"
    );
}
