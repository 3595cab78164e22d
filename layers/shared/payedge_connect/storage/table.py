"""What every store of the records table shares: the table handle, the connection partition's key,
item (de)serialisation, the conditional-write check, and reading and paging helpers.

The whole table's key design is in storage/__init__.py; each store's part is at the top of its module.
"""

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from payedge_connect.errors import ConflictError, InvalidInputError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource, Table

MAX_PAGE_SIZE = 100


class Page[RecordT: BaseModel](BaseModel):
    # Built on first use, like the records (models.Record): the stores' annotations name several pages.
    model_config = ConfigDict(defer_build=True)

    items: list[RecordT]
    next_cursor: str | None = None


class RecordsTable:
    """One handle on the records table, shared by every store (one boto3 resource for them all)."""

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


class TableStore:
    """A store of some of the table's record kinds: the shared table and the reading helpers."""

    def __init__(self, records: RecordsTable) -> None:
        self._records = records

    @property
    def table(self) -> "Table":
        return self._records.table

    def _put_versioned(self, item: dict[str, Any], version: int, conflict: str) -> None:
        """Replace a stored record only if it is still at `version` (optimistic locking): ConflictError
        (`conflict` its message) if someone else saved it meanwhile."""
        try:
            self.table.put_item(Item=item, ConditionExpression=Attr("PK").exists() & Attr("version").eq(version))
        except ClientError as error:
            raise_conflict_on_condition(error, conflict)
            raise

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
                {"PK": connection_pk(connection_id), "SK": sk} for sk in unique[start : start + 100]
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
        partition = connection_pk(connection_id)
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


def connection_pk(connection_id: str) -> str:
    """The partition of a connection and everything it owns (payables, vendors, syncs, payments, leases)."""
    return f"CONNECTION#{connection_id}"


def dump_record(record: BaseModel) -> dict[str, Any]:
    # JSON mode: Decimals and dates become strings, so nothing is rounded and items stay plain.
    return {key: value for key, value in record.model_dump(mode="json", by_alias=True).items()}


_BOOKKEEPING = {
    "PK",
    "SK",
    "GSI1PK",
    "GSI1SK",
    "GSI2PK",
    "GSI2SK",
    "GSI3PK",
    "GSI3SK",
    "recordType",
    "expiresAt",
    "contentHash",
}


def record_fields(item: dict[str, Any]) -> dict[str, Any]:
    """The record's own fields of an item: keys and bookkeeping attributes removed."""
    return {key: value for key, value in item.items() if key not in _BOOKKEEPING}


def expires(moment: datetime) -> int:
    """A TTL value (`expiresAt`): epoch seconds."""
    return int(moment.timestamp())


def epoch(moment: datetime) -> Decimal:
    # DynamoDB numbers go through boto3 as Decimal; milliseconds are plenty for a lease.
    return Decimal(str(round(moment.timestamp(), 3)))


def condition_failed(error: ClientError) -> bool:
    """Whether a conditional write was refused because its condition did not hold."""
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def raise_conflict_on_condition(error: ClientError, message: str) -> None:
    if condition_failed(error):
        raise ConflictError(message) from None


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
