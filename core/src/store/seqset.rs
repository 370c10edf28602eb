//! A set of sequence numbers stored as disjoint inclusive ranges, for the deleted and skipped
//! sequences of a stream. Interior deletes are usually few and clustered; a range map keeps
//! a million-sequence gap (a restore, a skip) at one entry.
//!
//! Invariant: ranges are disjoint and non-adjacent (adjacent ranges are merged), and `len`
//! is the number of sequences they cover.

use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeqSet {
    /// first -> last, inclusive.
    ranges: BTreeMap<u64, u64>,
    len: u64,
}

impl SeqSet {
    pub fn new() -> Self {
        SeqSet::default()
    }

    /// Number of sequences in the set.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.range_containing(seq).is_some()
    }

    fn range_containing(&self, seq: u64) -> Option<(u64, u64)> {
        let (&first, &last) = self.ranges.range(..=seq).next_back()?;
        (seq <= last).then_some((first, last))
    }

    /// The smallest sequence at or above `seq` that is not in the set.
    pub fn next_absent(&self, seq: u64) -> u64 {
        match self.range_containing(seq) {
            Some((_, last)) => last.saturating_add(1),
            None => seq,
        }
    }

    /// Adds `first..=last`; returns how many sequences were new.
    pub fn insert_range(&mut self, first: u64, last: u64) -> u64 {
        assert!(first <= last, "range {first}..={last} runs backwards");
        let mut new_first = first;
        let mut new_last = last;
        let mut covered = 0u64;
        // Absorb every range that overlaps or touches [first, last]. Ranges are disjoint, so
        // the loop visits each absorbed range once: bounded by the number of ranges.
        let touching: Vec<(u64, u64)> = self
            .ranges
            .range(..=last.saturating_add(1))
            .rev()
            .take_while(|&(_, &l)| l.saturating_add(1) >= first)
            .map(|(&f, &l)| (f, l))
            .collect();
        for (f, l) in touching {
            self.ranges.remove(&f);
            covered += l - f + 1;
            new_first = new_first.min(f);
            new_last = new_last.max(l);
        }
        self.ranges.insert(new_first, new_last);
        let total = new_last - new_first + 1;
        let added = total - covered;
        self.len += added;
        added
    }

    pub fn insert(&mut self, seq: u64) -> bool {
        self.insert_range(seq, seq) == 1
    }

    /// Removes `seq`; returns whether it was in the set.
    pub fn remove(&mut self, seq: u64) -> bool {
        let Some((first, last)) = self.range_containing(seq) else { return false };
        self.ranges.remove(&first);
        if first < seq {
            self.ranges.insert(first, seq - 1);
        }
        if seq < last {
            self.ranges.insert(seq + 1, last);
        }
        self.len -= 1;
        true
    }

    /// Removes every sequence below `seq`; returns how many were removed.
    pub fn remove_below(&mut self, seq: u64) -> u64 {
        let mut removed = 0u64;
        while let Some((&first, &last)) = self.ranges.iter().next() {
            if first >= seq {
                break;
            }
            self.ranges.remove(&first);
            if last >= seq {
                removed += seq - first;
                self.ranges.insert(seq, last);
                break;
            }
            removed += last - first + 1;
        }
        self.len -= removed;
        removed
    }

    /// Removes every sequence above `seq`; returns how many were removed.
    pub fn remove_above(&mut self, seq: u64) -> u64 {
        let mut removed = 0u64;
        while let Some((&first, &last)) = self.ranges.iter().next_back() {
            if last <= seq {
                break;
            }
            self.ranges.remove(&first);
            if first <= seq {
                removed += last - seq;
                self.ranges.insert(first, seq);
                break;
            }
            removed += last - first + 1;
        }
        self.len -= removed;
        removed
    }

    /// Number of sequences of the set within `first..=last`.
    pub fn count_within(&self, first: u64, last: u64) -> u64 {
        if first > last {
            return 0;
        }
        let mut count = 0u64;
        let start = self.range_containing(first).map_or(first, |(f, _)| f);
        for (&f, &l) in self.ranges.range(start..=last) {
            count += l.min(last) - f.max(first) + 1;
        }
        count
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&f, &l)| (f, l))
    }

    pub fn check_invariants(&self) {
        let mut previous: Option<u64> = None;
        let mut total = 0u64;
        for (&f, &l) in &self.ranges {
            assert!(f <= l, "range {f}..={l} runs backwards");
            if let Some(p) = previous {
                assert!(f > p.saturating_add(1), "ranges touch or overlap at {f}");
            }
            previous = Some(l);
            total += l - f + 1;
        }
        assert_eq!(total, self.len, "cached length disagrees with the ranges");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u64),
        RemoveBelow(u64),
        RemoveAbove(u64),
        Remove(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..200, 0u64..8).prop_map(|(f, n)| Op::Insert(f, f + n)),
            (0u64..200).prop_map(Op::RemoveBelow),
            (0u64..200).prop_map(Op::RemoveAbove),
            (0u64..210).prop_map(Op::Remove),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// The range set behaves exactly like a plain set of integers.
        #[test]
        fn matches_a_plain_set(ops in proptest::collection::vec(op(), 0..40), probe in 0u64..210) {
            let mut set = SeqSet::new();
            let mut model = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(f, l) => {
                        let before = model.len() as u64;
                        model.extend(f..=l);
                        prop_assert_eq!(set.insert_range(f, l), model.len() as u64 - before);
                    }
                    Op::RemoveBelow(s) => {
                        let before = model.len() as u64;
                        model.retain(|&x| x >= s);
                        prop_assert_eq!(set.remove_below(s), before - model.len() as u64);
                    }
                    Op::RemoveAbove(s) => {
                        let before = model.len() as u64;
                        model.retain(|&x| x <= s);
                        prop_assert_eq!(set.remove_above(s), before - model.len() as u64);
                    }
                    Op::Remove(s) => prop_assert_eq!(set.remove(s), model.remove(&s)),
                }
                set.check_invariants();
                prop_assert_eq!(set.len(), model.len() as u64);
            }
            prop_assert_eq!(set.contains(probe), model.contains(&probe));
            let mut next = probe;
            while model.contains(&next) { next += 1; }
            prop_assert_eq!(set.next_absent(probe), next);
            let hi = probe + 17;
            prop_assert_eq!(set.count_within(probe, hi), model.range(probe..=hi).count() as u64);
        }
    }
}
