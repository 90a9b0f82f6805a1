"""DTLS under a flood of spoofed ClientHellos (issue 10, part 1).

An attacker who spoofs source addresses sends DTLS ClientHellos it will never complete. The
server must keep nothing for them: it answers each with a HelloVerifyRequest from one scratch
session and creates a session only for a client that echoes a valid cookie. The flood comes
from 10,000 loopback addresses (127.2.x.y), which the sender can bind on Linux without owning
them, and nobody reads the answers, as with a spoofed source.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import threading
import time

import pytest

SPOOFED_SOURCES = 10_000
HELLOS_PER_SOURCE = 10
RSS_BOUND_MB = 10.0


def client_hello(rng: bytes, cookie: bytes = b"") -> bytes:
    """A DTLS 1.2 ClientHello record (RFC 6347 §4.2.2) with the given cookie, as browsers send."""
    suites = [0xC02B, 0xC02F, 0xC00A, 0xC014, 0x009C, 0x002F]
    groups = struct.pack("!HH", 0x000A, 6) + struct.pack("!HHH", 4, 0x001D, 0x0017)
    formats = struct.pack("!HHBB", 0x000B, 2, 1, 0)
    sigalgs = struct.pack("!HHH", 0x000D, 8, 6) + struct.pack("!HHH", 0x0403, 0x0804, 0x0401)
    extensions = groups + formats + sigalgs
    body = (
        b"\xfe\xfd"
        + rng
        + b"\x00"  # session id
        + bytes([len(cookie)])
        + cookie
        + struct.pack("!H", 2 * len(suites))
        + b"".join(struct.pack("!H", s) for s in suites)
        + b"\x01\x00"  # compression: null
        + struct.pack("!H", len(extensions))
        + extensions
    )
    n = len(body)
    message_seq = b"\x00\x01" if cookie else b"\x00\x00"  # the second ClientHello is message 1
    handshake = bytes([1]) + n.to_bytes(3, "big") + message_seq + b"\x00\x00\x00" + n.to_bytes(3, "big") + body
    return bytes([22, 0xFE, 0xFF]) + b"\x00\x00" + b"\x00" * 6 + struct.pack("!H", len(handshake)) + handshake


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def metric(server, name: str) -> float:
    status, text = server.http("GET", "/metrics")
    assert status == 200, text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (len(line) == len(name) or line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def spoofed_flood(target: tuple[str, int], sources: int, per_source: int) -> int:
    """Sends `per_source` ClientHellos from each of `sources` loopback addresses; returns how many."""
    sent = 0
    hello = client_hello(os.urandom(32))
    for i in range(sources):
        address = f"127.2.{i // 250}.{i % 250 + 1}"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((address, 0))
            for _ in range(per_source):
                s.sendto(hello, target)
                sent += 1
        finally:
            s.close()
        if i % 500 == 499:
            time.sleep(0.01)  # let the kernel queue drain a little; the server's buffer is 4 MiB
    return sent


def openssl_dtls(port: int) -> tuple[bool, str]:
    argv = ["openssl", "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{port}"]
    result = subprocess.run(argv, input="", capture_output=True, text=True, timeout=30)
    out = result.stdout + result.stderr
    return bool(re.search(r"Cipher is (?!\(NONE\))", out)), out


def openssl_tls(port: int) -> tuple[bool, str]:
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-alpn", "stun.turn"]
    result = subprocess.run(argv, input="", capture_output=True, text=True, timeout=30)
    out = result.stdout + result.stderr
    return "ALPN protocol: stun.turn" in out, out


@pytest.mark.server_args(tls_listen=["127.0.0.1:0"])
def test_spoofed_client_hellos_keep_no_state(server):
    dtls_port = int(server.announce["dtls"][0].rsplit(":", 1)[1])
    tls_port = server.tls4[1]
    pid = server.process.pid

    # Warm up: one real DTLS and TLS session each, so that what OpenSSL allocates once is counted
    # in the baseline, not as growth.
    for connect, port in ((openssl_dtls, dtls_port), (openssl_tls, tls_port)):
        ok, out = connect(port)
        assert ok, out
    time.sleep(1.5)
    before = rss_mb(pid)
    hvr_before = metric(server, "traverse_dtls_hello_verify_requests_total")

    sent = [0]
    flood = threading.Thread(
        target=lambda: sent.__setitem__(0, spoofed_flood(("127.0.0.1", dtls_port), SPOOFED_SOURCES, HELLOS_PER_SOURCE))
    )
    flood.start()
    # During the flood, real clients of both kinds still connect.
    during = []
    while flood.is_alive() and len(during) < 6:
        during.append(openssl_dtls(dtls_port))
        during.append(openssl_tls(tls_port))
    flood.join()
    assert sent[0] == SPOOFED_SOURCES * HELLOS_PER_SOURCE
    assert during, "the flood ended before any client could try"
    for ok, out in during:
        assert ok, out

    time.sleep(1.5)  # the server's receive queue drains
    answered = metric(server, "traverse_dtls_hello_verify_requests_total") - hvr_before
    kernel_drops = metric(server, "traverse_kernel_socket_drops_total")
    # Every spoofed hello was answered statelessly (or dropped by the kernel's full queue, counted).
    assert answered + kernel_drops >= 0.99 * sent[0], (answered, kernel_drops, sent[0])
    assert metric(server, "traverse_dtls_sessions_refused_total") == 0
    # Only the real clients' sessions were ever made.
    accepted = metric(server, 'traverse_connections_accepted_total{transport="dtls"}')
    assert accepted <= 2 + len(during), accepted

    after = rss_mb(pid)
    print(
        f"\nspoofed hellos {sent[0]} from {SPOOFED_SOURCES} addresses: answered {answered:.0f}, "
        f"kernel drops {kernel_drops:.0f}, RSS {before:.1f} -> {after:.1f} MB, "
        f"{len(during)} real handshakes during the flood succeeded"
    )
    assert after - before < RSS_BOUND_MB, f"RSS grew {after - before:.1f} MB (from {before:.1f} MB)"

    # After the flood, both kinds still connect.
    for connect, port in ((openssl_dtls, dtls_port), (openssl_tls, tls_port)):
        ok, out = connect(port)
        assert ok, out
    server.assert_alive()


@pytest.mark.server_args(tls_listen=["127.0.0.1:0"])
def test_hello_with_forged_cookie_gets_only_a_verify_request(server):
    """A ClientHello with a cookie the server did not make is answered like one without."""
    dtls_port = int(server.announce["dtls"][0].rsplit(":", 1)[1])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.bind(("127.0.0.1", 0))
    try:
        for cookie in (b"", os.urandom(32)):
            s.sendto(client_hello(os.urandom(32), cookie), ("127.0.0.1", dtls_port))
            answer, _ = s.recvfrom(2048)
            # A HelloVerifyRequest: handshake record, message type 3, carrying a cookie.
            assert answer[0] == 22 and answer[13] == 3, answer.hex()
            assert len(answer) < 100, len(answer)
        # The right cookie (echoed from the server's answer) starts a real handshake: ServerHello.
        cookie_length = answer[13 + 12 + 2]
        cookie = answer[13 + 12 + 3 : 13 + 12 + 3 + cookie_length]
        s.sendto(client_hello(os.urandom(32), cookie), ("127.0.0.1", dtls_port))
        flight, _ = s.recvfrom(4096)
        assert flight[0] == 22 and flight[13] == 2, flight[:32].hex()  # ServerHello
    finally:
        s.close()
    assert metric(server, 'traverse_connections_accepted_total{transport="dtls"}') == 1
