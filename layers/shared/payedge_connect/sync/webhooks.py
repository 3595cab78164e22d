"""Provider webhooks: check the signature on the raw body, then sync just the entities they name.

QuickBooks signs with `intuit-signature` (verifier token), Xero with `x-xero-signature` (webhook key):
both base64(HMAC-SHA256(raw body)). Both want a fast answer (QuickBooks ~3 s, Xero 5 s), so the
handler only verifies, finds the connections and queues syncs.
"""

import base64
import hashlib
import hmac
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from payedge_connect.models import ConnectionStatus, Provider
from payedge_connect.services import Services
from payedge_connect.sync.requests import SyncMessage, request_entity_sync


class InvalidSignature(Exception):
    """The body was not signed with our key: Xero expects a 401, and nothing is done."""


@dataclass
class EntityChanges:
    """Per provider organisation: the bills and vendors a notification says changed."""

    bill_ids: set[str] = field(default_factory=set)
    vendor_ids: set[str] = field(default_factory=set)


def signature_matches(raw_body: bytes, signature: str | None, key: str) -> bool:
    expected = base64.b64encode(hmac.new(key.encode(), raw_body, hashlib.sha256).digest()).decode()
    return signature is not None and hmac.compare_digest(expected, signature.strip())


def quickbooks_changes(payload: Any) -> dict[str, EntityChanges]:
    """realmId -> changes, from a CloudEvents array or the legacy eventNotifications body."""
    changes: dict[str, EntityChanges] = defaultdict(EntityChanges)

    def note(realm: str, entity: str, entity_id: str) -> None:
        if entity.lower() == "bill":
            changes[realm].bill_ids.add(entity_id)
        elif entity.lower() == "vendor":
            changes[realm].vendor_ids.add(entity_id)

    if isinstance(payload, list):  # CloudEvents: type "qbo.<entity>.<operation>.v1"
        for event in payload:
            parts = str(event.get("type", "")).split(".")
            if len(parts) >= 3 and event.get("intuitaccountid") and event.get("intuitentityid"):
                note(str(event["intuitaccountid"]), parts[1], str(event["intuitentityid"]))
    else:
        for notification in payload.get("eventNotifications", []):
            realm = str(notification.get("realmId", ""))
            for entity in notification.get("dataChangeEvent", {}).get("entities", []):
                if realm and entity.get("id"):
                    note(realm, str(entity.get("name", "")), str(entity["id"]))
    return dict(changes)


def xero_changes(payload: Any) -> dict[str, EntityChanges]:
    """tenantId -> changes; INVOICE events may be sales invoices too, which the sync reads and ignores."""
    changes: dict[str, EntityChanges] = defaultdict(EntityChanges)
    for event in payload.get("events", []):
        tenant, resource = event.get("tenantId"), event.get("resourceId")
        if not tenant or not resource:
            continue
        if event.get("eventCategory") == "INVOICE":
            changes[tenant].bill_ids.add(resource)
        elif event.get("eventCategory") == "CONTACT":
            changes[tenant].vendor_ids.add(resource)
    return dict(changes)


def handle_webhook(services: Services, provider: Provider, raw_body: bytes, signature: str | None) -> list[SyncMessage]:
    """Verify and translate a notification into sync messages for the connected organisations it names."""
    key = services.app_credentials(provider).webhook_key
    if not key or not signature_matches(raw_body, signature, key):
        raise InvalidSignature(f"{provider.value} webhook signature does not match")
    payload = json.loads(raw_body or b"{}")
    per_tenant = quickbooks_changes(payload) if provider is Provider.QUICKBOOKS else xero_changes(payload)
    messages: list[SyncMessage] = []
    for tenant_id, changes in per_tenant.items():
        for connection_id in services.store.connections_of_tenant(provider, tenant_id):
            connection = services.store.get_connection(connection_id)
            if connection is None or connection.status is not ConnectionStatus.CONNECTED:
                continue
            messages.append(
                request_entity_sync(
                    services, connection, bill_ids=sorted(changes.bill_ids), vendor_ids=sorted(changes.vendor_ids)
                )
            )
    return messages
