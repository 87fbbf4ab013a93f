"""The feed reader: every bad row is rejected with file, line, column and reason; bad
feeds are marked unusable; nothing is dropped silently."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connector.feeds import FeedLayoutError, check_headers, load_feed_layout, read_feeds
from connector.model import FeedName, FeedState, RequestStatus
from connector.model.identity import IdMatch
from connector.settings import FeedsSettings

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo" / "feeds"
LA = ZoneInfo("America/Los_Angeles")
NOW = datetime(2026, 11, 25, 17, tzinfo=UTC)
WORKERS_HEADER = (
    "person_id,org_id,given_name,family_name,email,office,supervisor_id,status,separated_on\n"
)
INSTANT_FORM = (
    "not an ISO 8601 instant (YYYY-MM-DDTHH:MM[:SS[.fff]] then Z or ±HH:MM, "
    "e.g. 2026-11-25T17:00:00-08:00): "
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
    age = kw.pop("max_age_hours", 0)
    settings = FeedsSettings(dir=d, max_age_hours=age, settle_seconds=0, **kw)  # type: ignore[arg-type]
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


Expected = list[tuple[int, str | None, str | None, str, str]]  # line, column, value, reason, key


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        pytest.param("P9,ORG,A,B,a@x.org,O,S,active,", [], id="valid"),
        pytest.param("\nP9,ORG,A,B,a@x.org,O,S,active,", [], id="empty-line-is-not-a-row"),
        pytest.param(
            "P9,ORG,A,B,a@x.org,O,S,retired,",
            [(14, "status", "retired", "'retired' is not one of: active, leave, separated", "P9")],
            id="bad-enum",
        ),
        pytest.param(
            "P9,ORG,A,B,a@x.org,O,S,Active,",
            [(14, "status", "Active", "'Active' is not one of: active, leave, separated", "P9")],
            id="enum-is-exact-lower-case",
        ),
        pytest.param(
            "P9,ORG,A,B,a@x.org,O,S,separated,",
            [
                (
                    14,
                    "separated_on",
                    "",
                    "required when status is separated (the last day worked)",
                    "P9",
                )
            ],
            id="separated-needs-date",
        ),
        pytest.param(
            "P9,ORG,A,B,a@x.org,O,S,active,2026-11-20",
            [
                (
                    14,
                    "separated_on",
                    "2026-11-20",
                    "status active contradicts separated_on (only a separated worker has a "
                    "last day worked)",
                    "P9",
                )
            ],
            id="date-contradicts-status",
        ),
        pytest.param(
            "P9,ORG,A,B,a@x.org,O,S,separated,2026-02-30",
            [(14, "separated_on", "2026-02-30", "not a date (YYYY-MM-DD): '2026-02-30'", "P9")],
            id="bad-date",
        ),
        pytest.param(
            "P9,ORG,A,B,a@x.org,O,S,separated,20261125",
            [(14, "separated_on", "20261125", "not a date (YYYY-MM-DD): '20261125'", "P9")],
            id="basic-format-date",
        ),
        pytest.param(
            "P9,ORG,A,B,a@x.org,O,S,separated,2026-W48-3",
            [(14, "separated_on", "2026-W48-3", "not a date (YYYY-MM-DD): '2026-W48-3'", "P9")],
            id="week-date",
        ),
        pytest.param(
            "P9,ORG,A,B,a@x.org,O,S",
            [(14, None, "P9,ORG,A,B,a@x.org,O,S", "7 fields where the header has 9", "P9")],
            id="short-row-keeps-key-and-text",
        ),
        pytest.param(
            "P9,ORG,A,B,a@x.org,O,S,active,,extra",
            [
                (
                    14,
                    None,
                    "P9,ORG,A,B,a@x.org,O,S,active,,extra",
                    "10 fields where the header has 9",
                    "P9",
                )
            ],
            id="long-row-keeps-key-and-text",
        ),
        pytest.param(
            "P9\u200b,ORG,A,B,a@x.org,O,S,active,",
            [
                (
                    14,
                    "person_id",
                    "P9\u200b",
                    "contains invisible character(s) U+200B (ZERO WIDTH SPACE)",
                    "P9",
                )
            ],
            id="zero-width-space-in-key",
        ),
        pytest.param(
            "P9,ORG,\ufeffA,B,a@x.org,O,S,active,",
            [
                (
                    14,
                    "given_name",
                    "\ufeffA",
                    "contains invisible character(s) U+FEFF (ZERO WIDTH NO-BREAK SPACE)",
                    "P9",
                )
            ],
            id="mid-file-bom",
        ),
        pytest.param(
            "P9,ORG,A,B\tC,a@x.org,O,S,active,",
            [
                (
                    14,
                    "family_name",
                    "B\tC",
                    "contains invisible character(s) U+0009 (control character)",
                    "P9",
                )
            ],
            id="control-character",
        ),
        pytest.param(
            "P1001,ORG,A,B,a@x.org,O,S,active,",
            [
                (
                    2,
                    "person_id",
                    "P1001",
                    "duplicate person_id 'P1001', also at line(s) 14; every row with it is rejected",
                    "P1001",
                ),
                (
                    14,
                    "person_id",
                    "P1001",
                    "duplicate person_id 'P1001', also at line(s) 2; every row with it is rejected",
                    "P1001",
                ),
            ],
            id="duplicate-rejects-every-row",
        ),
        pytest.param(
            "P1001\u00ad,ORG,A,B,a@x.org,O,S,active,",
            [
                (
                    2,
                    "person_id",
                    "P1001",
                    "duplicate person_id 'P1001', also at line(s) 14; every row with it is rejected",
                    "P1001",
                ),
                (
                    14,
                    "person_id",
                    "P1001\u00ad",
                    "contains invisible character(s) U+00AD (SOFT HYPHEN); duplicate person_id "
                    "'P1001', also at line(s) 2; every row with it is rejected",
                    "P1001",
                ),
            ],
            id="invisible-character-hides-a-duplicate",
        ),
    ],
)
def test_worker_row_rules(feeds: Path, row: str, expected: Expected) -> None:
    path = feeds / "workers.csv"
    path.write_text(path.read_text() + row + "\n")
    fs = read(feeds)
    got = [
        (r.line, r.column, r.value, r.reason, r.key) for r in fs.rejected if r.file == "workers.csv"
    ]
    assert got == expected
    assert fs.health[FeedName.WORKERS].state is FeedState.OK
    if not expected:
        assert fs.workers[-1].person_id == "P9"


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
                "status": "'aproved' is not a request status (acting: approved; read and ignored: "
                "submitted, pending, rejected, withdrawn, denied, declined, cancelled, canceled, "
                "expired; see [feeds.requests.statuses] in the feed layout)",
            },
            id="typos-rejected-not-ignored",
        ),
        pytest.param(
            "Q1,Add,P1,R1,2026-11-01T10:00Z,2026-11-02,approved,cm,A,TRUE,True,true,S",
            {
                "action": "'Add' is not one of: add, change, disable",
                "cert_training": "not a boolean (true/false): 'TRUE'",
                "cert_profile_approved": "not a boolean (true/false): 'True'",
            },
            id="exact-case-enum-and-boolean",
        ),
        pytest.param(
            "Q1,add,P1,R1,2026-11-01 10:00:00-08:00,2026-11-02,approved,cm,A,true,true,true,S",
            {"submitted_at": INSTANT_FORM + "'2026-11-01 10:00:00-08:00'"},
            id="instant-with-space",
        ),
        pytest.param(
            "Q1,add,P1,R1,20261101T100000Z,2026-11-02,approved,cm,A,true,true,true,S",
            {"submitted_at": INSTANT_FORM + "'20261101T100000Z'"},
            id="instant-basic-format",
        ),
        pytest.param(
            "Q1,add,P1,R1,2026-11-01T10:00:00-0800,2026-11-02,approved,cm,A,true,true,true,S",
            {"submitted_at": INSTANT_FORM + "'2026-11-01T10:00:00-0800'"},
            id="offset-without-colon",
        ),
        pytest.param(
            "Q1,add,P1,R1,2026-11-01T10:00:00.250+00:00,2026-11-02,approved,cm,A,true,true,true,S",
            {},
            id="fraction-and-offset",
        ),
    ],
)
def test_request_row_rules(tmp_path: Path, feeds: Path, row: str, errors: dict[str, str]) -> None:
    (feeds / "requests.csv").write_text(REQUESTS_HEADER + row + "\n")
    fs = read(feeds)
    got = {r.column: r.reason for r in fs.rejected if r.file == "requests.csv"}
    assert got == errors
    assert all(r.line == 2 and r.key == "P1" for r in fs.rejected if r.file == "requests.csv")


@pytest.mark.parametrize(
    ("file", "row", "column", "reason"),
    [
        pytest.param(
            "organizations.csv",
            "ORG9,Nine,ESD,WDA-04",
            "kind",
            "'ESD' is not one of: esd, lwdb, worksource_partner, wioa_contractor, other",
            id="org-kind-exact",
        ),
        pytest.param(
            "contracts.csv",
            "W-9,LWDB04,wioa_services,DOL,,2025-06-01,2025-07-01,,,,,",
            "counterparty",
            "'DOL' is not a valid counterparty for a wioa_services contract (lwdb, esd, dol)",
            id="counterparty-exact",
        ),
        pytest.param(
            "contracts.csv",
            "W-9,LWDB04,WIOA_services,dol,,2025-06-01,2025-07-01,,,,,",
            "type",
            "'WIOA_services' is not one of: wioa_services, data_sharing",
            id="contract-type-exact",
        ),
        pytest.param(
            "training.csv",
            "P1001,MIS Basic,2025-9-10",
            "completed_on",
            "not a date (YYYY-MM-DD): '2025-9-10'",
            id="date-needs-two-digit-month",
        ),
        pytest.param(
            "separations.csv",
            "P1003,CBO1,2026-11-20T17:00:00,resignation",
            "separated_at",
            "instant '2026-11-20T17:00:00' needs a UTC offset (e.g. 2026-11-25T17:00:00-08:00)",
            id="instant-needs-offset",
        ),
        pytest.param(
            "separations.csv",
            "P1003,CBO1,2026-11-20t17:00:00z,resignation",
            "separated_at",
            INSTANT_FORM + "'2026-11-20t17:00:00z'",
            id="instant-upper-case-T-and-Z",
        ),
        pytest.param(
            "separations.csv",
            "P1003,CBO1,2026-11-20,resignation",
            "separated_at",
            INSTANT_FORM + "'2026-11-20'",
            id="date-is-not-an-instant",
        ),
    ],
)
def test_values_are_read_strictly(
    feeds: Path, file: str, row: str, column: str, reason: str
) -> None:
    path = feeds / file
    text = path.read_text() + row + "\n"
    path.write_text(text)
    line = text.count("\n")  # the appended row
    (rej,) = [r for r in read(feeds).rejected if r.file == file and r.line == line]
    assert (rej.line, rej.column, rej.reason, rej.key) == (
        line,
        column,
        reason,
        row.split(",")[1 if file == "contracts.csv" else 0],
    )


@pytest.mark.parametrize(
    ("file", "rows", "expected"),
    [
        pytest.param(
            "requests.csv",
            [
                "Q1,add,P1,R1,2026-11-01T10:00:00Z,2026-11-02,approved,cm,A,true,true,true,S",
                "Q2,add,P2,R1,2026-11-01T10:00:00Z,2026-11-02,approved,cm,A,true,true,true,S",
                "Q1,disable,P3,R1,2026-11-01T10:00:00Z,2026-11-02,approved,,,,,,S",
            ],
            [
                (2, "request_id", "P1", "also at line(s) 4"),
                (4, "request_id", "P3", "also at line(s) 2"),
            ],
            id="request-id-blocks-both-people",
        ),
        pytest.param(
            "contracts.csv",
            [
                "C1,ORG1,wioa_services,dol,,2025-06-01,2025-07-01,,,,,",
                "C1,ORG2,wioa_services,dol,,2025-06-01,2025-07-01,,,,,",
                "C1,ORG3,wioa_services,bogus,,2025-06-01,2025-07-01,,,,,",
                "C2,ORG1,wioa_services,dol,,2025-06-01,2025-07-01,,,,,",
            ],
            [
                (2, "contract_id", "ORG1", "also at line(s) 3, 4"),
                (3, "contract_id", "ORG2", "also at line(s) 2, 4"),
                (4, "counterparty", "ORG3", "not a valid counterparty"),
                (4, "contract_id", "ORG3", "also at line(s) 2, 3"),
            ],
            id="contract-id-blocks-every-org",
        ),
        pytest.param(
            "organizations.csv",
            ["ORG1,One,lwdb,WDA-04", "ORG1,One,other,WDA-04"],
            [
                (2, "org_id", "ORG1", "also at line(s) 3"),
                (3, "org_id", "ORG1", "also at line(s) 2"),
            ],
            id="org-id",
        ),
        pytest.param("ndas.csv", ["P1,2025-01-01", "P1,2025-02-01"], [], id="ndas-may-repeat"),
        pytest.param(
            "training.csv",
            ["P1,MIS Basic,2025-01-01", "P1,MIS Basic,2025-01-01"],
            [],
            id="training-may-repeat",
        ),
    ],
)
def test_duplicate_keys_reject_every_row(
    feeds: Path, file: str, rows: list[str], expected: list[tuple[int, str, str, str]]
) -> None:
    path = feeds / file
    path.write_text(path.read_text().splitlines()[0] + "\n" + "\n".join(rows) + "\n")
    fs = read(feeds)
    got = [r for r in fs.rejected if r.file == file]
    assert [(r.line, r.column, r.key) for r in got] == [e[:3] for e in expected]
    assert all(e[3] in r.reason for r, e in zip(got, expected, strict=True))


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


@pytest.mark.parametrize(
    ("rows", "detail"),
    [
        pytest.param(
            'P1,ORG,"Ann\nMarie",Lee,a@x.org,O,S,active,\nP2,ORG,B,C,b@x,O,S,active,\n',
            "workers.csv line 2, column given_name: line break inside a field",
            id="lf",
        ),
        pytest.param(
            'P0,ORG,Z,Y,z@x,O,S,active,\r\nP1,ORG,"Ann\r\nMarie",Lee,a@x.org,O,S,active,\r\n',
            "workers.csv line 3, column given_name: line break inside a field",
            id="crlf",
        ),
        pytest.param(
            'P1,ORG,"A\rB","Le\ne",a@x.org,O,S,active,\n',
            "workers.csv line 2, column given_name: line break inside a field",
            id="cr",
        ),
        pytest.param(
            'P1,ORG,Ann,"Lee\nJones",a@x.org,O,S,active,\n',
            "workers.csv line 2, column family_name: line break inside a field",
            id="later-field",
        ),
    ],
)
def test_line_break_in_a_field_makes_the_feed_unreadable(
    feeds: Path, rows: str, detail: str
) -> None:
    """No feed has multi-line values: one means damage that may have swallowed rows."""
    (feeds / "workers.csv").write_bytes((WORKERS_HEADER + rows).encode())
    fs = read(feeds)
    assert fs.health[FeedName.WORKERS].state is FeedState.UNREADABLE
    assert fs.health[FeedName.WORKERS].detail.startswith(detail)
    assert fs.workers == ()


def test_unattributable_row_keeps_its_rejections(feeds: Path) -> None:
    """The feed is unusable for everybody, and the row's errors are still reported."""
    path = feeds / "workers.csv"
    path.write_text(path.read_text() + ",ORG,A,B,a@x.org,O,S,retired,\n")
    fs = read(feeds)
    assert fs.health[FeedName.WORKERS].state is FeedState.UNREADABLE
    got = {(r.line, r.column, r.key) for r in fs.rejected if r.file == "workers.csv"}
    assert got == {(14, "person_id", ""), (14, "status", "")}
    assert fs.health[FeedName.WORKERS].rejected == 2


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
            lambda p: p.write_bytes(  # a whole header: the reader meets line 2 (streamed)
                b"person_id,org_id,given_name,family_name,email,office,supervisor_id,status,"
                b"separated_on\nP1,\xff\xfe\n"
            ),
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
        pytest.param(
            lambda p: p.write_text(
                WORKERS_HEADER + 'P1,ORG,"A,B,a@x.org,O,S,active,\nP2,ORG,A,B,a@x.org,O,S,active,\n'
            ),
            FeedState.UNREADABLE,
            "workers.csv line 2: malformed CSV (unexpected end of data)",
            id="unterminated-quote",
        ),
        pytest.param(
            lambda p: p.write_text(WORKERS_HEADER + 'P1,ORG,"A"x,B,a@x.org,O,S,active,\n'),
            FeedState.UNREADABLE,
            "workers.csv line 2: malformed CSV (',' expected after '\"')",
            id="text-after-closing-quote",
        ),
        pytest.param(
            lambda p: p.write_text(WORKERS_HEADER.replace("\n", ",status\n")),
            FeedState.UNREADABLE,
            "workers.csv line 1: duplicate column status in the header",
            id="duplicate-header",
        ),
        pytest.param(
            lambda p: p.write_text(
                "\ufeff\ufeff" + WORKERS_HEADER + "P1,ORG,A,B,a@x.org,O,S,active,\n"
            ),
            FeedState.UNREADABLE,
            "workers.csv line 1: header column 1 ('person_id') contains invisible character(s) "
            "U+FEFF",
            id="second-bom",
        ),
        pytest.param(
            lambda p: p.write_text(WORKERS_HEADER + "P1,ORG,A,B,a@x.org,O,S,active,\n,ORG,A\n"),
            FeedState.UNREADABLE,
            "workers.csv line 3: a rejected row with no readable person_id;",
            id="short-row-without-key",
        ),
        pytest.param(
            lambda p: p.write_text(
                WORKERS_HEADER + "P1,ORG,A,B,a@x.org,O,S,active,\n,ORG,A,B,a@x.org,O,S,active,\n"
            ),
            FeedState.UNREADABLE,
            "workers.csv line 3: a rejected row with no readable person_id;",
            id="empty-key",
        ),
        pytest.param(
            lambda p: p.write_text(
                WORKERS_HEADER
                + "\u200b,ORG,A,B,a@x.org,O,S,active,\nP1,ORG,A,B,a@x.org,O,S,active,\n"
            ),
            FeedState.UNREADABLE,
            "workers.csv line 2: a rejected row with no readable person_id;",
            id="invisible-key",
        ),
        pytest.param(
            lambda p: p.write_text(
                WORKERS_HEADER + "P1,ORG,A,B,a@x.org,O,S,active,\n,,,,,,,,\n  \n"
            ),
            FeedState.UNREADABLE,
            "workers.csv line 3: a rejected row with no readable person_id (also line(s) 4);",
            id="commas-and-blanks-are-rows",
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
    settings = FeedsSettings(
        dir=feeds, max_age_hours=0, shrink_share=0.2, shrink_min_rows=10, settle_seconds=0
    )
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
    settings = FeedsSettings(dir=feeds, mapping=layout, max_age_hours=0, settle_seconds=0)
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
        (
            '[feeds.ndas]\ncolumns = { person_id = "Id", signed_on = "Id" }\n',
            "feeds.ndas.columns: person_id and signed_on all map to the file column 'Id'",
        ),
        (
            '[feeds.workers]\ncolumns = { org_id = "person_id" }\n',
            "feeds.workers.columns: person_id and org_id all map to the file column 'person_id'",
        ),
        (
            '[feeds.training]\nfile = "ndas.csv"\n',
            "feeds.training.file: 'ndas.csv' is also the file of feeds.ndas (the default)",
        ),
        (
            '[feeds.ndas]\nfile = "x.csv"\n[feeds.training]\nfile = "./x.csv"\n',
            "feeds.ndas.file: 'x.csv' is also the file of feeds.training",
        ),
        ("[feeds\n", "cannot read feed layout"),
        (
            '[feeds.workers.statuses]\napproved = ["approved"]\n',
            "feeds.workers.statuses: only feeds.requests has statuses",
        ),
        (
            '[feeds.requests.statuses]\napproved = ["approved"]\nnot_approved = ["approved"]\n',
            "feeds.requests.statuses: approved cannot be both approved and not_approved",
        ),
        (
            "[feeds.requests.statuses]\napproved = []\n",
            "feeds.requests.statuses.approved: List should have at least 1 item",
        ),
        (
            '[feeds.requests.statuses]\napproved = [" ok"]\n',
            "a status word is printable, with no surrounding blanks",
        ),
    ],
)
def test_bad_layout_file_names_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "feeds.toml"
    path.write_text(text)
    with pytest.raises(FeedLayoutError, match=str(path)) as err:
        load_feed_layout(path)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("damage", "problems"),
    [
        pytest.param(lambda d: None, [], id="demo-is-fine"),
        pytest.param(
            lambda d: (d / "separations.csv").write_text("person_id,org_id,separated_at,reason\n"),
            [],
            id="empty-separations-is-fine",
        ),
        pytest.param(
            lambda d: (d / "separations.csv").unlink(),
            ["{d}/separations.csv: feed file not found"],
            id="missing-separations",
        ),
        pytest.param(
            lambda d: (d / "ndas.csv").write_text("person_id,signed,person_id\nP1,x\n"),
            ["{d}/ndas.csv line 1: duplicate column person_id in the header"],
            id="duplicate-column",
        ),
        pytest.param(
            lambda d: [
                (d / "ndas.csv").write_text("person_id,signed\n"),
                (d / "workers.csv").write_bytes(b"person_id,\xff\n"),
            ],
            [
                "{d}/workers.csv line 1: not UTF-8 (invalid start byte)",
                "{d}/ndas.csv line 1: missing column(s) signed_on",
            ],
            id="one-line-per-file",
        ),
    ],
)
def test_check_headers(feeds: Path, damage, problems: list[str]) -> None:  # type: ignore[no-untyped-def]
    """``misync config check`` reports every feed file that is missing or whose header
    lacks a column or repeats one, one line per problem naming the file."""
    damage(feeds)
    settings = FeedsSettings(dir=feeds, max_age_hours=0, settle_seconds=0)
    assert check_headers(settings) == [p.format(d=feeds) for p in problems]


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        pytest.param("ana.ortiz@example.org", None, id="valid"),
        pytest.param("josé.núñez@esd.wa.gov", None, id="internationalized-local-part"),
        pytest.param("", None, id="blank-is-no-address"),
        pytest.param("not-an-email", "An email address must have an @-sign.", id="no-at"),
        pytest.param("a@localhost", "It should have a period.", id="no-domain-dot"),
        pytest.param("a b@example.org", "invalid character", id="space"),
        pytest.param("Ana <a@example.org>", "display name", id="display-name"),
        pytest.param("a..b@example.org", "two periods in a row", id="double-dot"),
        pytest.param("a@example.org;b@example.org", "invalid character", id="two-addresses"),
    ],
)
def test_email_addresses_are_validated_without_dns(
    feeds: Path, email: str, reason: str | None
) -> None:
    path = feeds / "workers.csv"
    path.write_text(path.read_text() + f'P9,ORG,A,B,"{email}",O,S,active,\n')
    fs = read(feeds)
    got = [(r.line, r.column, r.value, r.key) for r in fs.rejected if r.file == "workers.csv"]
    if reason is None:
        assert got == []
        assert fs.workers[-1].email == email  # kept exactly as written
    else:
        assert got == [(14, "email", email, "P9")]
        (rej,) = (r for r in fs.rejected if r.file == "workers.csv")
        assert rej.reason.startswith(f"not a valid email address: {email!r}")
        assert reason in rej.reason


