//! A minimal XML writer for AWS Query responses, and the serialisation of ELBv2 resources.

use std::fmt::Display;

use weir_dataplane::TargetHealthInfo;
use weir_model::{
    Action, ActionKind, Attributes, Condition, Listener, LoadBalancer, Rule, RulePriority, State,
    TargetGroup,
};

/// An XML document being written.
#[derive(Debug, Default)]
pub struct Xml(pub String);

/// Escapes text for XML content. Whatever a user put into a name, tag or message comes back as
/// well-formed XML 1.0: markup characters become entities, `\r` a character reference (a parser
/// would turn a raw one into `\n`), and characters XML 1.0 cannot carry at all (C0 controls other
/// than tab and newlines, U+FFFE, U+FFFF) become U+FFFD.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\r' => o.push_str("&#xD;"),
            '\t' | '\n' => o.push(c),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

impl Xml {
    /// `<tag>`.
    pub fn open(&mut self, tag: &str) -> &mut Self {
        self.0.push('<');
        self.0.push_str(tag);
        self.0.push('>');
        self
    }
    /// `</tag>`.
    pub fn close(&mut self, tag: &str) -> &mut Self {
        self.0.push_str("</");
        self.0.push_str(tag);
        self.0.push('>');
        self
    }
    /// `<tag>value</tag>`.
    pub fn leaf(&mut self, tag: &str, value: impl Display) -> &mut Self {
        self.open(tag);
        self.0.push_str(&escape(&value.to_string()));
        self.close(tag)
    }
    /// A leaf only when the value is present.
    pub fn opt(&mut self, tag: &str, value: Option<impl Display>) -> &mut Self {
        if let Some(v) = value {
            self.leaf(tag, v);
        }
        self
    }
    /// `<tag><member>…</member>…</tag>`.
    pub fn list<T>(
        &mut self,
        tag: &str,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(&mut Self, T),
    ) -> &mut Self {
        self.open(tag);
        for it in items {
            self.open("member");
            f(self, it);
            self.close("member");
        }
        self.close(tag)
    }
    /// A list of plain strings.
    pub fn strings<S: Display>(
        &mut self,
        tag: &str,
        items: impl IntoIterator<Item = S>,
    ) -> &mut Self {
        self.open(tag);
        for it in items {
            self.leaf("member", it);
        }
        self.close(tag)
    }
}

/// ISO 8601 UTC with milliseconds, as AWS timestamps.
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// A load balancer `member` body; `state` is `provisioning` or `active`.
pub fn load_balancer(x: &mut Xml, lb: &LoadBalancer, state: &str, vpc_id: &str) {
    x.leaf("LoadBalancerArn", &lb.arn)
        .leaf("DNSName", lb.dns_name())
        .leaf("CanonicalHostedZoneId", "Z35SXDOTRQ7X7K")
        .leaf("CreatedTime", iso8601(lb.created_ms))
        .leaf("LoadBalancerName", &lb.name)
        .leaf("Scheme", lb.scheme.as_str())
        .leaf("VpcId", vpc_id);
    x.open("State").leaf("Code", state).close("State");
    x.leaf("Type", lb.lb_type.as_str());
    x.list("AvailabilityZones", &lb.zones, |x, z| {
        x.leaf("ZoneName", &z.zone_name)
            .leaf("SubnetId", &z.subnet_id)
            .open("LoadBalancerAddresses")
            .close("LoadBalancerAddresses");
    });
    x.strings("SecurityGroups", &lb.security_groups);
    x.leaf("IpAddressType", lb.ip_address_type.as_str());
}

/// A target group `member` body.
pub fn target_group(x: &mut Xml, tg: &TargetGroup, state: &State) {
    let hc = &tg.health_check;
    x.leaf("TargetGroupArn", &tg.arn)
        .leaf("TargetGroupName", &tg.name)
        .leaf("Protocol", tg.protocol.as_str())
        .leaf("Port", tg.port)
        .leaf("VpcId", &tg.vpc_id)
        .leaf("HealthCheckProtocol", hc.protocol.as_str())
        .leaf("HealthCheckPort", hc.port.to_aws())
        .leaf("HealthCheckEnabled", hc.enabled)
        .leaf("HealthCheckIntervalSeconds", hc.interval_seconds)
        .leaf("HealthCheckTimeoutSeconds", hc.timeout_seconds)
        .leaf("HealthyThresholdCount", hc.healthy_threshold)
        .leaf("UnhealthyThresholdCount", hc.unhealthy_threshold)
        .opt("HealthCheckPath", hc.path.as_ref());
    if let Some(m) = &hc.matcher {
        x.open("Matcher")
            .leaf(if m.grpc { "GrpcCode" } else { "HttpCode" }, &m.text)
            .close("Matcher");
    }
    x.strings("LoadBalancerArns", state.load_balancers_of_target_group(&tg.arn));
    x.leaf("TargetType", tg.target_type.as_str());
    if tg.protocol.is_l7() {
        x.leaf("ProtocolVersion", tg.protocol_version.as_str());
    }
    x.leaf("IpAddressType", "ipv4");
}

