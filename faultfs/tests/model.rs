//! Model-based tests of faultfs against a plain reference model.
//!
//! The model keeps the same two views (live, durable) and pending list in the most direct
//! way, without faultfs's structure. For random operation sequences with crashes in every
//! mode (and injected fsync failures), it checks:
//! * after every operation, the live view matches the model;
//! * every crash kept a set of operations its mode allows (prefix, subset, tear at a sector
//!   boundary, data only), and the state after the crash is exactly the model's durable view
//!   with those operations applied;
//! * nothing synced is ever lost: a file whose name and data were durable, with nothing
//!   pending on either, is intact after any crash;
//! * a sync that follows a failed sync does not resurrect the dropped writes.

use proptest::prelude::*;
use sluice_core::disk::{Disk, DiskErrorKind, DiskFile, OpenMode};
use sluice_faultfs::{tear_points, CrashMode, FaultConfig, FaultFs, NameOp, PendingOp};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const DIRS: [&str; 2] = ["", "d"];
const FILES: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Debug)]
enum Op {
    Create { dir: usize, file: usize },
    Write { dir: usize, file: usize, offset: u64, len: usize, byte: u8 },
    SetLen { dir: usize, file: usize, len: u64 },
    SyncData { dir: usize, file: usize },
    SyncDir { dir: usize },
    Rename { dir: usize, from: usize, to: usize },
    Remove { dir: usize, file: usize },
    Crash { mode: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let dir = 0..DIRS.len();
    let file = 0..FILES.len();
    prop_oneof![
        2 => (dir.clone(), file.clone()).prop_map(|(dir, file)| Op::Create { dir, file }),
        5 => (dir.clone(), file.clone(), 0u64..2500, 1usize..1300, any::<u8>())
            .prop_map(|(dir, file, offset, len, byte)| Op::Write { dir, file, offset, len, byte }),
        1 => (dir.clone(), file.clone(), 0u64..3000).prop_map(|(dir, file, len)| Op::SetLen { dir, file, len }),
        3 => (dir.clone(), file.clone()).prop_map(|(dir, file)| Op::SyncData { dir, file }),
        2 => dir.clone().prop_map(|dir| Op::SyncDir { dir }),
        1 => (dir.clone(), file.clone(), file.clone()).prop_map(|(dir, from, to)| Op::Rename { dir, from, to }),
        1 => (dir.clone(), file.clone()).prop_map(|(dir, file)| Op::Remove { dir, file }),
        1 => (0..CrashMode::ALL.len()).prop_map(|mode| Op::Crash { mode }),
    ]
}

fn path(dir: usize, file: usize) -> PathBuf {
    Path::new(DIRS[dir]).join(FILES[file])
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MNode {
    File(u64),
    Dir,
}

#[derive(Clone, Debug)]
enum MOp {
    Write { inode: u64, offset: u64, data: Vec<u8> },
    SetLen { inode: u64, len: u64 },
    Create { dir: PathBuf, path: PathBuf, node: MNode },
    Remove { dir: PathBuf, path: PathBuf },
    Rename { dir: PathBuf, from: PathBuf, to: PathBuf },
}

impl MOp {
    fn is_data(&self) -> bool {
        matches!(self, MOp::Write { .. } | MOp::SetLen { .. })
    }
    fn inode(&self) -> Option<u64> {
        match self {
            MOp::Write { inode, .. } | MOp::SetLen { inode, .. } => Some(*inode),
            _ => None,
        }
    }
    fn dir(&self) -> Option<&Path> {
        match self {
            MOp::Create { dir, .. } | MOp::Remove { dir, .. } | MOp::Rename { dir, .. } => Some(dir),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Model {
    live: BTreeMap<PathBuf, MNode>,
    durable: BTreeMap<PathBuf, MNode>,
    live_bytes: BTreeMap<u64, Vec<u8>>,
    durable_bytes: BTreeMap<u64, Vec<u8>>,
    pending: Vec<(u64, MOp)>,
    next_op: u64,
    next_inode: u64,
}

fn write_into(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[offset as usize..end].copy_from_slice(data);
}

fn apply_name(names: &mut BTreeMap<PathBuf, MNode>, op: &MOp) {
    match op {
        MOp::Create { path, node, .. } => {
            names.insert(path.clone(), *node);
        }
        MOp::Remove { path, .. } => {
            names.remove(path);
        }
        MOp::Rename { from, to, .. } => {
            if let Some(node) = names.remove(from) {
                names.insert(to.clone(), node);
            }
        }
        _ => unreachable!(),
    }
}

impl Model {
    fn push(&mut self, op: MOp) {
        self.pending.push((self.next_op, op));
        self.next_op += 1;
    }

    fn inode_at(&self, path: &Path) -> Option<u64> {
        match self.live.get(path) {
            Some(MNode::File(inode)) => Some(*inode),
            _ => None,
        }
    }

    fn apply_durable(&mut self, op: &MOp, torn: Option<u64>) {
        match op {
            MOp::Write { inode, offset, data } => {
                let keep = torn.map_or(data.len(), |n| n as usize);
                write_into(self.durable_bytes.entry(*inode).or_default(), *offset, &data[..keep]);
            }
            MOp::SetLen { inode, len } => self.durable_bytes.entry(*inode).or_default().resize(*len as usize, 0),
            name => apply_name(&mut self.durable, name),
        }
    }

    fn restart(&mut self) {
        loop {
            let orphans: Vec<PathBuf> = self
                .durable
                .keys()
                .filter(|p| {
                    let parent = p.parent().map(Path::to_path_buf).unwrap_or_default();
                    !(parent.as_os_str().is_empty() || self.durable.get(&parent) == Some(&MNode::Dir))
                })
                .cloned()
                .collect();
            if orphans.is_empty() {
                break;
            }
            for p in orphans {
                self.durable.remove(&p);
            }
        }
        self.pending.clear();
        self.live = self.durable.clone();
        self.live_bytes = self.durable_bytes.clone();
    }

    fn file_bytes(&self, inode: u64) -> Vec<u8> {
        self.live_bytes.get(&inode).cloned().unwrap_or_default()
    }
}

fn read_file(fs: &FaultFs, path: &Path) -> Vec<u8> {
    let file = fs.open(path, OpenMode::Read).expect("open for compare");
    let mut buf = vec![0u8; file.len().unwrap() as usize];
    file.read_exact_at(&mut buf, 0).expect("read for compare");
    buf
}

fn assert_same_live(fs: &FaultFs, model: &Model) {
    for dir in DIRS {
        let dir = Path::new(dir);
        let expected: Vec<String> = model
            .live
            .keys()
            .filter(|p| p.parent().map(Path::to_path_buf).unwrap_or_default() == dir)
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        let listed = fs.list_dir(dir);
        if dir.as_os_str().is_empty() || model.live.get(dir) == Some(&MNode::Dir) {
            let mut expected = expected;
            expected.sort();
            assert_eq!(listed.unwrap(), expected, "names in {dir:?}");
        } else {
            assert_eq!(listed.unwrap_err().kind, DiskErrorKind::NotFound);
        }
    }
    for (path, node) in &model.live {
        if let MNode::File(inode) = node {
            assert_eq!(read_file(fs, path), model.file_bytes(*inode), "contents of {path:?}");
        }
    }
}

/// Checks that the crash kept only what `requested` allows, given the pending list.
fn check_legal(requested: CrashMode, report: &sluice_faultfs::CrashReport, pending: &[(u64, MOp)]) {
    let ids: Vec<u64> = pending.iter().map(|(id, _)| *id).collect();
    let by_id: BTreeMap<u64, &MOp> = pending.iter().map(|(id, op)| (*id, op)).collect();
    let tearable = pending.iter().any(|(_, op)| match op {
        MOp::Write { offset, data, .. } => tear_points(*offset, data.len() as u64).next().is_some(),
        _ => false,
    });
    let is_prefix = |kept: &[u64]| kept == &ids[..kept.len()];
    match report.mode {
        CrashMode::LoseUnsynced => {
            assert_eq!(requested, CrashMode::LoseUnsynced);
            assert!(report.kept.is_empty() && report.torn.is_none());
        }
        CrashMode::TornSequence => {
            assert!(
                requested == CrashMode::TornSequence || (requested == CrashMode::TornWrite && !tearable),
                "fell back to torn-sequence with a tearable write pending"
            );
            assert!(is_prefix(&report.kept), "torn-sequence keeps a prefix");
            assert!(report.torn.is_none());
        }
        CrashMode::TornWrite => {
            assert_eq!(requested, CrashMode::TornWrite);
            assert!(is_prefix(&report.kept), "ops before the torn write survive in order");
            let (torn_id, keep) = report.torn.expect("a torn write");
            assert_eq!(ids.get(report.kept.len()), Some(&torn_id), "the torn write follows the kept prefix");
            let MOp::Write { offset, data, .. } = by_id[&torn_id] else { panic!("torn op is not a write") };
            assert!(keep > 0 && keep < data.len() as u64);
            assert_eq!((offset + keep) % 512, 0, "torn at a sector boundary");
        }
        CrashMode::KeepSubset => {
            assert_eq!(requested, CrashMode::KeepSubset);
            let names: Vec<u64> = report.kept.iter().copied().filter(|id| !by_id[id].is_data()).collect();
            let all_names: Vec<u64> = pending.iter().filter(|(_, op)| !op.is_data()).map(|(id, _)| *id).collect();
            assert_eq!(names, all_names[..names.len()], "name operations survive as a prefix");
            let distinct: BTreeSet<u64> = report.kept.iter().copied().collect();
            assert_eq!(distinct.len(), report.kept.len(), "no operation applied twice");
            assert!(report.kept.iter().all(|id| by_id.contains_key(id)));
        }
        CrashMode::LoseDirEntries => {
            assert_eq!(requested, CrashMode::LoseDirEntries);
            let data: Vec<u64> = pending.iter().filter(|(_, op)| op.is_data()).map(|(id, _)| *id).collect();
            assert_eq!(report.kept, data, "every data write, no name operation");
        }
    }
}

/// Files whose name and bytes were durable with nothing pending on either: a crash in any
/// mode must leave them exactly so.
fn settled_files(model: &Model) -> Vec<(PathBuf, Vec<u8>)> {
    let touched_inodes: BTreeSet<u64> = model.pending.iter().filter_map(|(_, op)| op.inode()).collect();
    let touched_dirs: BTreeSet<PathBuf> =
        model.pending.iter().filter_map(|(_, op)| op.dir().map(Path::to_path_buf)).collect();
    model
        .durable
        .iter()
        .filter_map(|(path, node)| match node {
            MNode::File(inode) => {
                let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                (!touched_inodes.contains(inode) && !touched_dirs.contains(&dir))
                    .then(|| (path.clone(), model.durable_bytes.get(inode).cloned().unwrap_or_default()))
            }
            MNode::Dir => None,
        })
        .collect()
}

fn run(seed: u64, fsync_eio_ppm: u32, ops: Vec<Op>) {
    let fs = FaultFs::with_config(seed, FaultConfig { fsync_eio_ppm, ..FaultConfig::none() });
    let mut model = Model::default();
    // The directory "d" exists durably from the start; the root always does.
    fs.set_config(FaultConfig::none());
    fs.create_dir(Path::new("d")).unwrap();
    fs.sync_dir(Path::new("")).unwrap();
    fs.set_config(FaultConfig { fsync_eio_ppm, ..FaultConfig::none() });
    model.live.insert("d".into(), MNode::Dir);
    model.durable.insert("d".into(), MNode::Dir);
    model.next_op = 1;

    for op in ops {
        match op {
            Op::Create { dir, file } => {
                let p = path(dir, file);
                fs.open(&p, OpenMode::Create).unwrap();
                if model.inode_at(&p).is_none() {
                    let inode = model.next_inode;
                    model.next_inode += 1;
                    model.live.insert(p.clone(), MNode::File(inode));
                    model.live_bytes.insert(inode, Vec::new());
                    model.durable_bytes.insert(inode, Vec::new());
                    model.push(MOp::Create { dir: DIRS[dir].into(), path: p, node: MNode::File(inode) });
                }
            }
            Op::Write { dir, file, offset, len, byte } => {
                let p = path(dir, file);
                let Some(inode) = model.inode_at(&p) else {
                    continue;
                };
                let data = vec![byte; len];
                fs.open(&p, OpenMode::ReadWrite).unwrap().write_at(&data, offset).unwrap();
                write_into(model.live_bytes.get_mut(&inode).unwrap(), offset, &data);
                model.push(MOp::Write { inode, offset, data });
            }
            Op::SetLen { dir, file, len } => {
                let p = path(dir, file);
                let Some(inode) = model.inode_at(&p) else {
                    continue;
                };
                fs.open(&p, OpenMode::ReadWrite).unwrap().set_len(len).unwrap();
                model.live_bytes.get_mut(&inode).unwrap().resize(len as usize, 0);
                model.push(MOp::SetLen { inode, len });
            }
            Op::SyncData { dir, file } => {
                let p = path(dir, file);
                let Some(inode) = model.inode_at(&p) else {
                    continue;
                };
                let result = fs.open(&p, OpenMode::ReadWrite).unwrap().sync_data();
                match result {
                    Ok(()) => {
                        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut model.pending)
                            .into_iter()
                            .partition(|(_, op)| op.inode() == Some(inode));
                        model.pending = rest;
                        for (_, op) in &mine {
                            model.apply_durable(op, None);
                        }
                    }
                    Err(e) => {
                        // The writes are dropped: the live view still shows them, the durable
                        // view never will. Length changes (journaled metadata) stay pending.
                        assert!(e.injected && e.kind == DiskErrorKind::Io, "{e}");
                        model.pending.retain(|(_, op)| !matches!(op, MOp::Write { inode: i, .. } if *i == inode));
                    }
                }
            }
            Op::SyncDir { dir } => {
                let d = Path::new(DIRS[dir]);
                match fs.sync_dir(d) {
                    Ok(()) => {
                        let (mine, rest): (Vec<_>, Vec<_>) =
                            std::mem::take(&mut model.pending).into_iter().partition(|(_, op)| op.dir() == Some(d));
                        model.pending = rest;
                        for (_, op) in &mine {
                            model.apply_durable(op, None);
                        }
                    }
                    Err(e) => assert!(e.injected && e.kind == DiskErrorKind::Io, "{e}"),
                }
            }
            Op::Rename { dir, from, to } => {
                let (pf, pt) = (path(dir, from), path(dir, to));
                let Some(inode) = model.inode_at(&pf) else {
                    continue;
                };
                fs.rename(&pf, &pt).unwrap();
                model.live.remove(&pf);
                model.live.insert(pt.clone(), MNode::File(inode));
                model.push(MOp::Rename { dir: DIRS[dir].into(), from: pf, to: pt });
            }
            Op::Remove { dir, file } => {
                let p = path(dir, file);
                if model.inode_at(&p).is_none() {
                    assert_eq!(fs.remove_file(&p).unwrap_err().kind, DiskErrorKind::NotFound);
                    continue;
                }
                fs.remove_file(&p).unwrap();
                model.live.remove(&p);
                model.push(MOp::Remove { dir: DIRS[dir].into(), path: p });
            }
            Op::Crash { mode } => {
                let requested = CrashMode::ALL[mode];
                // The model and faultfs must agree on what is pending before the crash.
                let pending: Vec<u64> = fs.pending().iter().map(|p| p.id).collect();
                let model_ids: Vec<u64> = model.pending.iter().map(|(id, _)| *id).collect();
                assert_eq!(pending, model_ids, "pending operations");
                for (p, (_, m)) in fs.pending().iter().zip(&model.pending) {
                    let same_kind = matches!(
                        (&p.op, m),
                        (PendingOp::Write { .. }, MOp::Write { .. })
                            | (PendingOp::SetLen { .. }, MOp::SetLen { .. })
                            | (PendingOp::Name { op: NameOp::Create { .. }, .. }, MOp::Create { .. })
                            | (PendingOp::Name { op: NameOp::Remove { .. }, .. }, MOp::Remove { .. })
                            | (PendingOp::Name { op: NameOp::Rename { .. }, .. }, MOp::Rename { .. })
                    );
                    assert!(same_kind, "op {} differs: {:?} vs {:?}", p.id, p.op, m);
                }
                let settled = settled_files(&model);
                let report = fs.crash_with(requested);
                check_legal(requested, &report, &model.pending);
                let by_id: BTreeMap<u64, MOp> = model.pending.iter().cloned().collect();
                for id in &report.kept {
                    model.apply_durable(&by_id[id], None);
                }
                if let Some((id, keep)) = report.torn {
                    model.apply_durable(&by_id[&id], Some(keep));
                }
                model.restart();
                for (path, bytes) in settled {
                    assert_eq!(read_file(&fs, &path), bytes, "synced file {path:?} changed in a crash");
                }
            }
        }
        assert_same_live(&fs, &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn faultfs_matches_the_model(seed in any::<u64>(), eio in prop_oneof![Just(0u32), Just(250_000u32)],
                                 ops in proptest::collection::vec(op(), 1..40)) {
        run(seed, eio, ops);
    }
}

#[test]
fn a_sync_after_a_failed_sync_does_not_resurrect_dropped_writes() {
    let fs = FaultFs::new(3);
    let file = fs.open(Path::new("f"), OpenMode::CreateNew).unwrap();
    fs.sync_dir(Path::new("")).unwrap();
    file.write_at(b"kept", 0).unwrap();
    file.sync_data().unwrap();
    file.write_at(b"LOST", 4).unwrap();
    fs.set_config(FaultConfig { fsync_eio_ppm: 1_000_000, ..FaultConfig::none() });
    let err = file.sync_data().unwrap_err();
    assert!(err.injected);
    assert_eq!(err.kind, DiskErrorKind::Io);
    fs.set_config(FaultConfig::none());
    // The page cache still shows the data, and a retried sync reports success...
    assert_eq!(read_file(&fs, Path::new("f")), b"keptLOST");
    file.sync_data().unwrap();
    // ...but it never reached the medium.
    assert_eq!(fs.durable_contents(Path::new("f")).unwrap(), b"kept");
    fs.crash_with(CrashMode::KeepSubset);
    assert_eq!(read_file(&fs, Path::new("f")), b"kept");
}

#[test]
fn later_data_can_survive_while_earlier_data_is_lost() {
    // Under keep-subset, some seed must produce a hole: the second write durable, the first not.
    let found = (0..200u64).any(|seed| {
        let fs = FaultFs::new(seed);
        let file = fs.open(Path::new("f"), OpenMode::CreateNew).unwrap();
        fs.sync_dir(Path::new("")).unwrap();
        file.sync_data().unwrap();
        file.write_at(&[1u8; 512], 0).unwrap();
        file.write_at(&[2u8; 512], 512).unwrap();
        fs.crash_with(CrashMode::KeepSubset);
        let bytes = read_file(&fs, Path::new("f"));
        bytes.len() == 1024 && bytes[..512] == [0u8; 512] && bytes[512..] == [2u8; 512]
    });
    assert!(found, "keep-subset never produced a hole in 200 seeds");
}

#[test]
fn read_faults_are_reported_and_marked_injected() {
    let fs = FaultFs::new(9);
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    fs.set_observer(Box::new(move |e| sink.lock().unwrap().push(e.clone())));
    let file = fs.open(Path::new("f"), OpenMode::CreateNew).unwrap();
    file.write_at(&[7u8; 2048], 0).unwrap();

    // Dirty bytes come from the page cache: device faults cannot touch them.
    fs.set_config(FaultConfig { read_bitflip_ppm: 1_000_000, read_eio_ppm: 1_000_000, ..FaultConfig::none() });
    let mut buf = [0u8; 2048];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [7u8; 2048]);
    fs.set_config(FaultConfig::none());
    file.sync_data().unwrap();

    fs.set_config(FaultConfig { read_bitflip_ppm: 1_000_000, ..FaultConfig::none() });
    assert_eq!(file.read_at(&mut buf, 0).unwrap(), 2048);
    let flipped: u32 = buf.iter().map(|b| (b ^ 7).count_ones()).sum();
    assert_eq!(flipped, 1, "exactly one bit differs");

    fs.set_config(FaultConfig::none());
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [7u8; 2048], "a read flip does not touch the medium");

    fs.set_config(FaultConfig { read_eio_ppm: 1_000_000, ..FaultConfig::none() });
    let err = file.read_at(&mut buf, 0).unwrap_err();
    assert!(err.injected && err.kind == DiskErrorKind::Io);

    fs.set_config(FaultConfig { latent_sector_ppm: 1_000_000, ..FaultConfig::none() });
    assert!(file.read_at(&mut buf, 0).is_err());
    fs.set_config(FaultConfig::none());
    assert!(file.read_at(&mut buf, 0).is_err(), "a latent sector error persists");
    file.write_at(&[8u8; 2048], 0).unwrap();
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [8u8; 2048], "rewriting the sector clears it");

    let kinds: Vec<String> = events.lock().unwrap().iter().map(|e| format!("{:?}", e.kind())).collect();
    assert_eq!(kinds, ["ReadBitflip", "ReadEio", "LatentSector"]);
}

#[test]
fn enospc_writes_at_most_a_prefix_and_capacity_is_enforced() {
    let fs = FaultFs::with_config(4, FaultConfig { write_enospc_ppm: 1_000_000, ..FaultConfig::none() });
    let file = fs.open(Path::new("f"), OpenMode::CreateNew).unwrap();
    let err = file.write_at(&[5u8; 1000], 0).unwrap_err();
    assert!(err.injected && err.kind == DiskErrorKind::NoSpace);
    let len = file.len().unwrap();
    assert!(len < 1000, "ENOSPC wrote a proper prefix, got {len}");
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|&b| b == 5));

    let fs = FaultFs::with_config(4, FaultConfig { capacity_bytes: Some(100), ..FaultConfig::none() });
    let file = fs.open(Path::new("f"), OpenMode::CreateNew).unwrap();
    file.write_at(&[1u8; 100], 0).unwrap();
    assert_eq!(file.write_at(&[1u8; 1], 100).unwrap_err().kind, DiskErrorKind::NoSpace);
    file.write_at(&[2u8; 50], 0).unwrap();
}

#[test]
fn same_seed_same_faults() {
    let run = |seed: u64| {
        let fs = FaultFs::with_config(
            seed,
            FaultConfig { fsync_eio_ppm: 300_000, read_bitflip_ppm: 300_000, ..FaultConfig::none() },
        );
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        fs.set_observer(Box::new(move |e| sink.lock().unwrap().push(e.to_string())));
        for round in 0..20u8 {
            let file = fs.open(Path::new("f"), OpenMode::Create).unwrap();
            file.write_at(&[round; 700], u64::from(round) * 100).unwrap();
            let _ = file.sync_data();
            let mut buf = [0u8; 64];
            let _ = file.read_at(&mut buf, 0);
            if round % 5 == 4 {
                fs.crash();
            }
        }
        let out = log.lock().unwrap().clone();
        out
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12), "different seeds should differ somewhere");
}

