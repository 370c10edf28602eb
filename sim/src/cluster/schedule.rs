//! The fault schedule: every fault the nemesis injects, with its simulated time, drawn from
//! the seed before the run starts (so a schedule can be written out, edited by hand, shrunk
//! and run again). The network's per-frame faults (loss, duplication, latency) are not in it:
//! they are drawn per frame from the seed.
//!
//! What each fault models, and why the cluster must survive it:
//! * `crash n2 down 800ms [mode M]`: the process dies and its faultfs disk crashes (unsynced
//!   writes lost, kept out of order or torn, directory entries lost); it restarts after
//!   `down` and recovers. Acknowledged data was synced on a quorum, so nothing is lost.
//! * `restart n2`: a clean restart (everything synced first), as in a rolling upgrade.
//! * `pause n2 for 700ms`: the process stops (SIGSTOP, a long GC); frames to it wait.
//! * `isolate n2 for 1500ms`: every link to and from the node is cut.
//! * `partition n1,n2 for 2000ms`: the listed nodes can talk only among themselves.
//! * `one-way n1->n3 for 1000ms`: frames from n1 to n3 are lost; the reverse path works.
//! * `disk-errors n1 for 2000ms`: the node's disk fails fsyncs (dropping the pages, as Linux
//!   does) and writes (ENOSPC) at the swarm's rates for the window.
//! * `flip-block n2`: one bit flips on the medium in one of the node's block files, and the
//!   node restarts; recovery must cut the bad record and refetch it, never serve it.
//! * `flip-log n2`: one bit flips in one of the node's Raft log segments, and the node
//!   restarts; recovery cuts the log there, and a node that lost committed entries must not
//!   vote until a leader has repaired its log (the `damaged-node-votes` bug).
//! * `flip-old-log n2`: the same, in the older half of the oldest segment past the group's
//!   snapshot (never the newest segment; skipped if there is none), so the records after the
//!   cut tell the node it lost committed entries. With an isolated follower and a leader
//!   crash at the same moment (swarm `damaged_voter`), it is the case where a damaged node's
//!   vote alone would elect a leader missing them.
//!
//! A target is `nK`, `leader:S` (stream S's leader at that moment, else a random node) or
//! `follower:S:K` (stream S's follower K, in node order, at that moment; a random node if
//! the stream has no leader).
//!
//! File format: one event per line, `at <ms>ms <fault>`; `#` starts a comment; the header
//! lines `scenario NAME`, `seed N` and `bug NAME|none` say which run the schedule belongs to.

use crate::cluster::swarm::{Budget, Swarm};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_faultfs::CrashMode;
use std::fmt;

/// Most events a schedule may hold (a hand-written file is input too).
pub const EVENTS_MAX: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Node(u64),
    /// The leader of stream `S` when the fault fires (a random node if it has none).
    Leader(usize),
    /// Follower `K` (in node order, modulo their number) of stream `S` when the fault fires
    /// (a random node if the stream has no leader).
    Follower(usize, usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    Crash {
        target: Target,
        down_ms: u64,
        mode: Option<CrashMode>,
    },
    Restart {
        target: Target,
    },
    Pause {
        target: Target,
        ms: u64,
    },
    Isolate {
        target: Target,
        ms: u64,
    },
    Partition {
        side: Vec<u64>,
        ms: u64,
    },
    OneWay {
        from: u64,
        to: u64,
        ms: u64,
    },
    DiskErrors {
        target: Target,
        ms: u64,
    },
    FlipBlock {
        target: Target,
    },
    FlipLog {
        target: Target,
    },
    /// A bit flipped in the older half of a replica's oldest log segment: the cut there
    /// loses entries whose commit later records claimed, so the node knows it is damaged.
    FlipOldLog {
        target: Target,
    },
}

impl Fault {
    /// Every name `kind` gives, for coverage reports.
    pub const KINDS: [&'static str; 10] = [
        "crash",
        "restart",
        "pause",
        "isolate",
        "partition",
        "one-way",
        "disk-errors",
        "flip-block",
        "flip-log",
        "flip-old-log",
    ];

