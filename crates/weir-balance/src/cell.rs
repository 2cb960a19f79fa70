//! Live per-target state: health state and reason, outstanding requests, counters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// Identity of a registered target within a target group: id and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    /// Instance id or IP address.
    pub id: String,
    /// Port.
    pub port: u16,
}

/// A target's health state, as `DescribeTargetHealth` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HealthState {
    /// Registered, health checks not yet passed.
    Initial = 0,
    /// Passing health checks.
    Healthy = 1,
    /// Failing health checks.
    Unhealthy = 2,
    /// Not used by any load balancer, or in a zone the load balancer does not use.
    Unused = 3,
    /// Deregistering: no new requests, in-flight ones finish.
    Draining = 4,
    /// Health checks disabled: routable, health unknown.
    Unavailable = 5,
}

impl HealthState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Initial,
            1 => Self::Healthy,
            2 => Self::Unhealthy,
            3 => Self::Unused,
            4 => Self::Draining,
            _ => Self::Unavailable,
        }
    }
    /// AWS's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Unused => "unused",
            Self::Draining => "draining",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The reason code for a state other than `healthy`, with AWS's descriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No reason (healthy).
    None,
    /// `Elb.RegistrationInProgress`.
    RegistrationInProgress,
    /// `Elb.InitialHealthChecking`.
    InitialHealthChecking,
    /// `Target.ResponseCodeMismatch` with the codes seen.
    ResponseCodeMismatch(u16),
    /// `Target.Timeout`.
    Timeout,
    /// `Target.FailedHealthChecks` (connection refused/reset, bad response).
    FailedHealthChecks,
    /// `Target.NotInUse`.
    NotInUse,
    /// `Target.DeregistrationInProgress`.
    DeregistrationInProgress,
    /// `Target.HealthCheckDisabled`.
    HealthCheckDisabled,
    /// `Target.NotRegistered`.
    NotRegistered,
}

impl Reason {
    /// AWS's reason code, if any.
    pub fn code(&self) -> Option<&'static str> {
        Some(match self {
            Reason::None => return None,
            Reason::RegistrationInProgress => "Elb.RegistrationInProgress",
            Reason::InitialHealthChecking => "Elb.InitialHealthChecking",
            Reason::ResponseCodeMismatch(_) => "Target.ResponseCodeMismatch",
            Reason::Timeout => "Target.Timeout",
            Reason::FailedHealthChecks => "Target.FailedHealthChecks",
            Reason::NotInUse => "Target.NotInUse",
            Reason::DeregistrationInProgress => "Target.DeregistrationInProgress",
            Reason::HealthCheckDisabled => "Target.HealthCheckDisabled",
            Reason::NotRegistered => "Target.NotRegistered",
        })
    }

    /// AWS's description.
    pub fn description(&self) -> Option<String> {
        Some(match self {
            Reason::None => return None,
            Reason::RegistrationInProgress => "Target registration is in progress".into(),
            Reason::InitialHealthChecking => "Initial health checks in progress".into(),
            Reason::ResponseCodeMismatch(c) => {
                format!("Health checks failed with these codes: [{c}]")
            }
            Reason::Timeout => "Request timed out".into(),
            Reason::FailedHealthChecks => "Health checks failed".into(),
            Reason::NotInUse => {
                "Target group is not configured to receive traffic from the load balancer".into()
            }
            Reason::DeregistrationInProgress => "Target deregistration is in progress".into(),
            Reason::HealthCheckDisabled => "Health checks are disabled".into(),
            Reason::NotRegistered => "Target is not registered to the target group".into(),
        })
    }
}

/// Live state of one registered target, shared by every snapshot that contains it.
#[derive(Debug)]
pub struct TargetCell {
    /// Identity.
    pub key: TargetKey,
    /// Where traffic goes.
    pub addr: SocketAddr,
    /// Availability zone name.
    pub zone: String,
    state: AtomicU8,
    reason: Mutex<Reason>,
    outstanding: AtomicU32,
    requests: AtomicU64,
    registered_at: Instant,
    drain_deadline: Mutex<Option<Instant>>,
    healthy_since: Mutex<Option<Instant>>,
    changed: Notify,
}

