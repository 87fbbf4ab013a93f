"""The feed reader: every bad row is rejected with file, line, column and reason; bad
feeds are marked unusable; nothing is dropped silently."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connector.feeds import FeedLayoutError, load_feed_layout, read_feeds
from connector.model import FeedName, FeedState
from connector.settings import FeedsSettings

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo" / "feeds"
LA = ZoneInfo("America/Los_Angeles")
NOW = datetime(2026, 11, 25, 17, tzinfo=UTC)
WORKERS_HEADER = (
    "person_id,org_id,given_name,family_name,email,office,supervisor_id,status,separated_on\n"
)
REQUESTS_HEADER = (
    "request_id,action,person_id,requester_id,submitted_at,effective_on,status,profile,offices,"
    "cert_training,cert_profile_approved,cert_nda,supervisor_id\n"
)


@pytest.fixture
def feeds(tmp_path: Path) -> Path:
    d = tmp_path / "feeds"
    shutil.copytree(DEMO, d)
    return d


def read(d: Path, **kw: object):  # type: ignore[no-untyped-def]
    settings = FeedsSettings(dir=d, max_age_hours=kw.pop("max_age_hours", 0), **kw)  # type: ignore[arg-type]
    return read_feeds(settings, now=NOW, tz=LA, previous_rows=kw.get("previous"))  # type: ignore[arg-type]


def test_demo_feeds_read_with_one_rejection(feeds: Path) -> None:
    fs = read(feeds)
    assert all(h.state is FeedState.OK for h in fs.health.values())
    assert len(fs.workers) == 12
    (rej,) = fs.rejected
    assert (rej.file, rej.line, rej.column, rej.value, rej.key) == (
        "training.csv",
        11,
        "completed_on",
        "2025-13-01",
        "P1010",
    )
    assert fs.health[FeedName.TRAINING].rejected == 1
    assert fs.workers[0].source.line == 2


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        pytest.param("P9,ORG,A,B,a@x,O,S,active,", None, None, id="valid"),
        pytest.param(
            ",ORG,A,B,a@x,O,S,active,", "person_id", "required value is empty", id="empty-id"
        ),
        pytest.param(
            "P9,ORG,A,B,a@x,O,S,retired,",
            "status",
            "'retired' is not one of: active, leave, separated",
            id="bad-enum",
        ),
        pytest.param(
            "P9,ORG,A,B,a@x,O,S,separated,",
            "separated_on",
            "required when status is separated (the last day worked)",
            id="separated-needs-date",
        ),
        pytest.param(
            "P9,ORG,A,B,a@x,O,S,separated,2026-02-30",
            "separated_on",
            "not a date (YYYY-MM-DD): '2026-02-30'",
            id="bad-date",
        ),
        pytest.param("P9,ORG,A,B,a@x,O,S", None, "7 fields where the header has 9", id="short-row"),
        pytest.param(
            "P1001,ORG,A,B,a@x,O,S,active,",
            "person_id",
            "duplicate person_id 'P1001', first at line 2",
            id="duplicate",
        ),
    ],
)
def test_worker_row_rules(feeds: Path, row: str, column: str | None, reason: str | None) -> None:
    path = feeds / "workers.csv"
    path.write_text(path.read_text() + row + "\n")
    fs = read(feeds)
    line = 14  # 12 data rows after the header
    if reason is None:
        assert fs.rejected[1:] == ()
        assert fs.workers[-1].person_id == "P9"
        return
    bad = [r for r in fs.rejected if r.file == "workers.csv"]
    assert [(r.line, r.column, r.reason) for r in bad] == [(line, column, reason)]


@pytest.mark.parametrize(
    ("row", "errors"),
    [
        pytest.param(
            "Q1,add,P1,R1,2026-11-01T10:00:00,2026-11-02,approved,cm,A;B,true,true,true,S",
            {
                "submitted_at": "instant '2026-11-01T10:00:00' needs a UTC offset (e.g. 2026-11-25T17:00:00-08:00)"
            },
            id="naive-instant",
        ),
        pytest.param(
            "Q1,add,P1,R1,2026-11-01T10:00:00Z,2026-11-02,approved,,A,yes,true,,S",
            {
                "profile": "required value is empty",
                "cert_training": "not a boolean (true/false): 'yes'",
                "cert_nda": "required value is empty",
            },
            id="all-errors-of-a-row",
        ),
        pytest.param(
            "Q1,disable,P1,R1,2026-11-01T10:00:00Z,2026-11-02,approved,,,,,,S",
            {},
            id="disable-needs-no-certs",
        ),
        pytest.param(
            "Q1,grant,P1,R1,2026-11-01T10:00:00Z,2026-11-02,aproved,cm,A,true,true,true,S",
            {
                "action": "'grant' is not one of: add, change, disable",
                "status": "'aproved' is not one of: submitted, pending, approved, rejected, withdrawn",
            },
            id="typos-rejected-not-ignored",
        ),
    ],
)
def test_request_row_rules(tmp_path: Path, feeds: Path, row: str, errors: dict[str, str]) -> None:
    (feeds / "requests.csv").write_text(REQUESTS_HEADER + row + "\n")
    fs = read(feeds)
    got = {r.column: r.reason for r in fs.rejected if r.file == "requests.csv"}
    assert got == errors
    assert all(r.line == 2 and r.key == "P1" for r in fs.rejected if r.file == "requests.csv")


def test_contract_cross_field_rules(feeds: Path) -> None:
    header = (feeds / "contracts.csv").read_text().splitlines()[0]
    (feeds / "contracts.csv").write_text(
        header + "\nC1,ORG,data_sharing,dol,bc,2025-01-01,2025-02-01,2025-01-15,,,,\n"
        "C2,ORG,wioa_services,lwdb,,2025-01-01,2025-02-01,,2024-12-01,,,\n"
    )
    fs = read(feeds)
    got = sorted((r.line, r.column) for r in fs.rejected if r.file == "contracts.csv")
    assert got == [(2, "counterparty"), (2, "ends_on"), (3, "terminated_on")]
    assert fs.health[FeedName.CONTRACTS].state is FeedState.EMPTY


def test_multiline_quoted_field_keeps_line_numbers(feeds: Path) -> None:
    (feeds / "workers.csv").write_text(
        WORKERS_HEADER + 'P1,ORG,"Ann\nMarie",Lee,a@x,O,S,active,\nP2,ORG,B,C,b@x,O,S,bogus,\n'
    )
    fs = read(feeds)
    assert fs.workers[0].given_name == "Ann\nMarie"
    (rej,) = [r for r in fs.rejected if r.file == "workers.csv"]
    assert rej.line == 4


def test_bom_is_accepted(feeds: Path) -> None:
    path = feeds / "ndas.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert read(feeds).health[FeedName.NDAS].state is FeedState.OK


@pytest.mark.parametrize(
    ("damage", "state", "detail"),
    [
        pytest.param(
            lambda p: p.unlink(), FeedState.MISSING, "workers.csv: file not found", id="missing"
        ),
        pytest.param(
            lambda p: p.write_bytes(b"person_id,org_id\nP1,\xff\xfe\n"),
            FeedState.UNREADABLE,
            "workers.csv line 2: not UTF-8",
            id="undecodable",
        ),
        pytest.param(
            lambda p: p.write_text("person_id,org_id\nP1,ORG\n"),
            FeedState.UNREADABLE,
            "workers.csv line 1: missing column(s) given_name",
            id="missing-column",
        ),
        pytest.param(
            lambda p: p.write_text(WORKERS_HEADER),
            FeedState.EMPTY,
            "workers.csv: no usable rows",
            id="empty",
        ),
    ],
)
def test_unusable_feeds(feeds: Path, damage, state: FeedState, detail: str) -> None:  # type: ignore[no-untyped-def]
    damage(feeds / "workers.csv")
    fs = read(feeds)
    h = fs.health[FeedName.WORKERS]
    assert h.state is state
    assert h.detail.startswith(detail)
    assert fs.workers == ()
    assert FeedName.WORKERS in fs.unhealthy()


def test_empty_separations_is_fine(feeds: Path) -> None:
    (feeds / "separations.csv").write_text("person_id,org_id,separated_at,reason\n")
    assert read(feeds).health[FeedName.SEPARATIONS].state is FeedState.OK


def test_stale_feed_keeps_records_but_is_unusable(feeds: Path) -> None:
    old = (NOW - timedelta(hours=48)).timestamp()
    os.utime(feeds / "ndas.csv", (old, old))
    fs = read(feeds, max_age_hours=36)
    assert fs.health[FeedName.NDAS].state is FeedState.STALE
    assert len(fs.ndas) == 10


@pytest.mark.parametrize(
    ("previous", "state"), [(12, FeedState.OK), (40, FeedState.SHRUNK), (14, FeedState.OK)]
)
def test_shrunk_feed(feeds: Path, previous: int, state: FeedState) -> None:
    settings = FeedsSettings(dir=feeds, max_age_hours=0, shrink_share=0.2, shrink_min_rows=10)
    fs = read_feeds(settings, now=NOW, tz=LA, previous_rows={FeedName.WORKERS: previous})
    assert fs.health[FeedName.WORKERS].state is state


def test_renamed_columns_and_file(feeds: Path, tmp_path: Path) -> None:
    text = (feeds / "ndas.csv").read_text().replace("person_id,signed_on", "EmployeeID,SignedDate")
    (feeds / "ndas.csv").unlink()
    (feeds / "nda_export.csv").write_text(text)
    layout = tmp_path / "feeds.toml"
    layout.write_text(
        '[feeds.ndas]\nfile = "nda_export.csv"\ncolumns = { person_id = "EmployeeID", signed_on = "SignedDate" }\n'
    )
    settings = FeedsSettings(dir=feeds, mapping=layout, max_age_hours=0)
    fs = read_feeds(settings, now=NOW, tz=LA)
    assert fs.health[FeedName.NDAS].state is FeedState.OK
    assert fs.ndas[0].signed_on == date(2025, 9, 15)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[feeds.ndas]\ncolumns = { person = "X" }\n',
            "feeds.ndas.columns: unknown column(s) person",
        ),
        ('[feeds.bogus]\nfile = "x.csv"\n', "feeds.bogus"),
        ("[feeds\n", "cannot read feed layout"),
    ],
)
def test_bad_layout_file_names_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "feeds.toml"
    path.write_text(text)
    with pytest.raises(FeedLayoutError, match=str(path)) as err:
        load_feed_layout(path)
    assert message in str(err.value)
