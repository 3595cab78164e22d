"""Payables and vendors of a connection, and the counts kept of them (open bills, vendors needing attention).

Key design (the whole table: storage/__init__.py):
  payable  PK=CONNECTION#<id>  SK=PAYABLE#<billId>
           GSI2PK=CONNECTION#<id>#PAYABLE#<status>  GSI2SK=<dueDate>#<billId>  (payables by status)
           TTL on expiresAt once closed: the closed-payable retention after it closed, unless a payment
           order that may still be retried names it (those it asks storage/payment_orders.py for)
  vendor   PK=CONNECTION#<id>  SK=VENDOR#<vendorId>
           GSI2PK=CONNECTION#<id>#VENDORS#<ATTENTION|CLEAR>  GSI2SK=<casefolded name>#<vendorId>
  counts   PK=CONNECTION#<id>  SK=SYNC#COUNTS  (openBills, vendorsNeedingAttention: moved by deltas with
           every payable and vendor write; set from a full count by a sync)
Payables and vendors carry `contentHash`, the fingerprint of their content: a sync skips writing a record
whose fingerprint did not change.
"""

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError
from pydantic import BaseModel

from payedge_connect.models import Payable, PayableStatus, Vendor
from payedge_connect.storage.payment_orders import PaymentOrdersStore
from payedge_connect.storage.table import (
    MAX_PAGE_SIZE,
    Page,
    RecordsTable,
    TableStore,
    condition_failed,
    connection_pk,
    dump_record,
    expires,
    record_fields,
)

_CLOSED = PayableStatus.CLOSED.value
_NO_DUE_DATE = "9999-12-31"  # bills without a due date sort last


@dataclass(frozen=True)
class SyncCountsRecord:
    """The connection's open bills and vendors needing attention, kept current by every write."""

    open_bills: int
    vendors_needing_attention: int


@dataclass(frozen=True)
class StoredState:
    """What a sync needs to know of a stored payable or vendor to decide whether to write it."""

    content_hash: str
    status: str
    provider_updated_at: str | None
    vendor_id: str | None = None
    # The stored document's provider id and bucket key (a fetched document is not fetched again).
    document_id: str | None = None
    document_key: str | None = None
    closed_reason: str | None = None


def _stored_state(item: dict[str, Any]) -> StoredState:
    document = item.get("document") or {}
    return StoredState(
        content_hash=str(item.get("contentHash", "")),
        status=str(item["status"]),
        provider_updated_at=item.get("providerUpdatedAt"),
        vendor_id=str(item.get("vendorId")),
        document_id=document.get("providerDocumentId"),
        document_key=document.get("objectKey"),
        closed_reason=item.get("closedReason"),
    )


def content_hash(record: BaseModel, *, exclude: set[str] | None = None) -> str:
    """A fingerprint of a record's content: equal fingerprints mean nothing to write."""
    document = record.model_dump(mode="json", by_alias=True, exclude=exclude)
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# A document's storage key is bookkeeping, not content: fetching a document does not change the bill.
PAYABLE_HASH_EXCLUDE: Any = {"document": {"object_key"}}


def vendor_content_hash(vendor: Vendor) -> str:
    # The attention flag is the platform's view of the vendor, not the vendor's content.
    return content_hash(vendor, exclude={"attention_required", "provider_updated_at"})


def _payables_by_status_pk(connection_id: str, status: PayableStatus) -> str:
    return f"CONNECTION#{connection_id}#PAYABLE#{status.value}"


def _vendors_pk(connection_id: str, attention_required: bool) -> str:
    return f"CONNECTION#{connection_id}#VENDORS#{'ATTENTION' if attention_required else 'CLEAR'}"


