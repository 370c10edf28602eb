//! faultfs: an in-memory [`Disk`] that models what a real machine does to unsynced data when
//! it crashes, and injects the errors real disks return.
//!
//! The crash model (module `crash`) and the injected errors (module `inject`) are documented
//! where they are implemented; docs/faultfs.md gives the whole fault model and its rationale.
//! Everything faultfs decides comes from one seeded ChaCha8 RNG, drawn in call order, so the
//! same seed and the same calls give the same faults. Every injected fault is reported to an
//! observer and every error it injects has `DiskError::injected` set.
//!
//! faultfs passes `sluice_core::disk::conformance::{run, run_crash}`.

mod crash;
mod inject;
mod state;

pub use crash::{tear_points, CrashMode, CrashReport, CRASH_STATES_MAX};
pub use inject::{FaultConfig, FaultEvent, FaultKind};
pub use state::{InodeId, NameOp, Node, OpId, Pending, PendingOp, SECTOR_BYTES};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_core::disk::{check_relative_path, Disk, DiskError, DiskErrorKind, DiskFile, EntryKind, OpenMode};
use state::{parent_of, write_bytes, Tree};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Receives every injected fault, in order. Called without faultfs locks held.
pub type Observer = Box<dyn FnMut(&FaultEvent) + Send>;

/// An in-memory disk with crash semantics. Clones share the same files.
#[derive(Clone)]
pub struct FaultFs {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Mutex<Inner>,
    observer: Mutex<Option<Observer>>,
}

struct Inner {
    tree: Tree,
    rng: ChaCha8Rng,
    config: FaultConfig,
    /// Bumped by every crash; handles from an older generation are stale.
    generation: u64,
    counts: BTreeMap<FaultKind, u64>,
    /// Events produced under the lock, delivered after it is released.
    outbox: Vec<FaultEvent>,
    /// Mutating calls made so far.
    mutating_calls: u64,
    /// Mutating calls left before the power is cut; `None` means no cut is set.
    power_budget: Option<u64>,
    /// The cut was reported to the observer.
    power_cut_reported: bool,
    /// Flips to apply to the next device read covering each (inode, offset): transient.
    one_shot_flips: Vec<(InodeId, u64, u8)>,
    /// Files whose next `sync_data` fails (as an injected EIO does).
    one_shot_fsync_failures: BTreeSet<InodeId>,
}

impl Inner {
    /// Counts a mutating call and fails it if the power is already cut.
    fn power(&mut self, op: &'static str, path: &Path) -> Result<(), DiskError> {
        self.mutating_calls += 1;
        match &mut self.power_budget {
            Some(0) => {
                if !self.power_cut_reported {
                    self.power_cut_reported = true;
                    self.emit(FaultEvent::PowerCut { after_calls: self.mutating_calls - 1 });
                }
                Err(DiskError::injected(DiskErrorKind::Io, op, path, "power lost"))
            }
            Some(left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn roll(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.rng.gen_range(0..1_000_000u32) < ppm
    }

    fn emit(&mut self, event: FaultEvent) {
        *self.counts.entry(event.kind()).or_insert(0) += 1;
        self.outbox.push(event);
    }
}

/// An open file on a [`FaultFs`].
pub struct FaultFile {
    shared: Arc<Shared>,
    inode: InodeId,
    path: PathBuf,
    generation: u64,
    writable: bool,
}

impl std::fmt::Debug for FaultFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultFile").field("path", &self.path).field("inode", &self.inode).finish()
    }
}

impl FaultFs {
    /// A perfect disk (no injected errors) whose crashes lose unsynced data, seeded.
    pub fn new(seed: u64) -> Self {
        Self::with_config(seed, FaultConfig::none())
    }

