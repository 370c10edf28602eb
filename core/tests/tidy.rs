//! Tidy: the code that must be deterministic does not read the world (STYLE.md rule 2,
//! DESIGN §2). Runs in every `cargo test`, without clippy.
//!
//! Scanned: core (except the production binding `core/src/os/` and the `sluice` binary),
//! faultfs and sim. Forbidden there: the OS clock, OS randomness, default-hasher maps and
//! sets (their iteration order is random), threads, `std::fs` and `std::net`. Test-only files
//! and the simulator's per-seed thread harness are listed below with the reason they may.
//! Comments are ignored, so a rule can be named in prose.

use std::path::{Path, PathBuf};

const FORBIDDEN: &[(&str, &str)] = &[
    ("Instant::now", "use the Clock from the environment"),
    ("SystemTime::now", "use the Clock from the environment"),
    ("thread_rng", "pass a seeded RNG"),
    ("rand::random", "pass a seeded RNG"),
    ("OsRng", "pass a seeded RNG"),
    ("HashMap", "iteration order is random: use BTreeMap"),
    ("HashSet", "iteration order is random: use BTreeSet"),
    ("RandomState", "iteration order is random"),
    ("std::fs", "use the Disk trait"),
    ("std::net", "use the Net trait"),
    ("thread::spawn", "use Env::spawn_background"),
    ("thread::Builder", "use Env::spawn_background"),
    ("tokio::", "only the production binding may use tokio"),
];

/// Files exempt from a rule, and why.
const EXEMPT: &[(&str, &str, &str)] = &[
    ("core/src/store/tests.rs", "std::fs", "test-only: corrupts block files of the production disk on purpose"),
    ("core/src/testutil.rs", "std::fs", "test-only: makes temporary directories"),
    ("sim/src/runtime.rs", "thread::Builder", "the harness runs each seed's runtime on a fresh thread"),
    ("sim/src/clock.rs", "Instant::now", "madsim's simulated clock; SimClock::new asserts it runs inside madsim"),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("core lives in the workspace").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn deterministic_code_does_not_read_the_world() {
    let root = workspace();
    let mut files = Vec::new();
    for dir in ["core/src", "faultfs/src", "sim/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    let skip_dirs = [root.join("core/src/os"), root.join("core/src/bin")];
    let mut violations = Vec::new();
    let mut scanned = 0;
    for file in files.iter().filter(|f| !skip_dirs.iter().any(|d| f.starts_with(d))) {
        scanned += 1;
        let rel = file.strip_prefix(&root).unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (pattern, why) in FORBIDDEN {
                let exempt = EXEMPT.iter().any(|(f, p, _)| *f == rel && p == pattern);
                if code.contains(pattern) && !exempt {
                    violations.push(format!("{rel}:{}: `{pattern}`: {why}", number + 1));
                }
            }
        }
    }
    assert!(scanned > 20, "tidy scanned only {scanned} files: wrong root?");
    assert!(violations.is_empty(), "forbidden APIs in deterministic code:\n{}", violations.join("\n"));
}

#[test]
fn exemptions_are_still_needed() {
    let root = workspace();
    for (file, pattern, why) in EXEMPT {
        let text = std::fs::read_to_string(root.join(file)).unwrap_or_default();
        let used = text.lines().any(|l| l.split("//").next().unwrap_or("").contains(pattern));
        assert!(used, "{file} no longer uses `{pattern}`; drop its exemption ({why})");
    }
}

#[test]
fn the_production_binding_is_the_only_core_module_that_opts_out_of_the_lint() {
    // clippy.toml forbids the same APIs; `allow(clippy::disallowed_*)` marks an opt-out.
    let root = workspace();
    let mut files = Vec::new();
    rust_files(&root.join("core/src"), &mut files);
    let allowed = [root.join("core/src/os"), root.join("core/src/store/tests.rs"), root.join("core/src/testutil.rs")];
    for file in files.iter().filter(|f| !allowed.iter().any(|a| f.starts_with(a))) {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(!text.contains("clippy::disallowed"), "{} opts out of the disallowed-API lint", file.display());
    }
}

/// The names in `coverage::MARKS` and `env::BUGGIFY_SITES` are exactly those the code uses:
/// a listed name nothing uses would show as "never reached" forever, and a used name not
/// listed would never show at all (debug builds assert the second, at the call).
#[test]
fn coverage_lists_match_the_code() {
    let root = workspace();
    let mut files = Vec::new();
    rust_files(&root.join("core/src"), &mut files);
    let mut marks = std::collections::BTreeSet::new();
    let mut sites = std::collections::BTreeSet::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for (pattern, found) in [("coverage::mark(\"", &mut marks), ("buggify.fires(\"", &mut sites)] {
            for piece in text.split(pattern).skip(1) {
                found.insert(piece.split('"').next().unwrap().to_string());
            }
        }
    }
    let listed = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<std::collections::BTreeSet<_>>();
    // The coverage module's own tests mark names that exist elsewhere too.
    assert_eq!(marks, listed(sluice_core::coverage::MARKS), "coverage marks used vs MARKS");
    assert_eq!(sites, listed(sluice_core::env::BUGGIFY_SITES), "BUGGIFY sites used vs BUGGIFY_SITES");
}
