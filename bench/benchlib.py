"""Pieces the benchmark scripts share (bench/compare, bench/snapshot-stalls): starting a local
sluice cluster through scripts/cluster, running `sluice bench` and parsing its report, and a
line describing the machine."""

import os
import platform
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLUICE = os.path.join(ROOT, "target", "release", "sluice")
CLUSTER_SCRIPT = os.path.join(ROOT, "scripts", "cluster")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


class SluiceCluster:
    """A sluice cluster started by scripts/cluster (the README's), stopped by its PID files."""

    def __init__(self, data_dir, label, server_args, client_base, cluster_base, rust_log="info"):
        self.dir = os.path.join(data_dir, label)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.env = dict(os.environ, SLUICE_BIN=SLUICE, SLUICE_CLIENT_PORT=str(client_base),
                        SLUICE_CLUSTER_PORT=str(cluster_base), SLUICE_SERVER_ARGS=server_args, RUST_LOG=rust_log)
        up = subprocess.run([CLUSTER_SCRIPT, "up", self.dir], env=self.env, capture_output=True, text=True)
        if up.returncode != 0:
            self.stop()
            sys.exit(f"scripts/cluster up failed:\n{up.stderr[-3000:]}")

    def log(self, node):
        with open(os.path.join(self.dir, f"n{node}.log"), errors="replace") as f:
            return f.read()

    def stop(self):
        subprocess.run([CLUSTER_SCRIPT, "down", self.dir], env=self.env, check=False)


def seconds(duration):
    """`20s`, `1500ms`, `2m` (the forms `sluice bench --duration` takes) in seconds."""
    m = re.fullmatch(r"(\d+)(ms|s|m)?", duration)
    if not m:
        sys.exit(f"--duration {duration!r}: expected e.g. 20s, 1500ms or 2m")
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n / 1000 if unit == "ms" else n * 60 if unit == "m" else n


LINE1 = re.compile(r"= (\d+) msg/s \((\d+) errors\)")
LINE2 = re.compile(r"min (\d+) p50 (\d+) p90 (\d+) p99 (\d+) p99\.9 (\d+) max (\d+)")


def bench(client_port, stream, batch, size, duration):
    """One `sluice bench` run (R3 stream created first): {"rate": msg/s, "lat": [min, p50, p90,
    p99, p99.9, max] in µs}. Exits if it fails or any publish was refused."""
    cmd = [SLUICE, "bench", "--server", f"nats://127.0.0.1:{client_port}", "--stream", stream,
           "--subject", f"{stream.lower()}.x", "--batch", str(batch), "--size", str(size),
           "--duration", duration, "--replicas", "3"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds(duration) + 180)
    if run.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{run.stderr[-3000:]}")
    out = run.stdout
    m1, m2 = LINE1.search(out), LINE2.search(out)
    if not (m1 and m2):
        sys.exit(f"unexpected bench output:\n{out}")
    rate, errors = int(m1.group(1)), int(m1.group(2))
    lat = [int(x) for x in m2.groups()]
    if errors:
        sys.exit(f"{errors} publishes were refused:\n{out}")
    return {"rate": rate, "lat": lat}


def machine():
    """The machine line of a report: CPUs, model, kernel, and the commit measured."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    return f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}; sluice at {commit}"


def build_sluice():
    sh(["cargo", "build", "-q", "--release", "-p", "sluice-server", "--bin", "sluice"], cwd=ROOT)
