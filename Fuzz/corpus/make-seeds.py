#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target (Fuzz/corpus/<target>/seed-*): RFC 5769 vectors,
constructed client messages (Binding, Allocate, ChannelData, a DTLS ClientHello) and, for
fuzz-core, operation sequences in its input encoding. Run from anywhere; rewrites seed-* only
(crash-* files, inputs that once broke an invariant, are kept)."""
import hashlib, hmac, os, struct, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
COOKIE = 0x2112A442


def h(text):
    return bytes.fromhex("".join(text.split()))


# RFC 5769 §2.1–2.4.
RFC5769 = {
    "rfc5769-request": h("""
        00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
        00 24 00 04 6e 00 01 ff 80 29 00 08 93 2f f9 b1 51 26 3b 36
        00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
        00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
        80 28 00 04 e5 7a 3b cf"""),
    "rfc5769-ipv4-response": h("""
        01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 08 00 01 a1 47 e1 12 a6 43
        00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
        80 28 00 04 c0 7d 4c 96"""),
    "rfc5769-ipv6-response": h("""
        01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
        00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
        80 28 00 04 c8 fb 0b 4c"""),
    "rfc5769-long-term-request": h("""
        00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
        00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
        00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
        00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
        00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66"""),
}


def attr(t, v):
    return struct.pack(">HH", t, len(v)) + v + b"\0" * (-len(v) % 4)


def stun(typ, attrs, tid=b"\x5a" * 12, key=None, fingerprint=False):
    body = b"".join(attr(t, v) for t, v in attrs)
    if key is not None:
        head = struct.pack(">HHI", typ, len(body) + 24, COOKIE) + tid
        body += attr(0x0008, hmac.new(key, head + body, hashlib.sha1).digest())
    if fingerprint:
        head = struct.pack(">HHI", typ, len(body) + 8, COOKIE) + tid
        body += attr(0x8028, struct.pack(">I", (zlib.crc32(head + body) ^ 0x5354554E) & 0xFFFFFFFF))
    return struct.pack(">HHI", typ, len(body), COOKIE) + tid + body


def xor_address(ip4, port):
    a = bytes(int(x) for x in ip4.split("."))
    x = bytes(b ^ c for b, c in zip(a, struct.pack(">I", COOKIE)))
    return b"\0\x01" + struct.pack(">H", port ^ (COOKIE >> 16)) + x


key = hashlib.md5(b"alice:example.org:wonderland").digest()
nonce = b"obMatJos2AAABZmQ5YTJiZDA5ZDc0NmQ0MQ"
CLIENT = {
    "binding": stun(0x0001, []),
    "binding-fingerprint": stun(0x0001, [(0x8022, b"client")], fingerprint=True),
    "binding-rfc3489": struct.pack(">HHI", 0x0001, 0, 0x01020304) + b"\x11" * 12,
    "allocate-unauthenticated": stun(0x0003, [(0x0019, b"\x11\0\0\0")]),
    "allocate-authenticated": stun(0x0003, [(0x0019, b"\x11\0\0\0"), (0x0006, b"alice"), (0x0014, b"example.org"),
                                            (0x0015, nonce)], key=key, fingerprint=True),
    "refresh": stun(0x0004, [(0x000D, b"\0\0\0\0"), (0x0006, b"alice"), (0x0014, b"example.org"),
                             (0x0015, nonce)], key=key),
    "create-permission": stun(0x0008, [(0x0012, xor_address("8.8.8.8", 3478)), (0x0006, b"alice"),
                                       (0x0014, b"example.org"), (0x0015, nonce)], key=key),
    "channel-bind": stun(0x0009, [(0x000C, b"\x40\0\0\0"), (0x0012, xor_address("8.8.8.8", 3478)),
                                  (0x0006, b"alice"), (0x0014, b"example.org"), (0x0015, nonce)], key=key),
    "send-indication": stun(0x0016, [(0x0012, xor_address("8.8.8.8", 3478)), (0x0013, b"hello peer")]),
    "error-401": stun(0x0113, [(0x0009, b"\0\0\x04\x01Unauthenticated"), (0x0014, b"example.org"),
                               (0x0015, nonce), (0x8002, b"\0\x02\0\0\0\x01\0\0")]),
}
CHANNEL_DATA = b"\x40\x00\x00\x05hello\0\0\0"

# A DTLS 1.2 ClientHello record (epoch 0), as a browser's first datagram starts.
client_hello_body = (b"\xfe\xfd" + b"\x42" * 32 + b"\x00" + b"\x00" + b"\x00\x04\xc0\x2b\xc0\x2f" + b"\x01\x00"
                     + b"\x00\x0a" + b"\x00\x0a\x00\x04\x00\x02\x00\x17" + b"\x00\x00")
handshake = b"\x01" + struct.pack(">I", len(client_hello_body))[1:] + b"\x00\x00" + b"\x00\x00\x00" \
    + struct.pack(">I", len(client_hello_body))[1:] + client_hello_body
DTLS_CLIENT_HELLO = b"\x16\xfe\xff" + b"\x00\x00" + b"\x00" * 6 + struct.pack(">H", len(handshake)) + handshake
DTLS_APPLICATION = b"\x17\xfe\xfd" + b"\x00\x01" + b"\x00\x00\x00\x00\x00\x07" + b"\x00\x10" + b"\xab" * 16


# fuzz-core's input encoding (see FuzzCore.swift: World.step). Indices into its tables:
# Auth.all: 0 none, 1 md5, 4 sha256, 5 md5 with SHA-256 integrity, 6 wrong password, 7 forged nonce, 8 userhash.
# users: 0 alice, 1 bob, 2 carol (REST), 3 dave (expired REST), 4 mallory (unknown).
# peers: 0 8.8.8.8, 1 1.1.1.1, 2 127.0.0.1, 3 [2606:4700::1111], 4 [::ffff:127.0.0.1], 5 8.8.4.4,
#        6 198.51.100.1 (a relay address), 7 [2a00:1450::1].
# channels: 0 0x4000, 1 0x4001, 2 0x4002, 3 0x4FFF, 4 0x5000, 5 0x7FFF, 6 0x3FFF, 7 0xFFFF.
MD5, SHA256, USERHASH = 1, 4, 8


def allocate(t=0, auth=MD5, user=0, flags=0, more=0, lifetime=0, family=0, token=1):
    return bytes([0, flags, more, lifetime, family, token, t, auth, user])


def refresh(t=0, auth=MD5, user=0, lifetime=None, family=None):
    flags = (1 if lifetime is not None else 0) | (2 if family is not None else 0) | ((family or 1) - 1) << 7
    return bytes([2, flags, lifetime or 0, t, auth, user])


def permission(peers, t=0, auth=MD5, user=0):
    return bytes([3, len(peers) - 1] + peers + [t, auth, user])


def channel_bind(channel, peer, t=0, auth=MD5, user=0, flags=0):
    return bytes([4, channel, peer, flags, t, auth, user])


def send(peer, payload, t=0, flags=0):
    return bytes([5, t, peer, flags, len(payload)]) + payload


def channel_data(channel, length, t=0, by_slot=0):
    return bytes([6, t, channel]) + struct.pack(">H", length) + bytes([by_slot])


def peer_data(slot, peer, length):
    return bytes([7, slot, peer]) + struct.pack(">H", length)


def raw(data, t=0):
    return bytes([10, t]) + struct.pack(">H", len(data)) + data


def clock(seconds):
    return bytes([12, 1, seconds])


SWEEP, SHUTDOWN = bytes([13]), bytes([21])



def opts(options=0, more=0):
    """fuzz-core's first two bytes: configuration options (see World.init)."""
    return bytes([options, more])


