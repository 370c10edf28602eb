//! Nodes on the production disk, wired by an in-memory network that delivers every frame in
//! order unless a node is cut off. Fault injection (crashes with lost writes, drops,
//! reordering) is the cluster simulator's job (docs/simulator.md); these tests pin down the
//! node's behaviour: streams on Raft, acks after commit, dedupe across leader changes and
//! restarts, delete, snapshots with compaction, and catch-up over the network.

use super::*;
use crate::disk::DiskFile;
use crate::os::OsDisk;
use crate::testutil::temp_root;
use std::collections::BTreeSet;

const STEP: Duration = Duration::from_millis(10);

struct Cluster {
    disk: OsDisk,
    ids: Vec<NodeId>,
    nodes: BTreeMap<NodeId, Option<Node<OsDisk>>>,
    now: MonoTime,
    wall_ns: i64,
    net: VecDeque<(NodeId, NodeId, Bytes)>,
    /// Nodes whose frames (both ways) are dropped.
    cut: BTreeSet<NodeId>,
    replies: BTreeMap<(NodeId, RequestId), Reply>,
    policy: SnapshotPolicy,
}

fn config(id: NodeId, ids: &[NodeId], policy: SnapshotPolicy) -> NodeConfig {
    let mut cfg = NodeConfig::new(id, ids.iter().copied(), format!("n{id}"));
    cfg.raft.election_timeout_min = Duration::from_millis(150);
    cfg.raft.election_timeout_max = Duration::from_millis(300);
    cfg.raft.heartbeat_interval = Duration::from_millis(50);
    cfg.raft.transfer_timeout = Duration::from_millis(500);
    cfg.catchup_timeout = Duration::from_millis(200);
    cfg.expire_interval = Duration::from_millis(200);
    cfg.catchup_chunk_bytes = 512; // many chunks: exercises flow control
    cfg.snapshot = policy;
    cfg
}

fn manual_snapshots() -> SnapshotPolicy {
    SnapshotPolicy { entries: u64::MAX, bytes: u64::MAX, interval: Duration::from_secs(3600), jitter: Duration::ZERO }
}

impl Cluster {
    fn new(tag: &str, n: u64, policy: SnapshotPolicy) -> Cluster {
        let disk = OsDisk::new(temp_root(tag)).unwrap();
        let ids: Vec<NodeId> = (1..=n).collect();
        let now = MonoTime::from_nanos(1_000_000_000);
        let mut c = Cluster {
            disk,
            ids: ids.clone(),
            nodes: BTreeMap::new(),
            now,
            wall_ns: 1_700_000_000_000_000_000,
            net: VecDeque::new(),
            cut: BTreeSet::new(),
            replies: BTreeMap::new(),
            policy,
        };
        for id in ids {
            c.start(id);
        }
        c
    }

    fn start(&mut self, id: NodeId) {
        let node = Node::open(self.disk.clone(), config(id, &self.ids, self.policy), self.now).unwrap();
        self.nodes.insert(id, Some(node));
    }

    fn stop(&mut self, id: NodeId) {
        self.nodes.insert(id, None);
    }

    fn node(&mut self, id: NodeId) -> &mut Node<OsDisk> {
        self.nodes.get_mut(&id).unwrap().as_mut().expect("node is up")
    }

    fn step(&mut self) {
        self.now = self.now + STEP;
        self.wall_ns += STEP.as_nanos() as i64;
        let (now, wall) = (self.now, self.wall_ns);
        for node in self.nodes.values_mut().flatten() {
            node.tick(now, wall);
            while node.run_work(now) {}
        }
        self.deliver();
    }

    fn deliver(&mut self) {
        for _ in 0..100_000 {
            for (id, node) in self.nodes.iter_mut() {
                let Some(node) = node else { continue };
                while let Some((to, frame)) = node.poll_send() {
                    self.net.push_back((*id, to, frame));
                }
                while let Some((req, reply)) = node.poll_reply() {
                    self.replies.insert((*id, req), reply);
                }
            }
            let Some((from, to, frame)) = self.net.pop_front() else { return };
            if self.cut.contains(&from) || self.cut.contains(&to) {
                continue;
            }
            if let Some(Some(node)) = self.nodes.get_mut(&to) {
                node.handle_frame(self.now, from, frame);
                node.check_invariants();
            }
        }
        panic!("the network never went quiet");
    }

