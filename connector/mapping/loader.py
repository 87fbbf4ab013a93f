"""Read a mapping TOML file into a ``AccountMapping`` (pydantic at the edge, frozen inside)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connector.errors import MisyncError
from connector.mapping.templates import MappingTemplateError, fields_of
from connector.mapping.types import (
    AccountMapping,
    AttributePolicy,
    AttributeRule,
    DisableMatch,
    DisableRule,
    GroupRule,
)
from connector.model.identity import IdMatch


class MappingError(MisyncError):
    """A mapping file is missing or invalid; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_template(value: str) -> str:
    try:
        fields_of(value)
    except MappingTemplateError as exc:
        raise ValueError(str(exc)) from exc
    return value


class _Attribute(_Strict):
    template: str
    policy: AttributePolicy = AttributePolicy.FORCE

    _t = field_validator("template")(_check_template)


class _Disable(_Strict):
    attribute: str = Field(min_length=1)
    disabled_value: str = Field(min_length=1)
    enabled_value: str | None = None
    match: DisableMatch = DisableMatch.EQUALS


class _Group(_Strict):
    source: Literal["profile", "offices"]
    template: str

    _t = field_validator("template")(_check_template)


class _Groups(_Strict):
    object_class: str = "groupOfNames"
    member_attribute: str = "member"
    rules: list[_Group] = []


class _Logon(_Strict):
    attribute: str = Field(min_length=1)
    template: str = "{given_name:.1}{family_name}"
    max_length: int = Field(default=20, ge=3, le=64)

    _t = field_validator("template")(_check_template)


class _MappingFile(_Strict):
    kind: Literal["ldap", "scim"]
    name: str = Field(min_length=1)
    object_classes: list[str] = Field(min_length=1)
    rdn_attribute: str = ""
    correlation_attribute: str = Field(min_length=1)
    # How the target compares correlation values; default: caseIgnoreMatch for ldap
    # (employeeNumber), exact for scim (externalId is caseExact, RFC 7643 section 3.1)
    correlation_match: IdMatch | None = None
    logon: _Logon
    attributes: dict[str, _Attribute] = {}
    disable: _Disable
    groups: _Groups = _Groups()


def load_mapping(path: Path) -> AccountMapping:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise MappingError(f"{path}: mapping file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"{path}: cannot read mapping file: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: invalid TOML: {exc}") from exc
    try:
        m = _MappingFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise MappingError(f"{path}: {problems}") from exc
    if m.kind == "ldap" and not m.rdn_attribute:
        raise MappingError(f"{path}: rdn_attribute: required for an ldap mapping")
    return AccountMapping(
        kind=m.kind,
        name=m.name,
        object_classes=tuple(m.object_classes),
        rdn_attribute=m.rdn_attribute,
        correlation_attribute=m.correlation_attribute,
        logon_attribute=m.logon.attribute,
        logon_template=m.logon.template,
        logon_max_length=m.logon.max_length,
        attributes=tuple(
            AttributeRule(name=name, template=a.template, policy=a.policy)
            for name, a in m.attributes.items()
        ),
        disable=DisableRule(
            attribute=m.disable.attribute,
            disabled_value=m.disable.disabled_value,
            enabled_value=m.disable.enabled_value,
            match=m.disable.match,
        ),
        groups=tuple(GroupRule(source=g.source, template=g.template) for g in m.groups.rules),
        group_object_class=m.groups.object_class,
        group_member_attribute=m.groups.member_attribute,
        correlation_match=m.correlation_match
        or (IdMatch.CASE_IGNORE if m.kind == "ldap" else IdMatch.EXACT),
    )