    /// The kind, for counting faults in a sweep's summary.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Crash { .. } => "crash",
            Fault::Restart { .. } => "restart",
            Fault::Pause { .. } => "pause",
            Fault::Isolate { .. } => "isolate",
            Fault::Partition { .. } => "partition",
            Fault::OneWay { .. } => "one-way",
            Fault::DiskErrors { .. } => "disk-errors",
            Fault::FlipBlock { .. } => "flip-block",
            Fault::FlipLog { .. } => "flip-log",
            Fault::FlipOldLog { .. } => "flip-old-log",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub at_ms: u64,
    pub fault: Fault,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    pub events: Vec<Event>,
}

impl Schedule {
    /// Draws the schedule for `swarm` from its seed: each fault kind a Poisson-like process
    /// at its rate over the safety phase.
    pub fn generate(swarm: &Swarm) -> Schedule {
        let mut rng = ChaCha8Rng::seed_from_u64(swarm.seed ^ 0x4e45_4d45_5349);
        let mut events = Vec::new();
        let n = swarm.nodes as u64;
        let streams = swarm.replicas.len();
        // Faults start after the cluster has formed and stop a little before the end.
        let (start_ms, end_ms) = (500, swarm.safety_ms.saturating_sub(500));
        assert!(n >= 2 || swarm.partition_per_min + swarm.one_way_per_min == 0, "network faults need two nodes");
        let mut draw = |rate_per_min: u32, make: &mut dyn FnMut(&mut ChaCha8Rng) -> Fault| {
            if rate_per_min == 0 || end_ms <= start_ms {
                return;
            }
            let count = (u64::from(rate_per_min) * (end_ms - start_ms) / 60_000).max(1);
            for _ in 0..count.min(EVENTS_MAX as u64 / 8) {
                let at_ms = rng.gen_range(start_ms..end_ms);
                let fault = make(&mut rng);
                events.push(Event { at_ms, fault });
            }
        };
        let target = |rng: &mut ChaCha8Rng, leader_ppm: u32| {
            if rng.gen_range(0..1_000_000) < leader_ppm {
                Target::Leader(rng.gen_range(0..streams))
            } else {
                Target::Node(rng.gen_range(1..=n))
            }
        };
        let mode = swarm.crash_mode;
        let leader_ppm = swarm.target_leader_ppm;
        draw(swarm.crash_per_min, &mut |rng| Fault::Crash {
            target: target(rng, leader_ppm),
            down_ms: rng.gen_range(10..2_000),
            mode,
        });
        draw(swarm.pause_per_min, &mut |rng| Fault::Pause {
            target: target(rng, leader_ppm),
            ms: rng.gen_range(100..1_500),
        });
        draw(swarm.isolate_per_min, &mut |rng| Fault::Isolate {
            target: target(rng, leader_ppm),
            ms: rng.gen_range(300..3_000),
        });
        draw(swarm.partition_per_min, &mut |rng| {
            let size = rng.gen_range(1..=(n as usize / 2).max(1));
            let mut side: Vec<u64> = Vec::new();
            while side.len() < size {
                let k = rng.gen_range(1..=n);
                if !side.contains(&k) {
                    side.push(k);
                }
            }
            side.sort_unstable();
            Fault::Partition { side, ms: rng.gen_range(300..3_000) }
        });
        draw(swarm.one_way_per_min, &mut |rng| {
            let from = rng.gen_range(1..=n);
            let to = 1 + (from - 1 + rng.gen_range(1..n)) % n;
            Fault::OneWay { from, to, ms: rng.gen_range(300..3_000) }
        });
        draw(swarm.disk_errors_per_min, &mut |rng| Fault::DiskErrors {
            target: Target::Node(rng.gen_range(1..=n)),
            ms: rng.gen_range(200..2_000),
        });
        draw(swarm.block_flip_per_min, &mut |rng| Fault::FlipBlock { target: Target::Node(rng.gen_range(1..=n)) });
        draw(swarm.log_flip_per_min, &mut |rng| Fault::FlipLog { target: target(rng, leader_ppm) });
        if swarm.damaged_voter && n >= 3 && end_ms > start_ms + 1_500 {
            // Once per run: follower A is cut off and falls behind while the leader commits
            // with follower B; then a bit flips in B's log, far enough back that later
            // records claimed those commits (so B knows it is damaged), and the leader
            // crashes at once. When A comes back only B's vote can elect it, and B must not
            // give it: B's log lost committed entries that A never had.
            let at_ms = rng.gen_range(start_ms..end_ms - 1_500);
            let stream = rng.gen_range(0..streams);
            let lagging = rng.gen_range(0..2);
            let isolate = Fault::Isolate { target: Target::Follower(stream, lagging), ms: 1_500 };
            events.push(Event { at_ms, fault: isolate });
            // Same time, in this order (the sort below is stable): the damaged node restarts
            // and the leader crashes before any message can reach it.
            let flip = Fault::FlipOldLog { target: Target::Follower(stream, 1 - lagging) };
            events.push(Event { at_ms: at_ms + 700, fault: flip });
            let crash = Fault::Crash { target: Target::Leader(stream), down_ms: 2_000, mode: swarm.crash_mode };
            events.push(Event { at_ms: at_ms + 700, fault: crash });
        }
        if swarm.rolling_restarts {
            let slots = 2 * n;
            for k in 0..slots {
                let at_ms = start_ms + (end_ms - start_ms) * k / slots;
                events.push(Event { at_ms, fault: Fault::Restart { target: Target::Node(1 + k % n) } });
            }
        }
        if swarm.budget == Budget::Beyond {
            // A majority down at once, twice: the cluster must refuse writes, not diverge.
            for k in 0..2u64 {
                let at_ms = start_ms + (end_ms - start_ms) * (k + 1) / 3;
                let majority = swarm.minority() as u64 + 1;
                let first = rng.gen_range(1..=n);
                for j in 0..majority {
                    let node = 1 + (first - 1 + j) % n;
                    events.push(Event {
                        at_ms: at_ms + j,
                        fault: Fault::Crash { target: Target::Node(node), down_ms: 2_500, mode: swarm.crash_mode },
                    });
                }
            }
        }
        events.sort_by_key(|e| e.at_ms);
        Schedule { events }
    }

