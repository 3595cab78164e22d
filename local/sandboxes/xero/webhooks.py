"""Xero webhooks: signed, thin event notifications and the "intent to receive" check.

Payload per `xero-webhooks.yaml` (docs/providers.md#specs); the signature header `x-xero-signature` is
base64(HMAC-SHA256(raw body, webhook key)). A receiver must answer 200 to a correctly signed
payload and 401 to an incorrectly signed one before Xero will deliver to it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import string
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

from local.sandboxes.xero.wire import webhook_timestamp

SIGNATURE_HEADER = "x-xero-signature"
# Xero's intent-to-receive check expects an answer within 5 seconds.
RESPONSE_DEADLINE_SECONDS = 5.0


def sign(body: bytes, key: str) -> str:
    digest = hmac.new(key.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _entropy() -> str:
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(20))


def _encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


@dataclass
class Subscription:
    """An app's webhook: where to deliver, the signing key, and the next event sequence number."""

    client_id: str
    url: str
    key: str
    categories: frozenset[str] = frozenset({"INVOICE", "CONTACT"})
    next_sequence: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)

    def event_body(
        self, *, resource_url: str, resource_id: str, category: str, event_type: str, tenant_id: str, at: datetime
    ) -> bytes:
        """One event, numbered in this subscription's sequence."""
        with self.lock:
            sequence = self.next_sequence
            self.next_sequence += 1
        event = {
            "resourceUrl": resource_url,
            "resourceId": resource_id,
            "eventDateUtc": webhook_timestamp(at),
            "eventType": event_type,
            "eventCategory": category,
            "tenantId": tenant_id,
            "tenantType": "ORGANISATION",
        }
        return _encode(
            {"events": [event], "firstEventSequence": sequence, "lastEventSequence": sequence, "entropy": _entropy()}
        )

    def headers(self, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, self.key)}


def intent_to_receive(url: str, key: str) -> bool:
    """Xero's endpoint check: a correctly signed empty payload must get 200, a badly signed one 401."""
    # The check sends sequence numbers 0, below the spec's minimum of 1, as Xero does.
    body = _encode({"events": [], "firstEventSequence": 0, "lastEventSequence": 0, "entropy": _entropy()})
    good = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, key)}
    bad = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, key + "-wrong")}
    try:
        accepted = requests.post(url, data=body, headers=good, timeout=RESPONSE_DEADLINE_SECONDS)
        refused = requests.post(url, data=body, headers=bad, timeout=RESPONSE_DEADLINE_SECONDS)
    except requests.RequestException:
        return False
    return accepted.status_code == 200 and refused.status_code == 401