    fn run_until(&mut self, max: Duration, mut done: impl FnMut(&mut Cluster) -> bool) -> bool {
        let steps = max.as_millis() / STEP.as_millis();
        for _ in 0..steps {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    fn meta_leader(&mut self) -> NodeId {
        let mut leader = None;
        assert!(
            self.run_until(Duration::from_secs(10), |c| {
                leader = c
                    .nodes
                    .iter()
                    .filter_map(|(id, n)| n.as_ref().map(|n| (*id, n)))
                    .find(|(id, n)| n.meta_role() == Role::Leader && !c.cut.contains(id))
                    .map(|(id, _)| id);
                leader.is_some()
            }),
            "no meta leader"
        );
        leader.unwrap()
    }

    /// Sends a request to the node that accepts it (following NotLeader hints, retrying
    /// while no leader is known) and waits for its reply.
    fn request(
        &mut self,
        mut send: impl FnMut(&mut Node<OsDisk>, MonoTime, i64) -> Result<RequestId, ClientError>,
    ) -> Reply {
        let mut last_error = None;
        for _ in 0..300 {
            let (now, wall) = (self.now, self.wall_ns);
            let up: Vec<NodeId> =
                self.nodes.iter().filter(|(id, n)| n.is_some() && !self.cut.contains(id)).map(|(id, _)| *id).collect();
            let mut accepted = None;
            for id in up {
                match send(self.node(id), now, wall) {
                    Ok(req) => {
                        accepted = Some((id, req));
                        break;
                    }
                    // A node that has not applied the stream's create yet says NoSuchStream.
                    Err(
                        e @ (ClientError::NotLeader { .. }
                        | ClientError::NotHere { .. }
                        | ClientError::Unavailable { .. }
                        | ClientError::NoSuchStream { .. }),
                    ) => last_error = Some(e),
                    Err(e) => return Reply::Failed(e),
                }
            }
            let Some(key) = accepted else {
                self.step();
                continue;
            };
            self.deliver();
            assert!(self.run_until(Duration::from_secs(10), |c| c.replies.contains_key(&key)), "no reply");
            return self.replies.remove(&key).unwrap();
        }
        Reply::Failed(last_error.expect("some node answered"))
    }

    fn create(&mut self, name: &str, replicas: usize) -> GroupId {
        self.create_with(StreamConfig::new(name, [format!("{name}.>")]), replicas)
    }

    fn create_with(&mut self, config: StreamConfig, replicas: usize) -> GroupId {
        match self.request(|n, now, _| n.create_stream(now, config.clone(), replicas)) {
            Reply::StreamCreated { group } => group,
            other => panic!("create {}: {other:?}", config.name),
        }
    }

    /// Inverts every byte of the block files node `id` holds for `group` now: every message
    /// in them fails its checksum when read.
    fn corrupt_store_blocks(&self, id: NodeId, group: GroupId) -> usize {
        let dir = std::path::PathBuf::from(format!("n{id}/streams/{group}/store"));
        let mut corrupted = 0;
        for name in self.disk.list_dir(&dir).unwrap().into_iter().filter(|n| n.ends_with(".blk")) {
            let file = self.disk.open(&dir.join(&name), crate::disk::OpenMode::ReadWrite).unwrap();
            let mut bytes = vec![0; file.len().unwrap() as usize];
            file.read_exact_at(&mut bytes, 0).unwrap();
            bytes.iter_mut().for_each(|b| *b = !*b);
            file.write_at(&bytes, 0).unwrap();
            corrupted += 1;
        }
        corrupted
    }

    fn publish(&mut self, name: &str, payload: &str, msg_id: &str) -> Reply {
        let p = Publish {
            timestamp_ns: 0,
            msg_id: Bytes::copy_from_slice(msg_id.as_bytes()),
            subject: Bytes::from(format!("{name}.x")),
            headers: Bytes::new(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            expected_last_seq: None,
        };
        self.request(|n, now, wall| n.publish(now, wall, name, p.clone()))
    }

    fn publish_ok(&mut self, name: &str, payload: &str, msg_id: &str) -> u64 {
        match self.publish(name, payload, msg_id) {
            Reply::Published { seq, duplicate: false } => seq,
            other => panic!("publish {payload}: {other:?}"),
        }
    }

    fn stream_leader(&mut self, name: &str) -> NodeId {
        let mut leader = None;
        assert!(self.run_until(Duration::from_secs(10), |c| {
            leader = c.nodes.iter().filter_map(|(id, n)| n.as_ref().map(|n| (*id, n))).find_map(|(id, n)| {
                n.stream_info(name).ok().filter(|i| i.role == Role::Leader && !c.cut.contains(&id)).map(|_| id)
            });
            leader.is_some()
        }));
        leader.unwrap()
    }

    /// Waits until every live replica of `name` applied the same index with the same state.
    fn converged(&mut self, name: &str) -> (Index, u64) {
        let mut seen = None;
        let ok = self.run_until(Duration::from_secs(20), |c| {
            let hashes: BTreeSet<(Index, u64)> =
                c.nodes.values().flatten().filter_map(|n| n.stream_state_hash(name).ok()).collect();
            let commit =
                c.nodes.values().flatten().filter_map(|n| n.stream_info(name).ok()).map(|i| i.commit_index).max();
            seen = hashes.iter().next().copied();
            hashes.len() == 1 && seen.map(|s| s.0) == commit
        });
        if !ok {
            for (id, n) in c_debug(self, name) {
                eprintln!("n{id}: {n}");
            }
        }
        assert!(ok, "replicas of {name} did not converge");
        seen.unwrap()
    }
}

#[test]
fn publishes_are_acknowledged_in_order_and_replicated() {
    let mut c = Cluster::new("node-basic", 3, manual_snapshots());
    c.meta_leader();
    let group = c.create("orders", 3);
    assert!(group > 0);
    for i in 1..=50u64 {
        assert_eq!(c.publish_ok("orders", &format!("m{i}"), ""), i);
    }
    c.converged("orders");
    for id in [1, 2, 3] {
        let info = c.node(id).stream_info("orders").unwrap();
        assert_eq!(info.stream.state.msgs, 50, "node {id}");
        assert_eq!(info.peers, vec![1, 2, 3]);
        let m = c.node(id).get_message("orders", 7).unwrap().unwrap();
        assert_eq!(&m.payload[..], b"m7");
        // The cheap status says what the whole info says.
        let status = c.node(id).replica_status("orders").unwrap();
        assert_eq!(
            (status.role, status.leader, status.term, status.last_index, status.commit_index, status.applied_index),
            (info.role, info.leader, info.term, info.last_index, info.commit_index, info.applied_index)
        );
        assert_eq!((status.catching_up, status.damaged), (info.stream.catching_up.is_some(), info.damaged));
        // The contents in one pass: every message in order, and the full hash.
        let mut seqs = Vec::new();
        let (index, hash) = c.node(id).stream_contents("orders", |m| seqs.push(m.seq)).unwrap();
        assert_eq!(seqs, (1..=50).collect::<Vec<u64>>(), "node {id}");
        assert_eq!((index, hash), c.node(id).stream_state_hash("orders").unwrap());
    }
    // A subject outside the stream is a replicated refusal, not a failure.
    let p = Publish {
        timestamp_ns: 0,
        msg_id: Bytes::new(),
        subject: Bytes::from_static(b"other.x"),
        headers: Bytes::new(),
        payload: Bytes::new(),
        expected_last_seq: None,
    };
    assert!(matches!(c.request(|n, now, wall| n.publish(now, wall, "orders", p.clone())), Reply::Rejected { .. }));
    // Unknown stream, invalid replication factors.
    assert_eq!(c.publish("nope", "x", ""), Reply::Failed(ClientError::NoSuchStream { name: "nope".into() }));
    let leader = c.meta_leader();
    let (now, cfg) = (c.now, StreamConfig::new("bad", ["bad.>"]));
    assert!(matches!(c.node(leader).create_stream(now, cfg.clone(), 2), Err(ClientError::InvalidRequest { .. })));
    assert!(matches!(c.node(leader).create_stream(now, cfg, 5), Err(ClientError::InvalidRequest { .. })));
}

/// Publishes proposed inside one batch share one log write on the leader (and, delivered
/// in one batch, on each follower), and are still acknowledged in order, each after commit;
/// outside a batch each publish is its own write.
#[test]
fn a_batch_of_publishes_shares_one_log_write() {
    let mut c = Cluster::new("node-batch", 3, manual_snapshots());
    c.meta_leader();
    c.create("b", 3);
    c.publish_ok("b", "warm-up", "");
    let leader = c.stream_leader("b");
    let writes = |c: &mut Cluster, id| c.node(id).stream_info("b").unwrap().stats.log_writes;
    let subject = Bytes::from_static(b"b.x");
    let publish = |i: u64| Publish {
        timestamp_ns: 0,
        msg_id: Bytes::from(format!("id-{i}")),
        subject: subject.clone(),
        headers: Bytes::new(),
        payload: Bytes::from(format!("m{i}")),
        expected_last_seq: None,
    };

    let before = writes(&mut c, leader);
    let (now, wall) = (c.now, c.wall_ns);
    let node = c.node(leader);
    node.begin_batch();
    let requests: Vec<RequestId> = (0..50).map(|i| node.publish(now, wall, "b", publish(i)).unwrap()).collect();
    assert!(node.poll_send().is_none(), "nothing leaves before the batch ends");
    assert_eq!(node.end_batch(now), 1, "one write held, for the one stream group touched");
    // The leader's appends go out before its own write; they promise nothing.
    let mut appends = Vec::new();
    while let Some(frame) = node.poll_send() {
        appends.push(frame);
    }
    assert_eq!(appends.len(), 2, "one append to each follower");
    assert_eq!(writes(&mut c, leader), before, "the write is held until write_batch");
    let node = c.node(leader);
    node.write_batch(now);
    assert!(node.poll_reply().is_none(), "nothing is acknowledged before the followers answer");
    assert_eq!(writes(&mut c, leader), before + 1, "50 proposals, one log write");
    for (to, frame) in appends {
        c.net.push_back((leader, to, frame));
    }
    c.deliver();
    assert!(c.run_until(Duration::from_secs(10), |c| requests.iter().all(|r| c.replies.contains_key(&(leader, *r)))));
    for (i, r) in requests.iter().enumerate() {
        let reply = c.replies.remove(&(leader, *r)).unwrap();
        assert_eq!(reply, Reply::Published { seq: i as u64 + 2, duplicate: false }, "publish {i}");
    }

    // Unbatched: one write per publish.
    let before = writes(&mut c, leader);
    for i in 50..60 {
        let (now, wall) = (c.now, c.wall_ns);
        c.node(leader).publish(now, wall, "b", publish(i)).unwrap();
    }
    assert_eq!(writes(&mut c, leader), before + 10);
    c.converged("b");
    for id in [1, 2, 3] {
        assert_eq!(c.node(id).stream_info("b").unwrap().stream.state.msgs, 61, "node {id}");
        assert_eq!(&c.node(id).get_message("b", 30).unwrap().unwrap().payload[..], b"m28");
    }
}

#[test]
fn dedupe_survives_leader_change_and_restart() {
    let mut c = Cluster::new("node-dedupe", 3, manual_snapshots());
    c.meta_leader();
    c.create("d", 3);
    let seq = c.publish_ok("d", "first", "id-1");
    assert_eq!(c.publish("d", "again", "id-1"), Reply::Published { seq, duplicate: true });
    // Move leadership away and retry.
    let old = c.stream_leader("d");
    let target = if old == 1 { 2 } else { 1 };
    let now = c.now;
    c.node(old).transfer_stream_leader(now, "d", target).unwrap();
    assert!(c.run_until(Duration::from_secs(5), |c| c.stream_leader("d") != old));
    assert_eq!(c.publish("d", "again", "id-1"), Reply::Published { seq, duplicate: true });
    // Restart every node: the window is rebuilt from the log.
    for id in [1, 2, 3] {
        c.stop(id);
    }
    for id in [1, 2, 3] {
        c.start(id);
    }
    assert_eq!(c.publish("d", "again", "id-1"), Reply::Published { seq, duplicate: true });
    assert_eq!(c.publish_ok("d", "second", "id-2"), seq + 1);
    c.converged("d");
}

#[test]
fn delete_stream_removes_replicas_and_files() {
    let mut c = Cluster::new("node-delete", 3, manual_snapshots());
    c.meta_leader();
    let group = c.create("gone", 3);
    c.publish_ok("gone", "x", "");
    let dir = std::path::PathBuf::from(format!("n1/streams/{group}"));
    assert!(c.disk.entry_kind(&dir).unwrap().is_some());
    match c.request(|n, now, _| n.delete_stream(now, "gone")) {
        Reply::StreamDeleted { group: g } => assert_eq!(g, group),
        other => panic!("{other:?}"),
    }
    assert!(c.run_until(Duration::from_secs(5), |c| (1..=3).all(|id| c.node(id).streams().is_empty())));
    assert!(c.run_until(Duration::from_secs(5), |c| (1..=3).all(|id| c
        .disk
        .entry_kind(std::path::Path::new(&format!("n{id}/streams/{group}")))
        .unwrap()
        .is_none())));
    assert_eq!(c.publish("gone", "x", ""), Reply::Failed(ClientError::NoSuchStream { name: "gone".into() }));
    // The same name again is a new group with an empty stream.
    let again = c.create("gone", 3);
    assert_ne!(again, group);
    assert_eq!(c.publish_ok("gone", "y", ""), 1);
}

#[test]
fn a_restarted_node_recovers_and_rejoins() {
    let mut c = Cluster::new("node-restart", 3, manual_snapshots());
    c.meta_leader();
    c.create("r", 3);
    for i in 0..20 {
        c.publish_ok("r", &format!("a{i}"), "");
    }
    let follower = (1..=3).find(|id| c.node(*id).stream_info("r").unwrap().role != Role::Leader).unwrap();
    c.stop(follower);
    for i in 0..20 {
        c.publish_ok("r", &format!("b{i}"), "");
    }
    c.start(follower);
    let (_, hash) = c.converged("r");
    assert_eq!(c.node(follower).stream_info("r").unwrap().stream.state.msgs, 40);
    assert_eq!(c.node(follower).stream_state_hash("r").unwrap().1, hash);
}

#[test]
fn snapshots_compact_the_log_and_a_lagging_follower_catches_up() {
    let mut c = Cluster::new("node-catchup", 3, manual_snapshots());
    c.meta_leader();
    c.create("big", 3);
    let leader = c.stream_leader("big");
    let lagging = (1..=3).find(|id| *id != leader && c.meta_leader() != *id).unwrap_or(if leader == 1 { 2 } else { 1 });
    c.cut.insert(lagging);
    for i in 0..200 {
        c.publish_ok("big", &format!("payload number {i:04}"), "");
    }
    // Snapshot and compact on every connected replica, so the lagging one can only be
    // repaired by a snapshot and then a catch-up of the messages.
    for id in (1..=3).filter(|id| *id != lagging) {
        let now = c.now;
        c.node(id).force_snapshot(now, "big").unwrap();
    }
    c.step();
    for id in (1..=3).filter(|id| *id != lagging) {
        let info = c.node(id).stream_info("big").unwrap();
        assert_eq!(info.stats.compactions, 1, "node {id}: {info:?}");
    }
    c.cut.clear();
    let (_, hash) = c.converged("big");
    let info = c.node(lagging).stream_info("big").unwrap();
    assert_eq!(info.stats.snapshots_restored, 1, "{info:?}");
    assert_eq!(info.stats.catchups_completed, 1, "{info:?}");
    // 200 messages of ~40 bytes in chunks of 512 bytes: many chunks.
    assert!(info.stats.catchup_chunks > 5, "{info:?}");
    assert_eq!(info.stream.state.msgs, 200);
    assert_eq!(c.node(lagging).get_message("big", 150).unwrap().unwrap().payload, Bytes::from("payload number 0149"));
    assert_eq!(c.node(lagging).stream_state_hash("big").unwrap().1, hash);
    // It can lead now.
    let now = c.now;
    let leader = c.stream_leader("big");
    c.node(leader).transfer_stream_leader(now, "big", lagging).unwrap();
    assert!(c.run_until(Duration::from_secs(5), |c| c.stream_leader("big") == lagging));
    assert_eq!(c.publish_ok("big", "after", ""), 201);
}

/// The range a lagging replica must fetch is unreadable on every peer (corrupt blocks), so
/// its catch-up fails round after round. It falls back to asking the leader for a newer
/// snapshot, which replaces the stale target; once the stream's limits have pushed the lost
/// range out, the newer snapshot starts past it and one catch-up completes. (Without the
/// fallback the retries also end, once the peers report the range as gone, but only after
/// finishing the stale catch-up and a second one: `catchups_completed` is 2.)
#[test]
fn a_catchup_no_peer_can_serve_falls_back_to_a_newer_snapshot() {
    let mut c = Cluster::new("node-fallback", 3, manual_snapshots());
    c.meta_leader();
    let mut config = StreamConfig::new("lost", ["lost.>"]);
    config.store.limits.max_msgs = Some(50);
    config.store.block_size_bytes = 1024;
    let group = c.create_with(config, 3);
    let leader = c.stream_leader("lost");
    let lagging = if leader == 1 { 2 } else { 1 };
    let sources: Vec<NodeId> = (1..=3).filter(|id| *id != lagging).collect();
    c.cut.insert(lagging);
    for i in 1..=200 {
        assert_eq!(c.publish_ok("lost", &format!("payload number {i:04}"), ""), i);
    }
    for &id in &sources {
        let now = c.now;
        c.node(id).force_snapshot(now, "lost").unwrap();
    }
    c.step();
    for &id in &sources {
        assert!(c.corrupt_store_blocks(id, group) > 0, "node {id} has block files");
    }
    c.cut.clear();
    let asked = c.run_until(Duration::from_secs(10), |c| {
        c.node(lagging).stream_info("lost").is_ok_and(|i| i.stats.snapshot_requests > 0)
    });
    let info = c.node(lagging).stream_info("lost").unwrap();
    assert!(asked, "the catch-up never fell back to a snapshot request: {info:?}");
    assert_eq!(info.stream.catching_up, Some((151, 200)), "{info:?}");
    assert!(info.stats.catchup_failures >= 6, "three rounds through two peers: {info:?}");
    assert_eq!(info.stats.catchups_completed, 0);
    // New publishes push the lost range out (max_msgs 50); the next snapshot starts past it.
    for i in 201..=300 {
        assert_eq!(c.publish_ok("lost", &format!("payload number {i:04}"), ""), i);
    }
    let (_, hash) = c.converged("lost");
    let info = c.node(lagging).stream_info("lost").unwrap();
    assert!(info.stats.snapshots_restored >= 2, "{info:?}");
    assert_eq!(info.stats.catchups_completed, 1, "{info:?}");
    assert_eq!(info.stream.catching_up, None);
    assert_eq!((info.stream.state.first_seq, info.stream.state.last_seq), (251, 300));
    assert_eq!(info.stream.state.msgs, 50);
    let m = c.node(lagging).get_message("lost", 300).unwrap().unwrap();
    assert_eq!(m.payload, Bytes::from("payload number 0300"));
    assert_eq!(c.node(lagging).stream_state_hash("lost").unwrap().1, hash);
    let served: u64 = sources.iter().map(|id| c.node(*id).stream_info("lost").unwrap().stats.chunks_served).sum();
    assert!(served > 0, "the peers served the range after the newer snapshot");
}

#[test]
fn snapshot_policy_triggers_by_entries() {
    let policy = SnapshotPolicy { entries: 10, ..manual_snapshots() };
    let mut c = Cluster::new("node-policy", 3, policy);
    c.meta_leader();
    c.create("p", 1);
    for i in 0..35 {
        c.publish_ok("p", &format!("{i}"), "");
        c.step(); // a tick between publishes: the policy is checked on ticks
    }
    c.step();
    let holder = (1..=3).find(|id| c.node(*id).stream_info("p").is_ok()).unwrap();
    let info = c.node(holder).stream_info("p").unwrap();
    assert!(info.stats.compactions >= 3, "{info:?}");
    // Restart: the snapshot plus the log tail give the same state.
    // (The state hash would move on with the leader's periodic Expire entries; the
    // messages must not.)
    let before = c.node(holder).stream_info("p").unwrap().stream.state;
    c.stop(holder);
    c.start(holder);
    assert!(c.run_until(Duration::from_secs(5), |c| c
        .node(holder)
        .stream_info("p")
        .is_ok_and(|i| i.stream.state == before && i.stats.snapshots_restored == 1)));
    assert_eq!(c.node(holder).get_message("p", 35).unwrap().unwrap().payload, Bytes::from("34"));
    assert_eq!(c.publish_ok("p", "next", ""), 36);
}

#[test]
fn hostile_frames_are_dropped_without_harm() {
    let mut c = Cluster::new("node-hostile", 3, manual_snapshots());
    c.meta_leader();
    c.create("h", 3);
    let now = c.now;
    let n = c.node(1);
    let before = n.stats().frames_dropped;
    n.handle_frame(now, 2, Bytes::from_static(b""));
    n.handle_frame(now, 2, Bytes::from(vec![0xff; 100]));
    // A valid header claiming another sender, and a catch-up kind with a garbage body.
    let mut spoofed =
        CatchupFrame { group: 1, from: 3, to: 1, attempt: 0, body: CatchupBody::Unavailable }.encode().to_vec();
    n.handle_frame(now, 2, Bytes::from(spoofed.clone()));
    spoofed[1] = KIND_CATCHUP_CHUNK;
    spoofed[10..18].copy_from_slice(&2u64.to_le_bytes());
    spoofed.extend_from_slice(&[7; 40]);
    n.handle_frame(now, 2, Bytes::from(spoofed));
    assert_eq!(n.stats().frames_dropped, before + 4);
    n.check_invariants();
    assert_eq!(c.publish_ok("h", "still fine", ""), 1);
}

fn c_debug(c: &mut Cluster, name: &str) -> Vec<(NodeId, String)> {
    c.nodes
        .iter()
        .filter_map(|(id, n)| {
            n.as_ref().map(|n| (*id, format!("{:?} {:?}", n.stream_state_hash(name), n.stream_info(name))))
        })
        .collect()
}

/// Startup (docs/node.md, "Startup"): the restore jobs may run in any order, and the node is
/// the same; a replica that cannot be restored is reported and the others come up.
#[test]
fn startup_restores_streams_the_same_in_any_order_and_one_broken_stream_stops_no_other() {
    let mut c = Cluster::new("restore-order", 1, manual_snapshots());
    let names = ["a", "b", "c", "d"];
    let mut groups = Vec::new();
    for name in names {
        groups.push(c.create(name, 1));
        for i in 0..20 {
            c.publish_ok(name, &format!("{name}-{i}"), &format!("{name}-{i}"));
        }
    }
    // A clean shutdown writes each group's commit index down: without it the last create
    // ("d") is committed on disk only once a later meta write says so, and the restart would
    // know three streams at open, not four.
    assert_eq!(c.node(1).sync_all(), vec![]);
    c.stop(1);
    let open = |c: &Cluster, reverse: bool| -> Node<OsDisk> {
        let now = c.now;
        let mut restoring =
            Node::begin_open(c.disk.clone(), config(1, &[1], c.policy), now, Box::new(move || now)).unwrap();
        let mut jobs = restoring.take_jobs();
        assert_eq!(jobs.len(), names.len(), "one job per stream placed here");
        if reverse {
            jobs.reverse();
        }
        for job in &mut jobs {
            job.run();
        }
        restoring.finish(now, jobs)
    };
    let state = |node: &Node<OsDisk>, name: &str| node.stream_info(name).map(|i| (i.stream.state, i.applied_index));
    let forward = open(&c, false);
    let expected: Vec<_> = names.iter().map(|n| state(&forward, n).unwrap()).collect();
    assert!(expected.iter().all(|(s, _)| s.msgs == 20), "{expected:?}");
    drop(forward);
    let backward = open(&c, true);
    let got: Vec<_> = names.iter().map(|n| state(&backward, n).unwrap()).collect();
    assert_eq!(got, expected, "the order jobs ran in changes nothing");
    drop(backward);

    // Both hard state copies of stream c's group unreadable: its restore fails, alone.
    for copy in ["hard.0", "hard.1"] {
        let path = std::path::PathBuf::from(format!("n1/streams/{}/raft/{copy}", groups[2]));
        let file = c.disk.open(&path, crate::disk::OpenMode::ReadWrite).unwrap();
        file.write_at(b"not a hard state, not at all", 0).unwrap();
    }
    let node = open(&c, true);
    assert!(matches!(node.stream_info("c"), Err(ClientError::Unavailable { .. })), "{:?}", node.stream_info("c").err());
    for (i, name) in names.iter().enumerate().filter(|(_, n)| **n != "c") {
        assert_eq!(state(&node, name).unwrap(), expected[i], "{name} restored despite c");
    }
}
