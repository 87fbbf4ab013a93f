"""Configuration: a TOML file, ``MISYNC_*`` environment overrides, secret files.

Precedence (highest first): environment (``MISYNC_TARGET__LDAP__URL``), the TOML file,
the defaults here. Secrets are never in the TOML: ``password_file`` / ``token_file``
name a file (systemd ``LoadCredential=`` puts them in ``$CREDENTIALS_DIRECTORY``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from connector.errors import MisyncError

_PORT_MAX = 65535  # the highest TCP port


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def read_secret(path: Path | None, inline: SecretStr | None, what: str) -> str:
    """A secret from its file (preferred) or an inline value (env only). Raises
    ``SecretError`` (exit 2) naming the setting and the file."""
    if path is not None:
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SecretError(f"{what}: cannot read secret file {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise SecretError(f"{what}: secret file {path} is not UTF-8 text") from exc
        if not value.strip():
            raise SecretError(f"{what}: secret file {path} is empty")
        return value
    if inline is not None:
        return inline.get_secret_value()
    raise SecretError(f"{what}: no secret configured (set a *_file path)")


class FeedsSettings(_Section):
    dir: Path = Path("feeds")
    mapping: Path | None = None  # mappings/feeds.toml: file names and column names per feed
    max_age_hours: float = Field(default=36.0, ge=0)  # 0 disables the staleness check
    shrink_share: float = Field(default=0.2, ge=0, le=1)  # block if rows fall by more than this
    shrink_min_rows: int = Field(default=10, ge=0)  # ... and by at least this many rows
    # Input limits per feed file (0 = none): a larger file is refused unread, as unusable.
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    max_rows: int = Field(default=2_000_000, ge=0)
    # A feed file that changed since the last run evaluated it is read only once it has
    # been unchanged for settle_seconds (0: no wait, the re-check after the read stays);
    # one still changing after settle_max_seconds is held as unusable for that run.
    settle_seconds: float = Field(default=5.0, ge=0)
    settle_max_seconds: float = Field(default=60.0, ge=0)

    @model_validator(mode="after")
    def _settle_bound(self) -> FeedsSettings:
        if self.settle_max_seconds < self.settle_seconds:
            raise ValueError(
                f"feeds.settle_max_seconds ({self.settle_max_seconds:g}) must be at least "
                f"feeds.settle_seconds ({self.settle_seconds:g})"
            )
        return self


class PolicySettings(_Section):
    timezone: str = "America/Los_Angeles"
    approved_courses: list[str] = ["MIS Basic"]
    nda_grace_days: int = Field(default=14, ge=0)
    separation_deadline_hours: float = Field(default=24.0, ge=0)
    contract_grace_hours: float = Field(default=1.0, ge=0)
    lapse_deadline_hours: float = Field(default=24.0, ge=0)  # NDA grace expiry and other lapses
    warning_hours: float = Field(default=4.0, ge=0)  # warn this long before a deadline
    late_notice_hours: float = Field(default=24.0, ge=0)
    restore_on_cure: bool = True  # a cured lapse (contract, training, NDA) restores access

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class LdapEndpoint:
    """The server an LDAP URL names: host (an IPv6 literal without brackets), port, and
    whether TLS starts at connect (ldaps)."""

    host: str
    port: int
    use_ssl: bool


def parse_ldap_url(url: str) -> LdapEndpoint:
    """An RFC 4516 LDAP URL -> the server it names. Raises ValueError, naming the problem.

    Accepted: ``ldap://`` and ``ldaps://``, any letter case; a port or the scheme's
    default (389, 636); an IPv6 literal in brackets; a trailing slash; a DN after it
    (``ldap://host:389/dc=mis,dc=example``). The URL names the *server*: the managed
    scope is ``base_dn``, ``filter`` and ``scope``, so a DN in the URL is not used, and
    attributes, a scope, a filter or extensions after ``?`` are refused rather than
    silently ignored."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:  # an unclosed [IPv6 literal
        raise ValueError(f"{url!r}: not an LDAP URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("ldap", "ldaps"):
        raise ValueError(f"{url!r}: an LDAP URL starts with ldap:// or ldaps:// (RFC 4516)")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{url!r}: no user in the URL; use bind_dn and password_file")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: the port must be a number from 1 to 65535") from None
    if port == 0:
        raise ValueError(f"{url!r}: the port must be a number from 1 to 65535")
    if not parts.hostname:
        raise ValueError(f"{url!r}: the URL names no host")
    if any(parts.query.split("?")) or parts.fragment:
        raise ValueError(
            f"{url!r}: attributes, scope, filter and extensions in the URL are not used; "
            "set target.ldap.base_dn, filter and scope instead"
        )
    use_ssl = scheme == "ldaps"
    return LdapEndpoint(parts.hostname, port or (636 if use_ssl else 389), use_ssl)


class LdapSettings(_Section):
    url: str = "ldap://127.0.0.1:389"  # RFC 4516: ldap[s]://host[:port][/[dn]]
    bind_dn: str = ""
    password_file: Path | None = None
    password: SecretStr | None = None  # env only (MISYNC_TARGET__LDAP__PASSWORD); prefer the file
    base_dn: str = Field(
        default="", description="managed scope: accounts live and are created here"
    )
    filter: str = "(objectClass=inetOrgPerson)"
    scope: Literal["subtree", "one"] = "one"
    group_base_dn: str = ""
    start_tls: bool = False
    ca_file: Path | None = None
    verify_tls: bool = True
    # A client certificate (PEM) presented in the TLS handshake. With no bind_dn, misync
    # binds with SASL EXTERNAL: the directory maps the certificate to its identity.
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    connect_timeout: float = Field(default=10.0, gt=0)
    receive_timeout: float = Field(default=30.0, gt=0)
    page_size: int = Field(default=1000, ge=1, le=10000)
    # incremental reads: how far this host's clock may be ahead of the directory's
    clock_margin_seconds: float = Field(default=600.0, ge=0)

    @field_validator("url")
    @classmethod
    def _ldap_url(cls, v: str) -> str:
        parse_ldap_url(v)
        return v

    @property
    def endpoint(self) -> LdapEndpoint:
        return parse_ldap_url(self.url)

    def bind_password(self) -> str:
        return read_secret(self.password_file, self.password, "target.ldap.password")


class ScimSettings(_Section):
    base_url: str = ""
    token_file: Path | None = None
    token: SecretStr | None = None
    oauth_token_url: str = ""
    oauth_client_id: str = ""
    oauth_client_secret_file: Path | None = None
    verify_tls: bool = True
    ca_file: Path | None = None
    client_cert_file: Path | None = None  # mutual TLS: a client certificate (PEM) ...
    client_key_file: Path | None = None  # ... and its key
    timeout: float = Field(default=30.0, gt=0)
    page_size: int = Field(default=200, ge=1, le=10000)
    # The managed scope (RFC 7644 section 3.4.2.2 filter): users that do not match are
    # never read as orphans nor touched, like entries outside target.ldap.base_dn.
    filter: str = "externalId pr"


class TargetSettings(_Section):
    kind: Literal["ldap", "scim"] = "ldap"
    mapping: Path = Path("mappings/openldap-ppolicy.toml")
    ldap: LdapSettings = LdapSettings()
    scim: ScimSettings = ScimSettings()
    orphans: Literal["disable", "report"] = "disable"


class GuardSettings(_Section):
    """Mass-disable guard: holds back disables that no evidence explains."""

    max_unexplained_disables: int = Field(default=25, ge=0)
    max_unexplained_share: float = Field(default=0.05, ge=0, le=1)


class ApplySettings(_Section):
    workers: int = Field(default=4, ge=1, le=32)
    max_attempts: int = Field(default=4, ge=1)  # per object per run
    backoff_seconds: float = Field(default=0.5, ge=0)
    backoff_max_seconds: float = Field(default=30.0, ge=0)
    quarantine_after: int = Field(default=3, ge=1)  # consecutive failed runs
    # stop after this many attempts in a row got no answer (timeout, connection lost); 0: never
    circuit_breaker_after: int = Field(default=8, ge=0)
    run_deadline_seconds: float = Field(default=3600.0, ge=0)  # stop starting actions; 0: none
    commit_batch: int = Field(default=200, ge=1, le=10000)  # outcomes per group commit
    commit_interval_ms: float = Field(default=200.0, ge=0)  # ... or this long, whichever first
    # enable an account that someone else disabled (misync has no record of disabling it)
    reenable_external_disables: bool = False


class StateSettings(_Section):
    # Always used: the run lock, reports, and (without ``url``) the SQLite state and audit.
    dir: Path = Path("/var/lib/misync")
    # Empty: the embedded SQLite store in ``dir`` (the default, one host). Else a libpq URL
    # without a password (``postgresql://misync@db.example:5432/misync``): the state and
    # the audit trail live in that PostgreSQL database.
    url: str = ""
    password_file: Path | None = None  # the PostgreSQL password (never in the URL)
    password: SecretStr | None = None  # env only (MISYNC_STATE__PASSWORD); prefer the file
    # libpq's sslmode; verify-full checks the server's certificate and name against ca_file
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    ca_file: Path | None = None  # PEM CA for verify-ca / verify-full (libpq sslrootcert)
    connect_timeout_seconds: int = Field(default=10, ge=1, le=300)
    # leadership of two daemons on one database (PostgreSQL): the leader renews its lease
    # every leader_poll_seconds; a standby ends a leader whose lease ran out and takes over
    # how long `misync plan -o` waits for a run holding the state folder (a daemon cycle)
    # to end before it gives up with exit 7; apply never waits (it says busy at once)
    lock_wait_seconds: float = Field(default=300, ge=0, le=3600)
    lease_seconds: int = Field(default=15, ge=3, le=600)
    leader_poll_seconds: float = Field(default=2.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _postgresql_url(cls, url: str) -> str:
        if not url:
            return url
        try:
            parts = urlsplit(url.strip())
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"{url!r}: not a PostgreSQL URL ({exc})") from None
        if parts.scheme.lower() not in ("postgresql", "postgres"):
            raise ValueError(f"{url!r}: a PostgreSQL URL starts with postgresql://")
        if parts.password is not None:
            raise ValueError(f"{url!r}: no password in the URL; use state.password_file")
        if not parts.hostname:
            raise ValueError(f"{url!r}: the URL names no host")
        if not parts.path.strip("/"):
            raise ValueError(f"{url!r}: the URL names no database (postgresql://HOST/DB)")
        return url.strip()

    @model_validator(mode="after")
    def _lease_outlasts_polls(self) -> StateSettings:
        # the leader counts itself leading for lease - max(2 polls, lease/4) after each
        # renewal (docs/HA.md): with a lease under 4 polls its runs would keep stopping
        if self.lease_seconds < 4 * self.leader_poll_seconds:
            raise ValueError(
                f"state.lease_seconds ({self.lease_seconds}) must be at least 4 x "
                f"state.leader_poll_seconds ({self.leader_poll_seconds:g})"
            )
        return self

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        return "postgresql" if self.url else "sqlite"

    @property
    def lease_margin_seconds(self) -> float:
        """How long after a renewal began a leader (daemon or command) still counts
        itself leading: the lease less a safety margin (two polls, at least a quarter of
        the lease), so that it stops before a standby may take over."""
        return self.lease_seconds - max(2 * self.leader_poll_seconds, self.lease_seconds / 4)

    def db_password(self) -> str | None:
        """The PostgreSQL password from ``password_file`` (or the env), None if neither."""
        if self.password_file is None and self.password is None:
            return None
        return read_secret(self.password_file, self.password, "state.password")

    @property
    def where(self) -> str:
        """Where the state lives, for messages: the folder, or the URL (no password)."""
        return self.url or str(self.dir)

    @property
    def db(self) -> Path:
        return self.dir / "state.sqlite3"

    @property
    def audit_db(self) -> Path:
        return self.dir / "audit.sqlite3"

    @property
    def reports(self) -> Path:
        return self.dir / "reports"


class AuditSettings(_Section):
    # HMAC key for the audit head anchor: keep it outside state.dir (systemd
    # LoadCredential=), so that whoever can rewrite the state folder cannot re-sign it.
    key_file: Path | None = None

    def key(self) -> bytes | None:
        if self.key_file is None:
            return None
        return read_secret(self.key_file, None, "audit.key").encode("utf-8")


class ArchiveSettings(_Section):
    """The archive of each run's inputs in ``state.dir/archive`` (``misync audit replay``)."""

    # a run's inputs are kept this long (one year's audit window plus margin); the
    # daemon's daily maintenance prunes older ones, the trail keeps their digests
    keep_days: int = Field(default=400, ge=1)


class PlanSettings(_Section):
    """``misync plan`` and ``misync apply``: warm reads of the directory
    (connector.runs.directory)."""

    # A plan or apply starts from the state store's snapshot of the directory and reads
    # only what changed since its mark, if the snapshot's last full scan is at most this
    # old (deletions and moves out of scope show only in a full scan); else, and with
    # --full-scan, it reads the whole directory. 0: always a full scan. The default
    # covers the daemon's hourly full scan (daemon.full_scan_interval_seconds, at the
    # first reconcile after it) with margin.
    warm_max_age_seconds: float = Field(default=7200.0, ge=0)


class ReportSettings(_Section):
    """HTML reports of daemon runs, kept in ``state.dir/reports`` (``misync report``)."""

    keep_runs: int = Field(default=100, ge=0)  # newest run reports kept; 0 keeps none


SeverityName = Literal["info", "warning", "critical"]


class SmtpSettings(_Section):
    """An SMTP relay (stdlib smtplib). Used by the alert emails and the notifications."""

    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True  # upgrade with STARTTLS before anything is sent (refuse if absent)
    ssl: bool = False  # implicit TLS (SMTPS, port 465) instead of STARTTLS
    verify_tls: bool = True
    ca_file: Path | None = None
    username: str = ""  # log in when set, with the password from password_file
    password_file: Path | None = None
    sender: str = "misync@localhost"
    timeout: float = Field(default=20.0, gt=0)

    def password(self) -> str | None:
        if not self.username:
            return None
        return read_secret(self.password_file, None, "smtp password")


class EmailAlertSettings(SmtpSettings):
    to: list[str] = Field(min_length=1)  # every severity, unless a list below is set
    to_critical: list[str] = []  # instead of `to` for critical alerts, when set
    to_warning: list[str] = []
    to_info: list[str] = []
    min_severity: SeverityName = "info"
    subject_prefix: str = "[misync]"

    def recipients(self, severity: str) -> list[str]:
        own: list[str] = getattr(self, f"to_{severity}", [])
        return own or self.to


class WebhookAlertSettings(_Section):
    url: str = Field(min_length=1)
    token_file: Path | None = None  # sent as "Authorization: Bearer <token>" when set
    timeout: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=4, ge=1, le=10)
    backoff_seconds: float = Field(default=1.0, ge=0)
    verify_tls: bool = True
    ca_file: Path | None = None
    min_severity: SeverityName = "info"

    def token(self) -> str | None:
        if self.token_file is None:
            return None
        return read_secret(self.token_file, None, "alerts.webhook.token")


