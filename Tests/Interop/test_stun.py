"""STUN Binding interop: coturn's stunclient, Debian's `stun`, aioice and the raw client."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess

from aioice import stun as aioice_stun

import stunclient

REFLEXIVE = re.compile(r"UDP reflexive addr: (\S+):(\d+)")


def run(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def reflexive_addresses(output: str) -> list[tuple[str, int]]:
    return [(m.group(1), int(m.group(2))) for m in REFLEXIVE.finditer(output)]


def test_turnutils_stunclient_ipv4(server):
    result = run(["turnutils_stunclient", "-p", str(server.udp4[1]), "127.0.0.1"])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    found = reflexive_addresses(output)
    assert found, f"no 'UDP reflexive addr' line:\n{output}"
    assert found[0][0] == "127.0.0.1", output
    assert 0 < found[0][1] < 65536


def test_turnutils_stunclient_ipv6(server):
    result = run(["turnutils_stunclient", "-p", str(server.udp6[1]), "::1"])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    found = reflexive_addresses(output)
    assert found, f"no 'UDP reflexive addr' line:\n{output}"
    assert found[0][0] == "::1", output


def test_debian_stun_client(server):
    """stun-client 0.97 speaks RFC 3489 (no magic cookie, CHANGE-REQUEST in every request).

    It takes the port as HOST:PORT (`-p` is its *source* port). RFC 8489 section 11
    says a server SHOULD answer such a client with MAPPED-ADDRESS; the first test
    (CHANGE-REQUEST with no flags set) must get a Binding success response.
    """
    result = run(["stun", f"127.0.0.1:{server.udp4[1]}", "-v"], timeout=60)
    output = result.stdout + result.stderr
    assert "Received message of type 257" in output, f"no Binding success response:\n{output}"
    assert re.search(r"MappedAddress = 127\.0\.0\.1:\d+", output), output


def aioice_binding(server_addr: tuple[str, int]) -> tuple[tuple[str, int], tuple[str, int]]:
    """Send one Binding request built by aioice; return (XOR-MAPPED-ADDRESS, our local address)."""

    async def exchange():
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in server_addr[0] else socket.AF_INET
        received: asyncio.Future = loop.create_future()

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                if not received.done():
                    received.set_result(data)

        local = ("::1", 0) if family == socket.AF_INET6 else ("127.0.0.1", 0)
        transport, _ = await loop.create_datagram_endpoint(Protocol, local_addr=local)
        try:
            request = aioice_stun.Message(
                message_method=aioice_stun.Method.BINDING, message_class=aioice_stun.Class.REQUEST
            )
            for _ in range(5):
                transport.sendto(bytes(request), server_addr)
                try:
                    data = await asyncio.wait_for(asyncio.shield(received), 0.5)
                    break
                except asyncio.TimeoutError:
                    continue
            else:
                raise AssertionError("no answer to aioice's Binding request")
            response = aioice_stun.parse_message(data)
            assert response.transaction_id == request.transaction_id
            assert response.message_method == aioice_stun.Method.BINDING
            assert response.message_class == aioice_stun.Class.RESPONSE, response
            return response.attributes["XOR-MAPPED-ADDRESS"], transport.get_extra_info("sockname")[:2]
        finally:
            transport.close()

    return asyncio.run(exchange())


def test_aioice_binding_ipv4(server):
    mapped, local = aioice_binding(server.udp4)
    assert mapped == ("127.0.0.1", local[1])


def test_aioice_binding_ipv6(server):
    mapped, local = aioice_binding(server.udp6)
    assert mapped == ("::1", local[1])


def test_raw_binding_both_families(server):
    for addr in (server.udp4, server.udp6):
        with stunclient.StunClient(addr) as client:
            response = client.binding()
            assert response.is_success, response
            assert response.xor_mapped_address == client.local_address
            assert response.verify_fingerprint() is not False
