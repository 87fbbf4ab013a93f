"""The SCIM adapter against a real scim2-server over HTTP, with faults injected on the
wire (a transport in front of the real one) for the error paths."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest

from connector import app, runs
from connector.devtools.scim_server import LocalScimServer
from connector.mapping import load_mapping
from connector.model import Change, ChangeKind, DesiredAccount
from connector.settings import ScimSettings, load_settings
from connector.targets import (
    PermanentTargetError,
    TargetUnavailableError,
    TemporaryTargetError,
)
from connector.targets.scim import ScimTarget
from tests.conftest import DEMO, ROOT

pytestmark = pytest.mark.scim
MAPPING = load_mapping(ROOT / "mappings" / "scim-core.toml")
NOW = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
Rule = Callable[[httpx2.Request], httpx2.Response | None]


class FaultTransport(httpx2.BaseTransport):
    """Forwards to the real server unless a rule answers first; records every method."""

    def __init__(self, rules: list[Rule] | None = None) -> None:
        self.inner = httpx2.HTTPTransport()
        self.rules = rules or []
        self.seen: list[tuple[str, str]] = []
        self.queries: list[httpx2.URL] = []  # the GETs, with their query parameters
        self.if_match: list[str | None] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self.seen.append((request.method, request.url.path))
        if request.method == "GET":
            self.queries.append(request.url)
        self.if_match.append(request.headers.get("If-Match"))
        for rule in self.rules:
            response = rule(request)
            if response is not None:
                return response
        return self.inner.handle_request(request)


def scim_error(
    status: int, scim_type: str | None = None, headers: dict[str, str] | None = None
) -> httpx2.Response:
    body: dict[str, Any] = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": str(status),
        "detail": f"injected {status}",
    }
    if scim_type:
        body["scimType"] = scim_type
    return httpx2.Response(
        status, headers={"Content-Type": "application/scim+json", **(headers or {})}, json=body
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalScimServer]:
    with LocalScimServer(tmp_path / "scim") as s:
        yield s


def make_target(
    server: LocalScimServer,
    transport: httpx2.BaseTransport | None = None,
    page_size: int = 50,
    scope: str = "externalId pr",
) -> ScimTarget:
    client = httpx2.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.token}"},
        transport=transport,
    )
    return ScimTarget(
        ScimSettings(base_url=server.url, page_size=page_size, filter=scope), MAPPING, client=client
    )


def person(pid: str, logon: str, enabled: bool = True) -> DesiredAccount:
    return DesiredAccount(
        pid,
        logon,
        enabled,
        {
            "externalId": (pid,),
            "userName": (logon,),
            "name.givenName": ("Ann",),
            "name.familyName": ("Lee",),
            "emails.value": (f"{logon}@x.org",),
            "title": ("case-manager",),
            "addresses.locality": ("Kent", "Renton"),
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": ("CBO1",),
        },
        {},
        frozenset({"mis-case-manager"}),
    )


def test_round_trip_and_paging(server: LocalScimServer) -> None:
    t = make_target(server, page_size=2)
    ids = [t.create(person(f"P{i}", f"u{i}", enabled=i % 2 == 0)) for i in range(5)]
    accounts = {a.correlation: a for a in t.snapshot()}
    assert sorted(accounts) == [f"P{i}" for i in range(5)]
    assert [accounts[f"P{i}"].enabled for i in range(5)] == [True, False, True, False, True]
    a = accounts["P0"]
    assert a.attributes["addresses.locality"] == ("Kent", "Renton")
    assert a.groups == frozenset({"mis-case-manager"})
    assert t.read(ids[0]) == a
    assert t.find("P0") == a
    assert t.find("nobody") is None
    assert t.read("no-such-id") is None


@pytest.mark.parametrize("server_filters", [True, False], ids=["server-filter", "client-filter"])
def test_managed_scope_is_the_filter(tmp_path: Path, server_filters: bool) -> None:
    """Users outside target.scim.filter are never read, found, or counted, whether the
    server evaluates the filter or (without filter support) misync alone does."""
    with LocalScimServer(tmp_path / "scim", filter=server_filters) as server:
        ids = server.seed(
            [
                {"userName": "etl-batch"},  # no externalId
                {"userName": "robot", "externalId": "R1", "userType": "service"},
            ],
            [],
        )
        wire = FaultTransport()
        t = make_target(server, wire, scope='externalId pr and not (userType eq "service")')
        mine = t.create(person("P1", "alee"))
        assert [a.account_id for a in t.snapshot()] == [mine]
        assert t.find("R1") is None
        assert t.read(ids["robot"]) is None
        assert t.read(ids["etl-batch"]) is None
        assert t.find("P1") is not None
        queries = [q for q in wire.queries if q.path.endswith("/Users")]
        assert all(("filter" in q.params) is server_filters for q in queries)


def test_a_create_outside_the_scope_is_refused(server: LocalScimServer) -> None:
    """It would be invisible to the next snapshot and created again on every run."""
    wire = FaultTransport()
    t = make_target(server, wire, scope='userType eq "MIS"')  # the mapping writes no userType
    with pytest.raises(PermanentTargetError, match=r"outside target\.scim\.filter"):
        t.create(person("P1", "alee"))
    assert ("POST", "/v2/Users") not in wire.seen


@pytest.mark.parametrize("patch", [True, False], ids=["patch", "put-fallback"])
def test_update_disable_enable(tmp_path: Path, patch: bool) -> None:
    with LocalScimServer(tmp_path / "s", patch=patch, etag=patch) as server:
        wire = FaultTransport()
        t = make_target(server, wire)
        uid = t.create(person("P1", "alee"))
        t.update(
            uid,
            [
                Change(ChangeKind.ATTRIBUTE, "title", ("case-manager",), ("supervisor",)),
                Change(
                    ChangeKind.ATTRIBUTE, "addresses.locality", ("Kent", "Renton"), ("Olympia",)
                ),
                Change(ChangeKind.GROUPS, "groups", ("mis-case-manager",), ("mis-supervisor",)),
            ],
        )
        t.set_enabled(uid, False)
        a = t.read(uid)
        assert a is not None
        assert (a.enabled, a.attributes["title"], a.attributes["addresses.locality"]) == (
            False,
            ("supervisor",),
            ("Olympia",),
        )
        assert a.groups == frozenset({"mis-supervisor"})
        t.set_enabled(uid, True)
        assert t.read(uid).enabled is True  # type: ignore[union-attr]
        writes = [i for i, (m, p) in enumerate(wire.seen) if "/Users/" in p and m != "GET"]
        assert {wire.seen[i][0] for i in writes} == ({"PATCH"} if patch else {"PUT"})
        # with ETags announced every write names the version it read (RFC 7644 section 3.14)
        assert all(wire.if_match[i] for i in writes) is patch


@pytest.mark.parametrize(
    ("answer", "error", "retry_after", "detail"),
    [
        pytest.param(
            lambda: scim_error(429, headers={"Retry-After": "5"}),
            TemporaryTargetError,
            5.0,
            "status=429",
            id="429-retry-after",
        ),
        pytest.param(lambda: scim_error(503), TemporaryTargetError, None, "status=503", id="503"),
        pytest.param(lambda: scim_error(500), TemporaryTargetError, None, "status=500", id="500"),
        pytest.param(
            lambda: scim_error(400, "invalidValue"),
            PermanentTargetError,
            None,
            "scimType=invalidValue",
            id="400",
        ),
        pytest.param(
            lambda: scim_error(409, "uniqueness"),
            PermanentTargetError,
            None,
            "scimType=uniqueness",
            id="409",
        ),
        pytest.param(
            lambda: scim_error(412, "invalidVers"),
            PermanentTargetError,
            None,
            "status=412",
            id="412",
        ),
    ],
)
def test_http_errors_map_to_temporary_or_permanent(
    server: LocalScimServer,
    answer: Callable[[], httpx2.Response],
    error: type[Exception],
    retry_after: float | None,
    detail: str,
) -> None:
    rules: list[Rule] = [
        lambda r: answer() if r.method == "POST" and r.url.path.endswith("/Users") else None
    ]
    t = make_target(server, FaultTransport(rules))
    with pytest.raises(error) as err:
        t.create(person("P1", "alee"))
    assert detail in err.value.detail  # type: ignore[attr-defined]
    if error is TemporaryTargetError:
        assert err.value.retry_after == retry_after  # type: ignore[attr-defined]


def test_a_listing_that_stops_short_is_a_partial_read(server: LocalScimServer) -> None:
    """A page with no resources while totalResults says more remain (a server capping its
    listings) must not read as the whole directory."""

    def capped(r: httpx2.Request) -> httpx2.Response | None:
        if (
            r.method == "GET"
            and r.url.path.endswith("/Users")
            and r.url.params.get("startIndex") == "3"
        ):
            body = {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                "totalResults": 5,
                "startIndex": 3,
                "itemsPerPage": 0,
                "Resources": [],
            }
            return httpx2.Response(
                200, headers={"Content-Type": "application/scim+json"}, json=body
            )
        return None

    t = make_target(server, page_size=2)
    for i in range(5):
        t.create(person(f"P{i}", f"u{i}"))
    short = make_target(server, FaultTransport([capped]), page_size=2)
    with pytest.raises(TargetUnavailableError, match="stopped before the end"):
        list(short.snapshot())


def test_timeout_is_temporary(server: LocalScimServer) -> None:
    def timeout(r: httpx2.Request) -> httpx2.Response | None:
        if r.method == "PATCH":
            raise httpx2.ReadTimeout("injected", request=r)
        return None

    t = make_target(server, FaultTransport([timeout]))
    uid = t.create(person("P1", "alee"))
    with pytest.raises(TemporaryTargetError):
        t.set_enabled(uid, False)


@pytest.fixture
def demo_world(
    tmp_path: Path, server: LocalScimServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    monkeypatch.setattr(app, "now", lambda: NOW)
    seed = json.loads((DEMO / "seed-scim.json").read_text(encoding="utf-8"))
    server.seed(seed["users"], seed["groups"])
    feeds = tmp_path / "feeds"
    shutil.copytree(DEMO / "feeds", feeds)
    token = tmp_path / "token"
    token.write_text(server.token)
    cfg = tmp_path / "misync.toml"
    cfg.write_text(f"""
