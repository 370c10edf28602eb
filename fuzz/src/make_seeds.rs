//! Writes the seed corpora (fuzz/corpus/<target>/) from valid inputs made by the real
//! encoders, so the fuzzers start from the shapes they must refuse variations of. Run from
//! the repository root: `cargo run --manifest-path fuzz/Cargo.toml --bin make_seeds`.

use bytes::Bytes;
use sluice_core::archive::{ArchiveWriter, ArchivedState, Manifest};
use sluice_core::disk::{Disk, DiskFile, OpenMode};
use sluice_core::node::MetaEntry;
use sluice_core::raft::message::{Body, Message};
use sluice_core::raft::{Entry, EntryKind};
use sluice_core::store::{FileStore, NewMessage, StoreConfig, StoredMessage, StreamState};
use sluice_core::stream::consumer::{ConsumerConfig, Consumers};
use sluice_core::stream::{CatchupChunk, Publish, StreamConfig, StreamEntry};
use sluice_faultfs::FaultFs;
use std::path::Path;

fn put(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    std::fs::write(dir.join(name), bytes).expect("write a seed");
}

fn message(seq: u64) -> StoredMessage {
    StoredMessage {
        seq,
        timestamp_ns: 1_700_000_000_000_000_000 + seq as i64,
        subject: Bytes::from(format!("orders.{}", seq % 3)),
        headers: if seq % 2 == 0 { Bytes::from_static(b"NATS/1.0\r\nk: v\r\n\r\n") } else { Bytes::new() },
        payload: Bytes::from(vec![seq as u8; (seq % 40) as usize]),
    }
}

fn archive(first: u64, last: u64, consumers: usize) -> Vec<u8> {
    let msgs: Vec<StoredMessage> = (first..=last).filter(|s| s % 5 != 0).map(message).collect();
    let state = ArchivedState { first_seq: first, last_seq: last, msgs: msgs.len() as u64, bytes: 0 };
    let manifest = Manifest {
        format: String::new(),
        version: 0,
        config: StreamConfig::new("orders", ["orders.>"]),
        state,
        replicas: Some(3),
    };
    let mut out = Vec::new();
    let mut w = ArchiveWriter::new(&mut out, manifest).expect("a valid manifest");
    let mut cs = Consumers::new();
    let stream = StreamState { first_seq: first, last_seq: last, msgs: 0, bytes: 0, num_deleted: 0 };
    for i in 0..consumers {
        cs.create(ConsumerConfig::new(format!("c{i}")), stream, 7).expect("a valid consumer");
    }
    for name in cs.names() {
        w.push_consumer(&cs.export(name).expect("listed")).expect("in bounds");
    }
    for m in &msgs {
        w.push(m).expect("in order");
    }
    w.finish().expect("memory");
    out
}

fn block_files() -> Vec<Vec<u8>> {
    let disk = FaultFs::new(1);
    let dir = Path::new("stream");
    let config = StoreConfig { block_size_bytes: 512, ..StoreConfig::default() };
    let (mut store, _) = FileStore::open(disk.clone(), dir, config).expect("a new store");
    for seq in 1..=30u64 {
        let m = message(seq);
        let msg = NewMessage { subject: &m.subject, headers: &m.headers, payload: &m.payload, timestamp_ns: m.timestamp_ns };
        store.append(&msg).expect("memory");
    }
    store.delete(7).expect("memory");
    store.purge_before(3).expect("memory");
    store.skip_through(40).expect("memory");
    store.close().expect("memory");
    let mut files = Vec::new();
    for name in disk.list_dir(dir).expect("listed") {
        if !name.ends_with(".blk") {
            continue;
        }
        let f = disk.open(&dir.join(&name), OpenMode::Read).expect("listed");
        let mut buf = vec![0; f.len().expect("memory") as usize];
        f.read_exact_at(&mut buf, 0).expect("memory");
        files.push(buf);
    }
    files
}

