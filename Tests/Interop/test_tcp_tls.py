"""TURN over TCP and TLS (RFC 8656 section 3.1) and TCP allocations (RFC 6062).

Clients from outside the project where possible: coturn's turnutils_uclient (-t, -S, -T),
aioice with turn_transport="tcp", the openssl CLI and Python's ssl module; the raw protocol
checks use stunclient.StreamTurnClient (written from the RFCs)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

import aioice
import pytest

import stunclient
from stunclient import (
    ALLOCATE, CLASS_INDICATION, CLASS_REQUEST, CONNECTION_ATTEMPT, REQUESTED_TRANSPORT, TRANSPORT_TCP,
    XOR_PEER_ADDRESS, Message, StreamTurnClient, TurnClient,
)
from test_turn_uclient import assert_clean_run, static_user

UCLIENT_TIMEOUT = 120
UCLIENT_ARGS = ["--legacy-channel-numbers", "--user-quota", "1000"]
TLS_LISTEN = ["127.0.0.1:0", "[::1]:0"]


def uclient(port: int, server, *flags: str, host: str = "127.0.0.1", timeout: float = UCLIENT_TIMEOUT) -> tuple[int, str]:
    argv = ["turnutils_uclient", "-p", str(port), *static_user(server), *flags, host]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    return result.returncode, f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}"


# ---------------------------------------------------------------------------
# 1-3. turnutils_uclient over TCP and TLS


@pytest.mark.server_args(extra=UCLIENT_ARGS)
def test_uclient_tcp_channels(server, echo_peers):
    """-t: TURN over TCP to the UDP echo peers, ChannelData framed (and padded) on the stream."""
    code, output = uclient(server.tcp4[1], server, "-t", "-c", "-e", "127.0.0.1", "-r", str(echo_peers),
                           "-m", "10", "-l", "170", "-n", "100")
    assert_clean_run(code, output, 10, 100)


@pytest.mark.server_args(extra=UCLIENT_ARGS)
def test_uclient_tcp_send_indications(server, echo_peers):
    """-t -s: Send/Data indications over TCP."""
    code, output = uclient(server.tcp4[1], server, "-t", "-s", "-c", "-e", "127.0.0.1", "-r", str(echo_peers),
                           "-m", "10", "-l", "170", "-n", "100")
    assert_clean_run(code, output, 10, 100)


@pytest.mark.server_args(extra=UCLIENT_ARGS)
def test_uclient_tcp_rtp_rtcp_pairs(server, echo_peers):
    """-t without -c: RTP/RTCP allocation pairs (EVEN-PORT + RESERVATION-TOKEN) over TCP, odd message size."""
    code, output = uclient(server.tcp4[1], server, "-t", "-e", "127.0.0.1", "-r", str(echo_peers),
                           "-m", "2", "-l", "171", "-n", "50")
    assert_clean_run(code, output, 2, 50)


@pytest.mark.server_args(tls_listen=TLS_LISTEN, extra=UCLIENT_ARGS)
def test_tls_only_client_reaches_udp_peer(server, echo_peers):
    """Acceptance: a client that only has TLS (uclient -t -S) reaches a UDP peer through the relay."""
    code, output = uclient(server.tls4[1], server, "-t", "-S", "-c", "-e", "127.0.0.1", "-r", str(echo_peers),
                           "-m", "10", "-l", "170", "-n", "100")
    assert_clean_run(code, output, 10, 100)


@pytest.mark.server_args(tls_listen=TLS_LISTEN, extra=UCLIENT_ARGS)
def test_tls_only_client_reaches_udp_peer_send_indications(server, echo_peers):
    code, output = uclient(server.tls4[1], server, "-t", "-S", "-s", "-c", "-e", "127.0.0.1", "-r", str(echo_peers),
                           "-m", "5", "-l", "170", "-n", "100")
    assert_clean_run(code, output, 5, 100)


@pytest.mark.server_args(tls_listen=TLS_LISTEN, extra=UCLIENT_ARGS)
def test_tls_only_client_reaches_udp_peer_ipv6(server, echo_peers):
    """The same over an IPv6 TLS control connection ([::1]) relaying to IPv4 UDP peers."""
    port = server.stream_address("tls", socket.AF_INET6)[1]
    code, output = uclient(port, server, "-t", "-S", "-c", "-e", "127.0.0.1", "-r", str(echo_peers),
                           "-m", "5", "-l", "170", "-n", "50", host="::1")
    assert_clean_run(code, output, 5, 50)


@pytest.mark.server_args(extra=UCLIENT_ARGS)
@pytest.mark.parametrize("clients", [4, 10])
def test_uclient_rfc6062_tcp_relay(server, clients):
    """-T: RFC 6062 client-to-client through TCP relays (Connect / ConnectionAttempt / ConnectionBind)."""
    code, output = uclient(server.tcp4[1], server, "-T", "-m", str(clients), "-l", "170", "-n", "50")
    assert_clean_run(code, output, clients, 50)


@pytest.mark.server_args(tls_listen=TLS_LISTEN, extra=UCLIENT_ARGS)
def test_uclient_rfc6062_tcp_relay_over_tls(server):
    code, output = uclient(server.tls4[1], server, "-T", "-S", "-m", "4", "-l", "170", "-n", "50")
    assert_clean_run(code, output, 4, 50)


# ---------------------------------------------------------------------------
# 4. aioice over TCP (and TLS)

ICE_TIMEOUT = 30


def ice_agent(address: tuple[str, int], username: str, password: str, controlling: bool,
              tls: bool = False) -> aioice.Connection:
    return aioice.Connection(
        ice_controlling=controlling,
        turn_server=address,
        turn_username=username,
        turn_password=password,
        turn_transport="tcp",
        turn_ssl=stunclient.tls_client_context(["stun.turn"]) if tls else False,
        use_ipv4=True,
        use_ipv6=False,
        transport_policy=aioice.TransportPolicy.RELAY,
    )


async def ice_relay_round_trip(address: tuple[str, int], username: str, password: str, tls: bool) -> None:
    a = ice_agent(address, username, password, True, tls)
    b = ice_agent(address, username, password, False, tls)
    try:
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        for conn in (a, b):
            relays = [c for c in conn.local_candidates if c.type == "relay"]
            assert relays, f"no relay candidate gathered over TCP: {conn.local_candidates}"
            assert all(c.host == "127.0.0.1" and c.transport == "udp" for c in relays), relays
        for local, remote in ((a, b), (b, a)):
            for candidate in local.local_candidates:
                if candidate.type == "relay":
                    await remote.add_remote_candidate(candidate)
            await remote.add_remote_candidate(None)
            remote.remote_username = local.local_username
            remote.remote_password = local.local_password
        await asyncio.gather(a.connect(), b.connect())
        for i in range(20):
            payload = f"ping {i} ".encode() * (i + 1)
            await a.sendto(payload, 1)
            assert await asyncio.wait_for(b.recvfrom(), 5) == (payload, 1)
            await b.sendto(payload[::-1], 1)
            assert await asyncio.wait_for(a.recvfrom(), 5) == (payload[::-1], 1)
    finally:
        await asyncio.gather(a.close(), b.close())


def test_aioice_relay_over_tcp(server):
    name, password = server.user
    asyncio.run(asyncio.wait_for(ice_relay_round_trip(server.tcp4, name, password, tls=False), ICE_TIMEOUT))


@pytest.mark.server_args(tls_listen=TLS_LISTEN)
def test_aioice_relay_over_tls(server):
    username, password = stunclient.rest_credentials(server.secret, "bob")
    asyncio.run(asyncio.wait_for(ice_relay_round_trip(server.tls4, username, password, tls=True), ICE_TIMEOUT))


# ---------------------------------------------------------------------------
# 5. TLS handshakes seen by the openssl CLI


def s_client(port: int, *flags: str, host: str = "127.0.0.1") -> tuple[int, str]:
    argv = ["openssl", "s_client", "-connect", f"{host}:{port}", *flags]
    result = subprocess.run(argv, input="", capture_output=True, text=True, timeout=30)
    return result.returncode, f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}"


@pytest.mark.server_args(tls_listen=TLS_LISTEN)
@pytest.mark.parametrize("alpn", ["stun.turn", "stun.nat-discovery"])
def test_openssl_alpn(server, alpn):
    code, output = s_client(server.tls4[1], "-alpn", alpn)
    assert f"ALPN protocol: {alpn}" in output, output
    assert code == 0, output


@pytest.mark.server_args(tls_listen=TLS_LISTEN)
def test_openssl_ipv6_alpn(server):
    code, output = s_client(server.stream_address("tls", socket.AF_INET6)[1], "-alpn", "stun.turn", host="[::1]")
    assert "ALPN protocol: stun.turn" in output, output


def wait_for_log(server, needle: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = server.log()
        if needle in log:
            return log
        time.sleep(0.1)
    return server.log()


@pytest.mark.server_args(tls_listen=TLS_LISTEN)
def test_openssl_tls11_refused_and_logged_once(server):
    # SECLEVEL=0 so that the client itself is willing to offer TLS 1.1 (OpenSSL 3 refuses by default).
    code, output = s_client(server.tls4[1], "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-alpn", "stun.turn")
    assert code != 0, output
    assert "ALPN protocol: stun.turn" not in output, output
    log = wait_for_log(server, "tls handshake failed")
    lines = [line for line in log.splitlines() if 'msg="tls handshake failed"' in line]
    assert len(lines) == 1, f"expected one handshake failure line:\n{log[-3000:]}"
    reason = re.search(r'reason=("[^"]+"|\S+)', lines[0])
    assert reason and reason.group(1).strip('"'), lines[0]
    assert "protocol" in reason.group(1), lines[0]
    # The listener still serves good clients.
    code, output = s_client(server.tls4[1], "-alpn", "stun.turn")
    assert "ALPN protocol: stun.turn" in output, output
    server.assert_alive()


@pytest.mark.server_args(tls_listen=TLS_LISTEN)
def test_default_self_signed_certificate_is_served(server):
    """Without [tls] the server creates tls-certificate.pem / tls-key.pem in its state dir and serves them."""
    cert_file = server.log_path.parent / "state" / "tls-certificate.pem"
    assert cert_file.exists() and (cert_file.parent / "tls-key.pem").exists()
    assert presented_certificate(server.tls4) == ssl.PEM_cert_to_DER_cert(cert_file.read_text())


# ---------------------------------------------------------------------------
# 6. Certificate reload


def make_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", f"/CN={name}.traverse.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    return cert, key


def presented_certificate(address: tuple[str, int]) -> bytes:
    """DER of the certificate a new TLS handshake presents."""
    with stunclient.open_stream(address, tls=True) as sock:
        return sock.getpeercert(binary_form=True)


def presented_subject(address: tuple[str, int]) -> str:
    code, output = s_client(address[1], "-alpn", "stun.turn")
    match = re.search(r"subject=.*", output)
    assert match, output
    return match.group(0)


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


class UdpPeer:
    """A UDP socket on 127.0.0.1 that plays a peer."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(3)

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def close(self):
        self.sock.close()


