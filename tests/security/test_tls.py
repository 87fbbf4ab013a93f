"""Transport security against real servers with a CA made in the test: slapd over
ldaps:// and StartTLS, scim2-server behind TLS. Certificates are verified by default,
the host name is checked, ``ca_file`` is honoured, and a failure names the URL and the
TLS reason."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from connector.devtools.scim_server import LocalScimServer, ScimTls
from connector.devtools.slapd import LocalSlapd, SlapdTls
from connector.mapping import load_mapping
from connector.settings import LdapSettings, ScimSettings
from connector.targets import TargetUnavailableError
from connector.targets.ldap import LdapTarget
from connector.targets.scim import ScimTarget
from tests.security.certs import TestCA

ROOT = Path(__file__).resolve().parents[2]
LDAP_MAPPING = load_mapping(ROOT / "mappings" / "openldap-ppolicy.toml")
SCIM_MAPPING = load_mapping(ROOT / "mappings" / "scim-core.toml")


@dataclass(frozen=True)
class Pki:
    ca: TestCA
    other_ca: TestCA  # a CA the servers do not use


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    return Pki(TestCA(base / "ca"), TestCA(base / "other", "another CA"))


@pytest.fixture(scope="module")
def tls_slapd(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlapd]:
    # The certificate names 127.0.0.1 only: connecting as "localhost" must fail the
    # host name check, although the same CA signed it.
    server = pki.ca.issue("slapd", ["127.0.0.1"])
    tls = SlapdTls(pki.ca.ca_file, server.cert, server.key)
    with LocalSlapd(tmp_path_factory.mktemp("tls-slapd"), tls=tls) as s:
        yield s


def ldap_settings(slapd: LocalSlapd, tmp_path: Path, **kw: object) -> LdapSettings:
    secret = tmp_path / "pw"
    secret.write_text(slapd.root_password, encoding="utf-8")
    base = LdapSettings(
        url=slapd.url,
        bind_dn=slapd.root_dn,
        password_file=secret,
        base_dn=slapd.suffix,
        scope="one",
    )
    return base.model_copy(update=kw)


@dataclass(frozen=True)
class LdapCase:
    ldaps: bool  # else StartTLS on ldap://
    host: str  # "127.0.0.1" (in the certificate) or "localhost" (not in it)
    ca: str  # "ours", "other" (a CA that did not sign it) or "system" (no ca_file)
    error: str | None  # a fragment of the TLS reason, None when the connection works


LDAP_CASES = {
    f"{'ldaps' if c.ldaps else 'starttls'}-{c.host}-{c.ca}": c
    for c in [
        LdapCase(True, "127.0.0.1", "ours", None),
        LdapCase(False, "127.0.0.1", "ours", None),
        LdapCase(True, "127.0.0.1", "system", "certificate verify failed"),
        LdapCase(False, "127.0.0.1", "system", "certificate verify failed"),
        LdapCase(True, "127.0.0.1", "other", "certificate verify failed"),
        LdapCase(False, "127.0.0.1", "other", "certificate verify failed"),
        LdapCase(True, "localhost", "ours", "localhost"),
        LdapCase(False, "localhost", "ours", "localhost"),
    ]
}


@pytest.mark.slapd
@pytest.mark.parametrize("case", LDAP_CASES.values(), ids=LDAP_CASES.keys())
def test_ldap_tls_is_verified_by_default(
    tls_slapd: LocalSlapd, pki: Pki, tmp_path: Path, case: LdapCase
) -> None:
    port = tls_slapd.ldaps_port if case.ldaps else tls_slapd.port
    url = f"{'ldaps' if case.ldaps else 'ldap'}://{case.host}:{port}"
    ca_file = {"ours": pki.ca.ca_file, "other": pki.other_ca.ca_file, "system": None}[case.ca]
    settings = ldap_settings(
        tls_slapd, tmp_path, url=url, start_tls=not case.ldaps, ca_file=ca_file
    )
    assert settings.verify_tls  # the default
    target = LdapTarget(settings, LDAP_MAPPING)
    try:
        if case.error is None:
            assert list(target.snapshot()) == []
            return
        with pytest.raises(TargetUnavailableError) as exc:
            list(target.snapshot())
        message = f"{exc.value} ({exc.value.detail})"
        assert url in message, message
        assert "TLS" in message, message
        assert case.error in message, message
        print(message)
    finally:
        target.close()


@pytest.mark.slapd
def test_ldap_verify_tls_false_is_the_only_way_past_an_unknown_ca(
    tls_slapd: LocalSlapd, tmp_path: Path
) -> None:
    settings = ldap_settings(tls_slapd, tmp_path, url=tls_slapd.ldaps_url, verify_tls=False)
    target = LdapTarget(settings, LDAP_MAPPING)
    try:
        assert list(target.snapshot()) == []
    finally:
        target.close()


# -- SCIM over https --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_scim(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalScimServer]:
    server = pki.ca.issue("scim", ["127.0.0.1"])
    tls = ScimTls(server.cert, server.key)
    with LocalScimServer(tmp_path_factory.mktemp("tls-scim"), tls=tls) as s:
        yield s


@dataclass(frozen=True)
class ScimCase:
    host: str
    ca: str  # "ours", "other", "system"
    error: str | None


SCIM_CASES = {
    f"{c.host}-{c.ca}": c
    for c in [
        ScimCase("127.0.0.1", "ours", None),
        ScimCase("127.0.0.1", "system", "certificate verify failed"),
        ScimCase("127.0.0.1", "other", "certificate verify failed"),
        ScimCase("localhost", "ours", "localhost"),
    ]
}


@pytest.mark.scim
@pytest.mark.parametrize("case", SCIM_CASES.values(), ids=SCIM_CASES.keys())
def test_scim_tls_is_verified_by_default(
    tls_scim: LocalScimServer, pki: Pki, tmp_path: Path, case: ScimCase
) -> None:
    token = tmp_path / "token"
    token.write_text(tls_scim.token, encoding="utf-8")
    url = tls_scim.url.replace("127.0.0.1", case.host)
    ca_file = {"ours": pki.ca.ca_file, "other": pki.other_ca.ca_file, "system": None}[case.ca]
    settings = ScimSettings(base_url=url, token_file=token, ca_file=ca_file)
    assert settings.verify_tls  # the default
    target = ScimTarget(settings, SCIM_MAPPING)
    try:
        if case.error is None:
            assert list(target.snapshot()) == []
            return
        with pytest.raises(TargetUnavailableError) as exc:
            list(target.snapshot())
        message = f"{exc.value} ({exc.value.detail})"
        assert url in message, message
        assert "TLS" in message, message
        assert case.error in message, message
    finally:
        target.close()


@pytest.mark.scim
def test_scim_verify_tls_false_is_the_only_way_past_an_unknown_ca(
    tls_scim: LocalScimServer, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text(tls_scim.token, encoding="utf-8")
    settings = ScimSettings(base_url=tls_scim.url, token_file=token, verify_tls=False)
    target = ScimTarget(settings, SCIM_MAPPING)
    try:
        assert list(target.snapshot()) == []
    finally:
        target.close()


# -- client certificates: SASL EXTERNAL (LDAP) and mutual TLS (SCIM) -----------------------


@pytest.mark.slapd
@pytest.mark.parametrize("ldaps", [True, False], ids=["ldaps", "starttls"])
def test_ldap_sasl_external_binds_as_the_certificate(
    tls_slapd: LocalSlapd, pki: Pki, tmp_path: Path, ldaps: bool
) -> None:
    client = pki.ca.issue("client-misync", ["misync"], client=True)
    settings = LdapSettings(
        url=tls_slapd.ldaps_url if ldaps else tls_slapd.url,
        start_tls=not ldaps,
        base_dn=tls_slapd.suffix,
        ca_file=pki.ca.ca_file,
        client_cert_file=client.cert,
        client_key_file=client.key,
    )
    target = LdapTarget(settings, LDAP_MAPPING)
    try:
        conn = target._connection()
        assert conn.extend.standard.who_am_i() == f"dn:cn=misync,{tls_slapd.suffix}"
    finally:
        target.close()


@pytest.mark.slapd
def test_ldap_client_certificate_from_another_ca_is_refused(
    tls_slapd: LocalSlapd, pki: Pki, tmp_path: Path
) -> None:
    client = pki.other_ca.issue("client-other", ["misync"], client=True)
    settings = LdapSettings(
        url=tls_slapd.ldaps_url,
        base_dn=tls_slapd.suffix,
        ca_file=pki.ca.ca_file,
        client_cert_file=client.cert,
        client_key_file=client.key,
    )
    target = LdapTarget(settings, LDAP_MAPPING)
    with pytest.raises(TargetUnavailableError) as exc:
        list(target.snapshot())
    assert tls_slapd.ldaps_url in str(exc.value), exc.value
    target.close()


@pytest.fixture(scope="module")
def mtls_scim(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalScimServer]:
    server = pki.ca.issue("scim-mtls", ["127.0.0.1"])
    tls = ScimTls(server.cert, server.key, client_ca=pki.ca.ca_file)
    with LocalScimServer(tmp_path_factory.mktemp("mtls-scim"), tls=tls) as s:
        yield s


@pytest.mark.scim
@pytest.mark.parametrize("client", ["ours", "none", "other CA"])
def test_scim_mutual_tls(mtls_scim: LocalScimServer, pki: Pki, tmp_path: Path, client: str) -> None:
    token = tmp_path / "token"
    token.write_text(mtls_scim.token, encoding="utf-8")
    files = {}
    if client != "none":
        ca = pki.ca if client == "ours" else pki.other_ca
        issued = ca.issue(f"scim-client-{client.replace(' ', '-')}", ["misync"], client=True)
        files = {"client_cert_file": issued.cert, "client_key_file": issued.key}
    settings = ScimSettings(
        base_url=mtls_scim.url, token_file=token, ca_file=pki.ca.ca_file, **files
    )
    target = ScimTarget(settings, SCIM_MAPPING)
    try:
        if client == "ours":
            assert list(target.snapshot()) == []
            return
        with pytest.raises(TargetUnavailableError) as exc:
            list(target.snapshot())
        assert mtls_scim.url in str(exc.value), exc.value
    finally:
        target.close()


@pytest.mark.parametrize(
    ("ldap", "message"),
    [
        pytest.param(
            'url = "ldaps://x"\nclient_cert_file = "c.pem"',
            "set both or neither",
            id="certificate without key",
        ),
        pytest.param(
            'url = "ldap://x"\nclient_cert_file = "c.pem"\nclient_key_file = "k.pem"',
            "needs TLS",
            id="certificate over plain ldap",
        ),
    ],
)
def test_client_certificate_settings_are_checked(tmp_path: Path, ldap: str, message: str) -> None:
    from connector.settings import ConfigError, load_settings

    cfg = tmp_path / "misync.toml"
    cfg.write_text(f'[target.ldap]\nbase_dn = "ou=p,dc=x"\n{ldap}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg)
