"""Crash loop on the real binary (run by scripts/kill-test, which builds it and installs
nats-py): a local 3-node sluice cluster, publishers with acks and message ids, and a killer
that SIGKILLs random nodes (sometimes two at once, a lost quorum) and restarts them, for a
bounded number of kills and time. Then every node is checked on its own, through direct gets
(each answers from its own replica):

* every acknowledged message is there exactly once, at the sequence its ack named, with the
  payload and subject that were published;
* no message id is stored twice, acknowledged or not (a publish whose ack was lost is
  retried with the same id; de-duplication must hold across crashes and leader changes);
* sequences 1..last have no holes (nothing is deleted in this test), and every node holds
  the same messages.

Processes are only the ones this script started, stopped by PID. The seed of the kill
schedule and the publish pacing is printed; timing on a real machine still varies, so a
seed does not replay a run exactly (the simulator is for that).
"""

import argparse
import asyncio
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import nats
from nats.js.errors import NotFoundError

STREAM = "KILL"
# A publish that is not acknowledged by then is given up (reported, and allowed to be
# stored at most once). Far inside the stream's 2-minute de-duplication window.
RETRY_S_MAX = 60.0
PUBLISH_TIMEOUT_S = 2.0
CONVERGE_S_MAX = 120.0
READ_CONCURRENCY = 256


async def quiet(_e):
    """nats-py's error callback: refused reconnects to a killed node are expected here."""


def payload(msg_id: str) -> bytes:
    digest = hashlib.sha256(msg_id.encode()).hexdigest()
    return f"{msg_id}:{digest}".encode()


class Cluster:
    def __init__(self, binary, data, client_base, cluster_base, extra):
        self.binary, self.data, self.extra = binary, data, extra
        self.client_ports = [client_base + i for i in range(3)]
        self.cluster_ports = [cluster_base + i for i in range(3)]
        self.procs = [None, None, None]
        os.makedirs(data, exist_ok=True)

    def urls(self):
        return [f"nats://127.0.0.1:{p}" for p in self.client_ports]

    def start(self, i):
        assert self.procs[i] is None or self.procs[i].poll() is not None
        peers = ",".join(f"n{j + 1}=127.0.0.1:{self.cluster_ports[j]}" for j in range(3) if j != i)
        cmd = [self.binary, "server", "--name", f"n{i + 1}", "--data", f"{self.data}/n{i + 1}",
               "--client", f"127.0.0.1:{self.client_ports[i]}",
               "--cluster", f"127.0.0.1:{self.cluster_ports[i]}", "--peers", peers] + self.extra
        log = open(f"{self.data}/n{i + 1}.log", "ab")
        self.procs[i] = subprocess.Popen(cmd, stdout=log, stderr=log)
        log.close()

    def kill(self, i):
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
        if p is not None and p.returncode not in (-signal.SIGKILL, None):
            raise AssertionError(f"n{i + 1} had exited on its own with {p.returncode} before the kill")

    def check_alive(self):
        for i, p in enumerate(self.procs):
            if p is not None and p.poll() is not None:
                with open(f"{self.data}/n{i + 1}.log", "rb") as f:
                    tail = f.read()[-2000:].decode(errors="replace")
                raise AssertionError(f"n{i + 1} exited on its own with status {p.returncode}; "
                                     f"the end of {self.data}/n{i + 1}.log:\n{tail}")

    def stop_all(self):
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            if p is None:
                continue
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def wait_port(cluster, i, deadline_s=20.0):
    start = time.monotonic()
    port = cluster.client_ports[i]
    while time.monotonic() - start < deadline_s:
        cluster.check_alive()
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"n{i + 1}: port {port} never opened")


class Ledger:
    """What the publishers saw: acknowledged ids with their sequences, and ids given up."""

    def __init__(self):
        self.acked = {}  # msg id -> (seq, subject)
        self.given_up = set()
        self.attempts = 0
        self.duplicates = 0

    def ack(self, msg_id, seq, subject, duplicate):
        if duplicate:
            self.duplicates += 1
        old = self.acked.get(msg_id)
        if old is not None and old[0] != seq:
            raise AssertionError(f"{msg_id} acknowledged at two sequences: {old[0]} and {seq}")
        self.acked[msg_id] = (seq, subject)


