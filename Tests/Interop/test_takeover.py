"""A second instance on the same addresses (issue 10, part 5).

Without --takeover, `traverse serve` refuses an address another process listens on (exit 2, one
line naming it). With --takeover it starts beside the running instance, which, once draining,
hands its listeners over: new stream clients all reach the new instance, accepted connections
stay with the old one, and the old instance's UDP allocations end (Docs/operations.md, Takeover).
"""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import TRAVERSE_BIN, ServerOptions, launch, split_host_port
from stunclient import StreamTurnClient, TurnClient, open_stream


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on host (below the ephemeral range)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        port = random.randrange(20000, 32000)
        socks = []
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                s = socket.socket(family, kind)
                socks.append(s)
                s.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port")


def serve(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(TRAVERSE_BIN), "serve", "--user", "a:b", "--state-dir", str(cwd / "state"), *args],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def stop(server) -> None:
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


def wait_until(predicate, timeout: float = 10.0, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {message}")


CASES = {
    # name: (options of the running instance, arguments of the second one, the address named)
    "udp-tcp": (lambda p: dict(listen=[f"127.0.0.1:{p}"]), lambda p: ["--listen", f"127.0.0.1:{p}"], "127.0.0.1:{p}"),
    "ipv6": (lambda p: dict(listen=[f"[::1]:{p}"], relay_address=["::1"]), lambda p: ["--listen", f"[::1]:{p}"], "[::1]:{p}"),
    "tls-dtls": (
        lambda p: dict(listen=["127.0.0.1:0"], tls_listen=[f"127.0.0.1:{p}"]),
        lambda p: ["--listen", "127.0.0.1:0", "--tls-listen", f"127.0.0.1:{p}"],
        "127.0.0.1:{p}",
    ),
    "admin": (
        lambda p: dict(listen=["127.0.0.1:0"], admin_listen=f"127.0.0.1:{p}"),
        lambda p: ["--listen", "127.0.0.1:0", "--admin-listen", f"127.0.0.1:{p}"],
        "127.0.0.1:{p}",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_second_instance_is_refused_naming_the_address(tmp_path, case):
    running_options, second_args, named = CASES[case]
    host = "::1" if case == "ipv6" else "127.0.0.1"
    port = free_port(host)
    running = launch(ServerOptions(**running_options(port)), tmp_path / "running")
    try:
        extra = [] if case == "admin" else ["--admin-listen", "off"]
        result = serve(*second_args(port), *extra, cwd=tmp_path)
        assert result.returncode == 2, (result.returncode, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert named.format(p=port) in lines[0] and "--takeover" in lines[0], lines[0]
        running.assert_alive()
    finally:
        running.stop()


def test_port_zero_never_collides(start_server):
    """Every port-0 listener gets its own port: two ordinary servers start side by side."""
    first = start_server()
    second = start_server()
    first.assert_alive()
    second.assert_alive()


def test_takeover_hands_listeners_to_the_new_instance(tmp_path):
    p, q, r = free_port(), free_port(), free_port()
    addresses = dict(listen=[f"127.0.0.1:{p}"], tls_listen=[f"127.0.0.1:{q}"], relay_address=["127.0.0.1"],
                     admin_listen=f"127.0.0.1:{r}")
    quota = ["--user-quota", "100"]
    old = launch(ServerOptions(drain_timeout=30, extra=quota, **addresses), tmp_path / "old")
    new = None
    try:
        name, password = old.user
        old_udp = TurnClient(("127.0.0.1", p), name, password)
        assert old_udp.allocate().is_success
        old_tcp = StreamTurnClient(("127.0.0.1", p), name, password)
        assert old_tcp.allocate().is_success

        new = launch(ServerOptions(drain_timeout=0, extra=["--takeover", *quota], **addresses), tmp_path / "new")
        assert new.announce["udp"] == [f"127.0.0.1:{p}"] and new.announce["tls"] == [f"127.0.0.1:{q}"]
        assert new.announce["admin"] is None, "the admin address is still the old instance's"
        assert "admin address held by another process" in new.log()

        # During the overlap, UDP stays with the old instance alone (the new one waits for the
        # address): every UDP client lands there, so no UDP client is ever moved between them.
        overlap = [TurnClient(("127.0.0.1", p), name, password) for _ in range(6)]
        for c in overlap:
            assert c.allocate().is_success
        assert json.loads(old.http("GET", "/load")[1])["allocations"] == 2 + len(overlap)

        old.process.send_signal(signal.SIGTERM)
        wait_until(lambda: old.log().count("listener handed over") == 4, message="the four listeners handed over")
        for transport in ("udp", "tcp", "tls", "dtls"):
            assert f"address=127.0.0.1:{p if transport in ('udp', 'tcp') else q} transport={transport}" in old.log()
        wait_until(lambda: new.log().count("listening on an address the previous instance released") == 2,
                   message="the new instance to bind UDP and DTLS")
        assert old.log().count("reason=taken_over") == 1 + len(overlap)

        # Every new client reaches the new instance: the draining one would answer 508.
        fresh = [StreamTurnClient(("127.0.0.1", p), name, password) for _ in range(12)]
        fresh += [StreamTurnClient(("127.0.0.1", q), name, password, tls=True) for _ in range(4)]
        fresh += [TurnClient(("127.0.0.1", p), name, password) for _ in range(12)]
        for c in fresh:
            assert c.allocate().is_success

        # The old instance keeps its accepted connection and the allocation on it.
        assert old_tcp.refresh(600).is_success
        # Its UDP allocations ended at the hand-over; their clients' next requests reach the new
        # instance, which does not know them (437), and they can allocate again there.
        for c in [old_udp, *overlap]:
            refused = c.refresh(600)
            assert refused.is_error and refused.error_code == 437, refused
        assert overlap[0].allocate().is_success

        # The last allocation on the old instance ends: it exits, and the new one takes the
        # admin address.
        assert old_tcp.refresh(0).is_success
        assert old.process.wait(timeout=10) == 0
        assert "drain=drained" in old.log()
        announce = tmp_path / "new" / "announce.json"
        wait_until(lambda: json.loads(announce.read_text())["admin"] == f"127.0.0.1:{r}", message="admin re-announced")
        new.announce = json.loads(announce.read_text())
        status, body = new.http("GET", "/load")
        assert status == 200 and json.loads(body)["allocations"] == len(fresh) + 1, body
        for c in fresh + overlap:
            c.close()
        old_udp.close()
        old_tcp.close()
    finally:
        stop(old)
        if new is not None:
            new.stop()
