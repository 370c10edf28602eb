//! Seeded generation of store crash cases, swarm style: each seed draws its own store
//! configuration (sync policy, block size, limits) and fault mix (which injected errors are
//! on, at what rates), then a sequence of operations. Everything comes from one ChaCha8 RNG
//! seeded with the case seed, so a seed names a case exactly.

use crate::store_check::StoreOp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_core::store::{Discard, Limits, StoreConfig, SyncPolicy};
use sluice_faultfs::{CrashMode, FaultConfig};
use std::fmt;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct StoreCase {
    pub seed: u64,
    pub config: StoreConfig,
    pub faults: FaultConfig,
    pub ops: Vec<StoreOp>,
}

/// Draws the configuration, faults and `steps` operations of case `seed`.
pub fn store_case(seed: u64, steps: usize) -> StoreCase {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sync = match rng.gen_range(0..3) {
        0 => SyncPolicy::Always,
        1 => SyncPolicy::OnSnapshot,
        _ => SyncPolicy::Interval { interval: Duration::from_millis(rng.gen_range(5..200)) },
    };
    let mut limits = Limits::default();
    if rng.gen_bool(0.3) {
        limits.max_msgs = Some(rng.gen_range(3..60));
    }
    if rng.gen_bool(0.2) {
        limits.max_bytes = Some(rng.gen_range(400..6000));
    }
    if rng.gen_bool(0.2) {
        limits.max_age = Some(Duration::from_millis(rng.gen_range(20..2000)));
    }
    limits.max_msg_size_bytes = 4096;
    limits.discard = if rng.gen_bool(0.8) { Discard::Old } else { Discard::New };
    let write_buffer_bytes = [0, 64, 700, 4096, 256 * 1024][rng.gen_range(0..5)];
    let config = StoreConfig { block_size_bytes: rng.gen_range(96..2048), write_buffer_bytes, sync, limits };
    let mut rate = |on: f64, max_ppm: u32| if rng.gen_bool(on) { rng.gen_range(1..=max_ppm) } else { 0 };
    let faults = FaultConfig {
        fsync_eio_ppm: rate(0.2, 20_000),
        write_enospc_ppm: rate(0.2, 20_000),
        read_eio_ppm: rate(0.2, 20_000),
        // Latent sector errors persist across crashes, so recovery would (rightly) refuse to
        // open; they are tested on their own, not in the crash sweep.
        latent_sector_ppm: 0,
        read_bitflip_ppm: rate(0.3, 50_000),
        capacity_bytes: None,
    };
    let ops = (0..steps).map(|_| random_op(&mut rng)).collect();
    StoreCase { seed, config, faults, ops }
}

fn random_op(rng: &mut ChaCha8Rng) -> StoreOp {
    match rng.gen_range(0..100) {
        0..=39 => StoreOp::Append { subject: rng.gen_range(0..4), len: rng.gen_range(0..300) },
        40..=45 => StoreOp::Delete { pick: rng.gen() },
        46..=48 => StoreOp::Purge { pick: rng.gen() },
        49..=50 => StoreOp::Skip { count: rng.gen_range(0..20) },
        51..=60 => StoreOp::Sync,
        61..=70 => StoreOp::Tick { advance_ms: rng.gen_range(1..300) },
        71..=86 => StoreOp::Get { pick: rng.gen() },
        87..=88 => StoreOp::Truncate { pick: rng.gen() },
        89..=95 => {
            let mode =
                if rng.gen_bool(0.5) { None } else { Some(CrashMode::ALL[rng.gen_range(0..CrashMode::ALL.len())]) };
            StoreOp::Crash { mode }
        }
        _ => StoreOp::Reopen,
    }
}

/// One line naming everything the seed drew, printed at the start of a run.
pub struct CaseParams<'a>(pub &'a StoreCase);

impl fmt::Display for CaseParams<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.0.config;
        let sync = match c.sync {
            SyncPolicy::Always => "always".to_string(),
            SyncPolicy::OnSnapshot => "on-snapshot".to_string(),
            SyncPolicy::Interval { interval } => format!("interval({}ms)", interval.as_millis()),
        };
        write!(f, "sync={sync} block={}B buffer={}B", c.block_size_bytes, c.write_buffer_bytes)?;
        let l = &c.limits;
        if let Some(n) = l.max_msgs {
            write!(f, " max_msgs={n}")?;
        }
        if let Some(n) = l.max_bytes {
            write!(f, " max_bytes={n}")?;
        }
        if let Some(age) = l.max_age {
            write!(f, " max_age={}ms", age.as_millis())?;
        }
        write!(f, " discard={:?}", l.discard)?;
        let fz = &self.0.faults;
        for (name, ppm) in [
            ("fsync-eio", fz.fsync_eio_ppm),
            ("enospc", fz.write_enospc_ppm),
            ("read-eio", fz.read_eio_ppm),
            ("read-flip", fz.read_bitflip_ppm),
        ] {
            if ppm > 0 {
                write!(f, " {name}={ppm}ppm")?;
            }
        }
        write!(f, " steps={}", self.0.ops.len())
    }
}
