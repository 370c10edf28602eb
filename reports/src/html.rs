//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, no network), so
//! a sweep's report opens anywhere and can be attached to a bug as it is.
//!
//! Sections, each an element with a fixed id that `scripts/check-report` looks for:
//! * `summary`: totals, and seeds per scenario with failures in red;
//! * `seeds`: a table of the seeds (every failure, then passes up to `SEED_ROWS_MAX`);
//! * `failures`: per failed seed, its result, the command that replays it, and a timeline
//!   of the nodes over simulated time (leaders, crashes, pauses, partitions, disk faults,
//!   healing, the violation), one `svg.timeline` each;
//! * `latency`: a histogram of commit latency in simulated time, over every seed;
//! * `coverage`: which scheduled faults struck nodes in which state, and how often each
//!   coverage mark and BUGGIFY site was reached;
//! * `unreached`: the marks, BUGGIFY sites and fault kinds no seed reached.

use crate::{SeedResult, TimelineEvent, LATENCY_BOUNDS_MS};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Rows of the seed table at most; failures always get a row.
const SEED_ROWS_MAX: usize = 2_000;
/// Failures drawn with a timeline, at most (the rest are listed with their command).
const TIMELINES_MAX: usize = 50;

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The page. `known` lists every point a run could reach (`mark:NAME`, `buggify:SITE`,
/// `fault:KIND`); those no seed reached are listed under `unreached`.
pub fn html(title: &str, results: &[SeedResult], known: &[String]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font:14px sans-serif;margin:2em;max-width:80em}} td,th{{padding:2px 8px;text-align:left}} \
         th{{background:#eee}} tr.fail td{{background:#fdd}} .bar{{fill:#4a7}} .fail{{fill:#c33}} \
         code{{background:#eee;padding:1px 3px}} svg text{{font:11px sans-serif}} \
         .scroll{{max-height:30em;overflow:auto}}</style></head><body><h1>{t}</h1>",
        t = escape(title)
    );
    summary(&mut out, results);
    seeds(&mut out, results);
    failures(&mut out, results);
    latency(&mut out, results);
    coverage(&mut out, results, known);
    out.push_str("</body></html>\n");
    out
}

fn summary(out: &mut String, results: &[SeedResult]) {
    let failed = results.iter().filter(|r| !r.passed()).count();
    let sim: f64 = results.iter().map(|r| r.sim_secs).sum();
    let _ = write!(
        out,
        "<section id=\"summary\"><p>{} seeds, {} passed, <b>{failed} failed</b>; {sim:.0} simulated seconds.</p>",
        results.len(),
        results.len() - failed,
    );
    let scenarios = crate::by_scenario(results);
    let most = scenarios.values().map(|(s, _)| *s).max().unwrap_or(1).max(1) as f64;
    let _ = write!(out, "<h2>Scenarios</h2><svg width=\"860\" height=\"{}\">", 22 * scenarios.len() + 4);
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
    let _ = write!(out, "</svg><h2>Faults injected</h2><table>");
    for (k, n) in crate::fault_totals(results) {
        let _ = write!(out, "<tr><td>{}</td><td>{n}</td></tr>", escape(k));
    }
    out.push_str("</table></section>");
}

fn seeds(out: &mut String, results: &[SeedResult]) {
    let failed: Vec<&SeedResult> = results.iter().filter(|r| !r.passed()).collect();
    let room = SEED_ROWS_MAX.saturating_sub(failed.len());
    let passed: Vec<&SeedResult> = results.iter().filter(|r| r.passed()).take(room).collect();
    let mut rows: Vec<&SeedResult> = failed.iter().chain(passed.iter()).copied().collect();
    rows.sort_by_key(|r| r.seed);
    let _ = write!(out, "<section id=\"seeds\"><h2>Seeds</h2>");
    if rows.len() < results.len() {
        let _ = write!(out, "<p>Every failure and the first {} passes of {} seeds.</p>", passed.len(), results.len());
    }
    out.push_str(
        "<div class=\"scroll\"><table><tr><th>seed</th><th>scenario</th><th>bug</th><th>result</th>\
         <th>simulated s</th><th>wall ms</th><th>trace-hash</th></tr>",
    );
    for r in rows {
        let _ = write!(
            out,
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td><code>{}</code></td></tr>",
            if r.passed() { "" } else { " class=\"fail\"" },
            r.seed,
            escape(&r.scenario),
            escape(r.bug.as_deref().unwrap_or("")),
            escape(&r.result),
            r.sim_secs,
            r.wall_ms,
            escape(&r.trace_hash)
        );
    }
    out.push_str("</table></div></section>");
}

fn failures(out: &mut String, results: &[SeedResult]) {
    let failed: Vec<&SeedResult> = results.iter().filter(|r| !r.passed()).collect();
    out.push_str("<section id=\"failures\"><h2>Failures</h2>");
    if failed.is_empty() {
        out.push_str("<p>None.</p>");
    }
    for (k, r) in failed.iter().enumerate() {
        let _ = write!(
            out,
            "<h3>{} seed {}</h3><p>{}</p><p>params: <code>{}</code></p><p>replay: <code>{}</code></p>",
            escape(&r.scenario),
            r.seed,
            escape(&r.result),
            escape(&r.params),
            escape(&r.reproduce)
        );
        if k < TIMELINES_MAX && !r.timeline.is_empty() {
            timeline(out, &r.timeline, r.sim_secs);
        }
    }
    out.push_str("</section>");
}

/// Colour of a fault bar or marker.
fn colour(kind: &str) -> &'static str {
    match kind {
        "crash" => "#888",
        "pause" => "#bbb",
        "isolate" | "partition" | "one-way" => "#e90",
        "disk-errors" => "#d44",
        _ if kind.starts_with("flip-") => "#a0a",
        "restart" | "restart-all" => "#37c",
        _ => "#555",
    }
}

/// A field `key=value` of an event's detail (values as the trace wrote them).
fn field<'a>(detail: &'a str, key: &str) -> Option<&'a str> {
    detail.split(' ').find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('='))).map(|v| v.trim_matches('"'))
}

