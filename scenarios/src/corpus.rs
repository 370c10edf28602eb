//! The regression corpus: seeds that once found a bug, each with a line on what it found,
//! in `scenarios/corpus.txt` (compiled in, so the test command runs them all).
//!
//! Format, one entry per line: `<scenario> <seed> [bug=<name>] [expect=<invariant>] # what
//! it found`. An entry with a bug must fail with it (and pass without it); an entry with
//! `expect` is an open finding the clean build still fails; any other entry must pass.

pub const CORPUS: &str = include_str!("../corpus.txt");

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub scenario: String,
    pub seed: u64,
    pub bug: Option<String>,
    /// An open finding: the invariant the clean build still fails.
    pub expect: Option<String>,
    pub note: String,
    pub line: usize,
}

pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let (body, note) = raw.split_once('#').unwrap_or((raw, ""));
        let body = body.trim();
        if body.is_empty() {
            continue;
        }
        let mut words = body.split_whitespace();
        let scenario = words.next().ok_or_else(|| format!("line {}: no scenario", i + 1))?.to_string();
        let seed = words.next().and_then(|w| w.parse().ok()).ok_or_else(|| format!("line {}: no seed", i + 1))?;
        let (mut bug, mut expect) = (None, None);
        for w in words {
            if let Some(b) = w.strip_prefix("bug=") {
                bug = Some(b.to_string());
            } else if let Some(e) = w.strip_prefix("expect=") {
                expect = Some(e.to_string());
            } else {
                return Err(format!("line {}: expected bug=NAME or expect=INVARIANT, found {w:?}", i + 1));
            }
        }
        if note.trim().is_empty() {
            return Err(format!("line {}: every entry says what it found (# ...)", i + 1));
        }
        out.push(Entry { scenario, seed, bug, expect, note: note.trim().to_string(), line: i + 1 });
    }
    Ok(out)
}