    pub fn with_config(seed: u64, config: FaultConfig) -> Self {
        let inner = Inner {
            tree: Tree::default(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            config,
            generation: 0,
            counts: BTreeMap::new(),
            outbox: Vec::new(),
            mutating_calls: 0,
            power_budget: None,
            power_cut_reported: false,
            one_shot_flips: Vec::new(),
            one_shot_fsync_failures: BTreeSet::new(),
        };
        FaultFs { shared: Arc::new(Shared { inner: Mutex::new(inner), observer: Mutex::new(None) }) }
    }

    /// Cuts the power after `calls` more mutating calls (writes, truncates, syncs, creates,
    /// removes, renames): every later one fails with an injected EIO and changes nothing, as
    /// if the machine had already lost power, until a crash. `None` removes the cut. With
    /// [`FaultFs::crash_states`] this enumerates crashes at every point inside an operation.
    pub fn set_power_cut_after(&self, calls: Option<u64>) {
        let mut inner = self.lock();
        inner.power_budget = calls;
        inner.power_cut_reported = false;
    }

    /// Mutating calls made so far (successful or not).
    pub fn mutating_calls(&self) -> u64 {
        self.lock().mutating_calls
    }

    pub fn set_config(&self, config: FaultConfig) {
        self.lock().config = config;
    }

    pub fn config(&self) -> FaultConfig {
        self.lock().config
    }

    /// Installs the observer that receives every injected fault.
    pub fn set_observer(&self, observer: Observer) {
        *self.shared.observer.lock().expect("observer lock") = Some(observer);
    }

    /// Crashes the machine with a mode drawn from the RNG. Every open handle becomes stale.
    pub fn crash(&self) -> CrashReport {
        let mode = {
            let mut inner = self.lock();
            CrashMode::ALL[inner.rng.gen_range(0..CrashMode::ALL.len())]
        };
        self.crash_with(mode)
    }

    /// Crashes the machine with `mode`; the RNG decides the details (which subset, where to
    /// tear). Every open handle becomes stale.
    pub fn crash_with(&self, mode: CrashMode) -> CrashReport {
        let report = {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let report = crash::crash(&mut inner.tree, mode, &mut inner.rng);
            inner.generation += 1;
            inner.power_budget = None;
            inner.emit(FaultEvent::Crash(report.clone()));
            report
        };
        self.deliver();
        report
    }

    /// Every choice a crash could make now, across all modes, such that applying each with
    /// [`FaultFs::crash_as`] (on a [`FaultFs::fork`]) yields every state a crash could leave.
    pub fn crash_states(&self) -> Vec<CrashReport> {
        crash::all_crash_states(&self.lock().tree)
    }

    /// Crashes with exactly the choices in `report` (one of [`FaultFs::crash_states`]).
    /// Panics if the report names operations that are not pending: a test bug.
    pub fn crash_as(&self, report: &CrashReport) {
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let pending: std::collections::BTreeSet<OpId> = inner.tree.pending.iter().map(|p| p.id).collect();
            assert!(report.kept.iter().chain(report.torn.iter().map(|(id, _)| id)).all(|id| pending.contains(id)));
            crash::apply_report(&mut inner.tree, report);
            inner.generation += 1;
            inner.power_budget = None;
            inner.emit(FaultEvent::Crash(report.clone()));
        }
        self.deliver();
    }

    /// An independent copy of this disk (files, pending operations, RNG state, fault
    /// config), without the observer: for exploring several futures from one state.
    pub fn fork(&self) -> FaultFs {
        let inner = self.lock();
        let copy = Inner {
            tree: inner.tree.clone(),
            rng: inner.rng.clone(),
            config: inner.config,
            generation: inner.generation,
            counts: inner.counts.clone(),
            outbox: Vec::new(),
            mutating_calls: inner.mutating_calls,
            power_budget: inner.power_budget,
            power_cut_reported: inner.power_cut_reported,
            one_shot_flips: inner.one_shot_flips.clone(),
            one_shot_fsync_failures: inner.one_shot_fsync_failures.clone(),
        };
        FaultFs { shared: Arc::new(Shared { inner: Mutex::new(copy), observer: Mutex::new(None) }) }
    }

    /// Flips one bit on the medium (both views): silent corruption that checksums must
    /// catch and that a re-read does not fix.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> Result<(), DiskError> {
        let result = {
            let mut inner = self.lock();
            let inode = file_inode(&inner.tree, "flip_bit", path)?;
            // The medium changes; the page cache shows the flip too unless a dirty page holds
            // newer bytes there.
            let cached = inner.tree.pending_write_overlaps(inode, offset, 1);
            let node = inner.tree.inodes.get_mut(&inode).expect("named inodes exist");
            let mask = 1u8 << (bit % 8);
            let mut flipped = false;
            if let Some(byte) = node.durable.get_mut(offset as usize) {
                *byte ^= mask;
                flipped = true;
                if !cached {
                    if let Some(byte) = node.live.get_mut(offset as usize) {
                        *byte ^= mask;
                    }
                }
            }
            if flipped {
                inner.emit(FaultEvent::MediaBitflip { path: path.to_path_buf(), offset, bit: bit % 8 });
                Ok(())
            } else {
                Err(DiskError::new(DiskErrorKind::InvalidInput, "flip_bit", path, "offset past the end"))
            }
        };
        self.deliver();
        result
    }

