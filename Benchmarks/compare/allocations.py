#!/usr/bin/env python3
"""allocations.py: hold many concurrent TURN allocations and measure the server's memory per allocation.

Against a TURN server on 127.0.0.1:PORT (long-term credentials), this script:

1. raises RLIMIT_NOFILE (to 65536, or the hard limit when that is lower);
2. opens N UDP client sockets (one per allocation), spread over --client-ips loopback
   addresses (127.0.0.2, 127.0.0.3, ...) so that client ports never collide with relay ports
   on 127.0.0.1 and the 5-tuples come from more than one source address;
3. learns REALM/NONCE once per client IP (one unsigned Allocate answered by 401), then sends
   signed Allocate requests from every socket, pipelined: up to --window transactions in flight,
   non-blocking sockets polled with selectors, lost requests retransmitted (RTO doubling). A server
   whose nonces are bound to the 5-tuple (coturn) answers a borrowed nonce with 401 or 438 and a
   fresh NONCE; the request is then re-signed with it (up to --auth-retries times);
4. optionally (--permissions) creates one permission per allocation (CreatePermission to 127.0.0.1);
5. reads VmRSS and VmHWM from /proc/PID/status before step 3 and after the last answer (after
   --settle seconds), and reports bytes per allocation = (RSS after - RSS before) / allocations made;
6. deletes the allocations (Refresh LIFETIME 0), unless --no-delete, and reads RSS once more.

Standard library only; the STUN/TURN encoding is Tests/Interop/stunclient.py (written from the RFCs).

Usage: allocations.py --port 3478 --pid 1234 [--count 10000] [--realm traverse] [--user alice:wonderland]
                      [--permissions] [--window 500] [--client-ips 4] [--json FILE]
"""

from __future__ import annotations

import argparse
import collections
import errno
import heapq
import json
import os
import resource
import selectors
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Interop"))
import stunclient as stun  # noqa: E402

# Phases of one allocation's state machine.
ALLOC, PERM, HOLD, DELETE, DONE, FAILED = "alloc", "perm", "hold", "delete", "done", "failed"


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon (KiB) of PID."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[key] = int(value.split()[0])
    return out


