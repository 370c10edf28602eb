//! Run traces: one line per event, and a hash over them that identifies a run.
//!
//! The hash is FNV-1a 64 (`sluice_core::format::fnv`) over the lines and their separators:
//! simple, stable across platforms and Rust versions (unlike `DefaultHasher`), and fast
//! enough for millions of lines. Two runs with the same hash produced the same trace.

use sluice_core::format::fnv::Fnv64;
use std::fmt;

/// A trace being recorded. Keeps the lines only if asked to (for `--trace FILE` or to report
/// where two runs diverge); the hash is always kept.
#[derive(Clone, Debug)]
pub struct Trace {
    hash: Fnv64,
    lines: Option<Vec<String>>,
    count: u64,
}

/// Feeds formatted text straight into the hash.
struct HashWriter<'a>(&'a mut Fnv64);

impl fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

impl Trace {
    pub fn new(keep_lines: bool) -> Self {
        Trace { hash: Fnv64::new(), lines: keep_lines.then(Vec::new), count: 0 }
    }

    pub fn record(&mut self, line: impl fmt::Display) {
        self.count += 1;
        match &mut self.lines {
            Some(lines) => {
                let line = line.to_string();
                self.hash.write(line.as_bytes());
                lines.push(line);
            }
            // FNV is a stream hash: feeding the pieces as they are formatted gives the hash
            // of the whole line, without building it (most of a run's lines are never kept).
            None => {
                use fmt::Write;
                write!(HashWriter(&mut self.hash), "{line}").expect("hashing cannot fail");
            }
        }
        self.hash.write(b"\n");
    }

    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    /// The hash as the 16 hex digits the CLI prints.
    pub fn hash_hex(&self) -> String {
        format!("{:016x}", self.hash.finish())
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn lines(&self) -> Option<&[String]> {
        self.lines.as_deref()
    }
}

/// The first line where two recorded traces differ, as (line number, left, right).
pub fn first_difference<'a>(
    left: &'a [String],
    right: &'a [String],
) -> Option<(usize, Option<&'a str>, Option<&'a str>)> {
    let n = left.len().max(right.len());
    (0..n).find_map(|i| {
        let (l, r) = (left.get(i).map(String::as_str), right.get(i).map(String::as_str));
        (l != r).then_some((i + 1, l, r))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_order_sensitive() {
        let mut a = Trace::new(true);
        a.record("x");
        a.record("y");
        // FNV-1a of "x\ny\n", fixed so a change of hash function is noticed.
        assert_eq!(a.hash_hex(), "811b9a5297fa6da0");
        let mut b = Trace::new(false);
        b.record("y");
        b.record("x");
        assert_ne!(a.hash(), b.hash());
        let left = vec!["x".to_string(), "y".to_string()];
        let right = vec!["x".to_string(), "z".to_string()];
        assert_eq!(first_difference(&left, &right), Some((2, Some("y"), Some("z"))));
        assert_eq!(first_difference(&left, &left), None);
    }

    #[test]
    fn a_trace_that_keeps_no_lines_hashes_the_same_bytes() {
        let mut kept = Trace::new(true);
        let mut streamed = Trace::new(false);
        for t in [&mut kept, &mut streamed] {
            t.record("x");
            t.record("y");
        }
        assert_eq!(streamed.hash_hex(), "811b9a5297fa6da0");
        // Formatted in pieces, as `World::log` does.
        for t in [&mut kept, &mut streamed] {
            t.record(format_args!("{{\"t\":{},\"ev\":\"{}\",{}}}", 10, "send", format_args!("\"to\":{}", 2)));
        }
        assert_eq!(streamed.hash(), kept.hash());
        assert_eq!(kept.lines().unwrap()[2], r#"{"t":10,"ev":"send","to":2}"#);
        assert_eq!((streamed.len(), streamed.lines()), (3, None));
    }
}
