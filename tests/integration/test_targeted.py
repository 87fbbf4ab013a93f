"""``run_targeted`` in-process against a real slapd: the fast path's guarantees are the
full apply's (journal, audit, quarantine, the mass-disable guard, held actions alerted)
while it reads only the accounts of the people in scope."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.alerts import Alert
from connector.app import Runtime
from connector.model.accounts import Account
from connector.runs import run_apply
from connector.runs.targeted import run_targeted
from connector.settings import load_settings
from connector.state import StateStore
from connector.targets.base import Target
from tests.integration.test_daemon import LA, append_row, ldap_enabled, write_config, write_world

pytestmark = pytest.mark.slapd


class Recorder:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


class Counting:
    """Counts what the target reads: a full snapshot is a failure for the fast path."""

    def __init__(self, inner: Target, reads: list[str]) -> None:
        self._inner = inner
        self._reads = reads

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def snapshot(self) -> Iterator[Account]:
        self._reads.append("snapshot")
        return self._inner.snapshot()

    def find(self, person_id: str) -> Account | None:
        self._reads.append(f"find:{person_id}")
        return self._inner.find(person_id)


@pytest.fixture
def world(tmp_path: Path, ldap_scope: Any) -> tuple[Runtime, list[str], list[str], Path]:
    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    ids = write_world(feeds, 12)
    write_config(cfg, feeds, state, ldap_scope)
    cfg.write_text(
        cfg.read_text().replace("max_unexplained_share = 0.5", "max_unexplained_disables = 2")
    )
    rt = Runtime(load_settings(cfg))
    first = run_apply(rt)
    assert first.report.counts == {"create_ok": 12}
    reads: list[str] = []
    base = rt.target
    counted = Runtime(rt.settings, target_factory=lambda: Counting(base(), reads))
    return counted, ids, reads, feeds


def test_a_separation_disables_only_that_account_reading_only_it(
    world: Any, ldap_scope: Any
) -> None:
    rt, ids, reads, feeds = world
    sep = datetime.now(LA) - timedelta(minutes=1)
    append_row(feeds / "separations.csv", f"{ids[0]},LWDB04,{sep.isoformat()},quit")
    rec = Recorder()
    result = run_targeted(rt, None, alerts=rec)
    assert result is not None
    assert result.report.counts == {"disable_ok": 1}
    assert reads == [f"find:{ids[0]}"]  # no snapshot: one lookup, one write
    assert ldap_enabled(ldap_scope, ids[0]) is False
    assert all(ldap_enabled(ldap_scope, p) for p in ids[1:])
    with StateStore(rt.settings.state.db) as store:
        (entry,) = store.journal(result.run_id)
        assert (entry.op, entry.outcome, entry.person_id) == ("disable", "ok", ids[0])
        assert store.unfinished_runs() == []
    # nothing changed since: the next poll finds nobody and records nothing
    reads.clear()
    assert run_targeted(rt, None, alerts=rec) is None
    assert reads == []


def test_a_quarantined_account_is_held_and_alerted_not_skipped(world: Any, ldap_scope: Any) -> None:
    rt, ids, _reads, feeds = world
    with StateStore(rt.settings.state.db) as store:
        account = next(
            e.account_id for e in store.journal() if e.person_id == ids[1] and e.account_id
        )
        for _ in range(rt.settings.apply.quarantine_after):
            store.record_failure(account, datetime.now(LA), "test: kept failing")
    sep = datetime.now(LA) - timedelta(minutes=1)
    append_row(feeds / "separations.csv", f"{ids[1]},LWDB04,{sep.isoformat()},quit")
    rec = Recorder()
    result = run_targeted(rt, None, alerts=rec)
    assert result is not None and not result.plan.actions
    assert [h.code for h in result.plan.held] == ["quarantined"]
    assert [a.kind for a in rec.alerts if a.kind == "object.quarantined"] == ["object.quarantined"]
    assert ldap_enabled(ldap_scope, ids[1]) is True


def test_the_mass_disable_guard_counts_against_the_whole_directory(
    world: Any, ldap_scope: Any
) -> None:
    """Three people vanish from the roster (unexplained disables): above the guard's
    count of 2, they are held (and alerted) although only their 3 accounts were read."""
    rt, ids, reads, feeds = world
    workers = feeds / "workers.csv"
    lines = workers.read_text().splitlines()
    gone = set(ids[2:5])
    tmp = workers.with_suffix(".tmp")
    tmp.write_text("\n".join(line for line in lines if line.split(",")[0] not in gone) + "\n")
    tmp.replace(workers)
    rec = Recorder()
    result = run_targeted(rt, None, alerts=rec)
    assert result is not None
    assert sorted(reads) == sorted(f"find:{p}" for p in gone)
    assert not result.plan.actions
    assert {h.code for h in result.plan.held} == {"mass_disable_guard"}
    held = [a for a in rec.alerts if a.kind == "operation.held"]  # one per cause
    assert [(a.key, a.fields["count"]) for a in held] == [("mass_disable_guard", 3)]
    assert all(ldap_enabled(ldap_scope, p) for p in gone)


def test_the_guard_share_is_of_the_last_full_read_not_of_the_accounts_found(
    world: Any, ldap_scope: Any
) -> None:
    """3 of 12 enabled accounts (25 %) under a 50 % share: carried out. Measured against
    the 3 accounts the targeted run read (100 %), they would all be held."""
    from connector.settings import GuardSettings

    rt, ids, _reads, feeds = world
    guard = GuardSettings(max_unexplained_disables=25, max_unexplained_share=0.5)
    rt = Runtime(rt.settings.model_copy(update={"guard": guard}), target_factory=rt.target_factory)
    workers = feeds / "workers.csv"
    gone = set(ids[2:5])
    tmp = workers.with_suffix(".tmp")
    tmp.write_text(
        "\n".join(x for x in workers.read_text().splitlines() if x.split(",")[0] not in gone) + "\n"
    )
    tmp.replace(workers)
    result = run_targeted(rt, None, alerts=Recorder())
    assert result is not None
    assert result.report.counts == {"disable_ok": 3}, result.plan.held
    assert not any(ldap_enabled(ldap_scope, p) for p in gone)
