"""Malformed-datagram flood: the server must stay up and keep answering."""

from __future__ import annotations

import random
import socket
import struct
import time
import urllib.request
import zlib

import stunclient

FLOOD_DATAGRAMS = 100_000


def valid_binding_request(rng: random.Random) -> bytes:
    msg = stunclient.Message(stunclient.BINDING, stunclient.CLASS_REQUEST, rng.randbytes(12))
    return msg.encode()


def malformed_datagrams(rng: random.Random, count: int = 2000) -> list[bytes]:
    """A pool of distinct malformed datagrams of many kinds."""
    pool: list[bytes] = []
    for i in range(count):
        good = valid_binding_request(rng)
        kind = i % 9
        if kind == 0:  # random bytes, any length (including empty)
            data = rng.randbytes(rng.randrange(0, 600))
        elif kind == 1:  # truncated STUN header
            data = good[: rng.randrange(1, 20)]
        elif kind == 2:  # bad magic cookie
            data = good[:4] + struct.pack("!I", rng.getrandbits(32) ^ 0x1) + good[8:]
        elif kind == 3:  # length field not matching the datagram
            data = good[:2] + struct.pack("!H", rng.choice([1, 3, 4, 0x100, 0xFFFF])) + good[4:]
        elif kind == 4:  # attribute running past the end of the message
            body = struct.pack("!HH", stunclient.SOFTWARE, 0x400) + b"xx\x00\x00"
            data = struct.pack("!HHI", 0x0001, len(body), stunclient.MAGIC_COOKIE) + rng.randbytes(12) + body
        elif kind == 5:  # bad FINGERPRINT
            data = good[:-4] + struct.pack("!I", (zlib.crc32(good) ^ 0xDEADBEEF) & 0xFFFFFFFF)
        elif kind == 6:  # top two bits set (neither STUN nor ChannelData)
            data = bytes([0xC0 | good[0]]) + good[1:]
        elif kind == 7:  # ChannelData: unbound channel, or length larger than the datagram
            channel = rng.randrange(0x4000, 0x8000)
            data = struct.pack("!HH", channel, rng.choice([8, 0xFFFF])) + rng.randbytes(8)
        else:  # TURN requests with garbage attributes and no credentials
            method = rng.choice([stunclient.ALLOCATE, stunclient.REFRESH, stunclient.CREATE_PERMISSION])
            body = b"".join(
                struct.pack("!HH", rng.getrandbits(16), 4) + rng.randbytes(4) for _ in range(rng.randrange(1, 6))
            )
            msg_type = stunclient.message_type(method, stunclient.CLASS_REQUEST)
            data = struct.pack("!HHI", msg_type, len(body) + 4, stunclient.MAGIC_COOKIE) + rng.randbytes(12) + body
        pool.append(data)
    return pool


def flood(target: tuple[str, int], datagrams: list[bytes], total: int, sources: int = 8) -> int:
    """Send `total` datagrams (cycling through the pool) from a few source sockets; return how many were sent."""
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    socks = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(sources)]
    sent = 0
    try:
        for i in range(total):
            try:
                socks[i % sources].sendto(datagrams[i % len(datagrams)], target)
                sent += 1
            except (BlockingIOError, ConnectionRefusedError, OSError):
                pass
    finally:
        for s in socks:
            s.close()
    return sent


def binding_round_trip(target: tuple[str, int], budget: float = 1.0) -> float | None:
    """Seconds until a Binding success arrives (retransmitting every 200 ms), or None after `budget`."""
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        request = stunclient.Message(stunclient.BINDING, stunclient.CLASS_REQUEST)
        data = request.encode()
        start = time.monotonic()
        deadline = start + budget
        next_send = start
        while True:
            now = time.monotonic()
            if now >= deadline:
                return None
            if now >= next_send:
                s.sendto(data, target)
                next_send = now + 0.2
            s.settimeout(max(0.001, min(deadline, next_send) - now))
            try:
                reply, _ = s.recvfrom(2048)
            except (socket.timeout, TimeoutError):
                continue
            try:
                response = stunclient.parse(reply)
            except stunclient.StunError:
                continue
            if response.transaction_id == request.transaction_id and response.is_success:
                return time.monotonic() - start


def malformed_datagram_counters(server) -> dict[str, float] | None:
    """Drop/discard counters from the server's Prometheus endpoint, or None when it has no admin listener.

    Returns every sample whose metric name mentions drop, discard, malformed or invalid,
    keyed by the full sample name (with labels).
    """
    admin = server.announce.get("admin")
    if not admin:
        return None
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=5) as response:
        text = response.read().decode()
    counters: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        if any(word in name.lower() for word in ("drop", "discard", "malformed", "invalid")):
            try:
                counters[name] = float(value)
            except ValueError:
                pass
    return counters


def test_flood_of_malformed_datagrams_keeps_server_alive(server):
    rng = random.Random(0x7EA5E)
    pool = malformed_datagrams(rng)
    assert binding_round_trip(server.udp4) is not None, "no answer before the flood"

    sent = flood(server.udp4, pool, FLOOD_DATAGRAMS)
    assert sent >= FLOOD_DATAGRAMS * 0.99, f"only {sent} datagrams could be sent"

    server.assert_alive()
    elapsed = binding_round_trip(server.udp4, budget=1.0)
    assert elapsed is not None, "no Binding answer within 1 s after the flood"
    elapsed6 = binding_round_trip(server.udp6, budget=1.0)
    assert elapsed6 is not None, "no Binding answer over IPv6 within 1 s after the flood"
    server.assert_alive()
    print(f"flood: sent {sent}; binding answered in {elapsed * 1000:.1f} ms; counters: {malformed_datagram_counters(server)}")
