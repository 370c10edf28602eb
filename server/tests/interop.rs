//! Interop with a NATS client no one here wrote: `async-nats` against a local 3-node sluice
//! cluster (real processes, real TCP, real fsync). It creates an R3 stream, publishes with
//! acknowledgements, reads every message back by sequence through every node, and sees
//! de-duplication by `Nats-Msg-Id`; errors come back as NATS error codes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use std::time::{Duration, Instant};
use support::{connect, Cluster, SETTLE};

fn config(name: &str, subjects: &str, replicas: usize) -> stream::Config {
    stream::Config { name: name.into(), subjects: vec![subjects.into()], num_replicas: replicas, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_creates_publishes_reads_back_and_deduplicates_on_a_3_node_cluster() {
    let cluster = Cluster::start("interop", 3);
    let js: Vec<jetstream::Context> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(jetstream::new(connect(&cluster.url(i)).await));
        }
        v
    };

    // Create (the meta group may still be electing: retry until the deadline).
    let start = Instant::now();
    let info = loop {
        match js[0].create_stream(config("ORDERS", "orders.>", 3)).await {
            Ok(s) => break s.cached_info().clone(),
            Err(e) if start.elapsed() < SETTLE => {
                eprintln!("create: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("create: {e}\n{}", cluster.logs()),
        }
    };
    assert_eq!(info.config.name, "ORDERS");
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(info.state.messages, 0);

    // Creating it again with the same config is fine; with another config it is refused.
    js[1].create_stream(config("ORDERS", "orders.>", 3)).await.expect("idempotent create");
    let err = js[2].create_stream(config("ORDERS", "other.>", 3)).await.unwrap_err();
    assert!(err.to_string().contains("10058"), "{err}");

    // Publish through every node (two of them forward to the stream's leader).
    const N: u64 = 60;
    for i in 1..=N {
        let node = (i % 3) as usize;
        let msg = jetstream::message::PublishMessage::build()
            .payload(format!("order {i}").into())
            .message_id(format!("id-{i}"));
        let start = Instant::now();
        let ack = loop {
            let r = async { js[node].send_publish(format!("orders.{i}"), msg.clone()).await?.await }.await;
            match r {
                Ok(ack) => break ack,
                Err(e) if start.elapsed() < SETTLE => {
                    eprintln!("publish {i}: {e}; retrying with the same id");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("publish {i}: {e}\n{}", cluster.logs()),
            }
        };
        assert_eq!(ack.stream, "ORDERS");
        assert_eq!(ack.sequence, i, "a retried publish keeps its sequence (de-duplicated)");
    }

    // The same message id again: not stored twice, the original sequence comes back.
    let again = jetstream::message::PublishMessage::build().payload("order 7 again".into()).message_id("id-7");
    let ack = js[1].send_publish("orders.7", again).await.unwrap().await.unwrap();
    assert_eq!((ack.sequence, ack.duplicate), (7, true));

    // Read every message back by sequence, through every node.
    for (node, js) in js.iter().enumerate() {
        let s = js.get_stream("ORDERS").await.unwrap();
        for seq in 1..=N {
            let m = s.get_raw_message(seq).await.unwrap_or_else(|e| panic!("node {node} seq {seq}: {e}"));
            assert_eq!(m.sequence, seq);
            assert_eq!(m.subject.as_str(), format!("orders.{seq}"));
            assert_eq!(&m.payload[..], format!("order {seq}").as_bytes());
        }
        let err = s.get_raw_message(N + 1).await.unwrap_err();
        assert!(err.to_string().to_lowercase().contains("no message found"), "{err}");
    }
    let mut s = js[2].get_stream("ORDERS").await.unwrap();
    let info = s.info().await.unwrap();
    assert_eq!((info.state.messages, info.state.first_sequence, info.state.last_sequence), (N, 1, N));

    // No stream for the subject: the publish gets "no responders", as from nats-server.
    let err = js[0].publish("nowhere.x", "x".into()).await.unwrap().await.unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::StreamNotFound, "{err}");

    // Names, delete, and a deleted stream is not found.
    use futures_util::TryStreamExt;
    let names: Vec<String> = js[1].stream_names().try_collect().await.unwrap();
    assert_eq!(names, ["ORDERS"]);
    assert!(js[0].delete_stream("ORDERS").await.unwrap().success);
    let err = js[1].get_stream("ORDERS").await.unwrap_err();
    assert!(err.to_string().contains("stream not found"), "{err}");
}
