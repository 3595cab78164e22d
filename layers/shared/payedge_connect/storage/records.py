"""The records table: the only code that reads or writes DynamoDB.

Key design (one table):
  connection  PK=CONNECTION#<id>  SK=CONNECTION
              GSI1PK=BUSINESS#<businessId>  GSI1SK=CONNECTION#<createdAt>#<id>   (a business's connections)
              GSI2PK=CONNECTIONS#<status>#<shard>  GSI2SK=<nextSyncDueAt>#<id>   (connections in a state,
              by due time; shard = crc32(id) % CONNECTION_SHARDS, so no index partition holds them all)
  lease       PK=CONNECTION#<id>  SK=LEASE#<name>                                      (one holder at a time)
  oauth state PK=OAUTH_STATE#<sha256(state)>  SK=OAUTH_STATE                          (single use, TTL)
  completion  PK=OAUTH_COMPLETION#<sha256(code)>  SK=OAUTH_COMPLETION                 (single use, TTL)
  payable     PK=CONNECTION#<id>  SK=PAYABLE#<billId>    (closed: TTL after the closed-payable retention)
              GSI2PK=CONNECTION#<id>#PAYABLE#<status>  GSI2SK=<dueDate>#<billId> (payables by status)
  vendor      PK=CONNECTION#<id>  SK=VENDOR#<vendorId>
              GSI2PK=CONNECTION#<id>#VENDORS#<attention|clear>  GSI2SK=<name>#<vendorId>
  sync run    PK=CONNECTION#<id>  SK=SYNCRUN#<syncRunId>  (ids sort by start time; TTL: sync-run retention)
              SK=SYNCRUN#<syncRunId>#SEEN#<page>  (bill ids a full listing saw, TTL)
  sync slot   PK=CONNECTION#<id>  SK=SYNC#ACTIVE  (the one requested-or-running sync)
  sync state  PK=CONNECTION#<id>  SK=SYNC#STATE   (incremental watermark, last full reconciliation)
  counts      PK=CONNECTION#<id>  SK=SYNC#COUNTS  (open bills, vendors needing attention: kept by deltas)
  tenant      PK=TENANT#<provider>#<tenantId>  SK=CONNECTION#<id>  (webhooks find connections)
  payment     PK=CONNECTION#<id>  SK=PAYMENT#<paymentOrderNumber>  (never expires: the audit trail and
              the exactly-once key of the write-back)
  number      PK=BUSINESS#<businessId>  SK=PAYMENT#<paymentOrderNumber>  (the one connection it was sent to)
  webhook     PK=WEBHOOK#<provider>  SK=EVENT#<sha256 of the event's identity>  (seen once, TTL)
  budget      PK=BUDGET#<provider>#<organisation|APP>  SK=BUDGET  (call budgets: storage/budgets.py)
              GSI2PK=CONNECTION#<id>#PAYMENTS#<status>  GSI2SK=<createdAt>#<paymentOrderNumber>
Items carry the record's camelCase fields beside the keys; amounts and dates as strings (exact, sortable).
Pages are returned with an opaque cursor bound to the partition it was read from.

Expiry is DynamoDB TTL on `expiresAt` (epoch seconds). TTL deletes lazily (typically within a few days
of expiry), so nothing here relies on an expired item being gone.
"""

