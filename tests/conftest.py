"""Shared fixtures: a real private slapd per test session, and a fresh branch per test;
a private PostgreSQL per session, and a fresh database per test that asks for one."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.devtools.postgres import LocalPostgres
from connector.devtools.slapd import LocalSlapd
from connector.settings import LdapSettings

_branch = itertools.count(1)
_database = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """One private PostgreSQL server per test session (Debian's binaries, as a plain
    child process on a free loopback port), stopped and removed at the end. Skipped only
    where the binaries are absent (`bash deploy/install.sh test` installs them); in CI
    (``CI`` set) their absence fails instead."""
    import os

    from connector.devtools.postgres import INSTALL_HINT, postgres_bin

    if postgres_bin() is None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not installed: {INSTALL_HINT}")
        pytest.skip(f"PostgreSQL is not installed: {INSTALL_HINT}")
    with LocalPostgres(durable=False) as server:
        yield server


@pytest.fixture
def pg_url(postgres: LocalPostgres) -> str:
    """A new, empty database on the session's PostgreSQL: its URL."""
    return postgres.create_database(f"t{next(_database)}")


#: Tests write their feeds a moment before they run: with the default settle window
#: every run would first wait for them to be 5 s old. The suite (and the daemons it
#: starts, which inherit the environment) reads them at once; the re-check after the
#: read still applies. The tests of the settle rule itself (tests/integration/
#: test_feed_settle.py) remove this and set the window they need.
SETTLE_ENV = "MISYNC_FEEDS__SETTLE_SECONDS"
os.environ.setdefault(SETTLE_ENV, "0")


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlapd]:
    with LocalSlapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@dataclass(frozen=True)
class LdapScope:
    """One test's private branch: ou=people (managed), ou=groups, ou=svc (outside scope)."""

    root_dn: str
    people_dn: str
    groups_dn: str
    outside_dn: str
    settings: LdapSettings


@pytest.fixture
def ldap_scope(slapd: LocalSlapd, tmp_path: Path) -> LdapScope:
    return ldap_scope_on(slapd, tmp_path)


def ldap_scope_on(slapd: LocalSlapd, tmp_path: Path) -> LdapScope:
    """A fresh branch on ``slapd`` (the session's, or a test's own server)."""
    root = f"ou=t{next(_branch)},{slapd.suffix}"
    people, groups, outside = f"ou=people,{root}", f"ou=groups,{root}", f"ou=svc,{root}"
    slapd.add_ldif(
        "\n".join(
            f"dn: {dn}\nobjectClass: organizationalUnit\nou: {dn.split(',')[0][3:]}\n"
            for dn in (root, people, groups, outside)
        )
        + f"\ndn: uid=svc-backup,{outside}\nobjectClass: inetOrgPerson\nuid: svc-backup\n"
        "cn: backup service\nsn: service\nemployeeNumber: SVC1\n"
    )
    secret = tmp_path / "ldap-password"
    secret.write_text(slapd.root_password + "\n", encoding="utf-8")
    secret.chmod(0o600)  # as an operator keeps it (config check warns otherwise)
    settings = LdapSettings(
        url=slapd.url,
        bind_dn=slapd.root_dn,
        password_file=secret,
        base_dn=people,
        group_base_dn=groups,
        scope="one",
        page_size=50,
    )
    return LdapScope(root, people, groups, outside, settings)


ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "config" / "demo"


def demo_seed_ldif(scope: LdapScope) -> str:
    """config/demo/seed.ldif rewritten for one test's branch (the fixture made the OUs)."""
    import re

    text = (DEMO / "seed.ldif").read_text(encoding="utf-8")
    text = text.replace("ou=people,dc=mis,dc=example", scope.people_dn)
    text = text.replace("ou=groups,dc=mis,dc=example", scope.groups_dn)
    text = text.replace("ou=services,dc=mis,dc=example", scope.outside_dn)
    blocks = [b for b in re.split(r"\n\s*\n", text) if b.strip()]
    return "\n\n".join(b for b in blocks if "objectClass: organizationalUnit" not in b) + "\n"


@dataclass
class SmtpCapture:
    """A real SMTP server (aiosmtpd) on a free loopback port; keeps every message."""

    host: str
    port: int
    messages: list[tuple[str, list[str], Any]]  # (envelope from, envelope to, parsed message)

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.messages) >= count, f"{len(self.messages)} of {count} messages arrived"


@pytest.fixture
def smtp_server() -> Iterator[SmtpCapture]:
    import email
    import email.policy
    import socket

    from aiosmtpd.controller import Controller

    capture = SmtpCapture("127.0.0.1", 0, [])

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
            capture.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        capture.port = s.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=capture.port)
    controller.start()
    try:
        yield capture
    finally:
        controller.stop()
