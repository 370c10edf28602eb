//! Backup and restore under faults (`Swarm::backup_restore`), as `sluice backup` and
//! `sluice restore` do them but through the node API:
//!
//! 1. a stream's leader is read into an archive (its state, consumers and messages as
//!    catch-up chunks), and the archive is read back: the oracle;
//! 2. forged damage to that archive ([`hostile::damage`]) is read: it must be refused or
//!    read the same, never panic ([`hostile_archive`]);
//! 3. the archive is restored as a new stream, one proposal at a time (the create on the
//!    meta leader, then chunks and consumers on the new stream's leader) while the nemesis
//!    runs; any reply that leaves the outcome unknown abandons the restore (the stream is
//!    deleted by group), as the command does;
//! 4. a restore whose every write was acknowledged is checked against the oracle on the
//!    leader that answered, and on every replica at the end of the run ([`round_trip`]);
//!    an abandoned restore's stream must be gone by then (a create whose outcome was
//!    unknown may commit after its clean-up: it is deleted again).

use super::workload::Request;
use super::world::{json_str, World};
use crate::invariants::{hostile_archive, round_trip, Violation};
use bytes::Bytes;
use rand::Rng;
use sluice_core::archive::{
    hostile, restore_writes, ArchiveItem, ArchiveReader, ArchiveWriter, Manifest, RestoreWrite,
};
use sluice_core::env::NodeId;
use sluice_core::node::{ClientError, Node, Reply, RequestId};
use sluice_core::raft::Role;
use sluice_core::store::StoredMessage;
use sluice_faultfs::FaultFs;
use std::collections::VecDeque;

/// Chance per step, while idle and faults are on, that a backup starts.
const BACKUP_PPM: u64 = 3_000;
/// Damaged copies read per backup.
const HOSTILE_PER_BACKUP: usize = 4;
/// Message bytes per backup read and per restore chunk: small, so an archive has several
/// chunks and a restore entry fits the simulated Raft entry (`batch_bytes_max` 4 KiB).
const READ_BYTES: u64 = 1024;
const CHUNK_BYTES: usize = 2048;

/// What an archive holds, as the reader hands it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archived {
    pub manifest: Manifest,
    pub consumers: Vec<Vec<u8>>,
    pub messages: Vec<StoredMessage>,
}

