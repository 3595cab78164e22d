"""The schedule's job: one sync message per connected connection, sent in batches of ten."""

import json
from typing import TYPE_CHECKING

import boto3

from payedge_connect.models import ConnectionStatus, SyncTrigger
from payedge_connect.observability import logger
from payedge_connect.storage.records import RecordsStore

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

_SQS_BATCH = 10


class DispatchError(RuntimeError):
    """Some sync messages could not be queued; the schedule's retry policy tries again."""


def dispatch_connected(store: RecordsStore, queue_url: str, *, sqs: "SQSClient | None" = None) -> int:
    """Queue a scheduled sync for every connected connection; returns how many were queued."""
    sqs = sqs or boto3.client("sqs")
    queued = 0
    cursor: str | None = None
    while True:
        page = store.list_connections_in_status(ConnectionStatus.CONNECTED, cursor=cursor)
        for start in range(0, len(page.items), _SQS_BATCH):
            batch = page.items[start : start + _SQS_BATCH]
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {
                    "Id": str(index),
                    "MessageBody": json.dumps(
                        {"connectionId": connection.connection_id, "trigger": SyncTrigger.SCHEDULE.value}
                    ),
                }
                for index, connection in enumerate(batch)
            ]
            response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            if response.get("Failed"):
                raise DispatchError(f"{len(response['Failed'])} sync messages were not queued")
            queued += len(batch)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    logger.info("Dispatched scheduled syncs", extra={"connections": queued})
    return queued