impl TargetCell {
    /// A newly registered target in state `initial` (`Elb.RegistrationInProgress`).
    pub fn new(key: TargetKey, addr: SocketAddr, zone: String) -> Self {
        Self {
            key,
            addr,
            zone,
            state: AtomicU8::new(HealthState::Initial as u8),
            reason: Mutex::new(Reason::RegistrationInProgress),
            outstanding: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            registered_at: Instant::now(),
            drain_deadline: Mutex::new(None),
            healthy_since: Mutex::new(None),
            changed: Notify::new(),
        }
    }

    /// Current state.
    pub fn state(&self) -> HealthState {
        HealthState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Current reason.
    pub fn reason(&self) -> Reason {
        self.reason.lock().map(|r| r.clone()).unwrap_or(Reason::None)
    }

    /// Sets state and reason. A draining target stays draining.
    pub fn set_health(&self, state: HealthState, reason: Reason) {
        if self.state() == HealthState::Draining && state != HealthState::Draining {
            return;
        }
        if let Ok(mut r) = self.reason.lock() {
            *r = reason;
        }
        let before = self.state.swap(state as u8, Ordering::AcqRel);
        if before == state as u8 {
            return;
        }
        if state == HealthState::Healthy {
            if let Ok(mut h) = self.healthy_since.lock() {
                *h = Some(Instant::now());
            }
        }
        self.changed.notify_waiters();
    }

    /// Completes at the target's next change of [`state`](Self::state). To miss none, enable
    /// it (`Notified::enable`) before reading the state it is to follow.
    pub fn changed(&self) -> Notified<'_> {
        self.changed.notified()
    }

    /// When the target last became healthy (the start of its slow-start window).
    pub fn healthy_since(&self) -> Option<Instant> {
        self.healthy_since.lock().ok().and_then(|h| *h)
    }

    /// Starts draining until `deadline`.
    pub fn start_draining(&self, deadline: Instant) {
        if let Ok(mut d) = self.drain_deadline.lock() {
            d.get_or_insert(deadline);
        }
        self.set_health(HealthState::Draining, Reason::DeregistrationInProgress);
    }

    /// When draining ends, if draining.
    pub fn drain_deadline(&self) -> Option<Instant> {
        self.drain_deadline.lock().ok().and_then(|d| *d)
    }

    /// Whether new requests may go to this target when some target is healthy.
    pub fn is_routable(&self) -> bool {
        matches!(self.state(), HealthState::Healthy | HealthState::Unavailable)
    }

    /// Whether this target may receive requests under fail-open (all targets unhealthy).
    pub fn is_fail_open_candidate(&self) -> bool {
        matches!(self.state(), HealthState::Initial | HealthState::Unhealthy)
    }

    /// Requests in flight.
    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Requests sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// When the target was registered.
    pub fn registered_at(&self) -> Instant {
        self.registered_at
    }

    pub(crate) fn begin(&self) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end(&self) {
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Waker};

    fn ready(f: std::pin::Pin<&mut Notified<'_>>) -> bool {
        f.poll(&mut Context::from_waker(Waker::noop())).is_ready()
    }

    #[test]
    fn a_state_change_completes_changed_and_a_repeated_state_does_not() {
        let t = TargetCell::new(
            TargetKey { id: "i-1".into(), port: 80 },
            "127.0.0.1:80".parse().unwrap(),
            "zone-a".into(),
        );
        let mut first = std::pin::pin!(t.changed());
        first.as_mut().enable();
        assert!(!ready(first.as_mut()));
        t.set_health(HealthState::Healthy, Reason::None);
        assert!(ready(first.as_mut()), "Initial -> Healthy is a change");

        let mut second = std::pin::pin!(t.changed());
        second.as_mut().enable();
        t.set_health(HealthState::Healthy, Reason::None);
        assert!(!ready(second.as_mut()), "Healthy -> Healthy is not");
        t.start_draining(Instant::now());
        assert!(ready(second.as_mut()), "draining is");
    }
}
