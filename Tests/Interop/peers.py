"""Peers that stand on the far side of a relay in the interop tests."""

from __future__ import annotations

import socket
import threading


class UdpEcho:
    """A UDP echo peer on `host` (a thread): echoes every datagram and records its source."""

    def __init__(self, host: str = "127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()[:2]
        self.sources: list[tuple[str, int]] = []
        # The last datagrams echoed (a few, for tests that check what arrived).
        self.payloads: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def received(self) -> int:
        """Datagrams echoed so far."""
        return len(self.sources)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65535)
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            self.sources.append(source[:2])
            self.payloads = (self.payloads + [data])[-16:]
            self.sock.sendto(data, source)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