    /// Flips `bit` of the byte at `offset` of `path` in the next read from the device that
    /// covers it, once: a transient flip on the read path (the medium is intact).
    pub fn flip_next_read(&self, path: &Path, offset: u64, bit: u8) -> Result<(), DiskError> {
        let mut inner = self.lock();
        let inode = file_inode(&inner.tree, "flip_next_read", path)?;
        inner.one_shot_flips.push((inode, offset, bit % 8));
        Ok(())
    }

    /// Makes the next `sync_data` of `path` fail, once, exactly as an injected EIO does: its
    /// pending writes are dropped from the writeback and stay visible to reads (fsyncgate).
    /// For tests that need one particular sync to fail and the others to succeed.
    pub fn fail_next_sync_data(&self, path: &Path) -> Result<(), DiskError> {
        let mut inner = self.lock();
        let inode = file_inode(&inner.tree, "fail_next_sync_data", path)?;
        inner.one_shot_fsync_failures.insert(inode);
        Ok(())
    }

    /// Makes the sector holding `offset` of `path` fail every read until it is rewritten.
    pub fn make_sector_bad(&self, path: &Path, offset: u64) -> Result<(), DiskError> {
        {
            let mut inner = self.lock();
            let inode = file_inode(&inner.tree, "make_sector_bad", path)?;
            let sector = offset / SECTOR_BYTES;
            inner.tree.bad_sectors.insert((inode, sector));
            inner.emit(FaultEvent::LatentSector { path: path.to_path_buf(), sector });
        }
        self.deliver();
        Ok(())
    }

    /// How many faults of each kind were injected so far.
    pub fn fault_counts(&self) -> BTreeMap<FaultKind, u64> {
        self.lock().counts.clone()
    }

    /// The operations not yet durable, in order (for model tests and traces).
    pub fn pending(&self) -> Vec<Pending> {
        self.lock().tree.pending.clone()
    }

    /// The durable bytes of the file named `path` in the durable view, if any: what a
    /// crash that loses everything unsynced would leave.
    pub fn durable_contents(&self, path: &Path) -> Option<Vec<u8>> {
        let inner = self.lock();
        match inner.tree.durable.get(path)? {
            Node::File(inode) => inner.tree.inodes.get(inode).map(|i| i.durable.clone()),
            Node::Dir => None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().expect("faultfs lock poisoned: a panic inside faultfs is a bug")
    }

    fn deliver(&self) {
        deliver(&self.shared);
    }
}

fn deliver(shared: &Shared) {
    let events = std::mem::take(&mut shared.inner.lock().expect("faultfs lock").outbox);
    if events.is_empty() {
        return;
    }
    let mut observer = shared.observer.lock().expect("observer lock");
    if let Some(observer) = observer.as_mut() {
        for event in &events {
            observer(event);
        }
    }
}

fn file_inode(tree: &Tree, op: &'static str, path: &Path) -> Result<InodeId, DiskError> {
    check_relative_path(op, path)?;
    match tree.live.get(path) {
        Some(Node::File(inode)) => Ok(*inode),
        Some(Node::Dir) => Err(DiskError::new(DiskErrorKind::InvalidInput, op, path, "is a directory")),
        None => Err(DiskError::new(DiskErrorKind::NotFound, op, path, "")),
    }
}

fn require_live_dir(tree: &Tree, op: &'static str, path: &Path) -> Result<(), DiskError> {
    match tree.live.get(path) {
        _ if path.as_os_str().is_empty() => Ok(()),
        Some(Node::Dir) => Ok(()),
        Some(Node::File(_)) => Err(DiskError::new(DiskErrorKind::NotFound, op, path, "not a directory")),
        None => Err(DiskError::new(DiskErrorKind::NotFound, op, path, "no such directory")),
    }
}

impl Disk for FaultFs {
    type File = FaultFile;

