"""Operations: the admin endpoint scraped by a real Prometheus, readiness, drain, reload, `traverse top`.

Needs the Debian `prometheus` package (`make interop-deps` installs it); the Prometheus tests
are skipped without it. Every Prometheus runs on loopback with its own TSDB in tmp_path.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from peers import UdpEcho
import stunclient
from conftest import TRAVERSE_BIN, ServerOptions, launch
from stunclient import TurnClient

ALTERNATE_SERVER = 0x8023
ALTERNATE = ("127.0.0.1", 3479)


# ---------------------------------------------------------------------------
# Helpers


@pytest.fixture
def echo():
    peer = UdpEcho()
    yield peer
    peer.close()


def relay_session(turn: TurnClient, peer: tuple[str, int], channel: int = 0x4001) -> None:
    """Allocate, then bind `channel` to `peer` (which also installs the permission)."""
    response = turn.allocate()
    assert response.is_success, response
    bound = turn.channel_bind(channel, peer)
    assert bound.is_success, bound


def channel_echo(turn: TurnClient, payload: bytes, channel: int = 0x4001) -> bool:
    """Send `payload` on `channel` and wait for the echo to come back."""
    turn.send_raw(stunclient.channel_data(channel, payload, pad=True))
    got = turn.receive_data(timeout=2.0)
    return got is not None and got[1] == payload


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message} (last: {last!r})")


def metric(server, series: str) -> float | None:
    """A value from the server's own /metrics, by exact series text."""
    status, body = server.http("GET", "/metrics")
    assert status == 200
    for line in body.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """A Prometheus on loopback scraping `targets` every second."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_tcp_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: traverse\n    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n"
        )
        self.log_path = workdir / "prometheus.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._ready, timeout=20, message="prometheus to be ready")

    def _ready(self) -> bool:
        assert self.process.poll() is None, f"prometheus exited:\n{self.log_path.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, expr: str) -> float | None:
        """The value of an instant query (summed over the series returned), None when empty."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as r:
            answer = json.load(r)
        assert answer["status"] == "success", answer
        result = answer["data"]["result"]
        if not result:
            return None
        return sum(float(series["value"][1]) for series in result)

    def wait_for(self, expr: str, expected: float, timeout: float = 15.0) -> None:
        wait_until(lambda: self.query(expr) == expected, timeout=timeout, interval=0.25, message=f"{expr} == {expected}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def prometheus(tmp_path: Path):
    """Factory: prometheus(server) -> a Prometheus scraping that server's admin endpoint."""
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (make interop-deps)")
    started: list[Prometheus] = []

    def start(server) -> Prometheus:
        p = Prometheus(tmp_path / f"prometheus{len(started)}", [server.announce["admin"]])
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


# ---------------------------------------------------------------------------
# Metrics, checked through a real Prometheus


def test_prometheus_sees_counters_that_match_the_traffic(server, prometheus, echo):
    prom = prometheus(server)
    prom.wait_for('up{job="traverse"}', 1)

    bindings, channel_packets, indications, size = 5, 7, 3, 100
    with stunclient.StunClient(server.udp4) as stun:
        for _ in range(bindings):
            assert stun.binding().is_success
    with TurnClient(server.udp4, *server.user) as turn:
        relay_session(turn, echo.address)
        for i in range(channel_packets):
            assert channel_echo(turn, bytes([i]) * size)
        for i in range(indications):
            turn.send_indication(echo.address, bytes([0x80 + i]) * size)
            assert turn.receive_data(timeout=2.0) is not None

        prom.wait_for('traverse_stun_requests_total{method="binding"}', bindings)
        prom.wait_for('traverse_allocations_created_total{family="ipv4"}', 1)
        prom.wait_for('traverse_allocations_active{family="ipv4"}', 1)
        prom.wait_for('traverse_stun_requests_total{method="channel_bind"}', 1)
        prom.wait_for('traverse_relayed_packets_total{direction="client_to_peer",path="channel"}', channel_packets)
        prom.wait_for('traverse_relayed_bytes_total{direction="client_to_peer",path="channel"}', channel_packets * size)
        prom.wait_for('traverse_relayed_packets_total{direction="client_to_peer",path="indication"}', indications)
        prom.wait_for('traverse_relayed_bytes_total{direction="client_to_peer",path="indication"}', indications * size)
        # Every echo comes back over the bound channel.
        prom.wait_for('sum(traverse_relayed_packets_total{direction="peer_to_client"})', channel_packets + indications)
        prom.wait_for(
            'sum(traverse_relayed_bytes_total{direction="peer_to_client"})', (channel_packets + indications) * size
        )
        # The first Allocate was challenged: one 401, counted as such.
        prom.wait_for('traverse_error_responses_total{code="401"}', 1)
        prom.wait_for('traverse_auth_failures_total{reason="challenge"}', 1)
        assert prom.query("process_resident_memory_bytes") > 1e6
        assert prom.query("process_cpu_seconds_total") > 0
        assert prom.query('traverse_relay_ports_free{family="ipv4"}') > 0

        turn.refresh(0)
    prom.wait_for('traverse_allocations_active{family="ipv4"}', 0)
    prom.wait_for("traverse_allocation_duration_seconds_count", 1)


def test_metrics_labels_stay_bounded(server, echo):
    name, _ = server.user
    with TurnClient(server.udp4, *server.user) as turn:
        relay_session(turn, echo.address)
        status, body = server.http("GET", "/metrics")
    assert status == 200
    for forbidden in (name, "127.0.0.1", str(echo.address[1]), str(server.port)):
        assert forbidden not in body, f"{forbidden!r} appears in /metrics"


# ---------------------------------------------------------------------------
# Readiness and capacity


@pytest.mark.parametrize("alternate", [False, True], ids=["508", "300-alternate"])
def test_readyz_flips_when_full(start_server, tmp_path, alternate):
    config = "[limits]\nmax_allocations = 1\n"
    if alternate:
        config += f'[admin]\nalternate_servers = ["{ALTERNATE[0]}:{ALTERNATE[1]}"]\n'
    path = write_config(tmp_path / "traverse.toml", config)
    server = start_server(extra=["--config", str(path)])
    assert server.http("GET", "/readyz")[0] == 200
    assert server.http("GET", "/healthz") == (200, "ok\n")
    with TurnClient(server.udp4, *server.user) as first, TurnClient(server.udp4, *server.user) as second:
        assert first.allocate().is_success
        status, body = server.http("GET", "/readyz")
        assert status == 503 and "full" in body
        refused = second.allocate()
        assert refused.is_error
        if alternate:
            assert refused.error_code == 300, refused
            assert stunclient.decode_plain_address(refused.get(ALTERNATE_SERVER)) == ALTERNATE
        else:
            assert refused.error_code == 508, refused
        load = json.loads(server.http("GET", "/load")[1])
        assert load["allocations"] == 1 and load["capacity"] == 1 and load["load"] == 1
        first.refresh(0)
    wait_until(lambda: server.http("GET", "/readyz")[0] == 200, message="/readyz back to 200")


# ---------------------------------------------------------------------------
# Drain


def test_post_drain_keeps_existing_allocation_and_redirects_new_ones(start_server, echo):
    server = start_server(extra=["--alternate-server", f"{ALTERNATE[0]}:{ALTERNATE[1]}"])
    with TurnClient(server.udp4, *server.user) as old:
        relay_session(old, echo.address)
        assert channel_echo(old, b"before drain")
        status, body = server.http("POST", "/drain")
        assert status == 202 and json.loads(body)["draining"] is True
        assert server.http("GET", "/readyz")[0] == 503
        with TurnClient(server.udp4, *server.user) as new:
            redirected = new.allocate()
            assert redirected.is_error and redirected.error_code == 300, redirected
            assert stunclient.decode_plain_address(redirected.get(ALTERNATE_SERVER)) == ALTERNATE
        assert channel_echo(old, b"during drain")
        assert old.refresh(600).is_success
        assert channel_echo(old, b"after refresh")
    assert metric(server, 'traverse_error_responses_total{code="300"}') == 1
    assert metric(server, "traverse_draining") == 1


def test_sigterm_drains_then_exits_when_the_last_allocation_ends(tmp_path, echo):
    options = ServerOptions(drain_timeout=30, extra=["--alternate-server", f"{ALTERNATE[0]}:{ALTERNATE[1]}"])
    server = launch(options, tmp_path / "drain")
    try:
        with TurnClient(server.udp4, *server.user) as old:
            relay_session(old, echo.address)
            server.process.send_signal(signal.SIGTERM)
            wait_until(lambda: server.http("GET", "/readyz")[0] == 503, message="draining")
            with TurnClient(server.udp4, *server.user) as new:
                redirected = new.allocate()
                assert redirected.is_error and redirected.error_code == 300, redirected
            time.sleep(0.5)
            assert server.process.poll() is None, "exited while an allocation was still live"
            assert channel_echo(old, b"still relaying while draining")
            assert old.refresh(0).is_success
        assert server.process.wait(timeout=10) == 0
        assert "drain=drained" in server.log()
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def test_sigterm_exits_after_the_drain_timeout(tmp_path, echo):
    server = launch(ServerOptions(drain_timeout=1), tmp_path / "timeout")
    try:
        with TurnClient(server.udp4, *server.user) as turn:
            relay_session(turn, echo.address)
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(timeout=10) == 0
            assert 0.9 <= time.monotonic() - started < 8
        assert "timedOut" in server.log()
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def test_sigint_stops_at_once(tmp_path, echo):
    server = launch(ServerOptions(drain_timeout=60), tmp_path / "sigint")
    try:
        with TurnClient(server.udp4, *server.user) as turn:
            relay_session(turn, echo.address)
            server.process.send_signal(signal.SIGINT)
            assert server.process.wait(timeout=5) == 0
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


# ---------------------------------------------------------------------------
# Reload


def test_sighup_rotates_the_rest_secret_without_dropping_allocations(start_server, tmp_path, echo):
    config = tmp_path / "traverse.toml"
    write_config(config, '[auth]\nsecrets = ["old-secret"]\n')
    server = start_server(secret=None, extra=["--config", str(config)])
    old_user, old_password = stunclient.rest_credentials("old-secret", user="carol")
    with TurnClient(server.udp4, old_user, old_password) as old:
        relay_session(old, echo.address)
        assert channel_echo(old, b"with the old secret")

        write_config(config, '[auth]\nsecrets = ["new-secret"]\n')
        server.process.send_signal(signal.SIGHUP)
        wait_until(lambda: metric(server, 'traverse_config_reloads_total{result="ok"}') == 1, message="reload")

        new_user, new_password = stunclient.rest_credentials("new-secret", user="dave")
        with TurnClient(server.udp4, new_user, new_password) as new:
            assert new.allocate().is_success
        stale_user, stale_password = stunclient.rest_credentials("old-secret", user="erin")
        with TurnClient(server.udp4, stale_user, stale_password) as stale:
            rejected = stale.allocate()
            assert rejected.is_error and rejected.error_code == 401, rejected

        # The allocation made with the old secret keeps relaying.
        assert channel_echo(old, b"after the rotation")

        # A broken configuration is refused, over SIGHUP and over HTTP; the new secret stays.
        write_config(config, "[auth]\nsecrets = 42\n")
        server.process.send_signal(signal.SIGHUP)
        wait_until(lambda: metric(server, 'traverse_config_reloads_total{result="refused"}') == 1, message="refusal")
        status, body = server.http("POST", "/reload")
        assert status == 400 and "auth.secrets" in json.loads(body)["reason"]
        assert "reload refused" in server.log()
        again_user, again_password = stunclient.rest_credentials("new-secret", user="frank")
        with TurnClient(server.udp4, again_user, again_password) as again:
            assert again.allocate().is_success
        assert channel_echo(old, b"after the refusal")

        # POST /reload applies a good file like SIGHUP does.
        write_config(config, '[auth]\nsecrets = ["third-secret"]\n')
        assert server.http("POST", "/reload") == (200, '{"reloaded": true}\n')
        third_user, third_password = stunclient.rest_credentials("third-secret", user="grace")
        with TurnClient(server.udp4, third_user, third_password) as third:
            assert third.allocate().is_success


# ---------------------------------------------------------------------------
# Admin token


def test_admin_token_is_required_when_configured(start_server):
    server = start_server(extra=["--admin-token", "tok-123"])
    assert server.http("GET", "/metrics")[0] == 401
    assert server.http("GET", "/metrics", token="wrong")[0] == 401
    assert server.http("POST", "/drain")[0] == 401
    assert server.http("GET", "/metrics", token="tok-123")[0] == 200
    assert server.http("GET", "/readyz", token="tok-123")[0] == 200


def test_admin_off_loopback_without_token_is_refused(tmp_path):
    result = subprocess.run(
        [str(TRAVERSE_BIN), "serve", "--listen", "127.0.0.1:0", "--user", "a:b", "--admin-listen", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        timeout=10,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "admin.listen" in result.stderr


# ---------------------------------------------------------------------------
# Cross-site requests (a page in a browser on the host, DNS rebinding)


def test_admin_refuses_foreign_host_and_cross_site_posts(start_server, tmp_path):
    path = write_config(tmp_path / "traverse.toml", '[admin]\nallowed_hosts = ["relay-1.internal"]\n')
    server = start_server(extra=["--config", str(path)])
    port = server.admin[1]
    # DNS rebinding: the attacker's name in Host.
    assert server.http("GET", "/metrics", headers={"Host": f"rebound.attacker.example:{port}"})[0] == 421
    assert server.http("GET", "/healthz", headers={"Host": "evil.example"})[0] == 421
    # The names the endpoint answers to.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"relay-1.internal:{port}"):
        assert server.http("GET", "/metrics", headers={"Host": host})[0] == 200, host
    # A form or no-cors fetch: text/plain, no custom header.
    simple = {"Content-Type": "text/plain", "X-Traverse-Admin": None}
    assert server.http("POST", "/drain", headers=simple)[0] == 403
    assert server.http("POST", "/reload", headers=simple)[0] == 403
    # Another origin, even with the header (which a browser would only send after a preflight).
    assert server.http("POST", "/drain", headers={"Origin": "http://evil.example"})[0] == 403
    assert server.http("GET", "/readyz")[0] == 200, "a refused request drained the server"
    assert metric(server, 'traverse_config_reloads_total{result="refused"}') == 0
    # The endpoint's own origin, and curl-like clients without Origin, may act.
    assert server.http("POST", "/reload", headers={"Origin": f"http://localhost:{port}"})[0] == 200
    assert server.http("POST", "/drain")[0] == 202
    assert server.http("GET", "/readyz")[0] == 503


# ---------------------------------------------------------------------------
# traverse top


def test_top_once_prints_one_frame(server, echo):
    with TurnClient(server.udp4, *server.user) as turn:
        relay_session(turn, echo.address)
        assert channel_echo(turn, b"x" * 500)
        announce = server.log_path.parent / "announce.json"
        result = subprocess.run(
            [str(TRAVERSE_BIN), "top", "--announce-file", str(announce), "--once"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    assert result.returncode == 0, result.stderr
    assert "allocations 1/" in result.stdout
    assert "load " in result.stdout and "pkt/s" in result.stdout
    assert "401" in result.stdout  # the challenge is the top error code


# ---------------------------------------------------------------------------
# Privacy


def test_no_relayed_payload_reaches_anything_traverse_writes(start_server, echo):
    server = start_server(extra=["--log-level", "trace"])
    marker = b"PAYLOAD-MARKER-" + secrets.token_hex(8).encode()
    with TurnClient(server.udp4, *server.user) as turn:
        relay_session(turn, echo.address)
        for i in range(5):
            assert channel_echo(turn, marker + bytes([i]))
            turn.send_indication(echo.address, marker + b"-indication")
            assert turn.receive_data(timeout=2.0) is not None
        status, metrics = server.http("GET", "/metrics")
        assert status == 200 and marker.decode() not in metrics
        assert marker.decode() not in server.http("GET", "/load")[1]
        turn.refresh(0)
    server.process.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    server.stop()
    workdir = server.log_path.parent
    written = [p for p in workdir.rglob("*") if p.is_file()]
    assert server.log_path in written
    for path in written:
        assert marker not in path.read_bytes(), f"relayed payload found in {path}"


# ---------------------------------------------------------------------------
# The shipped Grafana dashboard and alert rules query series that exist


DOCS = Path(__file__).resolve().parents[2] / "Docs"


def test_dashboard_and_alert_queries_run_against_real_metrics(server, prometheus):
    prom = prometheus(server)
    prom.wait_for('up{job="traverse"}', 1)
    prom.wait_for("traverse_allocations_capacity", 10000)
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(expressions) >= 20
    for expr in expressions:
        concrete = expr.replace("$instance", ".*").replace("$__rate_interval", "1m")
        prom.query(concrete)  # raises on a syntax error (HTTP 400)
        metric_names = [n for n in ("traverse_", "process_", "up{") if n in concrete]
        assert metric_names, expr
    # Every metric name the dashboard uses is exported.
    status, body = server.http("GET", "/metrics")
    exported = {line.split("{")[0].split(" ")[0] for line in body.splitlines() if line and not line.startswith("#")}
    import re

    used = set(re.findall(r"\b((?:traverse|process)_[a-z_]+)", "\n".join(expressions)))
    assert used <= exported, used - exported
    rules = (DOCS / "alerts.yml").read_text()
    assert set(re.findall(r"\b(traverse_[a-z_]+)", rules)) <= exported
