//! sluice-reports: turns sweep results into files people read.
//!
//! A sweep writes `summary.json` (one object per seed: scenario, seed, bug, result,
//! trace-hash, simulated seconds, wall milliseconds, faults injected by kind, the command
//! that replays it, commit latencies, coverage, and a failed seed's timeline), `summary.md`
//! (totals and failures) and `report.html` (one self-contained page; see `html.rs`).

mod html;

pub use html::html;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// One seed of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedResult {
    pub scenario: String,
    pub seed: u64,
    /// The planted bug switched on, if any.
    pub bug: Option<String>,
    /// What the seed drew (configuration and fault mix), one line.
    pub params: String,
    /// `pass`, or `fail: <invariant>: <detail>`.
    pub result: String,
    pub trace_hash: String,
    pub sim_secs: f64,
    pub wall_ms: u64,
    /// Injected faults by kind.
    pub faults: BTreeMap<String, u64>,
    /// The command that replays this seed.
    pub reproduce: String,
    /// Commit latency of acknowledged publishes in simulated time, from a publish's first
    /// send to its acknowledgement: count per bucket, keyed by the bucket's upper bound in
    /// milliseconds (`LATENCY_BOUNDS_MS`; `u64::MAX` for the last, open one).
    #[serde(default)]
    pub latency_ms: BTreeMap<u64, u64>,
    /// Rare paths reached, with how often: `mark:NAME` (core's coverage marks),
    /// `buggify:SITE` (BUGGIFY sites that fired) and `fault:KIND@STATE` (a scheduled fault
    /// and the state its target was in when it struck).
    #[serde(default)]
    pub coverage: BTreeMap<String, u64>,
    /// Failed seeds only: what happened to whom and when (leaders, crashes, partitions, disk
    /// faults, the violation), for the report's timeline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelineEvent>,
}

/// One event of a run's timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub t_ms: u64,
    /// `leader`, `crash`, `restart`, `pause`, `isolate`, `partition`, `one-way`,
    /// `disk-errors`, `flip-*`, `heal-all`, `violation`...
    pub kind: String,
    /// The nodes it concerns (a partition: the side cut off); empty for the whole cluster.
    pub nodes: Vec<u64>,
    /// When it ends, for faults that last.
    pub until_ms: Option<u64>,
    /// The rest of what the trace says about it.
    pub detail: String,
}

/// Upper bounds of the commit latency buckets, in simulated milliseconds. The simulator
/// steps 10 ms at a time, so 0 means "within the step that sent it".
pub const LATENCY_BOUNDS_MS: [u64; 12] = [0, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, u64::MAX];

/// The bucket (its upper bound) a latency falls in.
pub fn latency_bucket(ms: u64) -> u64 {
    *LATENCY_BOUNDS_MS.iter().find(|b| ms <= **b).expect("the last bound is u64::MAX")
}

/// Timelines kept per failed seed, at most: a long run's leader changes are cut off here.
pub const TIMELINE_EVENTS_MAX: usize = 2_000;

impl SeedResult {
    pub fn passed(&self) -> bool {
        self.result == "pass"
    }

    /// The invariant a failure names (`fail: <invariant>: ...`).
    pub fn invariant(&self) -> Option<&str> {
        invariant_of(&self.result)
    }
}

/// The invariant a result line names: `fail: <invariant>: ...` gives `<invariant>`, `pass`
/// gives `None`.
pub fn invariant_of(result: &str) -> Option<&str> {
    result.strip_prefix("fail: ").map(|r| r.split(':').next().unwrap_or(r))
}

/// Writes `summary.json`, `summary.md` and `report.html` for `results` into `dir`. `known`
/// lists every coverage point a run could reach (see `html::html`).
pub fn write_sweep(dir: &Path, title: &str, results: &[SeedResult], known: &[String]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(results).map_err(io::Error::other)?;
    std::fs::write(dir.join("summary.json"), json + "\n")?;
    std::fs::write(dir.join("summary.md"), markdown(title, results))?;
    std::fs::write(dir.join("report.html"), html(title, results, known))?;
    Ok(())
}

fn fault_totals(results: &[SeedResult]) -> BTreeMap<&str, u64> {
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    for r in results {
        for (kind, n) in &r.faults {
            *faults.entry(kind).or_insert(0) += n;
        }
    }
    faults
}

/// Per scenario: (seeds, failures).
fn by_scenario(results: &[SeedResult]) -> BTreeMap<&str, (u64, u64)> {
    let mut m: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for r in results {
        let e = m.entry(&r.scenario).or_insert((0, 0));
        e.0 += 1;
        e.1 += u64::from(!r.passed());
    }
    m
}

