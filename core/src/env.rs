//! The environment boundary: clock, network, background work and BUGGIFY.
//!
//! Core is generic over one `Env` type parameter (DESIGN §2): production binds it to the
//! operating system (`os`), the simulator to madsim and faultfs. Protocol state machines never
//! see an `Env`; they take `now` as an argument and return actions. Only the node driver and
//! the storage engine hold one.

use crate::disk::Disk;
use bytes::Bytes;
use std::future::Future;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A node's identity within a cluster.
pub type NodeId = u64;

/// A point on one node's monotonic clock, in nanoseconds since an arbitrary origin
/// (the node's start). Comparable only with times from the same node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonoTime {
    nanos: u64,
}

impl MonoTime {
    pub const ZERO: MonoTime = MonoTime { nanos: 0 };

    pub const fn from_nanos(nanos: u64) -> Self {
        MonoTime { nanos }
    }

    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// Time elapsed since `earlier`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: MonoTime) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }
}

impl Add<Duration> for MonoTime {
    type Output = MonoTime;
    fn add(self, d: Duration) -> MonoTime {
        let d_ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        MonoTime { nanos: self.nanos.saturating_add(d_ns) }
    }
}

impl Sub<Duration> for MonoTime {
    type Output = MonoTime;
    fn sub(self, d: Duration) -> MonoTime {
        let d_ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        MonoTime { nanos: self.nanos.saturating_sub(d_ns) }
    }
}

/// A node's clocks.
///
/// Contract:
/// * `now` is monotonic on one node: two calls in order never go backwards. It may run
///   faster or slower than real time (drift) and has no relation to other nodes' `now`.
/// * `wall_ns` is Unix time in nanoseconds for message timestamps and ages. It can jump
///   backwards or forwards (NTP steps, skew between nodes); no correctness decision may
///   depend on it being monotonic or agreeing across nodes.
/// * Neither call fails or blocks.
pub trait Clock: Clone + Send + Sync + 'static {
    fn now(&self) -> MonoTime;
    fn wall_ns(&self) -> u64;
}

/// Largest frame `Net` carries, in bytes. Larger sends are refused; receivers drop larger
/// frames unread, so a hostile peer cannot make a node allocate more.
pub const FRAME_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Why a send or receive failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetError {
    /// The bounded queue towards that peer is full; the frame was not queued. Back off.
    Full { to: NodeId },
    /// The frame exceeds [`FRAME_BYTES_MAX`].
    TooLarge { size_bytes: usize },
    /// The destination is not a known peer.
    UnknownPeer { to: NodeId },
    /// The network is shut down; no more frames will arrive.
    Closed,
}

/// Datagram-style messaging between the nodes of a cluster.
///
/// Contract:
/// * `send` never blocks and never waits for the peer. `Ok` means queued, not delivered:
///   a frame may be lost, delayed, duplicated or reordered relative to other frames, and a
///   peer may be down. Protocols above must tolerate all of these; none of them is an error.
/// * Queues are bounded; a full queue is `Err(Full)` and nothing is queued.
/// * A delivered frame arrives whole and unmodified (transports checksum or drop), but its
///   *content* is untrusted: decoders validate every field.
/// * `recv` yields frames addressed to this node with the sender's id, and
///   `Err(Closed)` once the network has shut down.
pub trait Net: Clone + Send + Sync + 'static {
    fn send(&self, to: NodeId, frame: Bytes) -> Result<(), NetError>;
    fn recv(&self) -> impl Future<Output = Result<(NodeId, Bytes), NetError>> + Send;
}

/// Everything a node needs from the world, bundled so core is generic over one parameter.
///
/// Contract:
/// * `spawn_background` runs blocking work (disk I/O, snapshot installation, restore
///   workers) off the caller's event loop and resolves to its result. The work must not
///   assume it runs on another thread: in simulation it runs as a task in simulated time.
///   Dropping the future does not cancel work already started.
/// * `sleep_until` resolves once `clock().now() >= deadline`.
/// * `buggify(site)` says whether a rare path named `site` should be forced now. It is a
///   pure function of the seed and call order in simulation and always `false` in
///   production; code must be correct either way.
pub trait Env: Clone + Send + Sync + 'static {
    type Clock: Clock;
    type Disk: Disk;
    type Net: Net;

    fn node_id(&self) -> NodeId;
    fn clock(&self) -> &Self::Clock;
    fn disk(&self) -> &Self::Disk;
    fn net(&self) -> &Self::Net;
    fn sleep_until(&self, deadline: MonoTime) -> impl Future<Output = ()> + Send;
    fn spawn_background<T, F>(&self, work: F) -> impl Future<Output = T> + Send
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static;
    fn buggify(&self, site: &'static str) -> bool;
}

