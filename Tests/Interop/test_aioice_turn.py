"""TURN over UDP with aioice: two ICE agents connected through relay candidates only."""

from __future__ import annotations

import asyncio

import aioice

import stunclient

GATHER_AND_CONNECT_TIMEOUT = 30


def agent(server, username: str, password: str, controlling: bool) -> aioice.Connection:
    return aioice.Connection(
        ice_controlling=controlling,
        turn_server=server.udp4,
        turn_username=username,
        turn_password=password,
        use_ipv4=True,
        use_ipv6=False,
        transport_policy=aioice.TransportPolicy.RELAY,
    )


async def relay_round_trip(server, username: str, password: str) -> None:
    a = agent(server, username, password, controlling=True)
    b = agent(server, username, password, controlling=False)
    try:
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        for conn in (a, b):
            relays = [c for c in conn.local_candidates if c.type == "relay"]
            assert relays, f"no relay candidate gathered: {conn.local_candidates}"
            assert all(c.host == "127.0.0.1" for c in relays), relays

        # Exchange relay candidates only.
        for local, remote in ((a, b), (b, a)):
            for candidate in local.local_candidates:
                if candidate.type == "relay":
                    await remote.add_remote_candidate(candidate)
            await remote.add_remote_candidate(None)
            remote.remote_username = local.local_username
            remote.remote_password = local.local_password

        await asyncio.gather(a.connect(), b.connect())

        await a.sendto(b"ping from a", 1)
        data, component = await asyncio.wait_for(b.recvfrom(), 5)
        assert (data, component) == (b"ping from a", 1)

        await b.sendto(b"pong from b", 1)
        data, component = await asyncio.wait_for(a.recvfrom(), 5)
        assert (data, component) == (b"pong from b", 1)
    finally:
        await asyncio.gather(a.close(), b.close())


def test_aioice_relay_with_static_user(server):
    name, password = server.user
    asyncio.run(asyncio.wait_for(relay_round_trip(server, name, password), GATHER_AND_CONNECT_TIMEOUT))


def test_aioice_relay_with_rest_credentials(server):
    username, password = stunclient.rest_credentials(server.secret, "bob", ttl=3600)
    asyncio.run(asyncio.wait_for(relay_round_trip(server, username, password), GATHER_AND_CONNECT_TIMEOUT))


def test_aioice_wrong_password_gathers_no_relay_candidate(server):
    async def gather() -> list:
        conn = agent(server, server.user[0], "not-the-password", controlling=True)
        try:
            await conn.gather_candidates()
            return list(conn.local_candidates)
        finally:
            await conn.close()

    candidates = asyncio.run(asyncio.wait_for(gather(), GATHER_AND_CONNECT_TIMEOUT))
    assert [c for c in candidates if c.type == "relay"] == []
    server.assert_alive()
