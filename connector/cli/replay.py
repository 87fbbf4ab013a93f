"""``misync audit replay RUN_ID | --all``: rebuild each run's plan from its archived
inputs alone (connector.archive.replay) and show that its checksum is the one the
audit trail recorded; on a mismatch, action by action how they differ.

Exit 0 when every run replayed reproduces its checksum; 6 (``TAMPERED``) when an
archived input is missing or altered, or a rebuilt plan differs from the trail's;
4 (``INCOMPLETE``) when a run's inputs were pruned by retention (said with when) or
the run has none archived (it predates the archive, or was a reviewed plan)."""

from __future__ import annotations

import argparse
import io
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from connector.errors import ExitCode

if TYPE_CHECKING:
    from collections.abc import Sequence

    from connector.app import Runtime
    from connector.archive.replay import Replayed
    from connector.audit.trail import AuditRecord
    from connector.model.plan import Action, Op, Plan


def _differences(recorded: Plan, replayed: Plan) -> list[str]:
    before = {a.key: a for a in recorded.actions}
    after = {a.key: a for a in replayed.actions}
    out = [f"  only in the trail: {a.op.value} {k}" for k, a in before.items() if k not in after]
    out += [f"  only in the replay: {a.op.value} {k}" for k, a in after.items() if k not in before]
    out += [
        f"  differs: {a.op.value} {k}"
        for k, a in after.items()
        if k in before and (before[k].op, before[k].changes) != (a.op, a.changes)
    ]
    return out or ["  the actions agree; the held actions, deadlines or feeds differ"]


def _reviewed(
    store: Any, run_id: str, records: Sequence[AuditRecord], result: Replayed, out: TextIO
) -> int:
    """A reviewed plan's run (``apply --plan``): the archive holds the fresh read that
    confirmed it; every action the trail recorded must be in the plan rebuilt from it,
    with the same changes (as ``apply --plan`` confirmed it at the time). A plan file
    made by ``plan -o`` named the inputs it was made from: the plan rebuilt from them
    must be the very plan the trail recorded (``_planned``)."""
    code = _confirmed(run_id, records, result.plan, out)
    planned = result.manifest.get("planned_from")
    return max(code, _planned(store, run_id, planned, records, out)) if planned else code


def _confirmed(run_id: str, records: Sequence[AuditRecord], rebuilt: Plan, out: TextIO) -> int:
    from connector.records import read_run

    recorded = read_run([(r.kind, r.at, r.data) for r in records], run_id).plan
    fresh = {_identity(a): a for a in rebuilt.actions}
    bad = [
        f"  not what the archived inputs give: {a.op.value} {a.key}"
        for a in recorded.actions
        if _identity(a) not in fresh or fresh[_identity(a)].changes != a.changes
    ]
    if bad:
        out.write(f"run {run_id}: REPLAY DIFFERS: the archived inputs do not confirm it\n")
        out.write("".join(line + "\n" for line in bad))
        return ExitCode.TAMPERED
    out.write(
        f"run {run_id}: a reviewed plan (apply --plan): its {len(recorded.actions)} actions"
        f" are each what the archived inputs give (rebuilt {rebuilt.checksum})\n"
    )
    return ExitCode.OK


def _planned(
    store: Any, run_id: str, planned: dict[str, str], records: Sequence[AuditRecord], out: TextIO
) -> int:
    """A reviewed plan's run whose plan file named its inputs (``plan -o``): the plan
    rebuilt from those archived inputs must be the very plan the trail recorded."""
    from connector.archive import ArchiveError
    from connector.archive.replay import replay
    from connector.records import read_run

    plan_id = planned["id"]
    try:
        r = replay(store, plan_id, planned["manifest"])
    except ArchiveError as exc:
        out.write(
            f"run {run_id}: ARCHIVE ALTERED OR MISSING: the inputs of its saved plan"
            f" {plan_id}: {exc}\n"
        )
        return ExitCode.TAMPERED
    recorded = read_run([(x.kind, x.at, x.data) for x in records], run_id).plan
    if r.plan.checksum != recorded.checksum:
        out.write(
            f"run {run_id}: REPLAY DIFFERS: its saved plan {plan_id}'s archived inputs give"
            f" {r.plan.checksum}, the trail recorded {recorded.checksum}\n"
        )
        out.write("".join(line + "\n" for line in _differences(recorded, r.plan)))
        return ExitCode.TAMPERED
    out.write(
        f"run {run_id}: its plan was made by misync plan -o ({plan_id}, as of"
        f" {r.manifest['as_of']}): rebuilt from that plan's archived inputs, checksum"
        f" {r.plan.checksum} matches the trail\n"
    )
    return ExitCode.OK


