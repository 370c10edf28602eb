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

/// Bound on the crash states [`all_crash_states`] returns, so a long pending list fails loudly
/// instead of exhausting memory.
pub const CRASH_STATES_MAX: usize = 1 << 16;

/// Every choice a crash could make now, across all modes: enough choices that applying each
/// one yields every durable state the modes allow (ALICE-style enumeration). Within
/// keep-subset, the order of kept writes matters only among writes that overlap on one file,
/// so every order of each overlapping group is listed and non-overlapping writes keep one
/// order. Panics if there would be more than [`CRASH_STATES_MAX`].
pub fn all_crash_states(tree: &Tree) -> Vec<CrashReport> {
    let pending = &tree.pending;
    let n = pending.len();
    let ids: Vec<OpId> = pending.iter().map(|p| p.id).collect();
    let report = |mode, kept: Vec<OpId>, torn| CrashReport { mode, pending: n, kept, torn };
    let mut out = vec![report(CrashMode::LoseUnsynced, Vec::new(), None)];
    for k in 0..=n {
        out.push(report(CrashMode::TornSequence, ids[..k].to_vec(), None));
    }
    for (k, p) in pending.iter().enumerate() {
        if let PendingOp::Write { offset, data, .. } = &p.op {
            for keep in tear_points(*offset, data.len() as u64) {
                out.push(report(CrashMode::TornWrite, ids[..k].to_vec(), Some((p.id, keep))));
            }
        }
    }
    out.push(report(
        CrashMode::LoseDirEntries,
        pending.iter().filter(|p| p.op.is_data()).map(|p| p.id).collect(),
        None,
    ));
    let names: Vec<OpId> = pending.iter().filter(|p| !p.op.is_data()).map(|p| p.id).collect();
    let data: Vec<&crate::state::Pending> = pending.iter().filter(|p| p.op.is_data()).collect();
    assert!(data.len() < 20, "{} pending data writes: too many to enumerate", data.len());
    for mask in 0u32..(1 << data.len()) {
        let kept: Vec<&crate::state::Pending> =
            data.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, p)| *p).collect();
        for order in overlap_orders(&kept) {
            for m in 0..=names.len() {
                let mut choice = names[..m].to_vec();
                choice.extend(order.iter().copied());
                out.push(report(CrashMode::KeepSubset, choice, None));
                assert!(out.len() <= CRASH_STATES_MAX, "more than {CRASH_STATES_MAX} crash states");
            }
        }
    }
    out
}

fn overlaps(a: &PendingOp, b: &PendingOp) -> bool {
    let span = |op: &PendingOp| match op {
        PendingOp::Write { inode, offset, data } => Some((*inode, *offset, *offset + data.len() as u64)),
        // A length change affects everything from the new end on.
        PendingOp::SetLen { inode, len } => Some((*inode, *len, u64::MAX)),
        PendingOp::Name { .. } => None,
    };
    match (span(a), span(b)) {
        (Some((ia, sa, ea)), Some((ib, sb, eb))) => ia == ib && sa < eb && sb < ea,
        _ => false,
    }
}

/// Every order of `kept` that can give a distinct result: ops in overlapping groups are
/// permuted, the rest stay in pending order.
fn overlap_orders(kept: &[&crate::state::Pending]) -> Vec<Vec<OpId>> {
    // Group by connected overlap; a group of one has a single order.
    let mut group: Vec<usize> = (0..kept.len()).collect();
    for i in 0..kept.len() {
        for j in 0..i {
            if overlaps(&kept[i].op, &kept[j].op) {
                let (gi, gj) = (group[i], group[j]);
                for g in group.iter_mut() {
                    if *g == gi {
                        *g = gj;
                    }
                }
            }
        }
    }
    let mut orders: Vec<Vec<OpId>> = vec![Vec::new()];
    let mut done = vec![false; kept.len()];
    for i in 0..kept.len() {
        if done[i] {
            continue;
        }
        let members: Vec<OpId> = (0..kept.len()).filter(|&j| group[j] == group[i]).map(|j| kept[j].id).collect();
        for j in 0..kept.len() {
            if group[j] == group[i] {
                done[j] = true;
            }
        }
        let perms = permutations(&members);
        orders = orders
            .into_iter()
            .flat_map(|prefix| perms.iter().map(move |p| [prefix.clone(), p.clone()].concat()))
            .collect();
        assert!(orders.len() <= CRASH_STATES_MAX, "too many orders of overlapping writes");
    }
    orders
}

fn permutations(items: &[OpId]) -> Vec<Vec<OpId>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    assert!(items.len() <= 7, "{} overlapping writes: too many orders to enumerate", items.len());
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first);
            out.push(tail);
        }
    }
    out
}

/// Applies the kept operations of `report` to the durable view (in the report's order) and
/// restarts the live view from it.
pub fn apply_report(tree: &mut Tree, report: &CrashReport) {
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
    fn permutations_are_complete() {
        assert_eq!(permutations(&[1, 2, 3]).len(), 6);
        assert_eq!(permutations(&[]), vec![Vec::<OpId>::new()]);
    }

    #[test]
    fn tear_points_are_interior_sector_boundaries() {
        assert_eq!(tear_points(0, 512).collect::<Vec<_>>(), Vec::<u64>::new());
        assert_eq!(tear_points(0, 513).collect::<Vec<_>>(), vec![512]);
        assert_eq!(tear_points(100, 1000).collect::<Vec<_>>(), vec![412, 924]);
        assert_eq!(tear_points(511, 2).collect::<Vec<_>>(), vec![1]);
    }
}