/// A Markdown summary: totals, faults injected, and every failure with its replay command.
pub fn markdown(title: &str, results: &[SeedResult]) -> String {
    let mut out = String::new();
    let failed: Vec<&SeedResult> = results.iter().filter(|r| !r.passed()).collect();
    let _ = writeln!(out, "# {title}\n");
    let sim: f64 = results.iter().map(|r| r.sim_secs).sum();
    let _ = writeln!(out, "| seeds | passed | failed | simulated seconds |");
    let _ = writeln!(out, "|---|---|---|---|");
    let _ = writeln!(out, "| {} | {} | {} | {sim:.0} |\n", results.len(), results.len() - failed.len(), failed.len());
    let _ = writeln!(out, "| scenario | seeds | failed |\n|---|---|---|");
    for (name, (seeds, fails)) in by_scenario(results) {
        let _ = writeln!(out, "| {name} | {seeds} | {fails} |");
    }
    let faults = fault_totals(results);
    let _ = writeln!(
        out,
        "\nFaults injected: {}\n",
        faults.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    );
    if failed.is_empty() {
        let _ = writeln!(out, "No failures.");
    } else {
        let _ = writeln!(out, "## Failures\n");
        for r in failed {
            let _ = writeln!(out, "- {} seed {}: {}\n  `{}`", r.scenario, r.seed, r.result, r.reproduce);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(seed: u64, result: &str) -> SeedResult {
        SeedResult {
            scenario: "swarm".into(),
            seed,
            bug: None,
            params: "nodes=3".into(),
            result: result.into(),
            trace_hash: "0123456789abcdef".into(),
            sim_secs: 30.0,
            wall_ms: 3,
            faults: BTreeMap::from([("crash".to_string(), 2)]),
            reproduce: format!("sluice-sim run swarm --seed {seed}"),
            latency_ms: BTreeMap::from([(10, 3), (u64::MAX, 1)]),
            coverage: BTreeMap::from([("mark:a".to_string(), 2), ("fault:crash@leader".to_string(), 1)]),
            timeline: Vec::new(),
        }
    }

    #[test]
    fn summaries_list_totals_and_failures_with_their_command() {
        let results = [result(1, "pass"), result(2, "fail: durability: gone <x>")];
        let md = markdown("t", &results);
        assert!(md.contains("| 2 | 1 | 1 | 60 |"), "{md}");
        assert!(md.contains("| swarm | 2 | 1 |"), "{md}");
        assert!(md.contains("Faults injected: crash 4"), "{md}");
        assert!(
            md.contains("swarm seed 2: fail: durability") && md.contains("`sluice-sim run swarm --seed 2`"),
            "{md}"
        );
        let page = html("t", &results, &[]);
        assert!(page.contains("<b>1 failed</b>") && page.contains("gone &lt;x&gt;"), "{page}");
        assert_eq!(results[1].invariant(), Some("durability"));
        assert_eq!(results[0].invariant(), None);
    }

    #[test]
    fn the_page_draws_timelines_latency_and_what_no_seed_reached() {
        let mut failed = result(2, "fail: durability: gone");
        failed.timeline = vec![
            TimelineEvent {
                t_ms: 100,
                kind: "leader".into(),
                nodes: vec![1],
                until_ms: None,
                detail: "stream=\"s0\" term=2".into(),
            },
            TimelineEvent {
                t_ms: 500,
                kind: "crash".into(),
                nodes: vec![3],
                until_ms: Some(900),
                detail: "down_ms=400".into(),
            },
            TimelineEvent {
                t_ms: 950,
                kind: "violation".into(),
                nodes: vec![2],
                until_ms: None,
                detail: "durability".into(),
            },
        ];
        let results = [result(1, "pass"), failed];
        let known: Vec<String> =
            ["mark:a", "mark:b", "buggify:c", "fault:crash", "fault:pause"].map(String::from).into();
        let page = html("t", &results, &known);
        for id in ["summary", "seeds", "failures", "latency", "coverage", "unreached"] {
            assert!(page.contains(&format!("id=\"{id}\"")), "no section {id}");
        }
        assert_eq!(page.matches("class=\"timeline\"").count(), 1, "one failure, one timeline");
        assert!(page.contains("n3") && page.contains("t=500 ms crash"), "the crash is drawn on n3");
        assert!(page.contains("8 acknowledged publishes"), "two seeds of 3 + 1");
        let unreached = &page[page.find("id=\"unreached\"").unwrap()..];
        for (point, listed) in
            [("mark:b", true), ("buggify:c", true), ("fault:pause", true), ("mark:a", false), ("fault:crash", false)]
        {
            assert_eq!(unreached.contains(&format!("<code>{point}</code>")), listed, "{point}");
        }
    }

    #[test]
    fn latency_buckets_are_upper_bounds() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(1), 10);
        assert_eq!(latency_bucket(10), 10);
        assert_eq!(latency_bucket(10_001), u64::MAX);
    }

    #[test]
    fn json_round_trips() {
        let mut failed = result(2, "fail: x");
        failed.timeline = vec![TimelineEvent {
            t_ms: 1,
            kind: "crash".into(),
            nodes: vec![1],
            until_ms: Some(5),
            detail: String::new(),
        }];
        let results = vec![result(1, "pass"), failed];
        let json = serde_json::to_string(&results).unwrap();
        let back: Vec<SeedResult> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, results);
    }
}
