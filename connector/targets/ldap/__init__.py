"""The LDAP target (ldap3 is used here and nowhere else)."""

from connector.targets.ldap.adapter import LdapTarget, is_disabled

__all__ = ["LdapTarget", "is_disabled"]
