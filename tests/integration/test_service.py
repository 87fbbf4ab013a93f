"""deploy/: the systemd unit, the installer, and `config check` as ExecStartPre uses it.

- the unit passes ``systemd-analyze verify`` and scores <= 2.0 in
  ``systemd-analyze security --offline=true`` (skipped, saying why, where systemd-analyze
  is absent);
- ``deploy/install-service.sh`` (staged with DESTDIR) puts the mappings, the example
  configuration, the unit, the sysusers file and one credential file per
  ``LoadCredential=`` where the unit and the example configuration expect them;
- ``config check --allow-missing-feeds`` accepts a feed folder that has not had its first
  delivery; ``--connect`` binds to a real slapd, and fails clearly on a wrong one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "misync.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)


def unit_for_this_host(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's misync (verify checks that the
    binary exists; /opt/misync is where install-service.sh puts it on a real host)."""
    text = UNIT.read_text(encoding="utf-8").replace(
        "/opt/misync/bin/misync", str(Path(sys.executable).parent / "misync")
    )
    out = tmp_path / "misync.service"
    out.write_text(text, encoding="utf-8")
    return out


@needs_analyze
def test_unit_verifies(tmp_path: Path) -> None:
    unit = unit_for_this_host(tmp_path)
    r = subprocess.run(
        [str(ANALYZE), "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stdout + r.stderr
    # verify prints problems without failing for some of them: none is acceptable here
    assert "misync.service" not in r.stderr, r.stderr


@needs_analyze
def test_unit_security_score_at_most_2(tmp_path: Path) -> None:
    unit = unit_for_this_host(tmp_path)
    r = subprocess.run(
        [str(ANALYZE), "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    m = re.search(r"Overall exposure level for misync\.service: (\d+\.\d+)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout


def test_unit_declares_what_the_issue_asks() -> None:
    text = UNIT.read_text(encoding="utf-8")
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "ExecStartPre=/opt/misync/bin/misync config check --allow-missing-feeds",
        "ExecStart=/opt/misync/bin/misync run",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=misync",
        "User=misync",
    ):
        assert line in text, line


def test_install_service_puts_everything_where_the_unit_and_config_expect(tmp_path: Path) -> None:
    dest = tmp_path / "root"
    r = subprocess.run(
        ["bash", str(ROOT / "deploy" / "install-service.sh")],
        env={**os.environ, "DESTDIR": str(dest), "MISYNC_SKIP_VENV": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    unit = (dest / "etc/systemd/system/misync.service").read_text(encoding="utf-8")
    assert (dest / "usr/lib/sysusers.d/misync.conf").read_text().startswith("#")
    creds = dict(re.findall(r"^LoadCredential=([\w-]+):(\S+)$", unit, re.M))
    assert {"ldap-password", "audit-key"} <= set(creds)
    for name, source in creds.items():
        f = dest / source.lstrip("/")
        assert f.is_file(), f"LoadCredential={name}: {source} not installed"
        assert f.stat().st_mode & 0o077 == 0, f"{source} is readable by others"
    assert len((dest / "etc/misync/credentials/audit-key").read_text()) == 64  # generated
    # every path of the installed configuration is installed, or is a credential the
    # unit loads, or is a folder systemd makes (StateDirectory=)
    cfg = (dest / "etc/misync/misync.toml").read_text(encoding="utf-8")
    paths: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, str) and node.startswith("/"):
            paths.append(node)

    walk(tomllib.loads(cfg))
    assert paths
    for p in paths:
        if p.startswith("/run/credentials/misync.service/"):
            assert p.rsplit("/", 1)[1] in creds, f"{p}: no LoadCredential= for it"
        elif p == "/var/lib/misync":
            assert "StateDirectory=misync" in unit
        elif p.startswith("/etc/ssl/"):
            continue  # the system CA bundle (ca-certificates)
        else:
            assert (dest / p.lstrip("/")).exists(), f"{p} is in the configuration, not installed"
    # a second run keeps the configuration and the secrets
    (dest / "etc/misync/credentials/ldap-password").write_text("s3cret\n")
    r2 = subprocess.run(
        ["bash", str(ROOT / "deploy" / "install-service.sh")],
        env={**os.environ, "DESTDIR": str(dest), "MISYNC_SKIP_VENV": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert r2.returncode == 0, r2.stderr
    assert (dest / "etc/misync/credentials/ldap-password").read_text() == "s3cret\n"


def _stage(dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "deploy" / "install-service.sh")],
        env={**os.environ, "DESTDIR": str(dest), "MISYNC_SKIP_VENV": "1"},
        capture_output=True,
        text=True,
        check=False,
    )


def _turn_on_email(cfg: Path) -> None:
    """What an administrator does to the shipped example to get alert emails."""
    lines = cfg.read_text(encoding="utf-8").splitlines()
    start = lines.index("# [alerts.email]")
    for i in range(start, len(lines)):
        if not lines[i].startswith("# "):
            break
        lines[i] = lines[i][2:]
    cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(None, id="as-installed"),
        pytest.param(_turn_on_email, id="alert-email-turned-on"),
    ],
)
def test_installed_unit_starts_after_the_installers_next_steps(tmp_path: Path, change: Any) -> None:
    """Issue 13 item 1: an administrator who fills in exactly the secret files the
    installer's "next:" lines name gets a unit whose ExecStartPre passes. The staged
    configuration is run as the unit runs it: each /run/credentials/misync.service/NAME
    is the file the unit's LoadCredential=NAME:SOURCE names, every other path is under
    the staging folder."""
    dest = tmp_path / "root"
    first = _stage(dest)
    assert first.returncode == 0, first.stdout + first.stderr
    cfg = dest / "etc/misync/misync.toml"
    out = first.stdout
    if change is not None:  # the administrator edits the configuration, runs it again
        change(cfg)
        again = _stage(dest)
        assert again.returncode == 0, again.stdout + again.stderr
        out = again.stdout
    # fill in what the next steps ask for, and nothing else
    to_fill = out.split("already filled in")[0]
    named = sorted(set(re.findall(r"(/etc/misync/credentials/[\w.-]+)", to_fill)))
    assert named, out
    for source in named:
        (dest / source.lstrip("/")).write_text("s3cret\n", encoding="utf-8")
    # the configuration as the unit sees it
    unit = (dest / "etc/systemd/system/misync.service").read_text(encoding="utf-8")
    creds = dict(re.findall(r"^LoadCredential=([\w.-]+):(\S+)$", unit, re.M))
    text = cfg.read_text(encoding="utf-8")
    for path in sorted(set(re.findall(r'"(/[^"]+)"', text)), key=len, reverse=True):
        if path.startswith("/etc/ssl/"):
            continue  # the system CA bundle
        name = path.removeprefix("/run/credentials/misync.service/")
        where = creds[name] if name != path else path
        text = text.replace(f'"{path}"', f'"{dest / where.lstrip("/")}"')
    staged = tmp_path / "as-the-unit-sees-it.toml"
    staged.write_text(text, encoding="utf-8")
    pre = re.search(r"^ExecStartPre=/opt/misync/bin/misync (.+)$", unit, re.M)
    assert pre, "the unit has no ExecStartPre=/opt/misync/bin/misync ..."
    r = _check(staged, *pre.group(1).split()[2:])  # "config check --allow-missing-feeds"
    assert pre.group(1).split()[:2] == ["config", "check"]
    assert r.returncode == 0, out + "\n" + r.stdout + r.stderr
    if change is not None:
        assert "smtp-password" in to_fill  # derived from the configuration


def _check(cfg: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISYNC_")}
    return subprocess.run(
        [sys.executable, "-m", "connector.cli", "-c", str(cfg), "config", "check", *extra],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def _config(tmp_path: Path, url: str, password_file: Path, feeds: Path) -> Path:
    cfg = tmp_path / "misync.toml"
    cfg.write_text(
        f"""
[feeds]
dir = "{feeds}"
mapping = "{ROOT / "mappings" / "feeds.toml"}"
[target]
mapping = "{ROOT / "mappings" / "openldap-ppolicy.toml"}"
[target.ldap]
url = "{url}"
bind_dn = "cn=admin,dc=mis,dc=test"
password_file = "{password_file}"
base_dn = "ou=people,dc=mis,dc=test"
group_base_dn = "ou=groups,dc=mis,dc=test"
connect_timeout = 3
[state]
dir = "{tmp_path / "state"}"
""",
        encoding="utf-8",
    )
    return cfg


def test_config_check_allow_missing_feeds(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    cfg = _config(tmp_path, "ldap://127.0.0.1:9", pw, tmp_path / "not-yet")
    strict = _check(cfg)
    assert strict.returncode == 2 and "is not a directory" in strict.stdout
    lenient = _check(cfg, "--allow-missing-feeds")
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert "warning: feeds.dir" in lenient.stdout
    # a folder with some files: the missing ones are warnings, a bad header is not
    (tmp_path / "not-yet").mkdir()
    (tmp_path / "not-yet" / "workers.csv").write_text("wrong,header\n")
    partial = _check(cfg, "--allow-missing-feeds")
    assert partial.returncode == 2
    assert "not delivered yet" in partial.stdout and "workers.csv" in partial.stdout


@pytest.mark.slapd
def test_config_check_connect_only_when_asked(tmp_path: Path, ldap_scope: Any) -> None:
    feeds = tmp_path / "feeds"
    shutil.copytree(ROOT / "config" / "demo" / "feeds", feeds)
    s = ldap_scope.settings
    good = _config(tmp_path, s.url, Path(str(s.password_file)), feeds)
    good.write_text(
        good.read_text()
        .replace("cn=admin,dc=mis,dc=test", s.bind_dn)
        .replace("ou=people,dc=mis,dc=test", ldap_scope.people_dn)
        .replace("ou=groups,dc=mis,dc=test", ldap_scope.groups_dn)
    )
    ok = _check(good, "--connect")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "directory connection OK" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace(s.url, "ldap://127.0.0.1:9"))
    assert _check(bad).returncode == 0  # no connection attempted without --connect
    refused = _check(bad, "--connect")
    assert refused.returncode == 2 and "target: cannot connect" in refused.stdout
    # a wrong password: the message names the URL, the bind DN and the password file
    wrong_pw = tmp_path / "wrong-password"
    wrong_pw.write_text("not-the-password\n")
    wrong_pw.chmod(0o600)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(good.read_text().replace(str(s.password_file), str(wrong_pw)))
    denied = _check(wrong, "--connect")
    assert denied.returncode == 2, denied.stdout
    line = next(x for x in denied.stdout.splitlines() if "target:" in x)
    for part in (s.url, s.bind_dn, str(wrong_pw), "invalidCredentials"):
        assert part in line, (part, line)
