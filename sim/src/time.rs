//! A clock that moves only when told to, for tests that run outside madsim.

use sluice_core::env::{Clock, MonoTime};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Wall time starts at 2026-01-01T00:00:00Z so timestamps look real.
pub const WALL_ORIGIN_NS: u64 = 1_767_225_600_000_000_000;

#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn advance(&self, by: Duration) {
        self.nanos.fetch_add(u64::try_from(by.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> MonoTime {
        MonoTime::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    fn wall_ns(&self) -> u64 {
        WALL_ORIGIN_NS + self.nanos.load(Ordering::Relaxed)
    }
}
