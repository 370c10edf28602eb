//! sluice-reports: turns sweep results into files people read.
//!
//! A sweep writes `summary.json` (one object per seed: scenario, seed, bug, result,
//! trace-hash, simulated seconds, wall milliseconds, faults injected by kind, and the command
//! that replays it), `summary.md` (totals and failures) and `report.html` (one self-contained
//! page: totals, a bar per scenario, a histogram of simulated time, the failures with their
//! commands).

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
}

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

/// Writes `summary.json`, `summary.md` and `report.html` for `results` into `dir`.
pub fn write_sweep(dir: &Path, title: &str, results: &[SeedResult]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(results).map_err(io::Error::other)?;
    std::fs::write(dir.join("summary.json"), json + "\n")?;
    std::fs::write(dir.join("summary.md"), markdown(title, results))?;
    std::fs::write(dir.join("report.html"), html(title, results))?;
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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One self-contained HTML page (inline CSS and SVG, no scripts).
pub fn html(title: &str, results: &[SeedResult]) -> String {
    let mut out = String::new();
    let failed: Vec<&SeedResult> = results.iter().filter(|r| !r.passed()).collect();
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font:14px sans-serif;margin:2em;max-width:70em}} td,th{{padding:2px 8px;text-align:left}} \
         .bar{{fill:#4a7}} .fail{{fill:#c33}} code{{background:#eee;padding:1px 3px}}</style></head><body>\
         <h1>{t}</h1><p>{} seeds, {} passed, <b>{} failed</b>.</p>",
        results.len(),
        results.len() - failed.len(),
        failed.len(),
        t = escape(title)
    );
    // Seeds per scenario, failures in red.
    let scenarios = by_scenario(results);
    let most = scenarios.values().map(|(s, _)| *s).max().unwrap_or(1).max(1) as f64;
    let _ = write!(out, "<h2>Scenarios</h2><svg width=\"720\" height=\"{}\">", 22 * scenarios.len() + 4);
    for (k, (name, (seeds, fails))) in scenarios.iter().enumerate() {
        let y = 22 * k + 2;
        let w = 460.0 * *seeds as f64 / most;
        let wf = 460.0 * *fails as f64 / most;
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{}\">{}</text><rect class=\"bar\" x=\"200\" y=\"{y}\" width=\"{w:.1}\" height=\"16\"/>\
             <rect class=\"fail\" x=\"200\" y=\"{y}\" width=\"{wf:.1}\" height=\"16\"/><text x=\"{:.1}\" y=\"{}\">{seeds} ({fails} failed)</text>",
            y + 13,
            escape(name),
            206.0 + w,
            y + 13
        );
    }
    let _ = write!(out, "</svg>");
    // Histogram of simulated seconds.
    let buckets = 20usize;
    let max_sim = results.iter().map(|r| r.sim_secs).fold(0.0, f64::max).max(1.0);
    let mut counts = vec![0u64; buckets];
    for r in results {
        let b = ((r.sim_secs / max_sim) * (buckets as f64 - 1.0)).round() as usize;
        counts[b.min(buckets - 1)] += 1;
    }
    let top = *counts.iter().max().unwrap_or(&1).max(&1) as f64;
    let _ = write!(out, "<h2>Simulated seconds per seed (0 to {max_sim:.0})</h2><svg width=\"720\" height=\"130\">");
    for (b, c) in counts.iter().enumerate() {
        let h = 110.0 * *c as f64 / top;
        let _ = write!(
            out,
            "<rect class=\"bar\" x=\"{}\" y=\"{:.1}\" width=\"30\" height=\"{h:.1}\"><title>{c}</title></rect>",
            b * 34,
            115.0 - h
        );
    }
    let _ = write!(out, "</svg><h2>Faults injected</h2><table>");
    for (k, n) in fault_totals(results) {
        let _ = write!(out, "<tr><td>{}</td><td>{n}</td></tr>", escape(k));
    }
    let _ = write!(out, "</table><h2>Failures</h2>");
    if failed.is_empty() {
        let _ = write!(out, "<p>None.</p>");
    } else {
        let _ = write!(out, "<table><tr><th>scenario</th><th>seed</th><th>result</th><th>replay</th></tr>");
        for r in failed {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                escape(&r.scenario),
                r.seed,
                escape(&r.result),
                escape(&r.reproduce)
            );
        }
        let _ = write!(out, "</table>");
    }
    out.push_str("</body></html>\n");
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
        let page = html("t", &results);
        assert!(page.contains("<b>1 failed</b>") && page.contains("gone &lt;x&gt;"), "{page}");
        assert_eq!(results[1].invariant(), Some("durability"));
        assert_eq!(results[0].invariant(), None);
    }

    #[test]
    fn json_round_trips() {
        let results = vec![result(1, "pass")];
        let json = serde_json::to_string(&results).unwrap();
        let back: Vec<SeedResult> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, results);
    }
}
