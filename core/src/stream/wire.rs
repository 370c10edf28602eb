//! Bounds-checked little-endian reading for the stream's formats (entries, snapshots,
//! catch-up messages). Every read checks the remaining length first and returns
//! `FormatError::Truncated` instead of panicking.

use crate::format::FormatError;

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if n > self.remaining() {
            return Err(FormatError::Truncated {
                needed_bytes: self.at as u64 + n as u64,
                available_bytes: self.bytes.len() as u64,
            });
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, FormatError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A field that must be zero (reserved for later versions).
    pub fn reserved(&mut self, n: usize, field: &'static str) -> Result<(), FormatError> {
        let bytes = self.take(n)?;
        match bytes.iter().position(|&b| b != 0) {
            None => Ok(()),
            Some(at) => Err(FormatError::BadField { field, value: u64::from(bytes[at]) }),
        }
    }

    /// Succeeds only if every byte was consumed: trailing bytes are an error, not ignored.
    pub fn finish(self) -> Result<(), FormatError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(FormatError::LengthMismatch { declared_bytes: self.at as u64, parts_bytes: self.bytes.len() as u64 })
        }
    }
}

/// A sequence number as the store allows it: 1..=SEQ_MAX.
pub(crate) fn check_seq(field: &'static str, seq: u64) -> Result<u64, FormatError> {
    if seq == 0 || seq > crate::format::block::SEQ_MAX {
        return Err(FormatError::BadField { field, value: seq });
    }
    Ok(seq)
}
