//! Every decoder of replicated bytes that a peer (or a disk) hands a node: Raft messages,
//! stream log entries, catch-up chunks, stream snapshots and meta entries. Each must return
//! Ok or Err, never panic, and a Raft message that decodes must encode back to a frame that
//! decodes to the same message.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_core::node::MetaEntry;
use sluice_core::raft::message::Message;
use sluice_core::stream::{CatchupChunk, StreamEntry, StreamSnapshot};

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    if let Ok(m) = Message::decode(&frame) {
        let again = Message::decode(&m.encode()).expect("an encoded message decodes");
        assert_eq!(again, m);
    }
    if let Ok(e) = StreamEntry::decode(data) {
        assert_eq!(StreamEntry::decode(&e.encode().expect("a decoded entry encodes")), Ok(e));
    }
    let _ = CatchupChunk::decode(data);
    let _ = StreamSnapshot::decode(data);
    let _ = MetaEntry::decode(data);
});
