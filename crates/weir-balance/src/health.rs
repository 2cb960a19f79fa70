//! The health state machine: consecutive probe outcomes against healthy/unhealthy thresholds.
//!
//! AWS semantics: a new target is `initial`; it becomes `healthy` after `healthy_threshold`
//! consecutive successes and `unhealthy` after `unhealthy_threshold` consecutive failures. A
//! healthy target becomes unhealthy after `unhealthy_threshold` consecutive failures, an
//! unhealthy one healthy after `healthy_threshold` consecutive successes. The reason code of an
//! unhealthy target is that of the failure that tipped it.

use crate::cell::{HealthState, Reason, TargetCell};

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The target answered as the matcher requires.
    Success,
    /// The target answered with a status the matcher rejects.
    CodeMismatch(u16),
    /// No answer within the timeout.
    Timeout,
    /// Connection refused or reset, or an invalid response.
    Failed,
}

/// Healthy/unhealthy thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive successes to become healthy.
    pub healthy: u32,
    /// Consecutive failures to become unhealthy.
    pub unhealthy: u32,
}

/// Per-target checker state (owned by one health-check task).
#[derive(Debug, Default, Clone)]
pub struct HealthMachine {
    successes: u32,
    failures: u32,
}

impl HealthMachine {
    /// A fresh machine.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one probe outcome and applies any transition to `cell`. Returns the state after.
    pub fn record(
        &mut self,
        cell: &TargetCell,
        outcome: &ProbeOutcome,
        t: Thresholds,
    ) -> HealthState {
        let state = cell.state();
        if matches!(state, HealthState::Draining | HealthState::Unused) {
            return state;
        }
        if *outcome == ProbeOutcome::Success {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if self.successes >= t.healthy && state != HealthState::Healthy {
                cell.set_health(HealthState::Healthy, Reason::None);
            } else if state == HealthState::Initial {
                cell.set_health(HealthState::Initial, Reason::InitialHealthChecking);
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.failures >= t.unhealthy {
                let reason = match outcome {
                    ProbeOutcome::CodeMismatch(c) => Reason::ResponseCodeMismatch(*c),
                    ProbeOutcome::Timeout => Reason::Timeout,
                    _ => Reason::FailedHealthChecks,
                };
                cell.set_health(HealthState::Unhealthy, reason);
            } else if state == HealthState::Initial {
                cell.set_health(HealthState::Initial, Reason::InitialHealthChecking);
            }
        }
        cell.state()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::TargetKey;

    fn cell() -> TargetCell {
        TargetCell::new(
            TargetKey { id: "127.0.0.1".into(), port: 80 },
            "127.0.0.1:80".parse().unwrap(),
            "us-east-1a".into(),
        )
    }

    const T: Thresholds = Thresholds { healthy: 3, unhealthy: 2 };

    #[test]
    fn initial_to_healthy_after_threshold() {
        let c = cell();
        let mut m = HealthMachine::new();
        assert_eq!(c.reason(), Reason::RegistrationInProgress);
        assert_eq!(m.record(&c, &ProbeOutcome::Success, T), HealthState::Initial);
        assert_eq!(c.reason(), Reason::InitialHealthChecking);
        assert_eq!(m.record(&c, &ProbeOutcome::Success, T), HealthState::Initial);
        assert_eq!(m.record(&c, &ProbeOutcome::Success, T), HealthState::Healthy);
        assert_eq!(c.reason(), Reason::None);
    }

    #[test]
    fn failures_reset_successes_and_tip_with_reason() {
        let c = cell();
        let mut m = HealthMachine::new();
        for _ in 0..3 {
            m.record(&c, &ProbeOutcome::Success, T);
        }
        assert_eq!(m.record(&c, &ProbeOutcome::CodeMismatch(503), T), HealthState::Healthy);
        assert_eq!(m.record(&c, &ProbeOutcome::CodeMismatch(503), T), HealthState::Unhealthy);
        assert_eq!(c.reason().code(), Some("Target.ResponseCodeMismatch"));
        assert_eq!(
            c.reason().description().unwrap(),
            "Health checks failed with these codes: [503]"
        );
        m.record(&c, &ProbeOutcome::Success, T);
        m.record(&c, &ProbeOutcome::Success, T);
        m.record(&c, &ProbeOutcome::Timeout, T);
        assert_eq!(c.state(), HealthState::Unhealthy, "a failure resets the success streak");
        for _ in 0..3 {
            m.record(&c, &ProbeOutcome::Success, T);
        }
        assert_eq!(c.state(), HealthState::Healthy);
    }

    #[test]
    fn draining_is_sticky() {
        let c = cell();
        let mut m = HealthMachine::new();
        c.start_draining(std::time::Instant::now());
        for _ in 0..5 {
            m.record(&c, &ProbeOutcome::Success, T);
        }
        assert_eq!(c.state(), HealthState::Draining);
        assert_eq!(c.reason().code(), Some("Target.DeregistrationInProgress"));
    }
}
