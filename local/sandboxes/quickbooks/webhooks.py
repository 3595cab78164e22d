"""QuickBooks webhook notifications: CloudEvents (default) or the legacy `eventNotifications` body.

Signature (both formats): header `intuit-signature` = base64(HMAC-SHA256(raw body, verifier token)).
CloudEvents (the mandatory migration, docs/providers.md#quickbooks-webhooks): a JSON array of
`{specversion, id, source, type: "qbo.<entity>.<created|updated|deleted>.v1", datacontenttype, time,
intuitentityid, intuitaccountid, data}`, sent as `application/cloudevents+json` (Intuit's migration
guide warns receivers about that content type). Legacy: `{"eventNotifications": [{"realmId",
"dataChangeEvent": {"entities": [{"name", "id", "operation", "lastUpdated"}]}}]}`.
Choice: one delivery per change, no 1-5 minute aggregation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from local.sandboxes.core import json_dumps
from local.sandboxes.quickbooks.ledger import qbo_time

CLOUDEVENTS = "cloudevents"
LEGACY = "legacy"
# What a subscription covers unless it names its entities.
WEBHOOK_ENTITIES = ("Bill", "Vendor", "BillPayment", "Purchase")
_PAST_TENSE = {"Create": "created", "Update": "updated", "Delete": "deleted", "Void": "voided"}
# Choice: Intuit's samples do not show the CloudEvents `source` value.
CLOUDEVENTS_SOURCE = "intuit.qbo"


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    verifier_token: str
    payload_format: str
    entities: frozenset[str]


@dataclass(frozen=True)
class ChangeEvent:
    realm_id: str
    entity_type: str
    entity_id: str
    operation: str  # Create, Update, Delete or Void
    at: datetime
    data: dict[str, Any] | None  # the entity as it is after the change (CloudEvents `data`)


def sign(body: bytes, verifier_token: str) -> str:
    digest = hmac.new(verifier_token.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def cloudevents_body(events: list[ChangeEvent]) -> bytes:
    payload = [
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": CLOUDEVENTS_SOURCE,
            "type": f"qbo.{event.entity_type.lower()}.{_PAST_TENSE[event.operation]}.v1",
            "datacontenttype": "application/json",
            "time": event.at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "intuitentityid": event.entity_id,
            "intuitaccountid": event.realm_id,
            "data": event.data if event.data is not None else {},
        }
        for event in events
    ]
    return json_dumps(payload).encode("utf-8")


def legacy_body(events: list[ChangeEvent]) -> bytes:
    realms: dict[str, list[dict[str, str]]] = {}
    for event in events:
        realms.setdefault(event.realm_id, []).append(
            {
                "name": event.entity_type,
                "id": event.entity_id,
                "operation": event.operation,
                "lastUpdated": qbo_time(event.at),
            }
        )
    payload = {
        "eventNotifications": [
            {"realmId": realm_id, "dataChangeEvent": {"entities": entities}} for realm_id, entities in realms.items()
        ]
    }
    return json_dumps(payload).encode("utf-8")


def build_delivery(config: WebhookConfig, events: list[ChangeEvent]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one signed delivery of `events`."""
    if config.payload_format == CLOUDEVENTS:
        body, content_type = cloudevents_body(events), "application/cloudevents+json"
    else:
        body, content_type = legacy_body(events), "application/json"
    return body, {"Content-Type": content_type, "intuit-signature": sign(body, config.verifier_token)}
