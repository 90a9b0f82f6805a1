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
    ALLOCATE, CLASS_INDICATION, CLASS_REQUEST, CONNECTION_ATTEMPT, CONNECTION_ID, REQUESTED_TRANSPORT,
    TRANSPORT_TCP, XOR_PEER_ADDRESS, ConnectionClosed, Message, StreamTurnClient, StunError, TurnClient,
)
from test_turn_uclient import assert_clean_run, statistics, static_user

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