def _identity(a: Action) -> tuple[Op, str]:
    """An action as planned: a create by its person (the trail's operation record also
    names the account it created, which the plan could not)."""
    from connector.model.plan import Op

    return (a.op, f"person:{a.person_id}" if a.op is Op.CREATE else a.key)


def _archived_runs(trail: Any) -> list[str]:
    """Every run whose ``plan`` record names archived inputs, in the trail's order (the
    trail, not the archive, says which runs must replay: a run whose archive entry was
    removed is reported, not skipped)."""
    buf = io.StringIO()
    trail.export(buf, "jsonl")
    ids: dict[str, None] = {}
    for line in buf.getvalue().splitlines():
        r = json.loads(line)
        data = r["data"]
        if r["kind"] == "plan" and isinstance(data, dict) and data.get("inputs"):
            ids[r["run_id"]] = None
    return list(ids)


def replay_command(rt: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    from connector.archive import ArchiveError, ArchiveStore
    from connector.archive.replay import replay
    from connector.records import read_run

    store = ArchiveStore(rt.settings.state.dir / "archive")
    worst: int = ExitCode.OK
    with rt.audit(read_only=True) as trail:
        trail.check()  # the trail vouches for the archive: it must itself be intact
        ids = _archived_runs(trail) if args.all else [args.run_id]
        for run_id in ids:
            records = trail.run_records(run_id)
            plan_rec = next((json.loads(r.data) for r in records if r.kind == "plan"), None)
            if plan_rec is None:
                out.write(f"run {run_id}: no plan record in the audit trail\n")
                worst = max(worst, ExitCode.USAGE)
                continue
            digest = plan_rec.get("inputs")
            if not digest:
                out.write(f"run {run_id}: its inputs were not archived (a run before it)\n")
                worst = max(worst, ExitCode.INCOMPLETE)
                continue
            pruned = store.pruned_at(run_id)
            if pruned is not None and store.run_manifest(run_id) is None:
                keep = rt.settings.archive.keep_days
                age = datetime.fromisoformat(pruned) - datetime.fromisoformat(plan_rec["as_of"])
                if age < timedelta(days=keep):  # retention cannot have removed it yet
                    out.write(
                        f"run {run_id}: ARCHIVE ALTERED OR MISSING: marked pruned at {pruned},"
                        f" {age.days} days after the run, sooner than archive.keep_days"
                        f" ({keep}) allows\n"
                    )
                    worst = max(worst, ExitCode.TAMPERED)
                    continue
                out.write(
                    f"run {run_id}: its archived inputs were pruned at {pruned}"
                    f" (archive.keep_days {keep}); the trail keeps their digest {digest}\n"
                )
                if not args.all:  # with --all, a pruned run is expected, not a failure
                    worst = max(worst, ExitCode.INCOMPLETE)
                continue
            try:
                result = replay(store, run_id, digest)
            except ArchiveError as exc:
                out.write(f"run {run_id}: ARCHIVE ALTERED OR MISSING: {exc}\n")
                worst = max(worst, ExitCode.TAMPERED)
                continue
            if result.manifest.get("reviewed"):
                worst = max(worst, _reviewed(store, run_id, records, result, out))
                continue
            got, want = result.plan.checksum, plan_rec["checksum"]
            if got == want:
                out.write(
                    f"run {run_id}: replayed from the archive, {len(result.plan.actions)} actions,"
                    f" checksum {got} matches the trail\n"
                )
                continue
            out.write(f"run {run_id}: REPLAY DIFFERS: trail {want}, replay {got}\n")
            recorded = read_run([(r.kind, r.at, r.data) for r in records], run_id).plan
            for line in _differences(recorded, result.plan):
                out.write(line + "\n")
            worst = max(worst, ExitCode.TAMPERED)
    return int(worst)


def access_command(rt: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    """``misync audit access --at INSTANT``: the enabled accounts as the last full run at
    or before the instant read them, with that run's decision and action on each."""
    import csv
    import dataclasses
    import sys

    from connector.report.access import AccessRow, access_at

    found = access_at(rt, args.at, args.wda)
    run = {"run_id": found.run_id, "kind": found.kind, "as_of": found.as_of.isoformat()}
    if args.format == "json":
        body = {"run": run, "accounts": [dataclasses.asdict(r) for r in found.rows]}
        out.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    else:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([f.name for f in dataclasses.fields(AccessRow)])
        writer.writerows(dataclasses.astuple(r) for r in found.rows)
    print(
        f"misync: {len(found.rows)} enabled accounts as run {found.run_id} ({found.kind})"
        f" read them at {found.as_of.isoformat()}, from its archived inputs",
        file=sys.stderr,
    )
    return ExitCode.OK
