//! Raft safety, from what every replica reports after every step:
//! * election safety: at most one leader per term and group;
//! * leader completeness: a node seen leading term T, while no higher term has been seen,
//!   holds every entry seen committed before (its log reaches the highest commit index
//!   observed so far);
//! * committed entries never change: covered by [`super::agreement`], whose states at one
//!   index would differ;
//! * no commit without a quorum: while a majority of a group's replicas is down, its commit
//!   index does not pass the longest log that existed when the majority went down.

use super::Violation;
use crate::cluster::history::StreamHistory;
use sluice_core::raft::Role;

pub const NAME: &str = "raft-safety";

pub struct Observation {
    pub node: u64,
    pub role: Role,
    pub term: u64,
    pub last_index: u64,
    pub commit: u64,
}

pub fn observe(stream: &mut StreamHistory, o: &Observation, at_ms: u64) -> Result<(), Violation> {
    let fail = |stream: &StreamHistory, detail: String| {
        Err(Violation::new(NAME, at_ms, detail).node(o.node).stream(&stream.name))
    };
    if o.role == Role::Leader {
        match stream.leaders.get(&o.term) {
            Some(&other) if other != o.node => {
                return fail(stream, format!("two leaders in term {}: n{other} and n{}", o.term, o.node));
            }
            Some(_) => {}
            None => {
                if o.term >= stream.max_term && o.last_index < stream.max_commit {
                    return fail(
                        stream,
                        format!(
                            "leader of term {} has log through {} but index {} was committed before",
                            o.term, o.last_index, stream.max_commit
                        ),
                    );
                }
                stream.leaders.insert(o.term, o.node);
            }
        }
    }
    if let Some(ceiling) = stream.no_quorum_ceiling {
        if o.commit > ceiling {
            return fail(
                stream,
                format!("commit index {} with a majority down (no log reached past {ceiling})", o.commit),
            );
        }
    }
    Ok(())
}

/// After every node's observation of a step: the step's maxima become the reference.
pub fn end_step(stream: &mut StreamHistory, observed: &[Observation]) {
    for o in observed {
        stream.max_term = stream.max_term.max(o.term);
        stream.max_commit = stream.max_commit.max(o.commit);
        stream.max_last_index = stream.max_last_index.max(o.last_index);
    }
}
