"""Wiring: settings -> adapters. A ``Runtime`` builds the target, the state store, the
audit trail and the policy rules from settings; ``connector.runs`` drives the core with
them. Nothing here is global, so one process can hold several ``Runtime``s (the daemon
builds a new one on SIGHUP and keeps the old one until the new one is valid)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from connector.audit import AuditLog, open_audit
from connector.mapping import AccountMapping, load_mapping
from connector.policy import PolicyRules
from connector.settings import ConfigError, Settings
from connector.state import Store, open_store
from connector.targets.base import Target


def now() -> datetime:
    """The wall clock, as an aware UTC instant."""
    return datetime.now(UTC)


def _wall_clock() -> datetime:
    return now()  # looked up at call time, so a test can pin ``connector.app.now``


def policy_rules(settings: Settings) -> PolicyRules:
    p = settings.policy
    return PolicyRules(
        tz=p.tz,
        approved_courses=frozenset(p.approved_courses),
        nda_grace=timedelta(days=p.nda_grace_days),
        separation_deadline=timedelta(hours=p.separation_deadline_hours),
        contract_grace=timedelta(hours=p.contract_grace_hours),
        lapse_deadline=timedelta(hours=p.lapse_deadline_hours),
        late_notice=timedelta(hours=p.late_notice_hours),
        restore_on_cure=p.restore_on_cure,
    )


@dataclass
class Runtime:
    """Everything one process needs, built from settings."""

    settings: Settings
    mapping: AccountMapping = field(init=False)
    rules: PolicyRules = field(init=False)
    target_factory: Callable[[], Target] | None = None
    clock: Callable[[], datetime] = _wall_clock  # "now" for every run made with this runtime
    # shared by the targets this runtime builds (apply's workers): SCIM group creation
    group_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    # the leader epoch a daemon journals under (PostgreSQL, issue 17); None: a command
    leader_epoch: int | None = None

    def __post_init__(self) -> None:
        self.mapping = load_mapping(self.settings.target.mapping)
        self.rules = policy_rules(self.settings)
        t = self.settings.target
        if self.mapping.kind != t.kind:
            raise ConfigError(
                f"target.mapping: {t.mapping} is a {self.mapping.kind} mapping"
                f" but target.kind is {t.kind!r}"
            )
        if t.kind == "ldap" and self.mapping.groups and not t.ldap.group_base_dn:
            raise ConfigError(
                f"target.ldap.group_base_dn: required because the mapping {t.mapping}"
                " declares groups"
            )
        if t.kind == "scim":
            from connector.targets.scim import check_scope_filter

            try:
                check_scope_filter(t.scim.filter)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc

    def target(self) -> Target:
        if self.target_factory is not None:
            return self.target_factory()
        kind = self.settings.target.kind
        if kind == "ldap":
            from connector.targets.ldap import LdapTarget

            return LdapTarget(self.settings.target.ldap, self.mapping)
        from connector.targets.scim import ScimTarget

        return ScimTarget(self.settings.target.scim, self.mapping, group_lock=self.group_lock)

    def store(self) -> Store:
        """The state store: SQLite in ``state.dir``, or PostgreSQL if ``state.url`` is set."""
        return open_store(self.settings.state, epoch=self.leader_epoch)

    def audit(self, *, read_only: bool = False) -> AuditLog:
        """The audit trail (beside the store); ``read_only`` (verify, export) writes
        nothing."""
        return open_audit(self.settings.state, self.settings.audit.key(), read_only=read_only)
