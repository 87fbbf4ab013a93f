"""SCIM 2.0 target over scim2-client (httpx2 engine): the only module that imports it.

- Discovery first (RFC 7644 section 4): the ServiceProviderConfig says whether PATCH,
  ETags and filtering are supported; without PATCH, updates fall back to PUT of the
  whole resource (section 3.5.1); with ETags, writes send ``If-Match`` (section 3.14).
- Snapshot: ``GET /Users?startIndex=..&count=..`` until ``totalResults`` (section
  3.4.2.4); a failed page raises ``TargetUnavailableError``.
- Managed scope: ``target.scim.filter`` (default ``externalId pr``). It is sent to
  servers that support filtering and always checked again here with scim2-models'
  ``ScimFilter.match``, so a user outside it (a service account) is never an orphan,
  never read and never written, whatever the server does with filters.
- Disable/enable writes ``active``; nothing is ever DELETEd.
- Groups are found or created under ``group_lock`` (one lock shared by the targets of
  one ``Runtime``, i.e. by apply's workers), because RFC 7643 gives ``displayName`` no
  uniqueness: two workers creating the same new group would leave two groups of that
  name. A 409 on a Group create (a server that enforces uniqueness, or another process)
  means "it exists now": the member is added to the existing group.
- Errors: 429, 500, 502, 503, 504, timeouts and network errors are temporary (with
  ``Retry-After`` when the server sends it); 400, 401, 403, 404, 409, 412 and the rest
  are permanent. The SCIM error's ``scimType`` and ``detail`` go into ``detail``.
"""

from __future__ import annotations

import ssl
import threading
import time
import warnings
from collections.abc import Generator, Iterator, Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2
import structlog
from scim2_client import SCIMClientException
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import Context, PatchOp, SCIMException, ScimFilter, SearchRequest

from connector.mapping.types import AccountMapping
from connector.model.accounts import Account, Change, ChangeKind, DesiredAccount
from connector.settings import ConfigError, ScimSettings, read_secret
from connector.targets.base import (
    PermanentTargetError,
    TargetError,
    TargetNotRespondingError,
    TargetUnavailableError,
    TemporaryTargetError,
)
from connector.targets.scim.paths import from_payload, patch_value, to_payload

TEMPORARY_STATUS = frozenset({429, 500, 502, 503, 504})
QUERY = Context.RESOURCE_QUERY_RESPONSE


class _ClientCredentials(httpx2.Auth):
    """OAuth 2.0 client credentials (RFC 6749 section 4.4), token cached until expiry."""

    def __init__(
        self, token_url: str, client_id: str, secret: str, verify: Any, timeout: float
    ) -> None:
        self._url, self._id, self._secret, self._verify = token_url, client_id, secret, verify
        self._timeout = timeout
        self._token = ""
        self._expires = 0.0

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        if not self._token or time.monotonic() > self._expires - 30:
            resp = httpx2.post(
                self._url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self._id,
                    "client_secret": self._secret,
                },
                verify=self._verify,
                timeout=self._timeout,
            )
            resp.raise_for_status()
            body = resp.json()
            self._token = body["access_token"]
            self._expires = time.monotonic() + float(body.get("expires_in", 300))
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def _retry_after(response: Any) -> float | None:
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


def tls_reason(exc: BaseException) -> str | None:
    """The TLS failure (certificate, host name, handshake) behind ``exc``, if any."""
    seen: BaseException | None = exc
    for _ in range(10):  # the cause chain is short; never loop on a cycle
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {seen.verify_message or seen.reason or seen}"
        if isinstance(seen, ssl.SSLError):
            return f"TLS handshake failed: {seen.reason or seen}"
        seen = seen.__cause__ or seen.__context__
    return None


def check_scope_filter(expression: str) -> None:
    """Raise ValueError naming the setting when ``expression`` is not a SCIM filter."""
    try:
        ScimFilter(expression)
    except Exception as exc:
        raise ValueError(f"target.scim.filter: {expression!r} is not a SCIM filter: {exc}") from exc


