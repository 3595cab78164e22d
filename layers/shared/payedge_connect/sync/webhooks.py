"""Provider webhooks: check the signature on the raw body, then sync just the entities they name.

QuickBooks signs with `intuit-signature` (verifier token), Xero with `x-xero-signature` (webhook key):
both base64(HMAC-SHA256(raw body)). Both want a fast answer (QuickBooks ~3 s, Xero 5 s), so the
handler only verifies, finds the connections and queues syncs.

Replays: every event is recorded in DynamoDB (shared by every Lambda) the first time it is seen, for
REPLAY_WINDOW; the same event again within it is recognised and queues nothing, and an event older than
the window is ignored (its record may be gone). Xero retries a failed delivery for up to 24 hours
[docs/providers.md#xero-webhooks, X-WH]; Intuit's retries are shorter (third-party sources), so 48 hours covers both.
"""

import base64
import hashlib
import hmac
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from payedge_connect.api.requests import BodyRefused, json_of
from payedge_connect.models import ConnectionStatus, Provider
from payedge_connect.observability import logger, metrics
from payedge_connect.services import Services
from payedge_connect.sync.requests import SyncMessage, request_entity_sync, send_sync_messages

REPLAY_WINDOW = timedelta(hours=48)


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


@dataclass(frozen=True)
class Notified:
    """One event of a notification: whose organisation, which entity, and its identity for replays."""

    tenant_id: str
    entity: str  # "bill" or "vendor"
    entity_id: str
    key: str  # sha256 of what makes the event unique at the provider
    occurred_at: datetime | None


@dataclass
class WebhookOutcome:
    """What a verified notification led to: syncs to queue, events it named, replays and unreadable parts."""

    messages: list[SyncMessage] = field(default_factory=list)
    claimed: list[str] = field(default_factory=list)
    events: int = 0
    replays: int = 0
    ignored: list[str] = field(default_factory=list)


def _key(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value) if isinstance(value, int) and value >= 0 else ""


def _entity(name: str) -> str | None:
    return {"bill": "bill", "vendor": "vendor"}.get(name.lower())


def quickbooks_events(payload: Any) -> tuple[list[Notified], list[str]]:
    """The bill and vendor events of a CloudEvents array or a legacy eventNotifications body, and what was unreadable.

    A CloudEvent's identity is its `source` and `id` (CloudEvents 1.0); a legacy entity's is its realm,
    name, id, operation and lastUpdated. [docs/providers.md#quickbooks-webhooks]
    """
    found: list[Notified] = []
    ignored: list[str] = []
    if isinstance(payload, list):  # CloudEvents: type "qbo.<entity>.<operation>.v1"
        for event in payload:
            if not isinstance(event, dict):
                ignored.append("an event that is not an object")
                continue
            parts = _text(event.get("type")).split(".")
            realm, entity_id = _text(event.get("intuitaccountid")), _text(event.get("intuitentityid"))
            if len(parts) < 3 or not realm or not entity_id:
                ignored.append("an event without type, account or entity")
                continue
            entity = _entity(parts[1])
            if entity is not None:
                identity = _key("cloudevent", _text(event.get("source")), _text(event.get("id")) or event)
                found.append(Notified(realm, entity, entity_id, identity, _moment(event.get("time"))))
        return found, ignored
    notifications = payload.get("eventNotifications") if isinstance(payload, dict) else None
    if not isinstance(notifications, list):
        return found, ["a body that is neither a CloudEvents array nor eventNotifications"]
    for notification in notifications:
        change = notification.get("dataChangeEvent") if isinstance(notification, dict) else None
        entities = change.get("entities") if isinstance(change, dict) else None
        realm = _text(notification.get("realmId")) if isinstance(notification, dict) else ""
        if not realm or not isinstance(entities, list):
            ignored.append("a notification without realmId or entities")
            continue
        for item in entities:
            if not isinstance(item, dict) or not _text(item.get("id")) or not isinstance(item.get("name"), str):
                ignored.append("an entity without name or id")
                continue
            entity = _entity(item["name"])
            if entity is not None:
                identity = _key(realm, item["name"], _text(item["id"]), item.get("operation"), item.get("lastUpdated"))
                found.append(Notified(realm, entity, _text(item["id"]), identity, _moment(item.get("lastUpdated"))))
    return found, ignored