/// Every BUGGIFY site, so a sweep can list those no seed fired (`coverage`):
/// * `raft-election-timeout-short`: an election timer of a quarter of the minimum;
/// * `raft-batch-one-entry`: an AppendEntries carries one entry;
/// * `checkpoint-early`: a checkpoint before the snapshot policy asks for one;
/// * `catchup-chunk-tiny`: a catch-up chunk of one message;
/// * `catchup-snapshot-request`: a catch-up asks the leader for a newer snapshot at once;
/// * `work-deferred`: queued background work (checkpoint I/O, clean-ups) waits a turn.
pub const BUGGIFY_SITES: &[&str] = &[
    "raft-election-timeout-short",
    "raft-batch-one-entry",
    "checkpoint-early",
    "catchup-chunk-tiny",
    "catchup-snapshot-request",
    "work-deferred",
];

/// BUGGIFY for synchronous code that holds no `Env` (the node driver): whether the rare path
/// `site` is forced for `key`, as a pure function of (seed, site, key), so a run replays
/// exactly whatever order things are asked in. `OFF` (the default, and production) never
/// fires; a simulator turns it on with a rate. Code must be correct either way: a site only
/// takes a path that is legal anyway, earlier or more often than it would be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Buggify {
    seed: u64,
    fire_ppm: u32,
}

impl Buggify {
    pub const OFF: Buggify = Buggify { seed: 0, fire_ppm: 0 };

    /// Fires for about `fire_ppm` in a million (site, key) pairs.
    pub fn new(seed: u64, fire_ppm: u32) -> Buggify {
        assert!(fire_ppm <= 1_000_000, "fire_ppm {fire_ppm} above one million");
        Buggify { seed, fire_ppm }
    }

    pub fn fires(&self, site: &'static str, key: u64) -> bool {
        if self.fire_ppm == 0 {
            return false;
        }
        let mut h = crate::format::fnv::Fnv64::new();
        h.u64(self.seed);
        h.bytes(site.as_bytes());
        h.u64(key);
        // FNV's low bits mix poorly; a multiply moves the well-mixed bits up.
        let x = h.finish().wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        let fired = x % 1_000_000 < u64::from(self.fire_ppm);
        if fired {
            crate::coverage::buggify_fired(site);
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buggify_is_off_by_default_and_fires_at_about_its_rate() {
        assert!((0..10_000).all(|k| !Buggify::OFF.fires("checkpoint-early", k)));
        let b = Buggify::new(42, 250_000);
        let fired = (0..10_000).filter(|k| b.fires("checkpoint-early", *k)).count();
        assert!((2_000..3_000).contains(&fired), "{fired} of 10,000 at 25%");
        // A pure function: the same question, the same answer; another site, other answers.
        assert!(
            (0..100).all(|k| b.fires("checkpoint-early", k) == Buggify::new(42, 250_000).fires("checkpoint-early", k))
        );
        assert!((0..100).any(|k| b.fires("checkpoint-early", k) != b.fires("work-deferred", k)));
    }

    #[test]
    fn mono_time_arithmetic_saturates() {
        let t = MonoTime::from_nanos(10);
        assert_eq!((t - Duration::from_nanos(20)).as_nanos(), 0);
        assert_eq!((MonoTime::from_nanos(u64::MAX) + Duration::from_secs(1)).as_nanos(), u64::MAX);
        assert_eq!(t.saturating_since(MonoTime::from_nanos(20)), Duration::ZERO);
        assert_eq!(MonoTime::from_nanos(25).saturating_since(t), Duration::from_nanos(15));
    }
}
