"""The kernel fast path (server.fast_path = "xdp") in a network-namespace lab.

`scripts/xdp-lab.sh` makes the lab: the server runs in namespace `tvx` on tvx1 (10.77.0.2,
fd77::2) with the XDP program attached natively; clients and echo peers run here on tvx0
(10.77.0.1, fd77::1), which carries a pass program so that XDP_TX'd datagrams arrive. Every test
checks what went through the program with its verdict counters on /metrics, and that the
server's totals equal what the clients counted. Needs root (CI runs as root).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import aioice
import pytest

import stunclient
from conftest import REPO_ROOT, TRAVERSE_BIN
from peers import UdpEcho
from stunclient import TurnClient

LAB = REPO_ROOT / "scripts" / "xdp-lab.sh"
NS, SERVER_IF = "tvx", "tvx1"
SERVER4, CLIENT4 = "10.77.0.2", "10.77.0.1"
SERVER6, CLIENT6 = "fd77::2", "fd77::1"
TOKEN = "xdp-lab-admin-token"
OBJECT = TRAVERSE_BIN.parent / "traverse-xdp.bpf.o"


@pytest.fixture(scope="module")
def lab():
    assert os.geteuid() == 0, "the XDP lab needs root (network namespaces, XDP): CI runs as root"
    assert OBJECT.exists(), f"{OBJECT} missing: `make build` compiles the XDP program"
    subprocess.run([str(LAB), "up"], check=True)
    yield
    subprocess.run([str(LAB), "down"], check=False)


def config(tmp_path: Path, fast_path: str = "xdp", extra: str = "", name: str = "xdp.toml") -> Path:
    file = tmp_path / name
    server_lines = ""
    if extra.startswith("[server]\n"):  # more [server] keys: into the one [server] table
        server_lines, _, extra = extra[len("[server]\n"):].partition("\n")
        server_lines += "\n"
    file.write_text(
        f'[server]\nfast_path = "{fast_path}"\nfast_path_interfaces = ["{SERVER_IF}"]\n{server_lines}'
        f'[admin]\ntoken = "{TOKEN}"\n'
        "[limits]\nmax_allocations_per_user = 1000\nlegacy_channel_numbers = true\n" + extra
    )
    return file


@pytest.fixture(params=["xdp", "sockets"])
def path(request) -> str:
    """Where bound-channel traffic goes: "xdp" (the program), or "sockets": fast_path = "xdp" but
    the program unavailable (its object missing), so that the same test shows the fallback
    behaves the same on the socket path."""
    return request.param


def lab_server(start_server, tmp_path: Path, fast_path: str = "xdp", extra: str = "", env=None, path: str = "xdp",
               **options):
    if path == "sockets":
        extra = f'[server]\nfast_path_object = "{tmp_path}/unavailable.bpf.o"\n' + extra
    cfg = config(tmp_path, fast_path, extra)
    return start_server(
        netns=NS,
        listen=[f"{SERVER4}:0", f"[{SERVER6}]:0"],
        relay_address=[SERVER4, SERVER6],
        allow_peer=["10.77.0.0/24", "fd77::/64"],
        admin_listen=f"{SERVER4}:0",
        env=env or {},
        extra=["--config", str(cfg)],
        **options,
    )


def metrics(server) -> str:
    status, body = server.http("GET", "/metrics", token=TOKEN)
    assert status == 200, body
    return body


def value(text: str, series: str) -> float:
    """The value of one series (name and labels exactly as rendered); 0 when absent."""
    match = re.search("^" + re.escape(series) + r" ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def forwarded(server, direction: str) -> int:
    return int(value(metrics(server), f'traverse_fast_path_packets_total{{verdict="forwarded",reason="{direction}"}}'))


def expect_forwarded(server, path: str, direction: str, n: int | None = None) -> None:
    """Through the program: `n` datagrams (or some, when None); on the socket path: none."""
    got = forwarded(server, direction)
    if path == "sockets":
        assert got == 0, metrics(server)
    elif n is None:
        assert got > 0, metrics(server)
    else:
        assert got == n, metrics(server)


def passed(server, reason: str) -> int:
    return int(value(metrics(server), f'traverse_fast_path_packets_total{{verdict="passed",reason="{reason}"}}'))


def relayed(server, direction: str, path: str = "channel") -> int:
    return int(value(metrics(server), f'traverse_relayed_packets_total{{direction="{direction}",path="{path}"}}'))


def uclient(server, *flags: str, host: str = SERVER4, timeout: float = 120) -> tuple[int, str]:
    if "-t" in flags:
        port = server.stream_address("tcp", socket.AF_INET6 if ":" in host else socket.AF_INET)[1]
    else:
        port = server.udp6[1] if ":" in host else server.port
    argv = ["turnutils_uclient", "-p", str(port), "-u", "alice", "-w", "wonderland", *flags, host]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    return result.returncode, f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}"


TOTALS = re.compile(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)")
LOST = re.compile(r"Total lost packets (\d+)")


def clean_run(code: int, output: str, messages: int) -> None:
    assert code == 0, output[-3000:]
    sent, received = map(int, TOTALS.findall(output)[-1])
    assert sent == messages and received == messages, output[-3000:]
    assert int(LOST.findall(output)[-1]) == 0, output[-3000:]


def echo_peers(host: str):
    """Two turnutils_peer echo servers on host:P and P+1 (uclient's -r P)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port < 65000:
            break
    procs = [
        subprocess.Popen(["turnutils_peer", "-L", host, "-p", str(p)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p in (port, port + 1)
    ]
    time.sleep(0.3)
    return port, procs


def stop(procs) -> None:
    for p in procs:
        p.terminate()
        p.wait(timeout=5)


# ---------------------------------------------------------------------------
# Independent clients through the program


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_uclient_channels_go_through_xdp(lab, start_server, tmp_path, family, path):
    """coturn's turnutils_uclient with channels: every datagram relayed by the program, none lost,
    and /metrics totals equal to uclient's counts."""
    server = lab_server(start_server, tmp_path, path=path)
    host, peer_host = (SERVER4, CLIENT4) if family == "ipv4" else (SERVER6, CLIENT6)
    port, procs = echo_peers(peer_host)
    try:
        code, output = uclient(server, "-c", "-e", peer_host, "-r", str(port), "-m", "10", "-l", "170", "-n", "100",
                               host=host)
    finally:
        stop(procs)
    clean_run(code, output, 1000)
    expect_forwarded(server, path, "to_peer", 1000)
    expect_forwarded(server, path, "to_client", 1000)
    assert relayed(server, "client_to_peer") == 1000
    assert relayed(server, "peer_to_client") == 1000
    native = 'traverse_fast_path_interfaces{mode="native"} 1' in metrics(server)
    assert native == (path == "xdp")
    # Each allocation's own counters (its "allocation ended" line, and the event usage records are
    # made from) carry what the kernel relayed for it.
    server.stop()
    ended = [line for line in server.log().splitlines() if 'msg="allocation ended"' in line]
    packets_in = sum(int(m) for line in ended for m in re.findall(r"packets_in=(\d+)", line))
    packets_out = sum(int(m) for line in ended for m in re.findall(r"packets_out=(\d+)", line))
    assert (packets_in, packets_out) == (1000, 1000), ended


def test_aioice_relay_candidate_through_xdp(lab, start_server, tmp_path, path):
    """aioice: a relay-only agent and a host agent connect, and their data crosses the program."""
    server = lab_server(start_server, tmp_path, path=path)

    async def run() -> None:
        relayed_agent = aioice.Connection(
            ice_controlling=True, turn_server=server.udp4, turn_username="alice", turn_password="wonderland",
            use_ipv4=True, use_ipv6=False, transport_policy=aioice.TransportPolicy.RELAY)
        host_agent = aioice.Connection(ice_controlling=False, use_ipv4=True, use_ipv6=False)
        try:
            await asyncio.gather(relayed_agent.gather_candidates(), host_agent.gather_candidates())
            for local, remote in ((relayed_agent, host_agent), (host_agent, relayed_agent)):
                for c in local.local_candidates:
                    if c.type == "relay" or c.host == CLIENT4:
                        await remote.add_remote_candidate(c)
                await remote.add_remote_candidate(None)
                remote.remote_username = local.local_username
                remote.remote_password = local.local_password
            await asyncio.gather(relayed_agent.connect(), host_agent.connect())
            for i in range(50):
                await relayed_agent.sendto(b"to host %d" % i, 1)
                data, _ = await asyncio.wait_for(host_agent.recvfrom(), 5)
                assert data == b"to host %d" % i
                await host_agent.sendto(b"to relayed %d" % i, 1)
                data, _ = await asyncio.wait_for(relayed_agent.recvfrom(), 5)
                assert data == b"to relayed %d" % i
        finally:
            await asyncio.gather(relayed_agent.close(), host_agent.close())

    asyncio.run(asyncio.wait_for(run(), 60))
    # aioice binds a channel once a peer is used; the data after it went through the kernel.
    expect_forwarded(server, path, "to_peer")
    expect_forwarded(server, path, "to_client")


def test_traverse_load_srtp_calls_through_xdp(lab, start_server, tmp_path, path):
    """traverse-load SRTP calls (both ends relayed by this server: the hairpin in the program)."""
    server = lab_server(start_server, tmp_path, path=path)
    load = TRAVERSE_BIN.parent / "traverse-load"
    report_path = tmp_path / "load.json"
    result = subprocess.run(
        [str(load), f"turn:{SERVER4}:{server.port}?transport=udp", "--user", "alice:wonderland", "--calls", "20",
         "--duration", "5", "--allow-non-loopback", "--json", str(report_path)],
        capture_output=True, text=True, timeout=120)
    text = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, text
    report = json.loads(report_path.read_text())
    sent, received = report["sent"], report["received"]
    assert sent > 0 and received == sent, text
    assert report["authFailures"] == 0 and report["srtpOtherErrors"] == 0, text
    expect_forwarded(server, path, "to_peer", sent)
    expect_forwarded(server, path, "to_client", sent)
    assert relayed(server, "client_to_peer") == sent and relayed(server, "peer_to_client") == sent


# ---------------------------------------------------------------------------
# The program never relays what the core would refuse


def session(server, peer: UdpEcho, channel: int = 0x4001) -> TurnClient:
    turn = TurnClient((SERVER4, server.port), "alice", "wonderland", bind=CLIENT4)
    assert turn.allocate().is_success
    assert turn.channel_bind(channel, peer.address).is_success
    assert echoed(turn, peer, b"warm-up", channel), "no echo through a fresh channel"
    return turn


def echoed(turn: TurnClient, peer: UdpEcho, payload: bytes, channel: int = 0x4001) -> bool:
    before = peer.received
    turn.send_raw(stunclient.channel_data(channel, payload))
    got = turn.receive_data(timeout=1.0)
    return peer.received > before and got is not None and got[1] == payload


def not_delivered(turn: TurnClient, peer: UdpEcho, channel: int = 0x4001) -> bool:
    before = peer.received
    turn.send_raw(stunclient.channel_data(channel, b"after"))
    time.sleep(0.5)
    return peer.received == before


def test_permission_expiry_stops_forwarding(lab, start_server, tmp_path, path):
    server = lab_server(start_server, tmp_path, env={"TRAVERSE_TEST_PERMISSION_LIFETIME": "2"}, path=path)
    peer = UdpEcho(CLIENT4)
    try:
        turn = session(server, peer)
        through = forwarded(server, "to_peer")
        assert (through >= 1) == (path == "xdp")
        bound_at = time.monotonic()
        time.sleep(max(0.0, bound_at + 2.05 - time.monotonic()))
        assert not_delivered(turn, peer)
        assert forwarded(server, "to_peer") == through
        turn.close()
    finally:
        peer.close()


def test_channel_expiry_stops_forwarding(lab, start_server, tmp_path, path):
    server = lab_server(start_server, tmp_path, env={"TRAVERSE_TEST_CHANNEL_LIFETIME": "2"}, path=path)
    peer = UdpEcho(CLIENT4)
    try:
        turn = session(server, peer)
        through = forwarded(server, "to_peer")
        time.sleep(2.05)
        assert not_delivered(turn, peer)
        assert forwarded(server, "to_peer") == through
        turn.close()
    finally:
        peer.close()


def test_refresh_zero_stops_forwarding(lab, start_server, tmp_path, path):
    server = lab_server(start_server, tmp_path, path=path)
    peer = UdpEcho(CLIENT4)
    try:
        turn = session(server, peer)
        through = forwarded(server, "to_peer")
        assert turn.refresh(0).is_success
        assert not_delivered(turn, peer)
        assert forwarded(server, "to_peer") == through
        assert 'traverse_fast_path_channels 0' in metrics(server)
        turn.close()
    finally:
        peer.close()


@pytest.mark.parametrize("change", ["ban_reload", "ban_api", "deny_peer"])
def test_ban_or_denied_peer_stops_forwarding(lab, start_server, tmp_path, change, path):
    """A ban (in the configuration and reloaded, or through POST /bans) or a reload that denies
    the peer: the answer comes once the entries are gone, and the next datagram is not relayed."""
    server = lab_server(start_server, tmp_path, path=path)
    peer = UdpEcho(CLIENT4)
    try:
        turn = session(server, peer)
        through = forwarded(server, "to_peer")
        if change == "ban_api":
            status, body = server.http("POST", "/bans", token=TOKEN,
                                       headers={"Content-Type": "application/json"}, body='{"cidr": "10.77.0.1/32"}')
            assert status == 201, body
        else:
            extra = '[relay]\nbanned_clients = ["10.77.0.1/32"]\n' if change == "ban_reload" else \
                '[relay]\ndeny_peers = ["10.77.0.1/32"]\n'
            config(tmp_path, extra=extra)
            status, body = server.http("POST", "/reload", token=TOKEN)
            assert status == 200, body
        assert not_delivered(turn, peer)
        assert forwarded(server, "to_peer") == through
        turn.close()
    finally:
        peer.close()


# ---------------------------------------------------------------------------
# Everything else takes the socket path, unchanged


def test_indications_and_tcp_still_work_with_xdp(lab, start_server, tmp_path, path):
    server = lab_server(start_server, tmp_path, path=path)
    port, procs = echo_peers(CLIENT4)
    try:
        code, output = uclient(server, "-s", "-c", "-e", CLIENT4, "-r", str(port), "-m", "5", "-l", "170", "-n", "50")
        clean_run(code, output, 250)
        code, output = uclient(server, "-t", "-c", "-e", CLIENT4, "-r", str(port), "-m", "5", "-l", "170", "-n", "50")
        clean_run(code, output, 250)
    finally:
        stop(procs)
    # Send/Data indications and TCP clients: relayed by the socket path, none by the program.
    assert forwarded(server, "to_peer") == 0 and forwarded(server, "to_client") == 0, metrics(server)
    assert ("traverse_fast_path_enabled 1" in metrics(server)) == (path == "xdp")
    assert relayed(server, "client_to_peer", "indication") == 250
    assert relayed(server, "client_to_peer", "channel") == 250


def test_malformed_channel_data_is_never_forwarded_wrongly(lab, start_server, tmp_path, path):
    server = lab_server(start_server, tmp_path, path=path)
    peer = UdpEcho(CLIENT4)
    try:
        turn = session(server, peer)
        through = forwarded(server, "to_peer")
        received = peer.received
        # Length larger than the datagram; truncated header; a channel number never bound.
        turn.send_raw(bytes([0x40, 0x01, 0x00, 0x40]) + b"short")
        turn.send_raw(bytes([0x40, 0x01, 0x00]))
        turn.send_raw(stunclient.channel_data(0x4002, b"unbound"))
        time.sleep(0.5)
        assert peer.received == received
        assert forwarded(server, "to_peer") == through
        assert (passed(server, "malformed") >= 1) == (path == "xdp")
        drops = metrics(server)
        assert re.search(r'traverse_dropped_packets_total\{reason="malformed_channel_data"\} [1-9]', drops) or \
            "malformed_channel_data" in drops
        # Padding (allowed over UDP) is stripped: the peer gets exactly the payload.
        turn.send_raw(stunclient.channel_data(0x4001, b"odd", pad=True))
        got = turn.receive_data(timeout=1.0)
        assert got is not None and got[1] == b"odd"
        assert peer.payloads[-1] == b"odd"
        assert forwarded(server, "to_peer") == through + (1 if path == "xdp" else 0)
        turn.close()
    finally:
        peer.close()


# ---------------------------------------------------------------------------
# Lifecycle and fallback


def fallback_serves(start_server, tmp_path: Path, stage: str, edit=lambda text: text, wrapper=()) -> None:
    """The program cannot start: one log line, a counted failure, and the same relaying on the
    socket path."""
    workdir = tmp_path / stage
    workdir.mkdir()
    path = config(workdir)
    path.write_text(edit(path.read_text()))
    server = start_server(
        netns=NS, listen=[f"{SERVER4}:0"], relay_address=[SERVER4], allow_peer=["10.77.0.0/24"],
        admin_listen=f"{SERVER4}:0", extra=["--config", str(path)], wrapper=list(wrapper))
    port, procs = echo_peers(CLIENT4)
    try:
        code, output = uclient(server, "-c", "-e", CLIENT4, "-r", str(port), "-m", "2", "-l", "170", "-n", "50")
    finally:
        stop(procs)
    clean_run(code, output, 100)
    log = server.log()
    assert log.count("fast path unavailable") == 1 and f"stage={stage}" in log, log
    text = metrics(server)
    assert f'traverse_fast_path_load_failures_total{{stage="{stage}"}} 1' in text, text
    assert "traverse_fast_path_enabled 0" in text
    assert relayed(server, "client_to_peer") == 100 and relayed(server, "peer_to_client") == 100
    assert forwarded(server, "to_peer") == 0


def test_fallback_without_the_object(lab, start_server, tmp_path):
    fallback_serves(start_server, tmp_path, "object",
                    lambda t: t.replace("[server]\n", f'[server]\nfast_path_object = "{tmp_path}/none.bpf.o"\n', 1))


def test_fallback_without_the_interface(lab, start_server, tmp_path):
    fallback_serves(start_server, tmp_path, "interface", lambda t: t.replace(f'["{SERVER_IF}"]', '["nosuchif0"]'))


def test_fallback_without_capabilities(lab, start_server, tmp_path):
    """Root without CAP_BPF, CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_PERFMON: the kernel refuses the
    maps and the program."""
    fallback_serves(start_server, tmp_path, "load",
                    wrapper=["setpriv", "--bounding-set=-bpf,-sys_admin,-net_admin,-perfmon", "--inh-caps=-all"])


def test_a_killed_server_leaves_no_program_attached(lab, start_server, tmp_path):
    server = lab_server(start_server, tmp_path)
    shown = subprocess.run(["ip", "-n", NS, "link", "show", SERVER_IF], capture_output=True, text=True).stdout
    assert "prog/xdp" in shown, shown
    server.process.kill()
    server.process.wait()
    server.stopped = True
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        shown = subprocess.run(["ip", "-n", NS, "link", "show", SERVER_IF], capture_output=True, text=True).stdout
        if "prog/xdp" not in shown:
            break
        time.sleep(0.1)
    assert "prog/xdp" not in shown, shown