async def publisher(k, urls, ledger, stop, rng):
    nc = await nats.connect(servers=urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1,
                            connect_timeout=1, allow_reconnect=True, error_cb=quiet)
    js = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
    i = 0
    while not stop.is_set():
        i += 1
        msg_id = f"p{k}-{i}"
        subject = f"kill.{k}"
        first = time.monotonic()
        while True:
            ledger.attempts += 1
            try:
                ack = await js.publish(subject, payload(msg_id), headers={"Nats-Msg-Id": msg_id})
                if ack.stream != STREAM:
                    raise AssertionError(f"ack for {msg_id} names stream {ack.stream}")
                ledger.ack(msg_id, ack.seq, subject, bool(ack.duplicate))
                break
            except AssertionError:
                raise
            except Exception:
                if time.monotonic() - first > RETRY_S_MAX:
                    ledger.given_up.add(msg_id)
                    break
                await asyncio.sleep(0.02 + rng.random() * 0.05)
    await nc.close()


async def killer(cluster, args, rng, stop, counts):
    start = time.monotonic()
    while counts["kills"] < args.kills and time.monotonic() - start < args.seconds:
        await asyncio.sleep(rng.uniform(0.3, 2.5))
        cluster.check_alive()
        victims = rng.sample(range(3), 2 if rng.random() < args.double else 1)
        for i in victims:
            cluster.kill(i)
        counts["kills"] += len(victims)
        counts["quorum_lost"] += len(victims) >= 2
        print(f"kill {counts['kills']:3}: n{'+n'.join(str(v + 1) for v in victims)} "
              f"(acked so far {counts['acked']()})", flush=True)
        await asyncio.sleep(rng.uniform(0.05, 2.0))
        for i in victims:
            cluster.start(i)
        for i in victims:
            await wait_port(cluster, i)
    stop.set()


async def create_stream(url):
    nc = await nats.connect(url, allow_reconnect=False, error_cb=quiet)
    js = nc.jetstream(timeout=10)
    start = time.monotonic()
    while True:
        try:
            await js.add_stream(name=STREAM, subjects=["kill.>"], num_replicas=3)
            break
        except Exception as e:  # elections take a moment after start
            if time.monotonic() - start > 30:
                raise AssertionError(f"creating the stream: {e!r}") from e
            await asyncio.sleep(0.2)
    await nc.close()


async def read_node(url, last_seq):
    """Every message of the stream as node `url`'s replica holds it: seq -> (id, subject, data)."""
    nc = await nats.connect(url, allow_reconnect=False, error_cb=quiet)
    js = nc.jetstream(timeout=10)
    start = time.monotonic()
    # Wait until this replica has applied the last sequence.
    while True:
        try:
            await js.get_msg(STREAM, last_seq, direct=True)
            break
        except Exception as e:
            if time.monotonic() - start > CONVERGE_S_MAX:
                raise AssertionError(f"{url} never reached sequence {last_seq}: {e!r}") from e
            await asyncio.sleep(0.2)
    found = {}
    sem = asyncio.Semaphore(READ_CONCURRENCY)

    async def one(seq):
        async with sem:
            for attempt in range(50):
                try:
                    m = await js.get_msg(STREAM, seq, direct=True)
                    found[seq] = (m.headers.get("Nats-Msg-Id"), m.subject, m.data)
                    return
                except NotFoundError:
                    found[seq] = None
                    return
                except Exception:
                    await asyncio.sleep(0.1)
            raise AssertionError(f"{url}: sequence {seq} unreadable")

    await asyncio.gather(*(one(seq) for seq in range(1, last_seq + 1)))
    try:
        await js.get_msg(STREAM, last_seq + 1, direct=True)
        extra = True
    except NotFoundError:
        extra = False
    await nc.close()
    if extra:
        raise AssertionError(f"{url} holds a message past the last sequence {last_seq}")
    return found


