"""HTTP calls to a provider's API: bearer token, tenant headers, retries that respect the provider.

Every attempt first takes from the organisation's call budget (providers/budget.py), which also
learns from each answer. Retried: 429 (after `Retry-After` when the provider sends it, else
exponential backoff; with a budget, the pause is the budget's, for every Lambda), 5xx and
dropped connections - for reads always, for writes only when the caller says the write is idempotent
(it carries the provider's idempotency key). A 401 refreshes the access token once and retries.
Anything else comes back to the caller as a `ProviderError` with the provider's status and message.
"""

import json as jsonlib
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import requests

from payedge_connect.observability import count_provider_call, logger
from payedge_connect.providers.errors import CallBudgetSpent, ProviderError, ProviderUnavailable

if TYPE_CHECKING:
    from payedge_connect.providers.budget import CallerBudget

__all__ = ["CallBudgetSpent", "CallCounter", "ProviderApi", "ProviderError", "ProviderUnavailable", "exact_json"]

_TIMEOUT_SECONDS = (5, 30)  # connect, read
_MAX_ATTEMPTS = 5
_BACKOFF_BASE_SECONDS = 0.5
_BACKOFF_CAP_SECONDS = 30.0
# A Retry-After longer than this is not waited out inside one invocation; the caller reschedules.
_LONGEST_WAIT_SECONDS = 60.0


@dataclass
class CallCounter:
    """Provider calls made, for the sync-run record and the benchmarks."""

    total: int = 0
    by_route: dict[str, int] = field(default_factory=dict)

    def count(self, route: str) -> None:
        self.total += 1
        self.by_route[route] = self.by_route.get(route, 0) + 1


def exact_json(value: object) -> str:
    """JSON text with each Decimal written as a number with exactly its digits: json.dumps only writes
    floats, which would round some amounts."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"JSON has no number for {value}")
        return format(value, "f")
    if isinstance(value, dict):
        return "{" + ",".join(f"{jsonlib.dumps(str(key))}:{exact_json(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(exact_json(item) for item in value) + "]"
    return jsonlib.dumps(value, allow_nan=False)


def retry_after_seconds(response: requests.Response) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date (RFC 9110 allows both)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


class ProviderApi:
    """One organisation's API at one provider, called with a connection's access token."""

    def __init__(
        self,
        base_url: str,
        *,
        provider: str | None = None,
        access_token: Callable[[], str],
        refresh_access_token: Callable[[], str] | None = None,
        headers: Mapping[str, str] | None = None,
        http: requests.Session | None = None,
        calls: CallCounter | None = None,
        budget: "CallerBudget | None" = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # Named: every call sent is counted for the ProviderCalls metric (observability.py).
        self.provider = provider
        self.budget = budget
        self._access_token = access_token
        self._refresh_access_token = refresh_access_token
        self._headers = dict(headers or {})
        self._http = http or requests.Session()
        self.calls = calls or CallCounter()
        self._sleep = sleep

    def get(self, path: str, *, params: Mapping[str, Any] | None = None, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, params=params, idempotent=True, **kwargs)

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        route: str | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        accept: str = "application/json",
        batch_items: int | None = None,
    ) -> requests.Response:
        """Send a request; returns the 2xx response or raises ProviderError/ProviderUnavailable.

        `batch_items`: the request is a batch of that many operations (QuickBooks /batch), each counted
        as a call by the budget. CallBudgetSpent: the budget could not be waited for, nothing was sent."""
        url = path if path.startswith("http") else f"{self.base_url}/{path.lstrip('/')}"
        if json is not None:
            # Amounts are Decimals: written digit for digit, never through float.
            data, headers = exact_json(json).encode("utf-8"), {"Content-Type": "application/json", **(headers or {})}
        route_name = route or f"{method} {path.split('?', maxsplit=1)[0]}"
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            request_headers = {
                "Accept": accept,
                **self._headers,
                **(headers or {}),
                "Authorization": f"Bearer {self._access_token()}",
            }
            if self.budget is not None:
                self.budget.take(units=batch_items or 1, batch=batch_items is not None)
            self.calls.count(route_name)
            count_provider_call(self.provider)
            try:
                response = self._http.request(
                    method,
                    url,
                    params=params,
                    data=data,
                    headers=request_headers,
                    timeout=_TIMEOUT_SECONDS,
                )
            except (requests.ConnectionError, requests.Timeout) as error:
                if not idempotent or attempt >= _MAX_ATTEMPTS:
                    reason = f"no answer from the provider ({type(error).__name__})"
                    raise ProviderUnavailable(0, reason) from None
                self._back_off(attempt, None, route_name, "no answer")
                continue

            if self.budget is not None:
                self.budget.observe(response.headers)
            if response.status_code == 401 and self._refresh_access_token and not refreshed:
                # An access token can die early (revoked, clock skew): refresh once, then retry.
                refreshed = True
                self._refresh_access_token()
                continue
            if response.status_code == 429 or response.status_code >= 500:
                wait = retry_after_seconds(response)
                retryable = idempotent or response.status_code == 429
                if response.status_code == 429 and self.budget is not None:
                    # Every Lambda of the organisation pauses; the budget's next take waits it out.
                    pause = wait if wait is not None else _backoff_delay(attempt)
                    self.budget.throttled(pause, response.headers.get("X-Rate-Limit-Problem"))
                if not retryable or attempt >= _MAX_ATTEMPTS or (wait or 0) > _LONGEST_WAIT_SECONDS:
                    raise ProviderUnavailable(response.status_code, _summary(response), retry_after=wait)
                if response.status_code != 429 or self.budget is None:
                    self._back_off(attempt, wait, route_name, str(response.status_code))
                continue
            if response.status_code >= 400:
                raise ProviderError(response.status_code, _summary(response))
            return response

    def _back_off(self, attempt: int, retry_after: float | None, route: str, reason: str) -> None:
        delay = retry_after if retry_after is not None else _backoff_delay(attempt)
        logger.warning("Provider call retried", extra={"route": route, "reason": reason, "delay_s": delay})
        self._sleep(delay)


def _backoff_delay(attempt: int) -> float:
    ceiling = min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security


def _summary(response: requests.Response) -> str:
    """A short, safe description of an error body (never the whole payload)."""
    text = response.text.strip().replace("\n", " ")
    return text[:300] if text else response.reason or "no body"
