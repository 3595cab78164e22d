"""Xero's idempotency rule: the `Idempotency-Key` header on a PUT or POST.

Within 6 minutes the same key from the same app, in the same organisation, replays the first answer
(errors included) for the same request; the same key with a different request is refused with a 400.
Keys are at most 128 characters (docs/providers.md#xero-payments). "The same request" is the method,
path, query string and body.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from werkzeug.wrappers import Request, Response

from local.sandboxes.core import Clock, json_response
from local.sandboxes.xero import wire

IDEMPOTENCY_WINDOW_SECONDS = 6 * 60
IDEMPOTENCY_KEY_MAX_LENGTH = 128


@dataclass(frozen=True)
class _StoredResponse:
    fingerprint: str
    status: int
    body: bytes
    content_type: str
    stored_at: float


class IdempotentReplies:
    """Per organisation, (client_id, Idempotency-Key) → first answer. Callers hold that organisation's lock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._answers: dict[str, dict[tuple[str, str], _StoredResponse]] = {}

    def answer(self, request: Request, tenant_id: str, client_id: str, run: Callable[[], Response]) -> Response:
        """`run()`'s response, or the first answer to this key; a key reused for another request is refused."""
        idempotency_key = request.headers.get("Idempotency-Key")
        if idempotency_key is None:
            return run()
        if len(idempotency_key) > IDEMPOTENCY_KEY_MAX_LENGTH:
            return json_response(wire.validation_exception([], "Idempotency-Key must be 128 characters or fewer"), 400)
        now = self._clock.timestamp()
        fingerprint = _fingerprint(request)
        slot = (client_id, idempotency_key)
        answers = self._answers.setdefault(tenant_id, {})
        stored = answers.get(slot)
        if stored is not None and now < stored.stored_at + IDEMPOTENCY_WINDOW_SECONDS:
            if stored.fingerprint != fingerprint:
                message = f"Idempotency Key {idempotency_key} is used with a different request."
                # The exact body of this refusal is not documented; the message is from Xero's notes.
                return json_response(wire.validation_exception([], message), 400)
            return Response(stored.body, status=stored.status, content_type=stored.content_type)
        response = run()
        for stale in [k for k, v in answers.items() if now >= v.stored_at + IDEMPOTENCY_WINDOW_SECONDS]:
            del answers[stale]
        answers[slot] = _StoredResponse(
            fingerprint, response.status_code, response.get_data(), response.content_type or "", now
        )
        return response


def _fingerprint(request: Request) -> str:
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.query_string.decode("latin-1")):
        digest.update(part.encode("utf-8") + b"\0")
    digest.update(request.get_data())
    return digest.hexdigest()