CORE = {
    "relay-path": opts() + allocate() + permission([0]) + channel_bind(0, 0) + channel_data(0, 100)
    + send(0, b"hello") + peer_data(0, 0, 100) + bytes([8, 0, 0]) + refresh(lifetime=0),
    "quota": opts() + allocate(t=0) + allocate(t=1) + allocate(t=4) + allocate(t=3, user=1)
    + bytes([14, 0]) + allocate(t=4),
    "tcp-connect": opts() + allocate(t=2, flags=2) + bytes([18, 0, 2, MD5, 0]) + bytes([19, 0, 0, 0, 5, MD5, 0]),
    "dual-stack": opts(1) + allocate(flags=128) + permission([3, 0]) + channel_bind(1, 7)
    + refresh(lifetime=0, family=2) + permission([3]),
    "expiry": opts() + allocate(auth=SHA256, user=2) + clock(250) + clock(250) + clock(250) + SWEEP
    + refresh(auth=SHA256, user=2, lifetime=2) + bytes([12, 3]) + SWEEP,
    "permission-quota": opts() + bytes([17, 1]) + allocate(auth=USERHASH) + permission([0, 1, 5])
    + channel_bind(0, 2) + channel_bind(1, 6),
    "even-port": opts() + allocate(flags=8 | 16) + allocate(t=1, flags=32, token=0) + SHUTDOWN,
    "raw-rfc5769": opts() + raw(RFC5769["rfc5769-request"]) + raw(RFC5769["rfc5769-long-term-request"])
    + raw(CHANNEL_DATA) + raw(CLIENT["binding-rfc3489"], t=3)
    + raw(stun(0x0003, [(0x0006, b"u" * 512)])),
    # Fleet quota: the Allocate waits for the verdict (op 22), one is cancelled by a close (op 14),
    # the authority turns unavailable (op 25).
    "fleet-quota": opts(0, 1) + allocate(t=0) + bytes([22, 0]) + allocate(t=1) + bytes([14, 1])
    + bytes([25, 1]) + allocate(t=4) + bytes([22, 4]) + allocate(t=3, user=1) + bytes([25, 0]) + bytes([22, 3]),
    # Removal revokes: bob removed (policy 4), the REST secret rotated (policy 6), then sweeps.
    "revocation": opts() + allocate(t=0, user=1) + allocate(t=1, user=2) + bytes([17, 4]) + SWEEP
    + bytes([17, 6]) + SWEEP + clock(250) + clock(250) + clock(250) + clock(250) + SWEEP,
    # A reload denies a peer with a permission and a channel: applied to them at the next sweep.
    "policy-reload": opts() + allocate() + permission([5]) + channel_bind(0, 5) + bytes([17, 2]) + send(5, b"x")
    + channel_data(0, 10) + SWEEP + send(5, b"x") + channel_data(0, 10),
    # The sessions API (op 23: list, end by id or by user) and a listener handed over (op 24).
    "sessions": opts() + allocate(t=0) + allocate(t=2, user=1) + allocate(t=3, user=1) + bytes([23, 0, 1])
    + bytes([23, 1, 1]) + allocate(t=4) + bytes([24, 0, 2]) + bytes([23, 2]),
}

SEEDS = {
    "fuzz-stun": {**RFC5769, **CLIENT},
    "fuzz-framing": {
        "stream-stun-channel": RFC5769["rfc5769-request"] + CHANNEL_DATA + CLIENT["allocate-authenticated"],
        "stream-channel-data": CHANNEL_DATA * 3,
        "stream-send": CLIENT["send-indication"] + CHANNEL_DATA,
        "channel-data-datagram": b"\x40\x01\x00\x03abc",
    },
    "fuzz-core": CORE,
    "fuzz-dtls-records": {
        "client-hello": DTLS_CLIENT_HELLO,
        "application-data": DTLS_APPLICATION,
        "records": DTLS_CLIENT_HELLO + DTLS_APPLICATION,
    },
}

for target, seeds in SEEDS.items():
    directory = os.path.join(HERE, target)
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.startswith("seed-"):
            os.remove(os.path.join(directory, name))
    for name, data in seeds.items():
        with open(os.path.join(directory, "seed-" + name), "wb") as f:
            f.write(data)