@pytest.mark.parametrize(
    ("layout", "status", "meaning"),
    [
        pytest.param(None, "approved", RequestStatus.APPROVED, id="approved-acts"),
        *(
            pytest.param(None, word, RequestStatus.NOT_APPROVED, id=f"{word}-is-read-and-ignored")
            for word in ("denied", "cancelled", "withdrawn", "pending", "rejected", "submitted")
        ),
        pytest.param(None, "aproved", None, id="a-typo-is-rejected"),
        pytest.param(None, "Denied", None, id="words-are-exact"),
        pytest.param(None, "yes", None, id="not-a-status-at-all"),
        pytest.param(
            'approved = ["approved", "granted"]\nnot_approved = ["void"]',
            "granted",
            RequestStatus.APPROVED,
            id="configured-acting-word",
        ),
        pytest.param(
            'approved = ["approved"]\nnot_approved = ["void"]',
            "void",
            RequestStatus.NOT_APPROVED,
            id="configured-ignored-word",
        ),
        pytest.param(
            'approved = ["approved"]\nnot_approved = ["void"]',
            "denied",
            None,
            id="the-configured-vocabulary-replaces-the-default",
        ),
    ],
)
def test_request_status_vocabulary(
    feeds: Path, tmp_path: Path, layout: str | None, status: str, meaning: RequestStatus | None
) -> None:
    """Only approved requests act; the other statuses of the vocabulary are read and
    ignored; a value that is no status at all is a rejected row (file, line, column)."""
    mapping = None
    if layout is not None:
        mapping = tmp_path / "feeds.toml"
        mapping.write_text(f"[feeds.requests.statuses]\n{layout}\n")
    row = f"Q1,add,P1,R1,2026-11-01T10:00Z,2026-11-02,{status},cm,A,true,true,true,S"
    (feeds / "requests.csv").write_text(REQUESTS_HEADER + row + "\n")
    fs = read(feeds, mapping=mapping)
    if meaning is None:
        assert fs.requests == ()
        (rej,) = [r for r in fs.rejected if r.file == "requests.csv"]
        assert (rej.file, rej.line, rej.column, rej.value, rej.key) == (
            "requests.csv",
            2,
            "status",
            status,
            "P1",
        )
        assert rej.reason.startswith(f"{status!r} is not a request status")
    else:
        assert [q.status for q in fs.requests] == [meaning]
        assert [r for r in fs.rejected if r.file == "requests.csv"] == []