/// An action `member` body.
pub fn action(x: &mut Xml, a: &Action, order: usize) {
    x.leaf("Type", a.type_name());
    match &a.kind {
        ActionKind::Forward(f) => {
            if let [only] = f.target_groups.as_slice() {
                x.leaf("TargetGroupArn", &only.target_group_arn);
            }
            x.open("ForwardConfig");
            x.list("TargetGroups", &f.target_groups, |x, t| {
                x.leaf("TargetGroupArn", &t.target_group_arn).leaf("Weight", t.weight);
            });
            x.open("TargetGroupStickinessConfig").leaf("Enabled", f.stickiness_enabled);
            if f.stickiness_enabled {
                x.leaf("DurationSeconds", f.stickiness_duration_seconds);
            }
            x.close("TargetGroupStickinessConfig").close("ForwardConfig");
        }
        ActionKind::Redirect(r) => {
            x.open("RedirectConfig")
                .leaf("Protocol", &r.protocol)
                .leaf("Port", &r.port)
                .leaf("Host", &r.host)
                .leaf("Path", &r.path)
                .leaf("Query", &r.query)
                .leaf("StatusCode", format!("HTTP_{}", r.status_code))
                .close("RedirectConfig");
        }
        ActionKind::FixedResponse(f) => {
            x.open("FixedResponseConfig")
                .opt("MessageBody", f.message_body.as_ref())
                .leaf("StatusCode", f.status_code)
                .opt("ContentType", f.content_type.as_ref())
                .close("FixedResponseConfig");
        }
    }
    x.leaf("Order", a.order.map_or(order as u32 + 1, |o| o));
}

fn actions(x: &mut Xml, tag: &str, list: &[Action]) {
    x.list(tag, list.iter().enumerate(), |x, (i, a)| action(x, a, i));
}

/// A listener `member` body.
pub fn listener(x: &mut Xml, l: &Listener) {
    x.leaf("ListenerArn", &l.arn).leaf("LoadBalancerArn", &l.load_balancer_arn);
    // A Gateway Load Balancer's listener has no port or protocol.
    if l.protocol != weir_model::Protocol::Geneve {
        x.leaf("Port", l.port).leaf("Protocol", l.protocol.as_str());
    }
    // As AWS does, DescribeListeners shows only the default certificate.
    if let Some(c) = l.certificates.first() {
        x.list("Certificates", [c], |x, c| {
            x.leaf("CertificateArn", c.as_str());
        });
    }
    if let Some(p) = &l.ssl_policy {
        x.leaf("SslPolicy", p.as_str());
    }
    if let Some(p) = &l.alpn_policy {
        x.strings("AlpnPolicy", std::slice::from_ref(p));
    }
    actions(x, "DefaultActions", &l.default_actions);
}

fn condition(x: &mut Xml, c: &Condition) {
    x.leaf("Field", c.field());
    let values = |x: &mut Xml, cfg: &str, v: &[String], legacy: bool| {
        if legacy {
            x.strings("Values", v);
        }
        x.open(cfg).strings("Values", v).close(cfg);
    };
    match c {
        Condition::HostHeader(v) => values(x, "HostHeaderConfig", v, true),
        Condition::PathPattern(v) => values(x, "PathPatternConfig", v, true),
        Condition::HttpRequestMethod(v) => values(x, "HttpRequestMethodConfig", v, false),
        Condition::SourceIp(v) => values(x, "SourceIpConfig", v, false),
        Condition::HttpHeader { name, values } => {
            x.open("HttpHeaderConfig")
                .leaf("HttpHeaderName", name)
                .strings("Values", values)
                .close("HttpHeaderConfig");
        }
        Condition::QueryString(pairs) => {
            x.open("QueryStringConfig");
            x.list("Values", pairs, |x, kv| {
                x.opt("Key", kv.key.as_ref()).leaf("Value", &kv.value);
            });
            x.close("QueryStringConfig");
        }
    }
}

/// A rule `member` body.
pub fn rule(x: &mut Xml, r: &Rule) {
    x.leaf("RuleArn", &r.arn).leaf("Priority", r.priority.to_aws());
    x.list("Conditions", &r.conditions, condition);
    actions(x, "Actions", &r.actions);
    x.leaf("IsDefault", r.priority == RulePriority::Default);
}

/// `Attributes` list.
pub fn attributes(x: &mut Xml, a: &Attributes) {
    x.list("Attributes", a.all(), |x, (k, v)| {
        x.leaf("Key", k).leaf("Value", v);
    });
}

/// One `TargetHealthDescriptions` member body.
pub fn target_health(x: &mut Xml, t: &TargetHealthInfo, tg: &TargetGroup) {
    x.open("Target")
        .leaf("Id", &t.id)
        .leaf("Port", t.port)
        .leaf("AvailabilityZone", &t.availability_zone)
        .close("Target");
    let hc_port = match tg.health_check.port {
        weir_model::HealthCheckPort::TrafficPort => t.port,
        weir_model::HealthCheckPort::Port(p) => p,
    };
    x.leaf("HealthCheckPort", hc_port);
    x.open("TargetHealth")
        .leaf("State", t.state.as_str())
        .opt("Reason", t.reason.code())
        .opt("Description", t.reason.description())
        .close("TargetHealth");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_escaping() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_458_940_772_920), "2016-03-25T21:19:32.920Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(escape("<a & 'b'>"), "&lt;a &amp; &apos;b&apos;&gt;");
    }
}
