"""Connections, their tenant look-ups, and the single-use OAuth records of connecting one.

Key design (the whole table: storage/__init__.py):
  connection  PK=CONNECTION#<id>  SK=CONNECTION
              GSI1PK=BUSINESS#<businessId>  GSI1SK=CONNECTION#<createdAt>#<id>   (a business's connections)
              GSI2PK=CONNECTIONS#<status>#<shard>  GSI2SK=<nextSyncDueAt>#<id>   (connections in a state,
              by due time; shard = crc32(id) % CONNECTION_SHARDS, so no index partition holds them all)
  tenant      PK=TENANT#<provider>#<tenantId>  SK=CONNECTION#<id>  (webhooks find connections)
  oauth state PK=OAUTH_STATE#<sha256(state)>  SK=OAUTH_STATE                (single use, TTL on expiresAt)
  completion  PK=OAUTH_COMPLETION#<sha256(code)>  SK=OAUTH_COMPLETION       (single use, TTL on expiresAt)
A connection is saved whole with optimistic locking on `version`; a sync's outcome and a revoked grant
update only their fields (record_sync_outcome, mark_reauthorization_required), so a concurrent status
change is not overwritten.
"""

import zlib
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError
from pydantic import BaseModel

from payedge_connect.models import (
    Connection,
    ConnectionStatus,
    OAuthCompletion,
    OAuthState,
    Provider,
    SyncSchedule,
    SyncSummary,
)
from payedge_connect.storage.table import (
    MAX_PAGE_SIZE,
    Page,
    TableStore,
    condition_failed,
    connection_pk,
    dump_record,
    raise_conflict_on_condition,
    record_fields,
)

# Shards of the connection-status index. Changing it moves every connection to another index
# partition: re-save each connection (or let dispatch's re-indexing of legacy keys do it) after.
CONNECTION_SHARDS = 32
_DUE_NOW = "0000"  # a connection without a schedule sorts first: due now


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


class ConnectionsStore(TableStore):
    def create_connection(self, connection: Connection) -> None:
        """Store a new connection; fails with ConflictError if the id is already taken."""
        try:
            self.table.put_item(
                Item=self._connection_item(connection),
                ConditionExpression=Attr("PK").not_exists(),
            )
        except ClientError as error:
            raise_conflict_on_condition(error, f"connection {connection.connection_id} already exists")
            raise
        self._put_tenant_lookup(connection)

    def get_connection(self, connection_id: str) -> Connection | None:
        response = self.table.get_item(
            Key={"PK": connection_pk(connection_id), "SK": "CONNECTION"}, ConsistentRead=True
        )
        item = response.get("Item")
        return Connection.model_validate(record_fields(item)) if item else None

    def save_connection(self, connection: Connection) -> Connection:
        """Write a changed connection if nobody else saved it since it was read; returns the saved copy."""
        saved = connection.model_copy(update={"version": connection.version + 1})
        self._put_versioned(
            self._connection_item(saved), connection.version, f"connection {connection.connection_id} changed meanwhile"
        )
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
            Key={"PK": connection_pk(connection_id), "SK": "CONNECTION"},
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
        return Page[Connection](
            items=[Connection.model_validate(record_fields(i)) for i in items], next_cursor=next_cursor
        )

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
        return [Connection.model_validate(record_fields(item)) for item in items], response.get("LastEvaluatedKey")

    def connections_in_status(self, status: ConnectionStatus) -> list[Connection]:
        """Every connection in `status`, shard by shard (for the sweeper, a few times an hour)."""
        return [
            Connection.model_validate(record_fields(item))
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
                if not condition_failed(error):
                    raise
                continue  # saved meanwhile: the save wrote the sharded key
            moved += 1
        return moved

    @staticmethod
    def _connection_item(connection: Connection) -> dict[str, Any]:
        return {
            "PK": connection_pk(connection.connection_id),
            "SK": "CONNECTION",
            "GSI1PK": f"BUSINESS#{connection.business_id}",
            "GSI1SK": f"CONNECTION#{connection.created_at.isoformat()}#{connection.connection_id}",
            "GSI2PK": _status_index_pk(connection.status, connection.connection_id),
            "GSI2SK": _status_index_sk(connection.connection_id, connection.sync_schedule),
            "recordType": "connection",
            **dump_record(connection),
        }

    def mark_reauthorization_required(self, connection_id: str, reason: str, now: datetime) -> bool:
        """Move a working connection to reauthorization_required; False if it was not working (done once)."""
        working = [ConnectionStatus.CONNECTED.value, ConnectionStatus.MAPPING_REQUIRED.value]
        try:
            self.table.update_item(
                Key={"PK": connection_pk(connection_id), "SK": "CONNECTION"},
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
            if condition_failed(error):
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
                **dump_record(record),
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
            if condition_failed(error):
                return None
            raise
        item = response["Attributes"]
        expires_at = datetime.fromtimestamp(int(str(item["expiresAt"])), tz=UTC)
        return {**record_fields(item), "expiresAt": expires_at}
