"""TURN over UDP with coturn's turnutils_uclient against turnutils_peer echo peers."""

from __future__ import annotations

import re
import subprocess

import pytest

# turnutils_uclient picks channel numbers from RFC 5766's 0x4000-0x7FFF, which RFC 8656 reserves
# above 0x4FFF: Traverse accepts them only with --legacy-channel-numbers. Each uclient session
# also holds an RTP and an RTCP allocation for one user, past the default per-user quota of 10.
pytestmark = pytest.mark.server_args(extra=["--legacy-channel-numbers", "--user-quota", "1000"])

UCLIENT_TIMEOUT = 120

TOTALS = re.compile(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$", re.MULTILINE)
LOST = re.compile(r"Total lost packets (\d+) \(")


def uclient(server, *flags: str, timeout: float = UCLIENT_TIMEOUT) -> tuple[int, str]:
    argv = ["turnutils_uclient", "-p", str(server.port), *flags, "127.0.0.1"]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    return result.returncode, f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}"


def statistics(output: str) -> dict[str, int]:
    """uclient's final totals: sent, received and lost messages."""
    totals = TOTALS.findall(output)
    lost = LOST.findall(output)
    assert totals and lost, f"no final statistics in uclient output:\n{output[-3000:]}"
    sent, received = map(int, totals[-1])
    return {"sent": sent, "received": received, "lost": int(lost[-1])}


def assert_clean_run(code: int, output: str, clients: int, messages: int) -> None:
    assert code == 0, f"uclient exited with {code}:\n{output[-3000:]}"
    stats = statistics(output)
    assert stats["sent"] == clients * messages, (stats, output[-3000:])
    assert stats["received"] > 0, (stats, output[-3000:])
    assert stats["lost"] == 0, (stats, output[-3000:])
    assert stats["received"] == stats["sent"], (stats, output[-3000:])


def static_user(server) -> list[str]:
    name, password = server.user
    return ["-u", name, "-w", password]


def test_channels_through_echo_peers(server, echo_peers):
    """Default data path: ChannelBind + ChannelData, 10 clients x 100 messages of 170 bytes."""
    code, output = uclient(server, *static_user(server), "-c", "-e", "127.0.0.1", "-r", str(echo_peers),
                           "-m", "10", "-l", "170", "-n", "100")
    assert_clean_run(code, output, 10, 100)


def test_send_indications_through_echo_peers(server, echo_peers):
    """-s: CreatePermission + Send/Data indications instead of channels."""
    code, output = uclient(server, *static_user(server), "-s", "-c", "-e", "127.0.0.1", "-r", str(echo_peers),
                           "-m", "10", "-l", "170", "-n", "100")
    assert_clean_run(code, output, 10, 100)


def test_rtp_rtcp_pairs_with_even_port(server, echo_peers):
    """Without -c each client allocates an RTP/RTCP pair (EVEN-PORT + RESERVATION-TOKEN), peers P and P+1."""
    code, output = uclient(server, *static_user(server), "-e", "127.0.0.1", "-r", str(echo_peers),
                           "-m", "2", "-l", "170", "-n", "50")
    assert_clean_run(code, output, 2, 50)


def test_client_to_client(server):
    """-y: pairs of clients talk to each other through their relays (no external peer)."""
    code, output = uclient(server, *static_user(server), "-y", "-c", "-m", "4", "-l", "170", "-n", "50")
    assert_clean_run(code, output, 4, 50)


def test_rest_credentials(server, echo_peers):
    """-W: uclient derives a time-limited username <expiry>:bob and its HMAC password from the shared secret."""
    code, output = uclient(server, "-u", "bob", "-W", server.secret, "-c", "-e", "127.0.0.1",
                           "-r", str(echo_peers), "-m", "2", "-l", "170", "-n", "50")
    assert_clean_run(code, output, 2, 50)


def allocation_failed(code: int, output: str) -> bool:
    return code != 0 or "Cannot complete Allocation" in output


def test_wrong_password_fails(server, echo_peers):
    # Control: the right password works against this very server.
    code, output = uclient(server, *static_user(server), "-c", "-e", "127.0.0.1", "-r", str(echo_peers), "-n", "5")
    assert_clean_run(code, output, 1, 5)

    name, _ = server.user
    code, output = uclient(server, "-u", name, "-w", "not-the-password", "-c", "-e", "127.0.0.1",
                           "-r", str(echo_peers), "-n", "5", timeout=60)
    assert allocation_failed(code, output), f"allocation with a wrong password did not fail:\n{output[-3000:]}"
    assert "Total lost packets" not in output or statistics(output)["received"] == 0, output[-3000:]


def test_wrong_rest_secret_fails(server, echo_peers):
    code, output = uclient(server, "-u", "bob", "-W", "not-the-secret", "-c", "-e", "127.0.0.1", "-r", str(echo_peers),
                           "-n", "5", timeout=60)
    assert allocation_failed(code, output), f"allocation with a wrong REST secret did not fail:\n{output[-3000:]}"
