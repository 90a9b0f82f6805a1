"""The operator console, in a real browser: Debian's headless Chromium driven over the DevTools
protocol (chromium.py), against running Traverse servers on loopback.

Checked: the live view draws non-zero charts while traverse-load runs (and wrong passwords and
junk datagrams make auth failures and drops); the fleet board lists the
three nodes of a test fleet (real redis-server); ending a session (and all of a user's) from
the page ends it (the client's next Refresh gets 437), with sorting, filtering and bans; the
self-test passes for UDP, TCP and TLS and reports 401 for a wrong password; the console shows
nothing without the token when one is set.

Each page is photographed under load. The pictures go to the test's tmp_path; with
UPDATE_SCREENSHOTS=1 (`make screenshots`) also to Docs/images/console-*.png, the ones
Docs/operations.md shows.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

import stunclient as sc
from chromium import Chromium, chromium_binary
from test_fleet import Redis, start_fleet
from test_more_paths import traverse_load

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "Docs" / "images"
TOKEN = "console-test-token-7f3a"
LOAD_ARGS = ["--legacy-channel-numbers", "--user-quota", "1000"]


@pytest.fixture
def browser(tmp_path):
    # A missing browser fails the tests rather than skipping them: `make interop-deps` installs both.
    if chromium_binary() is None:
        pytest.fail("chromium is not installed (make interop-deps)", pytrace=False)
    try:
        import websocket  # noqa: F401
    except ImportError:
        pytest.fail("websocket-client is not installed (make interop-deps)", pytrace=False)
    # The test servers' TLS certificates are self-signed.
    b = Chromium(tmp_path / "chromium", extra_args=["--ignore-certificate-errors"])
    yield b
    b.close()


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path)
    yield r
    r.stop()


@contextlib.contextmanager
def load(server_udp: tuple[str, int], tmp_path: Path, seconds: int = 60, calls: int = 4):
    """traverse-load's paced calls (audio and 300 kbit/s video) through the server while the
    block runs; stopped at its end."""
    host, port = server_udp
    log = open(tmp_path / f"load-{port}.log", "wb")
    process = subprocess.Popen(
        [str(traverse_load()), f"turn:{host}:{port}?transport=udp", "--user", "alice:wonderland", "--calls",
         str(calls), "--duration", str(seconds), "--video-kbps", "300"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextlib.contextmanager
def noise(server):
    """While the block runs, every 0.25 s: an Allocate with a wrong password (an auth failure,
    bad_integrity) and a datagram that is neither STUN nor ChannelData (a drop, not_stun)."""
    stop = threading.Event()

    def run():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
            while not stop.is_set():
                t = sc.TurnClient(server.udp4, "alice", "not-the-password", timeout=1)
                try:
                    t.allocate()
                except Exception:
                    pass
                finally:
                    t.close()
                junk.sendto(b"\x99" * 40, server.udp4)
                stop.wait(0.25)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def url(server, path: str) -> str:
    host, port = server.admin
    return f"http://{host}:{port}{path}"


def screenshot(browser: Chromium, tmp_path: Path, name: str) -> Path:
    path = browser.screenshot(tmp_path / f"console-{name}.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, IMAGES / path.name)
    return path


def text(browser: Chromium) -> str:
    return browser.evaluate("document.body.innerText")


def max_y(browser: Chromium, canvas: str) -> float:
    """The largest value any dataset of a chart holds now."""
    return browser.evaluate(
        f"Math.max(0, ...Chart.getChart('{canvas}').data.datasets.flatMap((d) => d.data.map((p) => p.y)))")


# ---------------------------------------------------------------------------


@pytest.mark.server_args(extra=LOAD_ARGS)
def test_live_view_draws_nonzero_charts_under_load(server, browser, tmp_path):
    with load(server.udp4, tmp_path), noise(server):
        browser.navigate(url(server, "/"))
        assert browser.evaluate("typeof Chart") == "function", "Chart.js not served (libjs-chart.js)"
        for canvas in ("chart-allocations", "chart-packets", "chart-bits", "chart-cpu", "chart-drops", "chart-auth"):
            browser.wait_for(f"Chart.getChart('{canvas}').data.datasets.some((d) => d.data.some((p) => p.y > 0))",
                             30, f"{canvas} above zero")
        # Both directions relayed: two lines above zero on the packet and bit charts.
        for canvas in ("chart-packets", "chart-bits"):
            browser.wait_for(
                f"Chart.getChart('{canvas}').data.datasets.filter((d) => d.data.some((p) => p.y > 0)).length === 2",
                10, f"{canvas}: in and out")
        assert max_y(browser, "chart-allocations") >= 8  # 4 calls, 2 clients each
        labels = "Chart.getChart('%s').data.datasets.filter((d) => d.data.some((p) => p.y > 0)).map((d) => d.label)"
        assert "not_stun" in browser.evaluate(labels % "chart-drops")
        assert "bad_integrity" in browser.evaluate(labels % "chart-auth")
        # The numbers of `traverse top`, filled in.
        browser.wait_for("document.getElementById('top-in').textContent.includes('bit/s')", 10)
        top = browser.evaluate(
            "Object.fromEntries([...document.querySelectorAll('#top .value')].map((e) => [e.id, e.textContent]))")
        assert top["top-allocations"].split(" / ")[0] != "0", top
        assert top["top-allocations"].endswith("/ 10000"), top
        assert "401" in browser.evaluate("document.getElementById('top-errors').innerText")  # the challenges
        # A few more seconds of history, then the picture.
        browser.wait_for("window.TraverseLive.series.t.length >= 15", 30, "15 s of history")
        screenshot(browser, tmp_path, "live")
        page = text(browser)
        assert "127.0.0." not in page  # no client address anywhere
    # The JSON behind it: compact, one point a second, newer than `since`.
    status, body = server.http("GET", "/console/live.json")
    assert status == 200
    live = json.loads(body)
    assert len(live["t"]) >= 15 and all(b - a >= 500 for a, b in zip(live["t"], live["t"][1:]))
    assert {k: len(live[k]) for k in ("allocations", "bps_in", "pps_out", "cpu", "load")} == dict.fromkeys(
        ("allocations", "bps_in", "pps_out", "cpu", "load"), len(live["t"]))
    status, body = server.http("GET", f"/console/live.json?since={live['t'][-2]}")
    assert status == 200 and len(json.loads(body)["t"]) in (1, 2, 3)


def test_fleet_board_lists_the_three_nodes(start_server, tmp_path, redis, browser):
    a, b, c = start_fleet(start_server, tmp_path, redis, extra=["--user-quota", "1000"])
    with load(a.udp4, tmp_path, calls=3):
        browser.navigate(url(a, "/console/fleet"))
        browser.wait_for("document.querySelectorAll('#fleet-table tbody tr[data-state=\"ready\"]').length === 3", 15,
                         "three ready nodes")
        rows = browser.evaluate("""[...document.querySelectorAll('#fleet-table tbody tr')].map((r) => ({
            node: r.dataset.node, state: r.dataset.state, cells: [...r.cells].map((c) => c.innerText),
            link: r.querySelector('a') ? r.querySelector('a').getAttribute('href') : null}))""")
        by_node = {r["node"]: r for r in rows}
        assert set(by_node) == {"a", "b", "c"}, rows
        assert "(this node)" in by_node["a"]["cells"][0]
        assert by_node["a"]["link"] == "/"
        # The others link to their own consoles (reachable: this node asked their /healthz).
        for node, server in (("b", b), ("c", c)):
            assert by_node[node]["link"] == "http://%s:%d/" % server.admin, rows
        assert "Redis up" in browser.evaluate("document.getElementById('fleet-summary').textContent")
        # a carries the load: its row shows allocations and bits/s.
        browser.wait_for("""(() => { const r = document.querySelector('#fleet-table tr[data-node="a"]');
            return r && !r.cells[3].innerText.startsWith('0 ') && !r.cells[4].innerText.startsWith('0 bit'); })()""",
                         15, "a's load on the board")
        screenshot(browser, tmp_path, "fleet")
        # The link leads to b's console (its live view).
        browser.click('#fleet-table tr[data-node="b"] a')
        browser.wait_for("location.port === '%d' && document.getElementById('top-load').textContent.includes('%%')"
                         % b.admin[1], 15, "b's console")


@pytest.mark.server_args(users=["alice:wonderland", "bob:builder"], extra=LOAD_ARGS)
def test_sessions_page_ends_sessions_and_manages_bans(server, browser, tmp_path):
    bobs = []
    for _ in range(3):
        t = sc.TurnClient(server.udp4, "bob", "builder")
        assert t.allocate().is_success
        bobs.append(t)
    with load(server.udp4, tmp_path, calls=2):
        browser.navigate(url(server, "/console/sessions"))
        browser.wait_for("document.querySelectorAll('#sessions-table tbody tr[data-user=\"alice\"]').length >= 4", 20,
                         "the load's sessions")
        rows = "document.querySelectorAll('#sessions-table tbody tr')"
        assert browser.evaluate(f"[...{rows}].filter((r) => r.dataset.user === 'bob').length") == 3
        # Client addresses are redacted (log.redact_addresses is on by default).
        clients = browser.evaluate(f"[...{rows}].map((r) => r.cells[5].innerText)")
        assert clients and all("x.x" in c for c in clients), clients
        assert "127.0.0." not in text(browser)
        # Sort by user: ascending, then descending.
        browser.click('#sessions-table th[data-key="user"]')
        users = browser.evaluate(f"[...{rows}].map((r) => r.dataset.user)")
        assert users == sorted(users) and users[0] == "alice"
        browser.click('#sessions-table th[data-key="user"]')
        assert browser.evaluate(f"[...{rows}].map((r) => r.dataset.user)")[0] == "bob"
        # A ban, added from the page (listed with its reason), for the picture.
        browser.set_value("#ban-cidr", "198.51.100.0/24")
        browser.set_value("#ban-reason", "console test")
        browser.set_value("#ban-expires", "3600")
        browser.submit("#ban-form")
        browser.wait_for("!!document.querySelector('#bans-table tr[data-cidr=\"198.51.100.0/24\"]')", 10, "the ban listed")
        assert "console test" in browser.evaluate(
            "document.querySelector('#bans-table tr[data-cidr=\"198.51.100.0/24\"]').innerText")
        screenshot(browser, tmp_path, "sessions")
        status, body = server.http("GET", "/bans")
        assert any(b["cidr"] == "198.51.100.0/24" and b["reason"] == "console test" for b in json.loads(body)["bans"])

        # Filter by user, then end one of bob's sessions: two clicks (the second confirms).
        browser.set_value("#filter-user", "bo")
        browser.wait_for(f"[...{rows}].length === 3 && [...{rows}].every((r) => r.dataset.user === 'bob')", 5,
                         "the filter")
        first = browser.evaluate(f"{rows}[0].dataset.id")
        button = f'#sessions-table tr[data-id="{first}"] button'
        browser.click(button)
        assert browser.evaluate(f"document.querySelector('{button}').textContent").startswith("End ")
        browser.click(button)
        browser.wait_for("document.getElementById('sessions-message').textContent.includes('ended')", 10)
        browser.wait_for(f"{rows}.length === 2", 10, "two of bob's sessions left")
        assert first not in browser.evaluate(f"[...{rows}].map((r) => r.dataset.id)")
        # Exactly that client's next Refresh gets 437; the other two refresh as usual.
        refreshed = [t.refresh(600) for t in bobs]
        codes = sorted(r.error_code if r.is_error else 200 for r in refreshed)
        assert codes == [200, 200, 437], codes

        # End all of bob's sessions.
        user_button = f"{rows}[0].querySelectorAll('button')[1]"
        browser.evaluate(f"{user_button}.click()")
        browser.evaluate(f"{user_button}.click()")
        browser.wait_for("document.getElementById('sessions-message').textContent.includes('Ended 2 session')", 10)
        browser.wait_for(f"{rows}.length === 0", 10, "bob's sessions gone")
        for t in bobs:
            r = t.refresh(600)
            assert r.is_error and r.error_code == 437, r
            t.close()
        # alice's (the load's) sessions are untouched.
        status, body = server.http("GET", "/sessions")
        assert sum(1 for s in json.loads(body)["sessions"] if s["user"] == "alice") >= 4

        # Remove the ban from the page.
        remove = 'document.querySelector(\'#bans-table tr[data-cidr="198.51.100.0/24"] button\')'
        browser.evaluate(f"{remove}.click()")
        browser.evaluate(f"{remove}.click()")
        browser.wait_for("!document.querySelector('#bans-table tr[data-cidr=\"198.51.100.0/24\"]')", 10, "ban removed")
        status, body = server.http("GET", "/bans")
        assert json.loads(body)["bans"] == []


# IPv4 listeners only: headless Chromium here gets no TCP connection to [::1] for a TURN server
# (701 for turn:[::1]:P?transport=tcp and turns:[::1]:P; UDP over [::1] passes), although
# Traverse allocates over TCP on [::1] for other clients (test_tcp_tls.py).
@pytest.mark.server_args(listen=["127.0.0.1:0"], tls_listen=["127.0.0.1:0"], extra=LOAD_ARGS)
def test_self_test_passes_for_udp_tcp_and_tls_and_reports_a_wrong_password(server, browser, tmp_path):
    with load(server.udp4, tmp_path, calls=2):
        browser.navigate(url(server, "/check"))
        browser.wait_for("document.getElementById('check-urls').value.includes('turns:')", 10, "the URLs")
        urls = browser.evaluate("document.getElementById('check-urls').value").split("\n")
        udp, tcp, tls = ("%s:%d" % a for a in (server.udp4, server.tcp4, server.tls4))
        for expected in (f"turn:{udp}?transport=udp", f"turn:{tcp}?transport=tcp", f"turns:{tls}?transport=tcp"):
            assert expected in urls, urls
        assert len(urls) == 3
        # With the REST secret configured, the page mints a credential.
        browser.submit("#check-form")
        browser.wait_for("window.TraverseCheck.done && window.TraverseCheck.results.length === 3", 90, "the self-test")
        results = browser.evaluate("window.TraverseCheck.results")
        for r in results:
            assert r["ok"], results
            assert r["relay"] and r["echo"] == "1024 bytes, identical", r
            assert 0 < r["connectMs"] < 10_000 and r["rttMs"] is not None and r["rttMs"] >= 0, r
        protocols = {r["url"].split(":")[0] + "/" + r["url"].rsplit("=", 1)[1]: r["protocol"] for r in results}
        assert protocols == {"turn/udp": "udp", "turn/tcp": "tcp", "turns/tcp": "tls"}, results
        assert "3 of 3 URLs passed" in browser.evaluate("document.getElementById('check-summary').textContent")
        screenshot(browser, tmp_path, "check")

        # A wrong password: no relay candidate, and the error code says why.
        browser.set_value("#check-urls", "\n".join(urls[:3]))
        browser.set_value("#check-user", "alice")
        browser.set_value("#check-password", "not-the-password")
        browser.submit("#check-form")
        browser.wait_for("window.TraverseCheck.done && window.TraverseCheck.results.length === 3", 90, "the failing test")
        for r in browser.evaluate("window.TraverseCheck.results"):
            assert not r["ok"] and not r["relay"], r
            assert r["error"].startswith("401"), r
        cells = browser.evaluate("[...document.querySelectorAll('#check-results tbody tr')].map((r) => r.cells[1].innerText)")
        assert all(c.startswith("error 401") for c in cells), cells
        assert "0 of 3 URLs passed" in browser.evaluate("document.getElementById('check-summary').textContent")
        # The right static password works as well.
        browser.set_value("#check-urls", urls[0])
        browser.set_value("#check-password", "wonderland")
        browser.submit("#check-form")
        browser.wait_for("window.TraverseCheck.done && window.TraverseCheck.results.length === 1", 60)
        assert browser.evaluate("window.TraverseCheck.results[0].ok")


@pytest.mark.server_args(secret=None)
def test_self_test_without_a_secret_asks_for_a_user(server, browser):
    status, body = server.http("POST", "/console/credential")
    assert status == 409 and "auth.secrets" in body
    browser.navigate(url(server, "/check"))
    browser.wait_for("document.getElementById('check-credential-note').textContent.includes('type a user')", 10)
    browser.set_value("#check-urls", "turn:%s:%d?transport=udp" % server.udp4)
    browser.submit("#check-form")
    browser.wait_for("window.TraverseCheck.done", 20)
    assert "give a user and password" in browser.evaluate("document.getElementById('check-summary').textContent")
    browser.set_value("#check-user", "alice")
    browser.set_value("#check-password", "wonderland")
    browser.submit("#check-form")
    browser.wait_for("window.TraverseCheck.done && window.TraverseCheck.results.length === 1", 60)
    assert browser.evaluate("window.TraverseCheck.results[0].ok")


@pytest.mark.server_args(extra=["--admin-token", TOKEN])
def test_console_shows_nothing_without_the_token(server, browser):
    # The pages are static; everything with data needs the token.
    for path in ("/", "/console/fleet", "/console/sessions", "/check", "/console/assets/common.js"):
        assert server.http("GET", path)[0] == 200, path
    for method, path in (("GET", "/console/live.json"), ("GET", "/console/fleet.json"), ("GET", "/console/check.json"),
                         ("POST", "/console/credential"), ("GET", "/sessions"), ("GET", "/bans")):
        assert server.http(method, path)[0] == 401, path
        assert server.http(method, path, token="wrong")[0] == 401, path
        assert server.http(method, path, token=TOKEN)[0] == 200, path
    browser.navigate(url(server, "/"))
    browser.wait_for("!document.getElementById('token-form').hidden", 10, "the token form")
    assert browser.evaluate("document.getElementById('top-load').textContent") == "–"
    assert browser.evaluate("window.TraverseLive.series.t.length") == 0
    # A wrong token is refused; the right one is kept for the tab and the numbers appear.
    browser.set_value("#token-input", "wrong")
    browser.submit("#token-form")
    browser.wait_for("!document.getElementById('token-form').hidden", 10, "the form again")
    browser.set_value("#token-input", TOKEN)
    browser.submit("#token-form")
    browser.wait_for("document.getElementById('top-load').textContent.includes('%')", 10, "numbers with the token")
    assert browser.evaluate("sessionStorage.getItem('traverse-admin-token')") == TOKEN
    browser.navigate(url(server, "/console/sessions"))
    browser.wait_for("document.getElementById('sessions-count').textContent.includes('0 of 0')", 10)
    assert browser.evaluate("document.getElementById('token-form').hidden")
