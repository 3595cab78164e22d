"""Sage Accounting's limit as the sandbox enforces it, and its 429.

200 calls a minute per business (the v3.0 figure; none is published for v3.1,
docs/providers.md#sage-rate-limits), counted once a request's token and business are known. S-RC
documents no rate-limit header: the 429 carries Sage's error array, `Retry-After` (seconds, this
sandbox's choice) and the `X-Business` it answered for.
"""

from __future__ import annotations

from werkzeug.wrappers import Response

from local.sandboxes.core import Clock, SlidingWindowLimiter, json_response
from local.sandboxes.sage.ledger import SageError

DEFAULT_RATE_LIMIT_PER_MINUTE = 200  # S-V30 (v3.0 figure; none published for v3.1, #sage-rate-limits)
# S-RC documents no rate-limit header; Retry-After (seconds) is this sandbox's choice.
INJECTED_THROTTLE_RETRY_AFTER = 1


class RateLimits:
    """The calls of each business in the last minute, on the sandbox clock; a new one starts afresh."""

    def __init__(self, clock: Clock, per_minute: int = DEFAULT_RATE_LIMIT_PER_MINUTE) -> None:
        self._minute = SlidingWindowLimiter(per_minute, 60, clock)

    def check(self, business_id: str) -> Response | None:
        """Count one call of the business: None when it may go on, else Sage's 429."""
        decision = self._minute.hit(business_id)
        if decision.allowed:
            return None
        error = SageError("TooManyRequests", "Rate limit exceeded for this business, retry later")
        headers = {"Retry-After": str(decision.retry_after), "X-Business": business_id}
        return json_response([error.wire()], 429, headers)


def throttled(*, api: bool) -> Response:
    """The 429 of an injected throttle: Sage's error array on the API, an OAuth error elsewhere."""
    headers = {"Retry-After": str(INJECTED_THROTTLE_RETRY_AFTER)}
    if not api:
        return json_response({"error": "temporarily_unavailable"}, 429, headers)
    return json_response([SageError("TooManyRequests", "Too many requests").wire()], 429, headers)