def classify(exc: Exception, what: str, account_id: str | None) -> TargetError:
    """Map a scim2-client / scim2-models / httpx2 error onto the target error tree."""
    if isinstance(exc, SCIMException):
        status = int(getattr(exc, "status", 0) or 0)
        detail = f"status={status} scimType={exc.scim_type or '-'} detail={exc.detail or '-'}"
        response = getattr(exc, "source", None)  # scim2-client attaches the HTTP response
        if status in TEMPORARY_STATUS:
            return TemporaryTargetError(
                what, account_id=account_id, detail=detail, retry_after=_retry_after(response)
            )
        return PermanentTargetError(what, account_id=account_id, detail=detail)
    if isinstance(exc, SCIMClientException):
        source = getattr(exc, "source", None)
        code: int | None = getattr(source, "status_code", None)
        cause = exc.__cause__
        if code is None and isinstance(cause, httpx2.RequestError):  # network, timeout
            return TargetNotRespondingError(
                what, account_id=account_id, detail=f"{type(cause).__name__}: {cause}"
            )
        body = ""
        if source is not None and hasattr(source, "text"):
            body = source.text[:300]
        detail = f"status={code} {exc} {body}".strip()
        if code in TEMPORARY_STATUS:
            return TemporaryTargetError(
                what, account_id=account_id, detail=detail, retry_after=_retry_after(source)
            )
        return PermanentTargetError(what, account_id=account_id, detail=detail)
    if isinstance(exc, httpx2.RequestError):
        return TargetNotRespondingError(
            what, account_id=account_id, detail=f"{type(exc).__name__}: {exc}"
        )
    return PermanentTargetError(what, account_id=account_id, detail=repr(exc))