import base64
import binascii
import hashlib
import json
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from payedge_connect.errors import ConflictError, InvalidInputError
from payedge_connect.models import (
    Connection,
    ConnectionStatus,
    OAuthCompletion,
    OAuthState,
    Payable,
    PayableStatus,
    PaymentOrder,
    PaymentOrderStatus,
    Provider,
    SyncRun,
    SyncSchedule,
    SyncSummary,
    Vendor,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource, Table

MAX_PAGE_SIZE = 100
_CLOSED = PayableStatus.CLOSED.value
_NO_DUE_DATE = "9999-12-31"  # bills without a due date sort last
# Shards of the connection-status index. Changing it moves every connection to another index
# partition: re-save each connection (or let dispatch's re-indexing of legacy keys do it) after.
CONNECTION_SHARDS = 32
_DUE_NOW = "0000"  # a connection without a schedule sorts first: due now
# A full listing's seen pages are needed only until its run finishes; a run older than this is
# stale (its sync slot is, after 2 hours) and an expired page only costs a by-id look-up.
SEEN_PAGES_KEPT = timedelta(days=2)
# Payment orders in these states may be retried at any later time and then re-read their payable: a
# closed payable they name does not expire. (A posting order is in the write-back queue's hands and
# ends within its 14-day retention, well inside the closed-payable retention of at least 30 days.)
_ORDERS_NEEDING_PAYABLE = (
    PaymentOrderStatus.RECEIVED,
    PaymentOrderStatus.NEEDS_ATTENTION,
    PaymentOrderStatus.WAITING_FOR_RECONNECTION,
    PaymentOrderStatus.FAILED,
)


@dataclass(frozen=True)
class Retention:
    """How long records that stop mattering are kept (stack parameters SyncRunRetentionDays and
    ClosedPayableRetentionDays; README "Records and their lifetime")."""

    sync_runs: timedelta = timedelta(days=14)
    closed_payables: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class SyncCountsRecord:
    """The connection's open bills and vendors needing attention, kept current by every write."""

    open_bills: int
    vendors_needing_attention: int


@dataclass(frozen=True)
class Lease:
    connection_id: str
    name: str
    holder: str
    fence: int


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


@dataclass(frozen=True)
class SyncState:
    """Where incremental syncs of a connection start from."""

    watermark: datetime | None
    last_full_sync_at: datetime | None


def content_hash(record: BaseModel, *, exclude: set[str] | None = None) -> str:
    """A fingerprint of a record's content: equal fingerprints mean nothing to write."""
    document = record.model_dump(mode="json", by_alias=True, exclude=exclude)
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# A document's storage key is bookkeeping, not content: fetching a document does not change the bill.
PAYABLE_HASH_EXCLUDE: Any = {"document": {"object_key"}}


class Page[RecordT: BaseModel](BaseModel):
    # Built on first use, like the records (models.Record): the store's annotations name four pages.
    model_config = ConfigDict(defer_build=True)

    items: list[RecordT]
    next_cursor: str | None = None


def _connection_pk(connection_id: str) -> str:
    return f"CONNECTION#{connection_id}"


def _payables_by_status_pk(connection_id: str, status: PayableStatus) -> str:
    return f"CONNECTION#{connection_id}#PAYABLE#{status.value}"


def connection_shard(connection_id: str) -> int:
    # crc32, not hash(): str hashes are salted per process, and every Lambda must agree.
    return zlib.crc32(connection_id.encode()) % CONNECTION_SHARDS


def _status_index_pk(status: ConnectionStatus | str, connection_id: str) -> str:
    value = status.value if isinstance(status, ConnectionStatus) else status
    return f"CONNECTIONS#{value}#{connection_shard(connection_id):02d}"


def _due_key(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status_index_sk(connection_id: str, schedule: SyncSchedule | None) -> str:
    due = _due_key(schedule.next_due_at) if schedule else _DUE_NOW
    return f"{due}#{connection_id}"


def _expires(moment: datetime) -> int:
    return int(moment.timestamp())


class RecordsStore:
    def __init__(
        self,
        table_name: str,
        *,
        dynamodb: "DynamoDBServiceResource | None" = None,
        retention: Retention | None = None,
    ) -> None:
        self._table_name = table_name
        self._dynamodb = dynamodb
        self._table: Table | None = None
        self.retention = retention or Retention()

    @property
    def table(self) -> "Table":
        # Built on first use, so tests can wrap construction in moto and nothing connects at import.
        if self._table is None:
            dynamodb = self._dynamodb or boto3.resource("dynamodb")
            self._table = dynamodb.Table(self._table_name)
        return self._table

    # ------------------------------------------------------------------ connections

    def create_connection(self, connection: Connection) -> None:
        """Store a new connection; fails with ConflictError if the id is already taken."""
        try:
            self.table.put_item(
                Item=self._connection_item(connection),
                ConditionExpression=Attr("PK").not_exists(),
            )
        except ClientError as error:
            _raise_conflict_on_condition(error, f"connection {connection.connection_id} already exists")
            raise
        self._put_tenant_lookup(connection)

    def get_connection(self, connection_id: str) -> Connection | None:
        response = self.table.get_item(
            Key={"PK": _connection_pk(connection_id), "SK": "CONNECTION"}, ConsistentRead=True
        )
        item = response.get("Item")
        return Connection.model_validate(_fields(item)) if item else None

    def save_connection(self, connection: Connection) -> Connection:
        """Write a changed connection if nobody else saved it since it was read; returns the saved copy."""
        saved = connection.model_copy(update={"version": connection.version + 1})
        try:
            self.table.put_item(
                Item=self._connection_item(saved),
                ConditionExpression=Attr("PK").exists() & Attr("version").eq(connection.version),
            )
        except ClientError as error:
            _raise_conflict_on_condition(error, f"connection {connection.connection_id} changed meanwhile")
            raise
        self._put_tenant_lookup(saved)
        return saved

    def _put_tenant_lookup(self, connection: Connection) -> None:
        # Idempotent: written each time a connection with an organisation is saved.
        if connection.tenant_id is not None:
            self.table.put_item(
                Item={
                    "PK": f"TENANT#{connection.provider.value}#{connection.tenant_id}",
                    "SK": f"CONNECTION#{connection.connection_id}",
                    "recordType": "tenantLookup",
                }
            )

    def connections_of_tenant(self, provider: Provider, tenant_id: str) -> list[str]:
        """Ids of the connections to one provider organisation (webhooks name the organisation)."""
        response = self.table.query(
            KeyConditionExpression=Key("PK").eq(f"TENANT#{provider.value}#{tenant_id}")
            & Key("SK").begins_with("CONNECTION#")
        )
        return [str(item["SK"]).removeprefix("CONNECTION#") for item in response.get("Items", [])]

    def record_sync_outcome(self, connection_id: str, summary: SyncSummary, schedule: SyncSchedule | None) -> None:
        """Save the connection's last-sync summary and next due time without disturbing a concurrent
        status change (a schedule of None leaves the due time alone)."""
        expression = "SET lastSync = :summary"
        values: dict[str, Any] = {":summary": summary.model_dump(mode="json", by_alias=True), ":one": 1}
        if schedule is not None:
            expression += ", syncSchedule = :schedule, GSI2SK = :due"
            values[":schedule"] = schedule.model_dump(mode="json", by_alias=True)
            values[":due"] = _status_index_sk(connection_id, schedule)
        self.table.update_item(
            Key={"PK": _connection_pk(connection_id), "SK": "CONNECTION"},
            UpdateExpression=expression + " ADD version :one",
            ConditionExpression=Attr("PK").exists(),
            ExpressionAttributeValues=values,
        )

    def list_connections(
        self, business_id: str, *, limit: int = MAX_PAGE_SIZE, cursor: str | None = None
    ) -> Page[Connection]:
        items, next_cursor = self._index_page(
            "GSI1", f"BUSINESS#{business_id}", sort_prefix="CONNECTION#", limit=limit, cursor=cursor
        )
        return Page[Connection](items=[Connection.model_validate(_fields(i)) for i in items], next_cursor=next_cursor)

    def due_connections(
        self, shard: int, now: datetime, *, limit: int = 1000, cursor: dict[str, Any] | None = None
    ) -> tuple[list[Connection], dict[str, Any] | None]:
        """One page of a shard's connected connections due at `now`, most overdue first; the key to
        continue from (None: the shard has no more due). Reads only due connections."""
        arguments: dict[str, Any] = {
            "IndexName": "GSI2",
            "KeyConditionExpression": Key("GSI2PK").eq(f"CONNECTIONS#{ConnectionStatus.CONNECTED.value}#{shard:02d}")
            & Key("GSI2SK").lte(f"{_due_key(now)}#~"),
            "Limit": limit,
        }
        if cursor:
            arguments["ExclusiveStartKey"] = cursor
        response = self.table.query(**arguments)
        items = response.get("Items", [])
        return [Connection.model_validate(_fields(item)) for item in items], response.get("LastEvaluatedKey")

    def connections_in_status(self, status: ConnectionStatus) -> list[Connection]:
        """Every connection in `status`, shard by shard (for the sweeper, a few times an hour)."""
        return [
            Connection.model_validate(_fields(item))
            for shard in range(CONNECTION_SHARDS)
            for item in self._query_all(Key("GSI2PK").eq(f"CONNECTIONS#{status.value}#{shard:02d}"), index="GSI2")
        ]

    def reindex_legacy_connections(self, *, limit: int = 100) -> int:
        """Give up to `limit` connected connections stored before the index was sharded (GSI2PK
        CONNECTIONS#connected, no due time) their sharded key, due now; returns how many were moved.
        Dispatch calls it every tick until the old partition is empty (then it reads nothing)."""
        legacy = f"CONNECTIONS#{ConnectionStatus.CONNECTED.value}"
        response = self.table.query(IndexName="GSI2", KeyConditionExpression=Key("GSI2PK").eq(legacy), Limit=limit)
        moved = 0
        for item in response.get("Items", []):
            connection_id = str(item["connectionId"])
            try:
                self.table.update_item(
                    Key={"PK": item["PK"], "SK": "CONNECTION"},
                    UpdateExpression="SET GSI2PK = :pk, GSI2SK = :sk",
                    ConditionExpression=Attr("GSI2PK").eq(legacy),
                    ExpressionAttributeValues={
                        ":pk": _status_index_pk(ConnectionStatus.CONNECTED, connection_id),
                        ":sk": _status_index_sk(connection_id, None),
                    },
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                continue  # saved meanwhile: the save wrote the sharded key
            moved += 1
        return moved

    @staticmethod
    def _connection_item(connection: Connection) -> dict[str, Any]:
        return {
            "PK": _connection_pk(connection.connection_id),
            "SK": "CONNECTION",
            "GSI1PK": f"BUSINESS#{connection.business_id}",
            "GSI1SK": f"CONNECTION#{connection.created_at.isoformat()}#{connection.connection_id}",
            "GSI2PK": _status_index_pk(connection.status, connection.connection_id),
            "GSI2SK": _status_index_sk(connection.connection_id, connection.sync_schedule),
            "recordType": "connection",
            **_dump(connection),
        }

    def mark_reauthorization_required(self, connection_id: str, reason: str, now: datetime) -> bool:
        """Move a working connection to reauthorization_required; False if it was not working (done once)."""
        working = [ConnectionStatus.CONNECTED.value, ConnectionStatus.MAPPING_REQUIRED.value]
        try:
            self.table.update_item(
                Key={"PK": _connection_pk(connection_id), "SK": "CONNECTION"},
                UpdateExpression=(
                    "SET #status = :status, GSI2PK = :index, updatedAt = :now, attention = :attention ADD version :one"
                ),
                ConditionExpression=Attr("status").is_in(working),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":status": ConnectionStatus.REAUTHORIZATION_REQUIRED.value,
                    ":index": _status_index_pk(ConnectionStatus.REAUTHORIZATION_REQUIRED, connection_id),
                    ":now": now.isoformat().replace("+00:00", "Z"),
                    ":attention": [reason],
                    ":one": 1,
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # ------------------------------------------------------------------ OAuth states

    def put_oauth_state(self, state: OAuthState) -> None:
        self._put_single_use(f"OAUTH_STATE#{state.state_hash}", "OAUTH_STATE", "oauthState", state, state.expires_at)

    def consume_oauth_state(self, state_hash: str) -> OAuthState | None:
        """Remove and return a pending state; None if it never existed or was already used."""
        item = self._consume_single_use(f"OAUTH_STATE#{state_hash}", "OAUTH_STATE")
        return OAuthState.model_validate(item) if item else None

    def put_oauth_completion(self, completion: OAuthCompletion) -> None:
        self._put_single_use(
            f"OAUTH_COMPLETION#{completion.completion_hash}",
            "OAUTH_COMPLETION",
            "oauthCompletion",
            completion,
            completion.expires_at,
        )

    def consume_oauth_completion(self, completion_hash: str) -> OAuthCompletion | None:
        """Remove and return a consent waiting to be redeemed; None if unknown or already redeemed."""
        item = self._consume_single_use(f"OAUTH_COMPLETION#{completion_hash}", "OAUTH_COMPLETION")
        return OAuthCompletion.model_validate(item) if item else None

    def _put_single_use(self, pk: str, sk: str, record_type: str, record: BaseModel, expires_at: datetime) -> None:
        self.table.put_item(
            Item={
                "PK": pk,
                "SK": sk,
                "recordType": record_type,
                **_dump(record),
                # The record's expiresAt is also the table's TTL attribute, which must be a Number of
                # epoch seconds (an ISO string is never expired): written last so it wins over the dump.
                # TTL removes abandoned items; the consumer checks expiry itself (TTL is lazy).
                "expiresAt": int(expires_at.timestamp()),
            },
            ConditionExpression=Attr("PK").not_exists(),
        )

    def _consume_single_use(self, pk: str, sk: str) -> dict[str, Any] | None:
        """Delete the item and return its fields (expiresAt as a datetime); None if it was not there."""
        try:
            response = self.table.delete_item(
                Key={"PK": pk, "SK": sk}, ConditionExpression=Attr("PK").exists(), ReturnValues="ALL_OLD"
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise
        item = response["Attributes"]
        expires_at = datetime.fromtimestamp(int(str(item["expiresAt"])), tz=UTC)
        return {**_fields(item), "expiresAt": expires_at}

    # ------------------------------------------------------------------ leases

    def acquire_lease(
        self, connection_id: str, name: str, holder: str, *, now: datetime, seconds: float
    ) -> "Lease | None":
        """Take the connection's `name` lease if it is free or expired; None if someone else holds it.

        The fencing token grows with every acquisition, so a holder whose lease expired can tell
        (with `holds_lease`) that its work must not be saved.
        """
        try:
            response = self.table.update_item(
                Key={"PK": _connection_pk(connection_id), "SK": f"LEASE#{name}"},
                UpdateExpression="SET holder = :holder, leaseUntil = :until, expiresAt = :ttl ADD fence :one",
                ConditionExpression=Attr("PK").not_exists() | Attr("leaseUntil").lt(_epoch(now)),
                ExpressionAttributeValues={
                    ":holder": holder,
                    ":until": _epoch(now + timedelta(seconds=seconds)),
                    ":ttl": int((now + timedelta(days=1)).timestamp()),
                    ":one": 1,
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise
        return Lease(connection_id, name, holder, int(str(response["Attributes"]["fence"])))

    def holds_lease(self, lease: "Lease", *, now: datetime) -> bool:
        item = self.table.get_item(
            Key={"PK": _connection_pk(lease.connection_id), "SK": f"LEASE#{lease.name}"}, ConsistentRead=True
        ).get("Item")
        return bool(
            item
            and item.get("holder") == lease.holder
            and int(str(item["fence"])) == lease.fence
            and float(str(item["leaseUntil"])) > now.timestamp()
        )

    def renew_lease(self, lease: "Lease", *, now: datetime, seconds: float) -> bool:
        """Extend a lease we still hold (same holder and fence) to `seconds` from now; False if it was
        taken by someone else (it expired: our work must stop)."""
        try:
            self.table.update_item(
                Key={"PK": _connection_pk(lease.connection_id), "SK": f"LEASE#{lease.name}"},
                UpdateExpression="SET leaseUntil = :until",
                ConditionExpression=Attr("holder").eq(lease.holder) & Attr("fence").eq(lease.fence),
                ExpressionAttributeValues={":until": _epoch(now + timedelta(seconds=seconds))},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release_lease(self, lease: "Lease") -> None:
        """Free the lease if we still hold it (if it expired and was taken, leave the new holder alone)."""
        try:
            self.table.update_item(
                Key={"PK": _connection_pk(lease.connection_id), "SK": f"LEASE#{lease.name}"},
                UpdateExpression="SET leaseUntil = :free",
                ConditionExpression=Attr("holder").eq(lease.holder) & Attr("fence").eq(lease.fence),
                ExpressionAttributeValues={":free": 0},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    # ------------------------------------------------------------------ payables

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
            pinned = self.bills_with_pending_payments(connection_id) if closing else set()
        expires_at = _expires(now + self.retention.closed_payables)
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

    def bills_with_pending_payments(self, connection_id: str) -> set[str]:
        """Bills named by payment orders that may still be retried (and would then re-read the payable)."""
        return {
            order.bill_id
            for status in _ORDERS_NEEDING_PAYABLE
            for order in self.payment_orders_in_status(connection_id, status)
        }

    def get_payable(self, connection_id: str, bill_id: str) -> Payable | None:
        response = self.table.get_item(
            Key={"PK": _connection_pk(connection_id), "SK": f"PAYABLE#{bill_id}"}, ConsistentRead=True
        )
        item = response.get("Item")
        return Payable.model_validate(_fields(item)) if item else None

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
        return Page[Payable](items=[Payable.model_validate(_fields(item)) for item in items], next_cursor=next_cursor)

    @staticmethod
    def _payable_item(payable: Payable) -> dict[str, Any]:
        due = payable.due_date.isoformat() if payable.due_date else _NO_DUE_DATE
        return {
            "PK": _connection_pk(payable.connection_id),
            "SK": f"PAYABLE#{payable.bill_id}",
            "GSI2PK": _payables_by_status_pk(payable.connection_id, payable.status),
            "GSI2SK": f"{due}#{payable.bill_id}",
            "recordType": "payable",
            "contentHash": content_hash(payable, exclude=PAYABLE_HASH_EXCLUDE),
            **_dump(payable),
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
            Key={"PK": _connection_pk(connection_id), "SK": "SYNC#COUNTS"}, ConsistentRead=True
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
            Key={"PK": _connection_pk(connection_id), "SK": "SYNC#COUNTS"},
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
                Key={"PK": _connection_pk(connection_id), "SK": "SYNC#COUNTS"},
                UpdateExpression="ADD openBills :open, vendorsNeedingAttention :attention",
                ConditionExpression=Attr("PK").exists(),
                ExpressionAttributeValues={":open": open_bills, ":attention": vendors_needing_attention},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    def count_payables(self, connection_id: str, status: PayableStatus) -> int:
        """Counted by reading the status's index partition: only for connections without kept counts."""
        return self._count(index="GSI2", key=Key("GSI2PK").eq(_payables_by_status_pk(connection_id, status)))

    def count_vendors_needing_attention(self, connection_id: str) -> int:
        return self._count(index="GSI2", key=Key("GSI2PK").eq(_vendors_pk(connection_id, True)))

    def get_payables(self, connection_id: str, bill_ids: Iterable[str]) -> dict[str, Payable]:
        """The stored payables among `bill_ids` (batch reads of 100)."""
        items = self._batch_get(connection_id, [f"PAYABLE#{bill_id}" for bill_id in bill_ids])
        return {str(item["billId"]): Payable.model_validate(_fields(item)) for item in items}

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
        return {str(item["vendorId"]): Vendor.model_validate(_fields(item)) for item in items}

    def list_vendors(
        self, connection_id: str, *, attention_required: bool | None, limit: int, cursor: str | None
    ) -> Page[Vendor]:
        if attention_required is None:
            items, next_cursor = self._records_page(connection_id, "VENDOR#", limit=limit, cursor=cursor)
        else:
            partition = _vendors_pk(connection_id, attention_required)
            items, next_cursor = self._index_page("GSI2", partition, limit=limit, cursor=cursor)
        return Page[Vendor](items=[Vendor.model_validate(_fields(item)) for item in items], next_cursor=next_cursor)

    @staticmethod
    def _vendor_item(vendor: Vendor) -> dict[str, Any]:
        return {
            "PK": _connection_pk(vendor.connection_id),
            "SK": f"VENDOR#{vendor.vendor_id}",
            "GSI2PK": _vendors_pk(vendor.connection_id, vendor.attention_required),
            "GSI2SK": f"{vendor.name.casefold()}#{vendor.vendor_id}",
            "recordType": "vendor",
            "contentHash": vendor_content_hash(vendor),
            **_dump(vendor),
        }

    # ------------------------------------------------------------------ sync runs

    def put_sync_run(self, run: SyncRun) -> None:
        self.table.put_item(
            Item={
                "PK": _connection_pk(run.connection_id),
                "SK": f"SYNCRUN#{run.sync_run_id}",
                "recordType": "syncRun",
                **_dump(run),
                "expiresAt": _expires(run.started_at + self.retention.sync_runs),
            }
        )

    def get_sync_run(self, connection_id: str, sync_run_id: str) -> SyncRun | None:
        item = self.table.get_item(
            Key={"PK": _connection_pk(connection_id), "SK": f"SYNCRUN#{sync_run_id}"}, ConsistentRead=True
        ).get("Item")
        return SyncRun.model_validate(_fields(item)) if item else None

    def list_sync_runs(self, connection_id: str, *, limit: int, cursor: str | None) -> Page[SyncRun]:
        """Newest first."""
        items, next_cursor = self._records_page(
            connection_id,
            "SYNCRUN#",
            limit=limit,
            cursor=cursor,
            newest_first=True,
            item_filter=lambda item: item.get("recordType") == "syncRun",
        )
        return Page[SyncRun](items=[SyncRun.model_validate(_fields(item)) for item in items], next_cursor=next_cursor)

    def add_seen_bills(
        self, connection_id: str, sync_run_id: str, page: int, bill_ids: list[str], *, now: datetime
    ) -> None:
        """Remember which open bills a full listing saw on one page (so an interrupted listing can still
        tell, when it completes, which stored bills the provider no longer lists)."""
        self.table.put_item(
            Item={
                "PK": _connection_pk(connection_id),
                "SK": f"SYNCRUN#{sync_run_id}#SEEN#{page:06d}",
                "recordType": "seenBills",
                "billIds": bill_ids,
                "expiresAt": _expires(now + SEEN_PAGES_KEPT),
            }
        )

    def seen_bills(self, connection_id: str, sync_run_id: str) -> set[str]:
        seen: set[str] = set()
        for item in self._query_all(
            Key("PK").eq(_connection_pk(connection_id)) & Key("SK").begins_with(f"SYNCRUN#{sync_run_id}#SEEN#")
        ):
            seen.update(str(bill_id) for bill_id in item.get("billIds", []))
        return seen

    def claim_sync_slot(
        self, connection_id: str, sync_run_id: str, *, now: datetime, stale_after: timedelta
    ) -> str | None:
        """Make `sync_run_id` the connection's one active sync; returns the id already active instead, if any."""
        key = {"PK": _connection_pk(connection_id), "SK": "SYNC#ACTIVE"}
        try:
            self.table.put_item(
                Item={**key, "recordType": "syncSlot", "syncRunId": sync_run_id, "claimedAt": _epoch(now)},
                ConditionExpression=Attr("PK").not_exists() | Attr("claimedAt").lt(_epoch(now - stale_after)),
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            item = self.table.get_item(Key=key, ConsistentRead=True).get("Item")
            return str(item["syncRunId"]) if item else None
        return None

    def active_sync_run_id(self, connection_id: str) -> str | None:
        item = self.table.get_item(
            Key={"PK": _connection_pk(connection_id), "SK": "SYNC#ACTIVE"}, ConsistentRead=True
        ).get("Item")
        return str(item["syncRunId"]) if item else None

    def release_sync_slot(self, connection_id: str, sync_run_id: str) -> None:
        try:
            self.table.delete_item(
                Key={"PK": _connection_pk(connection_id), "SK": "SYNC#ACTIVE"},
                ConditionExpression=Attr("syncRunId").eq(sync_run_id),
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    def get_sync_state(self, connection_id: str) -> SyncState:
        item = (
            self.table.get_item(Key={"PK": _connection_pk(connection_id), "SK": "SYNC#STATE"}, ConsistentRead=True).get(
                "Item"
            )
            or {}
        )
        return SyncState(
            watermark=_datetime(item.get("watermark")), last_full_sync_at=_datetime(item.get("lastFullSyncAt"))
        )

    def save_sync_state(self, connection_id: str, state: SyncState) -> None:
        self.table.put_item(
            Item={
                "PK": _connection_pk(connection_id),
                "SK": "SYNC#STATE",
                "recordType": "syncState",
                "watermark": state.watermark.isoformat() if state.watermark else None,
                "lastFullSyncAt": state.last_full_sync_at.isoformat() if state.last_full_sync_at else None,
            }
        )

    # ------------------------------------------------------------------ payment orders

    def create_payment_order(self, order: PaymentOrder) -> PaymentOrder | None:
        """Record a new payment order; returns the one already recorded under that number instead, if any.

        A payment order number belongs to one connection of its business: the number is claimed for the
        business first (idempotent for the same connection), so another connection's claim is a conflict.
        """
        try:
            self.table.put_item(
                Item={
                    "PK": f"BUSINESS#{order.business_id}",
                    "SK": f"PAYMENT#{order.payment_order_number}",
                    "recordType": "paymentOrderNumber",
                    "connectionId": order.connection_id,
                },
                ConditionExpression=Attr("PK").not_exists() | Attr("connectionId").eq(order.connection_id),
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise ConflictError(
                    f"payment order {order.payment_order_number} was already sent to another connection",
                    field="body.paymentOrderNumber",
                ) from None
            raise
        try:
            self.table.put_item(Item=self._payment_item(order), ConditionExpression=Attr("PK").not_exists())
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return self.get_payment_order(order.connection_id, order.payment_order_number)
        return None

    def get_payment_order(self, connection_id: str, payment_order_number: str) -> PaymentOrder | None:
        item = self.table.get_item(
            Key={"PK": _connection_pk(connection_id), "SK": f"PAYMENT#{payment_order_number}"}, ConsistentRead=True
        ).get("Item")
        return PaymentOrder.model_validate(_fields(item)) if item else None

    def save_payment_order(self, order: PaymentOrder) -> PaymentOrder:
        """Write the next state of a payment order if nobody else changed it since it was read."""
        saved = order.model_copy(update={"version": order.version + 1})
        try:
            self.table.put_item(
                Item=self._payment_item(saved),
                ConditionExpression=Attr("PK").exists() & Attr("version").eq(order.version),
            )
        except ClientError as error:
            _raise_conflict_on_condition(error, f"payment order {order.payment_order_number} changed meanwhile")
            raise
        return saved

    def payment_orders_in_status(self, connection_id: str, status: PaymentOrderStatus) -> list[PaymentOrder]:
        return [
            PaymentOrder.model_validate(_fields(item))
            for item in self._query_all(
                Key("GSI2PK").eq(f"CONNECTION#{connection_id}#PAYMENTS#{status.value}"), index="GSI2"
            )
        ]

    @staticmethod
    def _payment_item(order: PaymentOrder) -> dict[str, Any]:
        return {
            "PK": _connection_pk(order.connection_id),
            "SK": f"PAYMENT#{order.payment_order_number}",
            "GSI2PK": f"CONNECTION#{order.connection_id}#PAYMENTS#{order.status.value}",
            "GSI2SK": f"{order.created_at.isoformat()}#{order.payment_order_number}",
            "recordType": "paymentOrder",
            **_dump(order),
        }

    # ------------------------------------------------------------------ webhook events

    def claim_webhook_events(self, provider: Provider, event_keys: Iterable[str], *, until: datetime) -> list[str]:
        """The keys never seen before (now recorded until `until`); a key seen before is a replay."""
        fresh: list[str] = []
        for key in event_keys:
            try:
                self.table.put_item(
                    Item={
                        "PK": f"WEBHOOK#{provider.value}",
                        "SK": f"EVENT#{key}",
                        "recordType": "webhookEvent",
                        "expiresAt": int(until.timestamp()),
                    },
                    ConditionExpression=Attr("PK").not_exists(),
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                continue
            fresh.append(key)
        return fresh

    def release_webhook_events(self, provider: Provider, event_keys: Iterable[str]) -> None:
        """Forget claimed events whose syncs could not be queued, so the provider's retry is not a replay."""
        for key in event_keys:
            self.table.delete_item(Key={"PK": f"WEBHOOK#{provider.value}", "SK": f"EVENT#{key}"})

    # ------------------------------------------------------------------ reading helpers

    def _count(self, *, index: str, key: Any) -> int:
        arguments: dict[str, Any] = {"IndexName": index, "KeyConditionExpression": key, "Select": "COUNT"}
        total = 0
        while True:
            response = self.table.query(**arguments)
            total += int(response.get("Count", 0))
            if "LastEvaluatedKey" not in response:
                return total
            arguments["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _query_all(
        self,
        key: Any,
        *,
        projection: str | None = None,
        names: dict[str, str] | None = None,
        index: str | None = None,
    ) -> list[dict[str, Any]]:
        arguments: dict[str, Any] = {"KeyConditionExpression": key}
        if index:
            arguments["IndexName"] = index
        if projection:
            arguments["ProjectionExpression"] = projection
        if names:
            arguments["ExpressionAttributeNames"] = names
        items: list[dict[str, Any]] = []
        while True:
            response = self.table.query(**arguments)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            arguments["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _batch_get(
        self, connection_id: str, sort_keys: list[str], *, projection: str | None = None
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        unique = list(dict.fromkeys(sort_keys))
        for start in range(0, len(unique), 100):
            keys: list[dict[str, Any]] = [
                {"PK": _connection_pk(connection_id), "SK": sk} for sk in unique[start : start + 100]
            ]
            request: dict[str, Any] = {self.table.name: {"Keys": keys, "ConsistentRead": True}}
            if projection:
                request[self.table.name]["ProjectionExpression"] = projection
            while request:
                response = self.table.meta.client.batch_get_item(RequestItems=request)
                items.extend(response.get("Responses", {}).get(self.table.name, []))
                request = response.get("UnprocessedKeys") or {}
        return items

    # ------------------------------------------------------------------ paging

    def _records_page(
        self,
        connection_id: str,
        prefix: str,
        *,
        limit: int,
        cursor: str | None,
        newest_first: bool = False,
        item_filter: Callable[[dict[str, Any]], bool] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of one connection's records of a kind (their sort keys start with `prefix`)."""
        partition = _connection_pk(connection_id)
        return self._query_page(
            index=None,
            key=Key("PK").eq(partition) & Key("SK").begins_with(prefix),
            partition=("PK", partition),
            limit=limit,
            cursor=cursor,
            newest_first=newest_first,
            item_filter=item_filter,
        )

    def _index_page(
        self, index: str, partition: str, *, limit: int, cursor: str | None, sort_prefix: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of one partition of a secondary index (GSI1 or GSI2)."""
        key: Any = Key(f"{index}PK").eq(partition)
        if sort_prefix:
            key = key & Key(f"{index}SK").begins_with(sort_prefix)
        return self._query_page(index=index, key=key, partition=(f"{index}PK", partition), limit=limit, cursor=cursor)

    def _query_page(
        self,
        *,
        index: str | None,
        key: Any,
        partition: tuple[str, str],
        limit: int,
        cursor: str | None,
        newest_first: bool = False,
        item_filter: Callable[[dict[str, Any]], bool] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidInputError(f"limit must be between 1 and {MAX_PAGE_SIZE}", field="limit")
        arguments: dict[str, Any] = {
            "KeyConditionExpression": key,
            "Limit": limit,
            "ScanIndexForward": not newest_first,
        }
        if index:
            arguments["IndexName"] = index
        if cursor:
            arguments["ExclusiveStartKey"] = _decode_cursor(cursor, partition)
        items: list[dict[str, Any]] = []
        # DynamoDB may return fewer than `limit` items with a LastEvaluatedKey; keep reading so a
        # page is full unless the partition is exhausted.
        while True:
            response = self.table.query(**arguments)
            items.extend(item for item in response.get("Items", []) if item_filter is None or item_filter(item))
            last_key = response.get("LastEvaluatedKey")
            if last_key is None:
                return items, None
            if len(items) >= limit:
                return items, _encode_cursor(last_key)
            arguments["ExclusiveStartKey"] = last_key
            arguments["Limit"] = limit - len(items)


def _vendors_pk(connection_id: str, attention_required: bool) -> str:
    return f"CONNECTION#{connection_id}#VENDORS#{'ATTENTION' if attention_required else 'CLEAR'}"


def vendor_content_hash(vendor: Vendor) -> str:
    # The attention flag is the platform's view of the vendor, not the vendor's content.
    return content_hash(vendor, exclude={"attention_required", "provider_updated_at"})


def _datetime(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


def _dump(record: BaseModel) -> dict[str, Any]:
    # JSON mode: Decimals and dates become strings, so nothing is rounded and items stay plain.
    return {key: value for key, value in record.model_dump(mode="json", by_alias=True).items()}


_BOOKKEEPING = {"PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK", "recordType", "expiresAt", "contentHash"}


def _fields(item: dict[str, Any]) -> dict[str, Any]:
    """The record's own fields of an item: keys and bookkeeping attributes removed."""
    return {key: value for key, value in item.items() if key not in _BOOKKEEPING}


def _epoch(moment: datetime) -> Decimal:
    # DynamoDB numbers go through boto3 as Decimal; milliseconds are plenty for a lease.
    return Decimal(str(round(moment.timestamp(), 3)))


def _encode_cursor(last_key: dict[str, Any]) -> str:
    raw = json.dumps(last_key, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, partition: tuple[str, str]) -> dict[str, Any]:
    """Decode a cursor, refusing one that is malformed or was issued for another partition."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidInputError("cursor is not one this API issued", field="cursor") from None
    attribute, value = partition
    if not isinstance(key, dict) or key.get(attribute) != value or not all(isinstance(v, str) for v in key.values()):
        raise InvalidInputError("cursor does not belong to this listing", field="cursor")
    return key


def _raise_conflict_on_condition(error: ClientError, message: str) -> None:
    if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
        raise ConflictError(message) from None
