//! The production clock: `std::time::Instant` for monotonic time, `SystemTime` for wall time.
#![allow(clippy::disallowed_methods)]

use crate::env::{Clock, MonoTime};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Monotonic time is measured from the moment the clock was created.
#[derive(Clone, Debug)]
pub struct OsClock {
    origin: Arc<Instant>,
}

impl OsClock {
    pub fn new() -> Self {
        OsClock { origin: Arc::new(Instant::now()) }
    }
}

impl Default for OsClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for OsClock {
    fn now(&self) -> MonoTime {
        let ns = self.origin.elapsed().as_nanos();
        MonoTime::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    fn wall_ns(&self) -> u64 {
        // A clock set before 1970 reads as 0 rather than failing: wall time is advisory.
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_monotonic_and_wall_is_plausible() {
        let clock = OsClock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
        // 2020-01-01 in ns: any real machine is past it.
        assert!(clock.wall_ns() > 1_577_836_800_000_000_000);
    }
}
