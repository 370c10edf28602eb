//! Liveness: after the nemesis stops (crashed nodes restarted, paused ones resumed, the
//! network healed, disk faults off), every stream must elect a leader and commit a new
//! publish, and every replica converge, within the swarm's bound of simulated time.

use super::Violation;

pub const NAME: &str = "liveness";

/// `waiting`: what has not happened yet when the bound ran out.
pub fn check(bound_ms: u64, waiting: &[String], at_ms: u64) -> Result<(), Violation> {
    if waiting.is_empty() {
        return Ok(());
    }
    Err(Violation::new(NAME, at_ms, format!("not within {bound_ms}ms of healing: {}", waiting.join("; "))))
}
