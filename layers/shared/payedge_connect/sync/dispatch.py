"""The schedule's job: queue a sync of every connection that is due, and only those.

Connections sit in CONNECTION_SHARDS partitions of the status index, sorted by their next due time
(sync/schedule.py sets it when a run ends); each tick reads, in parallel, just the due part of each
shard, most overdue first, and queues each due connection's sync (two writes: its sync slot and its
run). A connection whose sync is still queued or running (its slot is taken) is skipped; its run's
end sets the next due time. A run whose worker died leaves its connection due: the slot goes stale
after two hours and the next tick queues a new run. Dispatch stops early when its invocation runs
short of time: whatever is still due is read first next tick.
"""

import queue
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3

from payedge_connect.models import SyncTrigger
from payedge_connect.observability import logger
from payedge_connect.services import Services
from payedge_connect.storage.connections import CONNECTION_SHARDS
from payedge_connect.sync.requests import SyncMessage, request_sync, send_sync_messages

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

# Shards read at once: DynamoDB and SQS calls are network waits, so threads overlap them.
PARALLEL_SHARDS = 8
_PAGE = 250
# Stop reading new pages with this much of the invocation left (what is due stays due).
_STOP_WITH_SECONDS_LEFT = 60.0
# Each thread's own Services (and so its own boto3 resource: resources and sessions are not
# thread-safe, clients are), kept while the caller's Services lives (a warm Lambda reuses them).
_WORKERS: "weakref.WeakKeyDictionary[Services, queue.SimpleQueue[Services]]" = weakref.WeakKeyDictionary()


@dataclass
class DispatchReport:
    due: int = 0
    queued: int = 0
    already_running: int = 0
    reindexed: int = 0
    stopped_early: bool = False

    def add(self, other: "DispatchReport") -> None:
        self.due += other.due
        self.queued += other.queued
        self.already_running += other.already_running
        self.stopped_early |= other.stopped_early


def dispatch_due(
    services: Services,
    queue_url: str,
    *,
    time_left: Callable[[], float] = lambda: 900.0,
    sqs: "SQSClient | None" = None,
) -> DispatchReport:
    """Queue a scheduled sync for every connected connection due now; returns what it did."""
    now = services.clock()
    report = DispatchReport()
    while time_left() > _STOP_WITH_SECONDS_LEFT:
        moved = services.store.connections.reindex_legacy_connections(limit=1000)
        report.reindexed += moved
        if moved == 0:
            break
    sqs = sqs or boto3.client("sqs")
    idle = _workers(services)

    def shard_task(shard: int) -> DispatchReport:
        worker = idle.get()
        try:
            return _dispatch_shard(worker, shard, now, queue_url=queue_url, sqs=sqs, time_left=time_left)
        finally:
            idle.put(worker)

    with ThreadPoolExecutor(max_workers=PARALLEL_SHARDS) as pool:
        for shard_report in pool.map(shard_task, range(CONNECTION_SHARDS)):
            report.add(shard_report)
    logger.info("Dispatched scheduled syncs", extra=report.__dict__)
    return report


def _workers(services: Services) -> "queue.SimpleQueue[Services]":
    idle = _WORKERS.get(services)
    if idle is None:
        idle = queue.SimpleQueue()
        for _ in range(PARALLEL_SHARDS):
            worker = Services(services.settings, clock=services.clock)
            _ = worker.store.table  # built here, in the calling thread
            idle.put(worker)
        _WORKERS[services] = idle
    return idle


def _dispatch_shard(
    services: Services,
    shard: int,
    now: datetime,
    *,
    queue_url: str,
    sqs: "SQSClient",
    time_left: Callable[[], float],
) -> DispatchReport:
    store = services.store
    report = DispatchReport()
    cursor: dict[str, Any] | None = None
    while True:
        if time_left() < _STOP_WITH_SECONDS_LEFT:
            report.stopped_early = True
            return report
        due, cursor = store.connections.due_connections(shard, now, limit=_PAGE, cursor=cursor)
        report.due += len(due)
        messages: list[SyncMessage] = []
        for connection in due:
            _, message = request_sync(services, connection, SyncTrigger.SCHEDULE)
            if message is None:
                report.already_running += 1
            else:
                messages.append(message)
        send_sync_messages(queue_url, messages, sqs=sqs)
        report.queued += len(messages)
        if cursor is None:
            return report
