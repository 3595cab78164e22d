"""The records table: the only code that reads or writes DynamoDB.

Key design (one table):
  connection  PK=CONNECTION#<id>  SK=CONNECTION
              GSI1PK=BUSINESS#<businessId>  GSI1SK=CONNECTION#<createdAt>#<id>   (a business's connections)
              GSI2PK=CONNECTIONS#<status>   GSI2SK=CONNECTION#<id>               (connections in a state)
  lease       PK=CONNECTION#<id>  SK=LEASE#<name>                                      (one holder at a time)
  oauth state PK=OAUTH_STATE#<sha256(state)>  SK=OAUTH_STATE                          (single use, TTL)
  payable     PK=CONNECTION#<id>  SK=PAYABLE#<billId>
              GSI2PK=CONNECTION#<id>#PAYABLE#<status>  GSI2SK=<dueDate>#<billId> (payables by status)
Items carry the record's camelCase fields beside the keys; amounts and dates as strings (exact, sortable).
Pages are returned with an opaque cursor bound to the partition it was read from.
"""

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError
from pydantic import BaseModel

from payedge_connect.errors import ConflictError, InvalidInputError
from payedge_connect.models import Connection, ConnectionStatus, OAuthState, Payable, PayableStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource, Table

MAX_PAGE_SIZE = 100
_NO_DUE_DATE = "9999-12-31"  # bills without a due date sort last


@dataclass(frozen=True)
class Lease:
    connection_id: str
    name: str
    holder: str
    fence: int


class Page[RecordT: BaseModel](BaseModel):
    items: list[RecordT]
    next_cursor: str | None = None


def _connection_pk(connection_id: str) -> str:
    return f"CONNECTION#{connection_id}"


def _payables_by_status_pk(connection_id: str, status: PayableStatus) -> str:
    return f"CONNECTION#{connection_id}#PAYABLE#{status.value}"


class RecordsStore:
    def __init__(self, table_name: str, *, dynamodb: "DynamoDBServiceResource | None" = None) -> None:
        self._table_name = table_name
        self._dynamodb = dynamodb
        self._table: Table | None = None

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
        return saved

    def list_connections(
        self, business_id: str, *, limit: int = MAX_PAGE_SIZE, cursor: str | None = None
    ) -> Page[Connection]:
        partition = f"BUSINESS#{business_id}"
        items, next_cursor = self._query_page(
            index="GSI1",
            key=Key("GSI1PK").eq(partition) & Key("GSI1SK").begins_with("CONNECTION#"),
            partition=("GSI1PK", partition),
            limit=limit,
            cursor=cursor,
        )
        return Page[Connection](
            items=[Connection.model_validate(_fields(item)) for item in items], next_cursor=next_cursor
        )

    def list_connections_in_status(
        self, status: ConnectionStatus, *, limit: int = MAX_PAGE_SIZE, cursor: str | None = None
    ) -> Page[Connection]:
        """Every business's connections in one status (e.g. the connected ones the schedule syncs)."""
        partition = f"CONNECTIONS#{status.value}"
        items, next_cursor = self._query_page(
            index="GSI2",
            key=Key("GSI2PK").eq(partition),
            partition=("GSI2PK", partition),
            limit=limit,
            cursor=cursor,
        )
        return Page[Connection](
            items=[Connection.model_validate(_fields(item)) for item in items], next_cursor=next_cursor
        )

    @staticmethod
    def _connection_item(connection: Connection) -> dict[str, Any]:
        return {
            "PK": _connection_pk(connection.connection_id),
            "SK": "CONNECTION",
            "GSI1PK": f"BUSINESS#{connection.business_id}",
            "GSI1SK": f"CONNECTION#{connection.created_at.isoformat()}#{connection.connection_id}",
            "GSI2PK": f"CONNECTIONS#{connection.status.value}",
            "GSI2SK": f"CONNECTION#{connection.connection_id}",
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
                    ":index": f"CONNECTIONS#{ConnectionStatus.REAUTHORIZATION_REQUIRED.value}",
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
        self.table.put_item(
            Item={
                "PK": f"OAUTH_STATE#{state.state_hash}",
                "SK": "OAUTH_STATE",
                "recordType": "oauthState",
                # TTL removes abandoned states; consume_oauth_state checks expiry itself (TTL is lazy).
                "expiresAt": int(state.expires_at.timestamp()),
                **_dump(state),
            },
            ConditionExpression=Attr("PK").not_exists(),
        )

    def consume_oauth_state(self, state_hash: str) -> OAuthState | None:
        """Remove and return a pending state; None if it never existed or was already used."""
        try:
            response = self.table.delete_item(
                Key={"PK": f"OAUTH_STATE#{state_hash}", "SK": "OAUTH_STATE"},
                ConditionExpression=Attr("PK").exists(),
                ReturnValues="ALL_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise
        return OAuthState.model_validate(_fields(response["Attributes"]))

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

    def put_payables(self, payables: Iterable[Payable]) -> int:
        """Write payables in batches (25 a request, unprocessed items retried by boto3); returns the count."""
        written = 0
        with self.table.batch_writer(overwrite_by_pkeys=["PK", "SK"]) as batch:
            for payable in payables:
                batch.put_item(Item=self._payable_item(payable))
                written += 1
        return written

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
            partition = _connection_pk(connection_id)
            items, next_cursor = self._query_page(
                index=None,
                key=Key("PK").eq(partition) & Key("SK").begins_with("PAYABLE#"),
                partition=("PK", partition),
                limit=limit,
                cursor=cursor,
            )
        else:
            partition = _payables_by_status_pk(connection_id, status)
            items, next_cursor = self._query_page(
                index="GSI2",
                key=Key("GSI2PK").eq(partition),
                partition=("GSI2PK", partition),
                limit=limit,
                cursor=cursor,
            )
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
            **_dump(payable),
        }

    # ------------------------------------------------------------------ paging

    def _query_page(
        self,
        *,
        index: str | None,
        key: Any,
        partition: tuple[str, str],
        limit: int,
        cursor: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidInputError(f"limit must be between 1 and {MAX_PAGE_SIZE}", field="limit")
        arguments: dict[str, Any] = {"KeyConditionExpression": key, "Limit": limit}
        if index:
            arguments["IndexName"] = index
        if cursor:
            arguments["ExclusiveStartKey"] = _decode_cursor(cursor, partition)
        items: list[dict[str, Any]] = []
        # DynamoDB may return fewer than `limit` items with a LastEvaluatedKey; keep reading so a
        # page is full unless the partition is exhausted.
        while True:
            response = self.table.query(**arguments)
            items.extend(response.get("Items", []))
            last_key = response.get("LastEvaluatedKey")
            if last_key is None:
                return items, None
            if len(items) >= limit:
                return items, _encode_cursor(last_key)
            arguments["ExclusiveStartKey"] = last_key
            arguments["Limit"] = limit - len(items)


def _dump(record: BaseModel) -> dict[str, Any]:
    # JSON mode: Decimals and dates become strings, so nothing is rounded and items stay plain.
    return {key: value for key, value in record.model_dump(mode="json", by_alias=True).items()}


def _fields(item: dict[str, Any]) -> dict[str, Any]:
    """The record's own fields of an item: keys and bookkeeping attributes removed."""
    return {
        key: value
        for key, value in item.items()
        if key not in {"PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK", "recordType", "expiresAt"}
    }


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
