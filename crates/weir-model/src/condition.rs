//! Listener rule conditions: the six ALB condition types with AWS's character sets, lengths and
//! per-rule limits (5 condition values, 5 wildcards).

use crate::error::{ModelError, Result};

/// Most condition values a rule may have in total.
pub const MAX_CONDITION_VALUES_PER_RULE: usize = 5;
/// Most wildcard characters a rule may have in total.
pub const MAX_WILDCARDS_PER_RULE: usize = 5;

/// One `Key=Value` pair of a query-string condition; a missing key matches any key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueryStringPair {
    /// Optional key pattern.
    pub key: Option<String>,
    /// Value pattern.
    pub value: String,
}

/// A rule condition. Values of one condition are OR-ed; the conditions of a rule are AND-ed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Condition {
    /// `host-header`: host names, case-insensitive, `*`/`?` wildcards.
    HostHeader(Vec<String>),
    /// `path-pattern`: paths, case-sensitive, `*`/`?` wildcards, query string excluded.
    PathPattern(Vec<String>),
    /// `http-header`: a named header whose value matches, case-insensitive, wildcards.
    HttpHeader {
        /// Header name (case-insensitive).
        name: String,
        /// Value patterns.
        values: Vec<String>,
    },
    /// `http-request-method`: exact, case-sensitive method names.
    HttpRequestMethod(Vec<String>),
    /// `query-string`: key/value pairs, case-insensitive, wildcards.
    QueryString(Vec<QueryStringPair>),
    /// `source-ip`: CIDR blocks (IPv4 or IPv6) matched against the client address.
    SourceIp(Vec<String>),
}

impl Condition {
    /// The AWS `Field` name.
    pub fn field(&self) -> &'static str {
        match self {
            Condition::HostHeader(_) => "host-header",
            Condition::PathPattern(_) => "path-pattern",
            Condition::HttpHeader { .. } => "http-header",
            Condition::HttpRequestMethod(_) => "http-request-method",
            Condition::QueryString(_) => "query-string",
            Condition::SourceIp(_) => "source-ip",
        }
    }

    /// How many values this condition has.
    pub fn value_count(&self) -> usize {
        match self {
            Condition::HostHeader(v)
            | Condition::PathPattern(v)
            | Condition::HttpRequestMethod(v)
            | Condition::SourceIp(v) => v.len(),
            Condition::HttpHeader { values, .. } => values.len(),
            Condition::QueryString(p) => p.len(),
        }
    }

    /// How many `*`/`?` wildcard characters the values use.
    pub fn wildcard_count(&self) -> usize {
        let count = |s: &str| s.chars().filter(|c| *c == '*' || *c == '?').count();
        match self {
            Condition::HostHeader(v) | Condition::PathPattern(v) => {
                v.iter().map(|s| count(s)).sum()
            }
            Condition::HttpHeader { values, .. } => values.iter().map(|s| count(s)).sum(),
            Condition::QueryString(p) => {
                p.iter().map(|kv| count(&kv.value) + kv.key.as_deref().map_or(0, count)).sum()
            }
            Condition::HttpRequestMethod(_) | Condition::SourceIp(_) => 0,
        }
    }

    /// Validates this condition's values on their own.
    pub fn validate(&self) -> Result<()> {
        if self.value_count() == 0 {
            return Err(ModelError::validation(format!(
                "A condition value must be specified for field '{}'",
                self.field()
            )));
        }
        match self {
            Condition::HostHeader(values) => {
                for v in values {
                    check_len(v, 128, "host-header")?;
                    if !v.chars().all(|c| c.is_ascii_alphanumeric() || "-.*?".contains(c)) {
                        return Err(ModelError::validation(format!(
                            "Condition value '{v}' contains a character that is not valid in a host header"
                        )));
                    }
                }
            }
            Condition::PathPattern(values) => {
                for v in values {
                    check_len(v, 128, "path-pattern")?;
                    if !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.$/~\"'@:+&*?=%,;!()".contains(c))
                    {
                        return Err(ModelError::validation(format!(
                            "Condition value '{v}' contains a character that is not valid in a path pattern"
                        )));
                    }
                }
            }
            Condition::HttpHeader { name, values } => {
                check_len(name, 40, "http-header name")?;
                if name.is_empty() || !name.bytes().all(is_token_char) {
                    return Err(ModelError::validation(format!(
                        "'{name}' is not a valid HTTP header name"
                    )));
                }
                if name.eq_ignore_ascii_case("host") {
                    return Err(ModelError::validation(
                        "Use a host-header condition to match the Host header",
                    ));
                }
                for v in values {
                    check_len(v, 128, "http-header value")?;
                    check_visible_ascii(v)?;
                }
            }
            Condition::HttpRequestMethod(values) => {
                for v in values {
                    check_len(v, 40, "http-request-method")?;
                    if v.is_empty()
                        || !v.chars().all(|c| c.is_ascii_uppercase() || c == '-' || c == '_')
                    {
                        return Err(ModelError::validation(format!(
                            "HTTP request method '{v}' must contain only the characters A-Z, hyphen (-) and underscore (_)"
                        )));
                    }
                }
            }
            Condition::QueryString(pairs) => {
                for kv in pairs {
                    check_len(&kv.value, 128, "query-string value")?;
                    check_visible_ascii(&kv.value)?;
                    if kv.value.is_empty() {
                        return Err(ModelError::validation(
                            "A query-string value must not be empty",
                        ));
                    }
                    if let Some(k) = &kv.key {
                        check_len(k, 128, "query-string key")?;
                        check_visible_ascii(k)?;
                    }
                }
            }
            Condition::SourceIp(values) => {
                for v in values {
                    parse_cidr(v)?;
                }
            }
        }
        Ok(())
    }
}

