#!/usr/bin/env python3
"""soak.py: a long run of one Traverse under churning load, watching for leaks and loss.

Started by soak.sh (which picks or builds the binaries); standard library only. See README.md
beside this file for what it does, the environment variables and the verdict.

All traffic is on 127.0.0.1. Every process started here is tracked and stopped on exit
(normal end, an exception, SIGINT or SIGTERM), by pid: TERM, then KILL.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

HOST = "127.0.0.1"


# ---------------------------------------------------------------------------------------- settings


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value != "" else default
    except ValueError:
        sys.exit(f"soak: {name} must be an integer, not {value!r}")


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    try:
        return float(value) if value != "" else default
    except ValueError:
        sys.exit(f"soak: {name} must be a number, not {value!r}")


def env_range(name: str, default: str) -> tuple[float, float]:
    text = os.environ.get(name, "") or default
    m = re.fullmatch(r"\s*([\d.]+)\s*(?:-\s*([\d.]+))?\s*", text)
    if not m:
        sys.exit(f"soak: {name} must be SECONDS or LOW-HIGH, not {text!r}")
    low = float(m.group(1))
    high = float(m.group(2) or m.group(1))
    if not 0 < low <= high <= 600:
        sys.exit(f"soak: {name}: need 0 < LOW <= HIGH <= 600")
    return low, high


MINUTES = env_int("SOAK_MINUTES", 30)
_default_warmup = 5 if MINUTES >= 10 else max(1, MINUTES // 3)
WARMUP = env_int("SOAK_WARMUP_MINUTES", _default_warmup)
RSS_TOLERANCE = env_float("SOAK_RSS_TOLERANCE_PCT", 5.0)
UDP_GENERATORS = env_int("SOAK_UDP_GENERATORS", 3)
UDP_CALLS = env_int("SOAK_UDP_CALLS", 20)
CALL_SECONDS = env_range("SOAK_CALL_SECONDS", "20-40")
VIDEO_KBPS = env_int("SOAK_VIDEO_KBPS", 0)
STREAM_SESSIONS = env_int("SOAK_STREAM_SESSIONS", 3)
STREAM_MESSAGES = env_int("SOAK_STREAM_MESSAGES", 500)
HUP_SECONDS = env_float("SOAK_HUP_SECONDS", 60)
TRICKLE_PER_SECOND = env_float("SOAK_TRICKLE_PER_SECOND", 5)
SCRAPE_SECONDS = env_float("SOAK_SCRAPE_SECONDS", 1)
QUIESCE_SECONDS = env_int("SOAK_QUIESCE_SECONDS", 90)
RELAY_PORTS = os.environ.get("SOAK_RELAY_PORTS", "") or "40000-49999"
KEEP_LOGS = os.environ.get("SOAK_KEEP_LOGS", "0") == "1"
LOG_LEVEL = os.environ.get("SOAK_LOG_LEVEL", "") or "info"
TRAVERSE = os.environ.get("TRAVERSE_BIN", "")
LOADGEN = os.environ.get("TRAVERSE_LOAD_BIN", "")

if MINUTES < 2:
    sys.exit("soak: SOAK_MINUTES must be at least 2")
if not 1 <= WARMUP < MINUTES:
    sys.exit(f"soak: SOAK_WARMUP_MINUTES ({WARMUP}) must be at least 1 and below SOAK_MINUTES ({MINUTES})")
if not TRAVERSE or not os.access(TRAVERSE, os.X_OK):
    sys.exit(f"soak: TRAVERSE_BIN ({TRAVERSE!r}) is not an executable")
if not LOADGEN or not os.access(LOADGEN, os.X_OK):
    sys.exit(f"soak: TRAVERSE_LOAD_BIN ({LOADGEN!r}) is not an executable")
for tool in ("turnutils_uclient", "turnutils_peer"):
    if not shutil.which(tool):
        sys.exit(f"soak: {tool} not found (apt-get install coturn, or make interop-deps)")
_m = re.fullmatch(r"(\d+)-(\d+)", RELAY_PORTS)
if not _m:
    sys.exit(f"soak: SOAK_RELAY_PORTS must be LOW-HIGH, not {RELAY_PORTS!r}")
RELAY_LOW, RELAY_HIGH = int(_m.group(1)), int(_m.group(2))

OUT = os.environ.get("SOAK_OUT", "") or tempfile.mkdtemp(prefix="traverse-soak.")
os.makedirs(OUT, exist_ok=True)

USER = ("soak", "soak-" + os.urandom(6).hex())
SECRET = "soak-secret-" + os.urandom(8).hex()

T0 = time.monotonic()


def elapsed() -> float:
    return time.monotonic() - T0


def log(message: str) -> None:
    print(f"soak: [{elapsed():7.1f}s] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- processes

_procs: list[subprocess.Popen] = []
_procs_lock = threading.Lock()


_shutting_down = False


def spawn(argv: list[str], output: str) -> subprocess.Popen:
    """Start a tracked process, its stdout and stderr into `output` (none once stop_all began)."""
    with _procs_lock:
        if _shutting_down:
            raise SystemExit(1)
        with open(output, "wb") as f:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        _procs.append(p)
    return p


def forget(p: subprocess.Popen) -> None:
    with _procs_lock:
        if p in _procs:
            _procs.remove(p)


def stop(p: subprocess.Popen, grace: float = 5.0) -> None:
    """TERM, then KILL after `grace` seconds; reaps it."""
    if p.poll() is None:
        try:
            p.terminate()
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        except ProcessLookupError:
            pass
    forget(p)


def run_tracked(argv: list[str], output: str, timeout: float) -> int:
    """Run a tracked process to its end (killed after `timeout` seconds); its exit status."""
    p = spawn(argv, output)
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(p, grace=2)
        return -999
    finally:
        forget(p)


def stop_all() -> None:
    global _shutting_down
    with _procs_lock:
        _shutting_down = True
        procs = list(_procs)
    for p in procs:
        if p.poll() is None:
            try:
                p.terminate()
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    with _procs_lock:
        _procs.clear()


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


# --------------------------------------------------------------------------------- statistics


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.udp_runs = 0
        self.udp_calls = 0
        self.udp_sent = 0
        self.udp_received = 0
        self.udp_lost = 0
        self.udp_auth_failures = 0
        self.udp_misdelivered = 0
        self.udp_generator_drops = 0
        self.udp_stale_nonces = 0
        self.stream_runs = {"tcp": 0, "tls": 0}
        self.stream_sessions = {"tcp": 0, "tls": 0}
        self.stream_sent = 0
        self.stream_received = 0
        self.stream_lost = 0
        self.failures: list[str] = []  # runs that failed for another reason than loss
        self.losses: list[str] = []  # runs with loss or SRTP failures
        self.scrapes_ok = 0
        self.scrapes_failed = 0
        self.scrape_errors: list[str] = []
        self.hups = 0
        self.trickle = {"udp": 0, "tcp": 0, "tls": 0, "tls_handshakes": 0}
        self.running = {"udp": 0, "tcp": 0, "tls": 0}

    def lost_so_far(self) -> int:
        return self.udp_lost + self.udp_auth_failures + self.udp_misdelivered + self.stream_lost


STATS = Stats()
STOP_LOAD = threading.Event()  # no new generator runs after this
STOP_ALL = threading.Event()  # background threads (trickle, HUP, scrape) stop


# ------------------------------------------------------------------------------------- server


class Server:
    def __init__(self) -> None:
        self.dir = os.path.join(OUT, "server")
        os.makedirs(self.dir, exist_ok=True)
        self.config = os.path.join(self.dir, "traverse.toml")
        self.announce_file = os.path.join(self.dir, "announce.json")
        self.log_path = os.path.join(self.dir, "traverse.log")
        self.generation = 0
        self.write_config()
        self.proc = spawn(
            [TRAVERSE, "serve", "--config", self.config, "--announce-file", self.announce_file],
            self.log_path,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with open(self.announce_file) as f:
                    self.announce = json.load(f)
                break
            except (OSError, ValueError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"traverse exited with {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"traverse did not announce its listeners in 60 s: {self.log_tail()}")
            time.sleep(0.1)
        self.pid = self.proc.pid
        self.udp_port = port_of(self.announce["udp"][0])
        self.tcp_port = port_of(self.announce["tcp"][0])
        self.tls_port = port_of(self.announce["tls"][0])
        self.dtls_port = port_of(self.announce["dtls"][0]) if self.announce.get("dtls") else None
        self.admin_port = port_of(self.announce["admin"])
        # Listening UDP sockets (port 0 may land inside the relay range): never counted as relay sockets.
        self.udp_listen_ports = {port_of(a) for key in ("udp", "dtls") for a in self.announce.get(key, [])}

    def write_config(self) -> None:
        """The configuration; each reload generation rotates an extra user and an extra secret, so
        that every SIGHUP really changes something (the soak's own user and secret stay)."""
        g = self.generation
        text = f"""# written by Benchmarks/soak/soak.py (reload generation {g})
[server]
listen = ["{HOST}:0"]
tls_listen = ["{HOST}:0"]
state_directory = "{os.path.join(self.dir, 'state')}"

[log]
level = "{LOG_LEVEL}"

[auth]
realm = "traverse"
users = {{ {USER[0]} = "{USER[1]}", "rotating-{g}" = "password-{g}" }}
secrets = ["{SECRET}", "rotating-secret-{g}"]
nonce_lifetime = 30

[relay]
addresses = ["{HOST}"]
port_range = "{RELAY_PORTS}"
allow_peers = ["127.0.0.0/8"]

[limits]
max_allocations = 100000
max_allocations_per_user = 100000
unauthenticated_rate = 0
legacy_channel_numbers = true

[admin]
listen = "{HOST}:0"
drain_timeout = 0
"""
        tmp = self.config + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config)

    def reload(self) -> None:
        self.generation += 1
        self.write_config()
        os.kill(self.pid, signal.SIGHUP)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 600) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:].replace("\n", " | ")
        except OSError:
            return ""

    def http(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        conn = http.client.HTTPConnection(HOST, self.admin_port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            conn.close()


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def free_udp_port_pair() -> int:
    for _ in range(200):
        port = random.randrange(20000, 30000, 2)
        socks = []
        try:
            for p in (port, port + 1):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((HOST, p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP port pair for the echo peers")


def udp_bound(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((HOST, port))
        return False
    except OSError:
        return True
    finally:
        s.close()


# ---------------------------------------------------------------------------- process figures


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def socket_table() -> dict[str, tuple[str, int, str]]:
    """inode -> (protocol, local port, state) for every TCP and UDP socket of the namespace."""
    table: dict[str, tuple[str, int, str]] = {}
    for proto in ("udp", "udp6", "tcp", "tcp6"):
        try:
            with open(f"/proc/net/{proto}") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if len(fields) < 10:
                        continue
                    port = int(fields[1].rpartition(":")[2], 16)
                    table[fields[9]] = (proto[:3], port, fields[3])
        except OSError:
            pass
    return table


class FdCount:
    """The server's open fds, split into those that come and go with clients and the rest.

    relay:   UDP sockets bound to a port of the relay range, other than the UDP and DTLS listeners
             (one per allocation or EVEN-PORT reservation)
    clients: accepted TCP/TLS connections (local port = the TCP or TLS listener, not listening)
    admin:   accepted admin HTTP connections (the scrapes)
    base:    everything else: listeners, epoll/event/timer fds, files, pipes. This is what must
             not grow: it does not depend on how many clients there are at the moment.
    """

    def __init__(self, total: int, relay: int, clients: int, admin: int) -> None:
        self.total, self.relay, self.clients, self.admin = total, relay, clients, admin
        self.base = total - relay - clients - admin


def count_fds(server: Server) -> FdCount:
    # A socket opened between reading the fd list and the tables would count as base for one
    # sample (and the TLS file check opens files for a moment): take five samples and keep the one with the smallest base.
    best = None
    for i in range(5):
        if i:
            time.sleep(0.02)
        links = []
        for fd in os.listdir(f"/proc/{server.pid}/fd"):
            try:
                links.append(os.readlink(f"/proc/{server.pid}/fd/{fd}"))
            except OSError:
                pass  # closed meanwhile
        table = socket_table()
        relay = clients = admin = 0
        for link in links:
            m = re.fullmatch(r"socket:\[(\d+)\]", link)
            if not m or m.group(1) not in table:
                continue
            proto, port, state = table[m.group(1)]
            if proto == "udp" and RELAY_LOW <= port <= RELAY_HIGH and port not in server.udp_listen_ports:
                relay += 1
            elif proto == "tcp" and state != "0A":  # 0A: LISTEN
                if port in (server.tcp_port, server.tls_port):
                    clients += 1
                elif port == server.admin_port:
                    admin += 1
        c = FdCount(len(links), relay, clients, admin)
        if best is None or c.base < best.base:
            best = c
    return best


METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def parse_metrics(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = METRIC_LINE.match(line.strip())
        if m:
            try:
                values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
            except ValueError:
                pass
    return values


def metric_sum(values: dict[str, float], name: str) -> float:
    return sum(v for k, v in values.items() if k == name or k.startswith(name + "{"))


# ------------------------------------------------------------------------------------- loads


def udp_generator(server: Server, index: int) -> None:
    """Paced SRTP calls over UDP, one traverse-load run after another; runs are staggered between
    generators so calls start and end all the time. Odd generators use the static user, even
    ones REST credentials (one username per client)."""
    low, high = CALL_SECONDS
    if STOP_LOAD.wait(index * (low + high) / 2 / max(1, UDP_GENERATORS)):
        return
    run = 0
    while not STOP_LOAD.is_set() and server.alive():
        run += 1
        duration = round(random.uniform(low, high), 1)
        name = f"udp-g{index}-r{run}"
        json_path = os.path.join(OUT, name + ".json")
        out_path = os.path.join(OUT, name + ".txt")
        credentials = ["--user", f"{USER[0]}:{USER[1]}"] if index % 2 == 0 else ["--secret", SECRET, "--user-id", f"g{index}"]
        argv = [LOADGEN, f"turn:{HOST}:{server.udp_port}?transport=udp", *credentials,
                "--mode", "paced", "--calls", str(UDP_CALLS), "--duration", str(duration),
                "--video-kbps", str(VIDEO_KBPS), "--drain", "1", "--json", json_path, "--strict"]
        with STATS.lock:
            STATS.running["udp"] += 1
        try:
            code = run_tracked(argv, out_path, timeout=duration + 120)
        finally:
            with STATS.lock:
                STATS.running["udp"] -= 1
        record_udp_run(name, code, json_path, out_path)


def record_udp_run(name: str, code: int, json_path: str, out_path: str) -> None:
    try:
        with open(json_path) as f:
            r = json.load(f)
    except (OSError, ValueError):
        r = None
    clean = False
    with STATS.lock:
        if r is None:
            STATS.failures.append(f"{name}: exit {code}, no report: {tail(out_path)}")
        else:
            STATS.udp_runs += 1
            STATS.udp_calls += r["calls"]
            STATS.udp_sent += r["sent"]
            STATS.udp_received += r["received"]
            STATS.udp_lost += r["lost"]
            STATS.udp_auth_failures += r["authFailures"]
            STATS.udp_misdelivered += r["malformed"]
            STATS.udp_generator_drops += r["generatorSocketDrops"]
            STATS.udp_stale_nonces += r["control"]["staleNonces"]
            bad = r["lost"] or r["authFailures"] or r["malformed"]
            if bad:
                STATS.losses.append(
                    f"{name}: lost {r['lost']} of {r['sent']}, SRTP auth failures {r['authFailures']}, "
                    f"misdelivered {r['malformed']}, generator socket drops {r['generatorSocketDrops']}")
            if r["control"]["failures"]:
                STATS.failures.append(f"{name}: {r['control']['failures']} TURN requests failed for good")
            if code not in (0, 1) or (code == 1 and not bad):
                STATS.failures.append(f"{name}: exit {code}: {tail(out_path)}")
            clean = code == 0 and not bad and not r["control"]["failures"]
    if clean and not KEEP_LOGS:
        for p in (json_path, out_path):
            try:
                os.remove(p)
            except OSError:
                pass


UCLIENT_TOTALS = re.compile(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$", re.M)
UCLIENT_LOST = re.compile(r"Total lost packets (\d+) \(")
# Variants cycled per run: channels, Send indications, RTP/RTCP allocation pairs (EVEN-PORT).
STREAM_VARIANTS = [["-c"], ["-c", "-s"], []]


def stream_churn(server: Server, transport: str, peer_port: int) -> None:
    """turnutils_uclient over TCP (-t) or TLS (-t -S), short paced runs one after another, to the
    turnutils_peer echo peers. TCP uses the static user, TLS REST credentials (-W)."""
    if STOP_LOAD.wait(3 if transport == "tcp" else 7):
        return
    run = 0
    while not STOP_LOAD.is_set() and server.alive():
        variant = STREAM_VARIANTS[run % len(STREAM_VARIANTS)]
        run += 1
        name = f"{transport}-r{run}"
        out_path = os.path.join(OUT, name + ".txt")
        if transport == "tcp":
            argv = ["turnutils_uclient", "-t", "-p", str(server.tcp_port), "-u", USER[0], "-w", USER[1]]
        else:
            argv = ["turnutils_uclient", "-t", "-S", "-p", str(server.tls_port), "-u", "tls-churn", "-W", SECRET]
        argv += [*variant, "-e", HOST, "-r", str(peer_port), "-m", str(STREAM_SESSIONS), "-l", "170",
                 "-n", str(STREAM_MESSAGES), HOST]
        with STATS.lock:
            STATS.running[transport] += 1
        try:
            code = run_tracked(argv, out_path, timeout=STREAM_MESSAGES * 0.02 * 3 + 60)
        finally:
            with STATS.lock:
                STATS.running[transport] -= 1
        record_stream_run(name, transport, code, out_path)
        STOP_LOAD.wait(random.uniform(0.5, 2.0))


def record_stream_run(name: str, transport: str, code: int, out_path: str) -> None:
    try:
        with open(out_path, errors="replace") as f:
            text = f.read()
    except OSError:
        text = ""
    totals = UCLIENT_TOTALS.findall(text)
    lost = UCLIENT_LOST.findall(text)
    clean = False
    with STATS.lock:
        if code != 0 or not totals or not lost:
            STATS.failures.append(f"{name}: exit {code}, {'no final statistics' if not totals else 'totals ' + str(totals[-1])}: {tail(out_path)}")
        else:
            sent, received = map(int, totals[-1])
            lost_n = int(lost[-1])
            missing = max(lost_n, sent - received)
            STATS.stream_runs[transport] += 1
            STATS.stream_sessions[transport] += STREAM_SESSIONS
            STATS.stream_sent += sent
            STATS.stream_received += received
            STATS.stream_lost += missing
            if missing or sent == 0:
                STATS.losses.append(f"{name}: sent {sent}, received {received}, uclient's lost figure {lost_n}")
            else:
                clean = True
    if clean and not KEEP_LOGS:
        try:
            os.remove(out_path)
        except OSError:
            pass


def tail(path: str, n: int = 300) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:].replace("\n", " | ")
    except OSError:
        return "(no output)"


# -------------------------------------------------------------------------- malformed trickle

MAGIC = 0x2112A442


def stun(msg_type: int, body: bytes = b"", length: int | None = None, magic: int = MAGIC) -> bytes:
    return struct.pack("!HHI", msg_type, len(body) if length is None else length, magic) + os.urandom(12) + body


def attr(kind: int, value: bytes, length: int | None = None) -> bytes:
    pad = b"\0" * (-len(value) % 4)
    return struct.pack("!HH", kind, len(value) if length is None else length) + value + pad


def xor_peer(port: int) -> bytes:
    return attr(0x0012, struct.pack("!BBH4s", 0, 1, port ^ (MAGIC >> 16),
                                    struct.pack("!I", 0x7F000001 ^ MAGIC)))


def garbage() -> bytes:
    """One malformed datagram: random bytes, truncated or inconsistent STUN, bad ChannelData, or a
    well-formed message the server must drop (no allocation, unbound channel, a response)."""
    kind = random.randrange(12)
    if kind == 0:
        return os.urandom(random.randint(1, 300))
    if kind == 1:  # truncated STUN header
        return stun(0x0001)[: random.randint(1, 19)]
    if kind == 2:  # length field past the end
        return stun(0x0003, attr(0x0019, b"\x11\0\0\0"), length=200)
    if kind == 3:  # length not a multiple of 4
        return stun(0x0001, b"\0\0\0", length=3)
    if kind == 4:  # wrong magic cookie
        return stun(0x0001, magic=0xDEADBEEF)
    if kind == 5:  # attribute overrunning the message
        return stun(0x0003, attr(0x0006, b"soak", length=400))
    if kind == 6:  # bad FINGERPRINT
        return stun(0x0001, attr(0x8028, struct.pack("!I", zlib.crc32(b"x"))))
    if kind == 7:  # ChannelData on a channel nobody bound
        payload = os.urandom(random.randint(0, 200))
        return struct.pack("!HH", random.randint(0x4000, 0x4FFF), len(payload)) + payload
    if kind == 8:  # ChannelData whose length runs past the datagram
        return struct.pack("!HH", random.randint(0x4000, 0x7FFF), 1000) + os.urandom(20)
    if kind == 9:  # Send indication without an allocation
        return stun(0x0016, xor_peer(9) + attr(0x0013, os.urandom(40)))
    if kind == 10:  # a success response sent to the server
        return stun(0x0101, attr(0x0020, os.urandom(8)))
    # a request with an unknown comprehension-required attribute (answered 420) and junk after it
    return stun(0x0001, attr(0x0031, os.urandom(4))) + os.urandom(random.randint(0, 7))


def trickle(server: Server) -> None:
    """A few malformed datagrams per second to the UDP listener (every tenth to the DTLS one), and
    every 2 s a stream connection that sends garbage: two of three over TCP, one over TLS."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    interval = 1.0 / TRICKLE_PER_SECOND if TRICKLE_PER_SECOND > 0 else None
    tick = streams = 0
    next_stream = time.monotonic() + 2
    try:
        while not STOP_ALL.is_set():
            if interval is None:
                STOP_ALL.wait(1)
                continue
            tick += 1
            port = server.dtls_port if server.dtls_port and tick % 10 == 0 else server.udp_port
            try:
                sock.sendto(garbage(), (HOST, port))
                with STATS.lock:
                    STATS.trickle["udp"] += 1
            except OSError:
                pass
            try:  # discard answers (420, 401 ...)
                while True:
                    sock.recv(2048)
            except (BlockingIOError, OSError):
                pass
            now = time.monotonic()
            if now >= next_stream:
                next_stream = now + 2
                streams += 1
                stream_garbage(server, tls=streams % 3 == 0)
            STOP_ALL.wait(interval)
    finally:
        sock.close()


_tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
_tls_context.check_hostname = False
_tls_context.verify_mode = ssl.CERT_NONE
_tls_context.set_alpn_protocols(["stun.turn"])


def stream_garbage(server: Server, tls: bool) -> None:
    try:
        raw = socket.create_connection((HOST, server.tls_port if tls else server.tcp_port), timeout=3)
    except OSError:
        return
    try:
        if tls and random.random() < 0.5:
            raw.sendall(b"\x16\x03\x01" + os.urandom(random.randint(1, 200)))  # not a TLS handshake
            with STATS.lock:
                STATS.trickle["tls"] += 1
        elif tls:
            s = _tls_context.wrap_socket(raw, server_hostname="localhost")
            raw = s
            with STATS.lock:
                STATS.trickle["tls"] += 1
                STATS.trickle["tls_handshakes"] += 1
            s.sendall(b"".join(garbage() for _ in range(random.randint(1, 3))))
        else:
            raw.sendall(b"".join(garbage() for _ in range(random.randint(1, 3))))
            with STATS.lock:
                STATS.trickle["tcp"] += 1
        if random.random() < 0.5:
            try:  # half-close and read what comes back until the server closes
                raw.settimeout(2)
                if not tls:
                    raw.shutdown(socket.SHUT_WR)
                while raw.recv(4096):
                    pass
            except (OSError, ssl.SSLError):
                pass
    except (OSError, ssl.SSLError):
        pass
    finally:
        try:
            raw.close()
        except OSError:
            pass


# -------------------------------------------------------------------------------- HUP, scrape

LATEST = {"metrics": {}, "time": 0.0}


def hupper(server: Server) -> None:
    """SIGHUP every HUP_SECONDS, half a period out of phase with the per-minute samples."""
    next_hup = HUP_SECONDS / 2
    while not STOP_LOAD.wait(max(0.0, next_hup - elapsed())):
        if not server.alive():
            return
        server.reload()
        with STATS.lock:
            STATS.hups += 1
        next_hup += HUP_SECONDS


def scraper(server: Server) -> None:
    next_scrape = elapsed()
    while not STOP_ALL.is_set():
        try:
            status, body = server.http("/metrics")
            ok = status == 200 and "traverse_allocations_active" in body
            if ok:
                LATEST["metrics"] = parse_metrics(body)
                LATEST["time"] = elapsed()
            error = None if ok else f"HTTP {status}"
        except (OSError, http.client.HTTPException) as e:
            ok, error = False, f"{type(e).__name__}: {e}"
        with STATS.lock:
            if ok:
                STATS.scrapes_ok += 1
            else:
                STATS.scrapes_failed += 1
                if len(STATS.scrape_errors) < 10:
                    STATS.scrape_errors.append(f"{elapsed():.0f}s: {error}")
        next_scrape += SCRAPE_SECONDS
        STOP_ALL.wait(max(0.0, next_scrape - elapsed()))


# ------------------------------------------------------------------------------------ samples


class Sample:
    def __init__(self, minute: int | str, server: Server, last_cpu: float, last_time: float) -> None:
        self.minute = minute
        self.time = elapsed()
        self.rss_kib = rss_kib(server.pid)
        self.fds = count_fds(server)
        self.cpu = cpu_seconds(server.pid)
        self.cpu_pct = 100 * (self.cpu - last_cpu) / max(1e-9, self.time - last_time)
        try:
            status, body = server.http("/load")
            self.allocations = int(json.loads(body)["allocations"]) if status == 200 else -1
        except (OSError, ValueError, KeyError, http.client.HTTPException):
            self.allocations = -1
        m = LATEST["metrics"]
        self.connections = int(m.get("traverse_connections_open", -1))
        with STATS.lock:
            self.calls = STATS.udp_calls
            self.sessions = STATS.stream_sessions["tcp"] + STATS.stream_sessions["tls"]
            self.lost = STATS.lost_so_far()
            self.running = dict(STATS.running)
            self.hups = STATS.hups

    HEADER = (f"{'minute':>6} {'rss MB':>8} {'fds':>5} {'base':>5} {'relay':>5} {'conns':>5} "
              f"{'allocs':>6} {'calls':>6} {'sess':>5} {'lost':>5} {'cpu %':>6} {'udp/tcp/tls':>11} {'hups':>4}")

    def line(self) -> str:
        running = f"{self.running['udp']}/{self.running['tcp']}/{self.running['tls']}"
        return (f"{self.minute!s:>6} {self.rss_kib / 1024:8.1f} {self.fds.total:5d} {self.fds.base:5d} "
                f"{self.fds.relay:5d} {self.fds.clients:5d} {self.allocations:6d} {self.calls:6d} "
                f"{self.sessions:5d} {self.lost:5d} {self.cpu_pct:6.1f} {running:>11} {self.hups:4d}")


# --------------------------------------------------------------------------------------- main


def main() -> int:
    log(f"output in {OUT}; {MINUTES} min, warm-up {WARMUP} min; traverse {TRAVERSE}; traverse-load {LOADGEN}")
    log(f"load: {UDP_GENERATORS} UDP generators x {UDP_CALLS} paced SRTP calls of {CALL_SECONDS[0]:g}-{CALL_SECONDS[1]:g} s"
        f"{f' + {VIDEO_KBPS} kbit/s video' if VIDEO_KBPS else ' (audio)'}; uclient TCP and TLS, {STREAM_SESSIONS} sessions x "
        f"{STREAM_MESSAGES} messages per run; SIGHUP every {HUP_SECONDS:g} s; {TRICKLE_PER_SECOND:g} malformed datagrams/s; "
        f"/metrics every {SCRAPE_SECONDS:g} s")
    server = Server()
    log(f"traverse pid {server.pid}: udp {server.udp_port}, tcp {server.tcp_port}, tls {server.tls_port}, "
        f"admin {server.admin_port}")

    peer_port = free_udp_port_pair()
    for p in (peer_port, peer_port + 1):
        spawn(["turnutils_peer", "-L", HOST, "-p", str(p)], os.path.join(OUT, f"peer-{p}.log"))
    deadline = time.monotonic() + 10
    while not (udp_bound(peer_port) and udp_bound(peer_port + 1)):
        if time.monotonic() > deadline:
            raise RuntimeError("turnutils_peer did not bind")
        time.sleep(0.1)

    background = [threading.Thread(target=scraper, args=(server,), daemon=True),
                  threading.Thread(target=trickle, args=(server,), daemon=True),
                  threading.Thread(target=hupper, args=(server,), daemon=True)]
    loads = [threading.Thread(target=udp_generator, args=(server, i), daemon=True) for i in range(UDP_GENERATORS)]
    loads += [threading.Thread(target=stream_churn, args=(server, t, peer_port), daemon=True) for t in ("tcp", "tls")]
    for t in background + loads:
        t.start()

    print(Sample.HEADER, flush=True)
    samples: list[Sample] = []
    last_cpu, last_time = cpu_seconds(server.pid), elapsed()
    server_died = False
    for minute in range(1, MINUTES + 1):
        while elapsed() < minute * 60:
            if not server.alive():
                break
            time.sleep(min(1.0, max(0.01, minute * 60 - elapsed())))
        if not server.alive():
            server_died = True
            log(f"traverse exited with status {server.proc.returncode}: {server.log_tail()}")
            break
        s = Sample(minute, server, last_cpu, last_time)
        last_cpu, last_time = s.cpu, s.time
        samples.append(s)
        print(s.line(), flush=True)

    # End: no new runs; the runs under way finish (they deallocate or close their connections).
    STOP_LOAD.set()
    log("load stops: waiting for the runs under way to finish")
    for t in loads:
        t.join()
    STOP_ALL.set()
    for t in background:
        t.join(timeout=10)

    # Quiesce: every allocation, connection and relay socket must go away.
    idle = None
    if not server_died and server.alive():
        log(f"waiting up to {QUIESCE_SECONDS} s for allocations, connections and relay sockets to reach 0")
        quiesce_deadline = time.monotonic() + QUIESCE_SECONDS
        while True:
            idle = Sample("idle", server, last_cpu, last_time)
            if (idle.allocations == 0 and idle.fds.relay == 0 and idle.fds.clients == 0) \
                    or time.monotonic() > quiesce_deadline or not server.alive():
                break
            time.sleep(2)
        print(idle.line(), flush=True)
        try:
            _, body = server.http("/metrics")
            final_metrics = parse_metrics(body)
        except (OSError, http.client.HTTPException):
            final_metrics = LATEST["metrics"]
        server_cpu = cpu_seconds(server.pid)
    else:
        server_died = True
        final_metrics = LATEST["metrics"]
        server_cpu = float("nan")

    return verdict(server, samples, idle, final_metrics, server_died, server_cpu)


def verdict(server: Server, samples: list[Sample], idle: Sample | None, metrics: dict[str, float],
            server_died: bool, server_cpu: float) -> int:
    problems: list[str] = []
    st = STATS
    print()
    print(f"UDP:     {st.udp_runs} traverse-load runs, {st.udp_calls} calls, {st.udp_sent} SRTP packets sent, "
          f"{st.udp_received} received, lost {st.udp_lost}, SRTP auth failures {st.udp_auth_failures}, "
          f"misdelivered {st.udp_misdelivered}, generator socket drops {st.udp_generator_drops}, "
          f"stale nonces handled {st.udp_stale_nonces}")
    print(f"TCP/TLS: {st.stream_runs['tcp']}/{st.stream_runs['tls']} uclient runs, "
          f"{st.stream_sessions['tcp']}/{st.stream_sessions['tls']} sessions, {st.stream_sent} messages sent, "
          f"{st.stream_received} echoed back, lost {st.stream_lost}")
    print(f"other:   {st.hups} SIGHUPs, {st.scrapes_ok} scrapes OK, {st.scrapes_failed} failed; malformed trickle: "
          f"{st.trickle['udp']} datagrams, {st.trickle['tcp']} TCP and {st.trickle['tls']} TLS connections "
          f"({st.trickle['tls_handshakes']} completed handshakes)")
    reloads_ok = metrics.get('traverse_config_reloads_total{result="ok"}', -1)
    reloads_refused = metrics.get('traverse_config_reloads_total{result="refused"}', -1)
    drops = {k.split('"')[1]: int(v) for k, v in metrics.items() if k.startswith("traverse_dropped_total{") and v}
    closes = {k.split('"')[1]: int(v) for k, v in metrics.items()
              if k.startswith("traverse_connections_closed_total{") and v}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    wall = elapsed()
    print(f"CPU:     server {server_cpu:.1f} s ({100 * server_cpu / wall:.0f} % of one core over {wall:.0f} s); "
          f"load processes (traverse-load, uclient) {children.ru_utime + children.ru_stime:.1f} s; "
          f"this script {me.ru_utime + me.ru_stime:.1f} s")
    print(f"server:  reloads ok {reloads_ok:.0f}, refused {reloads_refused:.0f}; "
          f"allocations created {metric_sum(metrics, 'traverse_allocations_created_total'):.0f}; "
          f"kernel socket drops {metrics.get('traverse_kernel_socket_drops_total', -1):.0f}; "
          f"dropped {drops}; connections closed {closes}")
    errors = server_log_summary(server)
    if errors:
        print("server log (notice and above), by message:")
        for message, count in errors:
            print(f"  {count:6d}  {message}")

    if server_died:
        problems.append(f"the server exited (status {server.proc.returncode}): {server.log_tail()}")
    by_minute = {s.minute: s for s in samples}
    base, end = by_minute.get(WARMUP), by_minute.get(MINUTES)
    if base and end:
        growth = 100 * (end.rss_kib - base.rss_kib) / base.rss_kib
        limit = base.rss_kib * (1 + RSS_TOLERANCE / 100)
        print(f"RSS:     minute {WARMUP} {base.rss_kib / 1024:.1f} MB, minute {MINUTES} {end.rss_kib / 1024:.1f} MB "
              f"({growth:+.1f} %, limit +{RSS_TOLERANCE:g} %)")
        if end.rss_kib > limit:
            problems.append(f"RSS grew {growth:+.1f} % from minute {WARMUP} to minute {MINUTES} (limit {RSS_TOLERANCE:g} %)")
        idle_base = idle.fds.base if idle else None
        print(f"fds:     base (fds not tied to a client of the moment) minute {WARMUP} {base.fds.base}, "
              f"minute {MINUTES} {end.fds.base}" + (f", after the load {idle_base} (total {idle.fds.total})" if idle else ""))
        if end.fds.base > base.fds.base:
            problems.append(f"base fds grew from {base.fds.base} (minute {WARMUP}) to {end.fds.base} (minute {MINUTES})")
        if idle and idle.fds.base > base.fds.base:
            problems.append(f"fds after the load ({idle.fds.base}) exceed the base at minute {WARMUP} ({base.fds.base})")
    elif not server_died:
        problems.append("missing the warm-up or the final sample")
    if idle:
        if idle.allocations != 0 or idle.fds.relay != 0 or idle.fds.clients != 0:
            problems.append(f"{QUIESCE_SECONDS} s after the load: {idle.allocations} allocations, {idle.fds.relay} relay "
                            f"sockets, {idle.fds.clients} client connections still open (expected 0)")
    if st.lost_so_far():
        problems.append(f"packets lost: UDP {st.udp_lost} (+{st.udp_auth_failures} SRTP auth failures, "
                        f"{st.udp_misdelivered} misdelivered), TCP/TLS {st.stream_lost}")
    for line in st.losses[:20]:
        print(f"  loss: {line}")
    if st.failures:
        problems.append(f"{len(st.failures)} load runs failed")
        for line in st.failures[:20]:
            print(f"  failed: {line}")
    if st.scrapes_failed:
        problems.append(f"{st.scrapes_failed} scrapes of /metrics failed: {st.scrape_errors}")
    if st.udp_runs == 0 or st.stream_runs["tcp"] == 0 or st.stream_runs["tls"] == 0:
        problems.append("a load never completed a run (UDP, TCP or TLS)")
    if reloads_refused > 0:
        problems.append(f"{reloads_refused:.0f} reloads refused")
    if reloads_ok < st.hups:
        problems.append(f"{st.hups} SIGHUPs sent but {reloads_ok:.0f} reloads counted")

    print()
    if problems:
        print("SOAK FAILED:")
        for p in problems:
            print(f"  - {p}")
        print(f"logs: {OUT}")
        return 1
    print(f"SOAK PASSED ({MINUTES} min; logs in {OUT})")
    return 0


LOG_MESSAGE = re.compile(r'level=(notice|warning|error|critical)\b.*?msg=("(?:[^"\\]|\\.)*"|\S+)(?:.*?\breason=("(?:[^"\\]|\\.)*"|\S+))?')


def server_log_summary(server: Server) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    try:
        with open(server.log_path, errors="replace") as f:
            for line in f:
                if " level=" in line and not LOG_MESSAGE.search(line):
                    continue  # info and debug
                m = LOG_MESSAGE.search(line)
                if m:
                    key = f"{m.group(1)} {m.group(2)}" + (f" reason={m.group(3)}" if m.group(3) else "")
                else:
                    key = line.strip()[:160]  # not logfmt: a crash message, a trap
                if key:
                    counts[key] = counts.get(key, 0) + 1
    except OSError:
        pass
    return sorted(counts.items(), key=lambda kv: -kv[1])


if __name__ == "__main__":
    status = 1
    try:
        status = main()
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
        if status >= 128:
            print(f"soak: interrupted; stopping everything it started (logs in {OUT})", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 (report, then clean up)
        print(f"soak: error: {type(e).__name__}: {e}", file=sys.stderr)
        status = 1
    finally:
        STOP_LOAD.set()
        STOP_ALL.set()
        stop_all()
    sys.exit(status)
