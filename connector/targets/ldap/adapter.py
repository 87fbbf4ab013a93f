"""LDAP target over ldap3: the only module that imports ldap3.

- Connections with ``raise_exceptions=True``: no operation fails silently. Writes and
  single-entry reads use a SAFE_SYNC connection. The bulk reads (``snapshot``,
  ``changed_since``) use a second, plain SYNC connection with ``check_names=False``:
  SAFE_SYNC deep-copies every response (a third of a 100k read) and name checking
  formats values this module never reads (it uses ``raw_attributes``). A plain SYNC
  connection is not thread-safe; it is safe here because a ``LdapTarget`` is used from
  one thread at a time (the ``Target`` contract) and the reader serves only the
  generator that is consuming it.
- Incremental reads (``IncrementalTarget``): entries and groups whose
  ``modifyTimestamp`` (RFC 4512, kept by every LDAP server) is at or after a mark. The
  mark is this host's clock minus ``target.ldap.clock_margin_seconds`` (10 minutes),
  taken before a read: a change the
  read may miss is stamped later by the server, as long as the two clocks agree within
  the margin (both NTP-synced). A server that keeps no ``modifyTimestamp`` on the base
  entry gives no mark, so every cycle is a full snapshot.
- Never RESTARTABLE (it re-sends a write it was running); retries belong to the
  executor, which knows whether a write is safe to repeat.
- No process-wide ldap3 configuration; one connection per ``LdapTarget``.
- No delete operation anywhere: accounts are disabled as the mapping declares, groups
  keep a placeholder member (the group's own DN) when their last member leaves
  (``groupOfNames`` requires one).
- Group membership is idempotent under concurrency: when two workers both find a group
  missing and both create it, the loser's ``entryAlreadyExists`` (68) means "it exists
  now", and the member is added to it. 389 DS answers a modify of a group that does not
  exist with insufficientAccessRights (50) rather than noSuchObject (32) when the bind
  DN has no rights on it: a base search then tells a missing group from a refusal.
- The snapshot is a paged search (RFC 2696) streamed page by page; an error on any
  page raises ``TargetUnavailableError``, so a partial read never looks complete.
"""

from __future__ import annotations

import contextlib
import re
import ssl
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import ldap3
import structlog
from ldap3.core import exceptions as lx
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from connector.mapping.types import AccountMapping, DisableMatch, DisableRule
from connector.model.accounts import Account, Change, ChangeKind, DesiredAccount, Values
from connector.settings import ConfigError, LdapSettings
from connector.targets.base import (
    PermanentTargetError,
    TargetChanges,
    TargetError,
    TargetNotRespondingError,
    TargetUnavailableError,
    TemporaryTargetError,
)

PAGED_OID = "1.2.840.113556.1.4.319"
# LDAP result codes that may succeed later (RFC 4511 4.1.9).
TEMPORARY_CODES = frozenset({3, 11, 51, 52})  # timeLimit, adminLimit, busy, unavailable
NO_SUCH_ATTRIBUTE, ALREADY_EXISTS_VALUE, NO_SUCH_OBJECT = 16, 20, 32
# A read stopped by the server's limits on the bind DN: which limit, and what lifts it
# (deploy/ldap-acl/: 389ds-misync.ldif and openldap-misync.conf set them).
LIMIT_HINTS = {
    4: (
        "The size limit of {who} is below the managed scope's size: lift it for that "
        "account (389 DS: nsSizeLimit: -1 and nsPagedSizeLimit: -1 on its entry; "
        "OpenLDAP: limits dn.exact=... size=unlimited size.pr=unlimited)"
    ),
    11: (
        "An administrative limit of {who} was reached: on 389 DS its lookthrough limit "
        "(nsslapd-lookthroughlimit, 5000 entries by default); set nsLookThroughLimit: -1 "
        "and nsPagedLookThroughLimit: -1 (and nsSizeLimit: -1, nsPagedSizeLimit: -1) on "
        "its entry, as deploy/ldap-acl/389ds-misync.ldif does; on OpenLDAP, "
        "limits dn.exact=... size.unchecked=unlimited"
    ),
}
LIMIT_CODES = frozenset(LIMIT_HINTS)
# Above this many changed accounts, one read of every group beats a search per account.
GROUPS_PER_ACCOUNT_MAX = 50
_SEARCH_RES_ENTRY = 4  # the LDAP protocolOp tag of a searchResEntry (RFC 4511)