/// Every file under the two test directories with its contents: a crash state's identity.
fn fingerprint(fs: &FaultFs) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in DIRS {
        let Ok(names) = fs.list_dir(Path::new(dir)) else { continue };
        for name in names {
            let p = Path::new(dir).join(name);
            if fs.entry_kind(&p).unwrap() == Some(sluice_core::disk::EntryKind::File) {
                out.push((p.clone(), read_file(fs, &p)));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The enumeration is complete: whatever a random crash leaves is one of the enumerated
    /// states.
    #[test]
    fn random_crashes_land_in_the_enumerated_states(seed in any::<u64>(), mode in 0..CrashMode::ALL.len(),
                                                     ops in proptest::collection::vec(op(), 1..9)) {
        let fs = FaultFs::new(seed);
        fs.create_dir(Path::new("d")).unwrap();
        fs.sync_dir(Path::new("")).unwrap();
        // Files exist (their names pending) so that the random operations have work to do.
        for dir in 0..DIRS.len() {
            for file in 0..2 {
                fs.open(&path(dir, file), OpenMode::Create).unwrap();
            }
        }
        for op in ops {
            let p = |dir: usize, file: usize| path(dir, file);
            let _ = match op {
                Op::Create { dir, file } => fs.open(&p(dir, file), OpenMode::Create).map(|_| ()),
                Op::Write { dir, file, offset, len, byte } => fs
                    .open(&p(dir, file), OpenMode::ReadWrite)
                    .and_then(|f| f.write_at(&vec![byte; len], offset)),
                Op::SetLen { dir, file, len } => fs.open(&p(dir, file), OpenMode::ReadWrite).and_then(|f| f.set_len(len)),
                Op::SyncData { dir, file } => fs.open(&p(dir, file), OpenMode::ReadWrite).and_then(|f| f.sync_data()),
                Op::SyncDir { dir } => fs.sync_dir(Path::new(DIRS[dir])),
                Op::Rename { dir, from, to } => fs.rename(&p(dir, from), &p(dir, to)),
                Op::Remove { dir, file } => fs.remove_file(&p(dir, file)),
                Op::Crash { .. } => Ok(()),
            };
        }
        let states: BTreeSet<Vec<(PathBuf, Vec<u8>)>> = fs
            .crash_states()
            .iter()
            .map(|choice| {
                let fork = fs.fork();
                fork.crash_as(choice);
                fingerprint(&fork)
            })
            .collect();
        let random = fs.fork();
        random.crash_with(CrashMode::ALL[mode]);
        prop_assert!(states.contains(&fingerprint(&random)), "a random crash left a state outside the enumeration");
    }
}
