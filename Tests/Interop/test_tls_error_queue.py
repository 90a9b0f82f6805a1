"""A failed TLS handshake must not poison the next connection served on the same thread.

OpenSSL keeps an error queue per thread, and SSL_get_error reads it: a connection that failed
(here: garbage instead of a ClientHello) left an entry on the Dispatch worker that served it,
and the next healthy connection on that worker whose SSL_read merely needed more input was
taken for broken and closed (`read_error`). Found by the soak (Benchmarks/soak), where
turnutils_uclient's TLS 1.0/1.1 probes lost messages on 4 of 8 TLS runs.
"""

from __future__ import annotations

import socket
import time

import pytest

import stunclient as sc

ROUNDS = 30


@pytest.mark.server_args(tls_listen=["127.0.0.1:0"])
def test_failed_handshakes_do_not_close_healthy_tls_connections(server):
    address = server.tls4
    user, password = server.user
    for i in range(ROUNDS):
        # A connection whose handshake fails on the server.
        bad = socket.create_connection(address, timeout=2)
        bad.sendall(b"\x16\x03\x01\x00\x05garbage-not-a-client-hello" * 4)
        try:
            bad.recv(100)
        except OSError:
            pass
        bad.close()
        # A healthy client right after: its allocation and refreshes must all be answered.
        client = sc.StreamTurnClient(address, user, password, tls=True, alpn=["stun.turn"])
        try:
            assert client.allocate().is_success, f"round {i}"
            time.sleep(0.02)  # let the server's next SSL_read find no input and want more
            for _ in range(3):
                assert client.refresh(600).is_success, f"round {i}"
        finally:
            client.close()
    status, text = server.http("GET", "/metrics")
    assert status == 200
    read_errors = [l for l in text.splitlines() if l.startswith("traverse_connections_closed_total") and "read_error" in l]
    # The failed handshakes themselves end as read errors; no healthy connection may.
    assert sum(float(l.rsplit(" ", 1)[1]) for l in read_errors) == ROUNDS, read_errors