impl Archived {
    /// Reads a whole archive (in memory).
    pub fn read(archive: &[u8]) -> Result<Archived, String> {
        let (mut manifest, mut consumers, mut messages) = (None, Vec::new(), Vec::new());
        ArchiveReader::read(archive, |item| {
            match item {
                ArchiveItem::Manifest(m) => manifest = Some(m),
                ArchiveItem::Consumer(c) => consumers.push(c.to_vec()),
                ArchiveItem::Message(m) => messages.push(m),
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        Ok(Archived { manifest: manifest.expect("a read archive has a manifest"), consumers, messages })
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Step {
    Create,
    Write,
    Abandon,
}

enum Write {
    Consumer(Bytes),
    Chunk(Bytes),
}

#[derive(Default)]
enum Phase {
    #[default]
    Idle,
    Creating {
        name: String,
        archived: Archived,
        writes: VecDeque<Write>,
    },
    Writing {
        name: String,
        archived: Archived,
        writes: VecDeque<Write>,
    },
    Abandoning {
        name: String,
    },
}

#[derive(Default)]
pub(super) struct Restores {
    phase: Phase,
    pending: Option<(NodeId, RequestId)>,
    started: u64,
    /// Restores whose every write was acknowledged: (stream, what it must hold).
    pub done: Vec<(String, Archived)>,
    /// Abandoned restores: none of these streams may exist at the end. A create whose
    /// outcome was unknown can still commit after its clean-up found nothing; it is then
    /// deleted again.
    abandoned: std::collections::BTreeSet<String>,
}

impl Restores {
    pub fn busy(&self) -> bool {
        !matches!(self.phase, Phase::Idle) || self.pending.is_some()
    }

    pub fn abandoned(&self) -> impl Iterator<Item = &str> {
        self.abandoned.iter().map(String::as_str)
    }

    /// The request in flight went to a node that stopped: its outcome is unknown.
    pub fn lost(&mut self, key: (NodeId, RequestId)) {
        if self.pending == Some(key) {
            self.pending = None;
            self.unknown_outcome();
        }
    }

    fn unknown_outcome(&mut self) {
        self.phase = match std::mem::take(&mut self.phase) {
            Phase::Creating { name, .. } | Phase::Writing { name, .. } | Phase::Abandoning { name } => {
                Phase::Abandoning { name }
            }
            Phase::Idle => Phase::Idle,
        };
    }
}

impl World {
    /// The live node leading stream `name`, if any.
    fn leader_of(&self, name: &str) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| {
            self.is_up(i)
                && self.nodes[i].as_ref().is_some_and(|n| n.replica_status(name).is_ok_and(|r| r.role == Role::Leader))
        })
    }

    pub(super) fn restore_clients(&mut self) -> Result<(), Violation> {
        if !self.spec.swarm.backup_restore || self.restores.pending.is_some() {
            return Ok(());
        }
        match &self.restores.phase {
            Phase::Idle => {
                let leftover = self.meta_leader().and_then(|i| {
                    let n = self.nodes[i].as_ref().expect("up");
                    self.restores.abandoned.iter().find(|name| n.stream_def(name).is_some()).cloned()
                });
                if let Some(name) = leftover {
                    self.log("restore-leftover", format_args!("\"stream\":{}", json_str(&name)));
                    self.restores.phase = Phase::Abandoning { name };
                } else if self.faults_on && self.chance(BACKUP_PPM) {
                    self.backup()?;
                }
            }
            Phase::Creating { name, archived, .. } => {
                let Some(i) = self.meta_leader() else { return Ok(()) };
                let mut config = archived.manifest.config.clone();
                config.name = name.clone();
                let replicas = usize::from(archived.manifest.replicas.unwrap_or(1));
                let now = self.now(i);
                if let Ok(req) = self.nodes[i].as_mut().expect("up").restore_stream(now, config, replicas) {
                    self.sent(i, req, Step::Create);
                }
            }
            Phase::Writing { name, writes, .. } => {
                let name = name.clone();
                let Some(i) = self.leader_of(&name) else { return Ok(()) };
                let (now, wall) = (self.now(i), self.wall(i));
                let node = self.nodes[i].as_mut().expect("up");
                let result = match writes.front().expect("a finished restore is no longer writing") {
                    Write::Consumer(c) => node.restore_consumer(now, &name, c.clone()),
                    Write::Chunk(c) => node.restore_chunk(now, wall, &name, c.clone()),
                };
                match result {
                    Ok(req) => self.sent(i, req, Step::Write),
                    // Too large for an entry, or otherwise not proposable: it never will be.
                    Err(e @ ClientError::InvalidRequest { .. }) => {
                        return Err(Violation::new(
                            round_trip::NAME,
                            self.t_ms,
                            format!("a write of a valid archive cannot be proposed: {e}"),
                        )
                        .node(i as u64 + 1)
                        .stream(&name));
                    }
                    Err(_) => {} // no leader here after all, busy: the next step tries again
                }
            }
            Phase::Abandoning { name } => {
                let name = name.clone();
                let Some(i) = self.meta_leader() else { return Ok(()) };
                let now = self.now(i);
                let node = self.nodes[i].as_mut().expect("up");
                match node.stream_def(&name).map(|d| d.group) {
                    None => {
                        self.restores.phase = Phase::Idle;
                        self.log("restore-abandoned", format_args!("\"stream\":{}", json_str(&name)));
                        self.restores.abandoned.insert(name);
                    }
                    Some(group) => {
                        if let Ok(req) = node.abandon_restore(now, &name, group) {
                            self.sent(i, req, Step::Abandon);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn sent(&mut self, i: usize, req: RequestId, step: Step) {
        let key = (i as u64 + 1, req);
        self.restores.pending = Some(key);
        self.in_flight.insert(key, Request::Restore(step));
        self.log("restore-step", format_args!("\"node\":{},\"step\":\"{step:?}\"", i + 1));
    }

    /// A stream's leader read into an archive, the damaged copies read, and a restore begun.
    fn backup(&mut self) -> Result<(), Violation> {
        let s = self.rng.gen_range(0..self.streams.len());
        let source = self.streams[s].name.clone();
        let Some(i) = self.leader_of(&source) else { return Ok(()) };
        let node = self.nodes[i].as_ref().expect("up");
        let Some(bytes) = write_archive(node, &source) else {
            self.log("backup-failed", format_args!("\"node\":{},\"stream\":{}", i + 1, json_str(&source)));
            return Ok(());
        };
        let archived = Archived::read(&bytes).map_err(|e| {
            Violation::new(round_trip::NAME, self.t_ms, format!("a fresh backup does not read back: {e}"))
                .stream(&source)
        })?;
        self.log(
            "backup",
            format_args!(
                "\"node\":{},\"stream\":{},\"msgs\":{},\"consumers\":{},\"bytes\":{}",
                i + 1,
                json_str(&source),
                archived.messages.len(),
                archived.consumers.len(),
                bytes.len()
            ),
        );
        for _ in 0..HOSTILE_PER_BACKUP {
            let pick: u64 = self.rng.gen();
            let Some((what, damaged)) = hostile::damage(&bytes, pick) else { continue };
            self.stats.hostile_archives += 1;
            hostile_archive::check(&archived, &what, &damaged, self.t_ms)?;
        }
        let name = format!("restored{}", self.restores.started);
        self.restores.started += 1;
        self.log("restore", format_args!("\"from\":{},\"stream\":{}", json_str(&source), json_str(&name)));
        let writes = planned_writes(&bytes);
        self.restores.phase = Phase::Creating { name, archived, writes };
        Ok(())
    }

    pub(super) fn restore_reply(&mut self, n: NodeId, step: Step, reply: Reply) -> Result<(), Violation> {
        self.restores.pending = None;
        self.log("restore-reply", format_args!("\"node\":{n},\"reply\":{}", json_str(&format!("{reply:?}"))));
        let phase = std::mem::take(&mut self.restores.phase);
        self.restores.phase = match (phase, step, reply) {
            (Phase::Creating { name, archived, writes }, Step::Create, Reply::StreamCreated { .. }) => {
                if writes.is_empty() {
                    // An empty stream from sequence 1: nothing to write; the final check
                    // compares its replicas.
                    self.restores.done.push((name, archived));
                    Phase::Idle
                } else {
                    Phase::Writing { name, archived, writes }
                }
            }
            (Phase::Writing { name, archived, mut writes }, Step::Write, Reply::Restored { .. })
            | (Phase::Writing { name, archived, mut writes }, Step::Write, Reply::ConsumerCreated { .. }) => {
                writes.pop_front();
                if writes.is_empty() {
                    // The answering leader applied every write: it must hold the archive.
                    let node = self.nodes[n as usize - 1].as_ref().expect("it just answered");
                    round_trip::check(node, &name, &archived, self.t_ms)?;
                    self.stats.restores_checked += 1;
                    self.restores.done.push((name, archived));
                    Phase::Idle
                } else {
                    Phase::Writing { name, archived, writes }
                }
            }
            (Phase::Writing { name, .. }, Step::Write, Reply::Rejected { reason }) => {
                return Err(Violation::new(
                    round_trip::NAME,
                    self.t_ms,
                    format!("a write of a valid archive was refused: {reason}"),
                )
                .node(n)
                .stream(&name));
            }
            (Phase::Abandoning { name }, Step::Abandon, Reply::StreamDeleted { .. }) => {
                self.log("restore-abandoned", format_args!("\"stream\":{}", json_str(&name)));
                self.restores.abandoned.insert(name);
                Phase::Idle
            }
            // Anything else (a failure, a lost leadership, a refused abandon): the outcome is
            // unknown, so the restore is abandoned (again).
            (phase, _, _) => {
                self.restores.phase = phase;
                self.restores.unknown_outcome();
                std::mem::take(&mut self.restores.phase)
            }
        };
        Ok(())
    }

    /// Every replica of every finished restore holds its archive, and no abandoned restore
    /// left its stream behind.
    pub(super) fn check_restores(&self) -> Result<(), Violation> {
        for name in &self.restores.abandoned {
            if let Some(n) = self.nodes.iter().flatten().find(|n| n.stream_def(name).is_some()) {
                return Err(Violation::new(round_trip::NAME, self.t_ms, "an abandoned restore left its stream")
                    .node(n.id())
                    .stream(name));
            }
        }
        for (name, archived) in &self.restores.done {
            let Some(def) = self.nodes.iter().flatten().find_map(|n| n.stream_def(name).cloned()) else {
                return Err(Violation::new(round_trip::NAME, self.t_ms, "a restored stream is gone").stream(name));
            };
            for p in def.peers {
                let node = self.nodes[p as usize - 1].as_ref().expect("every node is up at the end");
                round_trip::check(node, name, archived, self.t_ms)?;
            }
        }
        Ok(())
    }

    /// Names and peers of the finished restores (the liveness phase waits for them to converge).
    pub(super) fn restored_streams(&self) -> Vec<(String, Vec<NodeId>)> {
        self.restores
            .done
            .iter()
            .filter_map(|(name, _)| {
                let def = self.nodes.iter().flatten().find_map(|n| n.stream_def(name).cloned())?;
                Some((name.clone(), def.peers))
            })
            .collect()
    }
}

/// Stream `name` on `node` (its leader) as an archive, or `None` if a read failed (an
/// injected disk error, a replica catching up).
fn write_archive(node: &Node<FaultFs>, name: &str) -> Option<Vec<u8>> {
    let info = node.stream_info(name).ok()?;
    if info.stream.catching_up.is_some() {
        return None;
    }
    let def = node.stream_def(name)?;
    let state = info.stream.state;
    let manifest = Manifest {
        format: String::new(),
        version: 0,
        config: def.config.clone(),
        state: state.into(),
        replicas: Some(def.peers.len() as u8),
    };
    let mut out = Vec::new();
    let mut w = ArchiveWriter::new(&mut out, manifest).ok()?;
    for c in node.consumer_names(name).ok()? {
        w.push_consumer(&node.consumer_export(name, &c).ok()??).ok()?;
    }
    let mut from = state.first_seq;
    while from <= state.last_seq {
        let chunk = node.backup_chunk(name, from, state.last_seq, READ_BYTES).ok()??;
        for m in &chunk.messages {
            w.push(m).ok()?;
        }
        from = chunk.through_seq + 1;
    }
    w.finish().ok()?;
    Some(out)
}

/// The restore's writes in order, as the command makes them (`restore_writes`), encoded.
fn planned_writes(archive: &[u8]) -> VecDeque<Write> {
    let mut writes = VecDeque::new();
    restore_writes(archive, CHUNK_BYTES, |w| {
        writes.push_back(match w {
            RestoreWrite::Chunk(c) => Write::Chunk(Bytes::from(c.encode())),
            RestoreWrite::Consumer(c) => Write::Consumer(c),
        });
        Ok(())
    })
    .expect("an archive that read back restores");
    writes
}