@pytest.mark.parametrize(
    ("match", "extra", "clashing"),
    [
        pytest.param(IdMatch.CASE_IGNORE, "p1001,MIS Basic,2025-10-01", {2, 12}, id="case"),
        pytest.param(IdMatch.CASE_IGNORE, "P\uff11001,MIS Basic,2025-10-01", {2, 12}, id="nfkc"),
        pytest.param(IdMatch.CASE_IGNORE, "p1001,MIS Basic,2025-13-01", {2}, id="rejected-row"),
        pytest.param(IdMatch.CASE_EXACT, "p1001,MIS Basic,2025-10-01", set(), id="case-exact"),
        pytest.param(IdMatch.EXACT, "p1001,MIS Basic,2025-10-01", set(), id="exact"),
        pytest.param(IdMatch.CASE_IGNORE, "P1001,MIS Basic,2025-10-01", set(), id="same-spelling"),
    ],
)
def test_person_ids_one_under_the_targets_rule_are_rejected(
    feeds: Path, match: IdMatch, extra: str, clashing: set[int]
) -> None:
    """P1001 (workers.csv line 2, requests, training...) and a training row for p1001:
    under caseIgnoreMatch the directory holds them equal, so every row with either
    spelling is rejected, naming the others; under an exact rule they are two people."""
    path = feeds / "training.csv"
    path.write_text(path.read_text() + extra + "\n")  # line 12
    settings = FeedsSettings(dir=feeds, max_age_hours=0, settle_seconds=0)
    fs = read_feeds(settings, now=NOW, tz=LA, id_match=match)
    clash = [r for r in fs.rejected if "same person id" in r.reason]
    got = {r.line for r in clash if r.file in ("workers.csv", "training.csv")}
    assert got == clashing
    if clashing:
        assert [w for w in fs.workers if w.person_id == "P1001"] == []
        assert [q for q in fs.requests if q.person_id == "P1001"] == []
        worker = next(r for r in clash if r.file == "workers.csv")
        assert (worker.column, worker.value, worker.key) == ("person_id", "P1001", "P1001")
        assert "training.csv line 12" in worker.reason
        assert fs.health[FeedName.WORKERS].rejected == 1
    else:
        assert [w.person_id for w in fs.workers if w.person_id == "P1001"] == ["P1001"]
