"""The plan memo: a dry run that plans again only what changed since the last whole plan.

Every run that applies (``make_plan(save_snapshot=True)``: an apply's plan) and the
daemon, after a reconcile, keep a **memo** of their whole plan in the state store
(``PlanMemoStore``), beside the directory snapshot:

- the **key** of everything the plan was made from but the directory and the instant:
  the sha256 of each feed file it parsed, the settings that shape a plan (feeds,
  policy, target, guard, apply), the feed layout as read (``feeds.mapping``'s
  contents, not only its path), the target and the mapping, misync's version and the
  sha256 of its code;
- the instants between which its decisions hold (the evaluation's ``as_of`` and its
  horizon, ``connector.policy.horizon``: the first instant a date, a grace or a
  deadline can change any decision);
- the accounts it left alone (``connector.reconcile.settled``: no action, hold,
  acceptance or breach names them or their person), each with a digest of its row as
  read, its person and that person's logon ID;
- the people it named (they are planned again every time), the decision counts, the
  rejected rows, and where each person's accepted rows are in the feed files.

``replan`` (``misync plan``, the dry run) takes the memo only when its key is the key of
the files and settings now, byte for byte, and the instant is within its horizon. Then
the plan of the accounts it left alone is known: nothing. Everything else is planned
the ordinary way, by the ordinary code: the people it named and the people of every
account changed, new or gone since are evaluated again from their rows, parsed again
from the files (``connector.feeds.lines``), with the policy engine, at the instant of
the plan; their accounts are planned by ``build_plan``. The result is the plan a whole
evaluation would give (same checksum; tested against full-scan plans).

**What the memo is not**: a store of entitlement decisions. No decision is read back
from it; every action, hold and breach of a memo plan is computed from the feed rows
at the instant of the plan. What it records is which accounts a pure function of
byte-identical inputs left alone, and the line numbers of rows. Any doubt, and the
ordinary plan runs (the plan says why): no memo, another key, past the horizon, a feed
not usable, a file changing while it is read, a row that is not where the memo says,
the memo replaced while it was read, or more than ``MAX_REPLAN_SHARE`` of the people to
plan again. ``--full-scan`` never uses it. Only dry runs use it: a run that applies
evaluates every feed (it records every decision).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from connector import __version__
from connector.app import Runtime
from connector.errors import MisyncError
from connector.feeds import load_feed_layout
from connector.feeds.delta import NoDelta
from connector.feeds.judge import judge
from connector.feeds.layout import FeedLayout
from connector.feeds.lines import read_lines
from connector.feeds.settle import stat_key
from connector.model.accounts import Account
from connector.model.decisions import Decision
from connector.model.feeds import FeedHealth, FeedName, FeedSet, FeedState, FileStamp, Rejection
from connector.model.plan import Plan
from connector.policy.engine import PolicyIndex
from connector.policy.engine import evaluate as evaluate_person
from connector.reconcile import build_plan
from connector.reconcile.settled import Seen, Settled, named_in, residual, settle
from connector.runs.planning import Evaluation, horizon, plan_inputs, record_read
from connector.state import Store

FORMAT = "1"
#: the feeds whose rows are found by person (the memo keeps their line numbers)
PERSON_FEEDS = (
    FeedName.WORKERS,
    FeedName.SEPARATIONS,
    FeedName.TRAINING,
    FeedName.NDAS,
    FeedName.REQUESTS,
)
#: the feeds read whole (organizations, contracts, requester designations: small)
WHOLE_FEEDS = (FeedName.ORGANIZATIONS, FeedName.CONTRACTS, FeedName.REQUESTERS)
#: people who have a decision: in the roster, the requests or the separations
DECIDED_FEEDS = frozenset({FeedName.WORKERS, FeedName.REQUESTS, FeedName.SEPARATIONS})
#: past this share of the people to plan again (and ``MIN_REPLAN`` people), the
#: ordinary plan runs instead: it would cost about the same
MAX_REPLAN_SHARE = 0.25
MIN_REPLAN = 2000

_log = structlog.get_logger("misync.memo")


@functools.cache
def code_digest() -> str:
    """The sha256 of misync's own code (every module of the package): a memo made by
    other code, even under the same version number, is not taken."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def inputs_key(
    rt: Runtime, description: str, digests: Mapping[FeedName, str], layout: FeedLayout
) -> str:
    """The key of a plan's inputs but the directory and the instant. The feed layout
    (``feeds.mapping``: files, columns, status words) is in it as the rows were parsed
    under it: the settings hold only its path, and the same bytes make other rows under
    another layout."""
    s = rt.settings
    body = {
        "format": FORMAT,
        "version": __version__,
        "code": code_digest(),
        "target": description,
        "mapping": repr(rt.mapping),
        "layout": repr(layout),
        "settings": [
            section.model_dump_json() for section in (s.feeds, s.policy, s.target, s.guard, s.apply)
        ],
        "feeds": {name.value: digests[name] for name in FeedName},
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# -- keeping it -----------------------------------------------------------------------------


def remember(
    rt: Runtime,
    store: Store,
    ev: Evaluation,
    plan: Plan,
    seen: Iterable[Seen],
    known_logons: Mapping[str, str],
) -> None:
    """Keep the memo of ``plan`` (a whole plan of every account, ``seen`` as it read
    them, with the logon IDs it knew), made from ``ev``. A plan made while a feed was
    unusable leaves no memo (the one before is dropped)."""
    feeds = ev.feeds
    digests: dict[FeedName, str] = {}
    for name in FeedName:
        h = feeds.health.get(name)
        if h is None or not h.healthy or h.stamp is None:
            store.save_memo({}, [])
            _log.info("memo.dropped", reason=f"the {name.value} feed was not usable")
            return
        digests[name] = h.stamp.digest
    layout = ev.memo.get("layout")
    if not isinstance(layout, FeedLayout):  # not a whole read of the feeds
        store.save_memo({}, [])
        _log.info("memo.dropped", reason="the evaluation's feed layout is not known")
        return
    named = len(named_in(plan)[1])
    if named > max(MIN_REPLAN, MAX_REPLAN_SHARE * len(ev.decisions)):
        # a dry run would plan them all again (``replan`` refuses as many): not worth
        # writing; the daemon keeps one once its runs have carried the plan out
        store.save_memo({}, [])
        _log.info("memo.dropped", reason=f"the plan names {named} people")
        return
    key = rt.mapping.correlation_key
    settled, open_keys = settle(plan, seen, ev.decisions, known_logons, key)
    people: dict[str, dict[str, dict[str, list[int]]]] = {}
    for name in PERSON_FEEDS:
        for r in feeds.records(name):
            pid = r.person_id
            lines = people.setdefault(key(pid), {}).setdefault(pid, {})
            lines.setdefault(name.value, []).append(r.source.line)
    whole = {name.value: [r.source.line for r in feeds.records(name)] for name in WHOLE_FEEDS}
    meta = {
        "format": FORMAT,
        "generation": uuid.uuid4().hex,
        "key": inputs_key(rt, plan.target, digests, layout),
        "from": ev.as_of.isoformat(),
        "until": horizon(rt, ev).isoformat(),
        "made_at": plan.as_of.isoformat(),
        "decisions": json.dumps(plan.decisions),
        "rows": json.dumps({name.value: feeds.health[name].rows for name in FeedName}),
        "rejected": json.dumps([_rejection_json(r) for r in feeds.rejected]),
        "open": json.dumps(sorted(open_keys)),
        "settled": str(len(settled)),
        "whole": json.dumps(whole),
    }
    # streamed into the store: 200k rows at 100k are never held as one list
    rows = itertools.chain(
        (("settled", k, s.row()) for k, s in settled.items()),
        (("people", k, _compact(v)) for k, v in people.items()),
    )
    store.save_memo(meta, rows)
    _log.info("memo.kept", settled=len(settled), named=len(open_keys), made_at=meta["made_at"])


_compact = json.JSONEncoder(separators=(",", ":")).encode


def _rejection_json(r: Rejection) -> list[Any]:
    return [r.feed, r.file, r.line, r.column, r.value, r.reason, r.key, r.org, r.wda]


def _rejection(v: Sequence[Any]) -> Rejection:
    feed, file, line, column, value, reason, key, org, wda = v
    return Rejection(feed, file, int(line), column, value, reason, key=key, org=org, wda=wda)


# -- using it -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class MemoPlan:
    """A plan made from the memo, and what it reused."""

    plan: Plan  # not sealed
    made_at: datetime  # the whole plan the memo is of
    people: int  # people planned again
    reused: int  # accounts left as the whole plan found them


class _Skip(MisyncError):
    """Why the memo is not used (``str()``): the ordinary plan runs."""


def replan(
    rt: Runtime,
    store: Store,
    as_of: datetime,
    view: Sequence[Account],
    seen: Mapping[str, Seen],
    *,
    description: str,
    override_guard: bool = False,
) -> MemoPlan | str:
    """The plan of ``view`` (every account, as ``seen``) at ``as_of`` from the memo, or
    why the memo cannot be used (the caller makes the ordinary plan)."""
    try:
        meta = store.memo_meta()
        if meta.get("format") != FORMAT:
            raise _Skip("no memo of a whole plan")
        start, until = meta["from"], meta["until"]
        if not datetime.fromisoformat(start) <= as_of < datetime.fromisoformat(until):
            raise _Skip(f"the instant is outside the memo's horizon ({start} to {until})")
        # one layout for the key and the rows
        layout = load_feed_layout(rt.settings.feeds.mapping)
        data, empty = _files(rt, store, meta, layout)
        digests = {n: h.digest for n, h in empty.health.items()}
        if inputs_key(rt, description, digests, layout) != meta["key"]:
            raise _Skip("the feeds, settings or mapping differ from the memo's")
        settled = {k: Settled.from_row(v) for k, v in store.memo_rows("settled").items()}
        key = rt.mapping.correlation_key
        known = store.logon_ids(None)
        res = residual(
            {lid: (s.correlation, s.digest) for lid, s in seen.items()},
            settled,
            json.loads(meta["open"]),
            known,
            key,
        )
        counts: dict[str, int] = json.loads(meta["decisions"])
        if len(res.keys) > max(MIN_REPLAN, MAX_REPLAN_SHARE * sum(counts.values())):
            raise _Skip(f"{len(res.keys)} people to plan again")
        feeds, decisions = _evaluate(
            rt, store, meta, data=data, empty=empty, layout=layout, keys=res.keys, as_of=as_of
        )
        if store.memo_meta().get("generation") != meta["generation"]:
            raise _Skip("the memo was replaced while it was read")
        changed = set(res.changed)
        accounts = [
            a
            for a in view
            if a.account_id.lower() in changed or (a.correlation and key(a.correlation) in res.keys)
        ]
        planned = {a.account_id.lower() for a in accounts}
        others = {
            s.logon_id.lower() for lid, s in seen.items() if lid not in planned and s.logon_id
        }
        record_read(store, feeds, None)
        inputs = plan_inputs(
            rt,
            store,
            as_of=as_of,
            evaluation=Evaluation(as_of, feeds, decisions),
            accounts=accounts,
            target=description,
            override_guard=override_guard,
            known_logon_ids=known,  # read once, above
            enabled_total=sum(1 for a in view if a.enabled),
        )
        inputs = dataclasses.replace(inputs, taken_logon_ids=inputs.taken_logon_ids | others)
        plan = dataclasses.replace(build_plan(inputs), decisions=counts)
        _log.info("memo.used", made_at=meta["made_at"], people=len(decisions), reused=res.reused)
        return MemoPlan(plan, datetime.fromisoformat(meta["made_at"]), len(decisions), res.reused)
    except _Skip as exc:
        return str(exc)
    except NoDelta as exc:
        return f"a row is not where the memo says ({exc})"
    except (KeyError, ValueError, TypeError) as exc:  # a memo this code cannot read
        _log.warning("memo.unreadable", error=repr(exc))
        return f"the memo is unreadable ({exc!r})"


def _files(
    rt: Runtime, store: Store, meta: Mapping[str, str], layout: FeedLayout
) -> tuple[dict[FeedName, bytes], FeedSet]:
    """Every feed file's bytes now, and a FeedSet without rows: the health a whole read
    would give now (from the memo's row counts: the same bytes give the same rows) and
    the memo's rejected rows."""
    s = rt.settings.feeds
    rows: dict[str, int] = json.loads(meta["rows"])
    rejected = tuple(_rejection(v) for v in json.loads(meta["rejected"]))
    previous = {FeedName(k): v for k, v in store.last_good_feed_rows().items()}
    now = rt.clock()
    data: dict[FeedName, bytes] = {}
    health: dict[FeedName, FeedHealth] = {}
    for name in FeedName:
        path = s.dir / layout.files[name]
        # not ``feeds.delta.read_bytes_settled``: a file still being written cannot have
        # the memo's digest, so there is nothing to wait for (the ordinary read that
        # follows waits for it to settle, once)
        try:
            st = path.stat()
            if s.max_bytes and st.st_size > s.max_bytes:  # never read: the memo has no such file
                raise _Skip(f"{path.name} is over feeds.max_bytes")
            raw = path.read_bytes()
            after = path.stat()
        except OSError as exc:
            raise _Skip(f"{path.name}: {exc.strerror}") from None
        if stat_key(after) != stat_key(st) or len(raw) != after.st_size:
            raise _Skip(f"{path.name} changed while it was read")
        digest = hashlib.sha256(raw).hexdigest()
        modified = datetime.fromtimestamp(after.st_mtime, UTC)
        n = rows[name.value]
        state, detail = judge(name, path.name, n, previous.get(name), modified, now=now, s=s)
        if state is not FeedState.OK:
            raise _Skip(f"the {name.value} feed is not usable now ({detail})")
        stamp = FileStamp(os.fspath(path), after.st_size, after.st_mtime_ns, digest)
        bad = sum(1 for r in rejected if r.feed == name.value)
        health[name] = FeedHealth(name, path.name, state, n, bad, detail, modified, digest, stamp)
        data[name] = raw
    return data, FeedSet(rejected=rejected, health=health)


#: a person's rows in the memo: feed name -> line numbers
_Lines = dict[str, list[int]]


def _evaluate(
    rt: Runtime,
    store: Store,
    meta: Mapping[str, str],
    *,
    data: Mapping[FeedName, bytes],
    empty: FeedSet,
    layout: FeedLayout,
    keys: Iterable[str],
    as_of: datetime,
) -> tuple[FeedSet, dict[str, Decision]]:
    """The rows of the people under ``keys`` and of their requesters, parsed again from
    the files, and the decisions of those people at ``as_of``."""
    people = _people(store, keys)
    decided = sorted(
        pid
        for by_pid in people.values()
        for pid, found in by_pid.items()
        if any(FeedName(f) in DECIDED_FEEDS for f in found)
    )
    lines: dict[FeedName, set[int]] = {name: set() for name in PERSON_FEEDS}
    owner: dict[FeedName, dict[int, str]] = {name: {} for name in PERSON_FEEDS}

    def take(pid: str, f: FeedName, numbers: Sequence[int]) -> None:
        lines[f].update(numbers)
        owner[f].update(dict.fromkeys(numbers, pid))

    for by_pid in people.values():
        for pid, found in by_pid.items():
            for f, numbers in found.items():
                take(pid, FeedName(f), numbers)
    # the requesters of their requests: their roster and separation rows too (the
    # policy checks a requester's own separation)
    requests = _read(FeedName.REQUESTS, data, layout, lines[FeedName.REQUESTS], owner)
    wanted = {q.requester_id for q in requests}
    key = rt.mapping.correlation_key
    for by_pid in _people(store, {key(r) for r in wanted} - set(people)).values():
        for pid, found in by_pid.items():
            if pid in wanted:
                for f in (FeedName.WORKERS, FeedName.SEPARATIONS):
                    take(pid, f, found.get(f.value, ()))
    whole: dict[str, list[int]] = json.loads(meta["whole"])
    for name in WHOLE_FEEDS:
        lines[name] = set(whole[name.value])
    records = {
        name: requests
        if name is FeedName.REQUESTS
        else _read(name, data, layout, lines[name], owner)
        for name in FeedName
    }
    fields: dict[str, Any] = {name.value: tuple(rs) for name, rs in records.items()}
    feeds = dataclasses.replace(empty, **fields)
    idx = PolicyIndex.build(feeds)
    decisions = {pid: evaluate_person(pid, idx, as_of, rt.rules) for pid in decided}
    return feeds, decisions


def _people(store: Store, keys: Iterable[str]) -> dict[str, dict[str, _Lines]]:
    """The memo's rows of the people under ``keys``: key -> person id -> their lines."""
    return {k: json.loads(v) for k, v in store.memo_rows("people", keys).items()}


def _read(
    name: FeedName,
    data: Mapping[FeedName, bytes],
    layout: FeedLayout,
    lines: set[int],
    owner: Mapping[FeedName, Mapping[int, str]],
) -> list[Any]:
    """The records on ``lines``; NoDelta unless each row of a person's feed is the row of
    the person the memo says it is (a memo that does not match its files is never
    planned from)."""
    if not lines:
        return []
    records = read_lines(name, layout.files[name], data[name], lines, layout)
    whose = owner.get(name)
    if whose is not None:
        for r in records:
            if r.person_id != whose.get(r.source.line):
                raise NoDelta(
                    f"{layout.files[name]} line {r.source.line} names {r.person_id}, "
                    f"not {whose.get(r.source.line)}"
                )
    return records
