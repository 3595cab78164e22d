"""Sage's idempotency rule: `idempotency_id` inside the resource object of a POST (S-IDEM).

For 7 days the same id in the same business replays the first 2xx answer whatever the new body
holds; an id used for another resource type is refused with `IdempotencyResourceMismatch` (422 here:
S-IDEM names the code, not the status). A refused write is not remembered: nothing was created, so a
corrected retry may reuse the id (docs/providers.md#sage-payments).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Response

from local.sandboxes.core import Clock, json_response
from local.sandboxes.sage.ledger import SageError, SageValidationError

IDEMPOTENCY_SECONDS = 7 * 24 * 3600  # S-IDEM: an idempotency_id replays for 7 days


@dataclass
class _StoredResult:
    resource: str  # contact_payment / other_payment
    status: int
    body: dict[str, Any]
    stored_at: float


class IdempotentReplies:
    """Per business, idempotency_id → the first 2xx answer. Callers hold the sandbox's lock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._stored: dict[str, dict[str, _StoredResult]] = {}

    def answer(
        self,
        business_id: str,
        resource: str,
        fields: Mapping[str, Any],
        commit: Callable[[Mapping[str, Any]], dict[str, Any]],
    ) -> Response:
        """201 with `commit(fields)`, or the answer stored for the resource's idempotency_id.

        Raises SageValidationError (a 422) for a mismatched resource type, or from `commit`."""
        idempotency_id = fields.get("idempotency_id")
        now = self._clock.timestamp()
        stored_here = self._stored.setdefault(business_id, {})
        if idempotency_id not in (None, ""):
            stored = self._replay(stored_here, str(idempotency_id), resource, now)
            if stored is not None:
                return json_response(stored.body, stored.status)
        body = commit(fields)
        if idempotency_id not in (None, ""):
            stored_here[str(idempotency_id)] = _StoredResult(resource, 201, copy.deepcopy(body), now)
        return json_response(body, 201)

    @staticmethod
    def _replay(
        stored_here: Mapping[str, _StoredResult], idempotency_id: str, resource: str, now: float
    ) -> _StoredResult | None:
        stored = stored_here.get(idempotency_id)
        if stored is None or now >= stored.stored_at + IDEMPOTENCY_SECONDS:
            return None
        if stored.resource != resource:
            raise SageValidationError(
                [
                    SageError(
                        "IdempotencyResourceMismatch",
                        f"The idempotency_id was already used for a {stored.resource}",
                        f"{resource}.idempotency_id",
                    )
                ]
            )
        return stored
