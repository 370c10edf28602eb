//! Stream configuration, and NATS-style subject validation and matching.
//!
//! Subjects are tokens separated by `.`; a token is non-empty and holds no whitespace or
//! control byte. In a filter (a stream's subjects), a token that is exactly `*` matches any
//! one token, and a last token that is exactly `>` matches one or more tokens. Anywhere else
//! `*` and `>` are ordinary bytes, as in NATS. A published subject is literal (no wildcard
//! tokens).

use super::error::StreamError;
use crate::store::{StoreConfig, SUBJECT_BYTES_MAX};
use std::time::Duration;

/// Longest stream name, in bytes (NATS: 255).
pub const STREAM_NAME_BYTES_MAX: usize = 255;
/// Most subject filters one stream may list.
pub const STREAM_SUBJECTS_MAX: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamConfig {
    /// 1 to `STREAM_NAME_BYTES_MAX` bytes; no whitespace, control characters, `.`, `*`,
    /// `>`, `/` or `\` (it names directories and appears in subjects).
    pub name: String,
    /// Subject filters whose subjects the stream stores: 1 to `STREAM_SUBJECTS_MAX`, each
    /// valid, none repeated.
    pub subjects: Vec<String>,
    /// The store's configuration. Its `limits.max_age` is applied by the stream when the
    /// leader's `Expire` entries are applied, never by the store on its own (see
    /// `StreamMachine::open`).
    pub store: StoreConfig,
    /// Publishes with a message id already stored within this window (on the leader-chosen
    /// timestamps) are not stored again. Zero turns de-duplication off.
    pub dedupe_window: Duration,
}

impl StreamConfig {
    /// A stream with the default store (sync always, no limits) and a two-minute dedupe
    /// window (NATS's default).
    pub fn new(name: impl Into<String>, subjects: impl IntoIterator<Item = impl Into<String>>) -> StreamConfig {
        StreamConfig {
            name: name.into(),
            subjects: subjects.into_iter().map(Into::into).collect(),
            store: StoreConfig::default(),
            dedupe_window: Duration::from_secs(120),
        }
    }

    pub fn validate(&self) -> Result<(), StreamError> {
        let bad = |reason: String| Err(StreamError::InvalidConfig { reason });
        if let Err(reason) = validate_stream_name(&self.name) {
            return bad(format!("stream name {:?}: {reason}", self.name));
        }
        if self.subjects.is_empty() {
            return bad("a stream needs at least one subject".into());
        }
        if self.subjects.len() > STREAM_SUBJECTS_MAX {
            return bad(format!("{} subjects, above {STREAM_SUBJECTS_MAX}", self.subjects.len()));
        }
        for (i, subject) in self.subjects.iter().enumerate() {
            if let Err(reason) = validate_subject(subject.as_bytes(), true) {
                return bad(format!("subject {subject:?}: {reason}"));
            }
            if self.subjects[..i].contains(subject) {
                return bad(format!("subject {subject:?} listed twice"));
            }
        }
        if i64::try_from(self.dedupe_window.as_nanos()).is_err() {
            return bad("dedupe_window does not fit i64 nanoseconds".into());
        }
        self.store.validate().map_err(|e| StreamError::InvalidConfig { reason: format!("store: {e}") })
    }

    /// True if the stream stores messages published on `subject` (a literal subject).
    pub fn accepts(&self, subject: &[u8]) -> bool {
        self.subjects.iter().any(|filter| subject_matches(filter, subject))
    }
}

pub fn validate_stream_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > STREAM_NAME_BYTES_MAX {
        return Err("longer than STREAM_NAME_BYTES_MAX");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')) {
        return Err("contains whitespace, a control character, or one of . * > / \\");
    }
    Ok(())
}

