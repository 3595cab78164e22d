"""Work in flight: a sparse index of the items whose work is under way, so the sweeper reads what could
be stuck, never every connection.

Key design (the whole table: storage/__init__.py):
  GSI3PK=INFLIGHT#<shard>  GSI3SK=<movedAt>#<SK>  on an item only while its work is under way:
    payment order  while received, posting or reversing (movedAt: its updatedAt; payment_orders.py)
    sync slot      while held (movedAt: when it was claimed; syncs.py)
  shard = connection_shard(<connection id>) (connections.py, the status index's hashing), so no index
  partition holds more than about 1/CONNECTION_SHARDS of the work; movedAt is UTC ISO with microseconds
  (fixed width: the keys sort by time). Projection: keys plus `syncRunId` (all the sweeper needs: the
  connection id is in PK, the order number in SK).
An item leaves the index when its work ends: an order written in another status carries no GSI3 keys
(orders are written whole), a released slot is deleted.

Items written before the index existed carry no GSI3 keys: an order moves within minutes and gets its
keys on its next write, so only orders already stuck at deploy time are not found (queue them once
through the retry API, or re-save them); a legacy slot is taken over by the next claim once stale.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from boto3.dynamodb.conditions import Key

from payedge_connect.storage.connections import CONNECTION_SHARDS, connection_shard
from payedge_connect.storage.table import TableStore

IN_FLIGHT_INDEX = "GSI3"


def _moved_key(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def in_flight_keys(connection_id: str, sort_key: str, moved_at: datetime) -> dict[str, str]:
    """The GSI3 attributes of an item whose work is under way (`sort_key` is the item's SK)."""
    return {
        "GSI3PK": f"INFLIGHT#{connection_shard(connection_id):02d}",
        "GSI3SK": f"{_moved_key(moved_at)}#{sort_key}",
    }


@dataclass(frozen=True)
class InFlight:
    """One item of the index: a payment order (`sort_key` PAYMENT#<number>) or a sync slot (SYNC#ACTIVE)."""

    connection_id: str
    sort_key: str
    sync_run_id: str | None


class InFlightStore(TableStore):
    def unmoved_since(self, moment: datetime) -> Iterator[InFlight]:
        """Work that has not moved since `moment` (inclusive), shard by shard, every page: reads only
        the items in flight that long."""
        for shard in range(CONNECTION_SHARDS):
            key = Key("GSI3PK").eq(f"INFLIGHT#{shard:02d}") & Key("GSI3SK").lte(f"{_moved_key(moment)}#~")
            for item in self._query_all(key, index=IN_FLIGHT_INDEX):
                run = item.get("syncRunId")
                yield InFlight(
                    connection_id=str(item["PK"]).removeprefix("CONNECTION#"),
                    sort_key=str(item["SK"]),
                    sync_run_id=str(run) if run is not None else None,
                )