    /// Parses the file format (header lines are returned separately by [`parse_header`]).
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let mut events = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() || !line.starts_with("at ") {
                continue;
            }
            if events.len() >= EVENTS_MAX {
                return Err(format!("more than {EVENTS_MAX} events"));
            }
            let event = parse_event(line).map_err(|e| format!("line {}: {e}: {raw:?}", i + 1))?;
            events.push(event);
        }
        events.sort_by_key(|e: &Event| e.at_ms);
        Ok(Schedule { events })
    }
}

/// The `scenario`, `seed` and `bug` header lines of a schedule file.
pub fn parse_header(text: &str) -> (Option<String>, Option<u64>, Option<String>) {
    let (mut scenario, mut seed, mut bug) = (None, None, None);
    for line in text.lines().map(|l| l.split('#').next().unwrap_or("").trim()) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("scenario"), Some(v)) => scenario = Some(v.to_string()),
            (Some("seed"), Some(v)) => seed = v.parse().ok(),
            (Some("bug"), Some(v)) if v != "none" => bug = Some(v.to_string()),
            _ => {}
        }
    }
    (scenario, seed, bug)
}

fn parse_ms(word: Option<&str>) -> Result<u64, String> {
    let w = word.ok_or("missing duration")?;
    w.strip_suffix("ms")
        .ok_or_else(|| format!("{w:?}: durations end in ms"))?
        .parse()
        .map_err(|e| format!("{w:?}: {e}"))
}

