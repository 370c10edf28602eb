//! Round trips, determinism, and hostile archives: every refusal names its member.

use super::*;
use crate::store::StoredMessage;
use bytes::Bytes;
use proptest::prelude::*;
use std::io::Write;

fn manifest(first_seq: u64, last_seq: u64, msgs: u64) -> Manifest {
    Manifest {
        format: String::new(),
        version: 0,
        config: StreamConfig::new("orders", ["orders.>"]),
        state: ArchivedState { first_seq, last_seq, msgs, bytes: 0 },
        replicas: Some(3),
    }
}

fn message(seq: u64, payload_bytes: usize) -> StoredMessage {
    StoredMessage {
        seq,
        timestamp_ns: 1_700_000_000_000_000_000 + seq as i64,
        subject: Bytes::from(format!("orders.{}", seq % 7)),
        headers: if seq % 3 == 0 { Bytes::from_static(b"NATS/1.0\r\nk: v\r\n\r\n") } else { Bytes::new() },
        payload: Bytes::from(vec![(seq % 251) as u8; payload_bytes]),
    }
}

/// Sequences 5..=1000 with every 10th missing (gaps stay gaps).
fn messages(payload_bytes: usize) -> Vec<StoredMessage> {
    (5..=1000).filter(|s| s % 10 != 0).map(|s| message(s, payload_bytes)).collect()
}

fn write(ms: &[StoredMessage]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = ArchiveWriter::new(&mut out, manifest(5, 1000, ms.len() as u64)).unwrap();
    for m in ms {
        w.push(m).unwrap();
    }
    let end = w.finish().unwrap();
    assert_eq!(end.msgs, ms.len() as u64);
    out
}

fn read(bytes: &[u8]) -> Result<(Manifest, Vec<StoredMessage>, EndMarker), ArchiveError> {
    let mut manifest = None;
    let mut out = Vec::new();
    let end = ArchiveReader::read(bytes, |item| {
        match item {
            ArchiveItem::Manifest(m) => manifest = Some(m),
            ArchiveItem::Consumer(_) => {}
            ArchiveItem::Message(m) => out.push(m),
        }
        Ok(())
    })?;
    Ok((manifest.expect("the manifest comes first"), out, end))
}

/// Two consumers with state, as `Consumers::export` gives them.
fn consumer_exports() -> Vec<Vec<u8>> {
    use crate::stream::consumer::{ConsumerConfig, Consumers};
    let mut cs = Consumers::new();
    let state = crate::store::StreamState { first_seq: 5, last_seq: 1000, msgs: 0, bytes: 0, num_deleted: 0 };
    for name in ["A", "B"] {
        cs.create(ConsumerConfig::new(name), state, 42).unwrap();
    }
    cs.names().map(|n| cs.export(n).unwrap()).collect()
}

#[test]
fn consumers_travel_before_the_messages_and_are_checked() {
    let exports = consumer_exports();
    let ms = messages(10);
    let mut out = Vec::new();
    let mut w = ArchiveWriter::new(&mut out, manifest(5, 1000, ms.len() as u64)).unwrap();
    for c in &exports {
        w.push_consumer(c).unwrap();
    }
    w.push(&ms[0]).unwrap();
    assert!(w.push_consumer(&exports[0]).is_err(), "a consumer after a message");
    for m in &ms[1..] {
        w.push(m).unwrap();
    }
    w.finish().unwrap();
    let mut got = Vec::new();
    let mut msgs = 0;
    ArchiveReader::read(&out[..], |item| {
        match item {
            ArchiveItem::Consumer(c) => {
                assert_eq!(msgs, 0, "consumers come first");
                got.push(c.to_vec());
            }
            ArchiveItem::Message(_) => msgs += 1,
            ArchiveItem::Manifest(_) => {}
        }
        Ok(())
    })
    .unwrap();
    assert_eq!((got, msgs), (exports.clone(), ms.len()));

    // Hostile: a duplicate name, bytes that are not a consumer, one after the messages,
    // and a declared size past the bound; each names the member.
    let m = manifest_json(FORMAT_VERSION);
    let c0 = consumer_member_name(0);
    let c1 = consumer_member_name(1);
    let m0 = chunk_name(0);
    // (members, the member named in the error, a word of the reason)
    type Case<'a> = (Vec<(&'a str, &'a [u8])>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (vec![(MANIFEST_MEMBER, &m), (&c0, &exports[0]), (&c1, &exports[0])], &c1, "exists"),
        (vec![(MANIFEST_MEMBER, &m), (&c0, b"\x05\x00\x00\x00junk")], &c0, "archived consumer"),
        (vec![(MANIFEST_MEMBER, &m), (&m0, b""), (&c0, &exports[0])], &c0, "unexpected member"),
    ];
    for (members, member, needle) in cases {
        let archive = raw_archive(&members);
        match ArchiveReader::read(&archive[..], |_| Ok(())) {
            Err(ArchiveError::Invalid { member: got, reason, .. }) => {
                assert_eq!(got, member, "{reason}");
                assert!(reason.contains(needle), "{member}: {reason}");
            }
            other => panic!("{member}: {other:?}"),
        }
    }
}

