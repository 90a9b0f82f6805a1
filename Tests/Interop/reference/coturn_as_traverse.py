#!/usr/bin/env python3
"""Run coturn's turnserver behind the `traverse serve` command line, to check the interop suite itself.

    TRAVERSE_BIN=Tests/Interop/reference/coturn_as_traverse.py .venv/bin/python -m pytest -q Tests/Interop

coturn cannot mix static users and REST secrets: set REFERENCE_REST=1 to run it with the
secret (then only the REST tests apply). Known differences from what the suite demands of
Traverse (coturn 4.6.1): it allows the peer ::ffff:127.0.0.1 (CVE-2026-27624) and
keeps an allocation briefly after Refresh(lifetime 0).
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("command")
for name in ("listen", "user", "secret", "allow-peer", "relay-address"):
    parser.add_argument("--" + name, action="append", default=[])
for name in ("announce-file", "state-dir", "realm", "log-level"):
    parser.add_argument("--" + name)
args = parser.parse_args()

port = random.randrange(35000, 36000, 2)
ips = [listen.rpartition(":")[0].strip("[]") for listen in args.listen]
argv = ["turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls", "--no-rfc5780", "-a", "-p", str(port),
        "-r", args.realm, "--min-port", "50000", "--max-port", "50999", "--log-file", "stdout",
        "--pidfile", os.path.join(args.state_dir, "turnserver.pid")]
for ip in ips:
    argv += ["-L", ip]
for ip in args.relay_address:
    argv += ["--relay-ip", ip]
if args.allow_peer:
    argv += ["--allow-loopback-peers"]
if os.environ.get("REFERENCE_REST") and args.secret:
    argv += ["--use-auth-secret", "--static-auth-secret", args.secret[0]]
else:
    for user in args.user:
        argv += ["-u", user]

process = subprocess.Popen(argv)
time.sleep(1)  # coturn has no readiness signal
announce = {"udp": [f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}" for ip in ips],
            "tcp": [], "tls": [], "admin": None, "pid": os.getpid()}
with open(args.announce_file + ".tmp", "w") as f:
    json.dump(announce, f)
os.rename(args.announce_file + ".tmp", args.announce_file)

stopping = []


def stop(*_):
    stopping.append(True)
    process.kill()  # coturn takes longer than 5 s to stop on SIGTERM


signal.signal(signal.SIGTERM, stop)
code = process.wait()
sys.exit(0 if stopping else code)
