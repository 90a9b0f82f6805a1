#!/usr/bin/env python3
"""Allocate latency and Redis commands per allocation, with and without [fleet].

Starts one redis-server (loopback, no persistence) and two Traverse nodes from the same binary:
"single" (no fleet) and "fleet" (--redis). Then, alternating A B A B in rounds of 50, one client
per cycle does Allocate (authenticated, nonce already known) and Refresh lifetime 0, and the time
from sending the authenticated Allocate to its success response is recorded. Redis commands per
allocation come from INFO commandstats over the fleet node's cycles, minus the commands its
background publication made over the same time (measured idle just before).

Usage: fleet-allocate.py [--traverse .build-bench/release/traverse] [--cycles 1000]
All traffic is on 127.0.0.1; every process started is stopped at exit.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Tests" / "Interop"))
import stunclient as sc  # noqa: E402

SECRET = "bench-fleet-secret-0123456789"


def free_port(kind=socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def commandstats(port: int, only: tuple[str, ...] = ()) -> int:
    """Commands Redis executed (those run inside scripts included); `only`: just these commands."""
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "commandstats"], capture_output=True, text=True).stdout
    total = 0
    for line in out.splitlines():
        if line.startswith("cmdstat_") and not line.startswith("cmdstat_info"):
            name = line[len("cmdstat_"):].split(":")[0]
            if only and name not in only:
                continue
            total += int(line.split("calls=")[1].split(",")[0])
    return total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traverse", default=str(REPO / ".build-bench/release/traverse"))
    ap.add_argument("--cycles", type=int, default=1000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fleet-allocate."))
    procs: list[subprocess.Popen] = []
    try:
        rport = free_port()
        procs.append(subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(work)], stdout=subprocess.DEVNULL))
        time.sleep(0.5)
        nodes = {}
        for name in ("single", "fleet"):
            port = free_port(socket.SOCK_DGRAM)
            argv = [args.traverse, "serve", "--listen", f"127.0.0.1:{port}", "--user", "alice:wonderland",
                    "--user-quota", "100000", "--admin-listen", "off", "--log-level", "warning",
                    "--state-dir", str(work / name)]
            env = dict(os.environ)
            if name == "fleet":
                argv += ["--redis", f"redis://127.0.0.1:{rport}", "--node-id", "bench"]
                env["TRAVERSE_FLEET_SECRET"] = SECRET
            procs.append(subprocess.Popen(argv, env=env, stdout=open(work / f"{name}.log", "w"), stderr=subprocess.STDOUT))
            nodes[name] = ("127.0.0.1", port)
        time.sleep(1.5)
        # Background commands (publication) per second, idle.
        c0, t0 = commandstats(rport), time.monotonic()
        time.sleep(5)
        background = (commandstats(rport) - c0) / (time.monotonic() - t0)

        latencies = {"single": [], "fleet": []}
        fleet_commands = 0.0
        fleet_sent = 0
        fleet_allocations = 0
        rounds = max(1, args.cycles // 50)
        for r in range(rounds):
            for name in ("single", "fleet"):
                c0, t0 = commandstats(rport), time.monotonic()
                s0 = commandstats(rport, ("eval", "evalsha", "xadd"))
                for _ in range(50):
                    t = sc.TurnClient(nodes[name], "alice", "wonderland")
                    t.authenticated(sc.REFRESH, [])  # draws the 401: realm and nonce known
                    msg = sc.Message(sc.ALLOCATE, sc.CLASS_REQUEST,
                                     attributes=[(sc.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))])
                    msg.add(sc.USERNAME, t.username.encode())
                    msg.add(sc.REALM, (t.realm or "").encode())
                    msg.add(sc.NONCE, t.nonce or b"")
                    start = time.perf_counter()
                    resp = t.transact(msg, key=t.key)
                    elapsed = time.perf_counter() - start
                    assert resp.is_success, resp
                    latencies[name].append(elapsed * 1e6)
                    assert t.refresh(0).is_success
                    t.close()
                if name == "fleet":
                    fleet_commands += commandstats(rport) - c0 - background * (time.monotonic() - t0)
                    fleet_sent += commandstats(rport, ("eval", "evalsha", "xadd")) - s0
                    fleet_allocations += 50

        def pct(v, p):
            v = sorted(v)
            return v[min(len(v) - 1, int(p / 100 * len(v)))]

        print(f"Allocate latency, {rounds * 50} per node, alternating rounds of 50 (µs):")
        print(f"{'node':<8} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>9}")
        for name in ("single", "fleet"):
            v = latencies[name]
            print(f"{name:<8} {pct(v, 50):8.0f} {pct(v, 90):8.0f} {pct(v, 99):8.0f} {max(v):9.0f}")
        s50, f50 = pct(latencies["single"], 50), pct(latencies["fleet"], 50)
        s99, f99 = pct(latencies["single"], 99), pct(latencies["fleet"], 99)
        print(f"fleet/single: p50 {f50 / s50:.2f}, p99 {f99 / s99:.2f}")
        print(f"Redis round trips per allocation (made and ended: EVAL, EVAL, XADD): {fleet_sent / fleet_allocations:.2f}")
        print(f"Redis commands executed per allocation (including those inside the scripts): "
              f"{fleet_commands / fleet_allocations:.2f}  (background publication: {background:.1f} commands/s)")
        return 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
