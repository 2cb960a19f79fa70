//! Proxy errors that record which side failed and map onto ALB's status codes (ELB 4XX/5XX).

use std::fmt;

/// Which side caused a failed request: the split behind `HTTPCode_ELB_*` metrics and the
/// access log's `error_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSide {
    /// The client sent something wrong or went away.
    Client,
    /// The load balancer could not serve (no targets, overload).
    LoadBalancer,
    /// The target refused, reset, timed out or answered invalidly.
    Target,
}

/// A request that the load balancer answers itself with an error status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyError {
    /// The side at fault.
    pub side: ErrorSide,
    /// The status ALB answers with.
    pub status: u16,
    /// ALB-style error reason, e.g. `TargetConnectionError`.
    pub reason: &'static str,
    /// Whether nothing reached a target, so that retrying on another target is safe.
    pub retry_safe: bool,
}

impl ProxyError {
    /// 400: malformed request.
    pub fn bad_request(reason: &'static str) -> Self {
        Self { side: ErrorSide::Client, status: 400, reason, retry_safe: false }
    }
    /// 431: the request head is larger than 64 KiB.
    pub fn head_too_large() -> Self {
        Self { side: ErrorSide::Client, status: 431, reason: "HeaderTooLarge", retry_safe: false }
    }

    /// 413: the request body is larger than the configured limit.
    pub fn body_too_large() -> Self {
        Self {
            side: ErrorSide::Client,
            status: 413,
            reason: "RequestBodyTooLarge",
            retry_safe: false,
        }
    }
    /// 429: the client's source is over its request-rate limit.
    pub fn rate_limited() -> Self {
        Self { side: ErrorSide::Client, status: 429, reason: "RateLimited", retry_safe: false }
    }
    /// More than 30 X-Forwarded-For addresses (463).
    pub fn too_many_forwarded() -> Self {
        Self {
            side: ErrorSide::Client,
            status: 463,
            reason: "XForwardedForTooManyAddresses",
            retry_safe: false,
        }
    }
    /// 503: no registered (or usable) target.
    pub fn no_target() -> Self {
        Self { side: ErrorSide::LoadBalancer, status: 503, reason: "NoTargets", retry_safe: false }
    }
    /// 502: the target refused the connection.
    pub fn connect_refused() -> Self {
        Self {
            side: ErrorSide::Target,
            status: 502,
            reason: "TargetConnectionError",
            retry_safe: true,
        }
    }
    /// 504: the connection to the target timed out.
    pub fn connect_timeout() -> Self {
        Self {
            side: ErrorSide::Target,
            status: 504,
            reason: "TargetConnectionError",
            retry_safe: true,
        }
    }
    /// 502: the target reset the connection or answered with an invalid response.
    pub fn target_failed() -> Self {
        Self {
            side: ErrorSide::Target,
            status: 502,
            reason: "TargetResponseError",
            retry_safe: false,
        }
    }
    /// 504: no response within the idle timeout.
    pub fn target_timeout() -> Self {
        Self { side: ErrorSide::Target, status: 504, reason: "TargetTimeout", retry_safe: false }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?} side): {}", self.status, self.side, self.reason)
    }
}

impl std::error::Error for ProxyError {}
