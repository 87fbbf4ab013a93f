"""The part of a test configuration every LDAP test world shares: the feeds, the
OpenLDAP ppolicy mapping and the connection to the test's private slapd. Each test adds
its own sections ([guard], [apply], [state], [daemon], ...) after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def ldap_toml(
    *,
    feeds: Any,
    url: Any,
    bind_dn: Any,
    password_file: Any,
    base_dn: Any,
    group_base_dn: Any,
) -> str:
    """``[feeds]``, ``[target]`` and ``[target.ldap]`` (left open: more keys may follow)."""
    return f"""[feeds]
dir = "{feeds}"
mapping = "{ROOT / "mappings" / "feeds.toml"}"
max_age_hours = 0

[target]
kind = "ldap"
mapping = "{ROOT / "mappings" / "openldap-ppolicy.toml"}"

[target.ldap]
url = "{url}"
bind_dn = "{bind_dn}"
password_file = "{password_file}"
base_dn = "{base_dn}"
group_base_dn = "{group_base_dn}"
scope = "one\""""
