"""Paths the other interop files do not cover: ICMP errors relayed to the client (RFC 8656
§11.5), DTLS with coturn's uclient (RFC 7350), the load generator against Traverse itself, and
the /metrics relay counters under a turnutils_uclient load."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

import stunclient as sc
from test_turn_uclient import assert_clean_run, statistics

ICMP_ATTR = 0x8004
DATA_METHOD = 0x007
LEGACY = ["--legacy-channel-numbers", "--user-quota", "1000"]
REPO = Path(__file__).resolve().parents[2]


def closed_udp_port() -> int:
    """A loopback UDP port with nobody listening (bound, read, then released)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_icmp_port_unreachable_reaches_the_client_as_a_data_indication(server):
    """A datagram relayed to a closed port makes the kernel answer ICMP port unreachable; the
    client gets a Data indication carrying the ICMP attribute (type 3, code 3) and the peer."""
    with sc.TurnClient(server.udp4, "alice", "wonderland") as c:
        assert c.allocate().is_success
        peer = ("127.0.0.1", closed_udp_port())
        assert c.create_permission(peer).is_success
        c.send_indication(peer, b"x" * 32)
        found = None
        for _ in range(20):
            data = c.recv_raw(0.25)
            if data is None:
                c.send_indication(peer, b"x" * 32)
                continue
            try:
                msg = sc.parse(data)
            except Exception:
                continue
            if msg.method == DATA_METHOD and msg.has(ICMP_ATTR):
                found = msg
                break
        assert found is not None, "no Data indication with ICMP arrived"
        icmp = found.get(ICMP_ATTR)
        assert len(icmp) == 8
        assert (icmp[2], icmp[3]) == (3, 3), icmp.hex()  # destination unreachable, port unreachable
        assert found.xor_address(sc.XOR_PEER_ADDRESS) == peer
        assert not found.has(sc.DATA_ATTR)


@pytest.mark.server_args(extra=["--tls-listen", "127.0.0.1:0", *LEGACY])
def test_uclient_over_dtls_reaches_udp_peers(server, echo_peers):
    """turnutils_uclient -S without -t speaks DTLS: 0 loss through Traverse's DTLS listener."""
    dtls_port = int(server.announce["dtls"][0].rsplit(":", 1)[1])
    argv = ["turnutils_uclient", "-S", "-p", str(dtls_port), "-u", "alice", "-w", "wonderland", "-e", "127.0.0.1",
            "-r", str(echo_peers), "-m", "4", "-l", "170", "-n", "50", "127.0.0.1"]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert_clean_run(result.returncode, result.stdout + result.stderr, 4, 50)


def traverse_load() -> Path:
    binary = Path(os.environ.get("TRAVERSE_BIN", REPO / ".build/debug/traverse")).parent / "traverse-load"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: `swift build` builds it with the server")
    return binary


def run_load(server, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "load.json"
    host, port = server.udp4
    argv = [str(traverse_load()), f"turn:{host}:{port}?transport=udp", "--user", "alice:wonderland",
            "--calls", "4", "--duration", "3", "--json", str(out), *extra]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text())


@pytest.mark.server_args(extra=LEGACY)
def test_load_generator_paced_run_has_no_loss_and_no_srtp_failures(server, tmp_path):
    report = run_load(server, tmp_path, "--video-kbps", "300")
    assert report["sent"] > 0
    assert report["lost"] == 0, report
    assert report["authFailures"] == 0, report
    assert report["received"] == report["sent"], report


@pytest.mark.server_args(extra=LEGACY)
def test_load_generator_detects_one_corrupted_byte(server, tmp_path):
    report = run_load(server, tmp_path, "--corrupt-one")
    assert report["authFailures"] == 1, report
    assert report["lost"] == 1, report


def relayed(metrics: str, direction: str) -> int:
    total = 0
    for line in metrics.splitlines():
        if line.startswith("traverse_relayed_packets_total") and f'direction="{direction}"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


@pytest.mark.server_args(extra=LEGACY)
def test_metrics_relay_counters_match_what_uclient_reports(server, echo_peers):
    """Each uclient message crosses the relay client→peer, and its echo peer→client."""
    argv = ["turnutils_uclient", "-p", str(server.port), "-u", "alice", "-w", "wonderland", "-e", "127.0.0.1",
            "-r", str(echo_peers), "-m", "5", "-l", "170", "-n", "100", "127.0.0.1"]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    stats = statistics(output)
    status, metrics = server.http("GET", "/metrics")
    assert status == 200
    # uclient's totals count its RTP sessions; RTCP sessions send a few more packets each.
    to_peer, to_client = relayed(metrics, "client_to_peer"), relayed(metrics, "peer_to_client")
    assert to_peer >= stats["sent"] and to_client >= stats["received"], (stats, to_peer, to_client)
    assert to_peer - stats["sent"] <= 5 * 2 * 10 and to_client - stats["received"] <= 5 * 2 * 10, (stats, to_peer, to_client)
    assert to_client <= to_peer
