"""Xero's limits as the sandbox enforces them, the headers every answer carries, and its 429.

Per app and organisation: 5 calls at once, 60 a minute, 5,000 a day (1,000 on the Starter tier); per
app 10,000 a minute across organisations (docs/providers.md#xero-rate-limits). Every Accounting API
answer carries `X-DayLimit-Remaining`, `X-MinLimit-Remaining` and `X-AppMinLimit-Remaining`
(`/connections`: the app's only); a 429 has an empty body, `Retry-After` and `X-Rate-Limit-Problem`
naming the limit. Identity's endpoints (authorize, token, revocation, discovery) are not limited here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from werkzeug.wrappers import Request, Response

from local.sandboxes.core import Clock, ConcurrencyLimiter, SlidingWindowLimiter

# Where a request keeps the limit headers its answer carries (a 429 included).
LIMIT_HEADERS = "xero.limit_headers"


@dataclass(frozen=True)
class XeroLimits:
    """Xero's API limits; tests and benchmarks lower or raise them."""

    tenant_per_minute: int = 60
    tenant_per_day: int = 5000  # 1,000 on the Starter tier
    tenant_concurrent: int = 5
    app_per_minute: int = 10_000


@dataclass(frozen=True)
class Verdict:
    """One call's fate: `problem` names the limit that refused it (None: let in, holding `slot`)."""

    problem: str | None
    retry_after: int | None
    headers: dict[str, str]
    slot: str | None = None


class RateLimits:
    """The counts behind `XeroLimits`, on the sandbox clock; a new one starts afresh."""

    def __init__(self, limits: XeroLimits, clock: Clock) -> None:
        self._lock = threading.Lock()
        self._tenant_minute = SlidingWindowLimiter(limits.tenant_per_minute, 60, clock)
        # Xero has called the day limit both rolling and fixed; a rolling 24 h window is used here.
        self._tenant_day = SlidingWindowLimiter(limits.tenant_per_day, 24 * 3600, clock)
        self._app_minute = SlidingWindowLimiter(limits.app_per_minute, 60, clock)
        self._concurrency = ConcurrencyLimiter(limits.tenant_concurrent)

    def app_call(self, client_id: str) -> Verdict:
        """A call with no organisation (/connections): only the app-wide minute limit applies."""
        with self._lock:
            decision = self._app_minute.hit(client_id)
        headers = {"X-AppMinLimit-Remaining": str(decision.remaining)}
        if decision.allowed:
            return Verdict(None, None, headers)
        return Verdict("appminute", decision.retry_after, headers)

    def tenant_call(self, client_id: str, tenant: str) -> Verdict:
        """A call to an organisation: a concurrency slot, then the app minute, the minute and the day."""
        key = f"{client_id}:{tenant}"
        with self._lock:
            minute, day, app_minute = self._tenant_minute, self._tenant_day, self._app_minute
            if not self._concurrency.acquire(key):
                problem: str | None = "concurrent"
                retry_after: int | None = None
            else:
                problem, retry_after = None, None
                for name, limiter, limiter_key in (
                    ("appminute", app_minute, client_id),
                    ("minute", minute, key),
                    ("day", day, key),
                ):
                    if limiter.remaining(limiter_key) <= 0:
                        problem, retry_after = name, limiter.hit(limiter_key).retry_after
                        break
                if problem is None:
                    app_minute.hit(client_id)
                    minute.hit(key)
                    day.hit(key)
                else:
                    self._concurrency.release(key)
            headers = {
                "X-DayLimit-Remaining": str(day.remaining(key)),
                "X-MinLimit-Remaining": str(minute.remaining(key)),
                "X-AppMinLimit-Remaining": str(app_minute.remaining(client_id)),
            }
        return Verdict(problem, retry_after, headers, slot=key if problem is None else None)

    def release(self, slot: str) -> None:
        self._concurrency.release(slot)

    def in_flight(self, client_id: str, tenant: str) -> int:
        with self._lock:
            return self._concurrency.in_flight(f"{client_id}:{tenant}")


def too_many(request: Request, problem: str, retry_after: int | None) -> Response:
    """Xero's 429: no body, the limit named. X-Rate-Limit-Problem "minute" and "day" are seen in
    clients; "concurrent" and "appminute" are ours."""
    response = Response(b"", status=429)
    response.headers["X-Rate-Limit-Problem"] = problem
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return with_limit_headers(request, response)


def with_limit_headers(request: Request, response: Response) -> Response:
    for name, value in request.environ.get(LIMIT_HEADERS, {}).items():
        response.headers[name] = value
    return response