[feeds]
dir = "{feeds}"
max_age_hours = 0
[target]
kind = "scim"
mapping = "{ROOT / "mappings" / "scim-core.toml"}"
[target.scim]
base_url = "{server.url}"
token_file = "{token}"
[guard]
max_unexplained_share = 0.5
[apply]
backoff_seconds = 0
max_attempts = 8
reenable_external_disables = true  # as config/demo/misync.toml: the story's P1007 lock
workers = 2
[state]
dir = "{tmp_path / "state"}"
""")
    return {"config": cfg, "server": server}


def test_429_storm_and_a_500_on_one_user_the_rest_is_applied(demo_world: dict[str, Any]) -> None:
    server: LocalScimServer = demo_world["server"]
    storm = {"left": 6}

    def rate_limited(r: httpx2.Request) -> httpx2.Response | None:
        if r.method in ("POST", "PATCH", "PUT") and storm["left"] > 0:
            storm["left"] -= 1
            return scim_error(429, headers={"Retry-After": "0"})
        return None

    def broken_user(r: httpx2.Request) -> httpx2.Response | None:
        if r.method == "POST" and r.url.path.endswith("/Users") and b'"blee"' in r.content:
            return scim_error(500)
        return None

    wire = FaultTransport([rate_limited, broken_user])
    rt = app.Runtime(load_settings(demo_world["config"]))
    rt.target_factory = lambda: ScimTarget(
        rt.settings.target.scim,
        rt.mapping,
        client=httpx2.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, transport=wire
        ),
    )
    result = runs.run_apply(rt)
    failed = [(o.action.op.value, o.action.person_id) for o in result.report.failed]
    assert failed == [("create", "P1002")]  # the 500 user, after its retries
    assert storm["left"] == 0  # every 429 was met, and survived
    ok = {o.action.person_id or o.account_id for o in result.report.outcomes if o.status == "ok"}
    assert {"P1001", "P1003", "P1004", "P1005", "P1007", "P1008"} <= ok
    assert not any(method == "DELETE" for method, _ in wire.seen)  # never DELETE

    rt.target_factory = None  # the network heals: the next run converges
    again = runs.run_apply(rt)
    assert [(o.action.op.value, o.action.person_id) for o in again.report.outcomes] == [
        ("create", "P1002")
    ]
    assert again.report.failed == ()


def test_oauth2_client_credentials(
    server: LocalScimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token endpoint is stubbed; the token it hands out is checked by the real server."""
    calls: list[dict[str, Any]] = []

    def token_endpoint(
        url: str, data: dict[str, str], verify: Any, timeout: float
    ) -> httpx2.Response:
        assert timeout == 30.0  # target.scim.timeout: a hung IdP never hangs the run
        calls.append({"url": url, **data})
        return httpx2.Response(
            200,
            json={"access_token": server.token, "expires_in": 3600},
            request=httpx2.Request("POST", url),
        )

    import connector.targets.scim.adapter as scim_adapter

    monkeypatch.setattr(scim_adapter.httpx2, "post", token_endpoint)
    secret = tmp_path / "client-secret"
    secret.write_text("s3cret\n")
    settings = ScimSettings(
        base_url=server.url,
        oauth_token_url="https://idp.example/token",
        oauth_client_id="misync",
        oauth_client_secret_file=secret,
    )
    t = ScimTarget(settings, MAPPING)
    t.create(person("P1", "alee"))
    assert [a.correlation for a in t.snapshot()] == ["P1"]
    assert calls == [
        {
            "url": "https://idp.example/token",
            "grant_type": "client_credentials",
            "client_id": "misync",
            "client_secret": "s3cret",
        }
    ]
    t.close()


def test_bad_token_is_unavailable_not_a_crash(server: LocalScimServer, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("wrong")
    t = ScimTarget(ScimSettings(base_url=server.url, token_file=token), MAPPING)
    with pytest.raises(TargetUnavailableError):
        list(t.snapshot())
