//! Rule and listener actions: forward (weighted target groups with optional target-group
//! stickiness), redirect (with `#{...}` placeholders) and fixed-response.

use crate::error::{ErrorCode, ModelError, Result};

/// One target group of a forward action with its weight (0–999).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WeightedTargetGroup {
    /// Target group ARN.
    pub target_group_arn: String,
    /// Weight, 0–999; `None` means AWS's default of 1 (reported as such).
    pub weight: u32,
}

/// Forward to one or more target groups.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ForwardConfig {
    /// Target groups with weights.
    pub target_groups: Vec<WeightedTargetGroup>,
    /// Target-group stickiness (AWSALBTG cookie).
    pub stickiness_enabled: bool,
    /// Target-group stickiness duration, 1–604800 s.
    pub stickiness_duration_seconds: u32,
}

/// Redirect target, each part possibly containing `#{protocol}`, `#{host}`, `#{port}`,
/// `#{path}` and `#{query}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RedirectConfig {
    /// `HTTP`, `HTTPS` or `#{protocol}`.
    pub protocol: String,
    /// Host name or placeholder.
    pub host: String,
    /// Port 1–65535 or `#{port}`.
    pub port: String,
    /// Absolute path starting with `/`.
    pub path: String,
    /// Query without the leading `?`.
    pub query: String,
    /// 301 or 302.
    pub status_code: u16,
}

impl Default for RedirectConfig {
    fn default() -> Self {
        Self {
            protocol: "#{protocol}".into(),
            host: "#{host}".into(),
            port: "#{port}".into(),
            path: "/#{path}".into(),
            query: "#{query}".into(),
            status_code: 301,
        }
    }
}

/// A fixed response.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FixedResponseConfig {
    /// 2XX, 4XX or 5XX.
    pub status_code: u16,
    /// One of the content types AWS allows.
    pub content_type: Option<String>,
    /// Body, at most 1024 characters.
    pub message_body: Option<String>,
}

/// What an action does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ActionKind {
    /// `forward`.
    Forward(ForwardConfig),
    /// `redirect`.
    Redirect(RedirectConfig),
    /// `fixed-response`.
    FixedResponse(FixedResponseConfig),
}

/// A rule or default action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Action {
    /// Order (1–50000); the terminal action is the one with the highest order.
    pub order: Option<u32>,
    /// The action.
    pub kind: ActionKind,
}

/// Content types a fixed-response action may declare.
pub const FIXED_RESPONSE_CONTENT_TYPES: &[&str] =
    &["text/plain", "text/css", "text/html", "application/javascript", "application/json"];

