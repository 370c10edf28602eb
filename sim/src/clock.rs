//! The simulated clock: madsim's time, seen through one node's skew and drift.
//!
//! madsim advances a single virtual time for the whole cluster; each node reads it through a
//! fixed offset (skew) and a rate error (drift, in parts per million), both drawn from the
//! seed, so nodes disagree about time the way real machines do. Monotonic time never goes
//! backwards on a node; wall time may be skewed arbitrarily.

use madsim::time::Instant;
use sluice_core::env::{Clock, MonoTime};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct SimClock {
    inner: Arc<ClockParams>,
}

#[derive(Debug)]
struct ClockParams {
    origin: Instant,
    /// Added to wall time, in nanoseconds (may be negative).
    wall_skew_ns: i64,
    /// Rate error in parts per million: +100 means this node's clock runs 0.01% fast.
    drift_ppm: i32,
    /// Wall time at origin, in ns since the Unix epoch.
    wall_origin_ns: u64,
}

impl SimClock {
    /// A clock whose zero is now (madsim time) and whose wall time starts at
    /// `wall_origin_ns` plus the skew.
    // madsim's `Instant` is simulated time inside a runtime; the assert below refuses to run
    // anywhere else, so this is not a read of the real clock.
    #[allow(clippy::disallowed_methods)]
    pub fn new(wall_origin_ns: u64, wall_skew_ns: i64, drift_ppm: i32) -> Self {
        assert!(drift_ppm.abs() < 1_000_000, "drift must be below 100%");
        // Outside a madsim runtime `Instant::now` is the real clock: refuse rather than let
        // wall time leak into a simulation.
        assert!(madsim::runtime::Handle::try_current().is_ok(), "SimClock used outside a madsim runtime");
        SimClock { inner: Arc::new(ClockParams { origin: Instant::now(), wall_skew_ns, drift_ppm, wall_origin_ns }) }
    }

    fn local_elapsed_ns(&self) -> u64 {
        let real = u64::try_from(self.inner.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let adjust = (i128::from(real) * i128::from(self.inner.drift_ppm)) / 1_000_000;
        (i128::from(real) + adjust).clamp(0, i128::from(u64::MAX)) as u64
    }
}

impl Clock for SimClock {
    fn now(&self) -> MonoTime {
        MonoTime::from_nanos(self.local_elapsed_ns())
    }

    fn wall_ns(&self) -> u64 {
        let wall = i128::from(self.inner.wall_origin_ns)
            + i128::from(self.local_elapsed_ns())
            + i128::from(self.inner.wall_skew_ns);
        wall.clamp(0, i128::from(u64::MAX)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::in_madsim;
    use std::time::Duration;

    #[test]
    fn skew_and_drift_shape_what_a_node_sees() {
        let (mono, wall) = in_madsim(1, || {
            let fast = SimClock::new(1_000_000_000_000, 5_000, 100);
            madsim::time::advance(Duration::from_secs(10));
            (fast.now(), fast.wall_ns())
        });
        // 10 s of simulated time on a clock 100 ppm fast reads 10.001 s (madsim adds a few
        // hundred ns of its own per poll).
        let ten_s = 10_000_000_000u64;
        assert!(mono.as_nanos() >= ten_s + 1_000_000 && mono.as_nanos() < ten_s + 1_010_000, "{mono:?}");
        assert_eq!(wall, 1_000_000_000_000 + mono.as_nanos() + 5_000);
    }

    #[test]
    #[should_panic(expected = "outside a madsim runtime")]
    fn refuses_to_run_outside_madsim() {
        SimClock::new(0, 0, 0);
    }
}
