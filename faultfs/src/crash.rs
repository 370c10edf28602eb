//! What a crash does to pending operations. One mode per crash, chosen by the seeded RNG (or
//! by the caller) and reported with exactly which operations survived, so a trace shows it
//! and a model can check it.
//!
//! The modes, and the real behaviour each stands for:
//! * `LoseUnsynced`: power cut with nothing written back; only the durable view survives.
//! * `KeepSubset`: write-back happened in an arbitrary order: each pending data write survives
//!   or not, independently, applied in a random order. A later block can survive while an
//!   earlier one is lost (a hole), which is why recovery must cut rather than skip.
//!   Name operations survive as a prefix (a journal commits them in order).
//! * `TornWrite`: write-back stopped inside one write: everything pending before it survives,
//!   the write itself survives up to a 512-byte sector boundary, nothing after it does.
//! * `TornSequence`: write-back stopped between operations: a prefix of the pending
//!   operations survives, in order.
//! * `LoseDirEntries`: every pending data write reached the medium but no unsynced directory
//!   entry did: files created (or renamed) without a directory sync vanish, data and all.

use crate::state::{OpId, PendingOp, Tree, SECTOR_BYTES};
use rand::seq::SliceRandom;
use rand::Rng;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CrashMode {
    LoseUnsynced,
    KeepSubset,
    TornWrite,
    TornSequence,
    LoseDirEntries,
}

impl CrashMode {
    pub const ALL: [CrashMode; 5] = [
        CrashMode::LoseUnsynced,
        CrashMode::KeepSubset,
        CrashMode::TornWrite,
        CrashMode::TornSequence,
        CrashMode::LoseDirEntries,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CrashMode::LoseUnsynced => "lose-unsynced",
            CrashMode::KeepSubset => "keep-subset",
            CrashMode::TornWrite => "torn-write",
            CrashMode::TornSequence => "torn-sequence",
            CrashMode::LoseDirEntries => "lose-dir-entries",
        }
    }
}

/// Exactly what a crash kept: the pending operations applied to the durable view, in the
/// order applied, and the one torn write with how many of its bytes survived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashReport {
    /// The mode applied. `TornWrite` with no write long enough to tear is applied (and
    /// reported) as `TornSequence`.
    pub mode: CrashMode,
    pub pending: usize,
    pub kept: Vec<OpId>,
    pub torn: Option<(OpId, u64)>,
}

impl fmt::Display for CrashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} kept {} of {} pending ops", self.mode.name(), self.kept.len(), self.pending)?;
        if let Some((op, bytes)) = self.torn {
            write!(f, ", tore op {op} after {bytes} bytes")?;
        }
        Ok(())
    }
}

/// The interior sector boundaries of a write: prefix lengths `n` with `0 < n < len` such that
/// `offset + n` is a multiple of the sector size.
pub fn tear_points(offset: u64, len: u64) -> impl Iterator<Item = u64> {
    let first_boundary = (offset / SECTOR_BYTES + 1) * SECTOR_BYTES;
    (0..).map(move |i| first_boundary + i * SECTOR_BYTES - offset).take_while(move |&n| n < len)
}

/// Chooses what survives under `mode` and applies it to the durable view, then resets the
/// live view. Returns the report.
pub fn crash(tree: &mut Tree, mode: CrashMode, rng: &mut impl Rng) -> CrashReport {
    let pending = tree.pending.clone();
    let mut report = CrashReport { mode, pending: pending.len(), kept: Vec::new(), torn: None };
    match mode {
        CrashMode::LoseUnsynced => {}
        CrashMode::TornSequence => {
            let k = rng.gen_range(0..=pending.len());
            report.kept = pending[..k].iter().map(|p| p.id).collect();
        }
        CrashMode::TornWrite => {
            let tearable: Vec<usize> = pending
                .iter()
                .enumerate()
                .filter(|(_, p)| match &p.op {
                    PendingOp::Write { offset, data, .. } => tear_points(*offset, data.len() as u64).next().is_some(),
                    _ => false,
                })
                .map(|(i, _)| i)
                .collect();
            match tearable.choose(rng) {
                Some(&k) => {
                    let PendingOp::Write { offset, data, .. } = &pending[k].op else { unreachable!() };
                    let points: Vec<u64> = tear_points(*offset, data.len() as u64).collect();
                    let keep = *points.choose(rng).expect("tearable writes have a tear point");
                    report.kept = pending[..k].iter().map(|p| p.id).collect();
                    report.torn = Some((pending[k].id, keep));
                }
                None => {
                    report.mode = CrashMode::TornSequence;
                    let k = rng.gen_range(0..=pending.len());
                    report.kept = pending[..k].iter().map(|p| p.id).collect();
                }
            }
        }
        CrashMode::KeepSubset => {
            let names: Vec<OpId> = pending.iter().filter(|p| !p.op.is_data()).map(|p| p.id).collect();
            let k = rng.gen_range(0..=names.len());
            report.kept.extend_from_slice(&names[..k]);
            let mut data: Vec<OpId> =
                pending.iter().filter(|p| p.op.is_data() && rng.gen_bool(0.5)).map(|p| p.id).collect();
            data.shuffle(rng);
            report.kept.extend(data);
        }
        CrashMode::LoseDirEntries => {
            report.kept = pending.iter().filter(|p| p.op.is_data()).map(|p| p.id).collect();
        }
    }
    apply_report(tree, &report);
    report
}

/// Applies the kept operations of `report` to the durable view (in the report's order) and
/// restarts the live view from it.
fn apply_report(tree: &mut Tree, report: &CrashReport) {
    let by_id: std::collections::BTreeMap<OpId, PendingOp> =
        tree.pending.iter().map(|p| (p.id, p.op.clone())).collect();
    for id in &report.kept {
        let op = &by_id[id];
        apply_one(tree, op, None);
    }
    if let Some((id, keep)) = report.torn {
        apply_one(tree, &by_id[&id], Some(keep));
    }
    tree.restart_from_durable();
}

fn apply_one(tree: &mut Tree, op: &PendingOp, torn_len: Option<u64>) {
    match op {
        PendingOp::Name { op, .. } => crate::state::apply_name(&mut tree.durable, op),
        data => tree.apply_durable_data(data, torn_len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tear_points_are_interior_sector_boundaries() {
        assert_eq!(tear_points(0, 512).collect::<Vec<_>>(), Vec::<u64>::new());
        assert_eq!(tear_points(0, 513).collect::<Vec<_>>(), vec![512]);
        assert_eq!(tear_points(100, 1000).collect::<Vec<_>>(), vec![412, 924]);
        assert_eq!(tear_points(511, 2).collect::<Vec<_>>(), vec![1]);
    }
}