impl Action {
    /// The AWS `Type` name.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ActionKind::Forward(_) => "forward",
            ActionKind::Redirect(_) => "redirect",
            ActionKind::FixedResponse(_) => "fixed-response",
        }
    }

    /// Target group ARNs this action refers to.
    pub fn target_group_arns(&self) -> Vec<&str> {
        match &self.kind {
            ActionKind::Forward(f) => {
                f.target_groups.iter().map(|t| t.target_group_arn.as_str()).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Validates the action on its own (references are checked by [`crate::State`]).
    pub fn validate(&self) -> Result<()> {
        if let Some(o) = self.order {
            if !(1..=50000).contains(&o) {
                return Err(ModelError::validation("Action order must be between 1 and 50000"));
            }
        }
        match &self.kind {
            ActionKind::Forward(f) => {
                if f.target_groups.is_empty() {
                    return Err(ModelError::new(
                        ErrorCode::InvalidLoadBalancerAction,
                        "A forward action must specify at least one target group",
                    ));
                }
                if f.target_groups.len() > 5 {
                    return Err(ModelError::new(
                        ErrorCode::TooManyTargetGroups,
                        "A forward action can have at most 5 target groups",
                    ));
                }
                for (i, t) in f.target_groups.iter().enumerate() {
                    crate::ids::check_arn(&t.target_group_arn, "targetgroup")?;
                    if t.weight > 999 {
                        return Err(ModelError::validation(
                            "Target group weight must be between 0 and 999",
                        ));
                    }
                    if f.target_groups[..i].iter().any(|o| o.target_group_arn == t.target_group_arn)
                    {
                        return Err(ModelError::new(
                            ErrorCode::InvalidLoadBalancerAction,
                            "A target group can appear only once in a forward action",
                        ));
                    }
                }
                if f.target_groups.len() > 1 && f.target_groups.iter().all(|t| t.weight == 0) {
                    return Err(ModelError::new(
                        ErrorCode::InvalidLoadBalancerAction,
                        "At least one target group in a forward action must have a weight greater than 0",
                    ));
                }
                if f.stickiness_enabled && !(1..=604800).contains(&f.stickiness_duration_seconds) {
                    return Err(ModelError::validation(
                        "Target group stickiness duration must be between 1 and 604800 seconds",
                    ));
                }
            }
            ActionKind::Redirect(r) => {
                if r.status_code != 301 && r.status_code != 302 {
                    return Err(ModelError::validation(
                        "Redirect status code must be HTTP_301 or HTTP_302",
                    ));
                }
                if !matches!(r.protocol.as_str(), "HTTP" | "HTTPS" | "#{protocol}") {
                    return Err(ModelError::validation(
                        "Redirect protocol must be HTTP, HTTPS or #{protocol}",
                    ));
                }
                if r.port != "#{port}" && !matches!(r.port.parse::<u32>(), Ok(1..=65535)) {
                    return Err(ModelError::validation("Redirect port must be 1-65535 or #{port}"));
                }
                if !r.path.starts_with('/') {
                    return Err(ModelError::validation("Redirect path must start with '/'"));
                }
                if r.host.is_empty()
                    || r.host.len() > 128
                    || r.path.len() > 128
                    || r.query.len() > 128
                {
                    return Err(ModelError::validation("Redirect host, path and query are limited to 128 characters and host must not be empty"));
                }
                let unchanged = r.protocol == "#{protocol}"
                    && r.host == "#{host}"
                    && r.port == "#{port}"
                    && r.path == "/#{path}"
                    && r.query == "#{query}";
                if unchanged {
                    return Err(ModelError::new(
                        ErrorCode::InvalidLoadBalancerAction,
                        "The redirect must change at least one of protocol, host, port, path or query, to avoid a redirect loop",
                    ));
                }
            }
            ActionKind::FixedResponse(f) => {
                let class = f.status_code / 100;
                if !(matches!(class, 2 | 4 | 5) && f.status_code < 600) {
                    return Err(ModelError::validation(
                        "Fixed response status code must be 2XX, 4XX or 5XX",
                    ));
                }
                if let Some(ct) = &f.content_type {
                    if !FIXED_RESPONSE_CONTENT_TYPES.contains(&ct.as_str()) {
                        return Err(ModelError::validation(format!(
                            "Fixed response content type must be one of: {}",
                            FIXED_RESPONSE_CONTENT_TYPES.join(", ")
                        )));
                    }
                }
                if f.message_body.as_ref().is_some_and(|b| b.chars().count() > 1024) {
                    return Err(ModelError::validation(
                        "Fixed response message body is limited to 1024 characters",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Validates a list of actions: each valid, orders distinct, exactly one terminal action
/// (forward, redirect or fixed-response) and it comes last.
pub fn validate_actions(actions: &[Action]) -> Result<()> {
    if actions.is_empty() {
        return Err(ModelError::validation("At least one action must be specified"));
    }
    for a in actions {
        a.validate()?;
    }
    // Every action type Weir supports so far is terminal: exactly one is allowed.
    if actions.len() > 1 {
        return Err(ModelError::new(
            ErrorCode::TooManyActions,
            "Only one forward, redirect or fixed-response action can be specified",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TG: &str =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/a/0123456789abcdef";

    fn forward(weights: &[u32]) -> Action {
        let target_groups = weights
            .iter()
            .enumerate()
            .map(|(i, w)| WeightedTargetGroup { target_group_arn: format!("{TG}{i}"), weight: *w })
            .collect();
        Action {
            order: None,
            kind: ActionKind::Forward(ForwardConfig {
                target_groups,
                stickiness_enabled: false,
                stickiness_duration_seconds: 3600,
            }),
        }
    }

    #[test]
    fn forward_weights() {
        forward(&[1]).validate().unwrap();
        forward(&[0, 999]).validate().unwrap();
        assert!(forward(&[1000]).validate().is_err());
        assert!(forward(&[0, 0]).validate().is_err());
        assert!(forward(&[1, 1, 1, 1, 1, 1]).validate().is_err());
    }

    #[test]
    fn redirect_rules() {
        let mut r = RedirectConfig::default();
        let a = |r: &RedirectConfig| Action { order: None, kind: ActionKind::Redirect(r.clone()) };
        assert_eq!(a(&r).validate().unwrap_err().code, ErrorCode::InvalidLoadBalancerAction);
        r.protocol = "HTTPS".into();
        r.port = "443".into();
        a(&r).validate().unwrap();
        r.status_code = 307;
        assert!(a(&r).validate().is_err());
    }

    #[test]
    fn fixed_response_rules() {
        let f = |s: u16, ct: &str| Action {
            order: None,
            kind: ActionKind::FixedResponse(FixedResponseConfig {
                status_code: s,
                content_type: Some(ct.into()),
                message_body: None,
            }),
        };
        f(404, "text/plain").validate().unwrap();
        assert!(f(302, "text/plain").validate().is_err());
        assert!(f(200, "image/png").validate().is_err());
    }
}
