//! Forward (single and weighted), redirect and fixed-response actions through real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use weir_tests::*;

async fn two_group_lb(
    weights: (u32, u32),
) -> (Lb, Vec<weir_demo::DemoBackend>, Vec<weir_demo::DemoBackend>) {
    let blue = backends("blue", 1).await;
    let green = backends("green", 1).await;
    let yaml = format!(
        r##"
Resources:
  LB: {{ Type: AWS::ElasticLoadBalancingV2::LoadBalancer, Properties: {{ Name: actions }} }}
  Blue:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties: {{ Name: blue, Protocol: HTTP, Port: 80, TargetType: ip, Targets: [{{ Id: 127.0.0.1, Port: {} }}] }}
  Green:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties: {{ Name: green, Protocol: HTTP, Port: 80, TargetType: ip, Targets: [{{ Id: 127.0.0.1, Port: {} }}] }}
  L:
    Type: AWS::ElasticLoadBalancingV2::Listener
    Properties:
      LoadBalancerArn: !Ref LB
      Port: ${{PORT}}
      DefaultActions:
        - Type: forward
          ForwardConfig:
            TargetGroups:
              - {{ TargetGroupArn: !Ref Blue, Weight: {} }}
              - {{ TargetGroupArn: !Ref Green, Weight: {} }}
  Moved:
    Type: AWS::ElasticLoadBalancingV2::ListenerRule
    Properties:
      ListenerArn: !Ref L
      Priority: 1
      Conditions: [{{ Field: path-pattern, Values: ["/old/*"] }}]
      Actions:
        - Type: redirect
          RedirectConfig: {{ Protocol: HTTPS, Port: "443", Host: "www.#{{host}}", Path: "/new/#{{path}}", Query: "#{{query}}&from=old", StatusCode: HTTP_301 }}
  Temp:
    Type: AWS::ElasticLoadBalancingV2::ListenerRule
    Properties:
      ListenerArn: !Ref L
      Priority: 2
      Conditions: [{{ Field: path-pattern, Values: ["/temp"] }}]
      Actions:
        - Type: redirect
          RedirectConfig: {{ Path: "/elsewhere", Query: "", StatusCode: HTTP_302 }}
  Maint:
    Type: AWS::ElasticLoadBalancingV2::ListenerRule
    Properties:
      ListenerArn: !Ref L
      Priority: 3
      Conditions: [{{ Field: path-pattern, Values: ["/maintenance"] }}]
      Actions:
        - Type: fixed-response
          FixedResponseConfig: {{ StatusCode: "503", ContentType: application/json, MessageBody: '{{"status":"down"}}' }}
"##,
        blue[0].addr.port(),
        green[0].addr.port(),
        weights.0,
        weights.1
    );
    (Lb::up(&yaml).await, blue, green)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_forward_splits_traffic() {
    let (lb, blue, green) = two_group_lb((80, 20)).await;
    let c = client();
    for _ in 0..1000 {
        assert_eq!(send(&c, "GET", &lb.url("/"), &[]).await.status, 200);
    }
    let (b, g) = (blue[0].requests(), green[0].requests());
    assert_eq!(b + g, 1000);
    // Binomial(1000, 0.8): sd ≈ 12.6; ±60 is more than 4.5 sd.
    assert!((740..=860).contains(&b), "blue {b} green {g}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_weight_group_gets_nothing() {
    let (lb, blue, green) = two_group_lb((0, 5)).await;
    for _ in 0..50 {
        assert_eq!(get(&lb.url("/")).await.backend(), "green-1");
    }
    assert_eq!(blue[0].requests(), 0);
    assert_eq!(green[0].requests(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_expand_placeholders() {
    let (lb, _b, _g) = two_group_lb((1, 1)).await;
    let r = send(&client(), "GET", &lb.url("/old/a/b?x=1"), &[("host", "shop.example.com")]).await;
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "https://www.shop.example.com/new/old/a/b?x=1&from=old");
    assert_eq!(r.headers["server"], "awselb/2.0");
    let r = send(&client(), "GET", &lb.url("/temp?drop=me"), &[("host", "a.test")]).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.headers["location"], format!("http://a.test:{}/elsewhere", lb.port));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_response_status_type_and_body() {
    let (lb, blue, green) = two_group_lb((1, 1)).await;
    let r = get(&lb.url("/maintenance")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(r.body, r#"{"status":"down"}"#);
    assert_eq!(
        blue[0].requests() + green[0].requests(),
        0,
        "a fixed response never reaches a target"
    );
}
