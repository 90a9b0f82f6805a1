"""A small, independent STUN/TURN client for interop tests.

Written from RFC 8489 (STUN) and RFC 8656 (TURN) with only the standard
library (struct, hmac, hashlib, zlib), so that it shares no code and no
assumptions with the Swift implementation it tests.

Typical use::

    with TurnClient(("127.0.0.1", port), "alice", "wonderland") as turn:
        ok = turn.allocate()                       # 401 -> REALM/NONCE -> signed Allocate
        resp = turn.create_permission(("127.0.0.1", 9))
        assert resp.is_success
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import ipaddress
import os
import socket
import struct
import time
import zlib

MAGIC_COOKIE = 0x2112A442
FINGERPRINT_XOR = 0x5354554E
HEADER_LENGTH = 20

# Classes (RFC 8489 section 5).
CLASS_REQUEST = 0b00
CLASS_INDICATION = 0b01
CLASS_SUCCESS = 0b10
CLASS_ERROR = 0b11

# Methods (RFC 8489 section 18.2, RFC 8656 section 17).
BINDING = 0x001
ALLOCATE = 0x003
REFRESH = 0x004
SEND = 0x006
DATA = 0x007
CREATE_PERMISSION = 0x008
CHANNEL_BIND = 0x009
CONNECT = 0x00A             # RFC 6062
CONNECTION_BIND = 0x00B
CONNECTION_ATTEMPT = 0x00C

# Attributes.
MAPPED_ADDRESS = 0x0001
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
UNKNOWN_ATTRIBUTES = 0x000A
CHANNEL_NUMBER = 0x000C
LIFETIME = 0x000D
XOR_PEER_ADDRESS = 0x0012
DATA_ATTR = 0x0013
REALM = 0x0014
NONCE = 0x0015
XOR_RELAYED_ADDRESS = 0x0016
REQUESTED_ADDRESS_FAMILY = 0x0017
EVEN_PORT = 0x0018
REQUESTED_TRANSPORT = 0x0019
DONT_FRAGMENT = 0x001A
XOR_MAPPED_ADDRESS = 0x0020
RESERVATION_TOKEN = 0x0022
CONNECTION_ID = 0x002A     # RFC 6062
SOFTWARE = 0x8022
FINGERPRINT = 0x8028

FAMILY_IPV4 = 0x01
FAMILY_IPV6 = 0x02
TRANSPORT_UDP = 17
TRANSPORT_TCP = 6

_NOT_ATTRIBUTES = {
    "MAGIC_COOKIE", "FINGERPRINT_XOR", "HEADER_LENGTH", "CLASS_REQUEST", "CLASS_INDICATION", "CLASS_SUCCESS",
    "CLASS_ERROR", "BINDING", "ALLOCATE", "REFRESH", "SEND", "DATA", "CREATE_PERMISSION", "CHANNEL_BIND",
    "CONNECT", "CONNECTION_BIND", "CONNECTION_ATTEMPT", "FAMILY_IPV4", "FAMILY_IPV6", "TRANSPORT_UDP", "TRANSPORT_TCP",
}


class StunError(Exception):
    """A malformed message or a failed exchange."""


def message_type(method: int, cls: int) -> int:
    """Interleave the 12-bit method and the 2-bit class (RFC 8489 section 5)."""
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((cls & 0b01) << 4)
        | ((cls & 0b10) << 7)
    )


def split_type(msg_type: int) -> tuple[int, int]:
    """Return (method, class) of a 14-bit message type."""
    method = (msg_type & 0x000F) | ((msg_type & 0x00E0) >> 1) | ((msg_type & 0x3E00) >> 2)
    cls = ((msg_type >> 4) & 0b01) | ((msg_type >> 7) & 0b10)
    return method, cls


def pad4(n: int) -> int:
    return (4 - n % 4) % 4


def new_transaction_id() -> bytes:
    return os.urandom(12)


# ---------------------------------------------------------------------------
# Attribute values


def encode_xor_address(addr: tuple[str, int], txid: bytes) -> bytes:
    """XOR-MAPPED/PEER/RELAYED-ADDRESS value (RFC 8489 section 14.2)."""
    ip = ipaddress.ip_address(addr[0])
    xport = addr[1] ^ (MAGIC_COOKIE >> 16)
    if ip.version == 4:
        xip = int(ip) ^ MAGIC_COOKIE
        return struct.pack("!BBHI", 0, FAMILY_IPV4, xport, xip)
    key = struct.pack("!I", MAGIC_COOKIE) + txid
    xip = bytes(a ^ b for a, b in zip(ip.packed, key))
    return struct.pack("!BBH", 0, FAMILY_IPV6, xport) + xip


def decode_xor_address(value: bytes, txid: bytes) -> tuple[str, int]:
    if len(value) < 8:
        raise StunError("short address attribute")
    _, family, xport = struct.unpack("!BBH", value[:4])
    port = xport ^ (MAGIC_COOKIE >> 16)
    if family == FAMILY_IPV4:
        (xip,) = struct.unpack("!I", value[4:8])
        return str(ipaddress.IPv4Address(xip ^ MAGIC_COOKIE)), port
    if family == FAMILY_IPV6 and len(value) >= 20:
        key = struct.pack("!I", MAGIC_COOKIE) + txid
        raw = bytes(a ^ b for a, b in zip(value[4:20], key))
        return str(ipaddress.IPv6Address(raw)), port
    raise StunError(f"bad address family {family}")


def decode_plain_address(value: bytes) -> tuple[str, int]:
    """MAPPED-ADDRESS value (not XOR'd)."""
    _, family, port = struct.unpack("!BBH", value[:4])
    if family == FAMILY_IPV4:
        return str(ipaddress.IPv4Address(value[4:8])), port
    return str(ipaddress.IPv6Address(value[4:20])), port


def encode_error_code(code: int, reason: str = "") -> bytes:
    return struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode()


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """MD5(username ":" realm ":" password) (RFC 8489 section 9.2.2)."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()


def rest_credentials(secret: str, user: str = "bob", ttl: int = 3600, now: float | None = None) -> tuple[str, str]:
    """Time-limited ("TURN REST API") credentials: (expiry:user, base64(HMAC-SHA1(secret, username)))."""
    expiry = int(now if now is not None else time.time()) + ttl
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


# ---------------------------------------------------------------------------
# Messages


@dataclasses.dataclass
class Message:
    method: int
    cls: int
    transaction_id: bytes = dataclasses.field(default_factory=new_transaction_id)
    attributes: list[tuple[int, bytes]] = dataclasses.field(default_factory=list)
    raw: bytes = b""

    # -- building
    def add(self, attr_type: int, value: bytes) -> "Message":
        self.attributes.append((attr_type, value))
        return self

    def encode(self, key: bytes | None = None, fingerprint: bool = True) -> bytes:
        """Serialise; append MESSAGE-INTEGRITY (when key is given) then FINGERPRINT."""
        body = b""
        for attr_type, value in self.attributes:
            body += struct.pack("!HH", attr_type, len(value)) + value + b"\x00" * pad4(len(value))
        mtype = message_type(self.method, self.cls)

        def header(length: int) -> bytes:
            return struct.pack("!HHI", mtype, length, MAGIC_COOKIE) + self.transaction_id

        if key is not None:
            mac = hmac.new(key, header(len(body) + 24) + body, hashlib.sha1).digest()
            body += struct.pack("!HH", MESSAGE_INTEGRITY, 20) + mac
        if fingerprint:
            crc = zlib.crc32(header(len(body) + 8) + body) ^ FINGERPRINT_XOR
            body += struct.pack("!HHI", FINGERPRINT, 4, crc & 0xFFFFFFFF)
        self.raw = header(len(body)) + body
        return self.raw

    # -- reading
    def get(self, attr_type: int) -> bytes | None:
        for t, v in self.attributes:
            if t == attr_type:
                return v
        return None

    def has(self, attr_type: int) -> bool:
        return self.get(attr_type) is not None

    @property
    def is_success(self) -> bool:
        return self.cls == CLASS_SUCCESS

    @property
    def is_error(self) -> bool:
        return self.cls == CLASS_ERROR

    @property
    def error_code(self) -> int | None:
        value = self.get(ERROR_CODE)
        if value is None or len(value) < 4:
            return None
        return (value[2] & 0x07) * 100 + value[3]

    @property
    def error_reason(self) -> str:
        value = self.get(ERROR_CODE)
        return value[4:].decode(errors="replace") if value else ""

    def xor_address(self, attr_type: int) -> tuple[str, int] | None:
        value = self.get(attr_type)
        return None if value is None else decode_xor_address(value, self.transaction_id)

    @property
    def xor_mapped_address(self) -> tuple[str, int] | None:
        return self.xor_address(XOR_MAPPED_ADDRESS)

    @property
    def xor_relayed_address(self) -> tuple[str, int] | None:
        return self.xor_address(XOR_RELAYED_ADDRESS)

    @property
    def lifetime(self) -> int | None:
        value = self.get(LIFETIME)
        return None if value is None else struct.unpack("!I", value[:4])[0]

    def text(self, attr_type: int) -> str | None:
        value = self.get(attr_type)
        return None if value is None else value.decode(errors="replace")

    def verify_integrity(self, key: bytes) -> bool:
        """Check MESSAGE-INTEGRITY of a parsed message against key."""
        offset = HEADER_LENGTH
        data = self.raw
        while offset + 4 <= len(data):
            attr_type, length = struct.unpack("!HH", data[offset : offset + 4])
            if attr_type == MESSAGE_INTEGRITY:
                adjusted = struct.pack("!H", offset - HEADER_LENGTH + 24)
                signed = data[:2] + adjusted + data[4:offset]
                expected = hmac.new(key, signed, hashlib.sha1).digest()
                return hmac.compare_digest(expected, data[offset + 4 : offset + 24])
            offset += 4 + length + pad4(length)
        return False

    def verify_fingerprint(self) -> bool | None:
        """True/False when FINGERPRINT is present, None when absent."""
        data = self.raw
        if len(data) < HEADER_LENGTH + 8 or struct.unpack("!H", data[-8:-6])[0] != FINGERPRINT:
            return None
        (crc,) = struct.unpack("!I", data[-4:])
        return (zlib.crc32(data[:-8]) ^ FINGERPRINT_XOR) & 0xFFFFFFFF == crc

    def __repr__(self) -> str:
        names = {v: k for k, v in globals().items() if k.isupper() and isinstance(v, int) and k not in _NOT_ATTRIBUTES}
        attrs = ", ".join(names.get(t, hex(t)) for t, _ in self.attributes)
        err = f" {self.error_code} {self.error_reason!r}" if self.is_error else ""
        return f"<Message method={self.method:#x} class={self.cls}{err} [{attrs}]>"


def parse(data: bytes) -> Message:
    """Parse a STUN message; raise StunError when it is not one."""
    if len(data) < HEADER_LENGTH:
        raise StunError("shorter than a STUN header")
    mtype, length, cookie = struct.unpack("!HHI", data[:8])
    if mtype & 0xC000 or cookie != MAGIC_COOKIE:
        raise StunError("not a STUN message")
    if length % 4 or HEADER_LENGTH + length != len(data):
        raise StunError("bad length")
    method, cls = split_type(mtype)
    msg = Message(method, cls, data[8:20], [], bytes(data))
    offset = HEADER_LENGTH
    while offset + 4 <= len(data):
        attr_type, alen = struct.unpack("!HH", data[offset : offset + 4])
        if offset + 4 + alen > len(data):
            raise StunError("attribute overruns message")
        msg.attributes.append((attr_type, bytes(data[offset + 4 : offset + 4 + alen])))
        offset += 4 + alen + pad4(alen)
    return msg


def channel_data(channel: int, payload: bytes, pad: bool = False) -> bytes:
    """A ChannelData message (RFC 8656 section 12.4)."""
    body = struct.pack("!HH", channel, len(payload)) + payload
    return body + (b"\x00" * pad4(len(payload)) if pad else b"")


def parse_channel_data(data: bytes) -> tuple[int, bytes] | None:
    if len(data) < 4 or not 0x4000 <= struct.unpack("!H", data[:2])[0] <= 0x7FFF:
        return None
    channel, length = struct.unpack("!HH", data[:4])
    return channel, data[4 : 4 + length]


# ---------------------------------------------------------------------------
# Clients


class StunClient:
    """A UDP STUN client with RFC 8489-style retransmissions (shortened for tests)."""

    def __init__(self, server: tuple[str, int], timeout: float = 3.0, rto: float = 0.25, bind: str | None = None):
        self.server = (server[0], server[1])
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((bind or ("::1" if family == socket.AF_INET6 else "127.0.0.1"), 0))
        self.timeout = timeout
        self.rto = rto
        self.unsolicited: list[bytes] = []

    @property
    def local_address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send_raw(self, data: bytes, to: tuple[str, int] | None = None) -> None:
        self.sock.sendto(data, to or self.server)

    def recv_raw(self, timeout: float) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(65535)
            return data
        except (socket.timeout, TimeoutError):
            return None

    def transact(self, msg: Message, key: bytes | None = None, fingerprint: bool = True) -> Message:
        """Send a request and wait for the response with its transaction id."""
        data = msg.encode(key=key, fingerprint=fingerprint)
        deadline = time.monotonic() + self.timeout
        rto = self.rto
        while time.monotonic() < deadline:
            self.send_raw(data)
            resp = self.await_response(msg, until=min(deadline, time.monotonic() + rto))
            if resp is not None:
                return resp
            rto *= 2
        raise StunError(f"no response to method {msg.method:#x} within {self.timeout}s")

    def await_response(self, msg: Message, until: float) -> Message | None:
        """Read until the response to `msg` arrives, or None when `until` passes; everything
        else that arrives meanwhile is kept in `unsolicited`."""
        while True:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return None
            reply = self.recv_raw(remaining)
            if reply is None:
                return None
            try:
                resp = parse(reply)
            except StunError:
                self.unsolicited.append(reply)
                continue
            if resp.transaction_id == msg.transaction_id and resp.cls in (CLASS_SUCCESS, CLASS_ERROR):
                return resp
            self.unsolicited.append(reply)

    def binding(self) -> Message:
        return self.transact(Message(BINDING, CLASS_REQUEST))


class TurnClient(StunClient):
    """Long-term-credential TURN client (RFC 8656) over UDP."""

    def __init__(self, server: tuple[str, int], username: str, password: str, **kwargs):
        super().__init__(server, **kwargs)
        self.username = username
        self.password = password
        self.realm: str | None = None
        self.nonce: bytes | None = None
        self.relayed: tuple[str, int] | None = None
        self.mapped: tuple[str, int] | None = None

    @property
    def key(self) -> bytes:
        assert self.realm is not None
        return long_term_key(self.username, self.realm, self.password)

    def authenticated(self, method: int, attrs: list[tuple[int, bytes]]) -> Message:
        """Send an authenticated request; learn REALM/NONCE from 401 and 438 and retry once each."""
        resp: Message | None = None
        for _ in range(3):
            msg = Message(method, CLASS_REQUEST, attributes=list(attrs))
            signed = self.realm is not None and self.nonce is not None
            if signed:
                msg.add(USERNAME, self.username.encode())
                msg.add(REALM, (self.realm or "").encode())
                msg.add(NONCE, self.nonce or b"")
                resp = self.transact(msg, key=self.key)
            else:
                resp = self.transact(msg)
            if resp.is_error and resp.error_code in (401, 438) and resp.has(NONCE):
                if resp.error_code == 401 and signed:
                    return resp  # the credentials were rejected
                self.nonce = resp.get(NONCE)
                self.realm = resp.text(REALM) or self.realm
                continue
            return resp
        assert resp is not None
        return resp

    def allocate(
        self,
        family: int | None = None,
        lifetime: int | None = None,
        even_port: bool = False,
        extra: list[tuple[int, bytes]] | None = None,
    ) -> Message:
        attrs = [(REQUESTED_TRANSPORT, struct.pack("!B3x", TRANSPORT_UDP))]
        if family is not None:
            attrs.append((REQUESTED_ADDRESS_FAMILY, struct.pack("!B3x", family)))
        if lifetime is not None:
            attrs.append((LIFETIME, struct.pack("!I", lifetime)))
        if even_port:
            attrs.append((EVEN_PORT, b"\x00"))
        attrs += extra or []
        resp = self.authenticated(ALLOCATE, attrs)
        if resp.is_success:
            self.relayed = resp.xor_relayed_address
            self.mapped = resp.xor_mapped_address
        return resp

    def _with_peer(self, method: int, peer: tuple[str, int], extra: list[tuple[int, bytes]] | None = None) -> Message:
        # The XOR-PEER-ADDRESS for IPv6 depends on the transaction id, so it is
        # re-encoded for every (re)try inside authenticated().
        resp: Message | None = None
        for _ in range(3):
            msg = Message(method, CLASS_REQUEST)
            msg.add(XOR_PEER_ADDRESS, encode_xor_address(peer, msg.transaction_id))
            for t, v in extra or []:
                msg.add(t, v)
            if self.realm is None or self.nonce is None:
                raise StunError("allocate first")
            msg.add(USERNAME, self.username.encode())
            msg.add(REALM, self.realm.encode())
            msg.add(NONCE, self.nonce)
            resp = self.transact(msg, key=self.key)
            if resp.is_error and resp.error_code == 438 and resp.has(NONCE):
                self.nonce = resp.get(NONCE)
                continue
            return resp
        assert resp is not None
        return resp

    def create_permission(self, peer: tuple[str, int]) -> Message:
        return self._with_peer(CREATE_PERMISSION, peer)

    def channel_bind(self, channel: int, peer: tuple[str, int]) -> Message:
        return self._with_peer(CHANNEL_BIND, peer, [(CHANNEL_NUMBER, struct.pack("!HH", channel, 0))])

    def refresh(self, lifetime: int = 600) -> Message:
        return self.authenticated(REFRESH, [(LIFETIME, struct.pack("!I", lifetime))])

    def send_indication(self, peer: tuple[str, int], payload: bytes) -> None:
        msg = Message(SEND, CLASS_INDICATION)
        msg.add(XOR_PEER_ADDRESS, encode_xor_address(peer, msg.transaction_id))
        msg.add(DATA_ATTR, payload)
        self.send_raw(msg.encode())

    def receive_data(self, timeout: float = 2.0) -> tuple[tuple[str, int] | None, bytes] | None:
        """Wait for a Data indication or ChannelData; return (peer or None for channels, payload)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.unsolicited:
                data = self.unsolicited.pop(0)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                data = self.recv_raw(remaining)
                if data is None:
                    return None
            cd = parse_channel_data(data)
            if cd is not None:
                return None, cd[1]
            try:
                msg = parse(data)
            except StunError:
                continue
            if msg.method == DATA and msg.cls == CLASS_INDICATION and msg.has(DATA_ATTR):
                return msg.xor_address(XOR_PEER_ADDRESS), msg.get(DATA_ATTR) or b""


# ---------------------------------------------------------------------------
# Stream transports (RFC 8656 section 3.1, RFC 6062): TCP and TLS


def frame_length(head: bytes) -> int | None:
    """Length of the STUN message or ChannelData frame starting with `head` (at least 4 bytes).

    On streams ChannelData is padded to a multiple of 4 (RFC 8656 section 12.5). None when
    the first two bits are neither 0b00 (STUN) nor 0b01 (ChannelData)."""
    kind = head[0] >> 6
    (length,) = struct.unpack("!H", head[2:4])
    if kind == 0:
        return HEADER_LENGTH + length
    if kind == 1:
        return 4 + length + pad4(length)
    return None


class ConnectionClosed(StunError):
    """The server closed the stream."""


def tls_client_context(alpn: list[str] | None = None) -> "ssl.SSLContext":
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def open_stream(server: tuple[str, int], tls: bool = False, alpn: list[str] | None = None,
                timeout: float = 5.0) -> socket.socket:
    """A TCP connection to server, wrapped in TLS (certificate not verified) when tls."""
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect((server[0], server[1]))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        sock = tls_client_context(alpn if alpn is not None else ["stun.turn"]).wrap_socket(sock, server_hostname="localhost")
    return sock


class StreamFramer:
    """Reads whole STUN / ChannelData frames from a stream socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""
        self.eof = False

    def next_frame(self, timeout: float) -> bytes | None:
        """The next frame; None on timeout; ConnectionClosed at EOF/reset; StunError for garbage."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buffer) >= 4:
                n = frame_length(self.buffer)
                if n is None:
                    raise StunError(f"not a STUN/ChannelData frame: {self.buffer[:8].hex()}")
                if len(self.buffer) >= n:
                    frame, self.buffer = self.buffer[:n], self.buffer[n:]
                    return frame
            if self.eof:
                raise ConnectionClosed("server closed the connection")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            except (ConnectionResetError, BrokenPipeError) as e:
                self.eof = True
                raise ConnectionClosed(f"connection reset: {e}") from e
            if not chunk:
                self.eof = True
                continue
            self.buffer += chunk


class StreamTurnClient(TurnClient):
    """TurnClient over TCP or TLS: one allocation per connection, no retransmissions."""

    def __init__(self, server: tuple[str, int], username: str, password: str, tls: bool = False,
                 alpn: list[str] | None = None, timeout: float = 3.0, sock: socket.socket | None = None):
        # Deliberately not calling StunClient.__init__ (it opens a UDP socket).
        self.server = (server[0], server[1])
        self.timeout = timeout
        self.rto = timeout
        self.unsolicited = []
        self.username = username
        self.password = password
        self.realm = None
        self.nonce = None
        self.relayed = None
        self.mapped = None
        self.sock = sock if sock is not None else open_stream(self.server, tls=tls, alpn=alpn, timeout=timeout)
        self.framer = StreamFramer(self.sock)

    def send_raw(self, data: bytes, to: tuple[str, int] | None = None) -> None:
        self.sock.sendall(data)

    def recv_raw(self, timeout: float) -> bytes | None:
        return self.framer.next_frame(timeout)

    def transact(self, msg: Message, key: bytes | None = None, fingerprint: bool = True) -> Message:
        # A stream is reliable: send once, then wait (no retransmissions).
        self.send_raw(msg.encode(key=key, fingerprint=fingerprint))
        resp = self.await_response(msg, until=time.monotonic() + self.timeout)
        if resp is None:
            raise StunError(f"no response to method {msg.method:#x} within {self.timeout}s")
        return resp

    def allocate_tcp(self, lifetime: int | None = None) -> Message:
        """RFC 6062 Allocate with REQUESTED-TRANSPORT TCP."""
        attrs = [(REQUESTED_TRANSPORT, struct.pack("!B3x", TRANSPORT_TCP))]
        if lifetime is not None:
            attrs.append((LIFETIME, struct.pack("!I", lifetime)))
        resp = self.authenticated(ALLOCATE, attrs)
        if resp.is_success:
            self.relayed = resp.xor_relayed_address
            self.mapped = resp.xor_mapped_address
        return resp

    def connect_peer(self, peer: tuple[str, int]) -> Message:
        """RFC 6062 Connect; the success response carries CONNECTION-ID."""
        return self._with_peer(CONNECT, peer)

    def connection_bind(self, connection_id: int) -> Message:
        """RFC 6062 ConnectionBind (sent on a new data connection)."""
        return self.authenticated(CONNECTION_BIND, [(CONNECTION_ID, struct.pack("!I", connection_id))])

    def wait_message(self, method: int, cls: int, timeout: float = 3.0) -> Message | None:
        """Wait for an unsolicited message (e.g. a ConnectionAttempt indication)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, data in enumerate(self.unsolicited):
                try:
                    msg = parse(data)
                except StunError:
                    continue
                if msg.method == method and msg.cls == cls:
                    del self.unsolicited[i]
                    return msg
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            data = self.recv_raw(remaining)
            if data is not None:
                self.unsolicited.append(data)


def connection_id(msg: Message) -> int | None:
    value = msg.get(CONNECTION_ID)
    return None if value is None else struct.unpack("!I", value[:4])[0]
