//! Injected errors: what faultfs can make fail, how often, and the events it reports.
//!
//! Each fault models something real hardware and kernels do, because the store must survive
//! each one:
//! * `fsync_eio`: `sync_data` fails with EIO and the file's pending writes are *dropped*, while
//!   reads keep showing them (Linux marks the dirty pages clean after a failed write-back; a
//!   retried fsync then "succeeds" without them: fsyncgate, PostgreSQL 2018);
//! * `write_enospc`: a write fails with ENOSPC after writing an arbitrary prefix;
//! * `capacity_bytes`: the device is full once the live files reach this size;
//! * `read_eio`: a read fails once (transient: a retry may succeed);
//! * `latent_sector`: a read finds a sector unreadable, and it stays unreadable (EIO on every
//!   read) until the sector is written again, as a drive remaps a bad sector on write;
//! * `read_bitflip`: a read returns one flipped bit, silently; the medium is intact, so a
//!   re-read is clean. Checksums must catch it.
//!
//! Rates are in parts per million per operation, drawn from the seeded RNG in call order.

use crate::crash::CrashReport;
use std::fmt;
use std::path::PathBuf;

/// How often each fault fires. All zero ([`FaultConfig::none`]) is a perfect disk that still
/// loses unsynced data in a crash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultConfig {
    pub fsync_eio_ppm: u32,
    pub write_enospc_ppm: u32,
    pub read_eio_ppm: u32,
    pub latent_sector_ppm: u32,
    pub read_bitflip_ppm: u32,
    /// Total live bytes across all files beyond which writes fail with ENOSPC.
    pub capacity_bytes: Option<u64>,
}

impl FaultConfig {
    pub const fn none() -> Self {
        FaultConfig {
            fsync_eio_ppm: 0,
            write_enospc_ppm: 0,
            read_eio_ppm: 0,
            latent_sector_ppm: 0,
            read_bitflip_ppm: 0,
            capacity_bytes: None,
        }
    }
}

/// The kinds of fault, for counting and coverage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    FsyncEio,
    SyncDirEio,
    NoSpace,
    ReadEio,
    LatentSector,
    ReadBitflip,
    MediaBitflip,
    PowerCut,
    Crash,
}

/// One injected fault, as reported to the observer. Every event is injected by definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultEvent {
    FsyncFailed {
        path: PathBuf,
        dropped_writes: usize,
        dropped_bytes: u64,
    },
    SyncDirFailed {
        path: PathBuf,
    },
    NoSpace {
        path: PathBuf,
        offset: u64,
        len: u64,
        written: u64,
    },
    ReadFailed {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
    LatentSector {
        path: PathBuf,
        sector: u64,
    },
    ReadBitflip {
        path: PathBuf,
        offset: u64,
        bit: u8,
    },
    /// A bit flipped on the medium itself, by request (`FaultFs::flip_bit`).
    MediaBitflip {
        path: PathBuf,
        offset: u64,
        bit: u8,
    },
    /// The power-cut budget ran out: every later mutating call fails until a crash.
    PowerCut {
        after_calls: u64,
    },
    Crash(CrashReport),
}

impl FaultEvent {
    pub fn kind(&self) -> FaultKind {
        match self {
            FaultEvent::FsyncFailed { .. } => FaultKind::FsyncEio,
            FaultEvent::SyncDirFailed { .. } => FaultKind::SyncDirEio,
            FaultEvent::NoSpace { .. } => FaultKind::NoSpace,
            FaultEvent::ReadFailed { .. } => FaultKind::ReadEio,
            FaultEvent::LatentSector { .. } => FaultKind::LatentSector,
            FaultEvent::ReadBitflip { .. } => FaultKind::ReadBitflip,
            FaultEvent::MediaBitflip { .. } => FaultKind::MediaBitflip,
            FaultEvent::PowerCut { .. } => FaultKind::PowerCut,
            FaultEvent::Crash(_) => FaultKind::Crash,
        }
    }
}

impl fmt::Display for FaultEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultEvent::FsyncFailed { path, dropped_writes, dropped_bytes } => write!(
                f,
                "injected fsync EIO on {}: dropped {dropped_writes} pending writes ({dropped_bytes} bytes)",
                path.display()
            ),
            FaultEvent::SyncDirFailed { path } => write!(f, "injected directory fsync EIO on {}", path.display()),
            FaultEvent::NoSpace { path, offset, len, written } => {
                write!(f, "injected ENOSPC on {} at {offset}+{len} after {written} bytes", path.display())
            }
            FaultEvent::ReadFailed { path, offset, len } => {
                write!(f, "injected read EIO on {} at {offset}+{len}", path.display())
            }
            FaultEvent::LatentSector { path, sector } => {
                write!(f, "injected latent sector error on {} sector {sector}", path.display())
            }
            FaultEvent::ReadBitflip { path, offset, bit } => {
                write!(f, "injected read bit flip on {} at {offset} bit {bit}", path.display())
            }
            FaultEvent::MediaBitflip { path, offset, bit } => {
                write!(f, "injected media bit flip on {} at {offset} bit {bit}", path.display())
            }
            FaultEvent::PowerCut { after_calls } => write!(f, "injected power cut after {after_calls} mutating calls"),
            FaultEvent::Crash(report) => write!(f, "injected crash: {report}"),
        }
    }
}