fn main() {
    // Archive reader: S2 archives as written, and (first byte odd) raw tar for the target
    // to compress.
    for (i, a) in [archive(1, 20, 0), archive(5, 60, 2), archive(1, 0, 0)].iter().enumerate() {
        put("archive_reader", &format!("archive-{i}"), a);
    }
    let mut tar = vec![1u8];
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut minlz::Reader::new(&archive(3, 30, 1)[..]), &mut raw).expect("our own archive");
    tar.extend_from_slice(&raw);
    put("archive_reader", "raw-tar", &tar);

    // Block recovery: the first byte says where to split the rest into two block files.
    let files = block_files();
    for (i, f) in files.iter().enumerate() {
        let mut seed = vec![255u8];
        seed.extend_from_slice(f);
        put("block_recovery", &format!("block-{i}"), &seed);
    }
    if files.len() >= 2 {
        let mut seed = vec![0u8];
        let joined = [files[0].clone(), files[1].clone()].concat();
        seed[0] = (files[0].len() * 255 / joined.len()) as u8;
        seed.extend_from_slice(&joined);
        put("block_recovery", "two-blocks", &seed);
    }

    // Raft messages and the replicated payloads they carry.
    let publish = StreamEntry::Publish(Publish {
        timestamp_ns: 5,
        msg_id: Bytes::from_static(b"id"),
        subject: Bytes::from_static(b"orders.1"),
        headers: Bytes::new(),
        payload: Bytes::from_static(b"hello"),
        expected_last_seq: None,
    })
    .encode()
    .expect("valid");
    let entries = vec![
        Entry { index: 8, term: 2, kind: EntryKind::Normal, data: Bytes::from(publish.clone()) },
        Entry { index: 9, term: 2, kind: EntryKind::Normal, data: Bytes::from_static(b"x") },
    ];
    let bodies = [
        Body::Append { prev_index: 7, prev_term: 2, commit: 6, entries },
        Body::AppendResponse { success: true, index: 9 },
        Body::Vote { pre_vote: true, transfer: false, last_index: 9, last_term: 2 },
        Body::VoteResponse { pre_vote: false, granted: true },
        Body::TimeoutNow,
        Body::SnapshotRequest { above: 4 },
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let m = Message { group: 3, from: 1, to: 2, term: 2, body };
        put("raft_decoder", &format!("message-{i}"), &m.encode());
    }
    put("raft_decoder", "entry-publish", &publish);
    let chunk = CatchupChunk { from_seq: 1, through_seq: 12, messages: vec![message(2), message(9)] };
    put("raft_decoder", "catchup-chunk", &chunk.encode());
    let restore = StreamEntry::Restore { now_wall_ns: 1, chunk: Bytes::from(chunk.encode()) };
    put("raft_decoder", "entry-restore", &restore.encode().expect("valid"));
    let meta = MetaEntry::RestoreStream { config: StreamConfig::new("orders", ["orders.>"]), peers: vec![1, 2, 3] };
    put("raft_decoder", "meta-restore", &meta.encode());

    // Client protocol: the first byte says where TCP splits the rest.
    let sessions: [&[u8]; 4] = [
        b"CONNECT {\"verbose\":false,\"headers\":true}\r\nPING\r\nSUB _INBOX.> 1\r\nPUB orders.1 _INBOX.1 5\r\nhello\r\n",
        b"HPUB orders.2 _INBOX.2 22 27\r\nNATS/1.0\r\nk: v\r\n\r\nhello\r\nUNSUB 1 5\r\nPONG\r\n",
        b"PUB $JS.API.STREAM.CREATE.orders _INBOX.3 38\r\n{\"name\":\"orders\",\"subjects\":[\"o.>\"]}\r\n",
        b"sub a.* q 2\r\npub a.b 0\r\n\r\nFROB\r\n",
    ];
    for (i, s) in sessions.iter().enumerate() {
        let mut seed = vec![128u8];
        seed.extend_from_slice(s);
        put("client_proto", &format!("session-{i}"), &seed);
    }
    println!("seeds written under fuzz/corpus/");
}