/// A bar of a timeline from x0 to x1 (at least 2 px wide), at (y, height), with a tooltip.
fn bar(out: &mut String, (x0, x1): (f64, f64), (y, height): (f64, f64), fill: &str, title: &str) {
    let _ = write!(
        out,
        "<rect x=\"{x0:.1}\" y=\"{y:.0}\" width=\"{:.1}\" height=\"{height:.0}\" fill=\"{fill}\"><title>{}</title></rect>",
        (x1 - x0).max(2.0),
        escape(title)
    );
}

/// One failed run's nodes over simulated time.
fn timeline(out: &mut String, events: &[TimelineEvent], sim_secs: f64) {
    let end_ms = events
        .iter()
        .map(|e| e.until_ms.unwrap_or(e.t_ms).max(e.t_ms))
        .max()
        .unwrap_or(0)
        .max((sim_secs * 1_000.0) as u64)
        .max(1);
    let nodes = events.iter().flat_map(|e| e.nodes.iter().copied()).max().unwrap_or(1).clamp(1, 64);
    let (left, width, row) = (50.0, 820.0, 24.0);
    let x = |t: u64| left + width * t.min(end_ms) as f64 / end_ms as f64;
    let height = row * nodes as f64 + 40.0;
    let _ = write!(out, "<svg class=\"timeline\" width=\"{:.0}\" height=\"{height:.0}\">", left + width + 10.0);
    for n in 1..=nodes {
        let y = row * (n - 1) as f64;
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{:.0}\">n{n}</text><line x1=\"{left}\" x2=\"{:.0}\" y1=\"{:.0}\" y2=\"{:.0}\" stroke=\"#ddd\"/>",
            y + 15.0,
            left + width,
            y + 10.0,
            y + 10.0
        );
    }
    // Leadership: from a leader event to the next one of the same stream, or the end.
    let mut leaders: Vec<(&TimelineEvent, u64)> = Vec::new();
    for (k, e) in events.iter().enumerate().filter(|(_, e)| e.kind == "leader") {
        let stream = field(&e.detail, "stream");
        let next = events[k + 1..]
            .iter()
            .find(|o| o.kind == "leader" && field(&o.detail, "stream") == stream)
            .map_or(end_ms, |o| o.t_ms);
        leaders.push((e, next));
    }
    for (e, until) in leaders {
        let Some(&n) = e.nodes.first() else { continue };
        let y = row * (n.clamp(1, nodes) - 1) as f64;
        let title = format!("t={} ms leader: {}", e.t_ms, e.detail);
        bar(out, (x(e.t_ms), x(until)), (y + 2.0, 6.0), "#8c8", &title);
    }
    for e in events.iter().filter(|e| e.kind != "leader") {
        let title = format!("t={} ms {}: {}", e.t_ms, e.kind, e.detail);
        if e.kind == "heal-all" || e.kind == "violation" {
            let stroke = if e.kind == "violation" { "#c00" } else { "#37c" };
            let _ = write!(
                out,
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"0\" y2=\"{1:.0}\" stroke=\"{stroke}\" stroke-width=\"2\" stroke-dasharray=\"{2}\"><title>{3}</title></line>",
                x(e.t_ms),
                row * nodes as f64,
                if e.kind == "violation" { "none" } else { "4 3" },
                escape(&title)
            );
        }
        for &n in &e.nodes {
            let y = row * (n.clamp(1, nodes) - 1) as f64;
            match e.until_ms {
                Some(until) => bar(out, (x(e.t_ms), x(until)), (y + 10.0, 8.0), colour(&e.kind), &title),
                None => {
                    let _ = write!(
                        out,
                        "<circle cx=\"{:.1}\" cy=\"{:.0}\" r=\"5\" fill=\"{}\"><title>{}</title></circle>",
                        x(e.t_ms),
                        y + 14.0,
                        if e.kind == "violation" { "#c00" } else { colour(&e.kind) },
                        escape(&title)
                    );
                }
            }
        }
    }
    // Time axis, and a legend.
    let axis_y = row * nodes as f64 + 14.0;
    for k in 0..=4 {
        let t = end_ms * k / 4;
        let _ = write!(out, "<text x=\"{:.0}\" y=\"{axis_y:.0}\">{:.1} s</text>", x(t) - 10.0, t as f64 / 1_000.0);
    }
    let legend = [
        ("#8c8", "leader"),
        ("#888", "crashed"),
        ("#bbb", "paused"),
        ("#e90", "cut off"),
        ("#d44", "disk errors"),
        ("#a0a", "bit flip"),
        ("#37c", "restart / heal"),
        ("#c00", "violation"),
    ];
    for (k, (fill, what)) in legend.iter().enumerate() {
        let lx = left + 100.0 * k as f64;
        let _ = write!(
            out,
            "<rect x=\"{lx:.0}\" y=\"{:.0}\" width=\"10\" height=\"10\" fill=\"{fill}\"/><text x=\"{:.0}\" y=\"{:.0}\">{what}</text>",
            axis_y + 6.0,
            lx + 14.0,
            axis_y + 15.0
        );
    }
    out.push_str("</svg>");
}