/// Checks `subject` as a filter (`wildcards`) or as a literal subject to publish on.
pub fn validate_subject(subject: &[u8], wildcards: bool) -> Result<(), &'static str> {
    if subject.is_empty() {
        return Err("empty");
    }
    if subject.len() > SUBJECT_BYTES_MAX {
        return Err("longer than SUBJECT_BYTES_MAX");
    }
    let mut tokens = subject.split(|&b| b == b'.').peekable();
    while let Some(token) = tokens.next() {
        if token.is_empty() {
            return Err("empty token");
        }
        if token.iter().any(|&b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err("whitespace or control byte");
        }
        let is_wildcard = token == b"*" || token == b">";
        if is_wildcard && !wildcards {
            return Err("wildcard in a literal subject");
        }
        if token == b">" && tokens.peek().is_some() {
            return Err("'>' is not the last token");
        }
    }
    Ok(())
}

/// True if the literal `subject` matches `filter` (NATS wildcards `*` and `>`). Neither is
/// validated here: an invalid filter or subject simply matches by the same token rules.
pub fn subject_matches(filter: impl AsRef<[u8]>, subject: impl AsRef<[u8]>) -> bool {
    let mut filter = filter.as_ref().split(|&b| b == b'.');
    let mut subject = subject.as_ref().split(|&b| b == b'.');
    loop {
        match (filter.next(), subject.next()) {
            (None, None) => return true,
            (Some(b">"), Some(_)) => return filter.next().is_none(),
            (Some(f), Some(s)) if f == b"*" || f == s => continue,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> StreamConfig {
        StreamConfig {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into(), "audit.*.log".into()],
            store: StoreConfig::default(),
            dedupe_window: Duration::from_secs(120),
        }
    }

    #[test]
    fn matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("a.b", "a.b", true),
            ("a.b", "a.c", false),
            ("a.*", "a.b", true),
            ("a.*", "a.b.c", false),
            ("a.*", "a", false),
            ("a.>", "a.b", true),
            ("a.>", "a.b.c", true),
            ("a.>", "a", false),
            (">", "a", true),
            ("*", "a.b", false),
            ("*.b.*", "x.b.y", true),
            ("a.b*", "a.bc", false),
            ("a.b*", "a.b*", true),
        ];
        for &(filter, subject, expected) in cases {
            assert_eq!(subject_matches(filter, subject), expected, "{filter} vs {subject}");
        }
        let c = config();
        assert!(c.accepts(b"orders.eu.1"));
        assert!(c.accepts(b"audit.x.log"));
        assert!(!c.accepts(b"orders"));
        assert!(!c.accepts(b"audit.x.y.log"));
    }

    #[test]
    fn subject_validation() {
        assert_eq!(validate_subject(b"a.b", false), Ok(()));
        assert_eq!(validate_subject(b"a.*", false), Err("wildcard in a literal subject"));
        assert_eq!(validate_subject(b"a.*", true), Ok(()));
        assert_eq!(validate_subject(b"a.>.b", true), Err("'>' is not the last token"));
        assert_eq!(validate_subject(b"a..b", true), Err("empty token"));
        assert_eq!(validate_subject(b".a", true), Err("empty token"));
        assert_eq!(validate_subject(b"a b", true), Err("whitespace or control byte"));
        assert_eq!(validate_subject(b"", true), Err("empty"));
        assert_eq!(validate_subject(&vec![b'a'; SUBJECT_BYTES_MAX + 1], true), Err("longer than SUBJECT_BYTES_MAX"));
    }

    #[test]
    fn config_validation() {
        assert_eq!(config().validate(), Ok(()));
        for name in ["", "a b", "a.b", "a*", "a>", "a/b", "a\\b", "tab\t"] {
            let mut c = config();
            c.name = name.into();
            assert!(matches!(c.validate(), Err(StreamError::InvalidConfig { .. })), "{name:?}");
        }
        let mut c = config();
        c.name = "x".repeat(STREAM_NAME_BYTES_MAX + 1);
        assert!(c.validate().is_err());
        let mut c = config();
        c.subjects.clear();
        assert!(c.validate().is_err());
        let mut c = config();
        c.subjects.push("orders.>".into());
        assert!(c.validate().is_err());
        let mut c = config();
        c.subjects = vec!["a..b".into()];
        assert!(c.validate().is_err());
        let mut c = config();
        c.dedupe_window = Duration::MAX;
        assert!(c.validate().is_err());
        let mut c = config();
        c.store.block_size_bytes = 1;
        assert!(c.validate().is_err());
    }
}
