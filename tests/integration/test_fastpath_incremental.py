"""The daemon's fast path from the changed rows (``TargetedPeople`` with ``FeedDeltas``)
plans exactly what the fast path reading the feeds whole plans, against a real slapd."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from connector.app import Runtime
from connector.runs import FreshPlan, Run
from connector.runs.incremental import FeedDeltas
from connector.runs.run import RunContext
from connector.runs.targeted import TargetedPeople
from connector.settings import load_settings
from tests.integration.test_daemon import LA, append_row, ldap_enabled, write_config, write_world

pytestmark = pytest.mark.slapd


def _roster_edit(path: Path, pid: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    out = [
        ln.replace(",active,", ",separated,2025-11-01") if ln.startswith(pid) else ln
        for ln in lines
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(out) + "\n", encoding="utf-8")
    tmp.replace(path)


@pytest.mark.parametrize(
    "change",
    [
        lambda f, ids: append_row(
            f / "separations.csv",
            f"{ids[0]},LWDB04,{(datetime.now(LA) - timedelta(minutes=5)).isoformat()},quit",
        ),
        lambda f, ids: _roster_edit(f / "workers.csv", ids[1]),
        lambda f, ids: append_row(f / "separations.csv", f"{ids[2]},LWDB04,not-a-date,quit"),
    ],
    ids=["appended separation", "roster edit", "rejected separation row"],
)
def test_the_plan_from_changed_rows_is_the_plan_from_a_whole_read(
    tmp_path: Path, ldap_scope: Any, change: Callable[[Path, list[str]], Any]
) -> None:
    feeds, state, cfg = tmp_path / "feeds", tmp_path / "state", tmp_path / "misync.toml"
    ids = write_world(feeds, 6)
    write_config(cfg, feeds, state, ldap_scope)
    cfg.write_text(
        cfg.read_text().replace("max_age_hours = 0", "max_age_hours = 0\nsettle_seconds = 0")
    )
    rt = Runtime(load_settings(cfg))
    deltas = FeedDeltas()
    first = Run(rt, FreshPlan(), evaluated=lambda ev: deltas.offer(rt, ev)).execute()
    assert first is not None and first.report.counts == {"create_ok": 6}
    deltas.resolved(rt)
    change(feeds, ids)
    log = structlog.get_logger("test")
    now = rt.clock()
    rt.clock = lambda: now  # both plans as of one instant (the checksum covers as_of)
    with rt.store() as store:
        ctx = RunContext(rt, store, "t", None, log)
        by_rows = TargetedPeople(None, kind="fastpath", deltas=deltas).plan(ctx)
        whole = TargetedPeople(None, kind="fastpath").plan(ctx)
    assert deltas._made is not None
    if whole is None:  # a rejected row changes nobody's decision: its person is held
        assert by_rows is None
        return
    assert by_rows is not None
    assert by_rows.plan.actions and by_rows.plan.checksum == whole.plan.checksum
    assert by_rows.evaluation.decisions.keys() == whole.evaluation.decisions.keys()
    assert all(ldap_enabled(ldap_scope, p) for p in ids)  # planned only