fn parse_node(word: &str) -> Result<u64, String> {
    let n: u64 = word
        .strip_prefix('n')
        .ok_or_else(|| format!("{word:?}: nodes are nK"))?
        .parse()
        .map_err(|e| format!("{word:?}: {e}"))?;
    if !(1..=crate::cluster::swarm::NODES_MAX as u64).contains(&n) {
        return Err(format!("{word:?}: no such node"));
    }
    Ok(n)
}

fn parse_target(word: Option<&str>) -> Result<Target, String> {
    let w = word.ok_or("missing target")?;
    let number = |s: &str| s.parse::<usize>().map_err(|e| format!("{w:?}: {e}"));
    if let Some(s) = w.strip_prefix("leader:") {
        return Ok(Target::Leader(number(s)?));
    }
    if let Some(rest) = w.strip_prefix("follower:") {
        let (s, k) = rest.split_once(':').ok_or_else(|| format!("{w:?}: a follower is follower:S:K"))?;
        return Ok(Target::Follower(number(s)?, number(k)?));
    }
    parse_node(w).map(Target::Node)
}

fn expect(word: Option<&str>, want: &str) -> Result<(), String> {
    match word {
        Some(w) if w == want => Ok(()),
        other => Err(format!("expected {want:?}, found {other:?}")),
    }
}

