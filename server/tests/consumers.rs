//! Durable pull consumers through `async-nats`, unmodified, against a local 3-node sluice
//! cluster (real processes, TCP and fsync): create, fetch, ack, redelivery after the ack
//! wait with its delivery count, nak, a long-poll woken by a publish, info (ack floor,
//! pending), and the state surviving a SIGKILL of the stream's leader and a restart.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use async_nats::jetstream::{self, consumer, stream, AckKind};
use futures_util::StreamExt;
use std::time::Duration;
use support::{retry, Cluster};

async fn connect(url: &str) -> jetstream::Context {
    jetstream::new(support::connect(url).await)
}

type Pull = consumer::Consumer<consumer::pull::Config>;

/// Fetches (no wait) until `n` messages came or a fetch returns none; (stream seq,
/// deliveries, message) each.
async fn fetch(c: &Pull, n: usize) -> Vec<(u64, i64, jetstream::Message)> {
    let mut out = Vec::new();
    for _ in 0..20 {
        let mut batch = c.fetch().max_messages(n - out.len()).messages().await.expect("fetch");
        let before = out.len();
        while let Some(m) = batch.next().await {
            let m = m.expect("message");
            let info = m.info().expect("ack subject");
            out.push((info.stream_sequence, info.delivered, m));
        }
        if out.len() == n || out.len() == before {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_pull_consumer_fetches_acks_redelivers_and_survives_a_leader_kill() {
    let mut cluster = Cluster::start("consumers", 3);
    let js = connect(&cluster.url(0)).await;
    let cfg =
        stream::Config { name: "JOBS".into(), subjects: vec!["jobs.>".into()], num_replicas: 3, ..Default::default() };
    let stream = retry("create stream", || js.create_stream(cfg.clone())).await;
    for i in 1..=20u64 {
        let subject = if i % 2 == 0 { "jobs.even" } else { "jobs.odd" };
        retry("publish", || async { js.publish(subject, format!("job {i}").into()).await?.await }).await;
    }

    let worker: Pull = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("worker".into()),
            ack_wait: Duration::from_secs(2),
            max_deliver: 3,
            ..Default::default()
        })
        .await
        .expect("create consumer");
    let evens: Pull = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("evens".into()),
            filter_subject: "jobs.even".into(),
            ..Default::default()
        })
        .await
        .expect("create filtered consumer");

    // Ten, in order, first delivery; ack the first five.
    let got = fetch(&worker, 10).await;
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert!(got.iter().all(|g| g.1 == 1));
    assert_eq!(&got[0].2.payload[..], b"job 1");
    assert_eq!(got[0].2.subject.as_str(), "jobs.odd");
    for g in &got[..5] {
        g.2.double_ack().await.expect("double ack");
    }
    let info = worker.clone().info().await.expect("info").clone();
    assert_eq!((info.delivered.stream_sequence, info.ack_floor.stream_sequence), (10, 5));
    assert_eq!((info.num_ack_pending, info.num_pending), (5, 10));

    // The filter sees only its subject.
    let got_evens = fetch(&evens, 20).await;
    assert_eq!(got_evens.iter().map(|g| g.0).collect::<Vec<_>>(), (1..=10).map(|i| 2 * i).collect::<Vec<_>>());

    // After the ack wait, 6..=10 come back (second delivery) before 11..=20.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let got = fetch(&worker, 15).await;
    let seqs: Vec<(u64, i64)> = got.iter().map(|g| (g.0, g.1)).collect();
    let expected: Vec<(u64, i64)> = (6..=10).map(|s| (s, 2)).chain((11..=20).map(|s| (s, 1))).collect();
    assert_eq!(seqs, expected);
    // Nak 11 (comes back at once), ack the rest.
    for g in &got {
        if g.0 == 11 {
            g.2.ack_with(AckKind::Nak(None)).await.expect("nak");
        } else {
            g.2.double_ack().await.expect("ack");
        }
    }
    let got = retry("nak redelivery", || async {
        let g = fetch(&worker, 1).await;
        if g.is_empty() {
            Err("nothing yet")
        } else {
            Ok(g)
        }
    })
    .await;
    assert_eq!((got[0].0, got[0].1), (11, 2));
    got[0].2.double_ack().await.expect("ack");
    assert!(fetch(&worker, 5).await.is_empty(), "nothing left: a no-wait fetch ends with 404");

    // A waiting pull is woken by a publish.
    let waiting = {
        let worker = worker.clone();
        tokio::spawn(async move {
            let mut batch = worker.batch().max_messages(1).expires(Duration::from_secs(10)).messages().await.unwrap();
            batch.next().await.map(|m| m.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    retry("publish", || async { js.publish("jobs.odd", "job 21".into()).await?.await }).await;
    let m = waiting.await.unwrap().expect("the long poll got the message");
    assert_eq!((m.info().unwrap().stream_sequence, &m.payload[..]), (21, &b"job 21"[..]));
    m.double_ack().await.unwrap();

    // Kill the stream's leader: the consumer's state is replicated, so the new leader knows
    // every ack (nothing is redelivered) and continues from 21.
    let leader =
        stream.clone().info().await.unwrap().cluster.as_ref().and_then(|c| c.leader.clone()).expect("a leader");
    let leader: usize = leader.trim_start_matches('n').parse::<usize>().unwrap() - 1;
    cluster.kill(leader);
    let other = connect(&cluster.url((leader + 1) % 3)).await;
    retry("publish after kill", || async { other.publish("jobs.even", "job 22".into()).await?.await }).await;
    let worker2: Pull =
        retry("get consumer", || async { other.get_stream("JOBS").await?.get_consumer("worker").await }).await;
    let got = retry("fetch after kill", || async {
        let g = fetch(&worker2, 5).await;
        if g.is_empty() {
            Err("nothing yet")
        } else {
            Ok(g)
        }
    })
    .await;
    assert_eq!(got.iter().map(|g| (g.0, g.1)).collect::<Vec<_>>(), vec![(22, 1)], "acked messages stay acked");
    got[0].2.double_ack().await.unwrap();

    // The killed node comes back and agrees.
    cluster.spawn(leader);
    let back = connect(&cluster.url(leader)).await;
    let info = retry("info from the restarted node", || async {
        let mut c: Pull = back.get_stream("JOBS").await?.get_consumer("worker").await?;
        let info = c.info().await?.clone();
        if info.ack_floor.stream_sequence == 22 {
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(info)
        } else {
            Err(format!("ack floor {}", info.ack_floor.stream_sequence).into())
        }
    })
    .await;
    assert_eq!(info.num_ack_pending, 0);

    // Delete: gone for every node.
    assert!(other.get_stream("JOBS").await.unwrap().delete_consumer("worker").await.unwrap().success);
    let err =
        other.get_stream("JOBS").await.unwrap().get_consumer::<consumer::pull::Config>("worker").await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}
