use super::*;
use crate::template::parse_template;

const T: &str = r#"
Parameters:
  Port:
    Type: Number
    Default: 8080
Resources:
  Web:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties:
      Name: web
      Protocol: HTTP
      Port: 80
      TargetType: ip
      HealthCheckPath: /health
      Matcher: { HttpCode: "200-299" }
      TargetGroupAttributes:
        - { Key: load_balancing.algorithm.type, Value: least_outstanding_requests }
      Targets:
        - { Id: 127.0.0.1, Port: 9001 }
  LB:
    Type: AWS::ElasticLoadBalancingV2::LoadBalancer
    Properties:
      Name: demo
      LoadBalancerAttributes:
        - { Key: idle_timeout.timeout_seconds, Value: "5" }
  Http:
    Type: AWS::ElasticLoadBalancingV2::Listener
    Properties:
      LoadBalancerArn: !Ref LB
      Port: !Ref Port
      Protocol: HTTP
      DefaultActions:
        - Type: fixed-response
          FixedResponseConfig: { StatusCode: "404", ContentType: text/plain, MessageBody: nope }
  Api:
    Type: AWS::ElasticLoadBalancingV2::ListenerRule
    Properties:
      ListenerArn: !Ref Http
      Priority: 10
      Conditions:
        - Field: path-pattern
          PathPatternConfig: { Values: ["/api/*"] }
      Actions:
        - Type: forward
          TargetGroupArn: !Ref Web
Outputs:
  Dns:
    Value: !GetAtt LB.DNSName
  Url:
    Value: !Sub "http://${LB.DNSName}:${Port}/"
"#;

#[test]
fn deploys_in_dependency_order() {
    let t = parse_template(T).unwrap();
    let mut s = State::default();
    let d = deploy(&t, "quick", &BTreeMap::new(), &mut s, 0).unwrap();
    let order: Vec<&str> = d.resources.iter().map(|r| r.logical_id.as_str()).collect();
    let pos = |x: &str| order.iter().position(|o| *o == x).unwrap();
    assert!(pos("LB") < pos("Http") && pos("Http") < pos("Api") && pos("Web") < pos("Api"));
    assert_eq!(s.listeners.values().next().unwrap().port, 8080);
    let tg = s.target_groups.values().next().unwrap();
    assert_eq!(tg.algorithm(), "least_outstanding_requests");
    assert_eq!(tg.health_check.path.as_deref(), Some("/health"));
    assert_eq!(tg.targets[0].port, 9001);
    assert!(d.outputs["Dns"].starts_with("demo-"));
    assert!(d.outputs["Url"].ends_with(":8080/"));
    assert_eq!(
        s.load_balancers.values().next().unwrap().attributes.get("idle_timeout.timeout_seconds"),
        Some("5")
    );
}

#[test]
fn failure_leaves_state_untouched() {
    let bad = T.replace("Priority: 10", "Priority: 0");
    let t = parse_template(&bad).unwrap();
    let mut s = State::default();
    let e = deploy(&t, "quick", &BTreeMap::new(), &mut s, 0).unwrap_err();
    match e {
        StackError::Resource { logical_id, .. } => assert_eq!(logical_id, "Api"),
        other => panic!("{other}"),
    }
    assert_eq!(s, State::default());
}

#[test]
fn unsupported_types_and_parameters() {
    let t = parse_template("Resources:\n  Fn:\n    Type: AWS::Lambda::Function\n").unwrap();
    let e = deploy(&t, "s", &BTreeMap::new(), &mut State::default(), 0).unwrap_err();
    assert!(e.to_string().contains("Fn") && e.to_string().contains("AWS::Lambda::Function"), "{e}");
    let t = parse_template(T).unwrap();
    let p = BTreeMap::from([("Nope".to_string(), "1".to_string())]);
    assert!(deploy(&t, "s", &p, &mut State::default(), 0)
        .unwrap_err()
        .to_string()
        .contains("do not exist"));
    let p = BTreeMap::from([("Port".to_string(), "eighty".to_string())]);
    assert!(deploy(&t, "s", &p, &mut State::default(), 0).is_err());
    let cyc = parse_template("Resources:\n  A:\n    Type: AWS::ElasticLoadBalancingV2::Listener\n    Properties: { LoadBalancerArn: !Ref B }\n  B:\n    Type: AWS::ElasticLoadBalancingV2::Listener\n    Properties: { LoadBalancerArn: !Ref A }\n").unwrap();
    assert!(deploy(&cyc, "s", &BTreeMap::new(), &mut State::default(), 0)
        .unwrap_err()
        .to_string()
        .contains("Circular"));
}

#[test]
fn auto_scaling_resources_deploy_from_the_example() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/autoscaling.yaml"
    ))
    .unwrap();
    let t = parse_template(&text).unwrap();
    let mut state = State::default();
    let d = deploy(&t, "asg", &BTreeMap::new(), &mut state, 0).unwrap();
    let g = state.auto_scaling_group("web").unwrap();
    assert_eq!((g.min_size, g.max_size, g.desired_capacity), (2, 6, 2));
    assert_eq!(g.availability_zones, ["us-east-1a", "us-east-1b"]);
    assert_eq!(g.health_check_type, "ELB");
    assert_eq!(g.launch_template.version, "1");
    assert_eq!(g.target_group_arns.len(), 1);
    let lt = &state.ec2.launch_templates[&g.launch_template.id];
    let ud = lt.data["UserData"].as_str().unwrap();
    assert_eq!(
        ud,
        "ZXhlYyB7d2Vpcn0gZGVtby1iYWNrZW5kIC0tcG9ydCB7cG9ydH0gLS1uYW1lIHtpbnN0YW5jZV9pZH0="
    );
    let policy =
        |kind: &str| state.auto_scaling.policies.values().find(|p| p.policy_type == kind).unwrap();
    let tt = policy("TargetTrackingScaling").target_tracking.as_ref().unwrap();
    assert_eq!(tt.metric, "ALBRequestCountPerTarget");
    assert!(tt.resource_label.as_deref().unwrap().contains("/targetgroup/asg-web/"));
    assert_eq!(tt.target.0, 600.0);
    let forecast = policy("PredictiveScaling").predictive.as_ref().unwrap();
    assert_eq!(
        (forecast.metric.as_str(), forecast.mode.as_str()),
        ("ALBRequestCount", "ForecastOnly")
    );
    assert!(forecast.resource_label.as_deref().unwrap().contains("/targetgroup/asg-web/"));
    let a = state.auto_scaling.scheduled.values().next().unwrap();
    assert_eq!(a.recurrence.as_deref(), Some("0 8 * * MON-FRI"));
    assert_eq!(a.time_zone.as_deref(), Some("America/New_York"));
    assert_eq!(d.outputs["GroupName"], "web");

    // A group naming a launch template that does not exist fails with AWS's message, and the
    // state is left as it was.
    let bad = parse_template(
        "Resources:\n  G:\n    Type: AWS::AutoScaling::AutoScalingGroup\n    Properties:\n      LaunchTemplate: { LaunchTemplateId: lt-00000000000000000 }\n      MinSize: 1\n      MaxSize: 1\n      AvailabilityZones: [us-east-1a]\n",
    )
    .unwrap();
    let mut s = State::default();
    let e = deploy(&bad, "bad", &BTreeMap::new(), &mut s, 0).unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert!(s.auto_scaling.groups.is_empty());
}
