//! Damaged archives, made on purpose: what the simulator's hostile-archive workload and the
//! archive fuzz target feed the reader. An attacker who edits an archive can also recompute
//! its checksums, so [`damage`] re-frames what it changed (the end marker's CRC-32C, the
//! tar headers, the S2 chunks' CRCs): only the reader's own bounds and order checks stand
//! between the damage and the restore. The reader must refuse the result or read exactly
//! what the intact archive holds; never panic, never read other messages.

use super::{EndMarker, CHUNK_PREFIX, END_MEMBER, RECORD_HEADER_BYTES};
use std::io::{Read, Write};

/// Largest archive `damage` unpacks (it holds it whole; simulator archives are small).
pub const DAMAGE_INPUT_BYTES_MAX: usize = 64 * 1024 * 1024;

/// A damaged copy of `archive` chosen by `pick` (any number; the simulator draws it from the
/// seed), with a line saying what was done. `None` if `archive` is not a readable archive
/// or is larger than `DAMAGE_INPUT_BYTES_MAX`.
pub fn damage(archive: &[u8], pick: u64) -> Option<(String, Vec<u8>)> {
    let mut members = unpack(archive)?;
    let r = pick >> 8;
    let what = match pick % 4 {
        // A record's length, re-framed: the damage the bounds must catch on their own.
        0 | 1 => {
            let chunks: Vec<usize> = (0..members.len()).filter(|&i| members[i].0.starts_with(CHUNK_PREFIX)).collect();
            let &m = chunks.get(r as usize % chunks.len().max(1))?;
            let what = damage_record_length(&members[m].0.clone(), &mut members[m].1, r / 7)?;
            fix_end_crc(&mut members);
            what
        }
        // The compressed bytes cut short.
        2 => {
            let at = (r % archive.len().max(1) as u64) as usize;
            return Some((format!("cut at byte {at} of {}", archive.len()), archive[..at].to_vec()));
        }
        // One byte of the tar stream changed (headers and padding included), re-compressed
        // but not re-checksummed: the end marker's CRC or a tar check must notice.
        _ => {
            let tar = pack_tar(&members);
            let at = (r % tar.len() as u64) as usize;
            let mut tar = tar;
            let mask = ((r >> 32) as u8) | 1;
            tar[at] ^= mask;
            return Some((format!("tar byte {at} xor {mask:#04x}"), compress(&tar)));
        }
    };
    Some((what, compress(&pack_tar(&members))))
}

/// Sets one length field of one record of the chunk `data` to a value chosen by `r`: past
/// the chunk's end (by a little or a lot), or shorter.
fn damage_record_length(name: &str, data: &mut [u8], r: u64) -> Option<String> {
    // The record starts: walk the (intact) chunk.
    let mut starts = Vec::new();
    let mut at = 0usize;
    while at + RECORD_HEADER_BYTES <= data.len() {
        starts.push(at);
        let subject = u16::from_le_bytes([data[at + 16], data[at + 17]]) as usize;
        let headers = u32::from_le_bytes(data[at + 18..at + 22].try_into().ok()?) as usize;
        let payload = u32::from_le_bytes(data[at + 22..at + 26].try_into().ok()?) as usize;
        at += RECORD_HEADER_BYTES + subject + headers + payload;
    }
    let &start = starts.get(r as usize % starts.len().max(1))?;
    let rest = data.len() - start - RECORD_HEADER_BYTES;
    let (field, offset) = match (r >> 3) % 3 {
        0 => ("subject", 16),
        1 => ("headers", 18),
        _ => ("payload", 22),
    };
    let value = match (r >> 5) % 3 {
        0 => rest as u64 + 1 + (r >> 8) % 64,
        1 => rest as u64 + 1 + (r >> 8) % (1 << 20),
        _ => (r >> 8) % (rest as u64 + 1),
    };
    if field == "subject" {
        data[start + offset..start + offset + 2].copy_from_slice(&(value.min(u16::MAX as u64) as u16).to_le_bytes());
    } else {
        data[start + offset..start + offset + 4].copy_from_slice(&(value.min(u32::MAX as u64) as u32).to_le_bytes());
    }
    Some(format!("{name}: the {field} length of the record at {start} set to {value}"))
}

/// Recomputes `end.json`'s CRC over the members before it, as a forger would.
fn fix_end_crc(members: &mut [(String, Vec<u8>)]) {
    let Some(end_at) = members.iter().position(|(n, _)| n == END_MEMBER) else { return };
    let Ok(mut end) = serde_json::from_slice::<EndMarker>(&members[end_at].1) else { return };
    end.crc32c = members[..end_at].iter().fold(0, |crc, (_, d)| crc32c::crc32c_append(crc, d));
    members[end_at].1 = serde_json::to_vec(&end).expect("an end marker serializes");
}

fn unpack(archive: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut tar = Vec::new();
    minlz::Reader::new(archive).take(DAMAGE_INPUT_BYTES_MAX as u64 + 1).read_to_end(&mut tar).ok()?;
    if tar.len() > DAMAGE_INPUT_BYTES_MAX {
        return None;
    }
    let mut out = Vec::new();
    let mut a = tar::Archive::new(&tar[..]);
    for entry in a.entries().ok()?.raw(true) {
        let mut entry = entry.ok()?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).ok()?;
        out.push((name, data));
    }
    Some(out)
}

/// The members as `ArchiveWriter` frames them.
fn pack_tar(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, &data[..]).expect("writing to memory");
    }
    tar.into_inner().expect("writing to memory")
}

fn compress(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = minlz::Writer::new(&mut out);
    w.write_all(data).expect("writing to memory");
    w.flush().expect("writing to memory");
    drop(w);
    out
}
