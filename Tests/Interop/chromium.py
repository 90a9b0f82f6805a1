"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for the console tests.

One browser per `Chromium` object, with its own profile directory; one page target, driven
through a WebSocket (PyPI `websocket-client`). Only what the tests need: navigate, evaluate
JavaScript (awaiting promises), wait for a condition, click, type, screenshot.

The browser is kept off the network: every host name resolves to nothing (`--host-resolver-rules`),
background services are off, and the tests only ever point it at loopback IP literals.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

VIEWPORT = (1280, 800)


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class CDPError(Exception):
    pass


class Chromium:
    def __init__(self, workdir: Path, extra_args: list[str] | None = None, start_timeout: float = 30.0):
        import websocket  # PyPI websocket-client

        binary = chromium_binary()
        assert binary, "chromium is not installed (make interop-deps)"
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "chromium.log"
        argv = [
            binary,
            "--headless=new",
            "--no-sandbox",  # root, as in CI
            "--remote-debugging-port=0",
            f"--user-data-dir={workdir / 'profile'}",
            f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-domain-reliability",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-client-side-phishing-detection",
            "--no-pings",
            "--metrics-recording-only",
            "--safebrowsing-disable-auto-update",
            "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,"
            "CertificateTransparencyComponentUpdater,AutofillServerCommunication,InterestFeedContentSuggestions",
            # No name resolves: nothing leaves the machine even if something tried.
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1 , EXCLUDE [::1]",
            # WebRTC on loopback (Chromium ignores the loopback interface otherwise).
            "--allow-loopback-in-peer-connection",
            *(extra_args or []),
            "about:blank",
        ]
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        port = None
        deadline = time.monotonic() + start_timeout
        while port is None:
            if self.process.poll() is not None:
                raise CDPError(f"chromium exited with {self.process.returncode}:\n{self.output()[-3000:]}")
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", self.output())
            if m:
                port = int(m.group(1))
                break
            if time.monotonic() > deadline:
                self.close()
                raise CDPError(f"no DevTools port within {start_timeout}s:\n{self.output()[-3000:]}")
            time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            targets = json.load(r)
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False})

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def send(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            message = json.loads(self.ws.recv())
            if message.get("id") == my_id:
                if "error" in message:
                    raise CDPError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)
                del self.events[:-500]
            if time.monotonic() > deadline:
                raise CDPError(f"{method}: no answer within {timeout}s")

    def evaluate(self, expression: str, timeout: float = 30.0):
        """The value of a JavaScript expression (promises awaited), as JSON."""
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True},
                           timeout=timeout)
        if "exceptionDetails" in result:
            raise CDPError(f"{expression[:200]}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def navigate(self, url: str, timeout: float = 20.0) -> None:
        answer = self.send("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise CDPError(f"navigate {url}: {answer['errorText']}")
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'", timeout, f"load {url}")

    def wait_for(self, expression: str, timeout: float = 20.0, what: str | None = None):
        """Evaluates `expression` until it is truthy (errors, as during a navigation, count as no)."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = self.evaluate(expression)
                if last:
                    return last
            except CDPError as e:
                last = f"error: {e}"
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout}s: {what or expression} (last: {last!r})")
            time.sleep(0.2)

    def set_value(self, selector: str, value: str) -> None:
        self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                      f"e.value = {json.dumps(value)}; e.dispatchEvent(new Event('input', {{bubbles: true}})); }})()")

    def click(self, selector: str) -> None:
        found = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                              f"if (!e) return false; e.click(); return true; }})()")
        assert found, f"nothing matches {selector}"

    def submit(self, selector: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).requestSubmit()")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