class AlertsSettings(_Section):
    reminder_hours: float = Field(default=4.0, gt=0)  # re-send an open alert this often
    digest_after: int = Field(default=10, ge=1)  # per kind per run; beyond it, one digest
    # the daily digest to each area's monitors ([areas.W]), local time (policy.timezone)
    area_digest_at: str = Field(default="07:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    email: EmailAlertSettings | None = None
    webhook: WebhookAlertSettings | None = None


class AreaSettings(_Section):
    """Who monitors one Workforce Development Area (``[areas.WDA7]``, issue 16 item 6):
    its people's breaches, deadline warnings and separations carried out are mailed to
    these addresses too (through the ``[alerts.email]`` relay), one message per event
    and a daily digest, each pointing at that area's page only."""

    email: list[str] = Field(min_length=1)

    @field_validator("email")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        from email_validator import EmailNotValidError, validate_email

        for i, raw in enumerate(v):
            try:
                validate_email(raw, check_deliverability=False)  # no DNS, as the roster's
            except EmailNotValidError as exc:
                raise ValueError(f"item {i + 1}, {raw!r}, is not an email address: {exc}") from None
        if len(set(v)) != len(v):
            raise ValueError("an address is listed twice")
        return v


class NotificationsSettings(_Section):
    """Policy 3.k: tell the Access Requester (and the user) that a change was carried out."""

    enabled: bool = False
    notify_user: bool = False  # also write to the affected user
    templates: Path | None = None  # folder of *.txt templates; default: the shipped ones
    smtp: SmtpSettings | None = None  # default: the [alerts.email] relay
    cc: list[str] = []  # e.g. the ITSD MIS Access Management mailbox


class MetricsSettings(_Section):
    listen: str = ""  # "127.0.0.1:9469" serves Prometheus metrics there; empty: off

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        if v:
            host, sep, port = v.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 <= int(port) <= _PORT_MAX:
                raise ValueError(f"{v!r} is not HOST:PORT (e.g. 127.0.0.1:9469)")
        return v


class DaemonSettings(_Section):
    """``misync run``: when each job runs (SPEC "Daemon"). Seconds, so tests can use
    second-scale intervals; a cron expression, when set, replaces the interval."""

    reconcile_cron: str = ""  # e.g. "*/30 * * * *" (crontab, in policy.timezone)
    reconcile_interval_seconds: float = Field(default=1800.0, gt=0)
    # between full scans a reconcile reads only what changed (LDAP modifyTimestamp)
    full_scan_interval_seconds: float = Field(default=3600.0, gt=0)
    watch_interval_seconds: float = Field(default=5.0, ge=0)  # 0 turns the fast path off
    timed_actions: bool = True  # carry out dated changes at their instant
    monitor_interval_seconds: float = Field(default=900.0, gt=0)  # deadline monitor
    audit_verify_cron: str = "17 3 * * *"  # the whole chain, once a day
    run_on_start: bool = True  # a full reconcile as soon as the daemon is up


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: readable console lines on a terminal, JSON lines otherwise (journald, pipes)
    format: Literal["auto", "json", "console"] = "auto"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MISYNC_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    feeds: FeedsSettings = FeedsSettings()
    policy: PolicySettings = PolicySettings()
    target: TargetSettings = TargetSettings()
    guard: GuardSettings = GuardSettings()
    apply: ApplySettings = ApplySettings()
    archive: ArchiveSettings = ArchiveSettings()
    state: StateSettings = StateSettings()
    audit: AuditSettings = AuditSettings()
    daemon: DaemonSettings = DaemonSettings()
    plan: PlanSettings = PlanSettings()
    log: LogSettings = LogSettings()
    report: ReportSettings = ReportSettings()
    alerts: AlertsSettings = AlertsSettings()
    #: who monitors each WDA (``[areas.WDA7] email = [...]``): by area name, as in the
    #: organizations feed's ``wda`` column
    areas: dict[str, AreaSettings] = {}
    notifications: NotificationsSettings = NotificationsSettings()
    metrics: MetricsSettings = MetricsSettings()

    @model_validator(mode="after")
    def _client_certificates_paired(self) -> Settings:
        for name, section in (("ldap", self.target.ldap), ("scim", self.target.scim)):
            if (section.client_cert_file is None) != (section.client_key_file is None):
                raise ValueError(
                    f"target.{name}.client_cert_file and client_key_file: set both or neither"
                )
        ldap = self.target.ldap
        if ldap.client_cert_file and not (
            ldap.url.lower().startswith("ldaps://") or ldap.start_tls
        ):
            raise ValueError(
                "target.ldap.client_cert_file: needs TLS (an ldaps:// url or start_tls = true)"
            )
        return self

    @model_validator(mode="after")
    def _target_complete(self) -> Settings:
        if self.target.kind == "ldap" and not self.target.ldap.base_dn:
            raise ValueError("target.ldap.base_dn: required when target.kind = 'ldap'")
        if self.target.kind == "scim" and not self.target.scim.base_url:
            raise ValueError("target.scim.base_url: required when target.kind = 'scim'")
        if self.areas and self.alerts.email is None:
            raise ValueError(
                f"areas: monitors are set for {', '.join(sorted(self.areas))}, but their "
                "mail goes through the [alerts.email] relay, which is not configured"
            )
        for name in self.areas:
            if not name.strip() or name != name.strip():
                raise ValueError(f"areas.{name!r}: an area name must be the feed's wda value")
        if self.notifications.enabled and not (self.notifications.smtp or self.alerts.email):
            raise ValueError(
                "notifications: enabled, but no SMTP relay ([notifications.smtp] or [alerts.email])"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        sources.append(file_secret_settings)
        return tuple(sources)


def secret_files(s: Settings) -> list[tuple[str, Path]]:
    """The secret files this configuration uses, with the setting that names each."""
    files: list[tuple[str, Path | None]] = [("audit.key_file", s.audit.key_file)]
    if s.state.url:
        files.append(("state.password_file", s.state.password_file))
    if s.target.kind == "ldap":
        files.append(("target.ldap.password_file", s.target.ldap.password_file))
    elif s.target.scim.oauth_token_url:
        files.append(
            ("target.scim.oauth_client_secret_file", s.target.scim.oauth_client_secret_file)
        )
    else:
        files.append(("target.scim.token_file", s.target.scim.token_file))
    return [(name, path) for name, path in files if path is not None]


def check_secrets(s: Settings) -> None:
    """Read every secret the target and the audit trail need; ValueError names the file
    (missing, unreadable or empty). Every command that uses them calls this first."""
    s.audit.key()
    if s.state.url:
        s.state.db_password()
    if s.target.kind == "ldap":
        if s.target.ldap.bind_dn:
            s.target.ldap.bind_password()
    elif s.target.scim.oauth_token_url:
        read_secret(s.target.scim.oauth_client_secret_file, None, "target.scim.oauth_client_secret")
    else:
        read_secret(s.target.scim.token_file, s.target.scim.token, "target.scim.token")


def _loopback(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def config_warnings(s: Settings) -> list[str]:
    """What is accepted but unsafe: secret files others can read, certificate checks
    off, credentials and personal data in plain text over the network. ``config check``
    prints them and every command logs them (``config.insecure``)."""
    out: list[str] = []
    for name, path in secret_files(s):
        try:
            mode = path.stat().st_mode & 0o777
        except OSError:
            continue  # missing: check_secrets reports it
        if mode & 0o077:
            who = " and ".join(
                w for w, bit in (("its group", 0o070), ("others", 0o007)) if mode & bit
            )
            out.append(
                f"{name}: secret file {path} is accessible by {who} (mode {mode:04o}); "
                f"run `chmod 600 {path}` (OpenSSH refuses a key like this)"
            )
    verified = s.state.sslmode in ("verify-ca", "verify-full")
    if s.state.url and not verified and not _loopback(s.state.url):
        out.append(
            f"state.url {s.state.url} is a PostgreSQL server that is not this machine, "
            f"with state.sslmode = {s.state.sslmode!r}: the server's certificate is not "
            "checked and the connection may be unencrypted (use sslmode = 'verify-full' "
            "and state.ca_file)"
        )
    if s.target.kind == "ldap":
        ldap = s.target.ldap
        tls = ldap.url.lower().startswith("ldaps://") or ldap.start_tls
        if tls and not ldap.verify_tls:
            out.append(
                "target.ldap.verify_tls = false: the directory's certificate is not checked; "
                "anyone on the network path can pose as it and read the bind password"
            )
        if not tls and not _loopback(ldap.url):
            out.append(
                f"target.ldap.url {ldap.url} is plain ldap:// to a host that is not this "
                "machine, without start_tls: the bind password and every account cross the "
                "network unencrypted (use ldaps:// or start_tls = true)"
            )
    else:
        scim = s.target.scim
        https = scim.base_url.lower().startswith("https://")
        if https and not scim.verify_tls:
            out.append(
                "target.scim.verify_tls = false: the SCIM server's certificate is not "
                "checked; anyone on the network path can pose as it and read the token"
            )
        if not https and not _loopback(scim.base_url):
            out.append(
                f"target.scim.base_url {scim.base_url} is plain http:// to a host that is "
                "not this machine: the token and every account cross the network "
                "unencrypted (use https://)"
            )
    return out


class ConfigError(MisyncError):
    """The configuration is invalid; the message names the file and each bad field."""


class SecretError(ConfigError):
    """A secret file is missing, unreadable or empty (exit 2, naming the file)."""


def load_settings(path: Path | None, **overrides: Any) -> Settings:
    """Load ``path`` (TOML) + environment. Relative paths in the file are resolved
    against the file's folder, so a config works from any working directory."""
    from pydantic import ValidationError

    if path is not None and not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")

    bound: type[Settings] = type(
        "Settings",
        (Settings,),
        {"model_config": SettingsConfigDict(**{**Settings.model_config, "toml_file": path})},
    )
    try:
        s = bound(**overrides)
    except ValidationError as exc:
        where = str(path) if path else "configuration"
        problems = "; ".join(
            f"{_line_of(path, e['loc'])}{'.'.join(str(p) for p in e['loc']) or '(root)'}: "
            f"{e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"{where}: {problems}") from exc
    except Exception as exc:  # TOML syntax errors surface from the source
        raise ConfigError(f"{path}: {exc}") from exc
    base = path.parent.resolve() if path is not None else Path.cwd()
    return _resolve_paths(Settings.model_validate(s.model_dump()), base)


def _line_of(path: Path | None, loc: tuple[int | str, ...]) -> str:
    """``line N: `` of the setting at ``loc`` in the TOML file (its key, else its table
    header ``[a.b]``), or "" when it is not written there (a default, the environment)."""
    if path is None:
        return ""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    names = [str(p) for p in loc if not isinstance(p, int)]

    def header(parts: list[str]) -> int | None:
        want = ".".join(parts)
        for n, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].strip()
            table = text.strip("[]").replace('"', "").replace(" ", "")
            if text.startswith("[") and text.endswith("]") and table == want:
                return n
        return None

    for cut in range(len(names) - 1, 0, -1):  # the deepest table written, then its key
        start = header(names[:cut])
        if start is None:
            continue
        key = names[cut]
        for n in range(start, len(lines)):
            text = lines[n].split("#", 1)[0].strip()
            if text.startswith("["):
                break
            if text.split("=", 1)[0].strip().strip('"') == key and "=" in text:
                return f"line {n + 1}: "
        return f"line {start}: "
    return ""


def _resolve_paths(s: Settings, base: Path) -> Settings:
    def rel(p: Path | None) -> Path | None:
        if p is None or p.is_absolute():
            return p
        return base / p

    feeds = s.feeds.model_copy(update={"dir": rel(s.feeds.dir), "mapping": rel(s.feeds.mapping)})
    ldap = s.target.ldap.model_copy(
        update={
            "password_file": rel(s.target.ldap.password_file),
            "ca_file": rel(s.target.ldap.ca_file),
            "client_cert_file": rel(s.target.ldap.client_cert_file),
            "client_key_file": rel(s.target.ldap.client_key_file),
        }
    )
    scim = s.target.scim.model_copy(
        update={
            "token_file": rel(s.target.scim.token_file),
            "ca_file": rel(s.target.scim.ca_file),
            "client_cert_file": rel(s.target.scim.client_cert_file),
            "client_key_file": rel(s.target.scim.client_key_file),
            "oauth_client_secret_file": rel(s.target.scim.oauth_client_secret_file),
        }
    )
    target = s.target.model_copy(
        update={"mapping": rel(s.target.mapping), "ldap": ldap, "scim": scim}
    )
    state = s.state.model_copy(
        update={
            "dir": rel(s.state.dir),
            "password_file": rel(s.state.password_file),
            "ca_file": rel(s.state.ca_file),
        }
    )
    audit = s.audit.model_copy(update={"key_file": rel(s.audit.key_file)})

    def smtp(m: Any) -> Any:
        if m is None:
            return None
        return m.model_copy(
            update={"password_file": rel(m.password_file), "ca_file": rel(m.ca_file)}
        )

    hook = s.alerts.webhook
    if hook is not None:
        hook = hook.model_copy(
            update={"token_file": rel(hook.token_file), "ca_file": rel(hook.ca_file)}
        )
    alerts = s.alerts.model_copy(update={"email": smtp(s.alerts.email), "webhook": hook})
    notifications = s.notifications.model_copy(
        update={"smtp": smtp(s.notifications.smtp), "templates": rel(s.notifications.templates)}
    )
    return s.model_copy(
        update={
            "feeds": feeds,
            "target": target,
            "state": state,
            "audit": audit,
            "alerts": alerts,
            "notifications": notifications,
        }
    )


def hours(h: float) -> timedelta:
    return timedelta(hours=h)
