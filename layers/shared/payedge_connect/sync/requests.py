"""Asking for a sync: one requested-or-running sync per connection, queued on the sync queue.

A second request while a sync is queued or running gets that sync back instead of a duplicate.
Webhook syncs of named bills and vendors are queued beside it: the worker's lease runs them after.
A sync that must pause (the Lambda's time, a busy provider, another sync holding the connection's
lease) is queued again with the delay it names and continues from its checkpoint (`_run_queued`).
"""

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from payedge_connect.connections.access import owned_connection
from payedge_connect.errors import ConflictError
from payedge_connect.models import Connection, ConnectionStatus, Record, SyncOutcome, SyncRun, SyncTrigger
from payedge_connect.observability import logger
from payedge_connect.services import Services
from payedge_connect.sync.documents import DocumentStore

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

# A slot older than this belongs to a sync that died without releasing it.
_SLOT_STALE_AFTER = timedelta(hours=2)
_SQS_BATCH = 10
_MAX_SQS_DELAY_SECONDS = 900

_processor = BatchProcessor(event_type=EventType.SQS)


class SyncMessage(Record):
    """The sync queue's message body."""

    connection_id: str
    sync_run_id: str
    trigger: SyncTrigger
    full: bool = False
    bill_ids: list[str] = Field(default_factory=list)
    vendor_ids: list[str] = Field(default_factory=list)


class QueueError(RuntimeError):
    """Some sync messages could not be queued."""


def new_sync_run(connection_id: str, trigger: SyncTrigger, now: datetime) -> SyncRun:
    return SyncRun(
        # Sortable by start time, unique across Lambdas.
        sync_run_id=f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}",
        connection_id=connection_id,
        trigger=trigger,
        outcome=SyncOutcome.RUNNING,
        started_at=now,
    )


def request_sync(
    services: Services, connection: Connection, trigger: SyncTrigger, *, full: bool = False
) -> tuple[SyncRun, SyncMessage | None]:
    """The connection's sync run for this request, and the message to queue (None: one is already queued)."""
    store = services.store
    run = new_sync_run(connection.connection_id, trigger, services.clock())
    for _ in range(2):
        active_id = store.syncs.claim_sync_slot(
            connection.connection_id, run.sync_run_id, now=services.clock(), stale_after=_SLOT_STALE_AFTER
        )
        if active_id is None:
            store.syncs.put_sync_run(run)
            message = SyncMessage(
                connection_id=connection.connection_id, sync_run_id=run.sync_run_id, trigger=trigger, full=full
            )
            return run, message
        active = store.syncs.get_sync_run(connection.connection_id, active_id)
        if active is not None and active.outcome is SyncOutcome.RUNNING:
            return active, None
        # The slot names a sync that already ended (its release was lost): free it and claim again.
        store.syncs.release_sync_slot(connection.connection_id, active_id)
    raise QueueError(f"could not claim the sync slot of connection {connection.connection_id}")


def start_on_demand_sync(services: Services, *, business_id: str, connection_id: str, queue_url: str) -> SyncRun:
    """Sync now (the API): the sync run queued, or the one already queued or running."""
    connection = owned_connection(services.store, business_id, connection_id)
    if connection.status is not ConnectionStatus.CONNECTED:
        raise ConflictError(f"the connection is {connection.status.value}; only a connected connection syncs")
    run, message = request_sync(services, connection, SyncTrigger.ON_DEMAND)
    if message is not None:
        send_sync_messages(queue_url, [message])
    return run


def sync_now(
    services: Services,
    connection: Connection,
    *,
    full: bool,
    queue_url: str,
    documents: DocumentStore,
    time_left: Callable[[], float],
) -> tuple[SyncRun, bool]:
    """Run a sync in this invocation (the console); one that pauses continues from the queue. Returns the
    run and whether it ran (False: a sync already queued or running was found instead)."""
    run, message = request_sync(services, connection, SyncTrigger.CONSOLE, full=full)
    if message is None:
        return run, False
    return _run_queued(services, run, message, queue_url=queue_url, documents=documents, time_left=time_left), True


def process_batch(
    services: Services,
    event: dict[str, Any],
    context: LambdaContext,
    *,
    queue_url: str,
    documents: DocumentStore,
    time_left: Callable[[], float],
) -> dict[str, Any]:
    """The sync queue's batch: each message's sync run (or continued) on its own; one that raises fails
    only its own message, which SQS delivers again."""

    def continue_sync(record: SQSRecord) -> None:
        message = SyncMessage.model_validate_json(record.body)
        run = services.store.syncs.get_sync_run(message.connection_id, message.sync_run_id)
        if run is None:
            logger.warning("Sync message for an unknown run", extra={"sync_run_id": message.sync_run_id})
            return
        _run_queued(services, run, message, queue_url=queue_url, documents=documents, time_left=time_left)

    return dict(
        process_partial_response(event=event, record_handler=continue_sync, processor=_processor, context=context)
    )


def _run_queued(
    services: Services,
    run: SyncRun,
    message: SyncMessage,
    *,
    queue_url: str,
    documents: DocumentStore,
    time_left: Callable[[], float],
) -> SyncRun:
    """The sync of `message`, and its message queued again after the delay it names if it paused."""
    # The engine is the provider side (connectors, call budget, tokens): loaded with the first sync this
    # process runs, so the function's HTTP reads and webhooks never pay for it.
    from payedge_connect.sync.engine import run_sync  # noqa: PLC0415

    result = run_sync(
        services,
        run,
        documents=documents,
        time_left=time_left,
        full=message.full,
        bill_ids=message.bill_ids,
        vendor_ids=message.vendor_ids,
    )
    if result.continue_after_seconds is not None:
        send_sync_messages(queue_url, [message], delay_seconds=result.continue_after_seconds)
    return result.run


def request_entity_sync(
    services: Services, connection: Connection, *, bill_ids: Sequence[str], vendor_ids: Sequence[str]
) -> SyncMessage:
    run = new_sync_run(connection.connection_id, SyncTrigger.WEBHOOK, services.clock())
    services.store.syncs.put_sync_run(run)
    return SyncMessage(
        connection_id=connection.connection_id,
        sync_run_id=run.sync_run_id,
        trigger=SyncTrigger.WEBHOOK,
        bill_ids=sorted(set(bill_ids)),
        vendor_ids=sorted(set(vendor_ids)),
    )


def send_sync_messages(
    queue_url: str, messages: Sequence[SyncMessage], *, delay_seconds: int = 0, sqs: "SQSClient | None" = None
) -> None:
    """Queue messages ten at a time; raise if any could not be queued (the caller's retry resends them)."""
    sqs = sqs or boto3.client("sqs")
    delay = max(0, min(delay_seconds, _MAX_SQS_DELAY_SECONDS))
    for start in range(0, len(messages), _SQS_BATCH):
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {
                "Id": str(index),
                "MessageBody": json.dumps(message.model_dump(mode="json", by_alias=True)),
                "DelaySeconds": delay,
            }
            for index, message in enumerate(messages[start : start + _SQS_BATCH])
        ]
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if response.get("Failed"):
            raise QueueError(f"{len(response['Failed'])} sync messages were not queued")