def norm_dn(dn: str) -> str:
    """Case- and space-insensitive form of a DN for comparisons."""
    low = dn.lower()
    if " " not in low and low.isprintable():  # no white space to drop (all of it but " "
        return low  # is non-printable): the form is the lower-cased DN itself
    return ",".join("=".join(part.strip() for part in rdn.split("=", 1)) for rdn in low.split(","))


def is_disabled(rule: DisableRule, values: Values) -> bool:
    """Read the mapping's "disabled" flag from the attribute's values."""
    present = [v for v in values if v != ""]
    if rule.match is DisableMatch.PRESENT:
        return bool(present)
    return any(v.lower() == rule.disabled_value.lower() for v in present)


class LdapTarget:
    def __init__(self, settings: LdapSettings, mapping: AccountMapping) -> None:
        self._s = settings
        self._m = mapping
        self._conn: ldap3.Connection | None = None  # SAFE_SYNC: writes, single reads
        self._reader: ldap3.Connection | None = None  # plain SYNC: bulk reads only
        self._base = norm_dn(settings.base_dn)
        names = [*mapping.managed_attributes, mapping.disable.attribute]
        self._spelling = {n.lower(): n for n in names}
        self._spelled: dict[str, str | None] = {}  # attribute name as sent -> as mapped
        self._fetch = list(dict.fromkeys(names))

    @property
    def description(self) -> str:
        return f"{self._s.url} {self._s.base_dn}"

    # -- connection ----------------------------------------------------------------------

    def _connection(self) -> ldap3.Connection:
        if self._conn is None:
            self._conn = self._open(ldap3.SAFE_SYNC, check_names=True)
        return self._conn

    def _bulk_reader(self) -> ldap3.Connection:
        if self._reader is None:
            self._reader = _lean_entries(self._open(ldap3.SYNC, check_names=False, lean=True))
        return self._reader

    def _open(self, strategy: Any, *, check_names: bool, lean: bool = False) -> ldap3.Connection:
        s = self._s
        endpoint = s.endpoint  # RFC 4516 forms: a trailing slash, a DN, [IPv6], default ports
        tls = None
        if endpoint.use_ssl or s.start_tls:
            tls = ldap3.Tls(
                validate=ssl.CERT_REQUIRED if s.verify_tls else ssl.CERT_NONE,
                ca_certs_file=str(s.ca_file) if s.ca_file else None,
                local_certificate_file=str(s.client_cert_file) if s.client_cert_file else None,
                local_private_key_file=str(s.client_key_file) if s.client_key_file else None,
            )
        try:
            password = s.bind_password() if s.bind_dn else None
        except ConfigError as exc:  # the password file
            raise TargetUnavailableError(str(exc)) from exc
        try:
            server = ldap3.Server(
                endpoint.host,
                port=endpoint.port,
                use_ssl=endpoint.use_ssl,
                connect_timeout=s.connect_timeout,
                get_info=ldap3.NONE,
                tls=tls,
            )
            # a client certificate and no bind DN: the directory names us from the
            # certificate (SASL EXTERNAL, RFC 4422 appendix A), after the TLS handshake
            external: dict[str, Any] = {}
            if s.client_cert_file is not None and not s.bind_dn:
                # an empty authzid: be who the certificate says (None would leave slapd
                # waiting for it: saslBindInProgress)
                external = {
                    "authentication": ldap3.SASL,
                    "sasl_mechanism": ldap3.EXTERNAL,
                    "sasl_credentials": "",
                }
            conn = ldap3.Connection(
                server,
                user=s.bind_dn or None,
                password=password,
                **external,
                client_strategy=strategy,
                raise_exceptions=True,
                receive_timeout=int(s.receive_timeout),  # ldap3 packs it as a C long
                auto_referrals=False,
                read_only=False,
                check_names=check_names,
                # the lean reader keeps raw values only: nothing may touch "attributes"
                return_empty_attributes=not lean,
                auto_range=not lean,
            )
            # say what we wait for: an unreachable host is otherwise silent until the timeout
            structlog.get_logger("misync.target").info(
                "target.connecting",
                url=s.url,
                message=f"connecting to {s.url} (timeout {s.connect_timeout:g} s to connect, "
                f"{s.receive_timeout:g} s per answer)",
            )
            conn.open()
            # connecting is the TCP connect, TLS and the bind: each answer within
            # connect_timeout. A stalled server (SIGSTOPped, hung) accepts the TCP
            # connection from its listen backlog and never answers: that costs
            # connect_timeout, not receive_timeout (meant for a slow answer to a big
            # search), and the executor counts it towards the circuit breaker like a write
            # with no answer.
            if s.start_tls:
                with _answer_within(conn, s.connect_timeout, s.receive_timeout):
                    conn.start_tls()
        except lx.LDAPException as exc:
            # (ssl.SSLCertVerificationError is also a ValueError: catch ldap3's first.)
            tls_reason = _tls_reason(exc) if tls is not None else None
            if tls_reason is not None:
                how = "StartTLS" if s.start_tls else "TLS (ldaps)"
                raise TargetUnavailableError(
                    f"{how} with {s.url} failed: {tls_reason}", detail=_detail(exc)
                ) from exc
            raise TargetUnavailableError(f"cannot connect to {s.url}", detail=_detail(exc)) from exc
        try:
            with _answer_within(conn, s.connect_timeout, s.receive_timeout):
                conn.bind()
        except lx.LDAPException as exc:
            with contextlib.suppress(lx.LDAPException):
                conn.unbind()
            if s.bind_dn:  # name all three: the one that is wrong is among them
                source = (
                    f"the password in {s.password_file}"
                    if s.password_file is not None
                    else "the password from MISYNC_TARGET__LDAP__PASSWORD"
                )
                who = f"as {s.bind_dn} with {source}"
            else:
                who = f"with the client certificate {s.client_cert_file} (SASL EXTERNAL)"
            raise TargetUnavailableError(
                f"cannot bind to {s.url} {who}", detail=_detail(exc)
            ) from exc
        return conn

    def close(self) -> None:
        for conn in (self._conn, self._reader):
            if conn is not None:
                with contextlib.suppress(lx.LDAPException):
                    conn.unbind()
        self._conn = self._reader = None

    # -- reading -------------------------------------------------------------------------

    def _paged(
        self, base: str, flt: str, scope: Any, attrs: list[str], *, bulk: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Every entry of a paged search. ``bulk`` reads over the plain SYNC reader."""
        conn = self._bulk_reader() if bulk else self._connection()
        cookie: bytes | None = None
        while True:
            try:
                if bulk:
                    conn.search(
                        base,
                        flt,
                        search_scope=scope,
                        attributes=attrs,
                        paged_size=self._s.page_size,
                        paged_cookie=cookie,
                    )
                    result, response = conn.result, conn.response
                    conn.response = None  # the page is ours now; ldap3 keeps no other copy
                else:
                    _ok, result, response, _req = conn.search(
                        base,
                        flt,
                        search_scope=scope,
                        attributes=attrs,
                        paged_size=self._s.page_size,
                        paged_cookie=cookie,
                    )
            except lx.LDAPNoSuchObjectResult as exc:
                raise TargetUnavailableError(
                    f"search base {base} does not exist", detail=_detail(exc)
                ) from exc
            except lx.LDAPException as exc:
                self.close()
                if isinstance(exc, lx.LDAPOperationResult) and exc.result in LIMIT_CODES:
                    raise TargetUnavailableError(
                        self._limit_message(base, exc.result, exc.description),
                        detail=_detail(exc),
                    ) from exc
                raise TargetUnavailableError(f"reading {base} failed", detail=_detail(exc)) from exc
            code = result.get("result", 0)
            if code != 0:  # ldap3 does not raise for sizeLimitExceeded / timeLimitExceeded
                self.close()
                raise TargetUnavailableError(
                    self._limit_message(base, code, str(result.get("description", code))),
                    detail=str(result.get("message") or ""),
                )
            for item in response or ():
                if item.get("type") == "searchResEntry":
                    yield item
            cookie = result.get("controls", {}).get(PAGED_OID, {}).get("value", {}).get("cookie")
            if not cookie:
                return

    def _limit_message(self, base: str, code: int, description: str) -> str:
        """Why a read stopped, and for the server's limits on the bind DN, what to set."""
        head = (
            f"reading {base} stopped before the end: the server answered {description} "
            f"(result {code}); a partial read is never planned from"
        )
        hint = LIMIT_HINTS.get(code)
        if hint is None:
            return head
        who = self._s.bind_dn or "the account misync binds as"
        return f"{head}. {hint.format(who=who)}"

    def _scope(self) -> Any:
        return ldap3.LEVEL if self._s.scope == "one" else ldap3.SUBTREE

    def _groups(self) -> dict[str, frozenset[str]]:
        """member DN (normalized) -> group names, read once per snapshot."""
        if not self._m.groups or not self._s.group_base_dn:
            return {}
        out: dict[str, set[str]] = defaultdict(set)
        member = self._m.group_member_attribute
        flt = f"(objectClass={escape_filter_chars(self._m.group_object_class)})"
        for item in self._paged(self._s.group_base_dn, flt, ldap3.LEVEL, ["cn", member], bulk=True):
            raw = item.get("raw_attributes", {})
            names = _decode(_get(raw, "cn"))
            for m in _decode(_get(raw, member)):
                out[norm_dn(m)].update(names)
        # one frozenset per distinct combination of groups (a handful), shared by members
        shared: dict[frozenset[str], frozenset[str]] = {}
        return {k: shared.setdefault(fs, fs) for k, v in out.items() for fs in (frozenset(v),)}

    def _account(self, item: dict[str, Any], groups: dict[str, frozenset[str]]) -> Account:
        raw = item.get("raw_attributes", {})
        attrs: dict[str, Values] = {}
        spelled = self._spelled
        for key, vals in raw.items():
            if key not in spelled:  # each attribute name the server sends, once
                spelled[key] = self._spelling.get(key.lower())
            name = spelled[key]
            if name is not None and vals:  # ldap3 lists requested-but-absent attributes as []
                attrs[name] = _decode(vals)
        m = self._m
        disabled = is_disabled(m.disable, attrs.pop(m.disable.attribute, ()))
        corr = attrs.get(m.correlation_attribute, ())
        logon = attrs.get(m.logon_attribute, ())
        dn: str = item["dn"]
        return Account(
            account_id=dn,
            correlation=corr[0] if corr else None,
            logon_id=logon[0] if logon else None,
            enabled=not disabled,
            attributes=attrs,
            groups=groups.get(norm_dn(dn), frozenset()),
        )

    def snapshot(self) -> Iterator[Account]:
        groups = self._groups()
        pages = self._paged(self._s.base_dn, self._s.filter, self._scope(), self._fetch, bulk=True)
        for item in pages:
            yield self._account(item, groups)

    # -- incremental reads ---------------------------------------------------------------

    def high_water_mark(self) -> str | None:
        items = list(
            self._paged(self._s.base_dn, "(objectClass=*)", ldap3.BASE, ["modifyTimestamp"])
        )
        raw = items[0].get("raw_attributes", {}) if items else {}
        if not _get(raw, "modifyTimestamp"):
            return None  # the server keeps no timestamps here: no incremental reads
        margin = timedelta(seconds=self._s.clock_margin_seconds)
        return (datetime.now(UTC) - margin).strftime("%Y%m%d%H%M%SZ")

    def changed_since(self, mark: str) -> TargetChanges:
        since = f"(modifyTimestamp>={escape_filter_chars(mark)})"
        flt = f"(&{self._s.filter}{since})"
        items = list(self._paged(self._s.base_dn, flt, self._scope(), self._fetch, bulk=True))
        groups: dict[str, frozenset[str]] | None = None
        changed: list[dict[str, Any]] = []
        if self._m.groups and self._s.group_base_dn:
            oc = escape_filter_chars(self._m.group_object_class)
            gflt = f"(&(objectClass={oc}){since})"
            changed = list(self._paged(self._s.group_base_dn, gflt, ldap3.LEVEL, ["cn"]))
            if changed or len(items) > GROUPS_PER_ACCOUNT_MAX:
                groups = self._groups()
        if groups is not None:
            accounts = tuple(self._account(item, groups) for item in items)
        else:
            accounts = tuple(self._account(i, self._groups_of(i["dn"])) for i in items)
        if groups is None or not changed:
            return TargetChanges(accounts)
        index = groups
        return TargetChanges(
            accounts, groups_of=lambda account_id: index.get(norm_dn(account_id), frozenset())
        )

    def _in_scope(self, dn: str) -> bool:
        n = norm_dn(dn)
        if not n.endswith("," + self._base):
            return False
        return self._s.scope == "subtree" or n.split(",", 1)[1] == self._base

    def read(self, account_id: str) -> Account | None:
        if not self._in_scope(account_id):
            return None
        try:
            items = list(self._paged(account_id, self._s.filter, ldap3.BASE, self._fetch))
        except TargetUnavailableError as exc:
            if "does not exist" in str(exc):
                return None
            raise
        if not items:
            return None
        return self._account(items[0], self._groups_of(account_id))

    def _groups_of(self, dn: str) -> dict[str, frozenset[str]]:
        if not self._m.groups or not self._s.group_base_dn:
            return {}
        member = self._m.group_member_attribute
        oc = escape_filter_chars(self._m.group_object_class)
        flt = f"(&(objectClass={oc})({member}={escape_filter_chars(dn)}))"
        names: set[str] = set()
        for item in self._paged(self._s.group_base_dn, flt, ldap3.LEVEL, ["cn"]):
            names.update(_decode(_get(item.get("raw_attributes", {}), "cn")))
        return {norm_dn(dn): frozenset(names)}

    def find(self, person_id: str) -> Account | None:
        corr = escape_filter_chars(self._m.correlation_attribute)
        flt = f"(&{self._s.filter}({corr}={escape_filter_chars(person_id)}))"
        items = list(self._paged(self._s.base_dn, flt, self._scope(), self._fetch))
        if len(items) > 1:
            raise PermanentTargetError(
                f"{len(items)} accounts carry {self._m.correlation_attribute}={person_id}",
                account_id=items[0]["dn"],
            )
        if not items:
            return None
        return self._account(items[0], self._groups_of(items[0]["dn"]))

    # -- writing -------------------------------------------------------------------------

    def _write(self, what: str, dn: str, call: Any, *args: Any, **kwargs: Any) -> None:
        try:
            conn = self._connection()
        except TargetUnavailableError as exc:
            raise TargetNotRespondingError(str(exc), account_id=dn, detail=exc.detail) from exc
        try:
            call(conn, *args, **kwargs)
        except lx.LDAPOperationResult as exc:
            err: type[TargetError] = (
                TemporaryTargetError if exc.result in TEMPORARY_CODES else PermanentTargetError
            )
            raise err(f"{what} {dn} failed", account_id=dn, detail=_detail(exc)) from exc
        except lx.LDAPException as exc:  # connection lost, timeout: reconnect next time
            self.close()
            raise TargetNotRespondingError(
                f"{what} {dn} failed", account_id=dn, detail=_detail(exc)
            ) from exc

    def create(self, desired: DesiredAccount) -> str:
        m = self._m
        dn = f"{m.rdn_attribute}={escape_rdn(desired.logon_id)},{self._s.base_dn}"
        attrs: dict[str, list[str]] = {"objectClass": list(m.object_classes)}
        for name, values in {**desired.create_only, **desired.attributes}.items():
            vals = [v for v in values if v != ""]
            if vals:
                attrs[name] = vals
        if not desired.enabled:
            attrs[m.disable.attribute] = [m.disable.disabled_value]
        self._write("create", dn, lambda c: c.add(dn, attributes=attrs))
        for group in sorted(desired.groups):
            self._add_member(group, dn)
        return dn

    def update(self, account_id: str, changes: Sequence[Change]) -> None:
        mods = {
            c.name: [(ldap3.MODIFY_REPLACE, [v for v in c.new if v != ""])]
            for c in changes
            if c.kind is ChangeKind.ATTRIBUTE
        }
        if mods:
            self._write("update", account_id, lambda c: c.modify(account_id, mods))
        for c in changes:
            if c.kind is ChangeKind.GROUPS:
                for g in sorted(set(c.new) - set(c.old)):
                    self._add_member(g, account_id)
                for g in sorted(set(c.old) - set(c.new)):
                    self._remove_member(g, account_id)

    def set_enabled(self, account_id: str, enabled: bool) -> None:
        rule = self._m.disable
        if enabled:
            values = [] if rule.enabled_value is None else [rule.enabled_value]
        else:
            values = [rule.disabled_value]
        mods = {rule.attribute: [(ldap3.MODIFY_REPLACE, values)]}
        what = "enable" if enabled else "disable"
        self._write(what, account_id, lambda c: c.modify(account_id, mods))

    # -- groups --------------------------------------------------------------------------

    def _group_dn(self, name: str) -> str:
        return f"cn={escape_rdn(name)},{self._s.group_base_dn}"

    def _add_member(self, group: str, dn: str) -> None:
        gdn = self._group_dn(group)
        attr = self._m.group_member_attribute

        def add(c: ldap3.Connection) -> None:
            try:
                c.modify(gdn, {attr: [(ldap3.MODIFY_ADD, [dn])]})
            except (lx.LDAPNoSuchObjectResult, lx.LDAPInsufficientAccessRightsResult) as exc:
                # 389 DS answers 50, not 32, for a group that does not exist (_exists)
                if isinstance(exc, lx.LDAPInsufficientAccessRightsResult) and _exists(c, gdn):
                    raise
                try:
                    c.add(
                        gdn,
                        attributes={
                            "objectClass": [self._m.group_object_class],
                            "cn": [group],
                            attr: [dn],
                        },
                    )
                except lx.LDAPEntryAlreadyExistsResult:
                    # another worker created the group between our modify and our add
                    # (result 68): it exists now, so add the member to it
                    try:
                        c.modify(gdn, {attr: [(ldap3.MODIFY_ADD, [dn])]})
                    except lx.LDAPAttributeOrValueExistsResult:
                        return
            except lx.LDAPAttributeOrValueExistsResult:
                return
            # drop the placeholder once the group has a real member
            with contextlib.suppress(
                lx.LDAPNoSuchAttributeResult, lx.LDAPObjectClassViolationResult
            ):
                c.modify(gdn, {attr: [(ldap3.MODIFY_DELETE, [gdn])]})

        self._write(f"add to group {group}", dn, add)

    def _remove_member(self, group: str, dn: str) -> None:
        gdn = self._group_dn(group)
        attr = self._m.group_member_attribute

        def remove(c: ldap3.Connection) -> None:
            try:
                c.modify(gdn, {attr: [(ldap3.MODIFY_DELETE, [dn])]})
            except (lx.LDAPNoSuchObjectResult, lx.LDAPNoSuchAttributeResult):
                return
            except lx.LDAPInsufficientAccessRightsResult:
                if _exists(c, gdn):
                    raise
                return  # 389 DS: no such group (see _exists)
            except lx.LDAPObjectClassViolationResult:  # the last member: keep a placeholder
                c.modify(gdn, {attr: [(ldap3.MODIFY_REPLACE, [gdn])]})

        self._write(f"remove from group {group}", dn, remove)


def _exists(conn: ldap3.Connection, dn: str) -> bool:
    """Whether ``dn`` exists for this bind DN. 389 DS answers a modify of an entry that
    does not exist with insufficientAccessRights (50), not noSuchObject (32), to a bind
    DN with no rights on it, and a base search of it with no entry (success): ask."""
    try:
        _ok, _result, response, _req = conn.search(
            dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["1.1"]
        )
    except lx.LDAPNoSuchObjectResult:
        return False
    return any(r.get("type") == "searchResEntry" for r in response or ())


def _lean_entries(conn: ldap3.Connection) -> ldap3.Connection:
    """Have this connection turn each search entry into ``dn`` and ``raw_attributes``
    only, from ldap3's own decoded message (its fast BER decoder still does the
    decoding). ldap3 otherwise also builds a formatted ``attributes`` dict per entry and
    runs every value and name through its configurable codec: ~40% of a 100k read, for
    data this module never reads. Other messages (the result and its paging cookie) go
    through ldap3 unchanged. Per connection: nothing process-wide is altered. Needs
    ``return_empty_attributes`` and ``auto_range`` off (they read ``attributes``)."""
    strategy: Any = conn.strategy
    original = strategy.decode_response_fast

    def decode(message: dict[str, Any]) -> dict[str, Any]:
        if message["protocolOp"] != _SEARCH_RES_ENTRY:
            return cast(dict[str, Any], original(message))
        payload = message["payload"]
        return {
            "type": "searchResEntry",
            "dn": bytes(payload[0][3]).decode("utf-8"),
            "raw_attributes": {
                bytes(a[3][0][3]).decode("utf-8"): [bytes(v[3]) for v in a[3][1][3]]
                for a in payload[1][3]
            },
        }

    strategy.decode_response_fast = decode
    return conn


def _get(raw: dict[str, Any], name: str) -> list[bytes]:
    for key, vals in raw.items():
        if key.lower() == name.lower():
            return list(vals)
    return []


def _decode(vals: Sequence[bytes | str]) -> Values:
    # interned: office, organization and profile values repeat across 100k accounts and
    # are the very strings the desired accounts render (connector.mapping.templates)
    intern = sys.intern
    return tuple(  # a list first: faster than a generator for a handful of values
        [intern(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)) for v in vals]
    )


