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

fn req(name: &str, template: &str, params: &[(&str, &str)], now_ms: u64) -> Request {
    Request {
        stack_name: name.into(),
        template: template.into(),
        parameters: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        now_ms,
        ..Default::default()
    }
}

/// The resources of `s` other than its stack records.
fn without_stacks(s: &State) -> State {
    let mut s = s.clone();
    s.stacks.clear();
    s
}

fn statuses(s: &State, stack: &str, from: usize) -> Vec<String> {
    s.stacks[stack].events[from..]
        .iter()
        .map(|e| format!("{} {}", e.logical_id, e.status))
        .collect()
}

const STACK: &str = r#"
Parameters:
  BackendPort: { Type: Number, Default: 9001 }
  Body: { Type: String, Default: nope }
Resources:
  Web:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties:
      Protocol: HTTP
      Port: !Ref BackendPort
      TargetType: ip
      HealthCheckPath: /health
      Targets: [{ Id: 127.0.0.1, Port: !Ref BackendPort }]
  LB:
    Type: AWS::ElasticLoadBalancingV2::LoadBalancer
    Properties: { Name: stacked }
  Http:
    Type: AWS::ElasticLoadBalancingV2::Listener
    Properties:
      LoadBalancerArn: !Ref LB
      Port: 8080
      Protocol: HTTP
      DefaultActions:
        - Type: fixed-response
          FixedResponseConfig: { StatusCode: "404", MessageBody: !Ref Body }
  Api:
    Type: AWS::ElasticLoadBalancingV2::ListenerRule
    Properties:
      ListenerArn: !Ref Http
      Priority: 10
      Conditions: [{ Field: path-pattern, Values: ["/api/*"] }]
      Actions: [{ Type: forward, TargetGroupArn: !Ref Web }]
Outputs:
  Group: { Value: !GetAtt Web.TargetGroupFullName }
"#;

