//! sluice-reports: turns run and sweep results into files people read.
//!
//! Today: the per-seed result record of a store crash sweep, written as `summary.json`
//! (machine-readable, one object per seed) and `summary.md` (a table and the failures with
//! the command that reproduces each). The cluster simulator's HTML report builds on these
//! types.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// One seed of a sweep.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedResult {
    pub seed: u64,
    /// What the seed drew (configuration and fault mix), one line.
    pub params: String,
    /// `pass`, or `fail: <invariant>: <detail>`.
    pub result: String,
    pub trace_hash: String,
    pub steps: u64,
    pub crashes: u64,
    pub unsynced_lost: u64,
    pub cuts: u64,
    /// Injected faults by kind.
    pub faults: BTreeMap<String, u64>,
    pub wall_ms: u64,
    /// The command that replays this seed.
    pub reproduce: String,
}

impl SeedResult {
    pub fn passed(&self) -> bool {
        self.result == "pass"
    }
}

/// Writes `summary.json` and `summary.md` for `results` (sorted by seed) into `dir`.
pub fn write_sweep(dir: &Path, title: &str, results: &[SeedResult]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(results).map_err(io::Error::other)?;
    std::fs::write(dir.join("summary.json"), json + "\n")?;
    std::fs::write(dir.join("summary.md"), markdown(title, results))?;
    Ok(())
}

/// A Markdown summary: totals, faults injected, and every failure with its replay command.
pub fn markdown(title: &str, results: &[SeedResult]) -> String {
    let mut out = String::new();
    let failed: Vec<&SeedResult> = results.iter().filter(|r| !r.passed()).collect();
    let _ = writeln!(out, "# {title}\n");
    let _ = writeln!(out, "| seeds | passed | failed | steps | crashes | unsynced messages lost | recovery cuts |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let sum = |f: fn(&SeedResult) -> u64| results.iter().map(f).sum::<u64>();
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} |\n",
        results.len(),
        results.len() - failed.len(),
        failed.len(),
        sum(|r| r.steps),
        sum(|r| r.crashes),
        sum(|r| r.unsynced_lost),
        sum(|r| r.cuts)
    );
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    for r in results {
        for (kind, n) in &r.faults {
            *faults.entry(kind).or_insert(0) += n;
        }
    }
    let _ = writeln!(
        out,
        "Faults injected: {}\n",
        faults.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    );
    if failed.is_empty() {
        let _ = writeln!(out, "No failures.");
    } else {
        let _ = writeln!(out, "## Failures\n");
        for r in failed {
            let _ = writeln!(out, "- seed {}: {}\n  `{}`", r.seed, r.result, r.reproduce);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(seed: u64, result: &str) -> SeedResult {
        SeedResult {
            seed,
            params: "sync=always".into(),
            result: result.into(),
            trace_hash: "0123456789abcdef".into(),
            steps: 10,
            crashes: 2,
            unsynced_lost: 1,
            cuts: 1,
            faults: BTreeMap::from([("Crash".to_string(), 2)]),
            wall_ms: 3,
            reproduce: format!("sluice-sim store-run --seed {seed}"),
        }
    }

    #[test]
    fn markdown_lists_totals_and_failures_with_their_command() {
        let md = markdown("t", &[result(1, "pass"), result(2, "fail: durability: step 3: gone")]);
        assert!(md.contains("| 2 | 1 | 1 | 20 | 4 | 2 | 2 |"), "{md}");
        assert!(md.contains("Faults injected: Crash 4"), "{md}");
        assert!(md.contains("seed 2: fail: durability") && md.contains("`sluice-sim store-run --seed 2`"), "{md}");
    }

    #[test]
    fn json_round_trips() {
        let results = vec![result(1, "pass")];
        let json = serde_json::to_string(&results).unwrap();
        let back: Vec<SeedResult> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, results);
    }
}
