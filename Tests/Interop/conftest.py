"""Fixtures for the interop suite: a running `traverse serve` and helpers.

The server under test is `.build/debug/traverse` (override with the
TRAVERSE_BIN environment variable). Each test gets a fresh server on
ephemeral loopback ports; its arguments can be changed per test with

    @pytest.mark.server_args(allow_peer=[], extra=["--log-level", "debug"])

or by calling the `start_server` factory fixture directly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAVERSE_BIN = Path(os.environ.get("TRAVERSE_BIN", REPO_ROOT / ".build" / "debug" / "traverse"))
ANNOUNCE_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

DEFAULT_USER = ("alice", "wonderland")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "server_args(**overrides): change the arguments of the `server` fixture")


@dataclasses.dataclass
class ServerOptions:
    """The command line of `traverse serve`; every field can be overridden per test."""

    listen: list[str] = dataclasses.field(default_factory=lambda: ["127.0.0.1:0", "[::1]:0"])
    realm: str = "traverse"
    users: list[str] = dataclasses.field(default_factory=lambda: [f"{DEFAULT_USER[0]}:{DEFAULT_USER[1]}"])
    secret: str | None = dataclasses.field(default_factory=lambda: secrets.token_hex(16))
    allow_peer: list[str] = dataclasses.field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    relay_address: list[str] = dataclasses.field(default_factory=lambda: ["127.0.0.1", "::1"])
    # TLS listeners (--tls-listen), e.g. ["127.0.0.1:0", "[::1]:0"]; none by default.
    tls_listen: list[str] = dataclasses.field(default_factory=list)
    # The admin HTTP endpoint on an ephemeral port, so servers never collide on 9641
    # (None: leave it to the configuration).
    admin_listen: str | None = "127.0.0.1:0"
    # SIGTERM drains for at most this many seconds before exiting; 0 keeps teardown fast
    # (None: leave it to the configuration, default 60).
    drain_timeout: int | None = 0
    extra: list[str] = dataclasses.field(default_factory=list)
    # Run inside this network namespace (`ip netns exec`), e.g. the XDP lab's.
    netns: str | None = None
    # Extra environment variables for the server process.
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    # A prefix to the command line (e.g. setpriv to drop privileges).
    wrapper: list[str] = dataclasses.field(default_factory=list)

    def argv(self, announce_file: Path, state_dir: Path) -> list[str]:
        argv = (["ip", "netns", "exec", self.netns] if self.netns else []) + list(self.wrapper)
        argv += [str(TRAVERSE_BIN), "serve"]
        for addr in self.listen:
            argv += ["--listen", addr]
        for addr in self.tls_listen:
            argv += ["--tls-listen", addr]
        argv += ["--announce-file", str(announce_file), "--state-dir", str(state_dir), "--realm", self.realm]
        for user in self.users:
            argv += ["--user", user]
        if self.secret is not None:
            argv += ["--secret", self.secret]
        for cidr in self.allow_peer:
            argv += ["--allow-peer", cidr]
        for ip in self.relay_address:
            argv += ["--relay-address", ip]
        if self.admin_listen is not None:
            argv += ["--admin-listen", self.admin_listen]
        if self.drain_timeout is not None:
            argv += ["--drain-timeout", str(self.drain_timeout)]
        return argv + list(self.extra)


def split_host_port(text: str) -> tuple[str, int]:
    """'127.0.0.1:40123' or '[::1]:40124' -> (host, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


@dataclasses.dataclass
class Server:
    options: ServerOptions
    process: subprocess.Popen
    announce: dict
    log_path: Path
    stopped: bool = False

    @property
    def udp(self) -> list[tuple[str, int]]:
        return [split_host_port(a) for a in self.announce.get("udp", [])]

    def udp_address(self, family: int = socket.AF_INET) -> tuple[str, int]:
        want_v6 = family == socket.AF_INET6
        for host, port in self.udp:
            if (":" in host) == want_v6:
                return host, port
        raise AssertionError(f"no UDP listener of family {family} in {self.announce}")

    @property
    def udp4(self) -> tuple[str, int]:
        return self.udp_address(socket.AF_INET)

    @property
    def udp6(self) -> tuple[str, int]:
        return self.udp_address(socket.AF_INET6)

    def stream_address(self, kind: str, family: int = socket.AF_INET) -> tuple[str, int]:
        """A "tcp" or "tls" listener of the given family, from the announce file."""
        want_v6 = family == socket.AF_INET6
        for host, port in (split_host_port(a) for a in self.announce.get(kind, [])):
            if (":" in host) == want_v6:
                return host, port
        raise AssertionError(f"no {kind} listener of family {family} in {self.announce}")

    @property
    def tcp4(self) -> tuple[str, int]:
        return self.stream_address("tcp", socket.AF_INET)

    @property
    def tls4(self) -> tuple[str, int]:
        return self.stream_address("tls", socket.AF_INET)

    @property
    def port(self) -> int:
        """The IPv4 UDP port (the one most tools use)."""
        return self.udp4[1]

    @property
    def admin(self) -> tuple[str, int]:
        """The admin HTTP endpoint (from the announce file)."""
        assert self.announce.get("admin"), f"no admin endpoint in {self.announce}"
        return split_host_port(self.announce["admin"])

    def http(
        self, method: str, path: str, token: str | None = None, timeout: float = 5.0, headers: dict | None = None,
        body: str | None = None,
    ) -> tuple[int, str]:
        """One request to the admin endpoint: (status, body). State-changing requests carry the
        X-Traverse-Admin header the endpoint requires (unless `headers` sets it to None)."""
        import http.client

        host, port = self.admin
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            sent = {"Authorization": f"Bearer {token}"} if token else {}
            if method not in ("GET", "HEAD"):
                sent["X-Traverse-Admin"] = "1"
            sent.update(headers or {})
            sent = {k: v for k, v in sent.items() if v is not None}
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    @property
    def user(self) -> tuple[str, str]:
        name, _, password = self.options.users[0].partition(":")
        return name, password

    @property
    def secret(self) -> str:
        assert self.options.secret is not None
        return self.options.secret

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def assert_alive(self) -> None:
        assert self.process.poll() is None, f"traverse exited with {self.process.returncode}:\n{self.log()[-4000:]}"

    def stop(self) -> None:
        """SIGTERM, then require exit status 0 within STOP_TIMEOUT (SIGKILL and fail otherwise).

        Stopping twice is allowed (a test may stop its server to inspect what it wrote)."""
        if self.stopped:
            return
        if self.process.poll() is not None:
            pytest.fail(f"traverse died during the test with status {self.process.returncode}:\n{self.log()[-4000:]}", pytrace=False)
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"traverse did not exit within {STOP_TIMEOUT}s of SIGTERM; killed:\n{self.log()[-4000:]}", pytrace=False)
        assert code == 0, f"traverse exited with {code} after SIGTERM:\n{self.log()[-4000:]}"
        self.stopped = True