def assert_relays_both_ways(turn: TurnClient, peer: UdpPeer, tag: bytes) -> None:
    resp = turn.create_permission(peer.address)
    assert resp.is_success, resp
    turn.send_indication(peer.address, b"to peer " + tag)
    data, source = peer.sock.recvfrom(2048)
    assert data == b"to peer " + tag
    assert source == turn.relayed
    peer.sock.sendto(b"to client " + tag, turn.relayed)
    got = turn.receive_data(3)
    assert got is not None, "no Data indication from the peer"
    assert got == (peer.address, b"to client " + tag), got


def tls_config(tmp_path: Path, cert: Path, key: Path, extra: str = "") -> Path:
    config = tmp_path / "traverse.toml"
    config.write_text(f'[tls]\ncertificate = "{cert}"\nprivate_key = "{key}"\n{extra}')
    return config


def start_with_tls_files(start_server, tmp_path: Path):
    a_cert, a_key = make_certificate(tmp_path, "cert-a")
    b_cert, b_key = make_certificate(tmp_path, "cert-b")
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    live_cert.write_bytes(a_cert.read_bytes())
    live_key.write_bytes(a_key.read_bytes())
    config = tls_config(tmp_path, live_cert, live_key)
    server = start_server(tls_listen=["127.0.0.1:0"], extra=["--config", str(config)])
    assert presented_certificate(server.tls4) == der(a_cert)
    assert "cert-a.traverse.test" in presented_subject(server.tls4)
    return server, (a_cert, a_key), (b_cert, b_key), (live_cert, live_key)


