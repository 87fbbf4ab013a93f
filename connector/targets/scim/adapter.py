"""SCIM 2.0 target over scim2-client (httpx2 engine); the HTTP client, its authentication
and TLS, and the error classification are in ``connector.targets.scim.connection``.

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
- Errors: classified by ``connection.classify`` (429 and 5xx, timeouts and network
  errors temporary; the rest permanent).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from http import HTTPStatus
from typing import Any

import httpx2
from scim2_client import SCIMClientException
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import Context, PatchOp, SCIMException, ScimFilter, SearchRequest

from connector.mapping.types import AccountMapping
from connector.model.accounts import Account, Change, ChangeKind, DesiredAccount
from connector.settings import ScimSettings
from connector.targets.base import (
    PermanentTargetError,
    TargetError,
    TargetUnavailableError,
)
from connector.targets.scim.connection import classify, discover, open_http, status_of
from connector.targets.scim.paths import from_payload, patch_value, to_payload

QUERY = Context.RESOURCE_QUERY_RESPONSE


def check_scope_filter(expression: str) -> None:
    """Raise ValueError naming the setting when ``expression`` is not a SCIM filter."""
    try:
        ScimFilter(expression)
    except Exception as exc:
        raise ValueError(f"target.scim.filter: {expression!r} is not a SCIM filter: {exc}") from exc


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
        if self._scim is None:
            if self._http is None:
                self._http = open_http(self._s)
            self._scim = discover(self._s, self._http)
        return self._scim

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
            if getattr(exc, "status", None) == HTTPStatus.NOT_FOUND:
                return None
            raise classify(exc, f"reading {account_id} failed", account_id) from exc
        except SCIMClientException as exc:
            if getattr(getattr(exc, "source", None), "status_code", None) == HTTPStatus.NOT_FOUND:
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
            if status_of(exc) != HTTPStatus.CONFLICT:
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
