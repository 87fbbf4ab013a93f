"""misync re-enables only accounts it disabled itself (issue 6 item 4), on a real slapd.

With the default configuration (``apply.reenable_external_disables = false``):

- an account locked by someone else (misync has no record of disabling it) stays locked
  and is held for review as ``disabled_outside_misync``, even for an entitled person;
- an account misync disabled (a successful disable in the journal) is enabled again
  when the person is entitled again;
- an account misync enabled and someone then locked (an incident) is held again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ldap3
import pytest

from tests.integration.test_end_to_end import (  # the demo world on a real slapd
    demo,
    entry,
    pinned_now,
    run,
)

pytestmark = pytest.mark.slapd
__all__ = ["demo", "pinned_now"]  # fixtures, used by name


def _default_config(demo: dict[str, Any]) -> None:
    cfg: Path = demo["config"]
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(
        "\n".join(ln for ln in text.splitlines() if "reenable_external_disables" not in ln),
        encoding="utf-8",
    )


def _lock(scope: Any, uid: str, locked: bool) -> None:
    s = scope.settings
    conn = ldap3.Connection(ldap3.Server(s.url), s.bind_dn, s.bind_password(), auto_bind=True)
    try:
        value = ["000001010000Z"] if locked else []
        conn.modify(
            f"uid={uid},{scope.people_dn}",
            {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, value)]},
        )
    finally:
        conn.unbind()


def _apply(demo: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code, out = run(demo, "apply", "--format", "json", capsys=capsys)
    return code, json.loads(out)


def _held(result: dict[str, Any]) -> dict[str | None, str]:
    return {h["action"]["person_id"]: h["code"] for h in result["plan"]["held"]}


def test_only_accounts_misync_disabled_are_enabled_again(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    _default_config(demo)
    scope = demo["scope"]
    separations: Path = demo["feeds"] / "separations.csv"
    original = separations.read_text(encoding="utf-8")

    # gkim (P1007) was locked by someone misync has no record of: held, left locked
    code, result = _apply(demo, capsys)
    assert code == 4
    assert _held(result) == {"P1007": "disabled_outside_misync"}
    gkim = entry(scope, "gkim")
    assert gkim is not None and gkim.get("pwdAccountLockedTime")

    # misync disables ewalsh (P1005) on a separation ...
    separations.write_text(
        original + "P1005,ESD01,2026-11-24T17:00:00-08:00,resignation\n", encoding="utf-8"
    )
    code, result = _apply(demo, capsys)
    assert ("disable", "P1005", "ok") in _outcomes(result)
    # ... and enables her when the separation row turns out to be a mistake
    separations.write_text(original, encoding="utf-8")
    code, result = _apply(demo, capsys)
    assert ("enable", "P1005", "ok") in _outcomes(result)
    assert "P1005" not in _held(result)
    ewalsh = entry(scope, "ewalsh")
    assert ewalsh is not None and not ewalsh.get("pwdAccountLockedTime")

    # a security administrator locks her for an incident: misync does not unlock her
    _lock(scope, "ewalsh", True)
    code, result = _apply(demo, capsys)
    assert code == 4
    assert _held(result) == {"P1005": "disabled_outside_misync", "P1007": "disabled_outside_misync"}
    ewalsh = entry(scope, "ewalsh")
    assert ewalsh is not None and ewalsh.get("pwdAccountLockedTime")


def _outcomes(result: dict[str, Any]) -> set[tuple[str, str | None, str]]:
    return {(o["op"], o["person_id"], o["outcome"]) for o in result["outcomes"]}
