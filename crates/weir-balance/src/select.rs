//! Selection algorithms over a snapshot of targets: `round_robin`, `least_outstanding_requests`
//! and `weighted_random`, with AWS's fail-open rule: when no target is healthy, every target
//! that is `initial` or `unhealthy` may receive requests; draining and unused targets never do.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cell::TargetCell;

/// A load-balancing algorithm (`load_balancing.algorithm.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `round_robin`: each candidate in turn.
    RoundRobin,
    /// `least_outstanding_requests`: the candidate with the fewest requests in flight.
    LeastOutstandingRequests,
    /// `weighted_random`: uniformly random among candidates.
    WeightedRandom,
}

impl Algorithm {
    /// Parses AWS's spelling; unknown values fall back to round robin (the model validates).
    pub fn parse(s: &str) -> Self {
        match s {
            "least_outstanding_requests" => Self::LeastOutstandingRequests,
            "weighted_random" => Self::WeightedRandom,
            _ => Self::RoundRobin,
        }
    }
}

/// Marks a request in flight on a target; dropping it ends the request.
#[derive(Debug)]
pub struct OutstandingGuard {
    cell: Arc<TargetCell>,
}

impl OutstandingGuard {
    /// Starts a request on `cell`.
    pub fn new(cell: Arc<TargetCell>) -> Self {
        cell.begin();
        Self { cell }
    }
    /// The target.
    pub fn target(&self) -> &Arc<TargetCell> {
        &self.cell
    }
}

impl Drop for OutstandingGuard {
    fn drop(&mut self) {
        self.cell.end();
    }
}

/// Picks targets from one snapshot of a target group.
#[derive(Debug)]
pub struct Selector {
    algorithm: Algorithm,
    targets: Vec<Arc<TargetCell>>,
    next: AtomicUsize,
    slow_start: Option<Duration>,
}

impl Selector {
    /// A selector over `targets` (in registration order).
    pub fn new(algorithm: Algorithm, targets: Vec<Arc<TargetCell>>) -> Self {
        let start = if targets.is_empty() { 0 } else { fastrand::usize(..targets.len()) };
        Self { algorithm, targets, next: AtomicUsize::new(start), slow_start: None }
    }

    /// Gives targets that became healthy less than `window` ago a share of new requests that
    /// grows linearly from zero to full over the window (`slow_start.duration_seconds`). A target
    /// ramps only while some other eligible target is past its window, as on ALB.
    pub fn with_slow_start(mut self, window: Option<Duration>) -> Self {
        self.slow_start = window.filter(|w| !w.is_zero());
        self
    }

    /// The share (0–1] a target gets now under slow start; 1 outside the window.
    pub fn slow_start_weight(&self, c: &TargetCell, now: Instant) -> f64 {
        match (self.slow_start, c.healthy_since()) {
            (Some(w), Some(since)) => {
                let elapsed = now.saturating_duration_since(since);
                (elapsed.as_secs_f64() / w.as_secs_f64()).clamp(0.001, 1.0)
            }
            _ => 1.0,
        }
    }

    /// Picks the target whose key is `key` if it may receive traffic now (sticky sessions):
    /// healthy, or a fail-open candidate when no target is healthy; never draining.
    pub fn pick_key(&self, key: &crate::TargetKey) -> Option<OutstandingGuard> {
        let c = self.targets.iter().find(|c| &c.key == key)?;
        let ok = c.is_routable()
            || (c.is_fail_open_candidate() && !self.targets.iter().any(|t| t.is_routable()));
        ok.then(|| OutstandingGuard::new(c.clone()))
    }

    /// All targets in the snapshot, whatever their state.
    pub fn targets(&self) -> &[Arc<TargetCell>] {
        &self.targets
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Picks a target, skipping `exclude` (a target that just failed), and marks a request in
    /// flight on it. `None` when no target may receive traffic (the ALB answers 503).
    pub fn pick(&self, exclude: Option<&TargetCell>) -> Option<OutstandingGuard> {
        let excluded = |c: &TargetCell| exclude.is_some_and(|e| std::ptr::eq(e, c));
        let healthy = |c: &TargetCell| c.is_routable() && !excluded(c);
        let chosen = self.choose(&healthy).or_else(|| {
            self.choose(&|c: &TargetCell| c.is_fail_open_candidate() && !excluded(c))
        })?;
        Some(OutstandingGuard::new(chosen))
    }

    fn choose(&self, eligible: &dyn Fn(&TargetCell) -> bool) -> Option<Arc<TargetCell>> {
        let count = self.targets.iter().filter(|c| eligible(c)).count();
        if count == 0 {
            return None;
        }
        let nth = |k: usize| self.targets.iter().filter(|c| eligible(c)).nth(k).cloned();
        if self.slow_start.is_some() && self.algorithm != Algorithm::LeastOutstandingRequests {
            let now = Instant::now();
            let weights: Vec<(f64, &Arc<TargetCell>)> = self
                .targets
                .iter()
                .filter(|c| eligible(c))
                .map(|c| (self.slow_start_weight(c, now), c))
                .collect();
            let ramping = weights.iter().any(|(w, _)| *w < 1.0);
            let settled = weights.iter().any(|(w, _)| *w >= 1.0);
            if ramping && settled {
                let total: f64 = weights.iter().map(|(w, _)| w).sum();
                let mut r = fastrand::f64() * total;
                for (w, c) in &weights {
                    if r < *w {
                        return Some((*c).clone());
                    }
                    r -= w;
                }
                return weights.last().map(|(_, c)| (*c).clone());
            }
        }
        match self.algorithm {
            Algorithm::RoundRobin => nth(self.next.fetch_add(1, Ordering::Relaxed) % count),
            Algorithm::WeightedRandom => nth(fastrand::usize(..count)),
            Algorithm::LeastOutstandingRequests => {
                // Rotate the scan start so that ties are shared rather than always won by the first.
                let start = self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len();
                let n = self.targets.len();
                (0..n)
                    .map(|i| &self.targets[(start + i) % n])
                    .filter(|c| eligible(c))
                    .min_by_key(|c| c.outstanding())
                    .cloned()
            }
        }
    }
}

/// Picks an index with probability proportional to `weights`; `None` if all are zero.
pub fn pick_weighted(weights: &[u32]) -> Option<usize> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if total == 0 {
        return None;
    }
    let mut r = fastrand::u64(..total);
    for (i, &w) in weights.iter().enumerate() {
        if r < u64::from(w) {
            return Some(i);
        }
        r -= u64::from(w);
    }
    None
}

#[cfg(test)]
mod tests;
