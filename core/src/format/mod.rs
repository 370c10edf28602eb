//! On-disk formats, as pure encode/decode functions with no I/O, so each can be fuzzed and
//! golden-tested alone. docs/formats.md documents every byte next to the golden tests here.
//!
//! Every decoder validates lengths against hard bounds before it allocates, and returns a
//! [`FormatError`] for anything malformed; none panics on any input.

pub mod block;
pub mod fnv;
mod le;
pub mod raftlog;
pub mod state;

use std::fmt;

/// CRC-32C (Castagnoli) of `bytes`. Chosen because it detects every burst error of up to
/// 32 bits (so every single-bit flip) and is hardware-accelerated on x86-64 and aarch64.
pub fn checksum(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// Why bytes do not decode. The caller adds where they came from (file, offset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// Fewer bytes than the format's fixed part needs.
    Truncated {
        needed_bytes: u64,
        available_bytes: u64,
    },
    /// A length field below the minimum for its structure (zeros read as length 0 land here).
    LengthTooSmall {
        declared_bytes: u64,
        min_bytes: u64,
    },
    /// A length field beyond the format's hard bound.
    LengthTooLarge {
        declared_bytes: u64,
        max_bytes: u64,
    },
    /// The declared total disagrees with the sum of the parts.
    LengthMismatch {
        declared_bytes: u64,
        parts_bytes: u64,
    },
    BadMagic,
    UnsupportedVersion {
        version: u16,
    },
    BadChecksum {
        stored: u32,
        computed: u32,
    },
    /// A field holds a value the format does not allow.
    BadField {
        field: &'static str,
        value: u64,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Truncated { needed_bytes, available_bytes } => {
                write!(f, "truncated: need {needed_bytes} bytes, have {available_bytes}")
            }
            FormatError::LengthTooSmall { declared_bytes, min_bytes } => {
                write!(f, "length {declared_bytes} below minimum {min_bytes}")
            }
            FormatError::LengthTooLarge { declared_bytes, max_bytes } => {
                write!(f, "length {declared_bytes} above maximum {max_bytes}")
            }
            FormatError::LengthMismatch { declared_bytes, parts_bytes } => {
                write!(f, "declared length {declared_bytes} but parts add up to {parts_bytes}")
            }
            FormatError::BadMagic => write!(f, "bad magic"),
            FormatError::UnsupportedVersion { version } => {
                write!(f, "unsupported format version {version}")
            }
            FormatError::BadChecksum { stored, computed } => {
                write!(f, "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            FormatError::BadField { field, value } => write!(f, "invalid {field}: {value}"),
        }
    }
}

impl std::error::Error for FormatError {}

/// Lowercase hex of `bytes`, for golden tests and diagnostics.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}