/// An archive built member by member, for hostile cases.
fn raw_archive(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, *data).unwrap();
    }
    compress(&tar.into_inner().unwrap())
}

fn compress(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = minlz::Writer::new(&mut out);
    w.write_all(data).unwrap();
    w.flush().unwrap();
    drop(w);
    out
}

fn manifest_json(version: u32) -> Vec<u8> {
    let mut m = manifest(1, 10, 2);
    m.format = FORMAT_NAME.into();
    m.version = version;
    serde_json::to_vec(&m).unwrap()
}

fn record(seq: u64, subject: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&seq.to_le_bytes());
    r.extend_from_slice(&0i64.to_le_bytes());
    r.extend_from_slice(&(subject.len() as u16).to_le_bytes());
    r.extend_from_slice(&0u32.to_le_bytes());
    r.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    r.extend_from_slice(subject);
    r.extend_from_slice(payload);
    r
}

fn invalid(r: Result<(Manifest, Vec<StoredMessage>, EndMarker), ArchiveError>) -> (String, u64, String) {
    match r {
        Err(ArchiveError::Invalid { member, offset, reason }) => (member, offset, reason),
        Err(e) => panic!("expected an invalid archive, got {e}"),
        Ok(_) => panic!("a hostile archive was accepted"),
    }
}

#[test]
fn round_trip_keeps_sequences_gaps_headers_and_timestamps() {
    let ms = messages(100);
    let bytes = write(&ms);
    let (m, back, end) = read(&bytes).unwrap();
    assert_eq!((m.format.as_str(), m.version), (FORMAT_NAME, FORMAT_VERSION));
    assert_eq!(m.config, StreamConfig::new("orders", ["orders.>"]));
    assert_eq!(m.state, ArchivedState { first_seq: 5, last_seq: 1000, msgs: ms.len() as u64, bytes: 0 });
    assert_eq!(back, ms);
    assert_eq!((end.msgs, end.last_seq), (ms.len() as u64, 1000));
}

