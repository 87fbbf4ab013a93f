"""The validated form of a mapping file. Pure data."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from connector.model.identity import IdMatch, id_key


class AttributePolicy(StrEnum):
    """LSC's per-attribute policies: FORCE keeps the target in line; KEEP writes on create only."""

    FORCE = "force"
    KEEP = "keep"


@dataclass(frozen=True, slots=True)
class AttributeRule:
    """``name`` in the target gets ``template`` rendered from person fields.

    A template that uses ``{offices}`` yields one value per office (multi-valued).
    An empty rendering means "no value" (the attribute is absent / removed).
    """

    name: str
    template: str
    policy: AttributePolicy = AttributePolicy.FORCE


class DisableMatch(StrEnum):
    EQUALS = "equals"  # disabled iff the attribute holds disabled_value (case-insensitive)
    PRESENT = "present"  # disabled iff the attribute holds any value (e.g. pwdAccountLockedTime)


@dataclass(frozen=True, slots=True)
class DisableRule:
    """How "disabled" is written and read.

    - OpenLDAP ppolicy: attribute=pwdAccountLockedTime, disabled_value=000001010000Z,
      enabled_value=None (remove), match=present.
    - 389-ds: attribute=nsAccountLock, disabled_value=TRUE, enabled_value=None, match=equals.
    - SCIM: attribute=active, disabled_value=false, enabled_value=true, match=equals.
    """

    attribute: str
    disabled_value: str
    enabled_value: str | None = None  # None: remove the attribute to enable
    match: DisableMatch = DisableMatch.EQUALS


@dataclass(frozen=True, slots=True)
class GroupRule:
    """Membership derived from a decision field.

    ``source`` is ``profile`` or ``offices``; ``template`` renders the group's *name*
    with ``{value}``: the ``cn`` of an LDAP group under the target's ``group_base_dn``,
    or the ``displayName`` of a SCIM group.
    """

    source: str
    template: str


@dataclass(frozen=True, slots=True)
class AccountMapping:
    """How accounts look in one target (a mapping TOML file, read by ``load_mapping``)."""

    kind: str  # "ldap" | "scim"
    name: str  # the mapping's own name, e.g. "openldap-ppolicy"
    object_classes: tuple[str, ...]  # LDAP: objectClass values on create; SCIM: schemas
    rdn_attribute: str  # LDAP: naming attribute (uid); SCIM: unused ("")
    correlation_attribute: str  # employeeNumber | externalId
    logon_attribute: str  # uid | userName
    logon_template: str  # e.g. "{given_name:.1}{family_name}"
    logon_max_length: int
    attributes: tuple[AttributeRule, ...]
    disable: DisableRule
    groups: tuple[GroupRule, ...] = ()
    group_object_class: str = "groupOfNames"
    group_member_attribute: str = "member"
    correlation_match: IdMatch = IdMatch.CASE_IGNORE  # how the target compares person ids

    def correlation_key(self, person_id: str) -> str:
        """``person_id`` as the target's correlation attribute compares it."""
        return id_key(self.correlation_match, person_id)

    @property
    def managed_attributes(self) -> tuple[str, ...]:
        """Every attribute the connector reads back and compares (not the disable flag)."""
        names = [self.correlation_attribute, self.logon_attribute]
        names += [r.name for r in self.attributes]
        seen: dict[str, None] = {}
        for n in names:
            seen.setdefault(n, None)
        return tuple(seen)