def xero_events(payload: Any) -> tuple[list[Notified], list[str]]:
    """INVOICE and CONTACT events (INVOICE covers sales invoices too, which the sync reads and ignores).

    An event's identity is its tenant, resource, category, type and eventDateUtc (Xero gives no event id).
    """
    events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(events, list):
        return [], ["a body without an events array"]
    found: list[Notified] = []
    ignored: list[str] = []
    for event in events:
        if not isinstance(event, dict):
            ignored.append("an event that is not an object")
            continue
        tenant, resource = _text(event.get("tenantId")), _text(event.get("resourceId"))
        if not tenant or not resource:
            ignored.append("an event without tenantId or resourceId")
            continue
        entity = {"INVOICE": "bill", "CONTACT": "vendor"}.get(_text(event.get("eventCategory")))
        if entity is not None:
            identity = _key(
                tenant, resource, event.get("eventCategory"), event.get("eventType"), event.get("eventDateUtc")
            )
            found.append(Notified(tenant, entity, resource, identity, _moment(event.get("eventDateUtc"))))
    return found, ignored


def handle_webhook(services: Services, provider: Provider, raw_body: bytes, signature: str | None) -> WebhookOutcome:
    """Verify, then turn the events never seen before into syncs of the connected organisations they name.

    After the signature every problem is answered 200 and recorded (the outcome's `ignored`): a 4xx or
    5xx only makes the provider retry the same body and, after a day of failures, disable the webhook.
    """
    key = services.app_credentials(provider).webhook_key
    if not key or not signature_matches(raw_body, signature, key):
        raise InvalidSignature(f"{provider.value} webhook signature does not match")
    outcome = WebhookOutcome()
    try:
        payload = json_of(raw_body) if raw_body else {}
    except BodyRefused as refused:
        outcome.ignored.append(refused.detail)
        return outcome
    events, outcome.ignored = quickbooks_events(payload) if provider is Provider.QUICKBOOKS else xero_events(payload)
    now = services.clock()
    recent = [event for event in events if event.occurred_at is None or event.occurred_at >= now - REPLAY_WINDOW]
    if len(recent) < len(events):
        outcome.ignored.append(f"{len(events) - len(recent)} events older than {REPLAY_WINDOW}")
    outcome.events = len(recent)
    fresh = set(services.store.syncs.claim_webhook_events(provider, {e.key for e in recent}, until=now + REPLAY_WINDOW))
    outcome.claimed = sorted(fresh)
    outcome.replays = len({e.key for e in recent} - fresh)
    per_tenant: dict[str, EntityChanges] = defaultdict(EntityChanges)
    for event in recent:
        if event.key in fresh:
            changes = per_tenant[event.tenant_id]
            (changes.bill_ids if event.entity == "bill" else changes.vendor_ids).add(event.entity_id)
    for tenant_id, changes in per_tenant.items():
        for connection_id in services.store.connections.connections_of_tenant(provider, tenant_id):
            connection = services.store.connections.get_connection(connection_id)
            if connection is None or connection.status is not ConnectionStatus.CONNECTED:
                continue
            outcome.messages.append(
                request_entity_sync(
                    services, connection, bill_ids=sorted(changes.bill_ids), vendor_ids=sorted(changes.vendor_ids)
                )
            )
    return outcome


def accept_webhook(
    services: Services, provider: Provider, raw_body: bytes, signature: str | None, *, queue_url: str
) -> WebhookOutcome:
    """`handle_webhook`, then its syncs queued. Raises InvalidSignature (answered 401)."""
    outcome = handle_webhook(services, provider, raw_body, signature)
    try:
        send_sync_messages(queue_url, outcome.messages)
    except Exception:
        # Nothing queued: forget the events so the provider's retry of this delivery is not taken for a replay.
        services.store.syncs.release_webhook_events(provider, outcome.claimed)
        raise
    logger.info(
        "Webhook accepted",
        extra={
            "provider": provider.value,
            "events": outcome.events,
            "replays": outcome.replays,
            "ignored": outcome.ignored[:10],
            "syncs_queued": len(outcome.messages),
        },
    )
    if outcome.ignored:
        metrics.add_metric(name="WebhookPartsIgnored", unit="Count", value=len(outcome.ignored))
    if outcome.replays:
        metrics.add_metric(name="WebhookReplaysIgnored", unit="Count", value=outcome.replays)
    return outcome