#[test]
fn large_streams_span_several_chunks_and_the_bytes_are_deterministic() {
    // ~900 messages of 10 KiB: about 9 MiB, so three chunk members.
    let ms = messages(10 * 1024);
    let a = write(&ms);
    assert_eq!(a, write(&ms), "the same stream gives the same archive");
    let mut names = Vec::new();
    let mut tar = tar::Archive::new(minlz::Reader::new(&a[..]));
    for e in tar.entries().unwrap() {
        names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    assert_eq!(names, [MANIFEST_MEMBER, &chunk_name(0), &chunk_name(1), &chunk_name(2), END_MEMBER]);
    assert_eq!(read(&a).unwrap().1, ms);
    assert!(a.len() < 9 * 1024 * 1024 / 10, "repetitive payloads compress: {} bytes", a.len());
}

#[test]
fn an_empty_stream_round_trips() {
    let mut out = Vec::new();
    let w = ArchiveWriter::new(&mut out, manifest(42, 41, 0)).unwrap();
    w.finish().unwrap();
    let (m, back, end) = read(&out).unwrap();
    assert_eq!((m.state.first_seq, m.state.last_seq), (42, 41));
    assert!(back.is_empty());
    assert_eq!(end.msgs, 0);
}

#[test]
fn the_writer_refuses_out_of_order_or_out_of_range_messages() {
    let mut out = Vec::new();
    let mut w = ArchiveWriter::new(&mut out, manifest(5, 10, 3)).unwrap();
    w.push(&message(6, 1)).unwrap();
    assert!(w.push(&message(6, 1)).is_err(), "repeated");
    assert!(w.push(&message(4, 1)).is_err(), "below first");
    assert!(w.push(&message(11, 1)).is_err(), "beyond last");
    assert!(ArchiveWriter::new(Vec::new(), manifest(0, 3, 0)).is_err(), "sequence 0");
}

#[test]
fn every_cut_of_an_archive_is_an_error() {
    let bytes = write(&messages(50));
    for cut in (0..bytes.len()).step_by(97).chain([bytes.len() - 1]) {
        assert!(read(&bytes[..cut]).is_err(), "cut at {cut} of {}", bytes.len());
    }
}

#[test]
fn unknown_versions_and_formats_are_refused_by_name() {
    let good = manifest_json(FORMAT_VERSION);
    let end = serde_json::to_vec(&EndMarker { msgs: 0, last_seq: 10, crc32c: crc32c::crc32c(&good) }).unwrap();
    assert!(read(&raw_archive(&[(MANIFEST_MEMBER, &good), (END_MEMBER, &end)])).is_ok());
    let (member, _, reason) = invalid(read(&raw_archive(&[(MANIFEST_MEMBER, &manifest_json(2))])));
    assert_eq!(member, MANIFEST_MEMBER);
    assert!(reason.contains("unsupported archive version 2"), "{reason}");
    let other = br#"{"format":"nats","version":1}"#;
    let (_, _, reason) = invalid(read(&raw_archive(&[(MANIFEST_MEMBER, other)])));
    assert!(reason.contains("not a sluice stream archive"), "{reason}");
    // Not S2 at all, and S2 around something that is not tar.
    assert!(read(b"this is not an archive").is_err());
    assert!(read(&compress(&[7u8; 4096])).is_err());
}

#[test]
fn lengths_are_checked_before_anything_is_allocated() {
    // A member header that declares 1 TiB.
    let mut h = tar::Header::new_ustar();
    h.set_path(MANIFEST_MEMBER).unwrap();
    h.set_size(1 << 40);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let (member, _, reason) = invalid(read(&compress(h.as_bytes())));
    assert_eq!(member, MANIFEST_MEMBER);
    assert!(reason.contains("exceeds the bound"), "{reason}");
    // A record whose payload length runs past its chunk, and one beyond the message bound.
    let m = manifest_json(FORMAT_VERSION);
    let mut r = record(1, b"orders.a", b"xy");
    r[22..26].copy_from_slice(&1000u32.to_le_bytes());
    let (member, offset, reason) = invalid(read(&raw_archive(&[(MANIFEST_MEMBER, &m), (&chunk_name(0), &r)])));
    assert_eq!((member.as_str(), offset), (chunk_name(0).as_str(), 0));
    assert!(reason.contains("runs past the chunk"), "{reason}");
    r[22..26].copy_from_slice(&u32::MAX.to_le_bytes());
    let (_, _, reason) = invalid(read(&raw_archive(&[(MANIFEST_MEMBER, &m), (&chunk_name(0), &r)])));
    assert!(reason.contains("exceeds"), "{reason}");
}

#[test]
fn sequences_must_increase_within_the_manifest_range() {
    let m = manifest_json(FORMAT_VERSION);
    let mut chunk = record(3, b"orders.a", b"one");
    let second_at = chunk.len() as u64;
    chunk.extend(record(3, b"orders.a", b"two"));
    let (member, offset, reason) = invalid(read(&raw_archive(&[(MANIFEST_MEMBER, &m), (&chunk_name(0), &chunk)])));
    assert_eq!((member.as_str(), offset), (chunk_name(0).as_str(), second_at));
    assert!(reason.contains("sequence 3 after 3"), "{reason}");
    let beyond = record(11, b"orders.a", b"x");
    let (_, _, reason) = invalid(read(&raw_archive(&[(MANIFEST_MEMBER, &m), (&chunk_name(0), &beyond)])));
    assert!(reason.contains("outside 1..=10"), "{reason}");
}

#[test]
fn a_changed_record_fails_the_checksum_and_members_out_of_order_are_refused() {
    let m = manifest_json(FORMAT_VERSION);
    let r = record(2, b"orders.a", b"payload");
    let crc = crc32c::crc32c_append(crc32c::crc32c(&m), &r);
    let end = serde_json::to_vec(&EndMarker { msgs: 1, last_seq: 10, crc32c: crc }).unwrap();
    let ok = raw_archive(&[(MANIFEST_MEMBER, &m), (&chunk_name(0), &r), (END_MEMBER, &end)]);
    assert_eq!(read(&ok).unwrap().1.len(), 1);
    let mut changed = r.clone();
    *changed.last_mut().unwrap() ^= 1;
    let (member, _, reason) =
        invalid(read(&raw_archive(&[(MANIFEST_MEMBER, &m), (&chunk_name(0), &changed), (END_MEMBER, &end)])));
    assert_eq!(member, END_MEMBER);
    assert!(reason.contains("CRC"), "{reason}");
    // Chunks must be numbered from 0 without holes; nothing may follow the end marker.
    let (member, _, _) = invalid(read(&raw_archive(&[(MANIFEST_MEMBER, &m), (&chunk_name(1), &r)])));
    assert_eq!(member, chunk_name(1));
    let (member, _, reason) = invalid(read(&raw_archive(&[
        (MANIFEST_MEMBER, &m),
        (&chunk_name(0), &r),
        (END_MEMBER, &end),
        ("extra", b"x"),
    ])));
    assert_eq!(member, END_MEMBER);
    assert!(reason.contains("followed by extra"), "{reason}");
    // No end marker: a cut archive.
    let (member, _, reason) = invalid(read(&raw_archive(&[(MANIFEST_MEMBER, &m), (&chunk_name(0), &r)])));
    assert_eq!(member, END_MEMBER);
    assert!(reason.contains("cut short"), "{reason}");
}

#[test]
fn a_refusal_from_the_restore_stops_the_read_with_the_member_named() {
    let bytes = write(&messages(10));
    let mut seen = 0;
    let err = ArchiveReader::read(&bytes[..], |item| match item {
        ArchiveItem::Message(m) if m.seq == 101 => Err("over the target's max_msgs".to_string()),
        _ => {
            seen += 1;
            Ok(())
        }
    })
    .unwrap_err();
    assert!(err.to_string().contains("over the target's max_msgs"), "{err}");
    assert!(err.to_string().contains(&chunk_name(0)), "{err}");
    assert!(seen > 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Random damage to a valid archive never panics and is never accepted unchanged
    /// unless the damage left the content identical.
    #[test]
    fn damaged_archives_never_panic(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let ms = messages(20);
        let mut bytes = write(&ms);
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok((_, back, _)) = read(&bytes) {
            prop_assert_eq!(back, ms);
        }
    }
}

/// The forger's damage (checksums recomputed) is refused by the bounds alone, or reads the
/// same archive; the record-length damage reaches the check that a record fits its chunk.
#[test]
fn forged_damage_is_refused_or_reads_the_same() {
    let good = write(&messages(40));
    let (manifest, msgs, end) = read(&good).unwrap();
    let (mut refused, mut past_chunk, mut same) = (0, 0, 0);
    for i in 0..800u64 {
        let pick = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let (what, bad) = hostile::damage(&good, pick).expect("a good archive unpacks");
        match read(&bad) {
            Err(e) => {
                refused += 1;
                past_chunk += usize::from(e.to_string().contains("runs past the chunk's end"));
            }
            Ok((m, got, e)) => {
                assert!(m == manifest && got == msgs && e == end, "{what}: read other content");
                same += 1;
            }
        }
    }
    assert!(refused > 600 && past_chunk > 100, "refused {refused}, past the chunk {past_chunk}, same {same}");
}
