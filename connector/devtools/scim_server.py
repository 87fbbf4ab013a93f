"""A throwaway scim2-server over real HTTP on 127.0.0.1 (tests and the SCIM demo).

Runs the ``scim2-server`` command as a child process on a free port with a bearer
token. ``features`` can switch off PATCH, ETags or filtering in the announced
ServiceProviderConfig (to prove the PUT fallback). ``tls`` serves it over https (the
listening socket wrapped with the given certificate), for the transport tests.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx2

from connector.devtools.process import ChildServer
from connector.devtools.slapd import free_port
from connector.errors import ExitCode, MisyncError

SPC_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"


class ScimServerError(MisyncError):
    """The throwaway scim2-server could not be started or used."""

    exit_code = ExitCode.UNAVAILABLE


@dataclass(frozen=True)
class ScimTls:
    """PEM files for https: the server's certificate and key; with ``client_ca``,
    clients must present a certificate signed by it (mutual TLS)."""

    cert_file: Path
    key_file: Path
    client_ca: Path | None = None


class LocalScimServer(ChildServer):
    def __init__(
        self,
        directory: Path,
        *,
        patch: bool = True,
        etag: bool = True,
        filter: bool = True,
        tls: ScimTls | None = None,
        storm_control: Path | None = None,
    ) -> None:
        exe = shutil.which("scim2-server") or str(Path(sys.executable).with_name("scim2-server"))
        if not Path(exe).exists():
            raise ScimServerError(
                "scim2-server not found: pip install scim2-server (deploy/test.sh does)"
            )
        self._exe = exe
        self.dir = directory
        self.port = free_port()
        self.token = secrets.token_hex(16)  # hex: never starts with "-" on a command line
        self.tls = tls
        self.storm_control = storm_control  # see _Storm: faults on demand (chaos tests)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/v2"
        self._features = {"patch": patch, "etag": etag, "filter": filter}
        self._proc: subprocess.Popen[bytes] | None = None

    def _spc(self) -> Path:
        f = self._features
        body: dict[str, Any] = {
            "schemas": [SPC_SCHEMA],
            "patch": {"supported": f["patch"]},
            "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": f["filter"], "maxResults": 1000},
            "changePassword": {"supported": False},
            "sort": {"supported": False},
            "etag": {"supported": f["etag"]},
            "authenticationSchemes": [
                {"type": "oauthbearertoken", "name": "Bearer", "description": "static token"}
            ],
        }
        path = self.dir / "spc.json"
        path.write_text(json.dumps(body), encoding="utf-8")
        return path

    def start(self) -> LocalScimServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        log = (self.dir / "scim.log").open("ab")
        args = [
            self._exe,
            "--hostname",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--bearer-token",
            self.token,
        ]
        if not all(self._features.values()):
            args += ["--service-provider-config", str(self._spc())]
        if self.tls is not None or self.storm_control is not None:
            wrap = [sys.executable, "-m", "connector.devtools.scim_server"]
            if self.tls is not None:
                wrap += ["--tls-cert", str(self.tls.cert_file)]
                wrap += ["--tls-key", str(self.tls.key_file)]
                if self.tls.client_ca is not None:
                    wrap += ["--tls-client-ca", str(self.tls.client_ca)]
            if self.storm_control is not None:
                wrap += ["--storm-control", str(self.storm_control)]
            args = [*wrap, "--", *args[1:]]
        self._proc = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        headers = {"Authorization": f"Bearer {self.token}"}
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ScimServerError(
                    f"scim2-server exited: {(self.dir / 'scim.log').read_text()[-2000:]}"
                )
            try:
                if self.tls is not None:  # up when it completes a TLS handshake
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return self
                if (
                    httpx2.get(
                        f"{self.url}/ServiceProviderConfig", headers=headers, timeout=1
                    ).status_code
                    == HTTPStatus.OK
                ):
                    return self
            except (httpx2.HTTPError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise ScimServerError(f"scim2-server did not answer on {self.url}")

    def seed(self, users: list[dict[str, Any]], groups: list[dict[str, Any]]) -> dict[str, str]:
        """POST users, then groups (members named by userName). Returns userName -> id."""
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/scim+json"}
        ids: dict[str, str] = {}
        with httpx2.Client(headers=headers, timeout=10) as http:
            for user in users:
                resp = http.post(f"{self.url}/Users", json=user)
                if resp.status_code != HTTPStatus.CREATED:
                    raise ScimServerError(
                        f"seeding {user.get('userName')}: {resp.status_code} {resp.text}"
                    )
                ids[user["userName"]] = resp.json()["id"]
            for group in groups:
                body = {
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": group["displayName"],
                    "members": [{"value": ids[m], "type": "User"} for m in group["members"]],
                }
                resp = http.post(f"{self.url}/Groups", json=body)
                if resp.status_code != HTTPStatus.CREATED:
                    raise ScimServerError(
                        f"seeding group {group['displayName']}: {resp.status_code} {resp.text}"
                    )
        return ids


class _Storm:
    """WSGI middleware: while the JSON file ``control`` says so (``{"rate": 0.3, "kinds":
    ["429", "500", "slow"], "delay": 3, "seed": 1}``; ``{}`` or no file: calm), answer a
    share of the requests (never discovery) with 429 (``Retry-After: 0``) or 500 before
    handling them, or handle them and answer only after ``delay`` seconds ("slow": the
    write lands, the client times out)."""

    DISCOVERY = ("/ServiceProviderConfig", "/ResourceTypes", "/Schemas")

    def __init__(self, app: Any, control: Path) -> None:
        import random

        self._app, self._control = app, control
        self._random: random.Random | None = None
        self._seed: object = None
        self._lock = threading.Lock()

    def _draw(self) -> tuple[str, float]:
        import random

        try:
            spec = json.loads(self._control.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            spec = {}
        if not spec.get("rate"):
            return "", 0.0
        with self._lock:
            if self._random is None or self._seed != spec.get("seed"):
                self._seed = spec.get("seed")
                self._random = random.Random(str(self._seed))  # noqa: S311 (reproducible)
            if self._random.random() >= float(spec["rate"]):
                return "", 0.0
            return str(self._random.choice(spec.get("kinds", ["500"]))), float(spec.get("delay", 3))

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = str(environ.get("PATH_INFO", ""))
        kind, delay = ("", 0.0) if path.endswith(self.DISCOVERY) else self._draw()
        if kind in ("429", "500"):
            status = "429 Too Many Requests" if kind == "429" else "500 Internal Server Error"
            body = json.dumps(
                {
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                    "status": kind,
                    "detail": "injected storm",
                }
            ).encode()
            headers = [("Content-Type", "application/scim+json"), ("Retry-After", "0")]
            start_response(status, headers)
            return [body]
        result = list(self._app(environ, start_response))
        if kind == "slow":
            time.sleep(delay)
        return result


def main(argv: list[str] | None = None) -> int:
    """``python -m connector.devtools.scim_server [--tls-cert C --tls-key K]
    [--storm-control FILE] -- ARGS``: run the scim2-server command (ARGS as it takes
    them) on a TLS-wrapped socket, and/or with faults injected while FILE says so."""
    parser = argparse.ArgumentParser(prog="python -m connector.devtools.scim_server")
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--tls-client-ca", type=Path)
    parser.add_argument("--storm-control", type=Path)
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    context: ssl.SSLContext | None = None
    if args.tls_cert is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_client_ca is not None:
            context.load_verify_locations(args.tls_client_ca)
            context.verify_mode = ssl.CERT_REQUIRED

    from scim2_server.testserver import cli

    plain = getattr(cli, "make_server")  # noqa: B009 (not re-exported: mypy)

    def make_server(host: Any, port: Any, app: Any, **kw: Any) -> Any:
        if args.storm_control is not None:
            app = _Storm(app, args.storm_control)
        server = plain(host, port, app, **kw)
        if context is not None:
            server.socket = context.wrap_socket(server.socket, server_side=True)
        return server

    setattr(cli, "make_server", make_server)  # noqa: B010 (patch its server factory)
    sys.argv = ["scim2-server", *rest]
    cli.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
