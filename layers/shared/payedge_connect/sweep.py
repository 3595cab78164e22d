"""The sweeper: on a schedule, finds work that has stopped moving and moves it on or ends it, so nothing
stays stuck unseen - whatever crashed, timed out or lost its message on the way.

- payment orders still `received` or `posting` long after their last step (a lost or dead-lettered
  message, a worker killed mid-run): queued again (a `posting` one is looked up at the provider first);
- sync slots held for a run that is no longer running (a worker that died before releasing it): freed;
- connections left `authorizing` (the user never came back from the consent page): disconnected, with a
  reason the web app shows.
Leases need no sweeping: a holder that dies stops its heartbeat and its lease is free seconds later.

Orders and slots are found through the sparse in-flight index (storage/in_flight.py: GSI3, 32 shards,
only work under way carries its keys), so a sweep reads the work unmoved too long - one query per shard
plus a run read per old slot - never every connection. Orders of any connection are queued: the
write-back ends them visibly (rejected when the connection is gone, waiting for reconnection when it
needs the user). Operator note: orders stuck already when the index was deployed carry no index keys
(nothing backfills them; an order gets them on its next write): queue those once through the retry API.
"""

from dataclasses import dataclass
from datetime import timedelta

from payedge_connect.errors import ConflictError
from payedge_connect.models import ConnectionStatus, SyncOutcome
from payedge_connect.observability import logger, metrics
from payedge_connect.services import Services
from payedge_connect.writeback.queue import queue_payments

# A payment order normally moves within seconds; one unmoved this long lost its message. A sync slot
# held this long is looked at too (and freed only if its run has finished).
ORDER_UNMOVED_AFTER = timedelta(minutes=30)
# Longer than an OAuth state lives (the consent page's link is dead by then).
AUTHORIZATION_ABANDONED_AFTER = timedelta(hours=1)
ABANDONED_REASON = "The connection was not completed at the accounting software; connect again."


@dataclass
class SweepReport:
    orders_requeued: int = 0
    sync_slots_freed: int = 0
    connections_expired: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "ordersRequeued": self.orders_requeued,
            "syncSlotsFreed": self.sync_slots_freed,
            "connectionsExpired": self.connections_expired,
        }


def sweep(services: Services, *, writeback_queue_url: str) -> SweepReport:
    store, now = services.store, services.clock()
    report = SweepReport()
    unmoved: dict[str, list[str]] = {}
    for work in store.in_flight.unmoved_since(now - ORDER_UNMOVED_AFTER):
        if work.sort_key.startswith("PAYMENT#"):
            # The index says when the order last moved; its own read would cost a request per order.
            unmoved.setdefault(work.connection_id, []).append(work.sort_key.removeprefix("PAYMENT#"))
        elif work.sync_run_id is not None:
            run = store.syncs.get_sync_run(work.connection_id, work.sync_run_id)
            # A slot just claimed may have no run stored yet: only a finished run's slot is freed.
            if run is not None and run.outcome is not SyncOutcome.RUNNING:
                store.syncs.release_sync_slot(work.connection_id, work.sync_run_id)
                report.sync_slots_freed += 1
    for connection_id, numbers in unmoved.items():
        queue_payments(writeback_queue_url, connection_id, numbers)
        report.orders_requeued += len(numbers)
    for connection in store.connections.connections_in_status(ConnectionStatus.AUTHORIZING):
        if now - connection.updated_at >= AUTHORIZATION_ABANDONED_AFTER:
            expired = {"status": ConnectionStatus.DISCONNECTED, "attention": [ABANDONED_REASON], "updated_at": now}
            try:
                store.connections.save_connection(connection.model_copy(update=expired))
            except ConflictError:
                continue  # the user came back meanwhile: the callback moved it on
            report.connections_expired += 1
    for name, value in report.as_dict().items():
        metrics.add_metric(name=f"Sweep{name[0].upper()}{name[1:]}", unit="Count", value=value)
    logger.info("Sweep finished", extra=report.as_dict())
    return report