    fn open(&self, path: &Path, mode: OpenMode) -> Result<FaultFile, DiskError> {
        check_relative_path("open", path)?;
        if path.as_os_str().is_empty() {
            return Err(DiskError::new(DiskErrorKind::InvalidInput, "open", path, "is a directory"));
        }
        let mut inner = self.lock();
        let parent = parent_of(path);
        require_live_dir(&inner.tree, "open", &parent)?;
        let inode = match (inner.tree.live.get(path).copied(), mode) {
            (Some(Node::Dir), _) => {
                return Err(DiskError::new(DiskErrorKind::InvalidInput, "open", path, "is a directory"))
            }
            (Some(Node::File(_)), OpenMode::CreateNew) => {
                return Err(DiskError::new(DiskErrorKind::AlreadyExists, "open", path, ""))
            }
            (Some(Node::File(inode)), _) => inode,
            (None, OpenMode::Read | OpenMode::ReadWrite) => {
                return Err(DiskError::new(DiskErrorKind::NotFound, "open", path, ""))
            }
            (None, OpenMode::Create | OpenMode::CreateNew) => {
                inner.power("open", path)?;
                let inode = inner.tree.new_inode();
                let node = Node::File(inode);
                inner.tree.live.insert(path, node);
                inner.tree.push(PendingOp::Name { dir: parent, op: NameOp::Create { path: path.to_path_buf(), node } });
                inode
            }
        };
        Ok(FaultFile {
            shared: self.shared.clone(),
            inode,
            path: path.to_path_buf(),
            generation: inner.generation,
            writable: mode != OpenMode::Read,
        })
    }

