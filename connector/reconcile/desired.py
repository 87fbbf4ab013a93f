"""Desired accounts: a decision, the person's roster row and the mapping make the
account the directory should hold."""

from __future__ import annotations

from connector.mapping.templates import render
from connector.mapping.types import AccountMapping, AttributePolicy
from connector.model.accounts import DesiredAccount, Values
from connector.model.decisions import Decision
from connector.model.records import Organization, Worker


def person_fields(
    decision: Decision, worker: Worker, org: Organization | None, logon_id: str
) -> dict[str, str | tuple[str, ...]]:
    """The fields a mapping template may use (see connector.mapping.templates.PERSON_FIELDS)."""
    return {
        "person_id": worker.person_id,
        "logon_id": logon_id,
        "given_name": worker.given_name,
        "family_name": worker.family_name,
        "email": worker.email,
        "office": worker.office,
        "org_id": worker.org_id,
        "org_name": org.name if org else "",
        "wda": org.wda if org else "",
        "supervisor_id": worker.supervisor_id,
        "profile": decision.profile,
        "offices": decision.offices,
    }


def desired_account(
    decision: Decision,
    worker: Worker,
    org: Organization | None,
    logon_id: str,
    mapping: AccountMapping,
) -> DesiredAccount:
    fields = person_fields(decision, worker, org, logon_id)
    attributes: dict[str, Values] = {
        mapping.correlation_attribute: (worker.person_id,),
        mapping.logon_attribute: (logon_id,),
    }
    create_only: dict[str, Values] = {}
    for rule in mapping.attributes:
        values = render(rule.template, fields)
        if rule.policy is AttributePolicy.KEEP:
            create_only[rule.name] = values
        else:
            attributes[rule.name] = values
    groups: set[str] = set()
    for g in mapping.groups:
        sources = (decision.profile,) if g.source == "profile" else decision.offices
        for value in sources:
            if value:
                groups.update(render(g.template, {"value": value}))
    return DesiredAccount(
        person_id=worker.person_id,
        logon_id=logon_id,
        enabled=decision.entitled,
        attributes=attributes,
        create_only=create_only,
        groups=frozenset(groups),
    )
