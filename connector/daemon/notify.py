"""The systemd notify protocol (sd_notify(3)) over ``$NOTIFY_SOCKET``, stdlib only.

``Type=notify`` units learn that the service is ready (``READY=1``), what it is doing
(``STATUS=...``), that it is alive (``WATCHDOG=1``, at least every ``WatchdogSec``) and
that it is stopping or reloading. Outside systemd (no ``$NOTIFY_SOCKET``) every call is
a no-op, so the daemon runs the same as a plain process.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping

import structlog


class SystemdNotifier:
    """Tells systemd the service's state (``sd_notify``); not the email notifications of
    ``connector.alerts.notify.RequesterNotifier``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        self._address = address
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._log = structlog.get_logger("misync.daemon")
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        ours = not pid or pid == str(os.getpid())
        #: how often systemd expects WATCHDOG=1, or None when no watchdog is set
        self.watchdog_seconds: float | None = (
            int(usec) / 1_000_000 if usec.isdigit() and int(usec) > 0 and ours else None
        )

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, **fields: str) -> None:
        """Send ``KEY=value`` lines, e.g. ``send(READY="1", STATUS="idle")``."""
        if not self._address:
            return
        message = "\n".join(f"{k}={v.replace(chr(10), ' ')}" for k, v in fields.items())
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    )
                    self._sock.setblocking(False)  # a full queue drops a message, never blocks
                self._sock.sendto(message.encode("utf-8"), self._address)
            except BlockingIOError:
                self._log.debug("notify.dropped", message=message[:40])
            except OSError as exc:  # systemd gone: never stop the daemon
                self._log.warning("notify.failed", error=str(exc))

    def ready(self, status: str) -> None:
        self.send(READY="1", STATUS=status, MAINPID=str(os.getpid()))

    def status(self, status: str) -> None:
        self.send(STATUS=status)

    def watchdog(self) -> None:
        self.send(WATCHDOG="1")

    def stopping(self, status: str) -> None:
        self.send(STOPPING="1", STATUS=status)

    def reloading(self) -> None:
        self.send(RELOADING="1")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