def launch(options: ServerOptions, workdir: Path) -> Server:
    if not TRAVERSE_BIN.exists():
        pytest.fail(f"{TRAVERSE_BIN} not found: run `swift build` (or `make build`) first", pytrace=False)
    workdir.mkdir(parents=True, exist_ok=True)
    announce_file = workdir / "announce.json"
    state_dir = workdir / "state"
    state_dir.mkdir(exist_ok=True)
    log_path = workdir / "traverse.log"
    log = open(log_path, "wb")
    process = subprocess.Popen(
        options.argv(announce_file, state_dir),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env={**os.environ, **options.env},
    )
    log.close()
    server = Server(options, process, {}, log_path)
    deadline = time.monotonic() + ANNOUNCE_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"traverse exited early with {process.returncode}:\n{server.log()[-4000:]}", pytrace=False)
        if announce_file.exists():
            try:
                server.announce = json.loads(announce_file.read_text())
                return server
            except json.JSONDecodeError:
                pass  # written atomically, so this should not happen; retry
        time.sleep(0.05)
    process.kill()
    process.wait()
    pytest.fail(f"no announce file after {ANNOUNCE_TIMEOUT}s:\n{server.log()[-4000:]}", pytrace=False)


@pytest.fixture
def start_server(tmp_path: Path):
    """Factory: start_server(**overrides) -> Server. Every server is stopped (and checked) at teardown."""
    started: list[Server] = []

    def start(**overrides) -> Server:
        options = ServerOptions(**overrides)
        server = launch(options, tmp_path / f"server{len(started)}")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(request: pytest.FixtureRequest, start_server) -> Server:
    """A running traverse with the default test arguments (see ServerOptions)."""
    marker = request.node.get_closest_marker("server_args")
    overrides = dict(marker.kwargs) if marker else {}
    return start_server(**overrides)


# ---------------------------------------------------------------------------
# Helpers shared by the tests


def free_udp_port_pair(host: str = "127.0.0.1") -> int:
    """A port P such that P and P+1 are both free for UDP on host (below the ephemeral range)."""
    import random

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        port = random.randrange(20000, 32000, 2)
        socks = []
        try:
            for p in (port, port + 1):
                s = socket.socket(family, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((host, p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP port pair")


def udp_port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
            return False
        except OSError:
            return True


@pytest.fixture
def echo_peers():
    """Two `turnutils_peer` UDP echo servers on 127.0.0.1:P and P+1; yields P."""
    port = free_udp_port_pair()
    procs = [
        subprocess.Popen(
            ["turnutils_peer", "-L", "127.0.0.1", "-p", str(p)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for p in (port, port + 1)
    ]
    try:
        deadline = time.monotonic() + 5
        while not all(udp_port_in_use("127.0.0.1", p) for p in (port, port + 1)):
            assert time.monotonic() < deadline, "turnutils_peer did not bind"
            assert all(p.poll() is None for p in procs), "turnutils_peer exited"
            time.sleep(0.05)
        yield port
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