    fn create_dir(&self, path: &Path) -> Result<(), DiskError> {
        check_relative_path("create_dir", path)?;
        let mut inner = self.lock();
        if path.as_os_str().is_empty() || inner.tree.live.contains(path) {
            return Err(DiskError::new(DiskErrorKind::AlreadyExists, "create_dir", path, ""));
        }
        let parent = parent_of(path);
        require_live_dir(&inner.tree, "create_dir", &parent)?;
        inner.power("create_dir", path)?;
        inner.tree.live.insert(path, Node::Dir);
        inner
            .tree
            .push(PendingOp::Name { dir: parent, op: NameOp::Create { path: path.to_path_buf(), node: Node::Dir } });
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> Result<(), DiskError> {
        let mut inner = self.lock();
        file_inode(&inner.tree, "remove_file", path)?;
        inner.power("remove_file", path)?;
        inner.tree.live.remove(path);
        inner.tree.push(PendingOp::Name { dir: parent_of(path), op: NameOp::Remove { path: path.to_path_buf() } });
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> Result<(), DiskError> {
        check_relative_path("remove_dir", path)?;
        let mut inner = self.lock();
        if path.as_os_str().is_empty() {
            return Err(DiskError::new(DiskErrorKind::InvalidInput, "remove_dir", path, "cannot remove the root"));
        }
        match inner.tree.live.get(path) {
            Some(Node::Dir) => {}
            Some(Node::File(_)) => {
                return Err(DiskError::new(DiskErrorKind::InvalidInput, "remove_dir", path, "not a directory"))
            }
            None => return Err(DiskError::new(DiskErrorKind::NotFound, "remove_dir", path, "")),
        }
        if inner.tree.live.paths().any(|p| p.parent() == Some(path)) {
            return Err(DiskError::new(DiskErrorKind::InvalidInput, "remove_dir", path, "directory not empty"));
        }
        inner.power("remove_dir", path)?;
        inner.tree.live.remove(path);
        inner.tree.push(PendingOp::Name { dir: parent_of(path), op: NameOp::Remove { path: path.to_path_buf() } });
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), DiskError> {
        check_relative_path("rename", to)?;
        let mut inner = self.lock();
        let inode = file_inode(&inner.tree, "rename", from)?;
        let dir = parent_of(from);
        if dir != parent_of(to) {
            return Err(DiskError::new(DiskErrorKind::InvalidInput, "rename", from, "across directories"));
        }
        if inner.tree.live.get(to) == Some(&Node::Dir) || to.as_os_str().is_empty() {
            return Err(DiskError::new(DiskErrorKind::InvalidInput, "rename", to, "target is a directory"));
        }
        inner.power("rename", from)?;
        inner.tree.live.remove(from);
        inner.tree.live.insert(to, Node::File(inode));
        inner.tree.push(PendingOp::Name { dir, op: NameOp::Rename { from: from.to_path_buf(), to: to.to_path_buf() } });
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>, DiskError> {
        check_relative_path("list_dir", path)?;
        let inner = self.lock();
        require_live_dir(&inner.tree, "list_dir", path)?;
        let mut names: Vec<String> = inner
            .tree
            .live
            .paths()
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    fn entry_kind(&self, path: &Path) -> Result<Option<EntryKind>, DiskError> {
        check_relative_path("entry_kind", path)?;
        if path.as_os_str().is_empty() {
            return Ok(Some(EntryKind::Dir));
        }
        let inner = self.lock();
        Ok(inner.tree.live.get(path).map(|node| match node {
            Node::Dir => EntryKind::Dir,
            Node::File(_) => EntryKind::File,
        }))
    }

    fn sync_dir(&self, path: &Path) -> Result<(), DiskError> {
        check_relative_path("sync_dir", path)?;
        let result = {
            let mut inner = self.lock();
            require_live_dir(&inner.tree, "sync_dir", path)?;
            inner.power("sync_dir", path)?;
            let ppm = inner.config.fsync_eio_ppm;
            if inner.roll(ppm) {
                // The journal did not commit; the operations stay pending and may or may not
                // survive a crash. A retry that succeeds is truthful.
                inner.emit(FaultEvent::SyncDirFailed { path: path.to_path_buf() });
                Err(DiskError::injected(DiskErrorKind::Io, "sync_dir", path, "injected EIO"))
            } else {
                inner.tree.sync_dir(path);
                Ok(())
            }
        };
        self.deliver();
        result
    }
}

impl FaultFile {
    fn lock(&self) -> Result<MutexGuard<'_, Inner>, DiskError> {
        let inner = self.shared.inner.lock().expect("faultfs lock poisoned: a panic inside faultfs is a bug");
        if inner.generation != self.generation {
            return Err(DiskError::new(DiskErrorKind::StaleHandle, "file", &self.path, "opened before a crash"));
        }
        Ok(inner)
    }

    fn check_writable(&self, op: &'static str) -> Result<(), DiskError> {
        if self.writable {
            Ok(())
        } else {
            Err(DiskError::new(DiskErrorKind::InvalidInput, op, &self.path, "handle is read-only"))
        }
    }

    fn finish<T>(&self, result: Result<T, DiskError>) -> Result<T, DiskError> {
        deliver(&self.shared);
        result
    }
}

impl DiskFile for FaultFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, DiskError> {
        let result = (|| {
            let mut guard = self.lock()?;
            let inner = &mut *guard;
            let live_len = inner.tree.inodes[&self.inode].live.len() as u64;
            if offset >= live_len || buf.is_empty() {
                return Ok(0);
            }
            let n = (live_len - offset).min(buf.len() as u64);
            let first_sector = offset / SECTOR_BYTES;
            let last_sector = (offset + n - 1) / SECTOR_BYTES;
            let eio = |path: &Path| Err(DiskError::injected(DiskErrorKind::Io, "read_at", path, "injected EIO"));
            // Dirty bytes are served from the page cache: the device is not read, so device
            // faults do not apply to them.
            let from_device = !inner.tree.pending_write_overlaps(self.inode, offset, n);
            let config = if from_device { inner.config } else { FaultConfig::none() };
            if from_device
                && inner.tree.bad_sectors.range((self.inode, first_sector)..=(self.inode, last_sector)).next().is_some()
            {
                return eio(&self.path);
            }
            if inner.roll(config.read_eio_ppm) {
                inner.emit(FaultEvent::ReadFailed { path: self.path.clone(), offset, len: n });
                return eio(&self.path);
            }
            if inner.roll(config.latent_sector_ppm) {
                let sector = inner.rng.gen_range(first_sector..=last_sector);
                inner.tree.bad_sectors.insert((self.inode, sector));
                inner.emit(FaultEvent::LatentSector { path: self.path.clone(), sector });
                return eio(&self.path);
            }
            let live = &inner.tree.inodes[&self.inode].live;
            buf[..n as usize].copy_from_slice(&live[offset as usize..(offset + n) as usize]);
            if from_device {
                let inode = self.inode;
                let hit =
                    inner.one_shot_flips.iter().position(|&(i, at, _)| i == inode && at >= offset && at < offset + n);
                if let Some(k) = hit {
                    let (_, at, bit) = inner.one_shot_flips.remove(k);
                    buf[(at - offset) as usize] ^= 1 << bit;
                    inner.emit(FaultEvent::ReadBitflip { path: self.path.clone(), offset: at, bit });
                }
            }
            if inner.roll(config.read_bitflip_ppm) {
                let at = inner.rng.gen_range(0..n);
                let bit = inner.rng.gen_range(0..8u8);
                buf[at as usize] ^= 1 << bit;
                inner.emit(FaultEvent::ReadBitflip { path: self.path.clone(), offset: offset + at, bit });
            }
            Ok(n as usize)
        })();
        self.finish(result)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DiskError> {
        self.check_writable("write_at")?;
        let result = (|| {
            let mut guard = self.lock()?;
            let inner = &mut *guard;
            inner.power("write_at", &self.path)?;
            let len = buf.len() as u64;
            let current = inner.tree.inodes[&self.inode].live.len() as u64;
            let growth = (offset + len).saturating_sub(current);
            let full = inner.config.capacity_bytes.is_some_and(|cap| inner.tree.live_bytes_total() + growth > cap);
            let ppm = inner.config.write_enospc_ppm;
            let (written, failed) = if full {
                (0, true)
            } else if inner.roll(ppm) {
                (inner.rng.gen_range(0..len.max(1)).min(len), true)
            } else {
                (len, false)
            };
            if written > 0 {
                let data = buf[..written as usize].to_vec();
                write_bytes(&mut inner.tree.inodes.get_mut(&self.inode).expect("open inode").live, offset, &data);
                // A sector rewritten whole is remapped by the drive: it reads again.
                let first_whole = offset.div_ceil(SECTOR_BYTES);
                let end_whole = (offset + written) / SECTOR_BYTES;
                if first_whole < end_whole {
                    let bad: Vec<(InodeId, u64)> = inner
                        .tree
                        .bad_sectors
                        .range((self.inode, first_whole)..(self.inode, end_whole))
                        .copied()
                        .collect();
                    for key in bad {
                        inner.tree.bad_sectors.remove(&key);
                    }
                }
                inner.tree.push(PendingOp::Write { inode: self.inode, offset, data });
            }
            if failed {
                inner.emit(FaultEvent::NoSpace { path: self.path.clone(), offset, len, written });
                return Err(DiskError::injected(DiskErrorKind::NoSpace, "write_at", &self.path, "injected ENOSPC"));
            }
            Ok(())
        })();
        self.finish(result)
    }

    fn len(&self) -> Result<u64, DiskError> {
        let inner = self.lock()?;
        Ok(inner.tree.inodes[&self.inode].live.len() as u64)
    }

    fn set_len(&self, len_bytes: u64) -> Result<(), DiskError> {
        self.check_writable("set_len")?;
        let result = (|| {
            let mut guard = self.lock()?;
            let inner = &mut *guard;
            inner.power("set_len", &self.path)?;
            let current = inner.tree.inodes[&self.inode].live.len() as u64;
            let growth = len_bytes.saturating_sub(current);
            if inner.config.capacity_bytes.is_some_and(|cap| inner.tree.live_bytes_total() + growth > cap) {
                inner.emit(FaultEvent::NoSpace { path: self.path.clone(), offset: current, len: growth, written: 0 });
                return Err(DiskError::injected(DiskErrorKind::NoSpace, "set_len", &self.path, "injected ENOSPC"));
            }
            inner.tree.inodes.get_mut(&self.inode).expect("open inode").live.resize(len_bytes as usize, 0);
            inner.tree.push(PendingOp::SetLen { inode: self.inode, len: len_bytes });
            Ok(())
        })();
        self.finish(result)
    }

    fn sync_data(&self) -> Result<(), DiskError> {
        let result = (|| {
            let mut inner = self.lock()?;
            inner.power("sync_data", &self.path)?;
            let ppm = inner.config.fsync_eio_ppm;
            let rolled = inner.roll(ppm);
            if inner.one_shot_fsync_failures.remove(&self.inode) || rolled {
                let (dropped_writes, dropped_bytes) = inner.tree.drop_inode_pending(self.inode);
                inner.emit(FaultEvent::FsyncFailed { path: self.path.clone(), dropped_writes, dropped_bytes });
                return Err(DiskError::injected(DiskErrorKind::Io, "sync_data", &self.path, "injected EIO"));
            }
            inner.tree.sync_inode(self.inode);
            Ok(())
        })();
        self.finish(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::disk::conformance;

    #[test]
    fn passes_the_conformance_suite() {
        let seeds = std::sync::atomic::AtomicU64::new(0);
        conformance::run(&|| FaultFs::new(seeds.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    }

    #[test]
    fn passes_the_crash_conformance_suite() {
        conformance::run_crash(&|| FaultFs::new(7), &|disk: &FaultFs| {
            disk.crash_with(CrashMode::LoseUnsynced);
            disk.clone()
        });
    }

    #[test]
    fn handles_go_stale_after_a_crash() {
        let fs = FaultFs::new(1);
        let file = fs.open(Path::new("f"), OpenMode::Create).unwrap();
        fs.crash_with(CrashMode::LoseUnsynced);
        assert_eq!(file.len().unwrap_err().kind, DiskErrorKind::StaleHandle);
    }
}