fn parse_event(line: &str) -> Result<Event, String> {
    let mut w = line.split_whitespace();
    expect(w.next(), "at")?;
    let at_ms = parse_ms(w.next())?;
    let kind = w.next().ok_or("missing fault")?;
    let fault = match kind {
        "crash" => {
            let target = parse_target(w.next())?;
            expect(w.next(), "down")?;
            let down_ms = parse_ms(w.next())?;
            let mode = match w.next() {
                None => None,
                Some("mode") => {
                    let name = w.next().ok_or("missing crash mode")?;
                    Some(
                        CrashMode::ALL
                            .into_iter()
                            .find(|m| m.name() == name)
                            .ok_or_else(|| format!("unknown crash mode {name:?}"))?,
                    )
                }
                Some(other) => return Err(format!("unexpected {other:?}")),
            };
            Fault::Crash { target, down_ms, mode }
        }
        "restart" => Fault::Restart { target: parse_target(w.next())? },
        "pause" | "isolate" | "disk-errors" => {
            let target = parse_target(w.next())?;
            expect(w.next(), "for")?;
            let ms = parse_ms(w.next())?;
            match kind {
                "pause" => Fault::Pause { target, ms },
                "isolate" => Fault::Isolate { target, ms },
                _ => Fault::DiskErrors { target, ms },
            }
        }
        "partition" => {
            let side = w.next().ok_or("missing nodes")?.split(',').map(parse_node).collect::<Result<Vec<_>, _>>()?;
            expect(w.next(), "for")?;
            Fault::Partition { side, ms: parse_ms(w.next())? }
        }
        "one-way" => {
            let link = w.next().ok_or("missing link")?;
            let (a, b) = link.split_once("->").ok_or("a link is nA->nB")?;
            let (from, to) = (parse_node(a)?, parse_node(b)?);
            expect(w.next(), "for")?;
            Fault::OneWay { from, to, ms: parse_ms(w.next())? }
        }
        "flip-block" => Fault::FlipBlock { target: parse_target(w.next())? },
        "flip-log" => Fault::FlipLog { target: parse_target(w.next())? },
        "flip-old-log" => Fault::FlipOldLog { target: parse_target(w.next())? },
        other => return Err(format!("unknown fault {other:?}")),
    };
    if let Some(extra) = w.next() {
        return Err(format!("unexpected {extra:?}"));
    }
    Ok(Event { at_ms, fault })
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Node(n) => write!(f, "n{n}"),
            Target::Leader(s) => write!(f, "leader:{s}"),
            Target::Follower(s, k) => write!(f, "follower:{s}:{k}"),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Crash { target, down_ms, mode } => {
                write!(f, "crash {target} down {down_ms}ms")?;
                if let Some(m) = mode {
                    write!(f, " mode {}", m.name())?;
                }
                Ok(())
            }
            Fault::Restart { target } => write!(f, "restart {target}"),
            Fault::Pause { target, ms } => write!(f, "pause {target} for {ms}ms"),
            Fault::Isolate { target, ms } => write!(f, "isolate {target} for {ms}ms"),
            Fault::Partition { side, ms } => {
                let side: Vec<String> = side.iter().map(|n| format!("n{n}")).collect();
                write!(f, "partition {} for {ms}ms", side.join(","))
            }
            Fault::OneWay { from, to, ms } => write!(f, "one-way n{from}->n{to} for {ms}ms"),
            Fault::DiskErrors { target, ms } => write!(f, "disk-errors {target} for {ms}ms"),
            Fault::FlipBlock { target } => write!(f, "flip-block {target}"),
            Fault::FlipLog { target } => write!(f, "flip-log {target}"),
            Fault::FlipOldLog { target } => write!(f, "flip-old-log {target}"),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.events {
            writeln!(f, "at {}ms {}", e.at_ms, e.fault)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_schedules_round_trip_through_the_file_format() {
        for seed in 0..50 {
            let mut swarm = Swarm::from_seed(seed);
            if seed % 5 == 0 {
                swarm.budget = Budget::Beyond;
                swarm.crash_mode = Some(CrashMode::KeepSubset);
                swarm.damaged_voter = true;
            }
            let schedule = Schedule::generate(&swarm);
            let text = schedule.to_string();
            assert_eq!(Schedule::parse(&text).unwrap(), schedule, "seed {seed}:\n{text}");
        }
    }

    #[test]
    fn kinds_lists_exactly_the_kind_of_every_fault() {
        let t = Target::Node(1);
        let kinds: Vec<&str> = [
            Fault::Crash { target: t, down_ms: 1, mode: None },
            Fault::Restart { target: t },
            Fault::Pause { target: t, ms: 1 },
            Fault::Isolate { target: t, ms: 1 },
            Fault::Partition { side: vec![1], ms: 1 },
            Fault::OneWay { from: 1, to: 2, ms: 1 },
            Fault::DiskErrors { target: t, ms: 1 },
            Fault::FlipBlock { target: t },
            Fault::FlipLog { target: t },
            Fault::FlipOldLog { target: t },
        ]
        .iter()
        .map(Fault::kind)
        .collect();
        assert_eq!(kinds, Fault::KINDS);
    }

    #[test]
    fn bad_lines_are_refused_with_their_line_number() {
        for (text, want) in [
            ("at 5ms crash n9 down 3ms", "no such node"),
            ("at 5 crash n1 down 3ms", "durations end in ms"),
            ("at 5ms explode n1", "unknown fault"),
            ("at 5ms crash n1 down 3ms mode gentle", "unknown crash mode"),
            ("at 5ms one-way n1 for 3ms", "nA->nB"),
            ("at 5ms pause n1 for 3ms extra", "unexpected"),
        ] {
            let err = Schedule::parse(&format!("# c\n{text}\n")).unwrap_err();
            assert!(err.starts_with("line 2:") && err.contains(want), "{text}: {err}");
        }
        assert!(Schedule::parse("at 5ms isolate follower:1 for 3ms").unwrap_err().contains("follower:S:K"));
        let text = "at 5ms flip-old-log follower:1:0\n";
        assert_eq!(Schedule::parse(text).unwrap().to_string(), text);
        let text = "scenario swarm\nseed 7\nbug none\nat 10ms restart leader:0 # roll\n";
        assert_eq!(parse_header(text), (Some("swarm".into()), Some(7), None));
        assert_eq!(Schedule::parse(text).unwrap().events[0].fault, Fault::Restart { target: Target::Leader(0) });
    }
}