class ScimTarget:
    def __init__(
        self,
        settings: ScimSettings,
        mapping: AccountMapping,
        *,
        client: httpx2.Client | None = None,
        group_lock: threading.Lock | None = None,
    ) -> None:
        self._s = settings
        self._group_lock = group_lock
        self._m = mapping
        self._http = client
        self._scim: SyncSCIMClient | None = None
        self._paths = list(mapping.managed_attributes)
        self._scope: Any = None

    @property
    def description(self) -> str:
        return f"{self._s.base_url} {self._s.filter}"

    # -- connection ----------------------------------------------------------------------

    def _client(self) -> SyncSCIMClient:
        if self._scim is not None:
            return self._scim
        s = self._s
        try:
            if self._http is None:
                verify: Any = str(s.ca_file) if s.ca_file else s.verify_tls
                auth: httpx2.Auth | None = None
                headers = {}
                if s.oauth_token_url:
                    secret = read_secret(
                        s.oauth_client_secret_file, None, "target.scim.oauth_client_secret"
                    )
                    auth = _ClientCredentials(
                        s.oauth_token_url, s.oauth_client_id, secret, verify, s.timeout
                    )
                else:
                    headers["Authorization"] = "Bearer " + read_secret(
                        s.token_file, s.token, "target.scim.token"
                    )
                if s.client_cert_file is not None and s.client_key_file is not None:
                    # mutual TLS: httpx2 takes the client certificate inside an SSLContext
                    context = ssl.create_default_context(
                        cafile=str(s.ca_file) if s.ca_file else None
                    )
                    if not s.verify_tls:
                        context.check_hostname = False
                        context.verify_mode = ssl.CERT_NONE
                    context.load_cert_chain(str(s.client_cert_file), str(s.client_key_file))
                    verify = context
                self._http = httpx2.Client(
                    base_url=s.base_url,
                    headers=headers,
                    auth=auth,
                    verify=verify,
                    timeout=s.timeout,
                )
            client = SyncSCIMClient(self._http)
            structlog.get_logger("misync.target").info(
                "target.connecting",
                url=s.base_url,
                message=f"connecting to {s.base_url} (timeout {s.timeout:g} s)",
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                client.discover()
        except (ConfigError, ValueError) as exc:  # a secret file; a server's bad answer
            raise TargetUnavailableError(str(exc)) from exc
        except Exception as exc:
            reason = tls_reason(exc)
            if reason is not None:
                raise TargetUnavailableError(
                    f"TLS with {s.base_url} failed: {reason}", detail=f"{type(exc).__name__}"
                ) from exc
            err = classify(exc, f"SCIM discovery at {s.base_url} failed", None)
            raise TargetUnavailableError(str(err), detail=err.detail) from exc
        self._scim = client
        return client

    def _features(self) -> tuple[bool, bool, bool]:
        cfg = self._client().provider.config
        if cfg is None:
            return True, False, True
        return (
            bool(cfg.patch and cfg.patch.supported),
            bool(cfg.etag and cfg.etag.supported),
            bool(cfg.filter and cfg.filter.supported),
        )

    def _user(self) -> Any:
        return self._client().get_resource_model("User")

    def _in_scope(self, resource: Any) -> bool:
        if self._scope is None:
            try:
                bind: Any = ScimFilter  # bound to the User model discovered at run time
                self._scope = bind[self._user()](self._s.filter)
            except Exception as exc:
                raise TargetUnavailableError(
                    f"target.scim.filter {self._s.filter!r} does not fit the server's User"
                    f" schema: {exc}"
                ) from exc
        return bool(self._scope.match(resource))

    def _scoped(self, extra: str | None = None) -> str | None:
        """The filter to send with a user query, or None when the server cannot filter."""
        if not self._features()[2]:
            return None
        return f"({self._s.filter}) and {extra}" if extra else self._s.filter

    def _group(self) -> Any:
        return self._client().get_resource_model("Group")

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self._http = None
        self._scim = None

    # -- reading -------------------------------------------------------------------------

    def _pages(self, model: Any, what: str, flt: str | None = None) -> Iterator[Any]:
        client = self._client()
        start = 1
        while True:
            try:
                page: Any = client.query(
                    model,
                    query_parameters=SearchRequest.model_validate(
                        {"startIndex": start, "count": self._s.page_size, "filter": flt}
                    ),
                )
            except Exception as exc:
                err = classify(exc, f"reading {what} failed at startIndex {start}", None)
                raise TargetUnavailableError(str(err), detail=err.detail) from exc
            resources = list(page.resources or [])
            total = page.total_results or 0
            if not resources and start <= total:  # a capped or broken listing
                raise TargetUnavailableError(
                    f"reading {what} stopped before the end: no resources at startIndex "
                    f"{start} of totalResults {total}; a partial read is never planned from"
                )
            yield from resources
            start += len(resources)
            if not resources or start > total:
                return

    def _group_map(self) -> dict[str, frozenset[str]]:
        if not self._m.groups:
            return {}
        out: dict[str, set[str]] = {}
        for g in self._pages(self._group(), "groups"):
            for member in g.members or []:
                if member.value:
                    out.setdefault(member.value, set()).add(g.display_name or "")
        return {k: frozenset(v) for k, v in out.items()}

    def _account(self, resource: Any, groups: dict[str, frozenset[str]]) -> Account:
        payload = resource.model_dump(mode="json", scim_ctx=QUERY)
        attrs = from_payload(payload, self._paths)
        corr = attrs.get(self._m.correlation_attribute, ())
        logon = attrs.get(self._m.logon_attribute, ())
        active = payload.get(self._m.disable.attribute)
        disabled = (
            str(active).lower() == self._m.disable.disabled_value.lower()
            if active is not None
            else False
        )
        return Account(
            account_id=resource.id,
            correlation=corr[0] if corr else None,
            logon_id=logon[0] if logon else None,
            enabled=not disabled,
            attributes=attrs,
            groups=groups.get(resource.id, frozenset()),
        )

    def snapshot(self) -> Iterator[Account]:
        groups = self._group_map()
        for resource in self._pages(self._user(), "users", self._scoped()):
            if self._in_scope(resource):
                yield self._account(resource, groups)

    def _get(self, account_id: str) -> Any | None:
        try:
            return self._client().query(self._user(), account_id)
        except SCIMException as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise classify(exc, f"reading {account_id} failed", account_id) from exc
        except SCIMClientException as exc:
            if getattr(getattr(exc, "source", None), "status_code", None) == 404:
                return None
            raise classify(exc, f"reading {account_id} failed", account_id) from exc

    def _groups_of(self, account_id: str) -> dict[str, frozenset[str]]:
        if not self._m.groups:
            return {}
        names = frozenset(
            g.display_name or ""
            for g in self._pages(self._group(), "groups")
            if any(m.value == account_id for m in g.members or [])
        )
        return {account_id: names}

    def read(self, account_id: str) -> Account | None:
        resource = self._get(account_id)
        if resource is None or not self._in_scope(resource):
            return None
        return self._account(resource, self._groups_of(account_id))

    def _same_person(self, correlation: str | None, person_id: str) -> bool:
        """The mapping's matching rule (``correlation_match``), not the server filter's."""
        key = self._m.correlation_key
        return correlation is not None and key(correlation) == key(person_id)

    def find(self, person_id: str) -> Account | None:
        corr = self._m.correlation_attribute
        flt = self._scoped(f"{corr} eq {ScimFilter.quote(person_id)}")
        found = [
            r
            for r in self._pages(self._user(), "users", flt)
            if self._in_scope(r) and self._same_person(self._account(r, {}).correlation, person_id)
        ]
        if len(found) > 1:
            raise PermanentTargetError(
                f"{len(found)} users carry {corr}={person_id}", account_id=found[0].id
            )
        if not found:
            return None
        return self._account(found[0], self._groups_of(found[0].id))

    # -- writing -------------------------------------------------------------------------

    def create(self, desired: DesiredAccount) -> str:
        model = self._user()
        payload = to_payload({**desired.create_only, **desired.attributes})
        payload["schemas"] = list(self._m.object_classes)
        payload[self._m.disable.attribute] = desired.enabled
        try:
            resource = model.model_validate(payload, scim_ctx=Context.RESOURCE_CREATION_REQUEST)
        except Exception as exc:
            raise classify(exc, f"create {desired.logon_id} failed", None) from exc
        if not self._in_scope(resource):  # it would be created again on every run
            raise PermanentTargetError(
                f"create {desired.logon_id} refused: the mapping {self._m.name} builds a user"
                f" outside target.scim.filter ({self._s.filter})"
            )
        try:
            created = self._client().create(resource)
        except Exception as exc:
            raise classify(exc, f"create {desired.logon_id} failed", None) from exc
        for group in sorted(desired.groups):
            self._add_member(group, created.id)
        return str(created.id)

    def _patch(self, account_id: str, ops: list[tuple[str, str, Any]]) -> None:
        patch, etag, _ = self._features()
        model = self._user()
        try:
            if patch:
                kwargs: dict[str, Any] = {}
                if etag:
                    current = self._get(account_id)
                    if current is None:
                        raise PermanentTargetError(
                            f"{account_id} no longer exists", account_id=account_id
                        )
                    if current.meta and current.meta.version:
                        kwargs["headers"] = {"If-Match": current.meta.version}
                operations = [{"op": op, "path": path, "value": value} for op, path, value in ops]
                self._client().modify(model, account_id, _patch_op(model, operations), **kwargs)
                return
            current = self._get(account_id)
            if current is None:
                raise PermanentTargetError(f"{account_id} no longer exists", account_id=account_id)
            body = current.model_dump(mode="json", scim_ctx=QUERY)
            for op, path, value in ops:
                _apply_to_payload(body, op, path, value)
            body.pop("meta", None)
            resource = model.model_validate(body)  # keeps the id that names the PUT target
            put_kwargs: dict[str, Any] = {}
            if etag and current.meta and current.meta.version:
                put_kwargs["headers"] = {"If-Match": current.meta.version}
            self._client().replace(resource, **put_kwargs)
        except TargetError:
            raise
        except Exception as exc:
            raise classify(exc, f"update {account_id} failed", account_id) from exc

    def update(self, account_id: str, changes: Sequence[Change]) -> None:
        ops: list[tuple[str, str, Any]] = []
        for c in changes:
            if c.kind is not ChangeKind.ATTRIBUTE:
                continue
            path, value = patch_value(c.name, c.new)
            ops.append(("remove", path, None) if value in (None, []) else ("replace", path, value))
        if ops:
            self._patch(account_id, ops)
        for c in changes:
            if c.kind is ChangeKind.GROUPS:
                for g in sorted(set(c.new) - set(c.old)):
                    self._add_member(g, account_id)
                for g in sorted(set(c.old) - set(c.new)):
                    self._remove_member(g, account_id)

    def set_enabled(self, account_id: str, enabled: bool) -> None:
        self._patch(account_id, [("replace", self._m.disable.attribute, enabled)])

    # -- groups --------------------------------------------------------------------------

    def _find_group(self, name: str) -> Any | None:
        if self._features()[2]:
            flt = f"displayName eq {ScimFilter.quote(name)}"
            found = list(self._pages(self._group(), "groups", flt))
        else:
            found = [g for g in self._pages(self._group(), "groups") if g.display_name == name]
        return found[0] if found else None

    def _add_member(self, name: str, account_id: str) -> None:
        group = self._find_group(name)
        model = self._group()
        try:
            if group is None:
                with self._group_lock or nullcontext():
                    group = self._find_group(name)  # another worker may have made it meanwhile
                    if group is None:
                        group = self._create_group(model, name, account_id)
                        if group is None:
                            return
            if any(m.value == account_id for m in group.members or []):
                return
            member = {"value": account_id, "type": "User"}
            if self._features()[0]:
                op = {"op": "add", "path": "members", "value": [member]}
                self._client().modify(model, group.id, _patch_op(model, [op]))
            else:
                self._replace_members(model, group, lambda ms: [*ms, member])
        except Exception as exc:
            raise classify(exc, f"adding {account_id} to group {name} failed", account_id) from exc

    def _create_group(self, model: Any, name: str, account_id: str) -> Any | None:
        """Create the group with its first member; None when done. On a 409 (the group
        exists after all: created by someone else) the existing group is returned, so
        the caller adds the member to it."""
        resource = model.model_validate(
            {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": name,
                "members": [{"value": account_id, "type": "User"}],
            },
            scim_ctx=Context.RESOURCE_CREATION_REQUEST,
        )
        try:
            self._client().create(resource)
        except Exception as exc:
            if _status(exc) != 409:
                raise
            existing = self._find_group(name)
            if existing is None:
                raise
            return existing
        return None

    def _remove_member(self, name: str, account_id: str) -> None:
        group = self._find_group(name)
        if group is None or not any(m.value == account_id for m in group.members or []):
            return
        model = self._group()
        try:
            if self._features()[0]:
                op = {"op": "remove", "path": f"members[value eq {ScimFilter.quote(account_id)}]"}
                self._client().modify(model, group.id, _patch_op(model, [op]))
            else:
                self._replace_members(
                    model, group, lambda ms: [m for m in ms if m.get("value") != account_id]
                )
        except Exception as exc:
            raise classify(
                exc, f"removing {account_id} from group {name} failed", account_id
            ) from exc

    def _replace_members(self, model: Any, group: Any, edit: Any) -> None:
        """PUT fallback for membership (RFC 7644 section 3.5.1) when PATCH is not offered."""
        body = group.model_dump(mode="json", scim_ctx=QUERY)
        body.pop("meta", None)
        body["members"] = edit(list(body.get("members") or []))
        self._client().replace(model.model_validate(body))


def _status(exc: Exception) -> int | None:
    """The HTTP status of a scim2-client / scim2-models error, if it carries one."""
    if isinstance(exc, SCIMException):
        return int(getattr(exc, "status", 0) or 0) or None
    source = getattr(exc, "source", None)
    code = getattr(source, "status_code", None)
    return int(code) if code is not None else None


def _patch_op(model: Any, operations: list[dict[str, Any]]) -> Any:
    """A PatchOp for a discovered resource model (RFC 7644 section 3.5.2)."""
    ops = [{k: v for k, v in o.items() if not (k == "value" and v is None)} for o in operations]
    return PatchOp[model].model_validate(
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops}
    )


def _apply_to_payload(body: dict[str, Any], op: str, path: str, value: Any) -> None:
    """PUT fallback: apply one replace/remove to a full resource payload."""
    if path.startswith("urn:"):
        urn, attr = path.rsplit(":", 1)
        node = body.setdefault(urn, {})
        if op == "remove":
            node.pop(attr, None)
        else:
            node[attr] = value
        return
    if "." in path and not path.startswith("members"):
        attr, sub = path.split(".", 1)
        node = body.setdefault(attr, {})
        if op == "remove":
            node.pop(sub, None)
        else:
            node[sub] = value
        return
    if op == "remove":
        body.pop(path, None)
    else:
        body[path] = value