/// Label of a latency bucket by its upper bound.
fn bucket_label(bound: u64) -> String {
    match bound {
        0 => "0".into(),
        u64::MAX => format!("> {}", LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 2]),
        b => format!("≤ {b}"),
    }
}

fn latency(out: &mut String, results: &[SeedResult]) {
    let mut counts: BTreeMap<u64, u64> = LATENCY_BOUNDS_MS.iter().map(|b| (*b, 0)).collect();
    for r in results {
        for (bound, n) in &r.latency_ms {
            *counts.entry(*bound).or_insert(0) += n;
        }
    }
    let total: u64 = counts.values().sum();
    out.push_str(
        "<section id=\"latency\"><h2>Commit latency (simulated ms, first send to acknowledgement)</h2>\
         <p>Simulated time moves in 10 ms steps: 0 means within the step that sent the publish.</p>",
    );
    // The bucket holding a percentile: its upper bound is what the report can promise.
    let percentile = |p: f64| {
        let want = (total as f64 * p).ceil() as u64;
        let mut seen = 0;
        counts.iter().find(|(_, n)| {
            seen += **n;
            seen >= want.max(1)
        })
    };
    if total == 0 {
        out.push_str("<p>No publish was acknowledged.</p>");
    } else {
        let p50 = percentile(0.5).map_or(String::new(), |(b, _)| bucket_label(*b));
        let p99 = percentile(0.99).map_or(String::new(), |(b, _)| bucket_label(*b));
        let _ = write!(out, "<p>{total} acknowledged publishes; median {p50} ms, 99th percentile {p99} ms.</p>");
    }
    let top = counts.values().copied().max().unwrap_or(1).max(1) as f64;
    let _ = write!(out, "<svg width=\"760\" height=\"170\">");
    for (k, (bound, n)) in counts.iter().enumerate() {
        let h = 120.0 * *n as f64 / top;
        let bx = 60 * k;
        let _ = write!(
            out,
            "<rect class=\"bar\" x=\"{bx}\" y=\"{:.1}\" width=\"52\" height=\"{h:.1}\"><title>{n}</title></rect>\
             <text x=\"{bx}\" y=\"{:.1}\">{n}</text><text x=\"{bx}\" y=\"160\">{}</text>",
            135.0 - h,
            (130.0 - h).max(10.0),
            escape(&bucket_label(*bound))
        );
    }
    out.push_str("</svg></section>");
}