def raise_nofile(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard if hard >= want else want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Slot:
    """One client socket and its one allocation."""

    __slots__ = ("index", "sock", "ip", "phase", "txid", "payload", "sends", "rto", "gen", "nonce", "auth_tries",
                 "relayed", "retransmitted")

    def __init__(self, index: int, sock: socket.socket, ip: str):
        self.index = index
        self.sock = sock
        self.ip = ip
        self.phase = ALLOC
        self.txid = b""
        self.payload = b""
        self.sends = 0
        self.rto = 0.0
        self.gen = 0
        self.nonce: bytes | None = None
        self.auth_tries = 0
        self.relayed: tuple[str, int] | None = None
        self.retransmitted = False


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.server = ("127.0.0.1", args.port)
        self.username, _, self.password = args.user.partition(":")
        self.realm = args.realm
        self.key = stun.long_term_key(self.username, self.realm, self.password)
        self.nonces: dict[str, bytes] = {}  # client IP -> last nonce the server gave it
        self.sel = selectors.DefaultSelector()
        self.slots: list[Slot] = []
        self.ready: collections.deque[Slot] = collections.deque()
        self.timers: list[tuple[float, int, int]] = []  # (resend_at, slot index, generation)
        self.in_flight = 0
        self.failures: collections.Counter[str] = collections.Counter()
        self.perm_failures: collections.Counter[str] = collections.Counter()
        self.delete_failures: collections.Counter[str] = collections.Counter()
        self.notes: collections.Counter[str] = collections.Counter()
        self.allocated = 0
        self.permitted = 0
        self.deleted = 0
        self.sent = 0
        self.retransmits = 0
        self.priming = False

    # ------------------------------------------------------------------ sockets
    def open_sockets(self) -> None:
        ips = [f"127.0.0.{2 + i}" for i in range(self.args.client_ips)] if self.args.client_ips > 0 else ["127.0.0.1"]
        for i in range(self.args.count):
            ip = ips[i % len(ips)]
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            s.bind((ip, 0))
            slot = Slot(i, s, ip)
            self.slots.append(slot)
            self.sel.register(s, selectors.EVENT_READ, slot)

    # ------------------------------------------------------------------ messages
    def build(self, slot: Slot) -> None:
        """Encode slot's next request (new transaction id) for its phase."""
        if slot.phase == ALLOC:
            msg = stun.Message(stun.ALLOCATE, stun.CLASS_REQUEST)
            msg.add(stun.REQUESTED_TRANSPORT, struct.pack("!B3x", stun.TRANSPORT_UDP))
            if self.args.lifetime:
                msg.add(stun.LIFETIME, struct.pack("!I", self.args.lifetime))
        elif slot.phase == PERM:
            msg = stun.Message(stun.CREATE_PERMISSION, stun.CLASS_REQUEST)
            msg.add(stun.XOR_PEER_ADDRESS, stun.encode_xor_address(("127.0.0.1", 9), msg.transaction_id))
        elif slot.phase == DELETE:
            msg = stun.Message(stun.REFRESH, stun.CLASS_REQUEST)
            msg.add(stun.LIFETIME, struct.pack("!I", 0))
        else:
            raise AssertionError(slot.phase)
        if slot.nonce is None:
            slot.nonce = self.nonces.get(slot.ip)
        if slot.nonce is not None:
            msg.add(stun.USERNAME, self.username.encode())
            msg.add(stun.REALM, self.realm.encode())
            msg.add(stun.NONCE, slot.nonce)
            slot.payload = msg.encode(key=self.key)
        else:
            slot.payload = msg.encode()
        slot.txid = msg.transaction_id
        slot.sends = 0
        slot.rto = self.args.rto
        slot.retransmitted = False

    def transmit(self, slot: Slot, now: float) -> None:
        try:
            slot.sock.sendto(slot.payload, self.server)
        except OSError as e:  # ENOBUFS/EAGAIN: treat as lost; the timer resends it
            if e.errno not in (errno.EAGAIN, errno.ENOBUFS, errno.EWOULDBLOCK):
                raise
        slot.sends += 1
        self.sent += 1
        if slot.sends > 1:
            self.retransmits += 1
            slot.retransmitted = True
        slot.gen += 1
        heapq.heappush(self.timers, (now + slot.rto, slot.index, slot.gen))
        slot.rto = min(slot.rto * 2, self.args.max_rto)

    def start(self, slot: Slot) -> None:
        """Queue slot's next transaction (it counts toward the window once sent)."""
        self.build(slot)
        self.ready.append(slot)

    def finish(self, slot: Slot, phase: str) -> None:
        """slot's transaction is over; move it to phase."""
        self.in_flight -= 1
        slot.gen += 1  # cancels its timer
        slot.phase = phase

    # ------------------------------------------------------------------ answers
    def on_datagram(self, slot: Slot, data: bytes) -> None:
        try:
            resp = stun.parse(data)
        except stun.StunError:
            self.notes["non-STUN datagram"] += 1
            return
        if resp.transaction_id != slot.txid or resp.cls not in (stun.CLASS_SUCCESS, stun.CLASS_ERROR):
            return  # an answer to an earlier transmission, or an indication
        if slot.phase not in (ALLOC, PERM, DELETE):
            return
        code = resp.error_code if resp.is_error else None
        if code in (401, 438) and resp.has(stun.NONCE):
            slot.auth_tries += 1
            if not self.priming:
                self.notes[f"re-signed after {code}"] += 1
            if slot.auth_tries > self.args.auth_retries:
                self.fail(slot, str(code))
                return
            slot.nonce = resp.get(stun.NONCE)
            self.nonces[slot.ip] = slot.nonce
            realm = resp.text(stun.REALM)
            if realm and realm != self.realm:
                self.realm = realm
                self.key = stun.long_term_key(self.username, self.realm, self.password)
            self.in_flight -= 1
            slot.gen += 1
            if self.priming:
                slot.auth_tries = 0  # learnt the nonce; the signed request is sent with everyone else's
            else:
                self.start(slot)
            return
        if slot.phase == ALLOC:
            if resp.is_success:
                slot.relayed = resp.xor_relayed_address
                self.allocated += 1
                self.next_after_alloc(slot)
            elif code == 437 and slot.retransmitted:
                # The first transmission allocated; its success answer was lost.
                self.notes["437 to a retransmitted Allocate (counted as allocated)"] += 1
                self.allocated += 1
                self.next_after_alloc(slot)
            else:
                self.fail(slot, f"{code} {resp.error_reason}".strip())
        elif slot.phase == PERM:
            if resp.is_success:
                self.permitted += 1
            else:
                self.perm_failures[f"{code} {resp.error_reason}".strip()] += 1
            self.finish(slot, HOLD)
        elif slot.phase == DELETE:
            if resp.is_success or code == 437:
                self.deleted += 1
            else:
                self.delete_failures[f"{code} {resp.error_reason}".strip()] += 1
            self.finish(slot, DONE)

    def next_after_alloc(self, slot: Slot) -> None:
        self.in_flight -= 1
        slot.gen += 1
        slot.auth_tries = 0
        if self.args.permissions:
            slot.phase = PERM
            self.start(slot)
        else:
            slot.phase = HOLD

    def fail(self, slot: Slot, reason: str) -> None:
        if slot.phase == ALLOC:
            self.failures[reason] += 1
            self.finish(slot, FAILED)
        elif slot.phase == PERM:
            self.perm_failures[reason] += 1
            self.finish(slot, HOLD)
        else:
            self.delete_failures[reason] += 1
            self.finish(slot, DONE)

    # ------------------------------------------------------------------ event loop
    def run(self, deadline: float) -> None:
        """Drive queued transactions until none is queued or in flight (or the deadline passes)."""
        while (self.ready or self.in_flight) and time.monotonic() < deadline:
            now = time.monotonic()
            while self.ready and self.in_flight < self.args.window:
                slot = self.ready.popleft()
                self.in_flight += 1
                self.transmit(slot, now)
            timeout = 0.05
            if self.timers:
                timeout = max(0.0, min(timeout, self.timers[0][0] - now))
            for key, _ in self.sel.select(timeout):
                slot = key.data
                while True:
                    try:
                        data = slot.sock.recv(2048)
                    except (BlockingIOError, InterruptedError):
                        break
                    except ConnectionRefusedError:  # ICMP port unreachable: the server is not there
                        self.notes["ICMP port unreachable"] += 1
                        break
                    self.on_datagram(slot, data)
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, index, gen = heapq.heappop(self.timers)
                slot = self.slots[index]
                if gen != slot.gen:
                    continue
                if slot.sends >= self.args.max_sends:
                    self.fail(slot, "timeout")
                else:
                    self.transmit(slot, now)
        if self.ready or self.in_flight:
            left = [s for s in self.slots if s.phase in (ALLOC, PERM, DELETE)]
            for slot in left:
                reason = "deadline"
                if slot.phase == ALLOC:
                    self.failures[reason] += 1
                    slot.phase = FAILED
                elif slot.phase == PERM:
                    self.perm_failures[reason] += 1
                    slot.phase = HOLD
                else:
                    self.delete_failures[reason] += 1
                    slot.phase = DONE
            self.ready.clear()
            self.in_flight = 0

    def prime(self) -> None:
        """One unsigned Allocate per client IP, to learn REALM and a NONCE (answered 401)."""
        seen: set[str] = set()
        for slot in self.slots:
            if slot.ip not in seen:
                seen.add(slot.ip)
                self.start(slot)
        self.priming = True
        self.run(time.monotonic() + 15)
        self.priming = False


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True, help="TURN server UDP port on 127.0.0.1")
    p.add_argument("--pid", type=int, required=True, help="server process id (for /proc/PID/status)")
    p.add_argument("--count", "-n", type=int, default=10000, help="allocations to create [10000]")
    p.add_argument("--user", default="alice:wonderland", help="NAME:PASSWORD [alice:wonderland]")
    p.add_argument("--realm", default="traverse", help="realm for the long-term key [traverse]")
    p.add_argument("--permissions", action="store_true", help="also one CreatePermission (127.0.0.1) per allocation")
    p.add_argument("--window", type=int, default=500, help="transactions in flight at most [500]")
    p.add_argument("--client-ips", type=int, default=4,
                   help="client source addresses 127.0.0.2... (0: 127.0.0.1 only) [4]")
    p.add_argument("--lifetime", type=int, default=0, help="LIFETIME to request (0: none) [0]")
    p.add_argument("--rto", type=float, default=0.5, help="initial retransmission timeout, s [0.5]")
    p.add_argument("--max-rto", type=float, default=2.0, help="largest retransmission timeout, s [2]")
    p.add_argument("--max-sends", type=int, default=7, help="transmissions per transaction [7]")
    p.add_argument("--auth-retries", type=int, default=3, help="re-signings after 401/438 per transaction [3]")
    p.add_argument("--timeout", type=float, default=300, help="deadline per phase, s [300]")
    p.add_argument("--settle", type=float, default=1.0, help="seconds to wait before reading RSS after [1]")
    p.add_argument("--no-delete", action="store_true", help="close the sockets without deleting the allocations")
    p.add_argument("--label", default="", help="name printed with the results (e.g. coturn)")
    p.add_argument("--json", help="also write the results as JSON to this file")
    args = p.parse_args()

    nofile = raise_nofile(65536)
    if nofile < args.count + 64:
        print(f"allocations: RLIMIT_NOFILE is {nofile}, too low for {args.count} sockets", file=sys.stderr)
        return 2

    bench = Bench(args)
    bench.open_sockets()
    bench.prime()
    if not bench.nonces:
        print(f"allocations: no NONCE from the server: {dict(bench.failures)} {dict(bench.notes)}", file=sys.stderr)
        return 1
    time.sleep(0.2)
    before = proc_status(args.pid)
    t0 = time.monotonic()
    for slot in bench.slots:
        if slot.phase == ALLOC:
            bench.start(slot)
    bench.run(time.monotonic() + args.timeout)
    elapsed = time.monotonic() - t0
    time.sleep(args.settle)
    after = proc_status(args.pid)

    deleted_after = None
    delete_seconds = None
    if not args.no_delete:
        t1 = time.monotonic()
        for slot in bench.slots:
            if slot.phase == HOLD:
                slot.phase = DELETE
                slot.auth_tries = 0
                bench.start(slot)
        bench.run(time.monotonic() + args.timeout)
        delete_seconds = time.monotonic() - t1
        time.sleep(args.settle)
        deleted_after = proc_status(args.pid)
    for slot in bench.slots:
        slot.sock.close()

    made = bench.allocated
    delta_kib = after["VmRSS"] - before["VmRSS"]
    per_alloc = delta_kib * 1024 / made if made else None
    result = {
        "label": args.label,
        "requested": args.count,
        "allocations": made,
        "failures": sum(bench.failures.values()),
        "failures_by_code": dict(bench.failures),
        "permissions": bench.permitted if args.permissions else None,
        "permission_failures_by_code": dict(bench.perm_failures),
        "seconds": round(elapsed, 3),
        "rss_before_kib": before["VmRSS"],
        "rss_after_kib": after["VmRSS"],
        "hwm_before_kib": before["VmHWM"],
        "hwm_after_kib": after["VmHWM"],
        "rss_anon_before_kib": before.get("RssAnon"),
        "rss_anon_after_kib": after.get("RssAnon"),
        "bytes_per_allocation": round(per_alloc) if per_alloc is not None else None,
        "hwm_bytes_per_allocation": round((after["VmHWM"] - before["VmHWM"]) * 1024 / made) if made else None,
        "server_threads": after.get("Threads"),
        "deleted": bench.deleted if not args.no_delete else None,
        "delete_failures_by_code": dict(bench.delete_failures),
        "delete_seconds": round(delete_seconds, 3) if delete_seconds is not None else None,
        "rss_after_delete_kib": deleted_after["VmRSS"] if deleted_after else None,
        "requests_sent": bench.sent,
        "retransmits": bench.retransmits,
        "client_ips": args.client_ips,
        "window": args.window,
        "notes": dict(bench.notes),
    }
    name = f" ({args.label})" if args.label else ""
    print(f"allocations{name}: {made} of {args.count} in {elapsed:.2f} s"
          f" ({made / elapsed if elapsed > 0 else 0:.0f}/s), {bench.sent} requests, {bench.retransmits} retransmits")
    print(f"  failures: {result['failures']} {dict(bench.failures) or ''}")
    if args.permissions:
        print(f"  permissions: {bench.permitted} (failures {dict(bench.perm_failures) or 0})")
    print(f"  server RSS: {before['VmRSS']} KiB -> {after['VmRSS']} KiB (+{delta_kib} KiB);"
          f" VmHWM {before['VmHWM']} -> {after['VmHWM']} KiB; RssAnon {before.get('RssAnon')} -> {after.get('RssAnon')} KiB")
    print(f"  bytes per allocation (RSS delta / allocations): {result['bytes_per_allocation']}")
    if deleted_after:
        print(f"  deleted {bench.deleted} in {delete_seconds:.2f} s (failures {dict(bench.delete_failures) or 0});"
              f" RSS after delete {deleted_after['VmRSS']} KiB")
    if bench.notes:
        print(f"  notes: {dict(bench.notes)}")
    print("RESULT " + json.dumps(result, sort_keys=True))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
