"""Interop with Python's nats-py (a client no one here wrote) against a local 3-node sluice
cluster: create an R3 stream, publish with acks and message ids, read every message back by
sequence through every node, see de-duplication and NATS error codes, and pull from a durable consumer with acks and a
redelivery. Run by
scripts/interop-py, which starts the cluster; the URLs come as arguments."""

import asyncio
import sys
import time

import nats
import nats.errors
from nats.js.api import ConsumerConfig, StreamConfig
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

SETTLE_S = 30.0


async def retry(what, fn):
    start = time.monotonic()
    while True:
        try:
            return await fn()
        except Exception as e:  # elections take a few seconds after start
            if time.monotonic() - start > SETTLE_S:
                raise AssertionError(f"{what}: {e!r}") from e
            print(f"{what}: {e!r}; retrying", file=sys.stderr)
            await asyncio.sleep(0.2)


async def main(urls):
    clients = [await nats.connect(u, allow_reconnect=False) for u in urls]
    js = [c.jetstream(timeout=10) for c in clients]

    info = await retry("add_stream", lambda: js[0].add_stream(
        StreamConfig(name="PY", subjects=["py.>"], num_replicas=3)))
    assert info.config.name == "PY" and info.config.num_replicas == 3, info

    n = 40
    for i in range(1, n + 1):
        ack = await retry(f"publish {i}", lambda i=i: js[i % 3].publish(
            f"py.{i}", f"msg {i}".encode(), headers={"Nats-Msg-Id": f"py-{i}"}))
        assert ack.stream == "PY" and ack.seq == i, ack

    dup = await js[2].publish("py.5", b"again", headers={"Nats-Msg-Id": "py-5"})
    assert dup.seq == 5 and dup.duplicate, dup

    for k in range(3):
        for seq in range(1, n + 1):
            m = await js[k].get_msg("PY", seq)
            assert m.seq == seq and m.subject == f"py.{seq}" and m.data == f"msg {seq}".encode(), m
            assert m.headers.get("Nats-Msg-Id") == f"py-{seq}", m.headers
        try:
            await js[k].get_msg("PY", n + 1)
            raise AssertionError("a missing sequence was found")
        except NotFoundError as e:
            assert e.err_code == 10037, e

    # Direct gets: each node answers from its own replica, which may trail the leader by a
    # heartbeat, so each waits until that replica has the last message.
    for k in range(3):
        await retry(f"direct get {n} from node {k}", lambda k=k: js[k].get_msg("PY", n, direct=True))
        for seq in range(1, n + 1):
            m = await js[k].get_msg("PY", seq, direct=True)
            assert m.seq == seq and m.subject == f"py.{seq}" and m.data == f"msg {seq}".encode(), m
            assert m.headers.get("Nats-Msg-Id") == f"py-{seq}", m.headers
            assert m.headers.get("Nats-Stream") == "PY", m.headers
        try:
            await js[k].get_msg("PY", n + 1, direct=True)
            raise AssertionError("a direct get found a missing sequence")
        except NotFoundError:
            pass

    si = await js[1].stream_info("PY")
    assert (si.state.messages, si.state.first_seq, si.state.last_seq) == (n, 1, n), si.state

    try:
        await js[0].publish("nowhere.x", b"x")
        raise AssertionError("a publish with no stream was acknowledged")
    except NoStreamResponseError:
        pass

    try:
        await js[1].add_stream(StreamConfig(name="PY", subjects=["other.>"], num_replicas=3))
        raise AssertionError("a conflicting create succeeded")
    except APIError as e:
        assert e.err_code == 10058, e

    # A durable pull consumer: nats-py's pull_subscribe creates it, fetch pulls, acks are
    # replicated, and an unacked message comes back after the ack wait.
    psub = await retry("pull_subscribe", lambda: js[1].pull_subscribe(
        "py.>", durable="pyworker", stream="PY", config=ConsumerConfig(ack_wait=1.5)))
    got = []
    while len(got) < n:
        batch = await psub.fetch(min(10, n - len(got)), timeout=5)
        got.extend(batch)
    assert [m.metadata.sequence.stream for m in got] == list(range(1, n + 1)), [m.metadata.sequence.stream for m in got]
    for m in got:
        if m.metadata.sequence.stream != 3:
            await m.ack_sync()
    ci = await js[2].consumer_info("PY", "pyworker")
    assert (ci.ack_floor.stream_seq, ci.num_ack_pending, ci.delivered.stream_seq) == (2, 1, n), ci
    await asyncio.sleep(2)
    again = await psub.fetch(1, timeout=5)
    assert [(m.metadata.sequence.stream, m.metadata.num_delivered) for m in again] == [(3, 2)], again
    await again[0].ack_sync()
    try:
        await psub.fetch(1, timeout=1)
        raise AssertionError("an acked message came back")
    except nats.errors.TimeoutError:
        pass
    ci = await js[0].consumer_info("PY", "pyworker")
    assert (ci.ack_floor.stream_seq, ci.num_ack_pending) == (n, 0), ci
    assert await js[0].delete_consumer("PY", "pyworker")

    assert await js[0].delete_stream("PY")
    try:
        await js[2].stream_info("PY")
        raise AssertionError("a deleted stream was found")
    except NotFoundError as e:
        assert e.err_code == 10059, e

    for c in clients:
        await c.close()
    print(f"nats-py interop: {n} messages published, read back through 3 nodes (leader and direct gets), de-duplication seen, pull consumer fetched, acked and redelivered")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
