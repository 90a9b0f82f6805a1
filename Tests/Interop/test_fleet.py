"""A fleet: three Traverse nodes and one real redis-server (Debian), all on loopback.

Each test starts its own Redis (no persistence, a free port) and its own nodes, and stops them.
Checked over real sockets: the load board, load-aware 300 Try Alternate followed by coturn's
turnutils_uclient, fleet-wide bans, the fleet-wide per-user quota under racing Allocates, ending
a user's sessions on every node, usage records, garbage in Redis, a bad [fleet] configuration,
and Redis dying during a paced SRTP run (no relayed packet lost) and coming back.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import stunclient as sc
from conftest import TRAVERSE_BIN, udp_port_in_use
from test_more_paths import traverse_load

SECRET = "fleet-test-secret-0123456789"
USER = ("alice", "wonderland")


def free_tcp_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Redis:
    """A redis-server on a free loopback port, no persistence; stopped by the fixture."""

    def __init__(self, workdir: Path, password: str | None = None):
        self.workdir = workdir
        self.password = password
        self.port = free_tcp_port()
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), *(["--requirepass", self.password] if self.password else [])],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while True:
            try:
                if self.cli("PING").strip() == "PONG":
                    return
            except subprocess.CalledProcessError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def cli(self, *args: str) -> str:
        auth = ["--no-auth-warning", "-a", self.password] if self.password else []
        return subprocess.run(["redis-cli", "-p", str(self.port), *auth, *args], check=True, capture_output=True,
                              text=True, timeout=5).stdout

    @property
    def url(self) -> str:
        return f"redis://{':' + self.password + '@' if self.password else ''}127.0.0.1:{self.port}"


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path)
    yield r
    r.stop()


def admin_call(server, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    host, port = server.admin
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        headers = {"X-Traverse-Admin": "1"} if method != "GET" else {}
        payload = None
        if body is not None:
            payload = json.dumps(body)
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=headers)
        r = conn.getresponse()
        text = r.read().decode()
        return r.status, (json.loads(text) if text.strip().startswith("{") else {"text": text})
    finally:
        conn.close()


def start_fleet(start_server, tmp_path: Path, redis: Redis, nodes=("a", "b", "c"), extra_config: str = "",
                per_node: dict | None = None, extra: list[str] | None = None):
    """Starts the nodes with a shared [fleet] secret; waits until every node sees the whole board."""
    servers = []
    for n in nodes:
        config = tmp_path / f"fleet-{n}.toml"
        config.write_text(
            f'[fleet]\nsecret = "{SECRET}"\npublish_interval = 0.5\n' + extra_config + (per_node or {}).get(n, ""))
        servers.append(start_server(
            extra=["--config", str(config), "--redis", redis.url, "--node-id", n, "--legacy-channel-numbers",
                   *(extra or [])]))
    wait_for(lambda: all(len(board(s)) == len(nodes) for s in servers), 5, "every node on every board")
    return servers


def board(server) -> dict:
    status, body = admin_call(server, "GET", "/fleet")
    assert status == 200, body
    return {n["node"]: n for n in body["nodes"] if n["state"] != "stale"}


def wait_for(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"not within {timeout}s: {what}"
        time.sleep(0.05)
    return time.monotonic() - start


def metric(server, name: str) -> float:
    status, text = server.http("GET", "/metrics")
    assert status == 200
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (len(line) == len(name) or line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def client_from(ip: str, server_address, user=USER) -> sc.TurnClient:
    c = sc.TurnClient(server_address, *user)
    c.sock.close()
    c.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.sock.bind((ip, 0))
    return c


# ---------------------------------------------------------------------------


def test_board_lists_every_node_and_the_cli_shows_it(start_server, tmp_path, redis):
    a, b, c = start_fleet(start_server, tmp_path, redis)
    for s in (a, b, c):
        nodes = board(s)
        assert set(nodes) == {"a", "b", "c"}
        assert all(n["state"] == "ready" and n["addresses"]["udp"] for n in nodes.values())
    out = subprocess.run([str(TRAVERSE_BIN), "fleet", "--admin", "%s:%d" % b.admin], capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 0, out.stderr
    for n in ("a", "b", "c"):
        assert any(line.split()[:2] == [n, "ready"] for line in out.stdout.splitlines()), out.stdout
    # A node that stops leaves the board by itself (its entry expires).
    c.stop()
    wait_for(lambda: set(board(a)) == {"a", "b"}, 5, "the stopped node off the board")
    assert metric(a, "traverse_fleet_redis_up") == 1
    assert metric(a, "traverse_fleet_board_nodes") == 2


def test_redirect_goes_to_the_least_loaded_node_and_uclient_follows_it(start_server, tmp_path, redis, echo_peers):
    # b is nearly full (3 of 4), c is idle; a drains: its new clients must go to c.
    a, b, c = start_fleet(start_server, tmp_path, redis, per_node={"b": "[limits]\nmax_allocations = 4\n"},
                          extra=["--user-quota", "100"])
    held = []
    for _ in range(3):
        t = sc.TurnClient(b.udp4, *USER)
        assert t.allocate().is_success
        held.append(t)
    wait_for(lambda: board(a)["b"]["load"] >= 0.7, 5, "b's load on the board")
    status, _ = admin_call(a, "POST", "/drain")
    assert status == 202
    for _ in range(10):
        probe = sc.TurnClient(a.udp4, *USER)
        r = probe.allocate()
        probe.close()
        assert r.is_error and r.error_code == 300, r
        alternate = sc.decode_plain_address(r.get(0x8023))
        assert alternate == c.udp4, (alternate, c.udp4)
    # coturn's own client, pointed at the draining node, follows the 300 and relays through c.
    argv = ["turnutils_uclient", "-u", USER[0], "-w", USER[1], "-e", "127.0.0.1", "-r", str(echo_peers), "-n", "20",
            "-m", "2", "-p", str(a.udp4[1]), "127.0.0.1"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert "Total lost packets 0 (0.000000%)" in run.stdout + run.stderr, run.stdout[-2000:] + run.stderr[-2000:]
    assert metric(c, "traverse_allocations_created_total") >= 2
    assert metric(a, "traverse_allocations_created_total") == 0
    assert metric(a, 'traverse_redirects_total{reason="draining"}') >= 10
    for t in held:
        t.close()


def test_ban_on_one_node_ends_allocations_on_another_within_a_second(start_server, tmp_path, redis):
    a, b, c = start_fleet(start_server, tmp_path, redis)
    victim = client_from("127.0.0.9", c.udp4)
    assert victim.allocate().is_success
    bystander = sc.TurnClient(c.udp4, *USER)
    assert bystander.allocate().is_success
    start = time.monotonic()
    status, body = admin_call(a, "POST", "/bans", {"cidr": "127.0.0.9/32", "reason": "abuse", "expires_in": 600})
    assert status == 201 and body["fleet"], body
    wait_for(lambda: admin_call(c, "GET", "/sessions")[1]["sessions"].__len__() == 1, 1.0, "the banned allocation ended on c")
    elapsed = time.monotonic() - start
    assert elapsed < 1.0
    # New requests from the banned address get 403 on every node.
    for s in (a, b):
        probe = client_from("127.0.0.9", s.udp4)
        r = probe.allocate()
        probe.close()
        assert r.is_error and r.error_code == 403, r
    assert bystander.refresh(600).is_success
    # The ban is listed everywhere, and lifting it on b lifts it on c.
    assert any(x["cidr"] == "127.0.0.9/32" for x in admin_call(c, "GET", "/bans")[1]["bans"])
    status, _ = admin_call(b, "DELETE", "/bans/127.0.0.9/32")
    assert status == 200
    wait_for(lambda: not admin_call(c, "GET", "/bans")[1]["bans"], 1.0, "the unban on c")
    again = client_from("127.0.0.9", c.udp4)
    assert again.allocate().is_success


def test_quota_holds_fleet_wide_under_racing_allocates(start_server, tmp_path, redis):
    a, b, c = start_fleet(start_server, tmp_path, redis, extra=["--user-quota", "10"])
    results = []
    lock = threading.Lock()
    barrier = threading.Barrier(30)

    def attempt(server):
        t = sc.TurnClient(server.udp4, *USER, timeout=5)
        t.authenticated(sc.REFRESH, [])  # learn the nonce first, so the Allocates race
        barrier.wait()
        r = t.allocate()
        with lock:
            results.append((r, t))

    threads = [threading.Thread(target=attempt, args=(s,)) for s in (a, b, c) for _ in range(10)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    granted = [t for r, t in results if r.is_success]
    refused = [r for r, t in results if r.is_error and r.error_code == 486]
    assert len(granted) == 10, [r.error_code for r, _ in results]
    assert len(refused) == 20
    # Counts come back when allocations end: another may then be made, on any node.
    assert granted[0].refresh(0).is_success
    late = sc.TurnClient(b.udp4, *USER)
    wait_for(lambda: late.allocate().is_success, 3, "a slot freed fleet-wide")
    assert sum(metric(s, 'traverse_quota_refusals_total{scope="fleet"}') for s in (a, b, c)) == 20
    # Redis holds counts per node under a hashed username, never the name.
    keys = redis.cli("--scan", "--pattern", "traverse:*").split()
    assert not any("alice" in k for k in keys), keys


def test_sessions_of_a_user_end_on_every_node(start_server, tmp_path, redis):
    a, b, c = start_fleet(start_server, tmp_path, redis, extra=["--user-quota", "100"])
    clients = []
    for s in (a, b, c):
        t = sc.TurnClient(s.udp4, *USER)
        assert t.allocate().is_success
        clients.append(t)
    status, body = admin_call(a, "GET", "/sessions?fleet=1")
    assert status == 200 and len(body["sessions"]) == 3, body
    assert {x["node"] for x in body["sessions"]} == {"a", "b", "c"}
    mine = [x for x in body["sessions"] if x["node"] == "a"]
    assert mine[0]["user"] == "alice" and "x.x" in mine[0]["client"]  # redacted by default
    assert all(x["user"] != "alice" for x in body["sessions"] if x["node"] != "a")  # hashed off-node
    status, body = admin_call(b, "DELETE", "/sessions?user=alice")
    assert status == 200
    wait_for(lambda: all(not admin_call(s, "GET", "/sessions")[1]["sessions"] for s in (a, b, c)), 1.0,
             "alice's sessions ended everywhere")
    for t in clients:
        r = t.refresh(600)
        assert r.is_error and r.error_code == 437, r


def test_usage_record_matches_what_the_client_sent(start_server, tmp_path, redis, echo_peers):
    a, b, c = start_fleet(start_server, tmp_path, redis)
    t = sc.TurnClient(b.udp4, *USER)
    assert t.allocate().is_success
    peer = ("127.0.0.1", echo_peers)
    assert t.create_permission(peer).is_success
    for i in range(7):
        t.send_indication(peer, bytes(100 + i))
        assert t.receive_data(2.0) is not None
    assert t.refresh(0).is_success
    deadline = time.monotonic() + 3
    while True:
        out = redis.cli("XRANGE", "traverse:usage", "-", "+")
        if "bytes_from_client" in out or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    lines = out.split()
    fields = dict(zip(lines[1::2], lines[2::2]))
    assert fields["node"] == "b"
    assert fields["transport"] == "udp" and fields["family"] == "ipv4"
    assert fields["packets_from_client"] == "7" and fields["bytes_from_client"] == str(sum(100 + i for i in range(7)))
    assert fields["packets_to_client"] == "7"
    assert fields["reason"] == "deleted"
    assert fields["user"] != "alice" and len(fields["user"]) == 32
    assert "127.0.0.1" not in out


def test_garbage_in_redis_is_ignored_and_counted(start_server, tmp_path, redis):
    a, b, c = start_fleet(start_server, tmp_path, redis)
    now_ms = str(int(time.time() * 1000))
    redis.cli("ZADD", "traverse:nodes", now_ms, "evil", now_ms, "wrongfamily", now_ms, "list")
    redis.cli("SET", "traverse:node:evil", "{not json")
    bad = {"node": "wrongfamily", "load": 0, "allocations": 0, "capacity": 1, "bits_per_second": 0,
           "draining": False, "full": False, "addresses": {"udp": ["999.1.2.3:3478"]}, "updated_ms": int(now_ms)}
    redis.cli("SET", "traverse:node:wrongfamily", json.dumps(bad))
    redis.cli("LPUSH", "traverse:node:list", "x")
    redis.cli("HSET", "traverse:bans", "10.0.0.0/8", "garbage", "not-a-cidr", json.dumps({"cidr": "nope", "created_at": 1}))
    redis.cli("PUBLISH", "traverse:events", "explode\tnow")
    wait_for(lambda: metric(a, "traverse_fleet_invalid_entries_total") >= 3, 3, "garbage counted")
    assert set(board(a)) == {"a", "b", "c"}
    assert not admin_call(a, "GET", "/bans")[1]["bans"]
    # Still serving, and still redirecting only to real nodes.
    t = sc.TurnClient(a.udp4, *USER)
    assert t.allocate().is_success
    for s in (a, b, c):
        s.assert_alive()


@pytest.mark.parametrize(
    "args, key",
    [
        (["--redis", "http://127.0.0.1:1"], "--redis"),
        (["--redis", "redis://127.0.0.1:1"], "fleet.secret"),
        (["--redis", "redis://127.0.0.1:1", "--node-id", "bad id!"], "fleet.node_id"),
    ],
)
def test_bad_fleet_configuration_is_one_line_naming_the_key(tmp_path, args, key):
    run = subprocess.run([str(TRAVERSE_BIN), "serve", "--listen", "127.0.0.1:0", "--admin-listen", "off",
                          "--state-dir", str(tmp_path), *args], capture_output=True, text=True, timeout=10,
                         env={**os.environ, "TRAVERSE_FLEET_SECRET": "x" * 20} if key == "fleet.node_id" else None)
    assert run.returncode == 2, run
    assert key in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


@pytest.mark.parametrize("toml, key", [
    ('redirect_load = 2', "fleet.redirect_load"),
    ('on_redis_down = "panic"', "fleet.on_redis_down"),
    ('advertise = ["carrier:1.2.3.4:5"]', "fleet.advertise"),
    ('colour = "blue"', "fleet.colour"),
])
def test_bad_fleet_keys_in_the_file(tmp_path, toml, key):
    config = tmp_path / "bad.toml"
    config.write_text(f'[fleet]\nredis = "redis://127.0.0.1:1"\nsecret = "{SECRET}"\n{toml}\n')
    run = subprocess.run([str(TRAVERSE_BIN), "check-config", str(config)], capture_output=True,
                         text=True, timeout=10)
    assert run.returncode == 2 and key in run.stderr, run


def test_redis_unreachable_at_start_serves_locally(start_server, tmp_path):
    config = tmp_path / "fleet.toml"
    config.write_text(f'[fleet]\nsecret = "{SECRET}"\npublish_interval = 0.5\n')
    s = start_server(extra=["--config", str(config), "--redis", f"redis://127.0.0.1:{free_tcp_port()}", "--node-id", "lone"])
    assert s.http("GET", "/readyz")[0] == 200
    t = sc.TurnClient(s.udp4, *USER)
    assert t.allocate().is_success
    assert metric(s, "traverse_fleet_redis_up") == 0
    time.sleep(1.5)
    warnings = [l for l in s.log().splitlines() if "redis unreachable" in l]
    assert len(warnings) == 1, warnings


def test_redis_dies_during_paced_calls_without_loss_and_comes_back(start_server, tmp_path, redis):
    a, b, c = start_fleet(start_server, tmp_path, redis, extra=["--user-quota", "100"])
    report_path = tmp_path / "load.json"
    host, port = a.udp4
    load = subprocess.Popen(
        [str(traverse_load()), f"turn:{host}:{port}?transport=udp", "--user", f"{USER[0]}:{USER[1]}", "--calls", "4",
         "--duration", "8", "--json", str(report_path)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    holder = sc.TurnClient(b.udp4, *USER)
    assert holder.allocate().is_success
    time.sleep(2.5)
    redis.stop()
    wait_for(lambda: metric(a, "traverse_fleet_redis_up") == 0, 3, "a sees Redis down")
    # Live allocations keep refreshing; new ones are served locally (on_redis_down = local).
    assert holder.refresh(600).is_success
    fresh = sc.TurnClient(c.udp4, *USER)
    assert fresh.allocate().is_success
    time.sleep(1.5)
    redis.start()  # empty: it had no persistence
    back = wait_for(lambda: all(set(board(s)) == {"a", "b", "c"} for s in (a, b, c)), 5, "the board back")
    # Counts republished: b and c each hold alice's allocations again in Redis.
    def counts() -> dict:
        keys = [k for k in redis.cli("--scan", "--pattern", "traverse:quota:*").split()]
        return {k: redis.cli("HGETALL", k).split() for k in keys}
    wait_for(lambda: any({"b", "c"} <= set(v[0::2]) for v in counts().values()), 5, "quota counts republished")
    out, _ = load.communicate(timeout=60)
    assert load.returncode == 0, out
    report = json.loads(report_path.read_text())
    assert report["sent"] > 0 and report["lost"] == 0 and report["authFailures"] == 0, report
    print(f"\nboard back {back:.2f}s after Redis restarted; paced run: sent {report['sent']}, lost {report['lost']}")


def test_redis_password_is_used_and_a_wrong_one_is_a_down_redis(start_server, tmp_path):
    r = Redis(tmp_path, password="s3cret-pass")
    try:
        a, b = start_fleet(start_server, tmp_path, r, nodes=("a", "b"))
        assert set(board(a)) == {"a", "b"}
        config = tmp_path / "wrong.toml"
        config.write_text(f'[fleet]\nsecret = "{SECRET}"\npublish_interval = 0.5\n')
        wrong = start_server(extra=["--config", str(config), "--redis", f"redis://:nope@127.0.0.1:{r.port}",
                                    "--node-id", "w"])
        time.sleep(1.5)
        assert metric(wrong, "traverse_fleet_redis_up") == 0
        assert "w" not in board(a)
        assert "***" in wrong.log() and "nope" not in wrong.log()  # the password never reaches the log
    finally:
        r.stop()


def test_refuse_mode_answers_508_while_redis_is_down_and_bans_survive_a_redis_restart(start_server, tmp_path, redis):
    a, b = start_fleet(start_server, tmp_path, redis, nodes=("a", "b"), extra_config='on_redis_down = "refuse"\n')
    status, _ = admin_call(a, "POST", "/bans", {"cidr": "127.0.0.77/32"})
    assert status == 201
    holder = sc.TurnClient(b.udp4, *USER)
    assert holder.allocate().is_success
    redis.stop()
    wait_for(lambda: metric(b, "traverse_fleet_redis_up") == 0, 3, "b sees Redis down")
    probe = sc.TurnClient(b.udp4, *USER)
    r = probe.allocate()
    assert r.is_error and r.error_code == 508, r  # the fleet quota cannot be checked: refused
    assert holder.refresh(600).is_success  # live allocations go on
    redis.start()  # empty
    wait_for(lambda: "127.0.0.77/32" in redis.cli("HKEYS", "traverse:bans"), 5, "the ban written back")
    assert any(x["cidr"] == "127.0.0.77/32" for x in admin_call(b, "GET", "/bans")[1]["bans"])
    wait_for(lambda: metric(b, "traverse_fleet_redis_up") == 1, 5, "b sees Redis back")
    again = sc.TurnClient(b.udp4, *USER)
    assert again.allocate().is_success
