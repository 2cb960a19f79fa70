//! Target selection for Weir's data planes, the live per-target state they share, and the
//! health state machine.
//!
//! A [`Selector`] is built from a snapshot of [`TargetCell`]s and picks one per request or flow.
//! Cells live in `Arc`s keyed by target, shared by every snapshot, so a configuration change never
//! resets a target's health, outstanding-request count or counters. Pure logic: no I/O.
#![forbid(unsafe_code)]

pub mod cell;
pub mod health;
pub mod maglev;
pub mod rate;
pub mod select;

pub use cell::{HealthState, Reason, TargetCell, TargetKey};
pub use health::{HealthMachine, ProbeOutcome, Thresholds};
pub use maglev::{flow_hash, FlowKeyMode, FlowPool, Maglev};
pub use rate::{RateCell, SourceRates};
pub use select::{pick_weighted, Algorithm, OutstandingGuard, Selector};