def _tls_reason(exc: BaseException) -> str | None:
    """Why the TLS handshake or the certificate check failed, if that is what ``exc`` is.

    ldap3 flattens the ``ssl`` error into its own message text (its exception classes
    are made on the fly); the reason is the part after the OpenSSL tag (``certificate
    verify failed: self-signed certificate ...``) or the host name mismatch ldap3
    reports itself."""
    text = str(exc)
    names = re.search(r"doesn't match any name in (\[[^\]]*\])", text)
    if isinstance(exc, lx.LDAPCertificateError) or names:
        host = names.group(1).strip("[]").replace("'", "") if names else ""
        return f"the certificate does not name the host {host}".strip()
    found = re.search(r"\[SSL(?:: [A-Z_]+)?\] ([^(]+?)\s*\(_ssl", text)
    if found:
        return found.group(1)
    if isinstance(exc, lx.LDAPStartTLSError | ssl.SSLError) or "ssl" in text.lower():
        return text
    return None


def _detail(exc: lx.LDAPException) -> str:
    if isinstance(exc, lx.LDAPOperationResult):
        msg = f"{exc.description} (result {exc.result})"
        return f"{msg}: {exc.message}" if exc.message else msg
    return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _answer_within(conn: ldap3.Connection, seconds: float, then: float) -> Iterator[None]:
    """The socket's receive timeout is ``seconds`` inside the block, ``then`` after it
    (ldap3 sets it once, at open, from ``receive_timeout``)."""
    sock = conn.socket
    if sock is None:  # pragma: no cover - open() failed, ldap3 raised already
        yield
        return
    sock.settimeout(seconds)
    yield  # on an error the connection is dropped: nothing to restore
    if conn.socket is not None:
        conn.socket.settimeout(then)
