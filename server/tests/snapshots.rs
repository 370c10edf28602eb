//! Snapshots on the real binary, in both `--snapshot-mode`s: with a snapshot every 20 entries,
//! 300 acknowledged publishes install many checkpoints (counted from the nodes' logs); after
//! a SIGKILL and a restart every message is still there, at its sequence, with its payload,
//! and the stream keeps taking publishes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use async_nats::jetstream::{self, stream};
use std::time::{Duration, Instant};
use support::Cluster;

const SETTLE: Duration = Duration::from_secs(30);
const N: u64 = 300;

async fn js(cluster: &Cluster) -> jetstream::Context {
    let start = Instant::now();
    loop {
        match async_nats::connect(cluster.url(0)).await {
            Ok(c) => return jetstream::new(c),
            Err(e) if start.elapsed() < SETTLE => {
                eprintln!("connect: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("connect: {e}"),
        }
    }
}

/// Publishes `from..=to` with message ids, retrying (same id) until each is acknowledged.
async fn publish(js: &jetstream::Context, cluster: &Cluster, from: u64, to: u64) {
    for i in from..=to {
        let msg =
            jetstream::message::PublishMessage::build().payload(format!("m{i}").into()).message_id(format!("id-{i}"));
        let start = Instant::now();
        let ack = loop {
            match async { js.send_publish(format!("snap.{i}"), msg.clone()).await?.await }.await {
                Ok(ack) => break ack,
                Err(e) if start.elapsed() < SETTLE => {
                    eprintln!("publish {i}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("publish {i}: {e}\n{}", cluster.logs()),
            }
        };
        assert_eq!(ack.sequence, i);
    }
}

async fn snapshots_survive_a_kill(mode: &str) {
    let mut cluster =
        Cluster::start_with(&format!("snap-{mode}"), 1, &["--snapshot-mode", mode, "--snapshot-entries", "20"]);
    let js0 = js(&cluster).await;
    let start = Instant::now();
    while let Err(e) = js0
        .create_stream(stream::Config { name: "SNAP".into(), subjects: vec!["snap.>".into()], ..Default::default() })
        .await
    {
        assert!(start.elapsed() < SETTLE, "create: {e}\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    publish(&js0, &cluster, 1, N).await;
    let log = std::fs::read_to_string(&cluster.nodes[0].log).unwrap();
    let checkpoints = log.matches("checkpoint installed").count();
    assert!(checkpoints >= 5, "{mode}: {checkpoints} checkpoints installed for {N} publishes every 20 entries");

    cluster.kill(0);
    cluster.spawn(0);
    let js1 = js(&cluster).await;
    let start = Instant::now();
    let s = loop {
        match js1.get_stream("SNAP").await {
            Ok(s) => break s,
            Err(e) if start.elapsed() < SETTLE => {
                eprintln!("get stream: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("get stream after restart: {e}\n{}", cluster.logs()),
        }
    };
    for seq in 1..=N {
        let m = s.get_raw_message(seq).await.unwrap_or_else(|e| panic!("{mode}: seq {seq} after restart: {e}"));
        assert_eq!(&m.payload[..], format!("m{seq}").as_bytes(), "{mode}: seq {seq}");
    }
    publish(&js1, &cluster, N + 1, N + 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_snapshots_survive_a_kill() {
    snapshots_survive_a_kill("background").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_snapshots_survive_a_kill() {
    snapshots_survive_a_kill("inline").await;
}
