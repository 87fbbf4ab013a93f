"""RFC 4516 LDAP URLs: the forms the standard allows name a server; the rest is refused
with the reason (``target.ldap.url``)."""

from __future__ import annotations

import re

import pytest

from connector.settings import LdapEndpoint, LdapSettings, parse_ldap_url


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("ldap://127.0.0.1:389", LdapEndpoint("127.0.0.1", 389, False)),
        ("ldap://127.0.0.1:389/", LdapEndpoint("127.0.0.1", 389, False)),
        ("ldap://mis.esd.wa.gov", LdapEndpoint("mis.esd.wa.gov", 389, False)),
        ("ldaps://mis.esd.wa.gov", LdapEndpoint("mis.esd.wa.gov", 636, True)),
        ("ldaps://mis.esd.wa.gov/", LdapEndpoint("mis.esd.wa.gov", 636, True)),
        ("LDAPS://MIS.esd.wa.gov:1636/", LdapEndpoint("mis.esd.wa.gov", 1636, True)),
        ("ldap://h:389/dc=mis,dc=example", LdapEndpoint("h", 389, False)),
        ("ldap://h/dc=mis%2Cdc=example", LdapEndpoint("h", 389, False)),
        ("ldap://h:389/dc=mis,dc=example??", LdapEndpoint("h", 389, False)),
        ("ldap://[::1]:389/", LdapEndpoint("::1", 389, False)),
        ("ldaps://[2001:db8::7]/", LdapEndpoint("2001:db8::7", 636, True)),
        (" ldap://h:389 ", LdapEndpoint("h", 389, False)),
    ],
)
def test_accepted_forms(url: str, endpoint: LdapEndpoint) -> None:
    assert parse_ldap_url(url) == endpoint
    assert LdapSettings(url=url).endpoint == endpoint


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ldap://h:x/", "the port must be a number from 1 to 65535"),
        ("ldap://h:0/", "the port must be a number from 1 to 65535"),
        ("ldap://h:70000/", "the port must be a number from 1 to 65535"),
        ("ldap://[::1/", "not an LDAP URL (Invalid IPv6 URL)"),
        ("http://h/", "an LDAP URL starts with ldap:// or ldaps://"),
        ("h:389", "an LDAP URL starts with ldap:// or ldaps://"),
        ("ldapi:///var/run/slapd/ldapi", "an LDAP URL starts with ldap:// or ldaps://"),
        ("ldap:///", "the URL names no host"),
        ("ldap://admin@h/", "no user in the URL"),
        ("ldap://h/dc=x?uid", "set target.ldap.base_dn, filter and scope instead"),
        ("ldap://h/dc=x??sub?(uid=a)", "set target.ldap.base_dn, filter and scope instead"),
        ("ldap://h/dc=x????!StartTLS", "set target.ldap.base_dn, filter and scope instead"),
    ],
)
def test_refused_forms(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)) as err:
        parse_ldap_url(url)
    assert problem in str(err.value)
    assert repr(url) in str(err.value)
