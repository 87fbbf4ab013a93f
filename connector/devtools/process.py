"""The lifecycle shared by the throwaway servers: a child process we start and stop."""

from __future__ import annotations

import subprocess
from types import TracebackType
from typing import Self


class ChildServer:
    """A server run as our own child process (never a system service)."""

    _proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        """Terminate and reap the child; kill it if it does not stop within 10 s."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
