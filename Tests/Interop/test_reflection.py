"""Reflection protection must not silence a spoofed victim (issue 10, part 2).

An attacker spoofs the victim's IP address from other source ports (here: sockets bound to the
victim's loopback address, as a spoofing sender would appear) and sends unauthenticated
Allocates at 3,200 per second. The per-IP answer budget is spent at once; the victim's own
Allocate must still draw its 401, while the bytes sent toward the victim's IP stay below the
bound Docs/security.md §3 gives: per shard, `unauthenticated_rate` answers plus
`challenge_overflow_bytes` bytes per second.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time

import pytest

VICTIM_IP = "127.0.0.7"
ATTACK_RATE = 3200
SHARDS = 2
RATE = 50  # limits.unauthenticated_rate (default)
OVERFLOW = 196_608  # limits.challenge_overflow_bytes (default)
LARGEST_CHALLENGE = 100  # bytes, default realm and no SOFTWARE (measured: 84)
BOUND = SHARDS * (RATE * LARGEST_CHALLENGE + OVERFLOW + LARGEST_CHALLENGE)


def allocate(txid: bytes) -> bytes:
    """The smallest valid Allocate: header and REQUESTED-TRANSPORT (UDP), 28 bytes."""
    return struct.pack("!HHI", 0x0003, 8, 0x2112A442) + txid + struct.pack("!HHBBH", 0x0019, 4, 17, 0, 0)


class Attack:
    """Sends Allocates from many ports of the victim's IP at a fixed rate and counts every byte
    the server sends back to those ports, per second."""

    def __init__(self, target: tuple[str, int], rate: int, ports: int = 256):
        self.target = target
        self.rate = rate
        self.sockets = []
        for _ in range(ports):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((VICTIM_IP, 0))
            s.setblocking(False)
            self.sockets.append(s)
        self.received: dict[int, int] = {}  # whole second since start -> bytes
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.start = time.monotonic()

    def note(self, n: int) -> None:
        second = int(time.monotonic() - self.start)
        self.received[second] = self.received.get(second, 0) + n

    def drain(self) -> None:
        readable, _, _ = select.select(self.sockets, [], [], 0)
        for s in readable:
            while True:
                try:
                    self.note(len(s.recv(2048)))
                except BlockingIOError:
                    break

    def run(self) -> None:
        tick = 0.01
        per_tick = max(1, self.rate // 100)
        i = 0
        next_tick = time.monotonic()
        while not self.stop.is_set():
            for _ in range(per_tick):
                s = self.sockets[i % len(self.sockets)]
                i += 1
                try:
                    s.sendto(allocate(os.urandom(12)), self.target)
                    self.sent += 1
                except BlockingIOError:
                    pass
            self.drain()
            next_tick += tick
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def __enter__(self) -> "Attack":
        self.start = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.duration = time.monotonic() - self.start
        self.stop.set()
        self.thread.join()
        time.sleep(0.2)
        self.drain()
        for s in self.sockets:
            s.close()

    @property
    def total(self) -> int:
        return sum(self.received.values())

    def busiest_second(self) -> int:
        # Whole seconds only: the first and the last are partial.
        full = [v for k, v in self.received.items() if 0 < k < max(self.received)]
        return max(full, default=0)


def victim_tries(target: tuple[str, int], tries: int, wait: float) -> tuple[int, int]:
    """The victim's own Allocates, one at a time from one port: (tries answered with 401, bytes)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((VICTIM_IP, 0))
    answered = 0
    received = 0
    try:
        for _ in range(tries):
            txid = os.urandom(12)
            s.sendto(allocate(txid), target)
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    data = s.recv(2048)
                except socket.timeout:
                    break
                received += len(data)
                if data[8:20] == txid and struct.unpack("!H", data[:2])[0] == 0x0113:
                    answered += 1
                    break
            time.sleep(max(0.0, deadline - time.monotonic()))
    finally:
        s.close()
    return answered, received


@pytest.fixture
def sharded_server(start_server, tmp_path):
    config = tmp_path / "shards.toml"
    config.write_text(f"[server]\nshards = {SHARDS}\n")
    return start_server(extra=["--config", str(config)])


def test_spoofed_victim_still_gets_its_challenge(sharded_server):
    target = sharded_server.udp4
    with Attack(target, ATTACK_RATE) as attack:
        time.sleep(1.0)  # the IP's answer budget is spent from here on
        answered, victim_bytes = victim_tries(target, tries=40, wait=0.3)
    print(
        f"\nattack {attack.sent} Allocates at {ATTACK_RATE}/s from 256 ports of {VICTIM_IP}: victim answered "
        f"{answered}/40; bytes toward the IP, busiest second: {attack.busiest_second()} (bound {BOUND})"
    )
    assert answered >= 38, f"the victim got its 401 on {answered} of 40 tries"
    assert attack.busiest_second() + victim_bytes <= BOUND


def test_reflection_toward_one_ip_is_bounded_under_a_blast(sharded_server):
    """Far above the victim-protection rate, the overflow budget caps what the IP receives."""
    target = sharded_server.udp4
    with Attack(target, 30_000) as attack:
        time.sleep(4.0)
    busiest = attack.busiest_second()
    print(f"\nblast {attack.sent} Allocates in 4 s: bytes toward {VICTIM_IP}, busiest second: {busiest} (bound {BOUND})")
    assert attack.sent > 3 * BOUND // 84, "the blast did not offer more than the bound"
    # The server's one-second windows need not line up with ours: over D seconds at most D + 1
    # windows' worth can arrive.
    assert 0 < attack.total <= BOUND * (attack.duration + 1)
    assert busiest <= 2 * BOUND
    sharded_server.assert_alive()


def test_small_challenge_and_overlong_username_over_the_wire(server):
    """Through the real server: the 401 to the smallest valid Allocate is at most 3x its size, an
    Allocate without REQUESTED-TRANSPORT gets nothing, and a 513-byte USERNAME gets a 400."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.bind(("127.0.0.1", 0))
    try:
        request = allocate(os.urandom(12))
        s.sendto(request, server.udp4)
        answer = s.recv(2048)
        assert struct.unpack("!H", answer[:2])[0] == 0x0113 and len(answer) <= 3 * len(request), answer.hex()

        bare = struct.pack("!HHI", 0x0003, 0, 0x2112A442) + os.urandom(12)
        s.sendto(bare, server.udp4)
        with pytest.raises(socket.timeout):
            s.recv(2048)

        txid = os.urandom(12)
        username = b"a" * 513 + b"\0" * 3
        body = struct.pack("!HH", 0x0006, 513) + username + struct.pack("!HHBBH", 0x0019, 4, 17, 0, 0)
        s.sendto(struct.pack("!HHI", 0x0003, len(body), 0x2112A442) + txid + body, server.udp4)
        answer = s.recv(2048)
        assert answer[8:20] == txid
        assert struct.unpack("!H", answer[:2])[0] == 0x0113  # Allocate error response
        code = answer[20 + 4 + 2] * 100 + answer[20 + 4 + 3]
        assert code == 400, answer.hex()
    finally:
        s.close()
