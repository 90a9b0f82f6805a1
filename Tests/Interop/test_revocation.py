"""Revocation reaches everything a principal holds (issue 10, part 8).

- When an RFC 6062 TCP allocation ends (Refresh 0, a ban, its control connection closing, a
  revoked credential), its data connections close too, on both sides.
- A static user removed on reload loses its allocations at the next sweep (within about 1 s).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

import stunclient
from stunclient import StreamTurnClient, TurnClient
from test_tcp_tls import assert_closed_by_server, data_connection, recv_exactly

CAROL = ("carol", "carol-password")


class TcpPeer:
    """A TCP peer on 127.0.0.1 that keeps every connection it accepts, so the test can see it end."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    @property
    def address(self) -> tuple[str, int]:
        return self.listener.getsockname()

    def _run(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def wait_accepted(self, timeout: float = 3.0) -> socket.socket:
        deadline = time.monotonic() + timeout
        while not self.accepted:
            assert time.monotonic() < deadline, "the relay did not connect to the peer"
            time.sleep(0.01)
        return self.accepted[0]

    def close(self):
        self.listener.close()
        for c in self.accepted:
            c.close()


def bound_data_connection(server, control: StreamTurnClient, peer: TcpPeer):
    """Connect to `peer` through the TCP allocation of `control`; returns (data connection, peer side)."""
    resp = control.connect_peer(peer.address)
    assert resp.is_success, resp
    cid = stunclient.connection_id(resp)
    sock, bind = data_connection(server, control, cid)
    assert bind.is_success, bind
    peer_side = peer.wait_accepted()
    sock.sendall(b"ping")
    assert recv_exactly(peer_side, 4) == b"ping"
    peer_side.sendall(b"pong")
    assert recv_exactly(sock, 4) == b"pong"
    return sock, peer_side


def tcp_allocation_as(server, user: tuple[str, str]) -> StreamTurnClient:
    turn = StreamTurnClient(server.tcp4, *user)
    resp = turn.allocate_tcp()
    assert resp.is_success, resp
    return turn


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def reload(server) -> None:
    status, body = server.http("POST", "/reload")
    assert status == 200, body


# ---------------------------------------------------------------------------
# A TCP allocation's end reaches its data connections


def test_refresh_zero_closes_tcp_data_connections(server):
    peer = TcpPeer()
    try:
        with tcp_allocation_as(server, server.user) as turn:
            sock, peer_side = bound_data_connection(server, turn, peer)
            with sock:
                assert turn.refresh(0).is_success
                assert_closed_by_server(sock, 3)
                assert_closed_by_server(peer_side, 3)
    finally:
        peer.close()


def test_closing_the_control_connection_closes_tcp_data_connections(server):
    peer = TcpPeer()
    try:
        turn = tcp_allocation_as(server, server.user)
        sock, peer_side = bound_data_connection(server, turn, peer)
        with sock:
            turn.close()
            assert_closed_by_server(sock, 3)
            assert_closed_by_server(peer_side, 3)
    finally:
        peer.close()


def test_ban_closes_tcp_data_connections(start_server, tmp_path):
    config = write_config(tmp_path / "traverse.toml", "[relay]\nbanned_clients = []\n")
    server = start_server(extra=["--config", str(config)])
    peer = TcpPeer()
    try:
        with tcp_allocation_as(server, server.user) as turn:
            sock, peer_side = bound_data_connection(server, turn, peer)
            with sock:
                write_config(config, '[relay]\nbanned_clients = ["127.0.0.1"]\n')
                reload(server)
                # The allocation ends at the next sweep (about 1 s); its data connection with it.
                assert_closed_by_server(sock, 4)
                assert_closed_by_server(peer_side, 3)
        assert "reason=banned" in server.log() or '"reason":"banned"' in server.log()
    finally:
        peer.close()


# ---------------------------------------------------------------------------
# A user removed on reload


def test_removed_user_loses_its_allocations_at_the_next_sweep(start_server, tmp_path):
    config = write_config(tmp_path / "traverse.toml", f'[auth]\nusers = {{ {CAROL[0]} = "{CAROL[1]}" }}\n')
    server = start_server(extra=["--config", str(config)])
    peer = TcpPeer()
    try:
        with TurnClient(server.udp4, *CAROL) as udp, TurnClient(server.udp4, *server.user) as alice:
            assert udp.allocate().is_success
            assert alice.allocate().is_success
            with tcp_allocation_as(server, CAROL) as turn:
                sock, peer_side = bound_data_connection(server, turn, peer)
                with sock:
                    assert udp.refresh(600).is_success
                    # Carol is removed (alice comes from --user and stays).
                    write_config(config, "[auth]\n")
                    reload(server)
                    assert_closed_by_server(sock, 4)
                    assert_closed_by_server(peer_side, 3)
                    deadline = time.monotonic() + 4
                    while "reason=revoked" not in server.log():
                        assert time.monotonic() < deadline, server.log()[-3000:]
                        time.sleep(0.1)
                    # Her remembered key no longer refreshes anything; alice is untouched.
                    refused = udp.refresh(600)
                    assert refused.is_error and refused.error_code in (401, 437), refused
                    assert alice.refresh(600).is_success
        assert server.log().count("reason=revoked") == 2, server.log()[-3000:]
    finally:
        peer.close()
