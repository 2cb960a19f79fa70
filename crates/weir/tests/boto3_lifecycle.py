"""boto3 against `weir serve`: create, describe, error codes, delete. Args: ENDPOINT LISTENER_PORT."""
import sys
import urllib.request

import boto3
from botocore.exceptions import ClientError

endpoint, port = sys.argv[1], int(sys.argv[2])
elb = boto3.client("elbv2", endpoint_url=endpoint, region_name="us-east-1")

lb = elb.create_load_balancer(Name="boto-lb", Subnets=["subnet-0000000000000000a", "subnet-0000000000000000c"])["LoadBalancers"][0]
assert lb["Type"] == "application" and lb["Scheme"] == "internet-facing", lb
assert [z["ZoneName"] for z in lb["AvailabilityZones"]] == ["us-east-1a", "us-east-1c"]
assert elb.set_ip_address_type(LoadBalancerArn=lb["LoadBalancerArn"], IpAddressType="dualstack")["IpAddressType"] == "dualstack"
assert elb.describe_load_balancers(Names=["boto-lb"])["LoadBalancers"][0]["IpAddressType"] == "dualstack"
tg = elb.create_target_group(Name="boto-tg", Protocol="HTTP", Port=80, TargetType="ip")["TargetGroups"][0]
assert tg["HealthCheckIntervalSeconds"] == 30 and tg["HealthyThresholdCount"] == 5 and tg["Matcher"] == {"HttpCode": "200"}
listener = elb.create_listener(
    LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
    DefaultActions=[{"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_302"}}],
)["Listeners"][0]
rule = elb.create_rule(
    ListenerArn=listener["ListenerArn"], Priority=7,
    Conditions=[{"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "X-Env", "Values": ["canary"]}},
                {"Field": "query-string", "QueryStringConfig": {"Values": [{"Key": "v", "Value": "2"}]}}],
    Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200", "ContentType": "application/json", "MessageBody": "{}"}}],
)["Rules"][0]
assert rule["Conditions"][0]["HttpHeaderConfig"]["HttpHeaderName"] == "X-Env", rule
assert rule["Conditions"][1]["QueryStringConfig"]["Values"] == [{"Key": "v", "Value": "2"}], rule

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None

opener = urllib.request.build_opener(NoRedirect)
try:
    opener.open(f"http://127.0.0.1:{port}/a?b=c")
    raise AssertionError("expected a redirect")
except urllib.error.HTTPError as e:
    assert e.code == 302 and e.headers["Location"] == "https://127.0.0.1/a?b=c", (e.code, e.headers["Location"])
req = urllib.request.Request(f"http://127.0.0.1:{port}/?v=2", headers={"X-Env": "Canary"})
with opener.open(req) as r:
    assert r.status == 200 and r.read() == b"{}"

for call, kwargs, code in [
    (elb.create_load_balancer, {"Name": "boto-lb", "Subnets": ["subnet-0000000000000000a", "subnet-0000000000000000b"]}, "DuplicateLoadBalancerName"),
    (elb.create_load_balancer, {"Name": "one-zone", "Subnets": ["subnet-0000000000000000a"]}, "ValidationError"),
    (elb.create_rule, {"ListenerArn": listener["ListenerArn"], "Priority": 7, "Conditions": [{"Field": "path-pattern", "Values": ["/a"]}],
                       "Actions": [{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}}]}, "PriorityInUse"),
    (elb.describe_load_balancers, {"Names": ["missing"]}, "LoadBalancerNotFound"),
    (elb.register_targets, {"TargetGroupArn": tg["TargetGroupArn"], "Targets": [{"Id": "not-an-ip"}]}, "InvalidTarget"),
]:
    try:
        call(**kwargs)
        raise AssertionError(f"{call.__name__} should fail with {code}")
    except ClientError as e:
        assert e.response["Error"]["Code"] == code, (code, e.response)
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400

elb.delete_rule(RuleArn=rule["RuleArn"])
elb.delete_listener(ListenerArn=listener["ListenerArn"])
elb.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
elb.delete_target_group(TargetGroupArn=tg["TargetGroupArn"])
assert elb.describe_load_balancers()["LoadBalancers"] == []
assert elb.describe_target_groups()["TargetGroups"] == []
print("boto3 lifecycle ok")
