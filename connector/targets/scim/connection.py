"""The connection to a SCIM service provider: the HTTP client (bearer token or OAuth 2.0
client credentials, TLS with an optional CA file, mutual TLS, timeouts), the discovery
that opens a scim2-client ``SyncSCIMClient`` over it, and the classification of every
scim2-client / scim2-models / httpx2 error onto the target error tree (temporary with
``Retry-After``, or permanent). ``connector.targets.scim.adapter`` uses the client;
scim2-client is imported in this folder only, as it splits its engines from its client.

Errors: 429, 500, 502, 503, 504, timeouts and network errors are temporary (with
``Retry-After`` when the server sends it); 400, 401, 403, 404, 409, 412 and the rest are
permanent. The SCIM error's ``scimType`` and ``detail`` go into ``detail``.
"""

from __future__ import annotations

import ssl
import time
import warnings
from collections.abc import Generator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2
import structlog
from scim2_client import SCIMClientException
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import SCIMException

from connector.settings import ConfigError, ScimSettings, read_secret
from connector.targets.base import (
    PermanentTargetError,
    TargetError,
    TargetNotRespondingError,
    TargetUnavailableError,
    TemporaryTargetError,
)

TEMPORARY_STATUS = frozenset({429, 500, 502, 503, 504})


class ClientCredentials(httpx2.Auth):
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


def retry_after(response: Any) -> float | None:
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


def classify(exc: Exception, what: str, account_id: str | None) -> TargetError:
    """Map a scim2-client / scim2-models / httpx2 error onto the target error tree."""
    if isinstance(exc, SCIMException):
        return _classify_scim(exc, what, account_id)
    if isinstance(exc, SCIMClientException):
        return _classify_client(exc, what, account_id)
    if isinstance(exc, httpx2.RequestError):
        return TargetNotRespondingError(
            what, account_id=account_id, detail=f"{type(exc).__name__}: {exc}"
        )
    return PermanentTargetError(what, account_id=account_id, detail=repr(exc))


def _classify_scim(exc: SCIMException, what: str, account_id: str | None) -> TargetError:
    """A SCIM error response (status, scimType, detail) from scim2-models."""
    status = int(getattr(exc, "status", 0) or 0)
    detail = f"status={status} scimType={exc.scim_type or '-'} detail={exc.detail or '-'}"
    response = getattr(exc, "source", None)  # scim2-client attaches the HTTP response
    if status in TEMPORARY_STATUS:
        return TemporaryTargetError(
            what, account_id=account_id, detail=detail, retry_after=retry_after(response)
        )
    return PermanentTargetError(what, account_id=account_id, detail=detail)


def _classify_client(exc: SCIMClientException, what: str, account_id: str | None) -> TargetError:
    """A scim2-client error: a network failure underneath, or an HTTP response."""
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
            what, account_id=account_id, detail=detail, retry_after=retry_after(source)
        )
    return PermanentTargetError(what, account_id=account_id, detail=detail)


def status_of(exc: Exception) -> int | None:
    """The HTTP status of a scim2-client / scim2-models error, if it carries one."""
    if isinstance(exc, SCIMException):
        return int(getattr(exc, "status", 0) or 0) or None
    source = getattr(exc, "source", None)
    code = getattr(source, "status_code", None)
    return int(code) if code is not None else None


def http_client(s: ScimSettings) -> httpx2.Client:
    """The HTTP client for ``s``: base URL, bearer token or OAuth 2.0 client credentials,
    TLS verification (``ca_file``, ``verify_tls``), mutual TLS and the timeout. Raises
    ``ConfigError`` when a secret file cannot be read."""
    verify: Any = str(s.ca_file) if s.ca_file else s.verify_tls
    auth: httpx2.Auth | None = None
    headers = {}
    if s.oauth_token_url:
        secret = read_secret(s.oauth_client_secret_file, None, "target.scim.oauth_client_secret")
        auth = ClientCredentials(s.oauth_token_url, s.oauth_client_id, secret, verify, s.timeout)
    else:
        headers["Authorization"] = "Bearer " + read_secret(
            s.token_file, s.token, "target.scim.token"
        )
    if s.client_cert_file is not None and s.client_key_file is not None:
        # mutual TLS: httpx2 takes the client certificate inside an SSLContext
        context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
        if not s.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(str(s.client_cert_file), str(s.client_key_file))
        verify = context
    return httpx2.Client(
        base_url=s.base_url, headers=headers, auth=auth, verify=verify, timeout=s.timeout
    )


def open_http(s: ScimSettings) -> httpx2.Client:
    """``http_client(s)``; any failure (a secret file, a client certificate) is a
    ``TargetUnavailableError`` that says why."""
    try:
        return http_client(s)
    except Exception as exc:
        raise unavailable(s, exc) from exc


def discover(s: ScimSettings, http: httpx2.Client) -> SyncSCIMClient:
    """A SCIM client over ``http``, after discovery (RFC 7644 section 4); any failure
    (TLS, the network, a bad answer) is a ``TargetUnavailableError`` that says why."""
    try:
        client = SyncSCIMClient(http)
        structlog.get_logger("misync.target").info(
            "target.connecting",
            url=s.base_url,
            message=f"connecting to {s.base_url} (timeout {s.timeout:g} s)",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            client.discover()
    except Exception as exc:
        raise unavailable(s, exc) from exc
    return client


def unavailable(s: ScimSettings, exc: Exception) -> TargetUnavailableError:
    """Why the service provider at ``s.base_url`` cannot be used, from ``exc``."""
    if isinstance(exc, (ConfigError, ValueError)):  # a secret file; a server's bad answer
        return TargetUnavailableError(str(exc))
    reason = tls_reason(exc)
    if reason is not None:
        return TargetUnavailableError(
            f"TLS with {s.base_url} failed: {reason}", detail=f"{type(exc).__name__}"
        )
    err = classify(exc, f"SCIM discovery at {s.base_url} failed", None)
    return TargetUnavailableError(str(err), detail=err.detail)
