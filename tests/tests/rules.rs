//! Every rule condition type, evaluated by priority, through real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use weir_tests::*;

fn fixed(prio: u32, cond: &str, body: &str) -> String {
    format!(
        r#"
  R{prio}:
    Type: AWS::ElasticLoadBalancingV2::ListenerRule
    Properties:
      ListenerArn: !Ref L
      Priority: {prio}
      Conditions:
{cond}
      Actions:
        - Type: fixed-response
          FixedResponseConfig: {{ StatusCode: "200", ContentType: text/plain, MessageBody: "{body}" }}
"#
    )
}

async fn rules_lb() -> (Lb, Vec<weir_demo::DemoBackend>) {
    let b = backends("default", 1).await;
    let mut yaml = one_group("rules", "", "", &targets_yaml(&b, 8));
    yaml += &fixed(5, "        - { Field: host-header, HostHeaderConfig: { Values: [\"*.example.com\", \"exact.org\"] } }", "host");
    yaml += &fixed(10, "        - { Field: path-pattern, PathPatternConfig: { Values: [\"/img/*.png\", \"/v?/status\"] } }", "path");
    yaml += &fixed(15, "        - { Field: http-header, HttpHeaderConfig: { HttpHeaderName: X-Canary, Values: [\"yes\", \"tru*\"] } }", "header");
    yaml += &fixed(20, "        - { Field: http-request-method, HttpRequestMethodConfig: { Values: [DELETE, PATCH] } }", "method");
    yaml += &fixed(25, "        - { Field: query-string, QueryStringConfig: { Values: [{ Key: version, Value: \"v2*\" }, { Value: beta }] } }", "query");
    yaml += &fixed(30, "        - { Field: source-ip, SourceIpConfig: { Values: [\"127.0.0.0/8\"] } }\n        - { Field: path-pattern, Values: [\"/internal\"] }", "source");
    // Priority order: the host rule (5) beats the path rule (10) when both match.
    (Lb::up(&yaml).await, b)
}

/// Method, URL, extra headers, expected body.
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_condition_type_routes() {
    let (lb, _b) = rules_lb().await;
    let c = client();
    let u = |p: &str| lb.url(p);
    let body = |r: Resp| {
        if r.body.starts_with("default-") {
            "default".to_string()
        } else {
            r.body
        }
    };
    let cases: Vec<Case<'_>> = vec![
        ("GET", u("/"), vec![("host", "www.Example.COM")], "host"),
        ("GET", u("/"), vec![("host", "exact.org:8080")], "host"),
        ("GET", u("/"), vec![("host", "example.com")], "default"),
        ("GET", u("/img/logo.png"), vec![], "path"),
        ("GET", u("/img/logo.PNG"), vec![], "default"),
        ("GET", u("/v2/status"), vec![], "path"),
        ("GET", u("/v22/status"), vec![], "default"),
        ("GET", u("/img/logo.png"), vec![("host", "a.example.com")], "host"),
        ("GET", u("/"), vec![("x-canary", "YES")], "header"),
        ("GET", u("/"), vec![("X-Canary", "trust-me")], "header"),
        ("GET", u("/"), vec![("x-canary", "no")], "default"),
        ("DELETE", u("/"), vec![], "method"),
        ("PATCH", u("/"), vec![], "method"),
        ("POST", u("/"), vec![], "default"),
        ("GET", u("/?version=V2.1"), vec![], "query"),
        ("GET", u("/?a=1&flag=beta"), vec![], "query"),
        ("GET", u("/?version=v1"), vec![], "default"),
        ("GET", u("/internal"), vec![], "source"),
        ("GET", u("/internal/x"), vec![], "default"),
    ];
    for (method, url, headers, want) in cases {
        let r = send(&c, method, &url, &headers).await;
        assert_eq!(r.status, 200, "{method} {url} {headers:?}");
        assert_eq!(body(r), want, "{method} {url} {headers:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ip_outside_cidr_does_not_match() {
    let b = backends("d", 1).await;
    let yaml = format!(
        r#"
Resources:
  LB: {{ Type: AWS::ElasticLoadBalancingV2::LoadBalancer, Properties: {{ Name: srcip }} }}
  TG:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties: {{ Name: srcip-tg, Protocol: HTTP, Port: 80, TargetType: ip, Targets: [{{ Id: 127.0.0.1, Port: {} }}] }}
  L:
    Type: AWS::ElasticLoadBalancingV2::Listener
    Properties:
      LoadBalancerArn: !Ref LB
      Port: ${{PORT}}
      DefaultActions: [{{ Type: forward, TargetGroupArn: !Ref TG }}]
  R:
    Type: AWS::ElasticLoadBalancingV2::ListenerRule
    Properties:
      ListenerArn: !Ref L
      Priority: 1
      Conditions: [{{ Field: source-ip, SourceIpConfig: {{ Values: ["10.0.0.0/8", "2001:db8::/32"] }} }}]
      Actions: [{{ Type: fixed-response, FixedResponseConfig: {{ StatusCode: "403" }} }}]
"#,
        b[0].addr.port()
    );
    let lb = Lb::up(&yaml).await;
    // X-Forwarded-For never counts as the source.
    let r = send(&client(), "GET", &lb.url("/"), &[("x-forwarded-for", "10.1.1.1")]).await;
    assert_eq!((r.status, r.backend()), (200, "d-1"));
}
