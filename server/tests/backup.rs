//! `sluice backup` and `sluice restore` against real clusters (processes, TCP, fsync):
//! a stream with a moved front, headers and a consumer with pending deliveries is backed
//! up, deleted and restored message for message (and backs up again to the same bytes);
//! archives with gaps keep them; messages past `max_age` keep their sequence; and an
//! existing name, overlapping subjects, a cut archive, an unknown version or an archive
//! that breaks the stream's limits are refused with nothing left behind.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use async_nats::jetstream::{self, consumer, stream, AckKind};
use bytes::Bytes;
use futures_util::StreamExt;
use sluice_core::archive::{ArchiveItem, ArchiveReader, ArchiveWriter, ArchivedState, Manifest};
use sluice_core::store::{Discard, StoredMessage};
use sluice_core::stream::StreamConfig;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{retry, temp_dir, Cluster};

async fn connect(url: &str) -> jetstream::Context {
    jetstream::new(support::connect(url).await)
}

/// Runs `sluice <args>`: (exit code, stdout, stderr).
fn sluice(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice")).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// An archive's consumers (export bytes) and messages.
fn read_archive(path: &Path) -> (Manifest, Vec<Vec<u8>>, Vec<StoredMessage>) {
    let (mut manifest, mut consumers, mut msgs) = (None, Vec::new(), Vec::new());
    ArchiveReader::read(std::fs::File::open(path).unwrap(), |item| {
        match item {
            ArchiveItem::Manifest(m) => manifest = Some(m),
            ArchiveItem::Consumer(c) => consumers.push(c.to_vec()),
            ArchiveItem::Message(m) => msgs.push(m),
        }
        Ok(())
    })
    .unwrap();
    (manifest.unwrap(), consumers, msgs)
}

async fn state(js: &jetstream::Context, name: &str) -> stream::State {
    let mut s = retry("get stream", || js.get_stream(name)).await;
    s.info().await.unwrap().state.clone()
}

async fn exists(js: &jetstream::Context, name: &str) -> bool {
    let names: Vec<String> = js.stream_names().map(|n| n.unwrap()).collect().await;
    names.iter().any(|n| n == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_and_its_consumer_survive_backup_and_restore_on_a_3_node_cluster() {
    let cluster = Cluster::start("backup", 3);
    let dir = temp_dir("backup-files");
    let js = connect(&cluster.url(0)).await;
    let cfg = stream::Config {
        name: "ORDERS".into(),
        subjects: vec!["orders.>".into()],
        num_replicas: 3,
        max_messages: 250,
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    };
    retry("create stream", || js.create_stream(cfg.clone())).await;
    for i in 1..=300u64 {
        let subject = format!("orders.{}", i % 5);
        let payload = Bytes::from(format!("order {i}").repeat(1 + (i % 7) as usize));
        if i % 3 == 0 {
            let mut h = async_nats::HeaderMap::new();
            h.insert("k", format!("v{i}").as_str());
            retry("publish", || async {
                js.publish_with_headers(subject.clone(), h.clone(), payload.clone()).await?.await
            })
            .await;
        } else {
            retry("publish", || async { js.publish(subject.clone(), payload.clone()).await?.await }).await;
        }
    }
    let src = state(&js, "ORDERS").await;
    assert_eq!((src.first_sequence, src.last_sequence, src.messages), (51, 300, 250), "the front moved");

    // A consumer with deliveries pending: 20 fetched, every other one acked.
    let s = retry("get stream", || js.get_stream("ORDERS")).await;
    let pull = consumer::pull::Config { durable_name: Some("C".into()), ..Default::default() };
    let c = retry("create consumer", || s.create_consumer(pull.clone())).await;
    let mut batch = c.fetch().max_messages(20).messages().await.unwrap();
    let mut n = 0;
    while let Some(m) = batch.next().await {
        let m = m.unwrap();
        if n % 2 == 0 {
            m.double_ack().await.unwrap();
        }
        n += 1;
    }
    assert_eq!(n, 20);
    let mut c = c;
    let before = c.info().await.unwrap().clone();
    assert_eq!(before.num_ack_pending, 10, "{before:?}");

    // What the stream holds, to compare with after the restore.
    let orders = js.get_stream("ORDERS").await.unwrap();
    let mut held = Vec::new();
    for seq in src.first_sequence..=src.last_sequence {
        let m = orders.get_raw_message(seq).await.unwrap();
        held.push((m.sequence, m.subject, m.payload, m.headers, m.time));
    }

    // Back up through node 2; the stream is lost; restore it through node 3.
    let first = dir.join("orders.archive");
    let (code, out, err) = sluice(&[
        "backup",
        "--server",
        &cluster.nodes[1].client,
        "--stream",
        "ORDERS",
        "--out",
        first.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("250 messages") && out.contains("1 consumers"), "{out}");
    assert!(!dir.join("orders.archive.partial").exists());
    retry("delete stream", || js.delete_stream("ORDERS")).await;
    assert!(!exists(&js, "ORDERS").await);
    let (code, out, err) = sluice(&["restore", "--server", &cluster.nodes[2].client, first.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("restored ORDERS: 250 messages, 0 expired") && out.contains("last sequence 300"), "{out}");

    let now = state(&js, "ORDERS").await;
    assert_eq!(
        (now.first_sequence, now.last_sequence, now.messages, now.bytes),
        (src.first_sequence, src.last_sequence, src.messages, src.bytes)
    );
    assert_eq!(now.consumer_count, 1, "stream info counts the restored consumer");
    let orders = js.get_stream("ORDERS").await.unwrap();
    for (seq, subject, payload, headers, time) in held {
        let m = orders.get_raw_message(seq).await.unwrap();
        assert_eq!((m.subject, m.payload, m.headers, m.time), (subject, payload, headers, time), "seq {seq}");
    }
    let mut restored = orders.get_consumer::<consumer::pull::Config>("C").await.unwrap();
    let after = restored.info().await.unwrap().clone();
    assert_eq!(
        (after.num_ack_pending, after.ack_floor, after.delivered, after.num_pending),
        (before.num_ack_pending, before.ack_floor, before.delivered, before.num_pending)
    );

    // The restored stream backs up to the same bytes: messages, gaps, consumer state, config.
    let second = dir.join("again.archive");
    let (code, out, err) = sluice(&[
        "backup",
        "--server",
        &cluster.nodes[0].client,
        "--stream",
        "ORDERS",
        "--out",
        second.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(std::fs::read(&first).unwrap() == std::fs::read(&second).unwrap(), "the archives differ");
    let (manifest, consumers, msgs) = read_archive(&second);
    assert_eq!((manifest.state.msgs, consumers.len(), msgs.len(), manifest.replicas), (250, 1, 250, Some(3)));

    // The restored consumer goes on where the original was: the next fetch continues the
    // stream after the 20 delivered.
    let mut batch = restored.fetch().max_messages(1).messages().await.unwrap();
    let next = batch.next().await.unwrap().unwrap();
    assert_eq!(next.info().unwrap().stream_sequence, 71);
    next.ack_with(AckKind::Ack).await.unwrap();

    // A restore never writes into an existing stream, nor beside one that takes its subjects.
    let (code, _, err) = sluice(&["restore", "--server", &cluster.nodes[0].client, first.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("exists"), "{err}");
    let (code, _, err) =
        sluice(&["restore", "--server", &cluster.nodes[0].client, first.to_str().unwrap(), "--as", "COPY"]);
    assert_eq!(code, 1);
    assert!(err.contains("overlap"), "{err}");
    assert!(!exists(&js, "COPY").await);
    assert_eq!(state(&js, "ORDERS").await.messages, 250);
    let _ = std::fs::remove_dir_all(&dir);
}

fn msg(seq: u64, subject: &str, ts: i64) -> StoredMessage {
    StoredMessage {
        seq,
        timestamp_ns: ts,
        subject: Bytes::copy_from_slice(subject.as_bytes()),
        headers: Bytes::new(),
        payload: Bytes::from(format!("payload {seq}")),
    }
}

fn write_archive(path: &Path, config: StreamConfig, state: ArchivedState, msgs: &[StoredMessage]) {
    let manifest = Manifest { format: String::new(), version: 0, config, state, replicas: None };
    let mut w = ArchiveWriter::new(std::fs::File::create(path).unwrap(), manifest).unwrap();
    for m in msgs {
        w.push(m).unwrap();
    }
    w.finish().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_ages_limits_and_damaged_archives() {
    let cluster = Cluster::start("restore-rules", 1);
    let server = cluster.nodes[0].client.clone();
    let dir = temp_dir("restore-rules-files");
    let js = connect(&cluster.url(0)).await;
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();

    // Gaps inside and at the end are kept; the next publish follows the trailing gap.
    let range = |first_seq, last_seq, msgs| ArchivedState { first_seq, last_seq, msgs, bytes: 0 };
    let msgs = [msg(3, "gaps.a", now_ns), msg(4, "gaps.b", now_ns), msg(7, "gaps.c", now_ns)];
    write_archive(&dir.join("gaps"), StreamConfig::new("GAPS", ["gaps.>"]), range(3, 10, 3), &msgs);
    let (code, out, err) = sluice(&["restore", "--server", &server, &path("gaps")]);
    assert_eq!(code, 0, "{out}{err}");
    let s = state(&js, "GAPS").await;
    assert_eq!((s.first_sequence, s.last_sequence, s.messages), (3, 10, 3));
    let stream = js.get_stream("GAPS").await.unwrap();
    for seq in [3, 4, 7] {
        assert_eq!(stream.get_raw_message(seq).await.unwrap().payload, format!("payload {seq}").as_bytes());
    }
    for seq in [5, 6, 8, 10] {
        assert!(stream.get_raw_message(seq).await.is_err(), "sequence {seq} is a gap");
    }
    let ack = js.publish("gaps.d", "after".into()).await.unwrap().await.unwrap();
    assert_eq!(ack.sequence, 11);

    // A message older than max_age is not restored, and keeps its sequence.
    let mut aged = StreamConfig::new("AGED", ["aged.>"]);
    aged.store.limits.max_age = Some(Duration::from_secs(3600));
    let old = now_ns - 2 * 3600 * 1_000_000_000;
    write_archive(&dir.join("aged"), aged, range(1, 2, 2), &[msg(1, "aged.a", old), msg(2, "aged.b", now_ns)]);
    let (code, out, err) = sluice(&["restore", "--server", &server, &path("aged")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 messages, 1 expired while archived"), "{out}");
    let s = state(&js, "AGED").await;
    assert_eq!((s.first_sequence, s.last_sequence, s.messages), (2, 2, 1));

    // Refusals, each leaving no stream behind: limits broken on the way in (found only
    // while writing), a cut archive, an unknown version (both found before anything is
    // created).
    let mut limited = StreamConfig::new("LIMITED", ["lim.>"]);
    limited.store.limits.max_msgs = Some(2);
    limited.store.limits.discard = Discard::New;
    let three = [msg(1, "lim.a", now_ns), msg(2, "lim.b", now_ns), msg(3, "lim.c", now_ns)];
    write_archive(&dir.join("limited"), limited, range(1, 3, 3), &three);
    let (code, _, err) = sluice(&["restore", "--server", &server, &path("limited")]);
    assert_eq!(code, 1);
    assert!(err.contains("limits") && err.contains("was deleted"), "{err}");
    assert!(!exists(&js, "LIMITED").await);

    let many: Vec<StoredMessage> = (1..=2000).map(|s| msg(s, "cut.x", now_ns)).collect();
    write_archive(&dir.join("whole"), StreamConfig::new("CUT", ["cut.>"]), range(1, 2000, 2000), &many);
    let whole = std::fs::read(dir.join("whole")).unwrap();
    std::fs::write(dir.join("cut"), &whole[..whole.len() / 2]).unwrap();
    let (code, _, err) = sluice(&["restore", "--server", &server, &path("cut")]);
    assert_eq!(code, 1);
    assert!(err.contains("archive"), "{err}");
    assert!(!exists(&js, "CUT").await);

    let m = Manifest {
        format: sluice_core::archive::FORMAT_NAME.into(),
        version: 99,
        config: StreamConfig::new("FUTURE", ["f.>"]),
        state: range(1, 0, 0),
        replicas: None,
    };
    let mut tar = tar::Builder::new(Vec::new());
    let json = serde_json::to_vec(&m).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(json.len() as u64);
    h.set_mode(0o644);
    tar.append_data(&mut h, "manifest.json", &json[..]).unwrap();
    let mut s2 = minlz::Writer::new(std::fs::File::create(dir.join("future")).unwrap());
    std::io::Write::write_all(&mut s2, &tar.into_inner().unwrap()).unwrap();
    std::io::Write::flush(&mut s2).unwrap();
    drop(s2);
    let (code, _, err) = sluice(&["restore", "--server", &server, &path("future")]);
    assert_eq!(code, 1);
    assert!(err.contains("unsupported archive version 99"), "{err}");
    assert!(!exists(&js, "FUTURE").await);
    let _ = std::fs::remove_dir_all(&dir);
}
