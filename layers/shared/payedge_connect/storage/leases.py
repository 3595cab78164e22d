"""Leases on a connection (one holder at a time), and the heartbeat that keeps one alive while its holder
works: a holder that crashes (a Lambda killed at its timeout, an out-of-memory) stops beating, and the
next worker takes the lease seconds later instead of waiting out a lease as long as the longest run.

Key design (the whole table: storage/__init__.py):
  lease  PK=CONNECTION#<id>  SK=LEASE#<name>   holder, leaseUntil (epoch seconds), fence (grows with
         every acquisition); TTL on expiresAt a day after the last acquisition
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from payedge_connect.observability import logger
from payedge_connect.storage.table import TableStore, condition_failed, connection_pk, epoch

# A live holder renews every HEARTBEAT_SECONDS; a lease not renewed for HEARTBEAT_TIMEOUT_SECONDS is free.
HEARTBEAT_SECONDS = 3.0
HEARTBEAT_TIMEOUT_SECONDS = 12.0


@dataclass(frozen=True)
class Lease:
    connection_id: str
    name: str
    holder: str
    fence: int


class LeasesStore(TableStore):
    def acquire_lease(
        self, connection_id: str, name: str, holder: str, *, now: datetime, seconds: float
    ) -> Lease | None:
        """Take the connection's `name` lease if it is free or expired; None if someone else holds it.

        The fencing token grows with every acquisition, so a holder whose lease expired can tell
        (with `holds_lease`) that its work must not be saved.
        """
        try:
            response = self.table.update_item(
                Key={"PK": connection_pk(connection_id), "SK": f"LEASE#{name}"},
                UpdateExpression="SET holder = :holder, leaseUntil = :until, expiresAt = :ttl ADD fence :one",
                ConditionExpression=Attr("PK").not_exists() | Attr("leaseUntil").lt(epoch(now)),
                ExpressionAttributeValues={
                    ":holder": holder,
                    ":until": epoch(now + timedelta(seconds=seconds)),
                    ":ttl": int((now + timedelta(days=1)).timestamp()),
                    ":one": 1,
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if condition_failed(error):
                return None
            raise
        return Lease(connection_id, name, holder, int(str(response["Attributes"]["fence"])))

    def holds_lease(self, lease: Lease, *, now: datetime) -> bool:
        item = self.table.get_item(
            Key={"PK": connection_pk(lease.connection_id), "SK": f"LEASE#{lease.name}"}, ConsistentRead=True
        ).get("Item")
        return bool(
            item
            and item.get("holder") == lease.holder
            and int(str(item["fence"])) == lease.fence
            and float(str(item["leaseUntil"])) > now.timestamp()
        )

    def renew_lease(self, lease: Lease, *, now: datetime, seconds: float) -> bool:
        """Extend a lease we still hold (same holder and fence) to `seconds` from now; False if it was
        taken by someone else (it expired: our work must stop)."""
        try:
            self.table.update_item(
                Key={"PK": connection_pk(lease.connection_id), "SK": f"LEASE#{lease.name}"},
                UpdateExpression="SET leaseUntil = :until",
                ConditionExpression=Attr("holder").eq(lease.holder) & Attr("fence").eq(lease.fence),
                ExpressionAttributeValues={":until": epoch(now + timedelta(seconds=seconds))},
            )
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True

    def release_lease(self, lease: Lease) -> None:
        """Free the lease if we still hold it (if it expired and was taken, leave the new holder alone)."""
        try:
            self.table.update_item(
                Key={"PK": connection_pk(lease.connection_id), "SK": f"LEASE#{lease.name}"},
                UpdateExpression="SET leaseUntil = :free",
                ConditionExpression=Attr("holder").eq(lease.holder) & Attr("fence").eq(lease.fence),
                ExpressionAttributeValues={":free": 0},
            )
        except ClientError as error:
            if not condition_failed(error):
                raise


class HeldLease:
    """Take the connection's `name` lease and renew it in a background thread until the block ends.

    `held` is False when another holder has the lease (nothing to do). `lost` turns True when a renewal
    finds the lease taken (this holder was presumed dead): work not yet sent must not be sent."""

    def __init__(
        self,
        store: LeasesStore,
        connection_id: str,
        name: str,
        holder: str,
        *,
        clock: Callable[[], datetime],
        interval: float = HEARTBEAT_SECONDS,
        timeout: float = HEARTBEAT_TIMEOUT_SECONDS,
    ) -> None:
        self._store, self._clock, self._interval, self._timeout = store, clock, interval, timeout
        self.lease: Lease | None = store.acquire_lease(connection_id, name, holder, now=clock(), seconds=timeout)
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self.lease is not None

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def start(self) -> None:
        """Begin the heartbeat (if the lease is held)."""
        if self.lease is not None and self._thread is None:
            self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.lease.name}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """End the heartbeat and free the lease (if we still hold it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lease is not None:
            self._store.release_lease(self.lease)

    def __enter__(self) -> "HeldLease":
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _beat(self) -> None:
        assert self.lease is not None
        # The store's table is shared with the holder's thread: its client is thread-safe.
        while not self._stop.wait(self._interval):
            try:
                if not self._store.renew_lease(self.lease, now=self._clock(), seconds=self._timeout):
                    logger.warning("Lease lost", extra={"connection_id": self.lease.connection_id})
                    self._lost.set()
                    return
            except Exception:
                # A missed beat is not a lost lease: the next one may get through before the timeout.
                logger.exception("Lease heartbeat failed", extra={"connection_id": self.lease.connection_id})
