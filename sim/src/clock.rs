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
    pub fn new(wall_origin_ns: u64, wall_skew_ns: i64, drift_ppm: i32) -> Self {
        assert!(drift_ppm.abs() < 1_000_000, "drift must be below 100%");
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