#[test]
fn updates_in_place_replace_and_remove_in_dependency_order() {
    let mut s = State::default();
    let (id, o) = create_stack(&mut s, &req("app", STACK, &[], 1)).unwrap();
    assert_eq!(o, Outcome::Complete);
    assert!(id.starts_with("arn:aws:cloudformation:us-east-1:123456789012:stack/app/"));
    let st = &s.stacks["app"];
    assert_eq!(st.status, "CREATE_COMPLETE");
    assert_eq!(statuses(&s, "app", 0).first().unwrap(), "app CREATE_IN_PROGRESS");
    assert_eq!(statuses(&s, "app", 0).last().unwrap(), "app CREATE_COMPLETE");
    let tg = st.resource("Web").unwrap().physical_id.clone();
    let lb = st.resource("LB").unwrap().physical_id.clone();
    let listener = st.resource("Http").unwrap().physical_id.clone();
    assert_eq!(s.tags[&lb]["aws:cloudformation:logical-id"], "LB");

    // Nothing changed: AWS's error, and nothing recorded.
    let before = s.clone();
    let e = update_stack(&mut s, &req("app", STACK, &[], 2)).unwrap_err();
    assert_eq!(e.to_string(), "No updates are to be performed.");
    assert_eq!(s, before);

    // In place: the listener's body. The listener keeps its ARN; nothing else is touched.
    let n = s.stacks["app"].events.len();
    assert_eq!(
        update_stack(&mut s, &req("app", STACK, &[("Body", "gone")], 3)).unwrap(),
        Outcome::Complete
    );
    let l = &s.listeners[&listener];
    match &l.default_actions[0].kind {
        weir_model::ActionKind::FixedResponse(f) => {
            assert_eq!(f.message_body.as_deref(), Some("gone"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        statuses(&s, "app", n),
        [
            "app UPDATE_IN_PROGRESS",
            "Http UPDATE_IN_PROGRESS",
            "Http UPDATE_COMPLETE",
            "app UPDATE_COMPLETE"
        ]
    );
    assert_eq!(s.stacks["app"].parameters["Body"], "gone");

    // Replacement: the target group's port. A new group is created, the rule that forwards to it
    // is updated in place, and the old group is deleted in the cleanup phase.
    let n = s.stacks["app"].events.len();
    update_stack(&mut s, &req("app", STACK, &[("Body", "gone"), ("BackendPort", "9002")], 4))
        .unwrap();
    let new_tg = s.stacks["app"].resource("Web").unwrap().physical_id.clone();
    assert_ne!(new_tg, tg);
    assert!(!s.target_groups.contains_key(&tg));
    assert_eq!(s.target_groups[&new_tg].port, 9002);
    assert_eq!(s.target_groups[&new_tg].targets[0].port, 9002);
    let rule = &s.rules[&s.stacks["app"].resource("Api").unwrap().physical_id];
    assert!(format!("{:?}", rule.actions).contains(&new_tg));
    assert_eq!(
        statuses(&s, "app", n),
        [
            "app UPDATE_IN_PROGRESS",
            "Web UPDATE_IN_PROGRESS",
            "Web UPDATE_COMPLETE",
            "Api UPDATE_IN_PROGRESS",
            "Api UPDATE_COMPLETE",
            "app UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
            "Web DELETE_IN_PROGRESS",
            "Web DELETE_COMPLETE",
            "app UPDATE_COMPLETE",
        ]
    );
    assert!(s.stacks["app"].outputs[0].value.contains(&new_tg.rsplit(':').next().unwrap()[12..]));
    assert_eq!(s.listeners[&listener].load_balancer_arn, lb);

    // Removal: the rule goes from the template, so from the state.
    let no_rule =
        STACK.replace("  Api:\n", "  Gone:\n    Type: AWS::EC2::InternetGateway\n  Unused:\n");
    let no_rule = no_rule[..no_rule.find("  Unused:").unwrap()].to_string()
        + &no_rule[no_rule.find("Outputs:").unwrap()..];
    update_stack(&mut s, &req("app", &no_rule, &[("Body", "gone"), ("BackendPort", "9002")], 5))
        .unwrap();
    assert!(s.rules.is_empty());
    assert!(s.stacks["app"].resource("Api").is_none());
    assert!(s.stacks["app"].resource("Gone").unwrap().physical_id.starts_with("igw-"));

    // Delete: everything goes, newest first; the stack stays visible as DELETE_COMPLETE.
    let n = s.stacks["app"].events.len();
    assert!(delete_stack(&mut s, "app", 6).unwrap());
    assert!(s.load_balancers.is_empty() && s.target_groups.is_empty() && s.listeners.is_empty());
    assert_eq!(s.stacks["app"].status, "DELETE_COMPLETE");
    let ev = statuses(&s, "app", n);
    let pos = |x: &str| ev.iter().position(|e| e == x).unwrap();
    assert!(pos("Http DELETE_COMPLETE") < pos("LB DELETE_COMPLETE"));
    assert_eq!(ev.last().unwrap(), "app DELETE_COMPLETE");
    assert!(update_stack(&mut s, &req("app", STACK, &[], 7))
        .unwrap_err()
        .to_string()
        .contains("does not exist"));
    // The name can be used again.
    create_stack(&mut s, &req("app", STACK, &[], 8)).unwrap();
    assert_eq!(s.stacks["app"].status, "CREATE_COMPLETE");
}

#[test]
fn failed_updates_roll_back_and_leave_the_resources_as_they_were() {
    let mut s = State::default();
    create_stack(&mut s, &req("app", STACK, &[], 1)).unwrap();
    let resources = without_stacks(&s);
    let n = s.stacks["app"].events.len();
    // The listener updates, then the rule fails (priority 0): everything is put back.
    let bad = STACK.replace("Priority: 10", "Priority: 0");
    let o =
        update_stack(&mut s, &req("app", &bad, &[("Body", "changed"), ("BackendPort", "9005")], 2))
            .unwrap();
    match o {
        Outcome::RolledBack(StackError::Resource { logical_id, .. }) => {
            assert_eq!(logical_id, "Api")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(without_stacks(&s), resources);
    let st = &s.stacks["app"];
    assert_eq!(st.status, "UPDATE_ROLLBACK_COMPLETE");
    assert_eq!(
        st.status_reason.as_deref(),
        Some("The following resource(s) failed to update: [Api].")
    );
    assert_eq!(st.parameters["Body"], "nope");
    let ev = statuses(&s, "app", n);
    assert!(ev.contains(&"Api UPDATE_FAILED".to_string()), "{ev:?}");
    assert!(ev.contains(&"app UPDATE_ROLLBACK_IN_PROGRESS".to_string()));
    assert!(
        ev.contains(&"Web DELETE_COMPLETE".to_string()),
        "the replacement group is removed: {ev:?}"
    );
    assert_eq!(ev.last().unwrap(), "app UPDATE_ROLLBACK_COMPLETE");
    let failed = st.events.iter().find(|e| e.status == "UPDATE_FAILED").unwrap();
    assert!(failed.reason.as_deref().unwrap().contains("Priority"), "{failed:?}");

    // The stack can be updated again after a rollback.
    update_stack(&mut s, &req("app", STACK, &[("Body", "fine")], 3)).unwrap();
    assert_eq!(s.stacks["app"].status, "UPDATE_COMPLETE");

    // A custom-named resource cannot be replaced: AWS's error, and a rollback.
    let renamed = STACK.replace(
        "Properties: { Name: stacked }",
        "Properties: { Name: stacked, Scheme: internal }",
    );
    let o = update_stack(&mut s, &req("app", &renamed, &[("Body", "fine")], 4)).unwrap();
    assert!(
        matches!(o, Outcome::RolledBack(ref e) if e.to_string().contains("custom-named resource requires replacing")),
        "{o:?}"
    );
    assert_eq!(s.stacks["app"].status, "UPDATE_ROLLBACK_COMPLETE");
}

#[test]
fn failed_creations_roll_back_and_template_errors_record_nothing() {
    let mut s = State::default();
    let bad = STACK.replace("Priority: 10", "Priority: 0");
    let (_, o) = create_stack(&mut s, &req("app", &bad, &[], 1)).unwrap();
    assert!(matches!(o, Outcome::RolledBack(_)));
    assert_eq!(without_stacks(&s), State::default());
    let st = &s.stacks["app"];
    assert_eq!(st.status, "ROLLBACK_COMPLETE");
    assert!(st.resources.is_empty());
    assert!(!st.updatable());
    assert!(update_stack(&mut s, &req("app", STACK, &[], 2))
        .unwrap_err()
        .to_string()
        .contains("ROLLBACK_COMPLETE state and can not be updated"));
    // Creating over it is refused; deploying replaces the failed stack.
    assert_eq!(
        create_stack(&mut s, &req("app", STACK, &[], 3)).unwrap_err().code(),
        "AlreadyExistsException"
    );
    assert_eq!(deploy_stack(&mut s, &req("app", STACK, &[], 4)).unwrap(), Outcome::Complete);
    assert_eq!(s.stacks["app"].status, "CREATE_COMPLETE");

    // Template and parameter errors: nothing recorded at all.
    let before = s.clone();
    for (t, p) in [
        ("Resources:\n  T:\n    Type: AWS::SNS::Topic\n", vec![]),
        (STACK, vec![("BackendPort", "many")]),
        (STACK, vec![("Nope", "1")]),
        ("{not json", vec![]),
    ] {
        assert!(create_stack(&mut s, &req("other", t, &p, 5)).is_err());
        assert!(update_stack(&mut s, &req("app", t, &p, 5)).is_err());
    }
    assert!(create_stack(&mut s, &req("9bad_name", STACK, &[], 5)).is_err());
    assert_eq!(s, before);
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../../examples/aws/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
}

fn default_subnets() -> String {
    (0..2).map(weir_model::zones::default_subnet_id).collect::<Vec<_>>().join(",")
}

#[test]
fn aws_shaped_alb_and_auto_scaling_stacks_deploy_update_and_delete() {
    let mut s = State::default();
    let subnets = default_subnets();
    let vpc = weir_model::zones::DEFAULT_VPC_ID;
    let p = [("Subnets", subnets.as_str()), ("VPC", vpc)];
    let (_, o) = create_stack(&mut s, &req("web", &example("web-asg-alb.yaml"), &p, 1)).unwrap();
    assert_eq!(o, Outcome::Complete);
    let st = s.stacks["web"].clone();
    assert_eq!(st.resources.len(), 11);
    let group = st.resource("WebServerGroup").unwrap().physical_id.clone();
    assert!(group.starts_with("web-WebServe-"), "{group}");
    let g = s.auto_scaling_group(&group).unwrap();
    assert_eq!((g.min_size, g.max_size), (1, 3));
    assert_eq!(g.launch_template.version, "1");
    let alarm = &s.alarms[&st.resource("CPUAlarmHigh").unwrap().physical_id];
    assert_eq!(
        alarm.alarm_actions,
        [st.resource("WebServerScaleUpPolicy").unwrap().physical_id.clone()]
    );
    assert_eq!(alarm.dimensions, [("AutoScalingGroupName".to_string(), group.clone())]);
    assert_eq!(
        st.outputs.iter().find(|o| o.key == "GroupName").unwrap().export_name.as_deref(),
        Some("web-GroupName")
    );
    assert!(st.outputs.iter().any(|o| o.key == "URL" && o.value.ends_with(":8080/")));
    assert_eq!(
        st.parameters["LatestAmiId"],
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-arm64"
    );

    // A new instance type is a new launch template version; the group follows it in place.
    let p2 = [
        ("Subnets", subnets.as_str()),
        ("VPC", vpc),
        ("InstanceType", "t4g.small"),
        ("MaxInstances", "5"),
    ];
    update_stack(&mut s, &req("web", &example("web-asg-alb.yaml"), &p2, 2)).unwrap();
    let st = &s.stacks["web"];
    assert_eq!(st.status, "UPDATE_COMPLETE");
    assert_eq!(st.resource("WebServerGroup").unwrap().physical_id, group);
    let g = s.auto_scaling_group(&group).unwrap();
    assert_eq!((g.max_size, g.launch_template.version.as_str()), (5, "2"));
    assert_eq!(s.ec2.launch_templates[&g.launch_template.id].data["InstanceType"], "t4g.small");
    // Out-of-range parameters are refused before anything changes.
    let p3 = [("Subnets", subnets.as_str()), ("VPC", vpc), ("MaxInstances", "11")];
    let e = update_stack(&mut s, &req("web", &example("web-asg-alb.yaml"), &p3, 3)).unwrap_err();
    assert!(e.to_string().contains("MaxInstances"), "{e}");

    // The launch-configuration stack: mappings, conditions, a target-tracking policy.
    let p = [("Subnets", subnets.as_str()), ("VpcId", vpc)];
    create_stack(&mut s, &req("lc", &example("launch-config-asg-alb.yaml"), &p, 4)).unwrap();
    let st = s.stacks["lc"].clone();
    assert_eq!(st.status, "CREATE_COMPLETE", "{:?}", st.events.last());
    let group = st.resource("WebServerGroup").unwrap().physical_id.clone();
    let lc = st.resource("LaunchConfig").unwrap().physical_id.clone();
    let g = s.auto_scaling_group(&group).unwrap();
    assert_eq!((g.desired_capacity, g.launch_template.name.as_str()), (2, lc.as_str()));
    assert_eq!(
        s.ec2.launch_templates[&g.launch_template.id].data["ImageId"],
        "ami-0ff8a91507f77f867"
    );
    let lb = &s.load_balancers[&st.resource("ApplicationLoadBalancer").unwrap().physical_id];
    assert_eq!(lb.attributes.get("idle_timeout.timeout_seconds"), Some("60"));
    // Launch configurations are immutable: a new instance type replaces it, the group moves to
    // the new one, the old one is deleted; the condition flips the load balancer's attribute.
    let p = [
        ("Subnets", subnets.as_str()),
        ("VpcId", vpc),
        ("InstanceType", "t3.small"),
        ("Environment", "prod"),
    ];
    update_stack(&mut s, &req("lc", &example("launch-config-asg-alb.yaml"), &p, 5)).unwrap();
    let st = s.stacks["lc"].clone();
    let new_lc = st.resource("LaunchConfig").unwrap().physical_id.clone();
    assert_ne!(new_lc, lc);
    assert_eq!(s.auto_scaling_group(&group).unwrap().launch_template.name, new_lc);
    assert!(!s.ec2.launch_templates.values().any(|t| t.name == lc));
    let lb = &s.load_balancers[&st.resource("ApplicationLoadBalancer").unwrap().physical_id];
    assert_eq!(lb.attributes.get("idle_timeout.timeout_seconds"), Some("120"));
    let bad = [("Subnets", subnets.as_str()), ("VpcId", vpc), ("InstanceType", "m5.24xlarge")];
    assert!(
        update_stack(&mut s, &req("lc", &example("launch-config-asg-alb.yaml"), &bad, 6)).is_err()
    );

    // Deleting both leaves nothing behind but groups marked for deletion (their instances stop
    // first) and the deleted stacks' records.
    assert!(delete_stack(&mut s, "web", 7).unwrap());
    assert!(delete_stack(&mut s, "lc", 8).unwrap());
    assert!(s.load_balancers.is_empty() && s.target_groups.is_empty() && s.alarms.is_empty());
    assert!(s.ec2.launch_templates.is_empty() && s.ec2.security_groups.is_empty());
    assert!(s.auto_scaling.policies.is_empty());
}
