"""Shared machinery of the provider sandboxes: clock, request log, faults, limits, server, OAuth helpers.

Each provider sandbox (QuickBooks, Xero, Sage) subclasses `ProviderSandbox` and speaks its provider's
wire format; this module knows nothing about any provider.
"""

from __future__ import annotations

import abc
import base64
import contextlib
import hashlib
import html
import json
import logging
import math
import random
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, NoReturn, Self

import requests
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

logger = logging.getLogger(__name__)

ALL_ENDPOINTS = "*"
# Endpoint name logged for requests that match no route.
UNMATCHED = "unmatched"
ADMIN_PREFIX = "/_admin/"

# --------------------------------------------------------------------------------------------------
# Clock
# --------------------------------------------------------------------------------------------------


class Clock:
    """A UTC clock that follows real time, shifted by however far tests have advanced it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0

    def timestamp(self) -> float:
        with self._lock:
            offset = self._offset
        return time.time() + offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp(), tz=UTC)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds


# --------------------------------------------------------------------------------------------------
# Request log
# --------------------------------------------------------------------------------------------------


@dataclass
class LoggedRequest:
    """One request a sandbox received. `status` is 0 while in flight and when no response was sent."""

    at: datetime
    method: str
    path: str
    endpoint: str
    tenant: str | None
    status: int


class RequestLog:
    """Thread-safe record of the requests a sandbox received (admin requests excluded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []

    def record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def set_status(self, entry: LoggedRequest, status: int) -> None:
        with self._lock:
            entry.status = status

    def counts(self) -> dict[str, int]:
        with self._lock:
            result: dict[str, int] = {}
            for entry in self._entries:
                result[entry.endpoint] = result.get(entry.endpoint, 0) + 1
            return result

    def count(self, endpoint: str) -> int:
        with self._lock:
            return sum(1 for entry in self._entries if entry.endpoint == endpoint)

    def total(self) -> int:
        with self._lock:
            return len(self._entries)

    def entries(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()


# --------------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------------


@dataclass
class _Rule:
    endpoint: str
    remaining: int | None  # None = no limit
    status: int = 0
    share: float = 1.0
    seconds: float = 0.0

    def matches(self, endpoint: str) -> bool:
        return self.endpoint in (endpoint, ALL_ENDPOINTS)


@dataclass(frozen=True)
class FaultAction:
    """What the sandbox must do instead of running the handler: "timeout", "fail" or "throttle"."""

    kind: Literal["timeout", "fail", "throttle"]
    status: int = 0
    seconds: float = 0.0


class Faults:
    """Thread-safe fault plan, keyed by endpoint name or "*" for every endpoint.

    Before the handler a timeout wins over a failure, a failure over a throttle; within a kind the
    earliest matching rule applies. Faults with a share below 1 draw from a RNG seeded at
    construction, so a sequence of calls made one after another fails the same way on every run.
    """

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._latency: dict[str, float] = {}
        self._handler_delay: dict[str, float] = {}
        self._timeouts: list[_Rule] = []
        self._failures: list[_Rule] = []
        self._throttles: list[_Rule] = []
        self._drops: list[_Rule] = []

    def add_latency(self, seconds: float, endpoint: str = ALL_ENDPOINTS) -> None:
        """Delay every matching request by `seconds` more (adds up with earlier latency)."""
        _require_non_negative(seconds, "seconds")
        with self._lock:
            self._latency[endpoint] = self._latency.get(endpoint, 0.0) + seconds

    def add_handler_delay(self, seconds: float, endpoint: str = ALL_ENDPOINTS) -> None:
        """Delay matching requests after the rate-limit check, so they hold concurrency slots longer."""
        _require_non_negative(seconds, "seconds")
        with self._lock:
            self._handler_delay[endpoint] = self._handler_delay.get(endpoint, 0.0) + seconds

    def fail(self, endpoint: str, status: int, share: float = 1.0, count: int | None = None) -> None:
        """Answer matching requests with the provider's error body for `status`.

        `share` is the chance that a matching request fails; `count` caps how many fail (None: no cap).
        """
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status, got {status}")
        if not 0.0 < share <= 1.0:
            raise ValueError(f"share must be in (0, 1], got {share}")
        _require_positive_count(count)
        with self._lock:
            self._failures.append(_Rule(endpoint, count, status=status, share=share))

    def throttle(self, endpoint: str = ALL_ENDPOINTS, count: int = 1) -> None:
        """Answer the next `count` matching requests with the provider's own 429."""
        _require_positive_count(count)
        with self._lock:
            self._throttles.append(_Rule(endpoint, count))

    def timeout(self, endpoint: str, count: int = 1, seconds: float = 30.0) -> None:
        """Hold the next `count` matching requests `seconds`, then close the connection unanswered."""
        _require_positive_count(count)
        _require_non_negative(seconds, "seconds")
        with self._lock:
            self._timeouts.append(_Rule(endpoint, count, seconds=seconds))

    def drop_response_after_commit(self, endpoint: str, count: int = 1) -> None:
        """Run the handler of the next `count` matching requests, then close without a response."""
        _require_positive_count(count)
        with self._lock:
            self._drops.append(_Rule(endpoint, count))

    def clear(self) -> None:
        with self._lock:
            self._latency.clear()
            self._handler_delay.clear()
            self._timeouts.clear()
            self._failures.clear()
            self._throttles.clear()
            self._drops.clear()

    def latency(self, endpoint: str) -> float:
        with self._lock:
            return self._latency.get(ALL_ENDPOINTS, 0.0) + self._specific_or_zero(self._latency, endpoint)

    def handler_delay(self, endpoint: str) -> float:
        with self._lock:
            return self._handler_delay.get(ALL_ENDPOINTS, 0.0) + self._specific_or_zero(self._handler_delay, endpoint)

    def take_action(self, endpoint: str) -> FaultAction | None:
        """The fault to apply instead of the handler, if any; consumes one use of it."""
        with self._lock:
            timeout = self._consume(self._timeouts, endpoint)
            if timeout is not None:
                return FaultAction("timeout", seconds=timeout.seconds)
            failure = self._consume(self._failures, endpoint)
            if failure is not None:
                return FaultAction("fail", status=failure.status)
            if self._consume(self._throttles, endpoint) is not None:
                return FaultAction("throttle", status=429)
            return None

    def take_drop(self, endpoint: str) -> bool:
        """Whether to drop this response after the handler committed; consumes one use."""
        with self._lock:
            return self._consume(self._drops, endpoint) is not None

    @staticmethod
    def _specific_or_zero(table: dict[str, float], endpoint: str) -> float:
        # The "*" entry is added by the caller; count an endpoint's own entry only once.
        return 0.0 if endpoint == ALL_ENDPOINTS else table.get(endpoint, 0.0)

    def _consume(self, rules: list[_Rule], endpoint: str) -> _Rule | None:
        for rule in rules:
            if not rule.matches(endpoint):
                continue
            if rule.share < 1.0 and self._rng.random() >= rule.share:
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining == 0:
                    rules.remove(rule)
            return rule
        return None


def _require_positive_count(count: int | None) -> None:
    if count is not None and count < 1:
        raise ValueError(f"count must be at least 1, got {count}")


def _require_non_negative(value: float, name: str) -> None:
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


# --------------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LimitDecision:
    allowed: bool
    remaining: int
    retry_after: int  # whole seconds until a call would be allowed; 0 when allowed


class SlidingWindowLimiter:
    """At most `limit` calls per key in any `window_seconds`, measured on the sandbox clock.

    Rejected calls do not use up the window.
    """

    def __init__(self, limit: int, window_seconds: float, clock: Clock) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("limit must be at least 1 and window_seconds positive")
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: dict[str, deque[float]] = {}

    def hit(self, key: str) -> LimitDecision:
        now = self._clock.timestamp()
        with self._lock:
            calls = self._recent(key, now)
            if len(calls) >= self.limit:
                wait = calls[0] + self.window_seconds - now
                return LimitDecision(allowed=False, remaining=0, retry_after=max(1, math.ceil(wait)))
            calls.append(now)
            return LimitDecision(allowed=True, remaining=self.limit - len(calls), retry_after=0)

    def remaining(self, key: str) -> int:
        """Calls left in the current window, without using one."""
        now = self._clock.timestamp()
        with self._lock:
            return self.limit - len(self._recent(key, now))

    def _recent(self, key: str, now: float) -> deque[float]:
        calls = self._calls.setdefault(key, deque())
        while calls and calls[0] <= now - self.window_seconds:
            calls.popleft()
        return calls


class ConcurrencyLimiter:
    """At most `limit` requests in flight per key."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        with self._lock:
            current = self._in_flight.get(key, 0)
            if current >= self.limit:
                return False
            self._in_flight[key] = current + 1
            return True

    def release(self, key: str) -> None:
        with self._lock:
            current = self._in_flight.get(key, 0)
            if current == 0:
                raise RuntimeError(f"release without acquire for {key!r}")
            if current == 1:
                del self._in_flight[key]
            else:
                self._in_flight[key] = current - 1

    def in_flight(self, key: str) -> int:
        with self._lock:
            return self._in_flight.get(key, 0)


# --------------------------------------------------------------------------------------------------
# JSON, tokens, PKCE, consent page
# --------------------------------------------------------------------------------------------------


def json_dumps(payload: object) -> str:
    """JSON text of `payload`; a Decimal is written as a number with exactly its own digits.

    The json module can only write floats, which would turn 2400.10 into 2400.1 and 0.1+0.2 into
    0.30000000000000004, so this small writer handles the few types a provider payload holds.
    """
    parts: list[str] = []
    _write_json(payload, parts)
    return "".join(parts)


def _write_json(value: object, out: list[str]) -> None:
    if value is None or isinstance(value, bool | int | float | str):
        out.append(json.dumps(value, ensure_ascii=False, allow_nan=False))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"JSON has no representation for {value}")
        out.append(format(value, "f"))
    elif isinstance(value, Mapping):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, got {key!r}")
            if index:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _write_json(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write_json(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")


def json_response(payload: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    response = Response(json_dumps(payload), status=status, content_type="application/json; charset=utf-8")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


# RFC 7636 §4.1: 43-128 characters from the unreserved set.
_PKCE_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    """Whether `verifier` answers `challenge` (RFC 7636; methods "S256" and "plain", case-sensitive)."""
    if not _PKCE_VERIFIER.fullmatch(verifier):
        return False
    if method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    elif method == "plain":
        expected = verifier
    else:
        return False
    return secrets.compare_digest(expected.encode("ascii"), challenge.encode("utf-8"))


def render_consent_page(
    *,
    provider: str,
    app_name: str,
    scopes: list[str],
    tenants: list[tuple[str, str]],
    multi_select: bool,
    hidden: dict[str, str],
    action: str,
) -> str:
    """A small HTML consent form that POSTs `decision` (approve|deny), `tenant` and `hidden` to `action`.

    `tenants` are (id, name) pairs, offered as checkboxes when `multi_select` else radio buttons.
    """
    e = html.escape
    input_type = "checkbox" if multi_select else "radio"
    tenant_rows = []
    for index, (tenant_id, name) in enumerate(tenants):
        # A radio group starts with its first choice selected so "approve" always names a tenant.
        checked = " checked" if index == 0 and not multi_select else ""
        tenant_rows.append(
            f'<li><label><input type="{input_type}" name="tenant" value="{e(tenant_id)}"{checked}> '
            f"{e(name)}</label></li>"
        )
    scope_rows = "".join(f"<li><code>{e(scope)}</code></li>" for scope in scopes)
    hidden_inputs = "".join(
        f'<input type="hidden" name="{e(name)}" value="{e(value)}">' for name, value in hidden.items()
    )
    tenant_block = (
        f"<fieldset><legend>Choose access</legend><ul>{''.join(tenant_rows)}</ul></fieldset>"
        if tenants
        else "<p>No organisation is available to connect.</p>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(provider)} - authorise {e(app_name)}</title></head>\n"
        f"<body><h1>{e(app_name)} wants to access your {e(provider)} data</h1>\n"
        f'<form method="post" action="{e(action)}">\n'
        f"<p>Permissions requested:</p><ul>{scope_rows}</ul>\n"
        f"{tenant_block}\n"
        f"{hidden_inputs}\n"
        '<button type="submit" name="decision" value="approve">Allow access</button>\n'
        '<button type="submit" name="decision" value="deny">Cancel</button>\n'
        "</form></body></html>\n"
    )


# --------------------------------------------------------------------------------------------------
# Authorization codes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedCode:
    code: str
    client_id: str
    redirect_uri: str
    tenants: tuple[str, ...]
    scopes: tuple[str, ...]
    subject: str
    code_challenge: str | None
    code_challenge_method: str | None
    issued_at: float
    expires_at: float


class AuthorizationCodes:
    """Single-use OAuth authorization codes with expiry on the sandbox clock."""

    def __init__(self, clock: Clock, lifetime_seconds: float) -> None:
        self._clock = clock
        self._lifetime = lifetime_seconds
        self._lock = threading.Lock()
        self._codes: dict[str, IssuedCode] = {}

    def issue(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        tenants: Iterable[str],
        scopes: Iterable[str],
        subject: str,
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
    ) -> str:
        now = self._clock.timestamp()
        code = random_token()
        issued = IssuedCode(
            code=code,
            client_id=client_id,
            redirect_uri=redirect_uri,
            tenants=tuple(tenants),
            scopes=tuple(scopes),
            subject=subject,
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
            issued_at=now,
            expires_at=now + self._lifetime,
        )
        with self._lock:
            # Forget codes that can no longer be redeemed so the table stays small.
            for stale in [key for key, value in self._codes.items() if value.expires_at <= now]:
                del self._codes[stale]
            self._codes[code] = issued
        return code

    def redeem(self, code: str, client_id: str, redirect_uri: str, code_verifier: str | None) -> IssuedCode | None:
        """The code's grant, or None when unknown, reused, expired, for another client/redirect or
        failing PKCE. The first attempt consumes the code whatever its outcome (RFC 6749 §4.1.2).

        A verifier sent for a code issued without a challenge is ignored.
        """
        with self._lock:
            issued = self._codes.pop(code, None)
        if issued is None or self._clock.timestamp() >= issued.expires_at:
            return None
        if issued.client_id != client_id or issued.redirect_uri != redirect_uri:
            return None
        if issued.code_challenge is None:
            return issued
        method = issued.code_challenge_method or "plain"  # RFC 7636 §4.3: the default method
        if code_verifier is None or not pkce_matches(code_verifier, issued.code_challenge, method):
            return None
        return issued


# --------------------------------------------------------------------------------------------------
# Admin errors and argument helpers
# --------------------------------------------------------------------------------------------------


class AdminError(Exception):
    """An admin command failed; `status` is the HTTP status the admin surface answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Missing:
    """Marks an admin argument without default."""


_MISSING = _Missing()


def admin_arg[T](args: Mapping[str, Any], name: str, kind: type[T], default: T | _Missing = _MISSING) -> T:
    """`args[name]` checked to be a `kind` (an int is accepted for float); `default` when absent.

    Raises AdminError(400) when the argument is missing without default or has the wrong type.
    """
    value = args.get(name)
    if value is None:
        if isinstance(default, _Missing):
            raise AdminError(400, f"missing argument {name!r}")
        return default
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise AdminError(400, f"argument {name!r} must be {kind.__name__}")
    return value


def _endpoint_arg(args: Mapping[str, Any]) -> str:
    return admin_arg(args, "endpoint", str, ALL_ENDPOINTS)


# --------------------------------------------------------------------------------------------------
# Webhook deliveries
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookDelivery:
    """One attempt to deliver a webhook: the receiver's HTTP status, or the error that prevented one."""

    url: str
    body: bytes
    headers: dict[str, str]
    status: int | None
    error: str | None


# --------------------------------------------------------------------------------------------------
# Provider sandbox base
# --------------------------------------------------------------------------------------------------


class _QuietRequestHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # One line per request would flood test output; the RequestLog already records them.
        return


def _drop_connection(environ: Mapping[str, Any]) -> NoReturn:
    """Close the client connection without a response.

    Only `shutdown` here: werkzeug still polls the socket after the app returns and closes it
    itself. Raising a ConnectionError makes werkzeug treat it as a dropped connection (no log).
    """
    sock = environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket):
        raise RuntimeError("dropping a connection needs werkzeug's server (environ['werkzeug.socket'])")
    with contextlib.suppress(OSError):  # the client may have gone already
        sock.shutdown(socket.SHUT_RDWR)
    raise ConnectionAbortedError("sandbox closed the connection without a response on purpose")


_FINISHERS = "local.sandboxes.finishers"


class ProviderSandbox(abc.ABC):
    """Base of each provider's sandbox: a WSGI app with fault injection, a request log and a server.

    Per request: log → latency → timeout/fail/throttle faults → `check_rate_limit` → handler →
    drop-after-commit → response. `POST /_admin/{command}` (JSON body) maps to `admin()`;
    `GET /_admin/requests` returns the counts. Admin requests are not logged nor faulted.
    """

    def __init__(self, *, clock: Clock | None = None, auto_approve: bool = False, seed: int = 0) -> None:
        self.clock = clock if clock is not None else Clock()
        self.faults = Faults(seed=seed)
        self.requests = RequestLog()
        self.auto_approve = auto_approve
        self.seed = seed
        self.handler_errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._url_map: Map | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None
        self._deliveries: list[WebhookDelivery] = []
        self._delivery_threads: list[threading.Thread] = []

    # ---- what subclasses provide -------------------------------------------------------------

    @abc.abstractmethod
    def routes(self) -> list[Rule]:
        """URL rules whose `endpoint` is the name of a handler method on the subclass."""

    @abc.abstractmethod
    def error_response(self, request: Request, status: int, message: str) -> Response:
        """The provider's own error response for `status`."""

    @abc.abstractmethod
    def throttled_response(self, request: Request) -> Response:
        """The provider's own 429 response."""

    def check_rate_limit(self, request: Request, endpoint: str) -> Response | None:
        """The provider's limit response when a real limit is exceeded, else None."""
        return None

    def tenant_of(self, request: Request) -> str | None:
        """The tenant a request addresses, for the log and the limits."""
        return None

    def on_request_finished(self, request: Request, callback: Callable[[], None]) -> None:
        """Run `callback` once this request is over, answered or not (e.g. release a concurrency slot)."""
        request.environ.setdefault(_FINISHERS, []).append(callback)

    # ---- admin ---------------------------------------------------------------------------------

    def admin(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run an admin command. Subclasses handle their own commands, then call super().admin()."""
        try:
            if command == "latency":
                self.faults.add_latency(admin_arg(args, "seconds", float), _endpoint_arg(args))
            elif command == "handler_delay":
                self.faults.add_handler_delay(admin_arg(args, "seconds", float), _endpoint_arg(args))
            elif command == "fail":
                self.faults.fail(
                    admin_arg(args, "endpoint", str),
                    admin_arg(args, "status", int),
                    share=admin_arg(args, "share", float, 1.0),
                    count=admin_arg(args, "count", int) if args.get("count") is not None else None,
                )
            elif command == "throttle":
                self.faults.throttle(_endpoint_arg(args), count=admin_arg(args, "count", int, 1))
            elif command == "timeout":
                self.faults.timeout(
                    admin_arg(args, "endpoint", str),
                    count=admin_arg(args, "count", int, 1),
                    seconds=admin_arg(args, "seconds", float, 30.0),
                )
            elif command == "drop_response_after_commit":
                self.faults.drop_response_after_commit(
                    admin_arg(args, "endpoint", str), count=admin_arg(args, "count", int, 1)
                )
            elif command == "clear_faults":
                self.faults.clear()
            elif command == "advance_clock":
                self.clock.advance(admin_arg(args, "seconds", float))
                return {"now": self.clock.now().isoformat()}
            elif command == "reset_requests":
                self.requests.reset()
            else:
                raise AdminError(404, f"unknown admin command {command!r}")
        except ValueError as exc:
            raise AdminError(400, str(exc)) from exc
        return {"ok": True}

    def _serve_admin(self, request: Request) -> Response:
        command = request.path[len(ADMIN_PREFIX) :]
        if request.method == "GET" and command == "requests":
            return json_response({"counts": self.requests.counts(), "total": self.requests.total()})
        if request.method == "GET" and command == "webhooks":
            deliveries = [
                {"url": item.url, "status": item.status, "error": item.error} for item in self.webhook_deliveries()
            ]
            return json_response({"deliveries": deliveries})
        if request.method != "POST":
            return json_response({"error": f"{request.method} not allowed on {request.path}"}, 405)
        return self._run_admin_command(command, request)

    def _run_admin_command(self, command: str, request: Request) -> Response:
        args = request.get_json(force=True, silent=True) if request.get_data() else {}
        if not isinstance(args, dict):
            return json_response({"error": "the body must be a JSON object"}, 400)
        try:
            result = self.admin(command, args)
        except AdminError as exc:
            return json_response({"error": exc.message}, exc.status)
        except (KeyError, TypeError, ValueError) as exc:
            return json_response({"error": f"bad arguments for {command!r}: {exc}"}, 400)
        return json_response(result)

    # ---- WSGI ----------------------------------------------------------------------------------

    @property
    def url_map(self) -> Map:
        with self._lock:
            if self._url_map is None:
                # No redirects for slashes: a provider answers the path it was given.
                self._url_map = Map(self.routes(), strict_slashes=False, merge_slashes=False)
            return self._url_map

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        if request.path.startswith(ADMIN_PREFIX):
            return self._serve_admin(request)(environ, start_response)
        try:
            rule, values = self.url_map.bind_to_environ(environ).match(return_rule=True)
        except HTTPException as exc:
            entry = self._log(request, UNMATCHED, None)
            response = self.error_response(request, exc.code or 404, exc.description or "Not found")
            self.requests.set_status(entry, response.status_code)
            return response(environ, start_response)
        endpoint = str(rule.endpoint)
        try:
            tenant = self.tenant_of(request)
        except Exception as exc:
            self._keep_bug(exc, endpoint)
            tenant = None
        entry = self._log(request, endpoint, tenant)
        try:
            response = self._respond(request, endpoint, values)
        except ConnectionAbortedError:
            raise  # dropped on purpose: no response, the entry keeps status 0
        except Exception as exc:
            # A sandbox bug outside the handler; error_response itself may be what failed, so plain text.
            self._keep_bug(exc, endpoint)
            response = Response("sandbox error, see handler_errors", status=500, content_type="text/plain")
        finally:
            for callback in request.environ.get(_FINISHERS, []):
                callback()
        self.requests.set_status(entry, response.status_code)
        return response(environ, start_response)

    def _log(self, request: Request, endpoint: str, tenant: str | None) -> LoggedRequest:
        entry = LoggedRequest(
            at=self.clock.now(),
            method=request.method,
            path=request.path,
            endpoint=endpoint,
            tenant=tenant,
            status=0,
        )
        self.requests.record(entry)
        return entry

    def _keep_bug(self, exc: Exception, endpoint: str) -> None:
        logger.error("sandbox endpoint %s failed", endpoint, exc_info=exc)
        with self._lock:
            self.handler_errors.append(exc)

    def _respond(self, request: Request, endpoint: str, values: Mapping[str, Any]) -> Response:
        delay = self.faults.latency(endpoint)
        if delay > 0:
            time.sleep(delay)
        action = self.faults.take_action(endpoint)
        if action is not None:
            if action.kind == "timeout":
                time.sleep(action.seconds)
                _drop_connection(request.environ)
            if action.kind == "fail":
                return self.error_response(request, action.status, "Injected failure")
            return self.throttled_response(request)
        limited = self.check_rate_limit(request, endpoint)
        if limited is not None:
            return limited
        delay = self.faults.handler_delay(endpoint)
        if delay > 0:
            time.sleep(delay)

        response = self._run_handler(request, endpoint, values)
        if self.faults.take_drop(endpoint):
            _drop_connection(request.environ)
        return response

    def _run_handler(self, request: Request, endpoint: str, values: Mapping[str, Any]) -> Response:
        handler: Callable[..., Response] = getattr(self, endpoint)
        try:
            return handler(request, **values)
        except HTTPException as exc:
            return self.error_response(request, exc.code or 500, exc.description or exc.name)
        except Exception as exc:
            # A sandbox bug: answer like the provider's 500 and keep it for the test to see.
            self._keep_bug(exc, endpoint)
            return self.error_response(request, 500, "Internal server error")

    # ---- server --------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a daemon thread; returns the base URL, e.g. http://127.0.0.1:54321."""
        if self._server is not None:
            raise RuntimeError("sandbox already started")
        server = make_server(host, port, self, threaded=True, request_handler=_QuietRequestHandler)
        # A short poll interval makes stop() quick; idle polling costs next to nothing.
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-server",
            daemon=True,
        )
        thread.start()
        self._server = server
        self._thread = thread
        self._base_url = f"http://{host}:{server.server_port}"
        return self._base_url

    def stop(self) -> None:
        """Stop serving and wait for the server thread; requests still in flight are abandoned."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        thread.join()
        self._server = None
        self._thread = None
        self._base_url = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("sandbox not started")
        return self._base_url

    def __enter__(self) -> Self:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- webhooks ------------------------------------------------------------------------------

    def post_webhook(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        """POST `body` to `url` in a background thread; the outcome lands in `webhook_deliveries()`."""
        thread = threading.Thread(
            target=self._deliver, args=(url, body, dict(headers)), name="webhook-delivery", daemon=True
        )
        with self._lock:
            self._delivery_threads = [t for t in self._delivery_threads if t.is_alive()]
            self._delivery_threads.append(thread)
        thread.start()

    def _deliver(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        status: int | None = None
        error: str | None = None
        try:
            status = requests.post(url, data=body, headers=headers, timeout=10).status_code
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._deliveries.append(WebhookDelivery(url, body, headers, status, error))

    def webhook_deliveries(self) -> list[WebhookDelivery]:
        with self._lock:
            return list(self._deliveries)

    def wait_for_webhooks(self, timeout: float = 10.0) -> None:
        """Wait until every webhook posted so far has been delivered or has failed."""
        with self._lock:
            threads = list(self._delivery_threads)
            self._delivery_threads.clear()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
