"""QuickBooks Online's limits as the sandbox enforces them, their 429, and Intuit's metering.

Per company (realm): 500 calls a minute, batch calls included; 10 requests at once per app and
company; 40 `/batch` requests a minute per app and company, on top of the 500; at most 30 items in a
batch (docs/providers.md#quickbooks-rate-limits, #quickbooks-batch). The 429 is Intuit's XML
ThrottleExceeded Fault with no Retry-After and no quota headers: none is documented, so a client
must back off on its own.
"""

from __future__ import annotations

import threading
from collections import Counter

from werkzeug.wrappers import Response

from local.sandboxes.core import Clock, ConcurrencyLimiter, SlidingWindowLimiter

PER_MINUTE_LIMIT = 500  # per realm, batch calls included (docs/providers.md#quickbooks-rate-limits)
CONCURRENT_LIMIT = 10  # per app and realm
# Current batch page says 10, the 2023 blog and a 2025 API-explorer test say 30 (docs/providers.md#quickbooks-batch):
# the sandbox accepts what the API was seen to accept.
BATCH_MAX_ITEMS = 30
# 40 batch requests a minute per realm and app, on top of the 500 calls (docs/providers.md#quickbooks-batch, Intuit's
# limits-and-throttles page).
BATCH_PER_MINUTE_LIMIT = 40
# Metering (Intuit developer blog 2025-08-11): reads are CorePlus (metered), writes Core; each batch
# item is metered like the call it stands for.
METERED, UNMETERED = "CorePlus", "Core"
# The endpoints the limits count: the Accounting API's, not OAuth's.
API_ENDPOINTS = frozenset(
    {"query", "cdc", "read_entity", "download", "create_billpayment", "create_purchase", "batch", "preferences"}
)


class RateLimits:
    """The minute, batch and concurrency limits of every app and company, on the sandbox clock."""

    def __init__(
        self,
        clock: Clock,
        *,
        per_minute: int = PER_MINUTE_LIMIT,
        concurrent: int = CONCURRENT_LIMIT,
        batches_per_minute: int = BATCH_PER_MINUTE_LIMIT,
    ) -> None:
        self._minute = SlidingWindowLimiter(per_minute, 60.0, clock)
        self._batches = SlidingWindowLimiter(batches_per_minute, 60.0, clock)
        self._concurrency = ConcurrencyLimiter(concurrent)

    def admit(self, endpoint: str, client_id: str | None, realm_id: str) -> str | None:
        """Let one call in: the concurrency slot to `release` once it is answered, or None (throttled)."""
        key = f"{'-' if client_id is None else client_id}:{realm_id}"
        # A batch refused by its own cap does not use up one of the realm's 500 calls.
        if endpoint == "batch" and not self._batches.hit(key).allowed:
            return None
        if not self._minute.hit(realm_id).allowed:
            return None
        if not self._concurrency.acquire(key):
            return None
        return key

    def release(self, slot: str) -> None:
        self._concurrency.release(slot)


def throttled(time: str, headers: dict[str, str]) -> Response:
    """Intuit's 429: XML even to Accept: application/json (python-quickbooks#43), and no Retry-After
    or quota headers (docs/providers.md#quickbooks-rate-limits)."""
    body = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<IntuitResponse time="{time}" xmlns="http://schema.intuit.com/finance/v3">\n'
        '    <Fault type="SERVICE">\n'
        '        <Error code="3001">\n'
        "            <Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>\n"
        "            <Detail>The request limit was reached.  Try again later</Detail>\n"
        "        </Error>\n"
        "    </Fault>\n"
        "</IntuitResponse>\n"
    )
    return Response(body, status=429, content_type="application/xml", headers=headers)


class Meter:
    """Calls of each company as Intuit meters them: CorePlus (reads) or Core (writes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def count(self, realm_id: str, kind: str, calls: int = 1) -> None:
        with self._lock:
            self._counts[(realm_id, kind)] += calls

    def metered(self, realm_id: str, kind: str) -> int:
        with self._lock:
            return self._counts[(realm_id, kind)]