def replace_file(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def wait_for_certificate(address: tuple[str, int], expected: bytes, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        seen = presented_certificate(address)
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def test_sighup_reloads_certificate_and_keeps_connections(start_server, tmp_path):
    server, (a_cert, _), (b_cert, b_key), (live_cert, live_key) = start_with_tls_files(start_server, tmp_path)
    name, password = server.user
    peer = UdpPeer()
    with StreamTurnClient(server.tls4, name, password, tls=True) as turn:
        assert turn.sock.getpeercert(binary_form=True) == der(a_cert)
        assert turn.allocate().is_success
        assert_relays_both_ways(turn, peer, b"before reload")

        replace_file(live_cert, b_cert.read_bytes())
        replace_file(live_key, b_key.read_bytes())
        os.kill(server.process.pid, signal.SIGHUP)

        # (a) New handshakes present certificate B (SIGHUP is immediate; allow a moment).
        seen = wait_for_certificate(server.tls4, der(b_cert), timeout=1.5)
        assert seen == der(b_cert), f"new handshake still presents {'A' if seen == der(a_cert) else 'another cert'}"
        assert "cert-b.traverse.test" in presented_subject(server.tls4)

        # (b) The connection made before the reload still works.
        refresh = turn.refresh(600)
        assert refresh.is_success, refresh
        assert_relays_both_ways(turn, peer, b"after reload")
        # And a new TLS allocation works with the new certificate.
        with StreamTurnClient(server.tls4, name, password, tls=True) as fresh:
            assert fresh.sock.getpeercert(binary_form=True) == der(b_cert)
            assert fresh.allocate().is_success
            assert_relays_both_ways(fresh, peer, b"new connection")
    peer.close()
    server.assert_alive()


def test_certificate_file_change_is_picked_up_without_sighup(start_server, tmp_path):
    server, (a_cert, _), (b_cert, b_key), (live_cert, live_key) = start_with_tls_files(start_server, tmp_path)
    replace_file(live_cert, b_cert.read_bytes())
    replace_file(live_key, b_key.read_bytes())
    seen = wait_for_certificate(server.tls4, der(b_cert), timeout=8)
    assert seen == der(b_cert), "the changed certificate files were not reloaded within 8 s (polled every 2 s)"


def test_broken_certificate_reload_keeps_serving_old_one(start_server, tmp_path):
    """A reload that cannot load the files keeps the current certificate (handshakes keep working)."""
    server, (a_cert, _), _, (live_cert, _) = start_with_tls_files(start_server, tmp_path)
    live_cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    os.kill(server.process.pid, signal.SIGHUP)
    time.sleep(1)
    server.assert_alive()
    assert presented_certificate(server.tls4) == der(a_cert)


# ---------------------------------------------------------------------------
# 7. Stream robustness (raw sockets)


def binding_request() -> Message:
    return Message(stunclient.BINDING, CLASS_REQUEST)


def read_responses(sock: socket.socket, count: int, timeout: float = 3.0) -> list[Message]:
    framer = stunclient.StreamFramer(sock)
    out = []
    for _ in range(count):
        frame = framer.next_frame(timeout)
        assert frame is not None, f"only {len(out)} of {count} responses within {timeout}s"
        out.append(stunclient.parse(frame))
    return out


def assert_closed_by_server(sock, timeout: float) -> None:
    """The server closes the connection (EOF or reset) within timeout; data before that is ignored."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"the server did not close the connection within {timeout}s"
        sock.settimeout(remaining)
        try:
            if not sock.recv(65536):
                return
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return
        except (socket.timeout, TimeoutError):
            continue


def assert_served(server) -> None:
    """Other clients still get answers, over TCP and UDP."""
    with stunclient.open_stream(server.tcp4) as sock:
        req = binding_request()
        sock.sendall(req.encode())
        (resp,) = read_responses(sock, 1)
        assert resp.is_success and resp.transaction_id == req.transaction_id
    with stunclient.StunClient(server.udp4) as udp:
        assert udp.binding().is_success
    server.assert_alive()


@pytest.mark.parametrize("kind", ["tcp", "tls"])
@pytest.mark.server_args(tls_listen=TLS_LISTEN)
def test_request_split_into_single_bytes(server, kind):
    with stunclient.open_stream(server.stream_address(kind), tls=kind == "tls") as sock:
        req = binding_request()
        for byte in req.encode():
            sock.sendall(bytes([byte]))
            time.sleep(0.002)
        (resp,) = read_responses(sock, 1)
        assert resp.is_success and resp.transaction_id == req.transaction_id
        mapped = resp.xor_mapped_address
        assert mapped == sock.getsockname()[:2], (mapped, sock.getsockname())


@pytest.mark.parametrize("kind", ["tcp", "tls"])
@pytest.mark.server_args(tls_listen=TLS_LISTEN)
def test_two_requests_in_one_write(server, kind):
    with stunclient.open_stream(server.stream_address(kind), tls=kind == "tls") as sock:
        first, second = binding_request(), binding_request()
        sock.sendall(first.encode() + second.encode())
        responses = read_responses(sock, 2)
        assert [r.transaction_id for r in responses] == [first.transaction_id, second.transaction_id]
        assert all(r.is_success for r in responses)
        # A request and a half, then the rest: both answered.
        third, fourth = binding_request().encode(), binding_request().encode()
        sock.sendall(third + fourth[:7])
        time.sleep(0.1)
        sock.sendall(fourth[7:])
        assert [r.transaction_id for r in read_responses(sock, 2)] == [third[8:20], fourth[8:20]]


@pytest.mark.parametrize("kind", ["tcp", "tls"])
@pytest.mark.server_args(tls_listen=TLS_LISTEN)
def test_garbage_closes_connection(server, kind):
    with stunclient.open_stream(server.stream_address(kind), tls=kind == "tls") as sock:
        sock.sendall(b"\x80" + os.urandom(63))
        assert_closed_by_server(sock, 5)
    assert_served(server)


def test_garbage_after_valid_request_closes_connection(server):
    with stunclient.open_stream(server.tcp4) as sock:
        req = binding_request()
        sock.sendall(req.encode() + b"\xc0\x01\x00\x04garbage!")
        (resp,) = read_responses(sock, 1)
        assert resp.transaction_id == req.transaction_id
        assert_closed_by_server(sock, 5)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_client_that_never_reads_is_disconnected(server):
    """A UDP peer floods a TCP client that never reads: the server drops the client (bounded buffer)
    instead of growing, and keeps serving everybody else."""
    name, password = server.user
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(5)
    raw.connect(server.tcp4)
    peer = UdpPeer()
    with StreamTurnClient(server.tcp4, name, password, sock=raw) as turn:
        assert turn.allocate().is_success
        assert turn.create_permission(peer.address).is_success
        rss_before = rss_kib(server.process.pid)
        payload = os.urandom(1200)
        deadline = time.monotonic() + 4
        sent = 0
        while time.monotonic() < deadline and sent < 40_000:  # up to ~48 MB
            try:
                peer.sock.sendto(payload, turn.relayed)
                sent += 1
            except (BlockingIOError, ConnectionRefusedError):
                pass
            if sent % 2000 == 0:
                server.assert_alive()
        rss_after = rss_kib(server.process.pid)
        assert_served(server)
        assert rss_after - rss_before < 64 * 1024, f"RSS grew by {(rss_after - rss_before) // 1024} MiB"
        # Whatever was queued is readable, then the connection ends.
        assert_closed_by_server(raw, 10)
    peer.close()
    assert_served(server)


def idle_config(tmp_path: Path, seconds: int = 2) -> Path:
    config = tmp_path / "idle.toml"
    config.write_text(f"[limits]\nidle_connection_timeout = {seconds}\n")
    return config


@pytest.mark.parametrize("kind", ["tcp", "tls"])
def test_idle_connection_without_allocation_is_closed(start_server, tmp_path, kind):
    server = start_server(tls_listen=["127.0.0.1:0"], extra=["--config", str(idle_config(tmp_path))])
    with stunclient.open_stream(server.stream_address(kind), tls=kind == "tls") as sock:
        sock.sendall(binding_request().encode())
        read_responses(sock, 1)
        started = time.monotonic()
        assert_closed_by_server(sock, 8)
        elapsed = time.monotonic() - started
        assert elapsed > 1.0, f"closed after {elapsed:.1f}s, before the 2 s idle timeout"
    # A connection that never sends anything is closed too.
    with stunclient.open_stream(server.tcp4) as sock:
        assert_closed_by_server(sock, 8)


def test_idle_timeout_spares_connections_with_allocations(start_server, tmp_path):
    server = start_server(extra=["--config", str(idle_config(tmp_path))])
    name, password = server.user
    peer = UdpPeer()
    with StreamTurnClient(server.tcp4, name, password) as turn:
        assert turn.allocate().is_success
        time.sleep(5)
        assert turn.refresh(600).is_success
        assert_relays_both_ways(turn, peer, b"after idle")
    peer.close()


# ---------------------------------------------------------------------------
# 8. RFC 6062 with the raw client


class TcpEchoServer:
    """A plain TCP echo server on 127.0.0.1 (the "peer")."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.accepted: list[tuple[str, int]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return self.listener.getsockname()

    def _run(self):
        while True:
            try:
                conn, source = self.listener.accept()
            except OSError:
                return
            self.accepted.append(source)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket):
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def close(self):
        self.listener.close()


def closed_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DataConnection:
    """An RFC 6062 data connection after ConnectionBind: raw bytes, starting with any the framer
    had already read past the ConnectionBind response (the server may send them in one segment)."""

    def __init__(self, sock: socket.socket, leftover: bytes):
        self.sock = sock
        self.leftover = leftover

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, n: int) -> bytes:
        if self.leftover:
            data, self.leftover = self.leftover[:n], self.leftover[n:]
            return data
        return self.sock.recv(n)

    def settimeout(self, timeout: float) -> None:
        self.sock.settimeout(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()


def recv_exactly(sock, n: int, timeout: float = 3.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"connection closed after {len(data)} of {n} bytes"
        data += chunk
    return data


def tcp_allocation(server, address=None, tls: bool = False) -> StreamTurnClient:
    name, password = server.user
    turn = StreamTurnClient(address or server.tcp4, name, password, tls=tls)
    resp = turn.allocate_tcp()
    assert resp.is_success, resp
    assert turn.relayed is not None and turn.relayed[0] == "127.0.0.1", turn.relayed
    return turn


def data_connection(server, control: StreamTurnClient, cid: int, tls: bool = False) -> tuple[DataConnection, Message]:
    """A new connection to the server carrying ConnectionBind for cid (reusing the control's realm/nonce)."""
    data = StreamTurnClient(control.server, control.username, control.password, tls=tls)
    data.realm, data.nonce = control.realm, control.nonce
    resp = data.connection_bind(cid)
    assert not data.unsolicited, f"unexpected frames before the ConnectionBind response: {data.unsolicited}"
    return DataConnection(data.sock, data.framer.buffer), resp


def test_tcp_allocation_over_udp_is_400(server):
    name, password = server.user
    with TurnClient(server.udp4, name, password) as turn:
        resp = turn.authenticated(ALLOCATE, [(REQUESTED_TRANSPORT, struct.pack("!B3x", TRANSPORT_TCP))])
        assert resp.is_error and resp.error_code == 400, resp


@pytest.mark.server_args(allow_peer=[])
def test_connect_to_denied_peer_is_403(server):
    echo = TcpEchoServer()
    with tcp_allocation(server) as turn:
        resp = turn.connect_peer(echo.address)
        assert resp.is_error and resp.error_code == 403, resp
    echo.close()
    assert echo.accepted == [], "the relay connected to a denied peer"


def test_connect_without_allocation_is_437(server):
    echo = TcpEchoServer()
    name, password = server.user
    with StreamTurnClient(server.tcp4, name, password) as turn:
        resp = turn.authenticated(stunclient.CONNECT, [(XOR_PEER_ADDRESS, stunclient.encode_xor_address(echo.address, b""))])
        assert resp.is_error and resp.error_code == 437, resp
    echo.close()


def test_connect_on_udp_allocation_is_rejected(server):
    """Connect is for TCP allocations: on a UDP allocation (over TCP) it must fail (RFC 6062 4.3: 400)."""
    echo = TcpEchoServer()
    name, password = server.user
    with StreamTurnClient(server.tcp4, name, password) as turn:
        assert turn.allocate().is_success
        resp = turn.connect_peer(echo.address)
        assert resp.is_error and resp.error_code == 400, resp
    echo.close()


def test_connection_bind_unknown_id_is_400(server):
    with tcp_allocation(server) as turn:
        sock, resp = data_connection(server, turn, 0x12345678)
        with sock:
            assert resp.is_error and resp.error_code == 400, resp


def test_connect_to_closed_port_is_447(server):
    with tcp_allocation(server) as turn:
        resp = turn.connect_peer(("127.0.0.1", closed_tcp_port()))
        assert resp.is_error and resp.error_code == 447, resp
        # The control connection still works afterwards.
        assert turn.refresh(600).is_success


@pytest.mark.parametrize("kind", ["tcp", "tls"])
@pytest.mark.server_args(tls_listen=TLS_LISTEN)
def test_connect_and_bind_relays_raw_bytes(server, kind):
    tls = kind == "tls"
    echo = TcpEchoServer()
    with tcp_allocation(server, server.stream_address(kind), tls=tls) as turn:
        resp = turn.connect_peer(echo.address)
        assert resp.is_success, resp
        cid = stunclient.connection_id(resp)
        assert cid is not None, f"no CONNECTION-ID in the Connect response: {resp}"
        deadline = time.monotonic() + 2  # the accept thread may lag behind the kernel's handshake
        while not echo.accepted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert echo.accepted and echo.accepted[0][0] == "127.0.0.1"
        assert echo.accepted[0][1] == turn.relayed[1], (echo.accepted, turn.relayed)  # from the relayed address
        sock, bind = data_connection(server, turn, cid, tls=tls)
        with sock:
            assert bind.is_success, bind
            for size in (1, 5, 1000, 70000):
                payload = os.urandom(size)
                sock.sendall(payload)
                assert recv_exactly(sock, size) == payload
            # The same CONNECTION-ID cannot be bound twice.
            sock2, again = data_connection(server, turn, cid, tls=tls)
            with sock2:
                assert again.is_error and again.error_code == 400, again
    echo.close()


def test_connect_twice_to_same_peer_is_446(server):
    echo = TcpEchoServer()
    with tcp_allocation(server) as turn:
        first = turn.connect_peer(echo.address)
        assert first.is_success, first
        second = turn.connect_peer(echo.address)
        assert second.is_error and second.error_code == 446, second
    echo.close()


def test_inbound_peer_connection_with_permission(server):
    with tcp_allocation(server) as turn:
        assert turn.create_permission(("127.0.0.1", 0)).is_success
        peer = socket.create_connection(turn.relayed, timeout=5)
        with peer:
            attempt = turn.wait_message(CONNECTION_ATTEMPT, CLASS_INDICATION, timeout=3)
            assert attempt is not None, "no ConnectionAttempt indication"
            cid = stunclient.connection_id(attempt)
            assert cid is not None, attempt
            assert attempt.xor_address(XOR_PEER_ADDRESS) == peer.getsockname()[:2], attempt
            # Bytes the peer sends before the bind are held for the client.
            peer.sendall(b"early bytes from the peer")
            sock, bind = data_connection(server, turn, cid)
            with sock:
                assert bind.is_success, bind
                assert recv_exactly(sock, 25) == b"early bytes from the peer"
                sock.sendall(b"hello peer")
                assert recv_exactly(peer, 10) == b"hello peer"
                big = os.urandom(100_000)
                peer.sendall(big)
                assert recv_exactly(sock, len(big)) == big
                sock.sendall(big[::-1])
                assert recv_exactly(peer, len(big)) == big[::-1]
                # Closing the peer side closes the client's data connection.
                peer.close()
                assert_closed_by_server(sock, 5)


def test_inbound_peer_connection_without_permission_is_refused(server):
    with tcp_allocation(server) as turn:
        try:
            peer = socket.create_connection(turn.relayed, timeout=3)
        except OSError:
            peer = None  # refused outright: fine
        attempt = turn.wait_message(CONNECTION_ATTEMPT, CLASS_INDICATION, timeout=2)
        assert attempt is None, f"ConnectionAttempt without a permission: {attempt}"
        if peer is not None:
            with peer:
                assert_closed_by_server(peer, 5)
        assert turn.refresh(600).is_success


def test_closing_control_connection_releases_tcp_allocation(server):
    turn = tcp_allocation(server)
    relayed = turn.relayed
    turn.close()
    deadline = time.monotonic() + 5
    while True:
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(relayed) != 0:
                break
        assert time.monotonic() < deadline, f"relayed address {relayed} still accepts after the control connection closed"
        time.sleep(0.2)


# ---------------------------------------------------------------------------
# One allocation per stream connection (RFC 8656 section 3.1)


@pytest.mark.parametrize("kind", ["tcp", "tls"])
@pytest.mark.server_args(tls_listen=TLS_LISTEN)
def test_second_allocate_on_same_connection_is_437(server, kind):
    name, password = server.user
    with StreamTurnClient(server.stream_address(kind), name, password, tls=kind == "tls") as turn:
        assert turn.allocate().is_success
        again = turn.allocate()
        assert again.is_error and again.error_code == 437, again


def relay_port_closed(relayed: tuple[str, int]) -> bool:
    """True when the relayed UDP port answers with ICMP port unreachable (nothing bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(relayed)
        s.settimeout(0.3)
        try:
            s.send(b"x")
            s.recv(10)
        except ConnectionRefusedError:
            return True
        except (socket.timeout, TimeoutError):
            return False
    return False


@pytest.mark.parametrize("kind", ["tcp", "tls"])
@pytest.mark.server_args(tls_listen=TLS_LISTEN)
def test_closing_connection_releases_udp_allocation(server, kind):
    name, password = server.user
    turn = StreamTurnClient(server.stream_address(kind), name, password, tls=kind == "tls")
    assert turn.allocate().is_success
    relayed = turn.relayed
    assert not relay_port_closed(relayed), "control: the relayed port should be open while allocated"
    turn.close()
    deadline = time.monotonic() + 5
    while not relay_port_closed(relayed):
        assert time.monotonic() < deadline, f"relayed UDP port {relayed} still bound after the connection closed"
        time.sleep(0.1)
    log = wait_for_log(server, "reason=connection_closed")
    assert "reason=connection_closed" in log


SOL_UDP = 17
UDP_SEGMENT = 103


@pytest.mark.server_args(tls_listen=TLS_LISTEN)
@pytest.mark.parametrize("kind", ["tcp", "tls"])
@pytest.mark.parametrize("channel", [True, False])
def test_peer_burst_merged_by_gro_reaches_stream_client(server, kind, channel):
    """A UDP peer sends a burst as one GSO message; the relay socket (UDP GRO) receives it merged.
    A TCP/TLS client still gets every datagram framed on its own, padded, and in order, over
    ChannelData or Data indications."""
    address = server.tcp4 if kind == "tcp" else server.tls4
    with StreamTurnClient(address, "alice", "wonderland", tls=kind == "tls") as turn:
        assert turn.allocate().is_success
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        try:
            peer_address = peer.getsockname()
            if channel:
                assert turn.channel_bind(0x4003, peer_address).is_success
            else:
                assert turn.create_permission(peer_address).is_success
            relayed = turn.relayed
            for burst in range(5):
                # 7 × 301 B and a last 5 B: ChannelData over a stream pads 301 → 304 (RFC 8656 §12.5).
                segments = [bytes([burst * 16 + k]) * (301 if k < 7 else 5) for k in range(8)]
                sent = peer.sendmsg(
                    [b"".join(segments)], [(SOL_UDP, UDP_SEGMENT, struct.pack("H", 301))], 0, relayed)
                assert sent == 7 * 301 + 5
                for expected in segments:
                    got = turn.receive_data(3.0)
                    assert got is not None, "a datagram of the burst did not arrive"
                    source, payload = got
                    assert payload == expected
                    if not channel:
                        assert source == peer_address
        finally:
            peer.close()
    status, body = server.http("GET", "/metrics")
    assert status == 200
    merged = [float(line.split()[-1]) for line in body.splitlines() if line.startswith("traverse_udp_gro_receives_total")]
    assert merged and merged[0] >= 1, "the kernel never merged a burst (UDP GRO)"
