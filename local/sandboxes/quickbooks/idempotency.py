"""QuickBooks' idempotency rule: `?requestid=` on a POST replays the first response in that company.

Intuit returns "the original response" for a repeated requestid (I-REQID, docs/providers.md#quickbooks-payments):
the answer is replayed byte for byte whatever the new body, a validation Fault included, so a
corrected request needs a new requestid. Replies are kept for the sandbox's lifetime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from werkzeug.wrappers import Request, Response

from local.sandboxes.quickbooks import ledger as qbo
from local.sandboxes.quickbooks.ledger import QboError

REQUEST_ID_MAX = 50


@dataclass(frozen=True)
class _StoredReply:
    status: int
    body: bytes
    content_type: str


class IdempotentReplies:
    """The first response to each (company, requestid). Callers hold the ledger lock."""

    def __init__(self) -> None:
        self._replies: dict[tuple[str, str], _StoredReply] = {}

    def answer(
        self,
        request: Request,
        realm_id: str,
        run: Callable[[], Response],
        *,
        refuse: Callable[[QboError], Response],
        headers: Callable[[], dict[str, str]],
    ) -> Response:
        """`run()`'s response, or the one stored for this requestid; `refuse` answers a requestid too long."""
        request_id = request.args.get("requestid")
        if request_id is None:
            return run()
        if len(request_id) > REQUEST_ID_MAX:
            return refuse(qbo.string_too_long("requestid", REQUEST_ID_MAX, len(request_id)))
        stored = self._replies.get((realm_id, request_id))
        if stored is not None:
            return Response(stored.body, status=stored.status, content_type=stored.content_type, headers=headers())
        response = run()
        self._replies[(realm_id, request_id)] = _StoredReply(
            response.status_code, response.get_data(), response.content_type or "application/json"
        )
        return response
