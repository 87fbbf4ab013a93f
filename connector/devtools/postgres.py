"""A private, throwaway PostgreSQL server for tests and benchmarks.

Runs Debian's ``postgres`` (``/usr/lib/postgresql/<version>/bin``) as a plain child
process on a free 127.0.0.1 port, with its cluster and socket in its own folder: never
the system service. ``initdb`` and ``postgres`` refuse to run as root, so a root caller
runs them as the ``postgres`` user (the folder is created for that user under the
system temp folder: pytest's own temp folders are private to root). Trust
authentication on loopback only; ``create_database`` makes a fresh, empty database.

``durable=False`` (the tests) turns fsync off: a test server's data need not survive
a power cut. The benchmark keeps the defaults, as a real server would.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from connector.devtools.process import ChildServer
from connector.devtools.slapd import free_port
from connector.errors import ExitCode, MisyncError

INSTALL_HINT = "install Debian's postgresql (bash deploy/install.sh test does)"
SERVER_USER = "postgres"


class PostgresError(MisyncError):
    """The throwaway PostgreSQL could not be started or used."""

    exit_code = ExitCode.UNAVAILABLE


def postgres_bin() -> Path | None:
    """The newest installed ``/usr/lib/postgresql/<version>/bin`` with initdb, or None."""
    root = Path("/usr/lib/postgresql")
    found = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").exists() and p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
    )
    return found[-1] if found else None


class LocalPostgres(ChildServer):
    """``with LocalPostgres() as pg: pg.create_database("t1")`` -> a libpq URL."""

    def __init__(
        self,
        *,
        port: int | None = None,
        durable: bool = True,
        tls: tuple[Path, Path] | None = None,
        hba: tuple[str, ...] = (),
    ) -> None:
        """``tls``: (certificate, key) PEM files to serve TLS with; ``hba``: pg_hba.conf
        lines put before the default ``trust`` ones (e.g. a user that must log in with
        a password over TLS)."""
        bindir = postgres_bin()
        if bindir is None:
            raise PostgresError(f"PostgreSQL's initdb not found: {INSTALL_HINT}")
        self.bin = bindir
        self.port = port or free_port()
        self.durable = durable
        self.tls = tls
        self.hba = hba
        self.superuser = "postgres"
        self._as: tuple[int, int] | None = None  # (uid, gid) to run the server as
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgresError(
                    f"running as root and there is no {SERVER_USER!r} user: {INSTALL_HINT}"
                ) from None
            self._as = (pw.pw_uid, pw.pw_gid)
        self.dir = Path(tempfile.mkdtemp(prefix="misync-pg-"))
        if self._as is not None:
            os.chown(self.dir, *self._as)
        self.data = self.dir / "data"
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres", user: str | None = None) -> str:
        return f"postgresql://{user or self.superuser}@127.0.0.1:{self.port}/{database}"

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[bytes]:
        kwargs: dict[str, object] = {}
        if self._as is not None:
            kwargs = {"user": self._as[0], "group": self._as[1], "extra_groups": []}
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            argv, capture_output=True, check=False, cwd=self.dir, **kwargs
        )

    def start(self) -> LocalPostgres:
        if not (self.data / "PG_VERSION").exists():
            res = self._run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data),
                    "-A",
                    "trust",
                    "-U",
                    self.superuser,
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ]
            )
            if res.returncode != 0:
                raise PostgresError(f"initdb failed: {res.stderr.decode(errors='replace')}")
            if self.hba:
                conf = self.data / "pg_hba.conf"
                conf.write_text("\n".join(self.hba) + "\n" + conf.read_text())
        argv = [
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.dir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
        ]
        if not self.durable:
            argv += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        if self.tls is not None:
            cert, key = self.dir / "server.crt", self.dir / "server.key"
            shutil.copyfile(self.tls[0], cert)
            shutil.copyfile(self.tls[1], key)
            key.chmod(0o600)  # postgres refuses a key others can read
            if self._as is not None:
                for f in (cert, key):
                    os.chown(f, *self._as)
            argv += ["-c", "ssl=on", "-c", f"ssl_cert_file={cert}", "-c", f"ssl_key_file={key}"]
        log = (self.dir / "postgres.log").open("ab")
        kwargs: dict[str, object] = {}
        if self._as is not None:
            kwargs = {"user": self._as[0], "group": self._as[1], "extra_groups": []}
        self._proc = subprocess.Popen(  # type: ignore[call-overload]
            argv, stdout=log, stderr=log, cwd=self.dir, **kwargs
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise PostgresError(
                    f"postgres exited with {self._proc.returncode}: {self._log_tail()}"
                )
            probe = self._run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"]
            )
            if probe.returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise PostgresError(f"postgres did not answer on port {self.port}: {self._log_tail()}")

    def psql(self, sql: str, database: str = "postgres") -> str:
        res = self._run(
            [
                str(self.bin / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.superuser,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ]
        )
        if res.returncode != 0:
            raise PostgresError(f"psql failed: {res.stderr.decode(errors='replace')}")
        return res.stdout.decode()

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        self.psql(f'create database "{name}"')
        return self.url(name)

    def crash(self) -> None:
        """Stop at once, as a power cut would (SIGQUIT: immediate shutdown)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGQUIT)
            self._proc.wait(timeout=30)
        self._proc = None

    def stop(self) -> None:
        """Fast shutdown (SIGINT: disconnect the clients, then stop)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            return (self.dir / "postgres.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def __exit__(self, *exc: object) -> None:
        self.remove()


def main(argv: list[str] | None = None) -> int:
    """``python -m connector.devtools.postgres``: run one until interrupted."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m connector.devtools.postgres",
        description="Run a throwaway private PostgreSQL on a free loopback port until Ctrl-C.",
    )
    parser.add_argument("--database", default="misync", help="create this database")
    args = parser.parse_args(argv)
    with LocalPostgres() as pg:
        print(pg.create_database(args.database), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
