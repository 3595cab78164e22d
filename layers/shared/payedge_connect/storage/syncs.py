"""Syncs of a connection: their runs, the one active sync, where the next one starts, and the webhook
events that asked for them.

Key design (the whole table: storage/__init__.py):
  sync run    PK=CONNECTION#<id>  SK=SYNCRUN#<syncRunId>  (ids sort by start time; TTL on expiresAt: the
              sync-run retention after it started)
  seen page   PK=CONNECTION#<id>  SK=SYNCRUN#<syncRunId>#SEEN#<page>  (bill ids a full listing saw; TTL
              SEEN_PAGES_KEPT after it was written)
  sync slot   PK=CONNECTION#<id>  SK=SYNC#ACTIVE  (the one requested-or-running sync)
              GSI3PK=INFLIGHT#<shard>  GSI3SK=<claimedAt>#SYNC#ACTIVE  (while held, i.e. always: a
              released slot is deleted; the sweeper's index of work in flight, in_flight.py)
  sync state  PK=CONNECTION#<id>  SK=SYNC#STATE   (the checkpoint: incremental watermark, last full
              reconciliation)
  webhook     PK=WEBHOOK#<provider>  SK=EVENT#<sha256 of the event's identity>  (seen once; TTL on expiresAt)
(SYNC#COUNTS, the counts of payables and vendors, belongs to storage/payables.py.)
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from payedge_connect.models import Provider, SyncRun
from payedge_connect.storage.in_flight import in_flight_keys
from payedge_connect.storage.table import (
    Page,
    RecordsTable,
    TableStore,
    condition_failed,
    connection_pk,
    dump_record,
    epoch,
    expires,
    record_fields,
)

# A full listing's seen pages are needed only until its run finishes; a run older than this is
# stale (its sync slot is, after 2 hours) and an expired page only costs a by-id look-up.
SEEN_PAGES_KEPT = timedelta(days=2)


@dataclass(frozen=True)
class SyncState:
    """Where incremental syncs of a connection start from."""

    watermark: datetime | None
    last_full_sync_at: datetime | None


def _datetime(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


class SyncsStore(TableStore):
    def __init__(self, records: RecordsTable, *, sync_run_retention: timedelta) -> None:
        super().__init__(records)
        self._sync_run_retention = sync_run_retention

    def put_sync_run(self, run: SyncRun) -> None:
        self.table.put_item(
            Item={
                "PK": connection_pk(run.connection_id),
                "SK": f"SYNCRUN#{run.sync_run_id}",
                "recordType": "syncRun",
                **dump_record(run),
                "expiresAt": expires(run.started_at + self._sync_run_retention),
            }
        )

    def get_sync_run(self, connection_id: str, sync_run_id: str) -> SyncRun | None:
        item = self.table.get_item(
            Key={"PK": connection_pk(connection_id), "SK": f"SYNCRUN#{sync_run_id}"}, ConsistentRead=True
        ).get("Item")
        return SyncRun.model_validate(record_fields(item)) if item else None

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
        return Page[SyncRun](
            items=[SyncRun.model_validate(record_fields(item)) for item in items], next_cursor=next_cursor
        )

    def add_seen_bills(
        self, connection_id: str, sync_run_id: str, page: int, bill_ids: list[str], *, now: datetime
    ) -> None:
        """Remember which open bills a full listing saw on one page (so an interrupted listing can still
        tell, when it completes, which stored bills the provider no longer lists)."""
        self.table.put_item(
            Item={
                "PK": connection_pk(connection_id),
                "SK": f"SYNCRUN#{sync_run_id}#SEEN#{page:06d}",
                "recordType": "seenBills",
                "billIds": bill_ids,
                "expiresAt": expires(now + SEEN_PAGES_KEPT),
            }
        )

    def seen_bills(self, connection_id: str, sync_run_id: str) -> set[str]:
        seen: set[str] = set()
        for item in self._query_all(
            Key("PK").eq(connection_pk(connection_id)) & Key("SK").begins_with(f"SYNCRUN#{sync_run_id}#SEEN#")
        ):
            seen.update(str(bill_id) for bill_id in item.get("billIds", []))
        return seen

    def claim_sync_slot(
        self, connection_id: str, sync_run_id: str, *, now: datetime, stale_after: timedelta
    ) -> str | None:
        """Make `sync_run_id` the connection's one active sync; returns the id already active instead, if any."""
        key = {"PK": connection_pk(connection_id), "SK": "SYNC#ACTIVE"}
        try:
            self.table.put_item(
                Item={
                    **key,
                    **in_flight_keys(connection_id, "SYNC#ACTIVE", now),
                    "recordType": "syncSlot",
                    "syncRunId": sync_run_id,
                    "claimedAt": epoch(now),
                },
                ConditionExpression=Attr("PK").not_exists() | Attr("claimedAt").lt(epoch(now - stale_after)),
            )
        except ClientError as error:
            if not condition_failed(error):
                raise
            item = self.table.get_item(Key=key, ConsistentRead=True).get("Item")
            return str(item["syncRunId"]) if item else None
        return None

    def active_sync_run_id(self, connection_id: str) -> str | None:
        item = self.table.get_item(
            Key={"PK": connection_pk(connection_id), "SK": "SYNC#ACTIVE"}, ConsistentRead=True
        ).get("Item")
        return str(item["syncRunId"]) if item else None

    def release_sync_slot(self, connection_id: str, sync_run_id: str) -> None:
        try:
            self.table.delete_item(
                Key={"PK": connection_pk(connection_id), "SK": "SYNC#ACTIVE"},
                ConditionExpression=Attr("syncRunId").eq(sync_run_id),
            )
        except ClientError as error:
            if not condition_failed(error):
                raise

    def get_sync_state(self, connection_id: str) -> SyncState:
        item = (
            self.table.get_item(Key={"PK": connection_pk(connection_id), "SK": "SYNC#STATE"}, ConsistentRead=True).get(
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
                "PK": connection_pk(connection_id),
                "SK": "SYNC#STATE",
                "recordType": "syncState",
                "watermark": state.watermark.isoformat() if state.watermark else None,
                "lastFullSyncAt": state.last_full_sync_at.isoformat() if state.last_full_sync_at else None,
            }
        )

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
                if not condition_failed(error):
                    raise
                continue
            fresh.append(key)
        return fresh

    def release_webhook_events(self, provider: Provider, event_keys: Iterable[str]) -> None:
        """Forget claimed events whose syncs could not be queued, so the provider's retry is not a replay."""
        for key in event_keys:
            self.table.delete_item(Key={"PK": f"WEBHOOK#{provider.value}", "SK": f"EVENT#{key}"})
