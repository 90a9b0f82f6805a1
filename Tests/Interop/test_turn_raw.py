"""TURN over UDP with the independent raw client (stunclient.py): auth, data path and peer policy."""

from __future__ import annotations

import socket

import pytest

from peers import UdpEcho
import stunclient
from stunclient import FAMILY_IPV6, TurnClient


@pytest.fixture
def echo4():
    peer = UdpEcho("127.0.0.1")
    yield peer
    peer.close()


@pytest.fixture
def echo6():
    peer = UdpEcho("::1")
    yield peer
    peer.close()


def client(server, family=socket.AF_INET, username=None, password=None) -> TurnClient:
    name, secret = server.user
    return TurnClient(server.udp_address(family), username or name, password or secret)


# --- authentication ---------------------------------------------------------


def test_unauthenticated_allocate_gets_401_with_realm_and_nonce(server):
    with client(server) as turn:
        response = turn.transact(stunclient.Message(stunclient.ALLOCATE, stunclient.CLASS_REQUEST).add(
            stunclient.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0])))
        assert response.is_error and response.error_code == 401, response
        assert response.text(stunclient.REALM) == "traverse"
        assert response.get(stunclient.NONCE)
        assert not response.has(stunclient.MESSAGE_INTEGRITY)


def test_allocate_success_is_signed(server):
    with client(server) as turn:
        response = turn.allocate()
        assert response.is_success, response
        assert response.verify_integrity(turn.key)
        assert turn.relayed is not None and turn.relayed[0] == "127.0.0.1"
        assert turn.mapped == turn.local_address
        assert response.lifetime and response.lifetime > 0


def test_wrong_password_gets_401_with_realm_and_nonce(server):
    with client(server, password="not-the-password") as turn:
        response = turn.allocate()
        assert response.is_error and response.error_code == 401, response
        assert response.text(stunclient.REALM) == "traverse"
        assert response.get(stunclient.NONCE)


def test_rest_credentials(server):
    username, password = stunclient.rest_credentials(server.secret, "bob")
    with client(server, username=username, password=password) as turn:
        response = turn.allocate()
        assert response.is_success, response


def test_expired_rest_credentials_are_refused(server):
    username, password = stunclient.rest_credentials(server.secret, "bob", ttl=-60)
    with client(server, username=username, password=password) as turn:
        response = turn.allocate()
        assert response.is_error and response.error_code == 401, response


def test_refresh_zero_deletes_allocation(server):
    with client(server) as turn:
        assert turn.allocate().is_success
        response = turn.refresh(0)
        assert response.is_success, response
        response = turn.refresh(600)
        assert response.is_error and response.error_code == 437, response


# --- data path --------------------------------------------------------------


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_send_indication_and_channel_data_round_trip(server, echo4, echo6, family):
    peer = echo4 if family == socket.AF_INET else echo6
    with client(server, family) as turn:
        response = turn.allocate(family=FAMILY_IPV6 if family == socket.AF_INET6 else None)
        assert response.is_success, response
        assert turn.relayed is not None

        assert turn.create_permission(peer.address).is_success
        turn.send_indication(peer.address, b"via send indication")
        received = turn.receive_data()
        assert received == (peer.address, b"via send indication"), received
        assert peer.sources[-1] == turn.relayed, "the peer must see the relayed address as the source"

        assert turn.channel_bind(0x4000, peer.address).is_success
        turn.send_raw(stunclient.channel_data(0x4000, b"via channel"))
        received = turn.receive_data()
        assert received == (None, b"via channel"), received


# --- peer policy ------------------------------------------------------------


def expect_forbidden(turn: TurnClient, peer: tuple[str, int]) -> None:
    response = turn.create_permission(peer)
    assert response.is_error and response.error_code == 403, (peer, response)
    response = turn.channel_bind(0x4001, peer)
    assert response.is_error and response.error_code == 403, (peer, response)


@pytest.mark.server_args(allow_peer=[])
def test_loopback_peers_refused_by_default_ipv4(server):
    with client(server) as turn:
        assert turn.allocate().is_success
        for peer in ("127.0.0.1", "127.1.2.3", "0.0.0.0"):
            expect_forbidden(turn, (peer, 9))


@pytest.mark.server_args(allow_peer=[])
def test_loopback_peers_refused_by_default_ipv6(server):
    with client(server, socket.AF_INET6) as turn:
        response = turn.allocate(family=FAMILY_IPV6)
        assert response.is_success, response
        # IPv4-mapped, IPv4-compatible, NAT64 and 6to4 forms of 127.0.0.1, plus ::1 and ::.
        for peer in ("::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1", "::1", "::"):
            expect_forbidden(turn, (peer, 9))


def test_mapped_loopback_refused_on_ipv6_allocation_over_ipv4(server_without_allow_peer):
    """The CVE-2026-27624 shape: an IPv6 relay requested over an IPv4 transport, peer ::ffff:127.0.0.1."""
    with client(server_without_allow_peer) as turn:
        response = turn.allocate(family=FAMILY_IPV6)
        assert response.is_success, response
        expect_forbidden(turn, ("::ffff:127.0.0.1", 9))


@pytest.fixture
def server_without_allow_peer(start_server):
    return start_server(allow_peer=[])
