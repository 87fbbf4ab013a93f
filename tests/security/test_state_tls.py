"""The PostgreSQL state over TLS with a password from a file, as an operator sets it up
for a database on another host: a private PostgreSQL serving a certificate from a CA
made in the test, a role that must log in with a password over TLS. The right CA and
password work; another CA, a name the certificate does not carry, or no password each
fail with the database named and libpq's reason, as an operating condition (exit 3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.devtools.postgres import INSTALL_HINT, LocalPostgres, postgres_bin
from connector.settings import StateSettings
from connector.state import StateUnavailableError, open_store
from tests.security.certs import TestCA

pytestmark = pytest.mark.postgresql


@pytest.fixture(scope="module")
def tls_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPostgres, Path]]:
    if postgres_bin() is None:
        pytest.skip(f"PostgreSQL is not installed: {INSTALL_HINT}")
    folder = tmp_path_factory.mktemp("pgtls")
    ca = TestCA(folder / "ca")
    server = ca.issue("db", ["db.localhost", "127.0.0.1"])
    with LocalPostgres(
        durable=False,
        tls=(server.cert, server.key),
        hba=("hostssl all misync_tls 127.0.0.1/32 scram-sha-256", "host all misync_tls all reject"),
    ) as pg:
        pg.create_database("tls")
        pg.psql("create role misync_tls login password 'tls-s3cret'")
        pg.psql("grant all on schema public to misync_tls", "tls")
        yield pg, ca.ca_file


def _state(
    pg: LocalPostgres, tmp_path: Path, *, ca_file: Path | None, password: str | None, **kw: str
) -> StateSettings:
    secret = None
    if password is not None:
        secret = tmp_path / "pg-password"
        secret.write_text(password + "\n", encoding="utf-8")
        secret.chmod(0o600)
    return StateSettings(
        dir=tmp_path / "state",
        url=pg.url("tls", user="misync_tls"),
        password_file=secret,
        ca_file=ca_file,
        **kw,  # type: ignore[arg-type]
    )


def test_verify_full_with_the_ca_and_the_password_file(
    tls_postgres: tuple[LocalPostgres, Path], tmp_path: Path
) -> None:
    pg, ca = tls_postgres
    state = _state(pg, tmp_path, ca_file=ca, password="tls-s3cret", sslmode="verify-full")
    with open_store(state) as store:
        store.set_meta("k", "v")
        assert store.meta("k") == "v"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("another CA", "certificate verify failed"),
        ("name not in the certificate", "does not match host name"),
        ("no password", "password"),
        ("wrong password", "password authentication failed"),
        ("no TLS", "rejects connection"),
    ],
)
def test_refused_with_the_reason(
    tls_postgres: tuple[LocalPostgres, Path], tmp_path: Path, case: str, reason: str
) -> None:
    pg, ca = tls_postgres
    kw: dict[str, object] = {
        "ca_file": ca,
        "password": "tls-s3cret",
        "sslmode": "verify-full",
    }
    if case == "another CA":
        kw["ca_file"] = TestCA(tmp_path / "other", name="another CA").ca_file
    elif case == "name not in the certificate":
        pass  # below: the URL names localhost, the certificate db.localhost and 127.0.0.1
    elif case == "no password":
        kw["password"] = None
    elif case == "wrong password":
        kw["password"] = "guess"
    elif case == "no TLS":
        kw["sslmode"] = "disable"
    state = _state(pg, tmp_path, **kw)  # type: ignore[arg-type]
    if case == "name not in the certificate":
        state = state.model_copy(update={"url": state.url.replace("127.0.0.1", "localhost")})
    with pytest.raises(StateUnavailableError) as err:
        open_store(state).close()
    message = str(err.value)
    assert "cannot connect" in message
    assert reason in message, message
    assert "tls-s3cret" not in message