/// Validates the conditions of one rule together: each on its own, at most one of host-header,
/// path-pattern, http-request-method and source-ip, and the per-rule value and wildcard limits.
pub fn validate_rule_conditions(conditions: &[Condition]) -> Result<()> {
    let mut seen = Vec::new();
    for c in conditions {
        c.validate()?;
        let single = !matches!(c, Condition::HttpHeader { .. } | Condition::QueryString(_));
        if single {
            if seen.contains(&c.field()) {
                return Err(ModelError::validation(format!(
                    "A rule can only have one '{}' condition",
                    c.field()
                )));
            }
            seen.push(c.field());
        }
    }
    let values: usize = conditions.iter().map(Condition::value_count).sum();
    if values > MAX_CONDITION_VALUES_PER_RULE {
        return Err(ModelError::validation(format!(
            "A rule can only have '{MAX_CONDITION_VALUES_PER_RULE}' condition values"
        )));
    }
    let wildcards: usize = conditions.iter().map(Condition::wildcard_count).sum();
    if wildcards > MAX_WILDCARDS_PER_RULE {
        return Err(ModelError::validation(format!(
            "A rule can only have '{MAX_WILDCARDS_PER_RULE}' wildcards"
        )));
    }
    Ok(())
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_len(v: &str, max: usize, what: &str) -> Result<()> {
    if v.len() > max {
        return Err(ModelError::validation(format!(
            "The {what} value '{v}' exceeds the maximum length of {max} characters"
        )));
    }
    Ok(())
}

fn check_visible_ascii(v: &str) -> Result<()> {
    if v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Ok(())
    } else {
        Err(ModelError::validation(format!(
            "Condition value '{v}' must contain only visible ASCII characters"
        )))
    }
}

/// A parsed CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address (host bits may be set; they are ignored when matching).
    pub addr: std::net::IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies inside this block. IPv4-mapped IPv6 addresses match IPv4 blocks.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Parses `a.b.c.d/n` or `x::y/n`. A CIDR without a prefix length is rejected, as AWS does.
pub fn parse_cidr(s: &str) -> Result<Cidr> {
    let bad = || ModelError::validation(format!("'{s}' is not a valid CIDR block"));
    let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
    let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad());
    }
    Ok(Cidr { addr, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(v: &[&str]) -> Condition {
        Condition::HostHeader(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn limits() {
        let ok = vec![
            hosts(&["a.example.com", "*.example.com"]),
            Condition::PathPattern(vec!["/api/*".into()]),
        ];
        validate_rule_conditions(&ok).unwrap();
        let too_many = vec![
            hosts(&["a.com", "b.com", "c.com"]),
            Condition::PathPattern(vec!["/a".into(), "/b".into(), "/c".into()]),
        ];
        let e = validate_rule_conditions(&too_many).unwrap_err();
        assert!(e.message.contains("'5' condition values"), "{e}");
        let wild = vec![hosts(&["*.*.*.com", "?.??.com"])];
        assert!(validate_rule_conditions(&wild).unwrap_err().message.contains("wildcards"));
        let dup = vec![hosts(&["a.com"]), hosts(&["b.com"])];
        assert!(validate_rule_conditions(&dup).is_err());
    }

    #[test]
    fn character_sets() {
        assert!(hosts(&["bad host"]).validate().is_err());
        assert!(Condition::HttpRequestMethod(vec!["get".into()]).validate().is_err());
        assert!(Condition::HttpRequestMethod(vec!["GET".into()]).validate().is_ok());
        assert!(Condition::SourceIp(vec!["10.0.0.0/8".into()]).validate().is_ok());
        assert!(Condition::SourceIp(vec!["10.0.0.0".into()]).validate().is_err());
        assert!(Condition::SourceIp(vec!["10.0.0.0/33".into()]).validate().is_err());
        assert!(Condition::HttpHeader { name: "Host".into(), values: vec!["x".into()] }
            .validate()
            .is_err());
        assert!(Condition::PathPattern(vec![]).validate().is_err());
    }

    #[test]
    fn cidr_contains() {
        let c = parse_cidr("192.168.0.0/16").unwrap();
        assert!(c.contains("192.168.4.5".parse().unwrap()));
        assert!(!c.contains("192.169.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:192.168.1.1".parse().unwrap()));
        let all = parse_cidr("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6 = parse_cidr("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
    }
}