class PayablesStore(TableStore):
    def __init__(
        self, records: RecordsTable, *, payment_orders: PaymentOrdersStore, closed_payable_retention: timedelta
    ) -> None:
        super().__init__(records)
        # A closed payable's expiry depends on the payment orders naming it: read through their store.
        self._payment_orders = payment_orders
        self._closed_payable_retention = closed_payable_retention

    def put_payables(
        self,
        payables: Iterable[Payable],
        *,
        now: datetime | None = None,
        previous: Mapping[str, str | None] | None = None,
        pinned: set[str] | None = None,
    ) -> int:
        """Write payables in batches (25 a request, unprocessed items retried by boto3); returns the count.

        `pinned`: bills whose closed payable must not expire, when the caller knows them (else read from
        the connection's retryable payment orders).

        `previous` maps each bill id to the status stored before (None: not stored), so the open-bills
        count moves by what changed; without it those statuses are read by key. A closed payable
        expires after the closed-payable retention unless a payment order that may still be retried
        names it.
        """
        payables = list(payables)
        if not payables:
            return 0
        now = now or datetime.now(UTC)
        connection_id = payables[0].connection_id
        if previous is None:
            states = self.payable_states_of(connection_id, [payable.bill_id for payable in payables])
            previous = {bill_id: state.status for bill_id, state in states.items()}
        closing = any(payable.status is PayableStatus.CLOSED for payable in payables)
        if pinned is None:
            pinned = self._payment_orders.bills_with_pending_payments(connection_id) if closing else set()
        expires_at = expires(now + self._closed_payable_retention)
        open_delta = 0
        with self.table.batch_writer(overwrite_by_pkeys=["PK", "SK"]) as batch:
            for payable in payables:
                item = self._payable_item(payable)
                if payable.status is PayableStatus.CLOSED and payable.bill_id not in pinned:
                    item["expiresAt"] = expires_at
                batch.put_item(Item=item)
                before = previous.get(payable.bill_id)
                open_delta += (payable.status is not PayableStatus.CLOSED) - (before not in (None, _CLOSED))
        self.adjust_counts(connection_id, open_bills=open_delta)
        return len(payables)

    def get_payable(self, connection_id: str, bill_id: str) -> Payable | None:
        response = self.table.get_item(
            Key={"PK": connection_pk(connection_id), "SK": f"PAYABLE#{bill_id}"}, ConsistentRead=True
        )
        item = response.get("Item")
        return Payable.model_validate(record_fields(item)) if item else None

    def list_payables(
        self,
        connection_id: str,
        *,
        status: PayableStatus | None = None,
        limit: int = MAX_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Page[Payable]:
        """A page of a connection's payables: all of them by bill id, or one status by due date."""
        if status is None:
            items, next_cursor = self._records_page(connection_id, "PAYABLE#", limit=limit, cursor=cursor)
        else:
            partition = _payables_by_status_pk(connection_id, status)
            items, next_cursor = self._index_page("GSI2", partition, limit=limit, cursor=cursor)
        return Page[Payable](
            items=[Payable.model_validate(record_fields(item)) for item in items], next_cursor=next_cursor
        )

    @staticmethod
    def _payable_item(payable: Payable) -> dict[str, Any]:
        due = payable.due_date.isoformat() if payable.due_date else _NO_DUE_DATE
        return {
            "PK": connection_pk(payable.connection_id),
            "SK": f"PAYABLE#{payable.bill_id}",
            "GSI2PK": _payables_by_status_pk(payable.connection_id, payable.status),
            "GSI2SK": f"{due}#{payable.bill_id}",
            "recordType": "payable",
            "contentHash": content_hash(payable, exclude=PAYABLE_HASH_EXCLUDE),
            **dump_record(payable),
        }

    def open_payable_states(self, connection_id: str) -> dict[str, StoredState]:
        """The fingerprint and status of every open and part-paid payable (closed ones are not read)."""
        states: dict[str, StoredState] = {}
        for status in (PayableStatus.OPEN, PayableStatus.PART_PAID):
            for item in self._query_all(
                Key("GSI2PK").eq(_payables_by_status_pk(connection_id, status)),
                index="GSI2",
                projection="billId, contentHash, #status, providerUpdatedAt, vendorId, document, closedReason",
                names={"#status": "status"},
            ):
                states[str(item["billId"])] = _stored_state(item)
        return states

    def payable_states_of(self, connection_id: str, bill_ids: Iterable[str]) -> dict[str, StoredState]:
        items = self._batch_get(connection_id, [f"PAYABLE#{bill_id}" for bill_id in bill_ids])
        return {str(item["billId"]): _stored_state(item) for item in items}

    # ------------------------------------------------------------------ counts

    def get_counts(self, connection_id: str) -> SyncCountsRecord | None:
        item = self.table.get_item(
            Key={"PK": connection_pk(connection_id), "SK": "SYNC#COUNTS"}, ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        return SyncCountsRecord(int(str(item["openBills"])), int(str(item["vendorsNeedingAttention"])))

    def set_counts(self, connection_id: str, *, open_bills: int, vendors_needing_attention: int | None = None) -> None:
        """Set the counts to figures just read in full (a new connection, a full reconciliation)."""
        expression = "SET recordType = :type, openBills = :open"
        values: dict[str, Any] = {":type": "syncCounts", ":open": open_bills}
        if vendors_needing_attention is not None:
            expression += ", vendorsNeedingAttention = :attention"
            values[":attention"] = vendors_needing_attention
        else:
            expression += ", vendorsNeedingAttention = if_not_exists(vendorsNeedingAttention, :zero)"
            values[":zero"] = 0
        self.table.update_item(
            Key={"PK": connection_pk(connection_id), "SK": "SYNC#COUNTS"},
            UpdateExpression=expression,
            ExpressionAttributeValues=values,
        )

    def adjust_counts(self, connection_id: str, *, open_bills: int = 0, vendors_needing_attention: int = 0) -> None:
        """Move the counts by what a write changed. A connection without counts yet (stored before they
        were kept) is left alone: its next sync counts once and sets them."""
        if not open_bills and not vendors_needing_attention:
            return
        try:
            self.table.update_item(
                Key={"PK": connection_pk(connection_id), "SK": "SYNC#COUNTS"},
                UpdateExpression="ADD openBills :open, vendorsNeedingAttention :attention",
                ConditionExpression=Attr("PK").exists(),
                ExpressionAttributeValues={":open": open_bills, ":attention": vendors_needing_attention},
            )
        except ClientError as error:
            if not condition_failed(error):
                raise

    def count_payables(self, connection_id: str, status: PayableStatus) -> int:
        """Counted by reading the status's index partition: only for connections without kept counts."""
        return self._count(index="GSI2", key=Key("GSI2PK").eq(_payables_by_status_pk(connection_id, status)))

    def count_vendors_needing_attention(self, connection_id: str) -> int:
        return self._count(index="GSI2", key=Key("GSI2PK").eq(_vendors_pk(connection_id, True)))

    def get_payables(self, connection_id: str, bill_ids: Iterable[str]) -> dict[str, Payable]:
        """The stored payables among `bill_ids` (batch reads of 100)."""
        items = self._batch_get(connection_id, [f"PAYABLE#{bill_id}" for bill_id in bill_ids])
        return {str(item["billId"]): Payable.model_validate(record_fields(item)) for item in items}

    # ------------------------------------------------------------------ vendors

    def put_vendors(self, vendors: Iterable[Vendor], *, previous: Mapping[str, Vendor | None] | None = None) -> int:
        """Write vendors; `previous` (vendor id -> the stored vendor, None: not stored) moves the count of
        vendors needing attention by what changed; without it the stored vendors are read by key."""
        vendors = list(vendors)
        if not vendors:
            return 0
        connection_id = vendors[0].connection_id
        if previous is None:
            previous = dict(self.get_vendors(connection_id, [vendor.vendor_id for vendor in vendors]))
        attention_delta = 0
        with self.table.batch_writer(overwrite_by_pkeys=["PK", "SK"]) as batch:
            for vendor in vendors:
                batch.put_item(Item=self._vendor_item(vendor))
                before = previous.get(vendor.vendor_id)
                attention_delta += vendor.attention_required - bool(before and before.attention_required)
        self.adjust_counts(connection_id, vendors_needing_attention=attention_delta)
        return len(vendors)

    def vendors_held(self, connection_id: str, vendor_ids: Iterable[str]) -> set[str]:
        """Which of these vendors are stored (read by key, keys only)."""
        return {
            str(item["SK"]).removeprefix("VENDOR#")
            for item in self._batch_get(
                connection_id, [f"VENDOR#{vendor_id}" for vendor_id in vendor_ids], projection="SK"
            )
        }

    def get_vendors(self, connection_id: str, vendor_ids: Iterable[str]) -> dict[str, Vendor]:
        items = self._batch_get(connection_id, [f"VENDOR#{vendor_id}" for vendor_id in vendor_ids])
        return {str(item["vendorId"]): Vendor.model_validate(record_fields(item)) for item in items}

    def list_vendors(
        self, connection_id: str, *, attention_required: bool | None, limit: int, cursor: str | None
    ) -> Page[Vendor]:
        if attention_required is None:
            items, next_cursor = self._records_page(connection_id, "VENDOR#", limit=limit, cursor=cursor)
        else:
            partition = _vendors_pk(connection_id, attention_required)
            items, next_cursor = self._index_page("GSI2", partition, limit=limit, cursor=cursor)
        return Page[Vendor](
            items=[Vendor.model_validate(record_fields(item)) for item in items], next_cursor=next_cursor
        )

    @staticmethod
    def _vendor_item(vendor: Vendor) -> dict[str, Any]:
        return {
            "PK": connection_pk(vendor.connection_id),
            "SK": f"VENDOR#{vendor.vendor_id}",
            "GSI2PK": _vendors_pk(vendor.connection_id, vendor.attention_required),
            "GSI2SK": f"{vendor.name.casefold()}#{vendor.vendor_id}",
            "recordType": "vendor",
            "contentHash": vendor_content_hash(vendor),
            **dump_record(vendor),
        }