def check_node(name, found, ledger, last_seq):
    holes = [s for s in range(1, last_seq + 1) if found.get(s) is None]
    if holes:
        raise AssertionError(f"{name}: {len(holes)} holes, first at sequence {holes[0]}")
    by_id = {}
    for seq, (msg_id, subject, data) in found.items():
        if msg_id is None:
            raise AssertionError(f"{name}: sequence {seq} has no Nats-Msg-Id")
        if msg_id in by_id:
            raise AssertionError(f"{name}: {msg_id} stored twice, at {by_id[msg_id]} and {seq}")
        by_id[msg_id] = seq
        if data != payload(msg_id):
            raise AssertionError(f"{name}: sequence {seq} ({msg_id}) has the wrong payload")
    for msg_id, (seq, subject) in ledger.acked.items():
        if by_id.get(msg_id) != seq:
            raise AssertionError(f"{name}: acknowledged {msg_id} at {seq}, stored at {by_id.get(msg_id)}")
        if found[seq][1] != subject:
            raise AssertionError(f"{name}: {msg_id} stored under {found[seq][1]}, published to {subject}")
    return len(found)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--kills", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--double", type=float, default=0.2, help="share of kills that take two nodes")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--client-port", type=int, default=24222)
    ap.add_argument("--cluster-port", type=int, default=26222)
    ap.add_argument("--server-args", default="")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"kill-test seed {seed}: {args.kills} kills within {args.seconds:.0f} s, "
          f"{args.publishers} publishers, server args {args.server_args!r}", flush=True)
    rng = random.Random(seed)

    cluster = Cluster(args.bin, args.data, args.client_port, args.cluster_port, args.server_args.split())
    try:
        for i in range(3):
            cluster.start(i)
        for i in range(3):
            await wait_port(cluster, i)
        await create_stream(cluster.urls()[0])

        ledger = Ledger()
        stop = asyncio.Event()
        counts = {"kills": 0, "quorum_lost": 0, "acked": lambda: len(ledger.acked)}
        started = time.monotonic()
        pubs = [asyncio.create_task(publisher(k, cluster.urls(), ledger, stop, random.Random(rng.random())))
                for k in range(args.publishers)]
        await killer(cluster, args, rng, stop, counts)
        await asyncio.gather(*pubs)
        elapsed = time.monotonic() - started
        cluster.check_alive()

        # Every node is up again; find the last sequence from the leader, then read each
        # node's own replica.
        nc = await nats.connect(servers=cluster.urls(), allow_reconnect=True, error_cb=quiet)
        js = nc.jetstream(timeout=10)
        deadline = time.monotonic() + CONVERGE_S_MAX
        while True:
            try:
                info = await js.stream_info(STREAM)
                break
            except Exception as e:
                if time.monotonic() > deadline:
                    raise AssertionError(f"stream info after the kills: {e!r}") from e
                await asyncio.sleep(0.2)
        await nc.close()
        last_seq = info.state.last_seq
        if info.state.messages != last_seq or info.state.first_seq != 1:
            raise AssertionError(f"stream state {info.state}: expected 1..{last_seq} with no deletes")
        if ledger.acked and max(s for s, _ in ledger.acked.values()) > last_seq:
            raise AssertionError("an acknowledged sequence is past the stream's last sequence")

        views = []
        for i, url in enumerate(cluster.urls()):
            found = await read_node(url, last_seq)
            views.append(found)
            check_node(f"n{i + 1}", found, ledger, last_seq)
        if not (views[0] == views[1] == views[2]):
            raise AssertionError("the nodes hold different messages")
        cluster.check_alive()

        checked = sum(len(v) for v in views)
        result = {
            "seed": seed,
            "kills": counts["kills"],
            "quorum_lost": counts["quorum_lost"],
            "seconds": round(elapsed, 1),
            "acked": len(ledger.acked),
            "acked_as_duplicate": ledger.duplicates,
            "publish_attempts": ledger.attempts,
            "given_up": len(ledger.given_up),
            "stored": last_seq,
            "checked_on_every_node": checked,
        }
        print("kill-test result: " + json.dumps(result))
        print(f"kill-test: pass: {counts['kills']} kills survived ({counts['quorum_lost']} took two nodes), "
              f"{len(ledger.acked)} acknowledged messages each found exactly once on all 3 nodes, "
              f"{checked} stored messages checked")
    finally:
        cluster.stop_all()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except AssertionError as e:
        print(f"kill-test: FAIL: {e}", file=sys.stderr)
        sys.exit(1)
