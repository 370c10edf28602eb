//! The NATS client-protocol parser on arbitrary bytes, whole and fed in two pieces (as TCP
//! may deliver them): it must parse, wait for more, or refuse, never panic, and a piece fed
//! late must not change what the first piece parsed to.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice_server::nats::proto::parse;

const MAX_PAYLOAD: usize = 1 << 20;
/// Operations parsed per input at most (each consumes at least one byte).
const OPS_MAX: usize = 100_000;

fn parse_all(buf: &mut BytesMut) -> Vec<String> {
    let mut ops = Vec::new();
    for _ in 0..OPS_MAX {
        match parse(buf, MAX_PAYLOAD) {
            Ok(Some(op)) => ops.push(format!("{op:?}")),
            Ok(None) => break,
            Err(e) => {
                ops.push(format!("error {e:?}"));
                break;
            }
        }
    }
    ops
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let at = rest.len() * usize::from(split) / 255;
    let mut buf = BytesMut::from(&rest[..at]);
    let mut pieces = parse_all(&mut buf);
    if pieces.last().is_some_and(|l| l.starts_with("error")) {
        return;
    }
    buf.extend_from_slice(&rest[at..]);
    pieces.extend(parse_all(&mut buf));
    let whole_rest = parse_all(&mut BytesMut::from(rest));
    assert_eq!(pieces, whole_rest, "fed in two pieces at {at}");
});
