//! Consumers in the workload (`Swarm::consumers`): one durable pull consumer per stream,
//! created through the stream's leader, pulled from in small batches, and each delivery
//! acked, nakked or left to time out. The consumer's state is replicated state: replica
//! agreement and recovery equivalence compare it through the state hash, so a replica that
//! applies a pull or an ack differently fails them.

use super::workload::Request;
use super::world::{json_str, World};
use rand::Rng;
use sluice_core::env::NodeId;
use sluice_core::stream::consumer::{AckKind, ConsumerConfig, Delivery};

pub(super) const CONSUMER: &str = "c";
/// Chance per step and stream of a pull (or of the create, while there is no consumer).
const PULL_PPM: u64 = 100_000;
/// Kept small: a consumer export (its pending map) must fit one simulated Raft entry
/// (`batch_bytes_max` is 4 KiB in `node_config`).
const MAX_ACK_PENDING: u32 = 16;

impl World {
    pub(super) fn consumer_clients(&mut self) {
        if !self.spec.swarm.consumers {
            return;
        }
        for s in 0..self.streams.len() {
            if !self.chance(PULL_PPM) {
                continue;
            }
            let Some(leader) = self.stream_leader(s) else { continue };
            let i = leader as usize - 1;
            let name = self.streams[s].name.clone();
            let (now, wall) = (self.now(i), self.wall(i));
            let node = self.nodes[i].as_mut().expect("a leader is up");
            let exists = node.consumer_info(&name, CONSUMER).ok().flatten().is_some();
            let (what, result) = if exists {
                ("pull", node.consumer_next(now, wall, &name, CONSUMER, 4, 4096))
            } else {
                let mut config = ConsumerConfig::new(CONSUMER);
                config.ack_wait_ms = 2_000;
                config.max_ack_pending = MAX_ACK_PENDING;
                ("consumer-create", node.create_consumer(now, wall, &name, config))
            };
            if let Ok(req) = result {
                self.in_flight.insert((leader, req), Request::Consumer { stream: s });
                self.log(what, format_args!("\"node\":{leader},\"stream\":{}", json_str(&name)));
            }
        }
    }

    /// A pull's deliveries: about half acked, a few nakked, the rest left to redeliver.
    pub(super) fn consumer_delivered(&mut self, n: NodeId, s: usize, deliveries: Vec<Delivery>) {
        let i = n as usize - 1;
        for d in deliveries {
            let kind = match self.rng.gen_range(0..20) {
                0..=9 => AckKind::Ack,
                10..=12 => AckKind::Nak { delay_ns: 0 },
                _ => continue,
            };
            if !self.is_up(i) {
                return;
            }
            let name = self.streams[s].name.clone();
            let (now, wall) = (self.now(i), self.wall(i));
            let node = self.nodes[i].as_mut().expect("up");
            if let Ok(req) = node.consumer_ack(now, wall, &name, CONSUMER, d.message.seq, kind) {
                self.in_flight.insert((n, req), Request::Consumer { stream: s });
                self.log(
                    "ack-consumer",
                    format_args!(
                        "\"node\":{n},\"stream\":{},\"seq\":{},\"kind\":\"{kind:?}\"",
                        json_str(&name),
                        d.message.seq
                    ),
                );
            }
        }
    }
}