fn coverage(out: &mut String, results: &[SeedResult], known: &[String]) {
    // point → (hits, seeds that reached it)
    let mut reached: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for r in results {
        for (point, n) in &r.coverage {
            let e = reached.entry(point).or_insert((0, 0));
            e.0 += n;
            e.1 += 1;
        }
    }
    out.push_str("<section id=\"coverage\"><h2>Fault coverage: the state each scheduled fault struck in</h2>");
    let mut kinds: BTreeSet<&str> = BTreeSet::new();
    let mut states: BTreeSet<&str> = BTreeSet::new();
    let mut cells: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for (point, (hits, _)) in &reached {
        if let Some((kind, state)) = point.strip_prefix("fault:").and_then(|p| p.split_once('@')) {
            kinds.insert(kind);
            states.insert(state);
            cells.insert((kind, state), *hits);
        }
    }
    if kinds.is_empty() {
        out.push_str("<p>No scheduled fault struck.</p>");
    } else {
        out.push_str("<div class=\"scroll\"><table><tr><th>fault</th>");
        for s in &states {
            let _ = write!(out, "<th>{}</th>", escape(s));
        }
        out.push_str("</tr>");
        for k in &kinds {
            let _ = write!(out, "<tr><td>{}</td>", escape(k));
            for s in &states {
                let n = cells.get(&(*k, *s)).copied().unwrap_or(0);
                let _ = write!(out, "<td>{}</td>", if n == 0 { String::new() } else { n.to_string() });
            }
            out.push_str("</tr>");
        }
        out.push_str("</table></div>");
    }
    out.push_str("<h2>Rare paths reached</h2><table><tr><th>point</th><th>hits</th><th>seeds</th></tr>");
    for (point, (hits, seeds)) in reached.iter().filter(|(p, _)| !p.starts_with("fault:")) {
        let _ = write!(out, "<tr><td>{}</td><td>{hits}</td><td>{seeds}</td></tr>", escape(point));
    }
    out.push_str("</table></section>");
    let unreached = unreached(&reached, known);
    out.push_str("<section id=\"unreached\"><h2>Never reached by any seed</h2>");
    if unreached.is_empty() {
        out.push_str(
            "<p>Every known mark, BUGGIFY site and fault kind was reached.</p><ul id=\"unreached-list\"></ul>",
        );
    } else {
        out.push_str("<ul id=\"unreached-list\">");
        for p in unreached {
            let _ = write!(out, "<li><code>{}</code></li>", escape(p));
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");
}

/// Known points no seed reached. A `fault:KIND` is reached by any `fault:KIND@STATE`.
pub(crate) fn unreached<'a>(reached: &BTreeMap<&str, (u64, u64)>, known: &'a [String]) -> Vec<&'a str> {
    known
        .iter()
        .filter(|k| {
            let prefix = format!("{k}@");
            !reached.contains_key(k.as_str()) && !reached.keys().any(|r| r.starts_with(&prefix))
        })
        .map(String::as_str)
        .collect()
}
