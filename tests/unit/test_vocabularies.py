"""The fixed vocabularies (outcome status, held codes, alert kinds) are StrEnums whose
values are stored in the state, the audit trail and JSON output: they keep the strings
they always had, a misspelt one is refused where it is made, and the README's alert
table names only kinds that exist."""

from __future__ import annotations

import re

import pytest

from connector.alerts.kinds import AlertKind
from connector.alerts.manager import CLOSERS, STATEFUL, SUPERSEDES, SWEPT
from connector.model.plan import (
    ACCEPTABLE,
    APPROVABLE,
    Action,
    FailureCode,
    HeldAction,
    HeldCode,
    Op,
    OutcomeStatus,
)
from tests.configs import ROOT

STORED = [  # (enum, the strings stored before it existed)
    (OutcomeStatus, {"ok", "failed", "not_attempted", "interrupted"}),
    (FailureCode, {"not_effective", "stopped", "not_attempted", "internal"}),
    (
        HeldCode,
        {
            "feed_unhealthy",
            "rejected_row",
            "quarantined",
            "ambiguous_correlation",
            "disabled_outside_misync",
            "orphan_report_only",
            "mass_disable_guard",
        },
    ),
]


@pytest.mark.parametrize(("enum", "values"), STORED, ids=lambda x: getattr(x, "__name__", ""))
def test_a_vocabulary_keeps_the_strings_it_stores(enum: type, values: set[str]) -> None:
    assert {m.value for m in enum} == values
    assert all(m == m.value and f"{m}" == m.value for m in enum)


def _disable() -> Action:
    return Action(Op.DISABLE, "P1", "uid=p1", "p1", (), (), "d")


def test_a_held_action_with_an_unknown_code_is_refused_where_it_is_made() -> None:
    assert HeldAction(_disable(), "quarantined", "x").code is HeldCode.QUARANTINED
    with pytest.raises(ValueError, match="quarantine"):
        HeldAction(_disable(), "quarantine", "x")  # a typo would escape ACCEPTABLE


def test_decidable_holds_and_the_managers_kinds_are_members() -> None:
    assert not (ACCEPTABLE | APPROVABLE) - set(HeldCode)
    kinds = set(SWEPT | STATEFUL | set(CLOSERS) | set(SUPERSEDES))
    kinds |= {k for closed in (*CLOSERS.values(), *SUPERSEDES.values()) for k in closed}
    assert not kinds - set(AlertKind)


def test_the_readme_alert_table_names_only_alert_kinds() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| kind | severity | key | closed by |") :].split("\n\n", 1)[0]
    named = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)`", table, flags=re.M))
    named |= set(re.findall(r"^\| `[a-z_.]+`, `([a-z_]+\.[a-z_]+)`", table, flags=re.M))
    assert named and named <= {k.value for k in AlertKind}
