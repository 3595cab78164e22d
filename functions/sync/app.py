"""Sync: unpaid bills and their vendors, on schedule, on demand and on provider webhooks.

Events:
- EventBridge Scheduler: {"action": "dispatch"}
  -> one sync message per connected connection on the sync queue.
- SQS (the sync queue): the sync worker; a sync that must pause (Lambda time limit, provider busy)
  is re-queued with a delay and continues from its checkpoint.
- HTTP API: read APIs for payables, vendors, documents and sync runs; POST .../sync; webhooks.
- Console: {"action": "sync", "connectionId": "...", "full": false} runs a sync now, in this invocation.
"""

from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from payedge_connect.api.http import HttpApi, IdentifierPath
from payedge_connect.api.identity import business_id_of
from payedge_connect.api.problems import problem_response
from payedge_connect.api.requests import MAX_WEBHOOK_BYTES, body_bytes
from payedge_connect.connections.access import owned_connection
from payedge_connect.errors import ConflictError, NotFoundError
from payedge_connect.models import (
    ConnectionStatus,
    Payable,
    PayableStatus,
    Provider,
    Record,
    SyncRun,
    SyncTrigger,
    Vendor,
)
from payedge_connect.observability import logger, metrics, tracer
from payedge_connect.services import Services
from payedge_connect.settings import SyncSettings, load_settings
from payedge_connect.sync.dispatch import dispatch_due
from payedge_connect.sync.documents import PRESIGNED_URL_SECONDS, DocumentStore
from payedge_connect.sync.engine import run_sync
from payedge_connect.sync.requests import SyncMessage, request_sync, send_sync_messages
from payedge_connect.sync.webhooks import InvalidSignature, handle_webhook

app = HttpApi()
processor = BatchProcessor(event_type=EventType.SQS)


@cache
def services() -> Services:
    return Services(load_settings(SyncSettings))


@cache
def documents() -> DocumentStore:
    return DocumentStore(load_settings(SyncSettings).documents_bucket_name, services().store)


def caller() -> str:
    return business_id_of(app.current_event, services().settings.business_id_claim)


class PayableList(Record):
    payables: list[Payable]
    next_cursor: str | None = None


class VendorList(Record):
    vendors: list[Vendor]
    next_cursor: str | None = None


class SyncRunView(SyncRun):
    """A sync run as the API shows it (without the internal checkpoint)."""

    checkpoint: None = Field(default=None, exclude=True)


class SyncRunList(Record):
    sync_runs: list[SyncRunView]
    next_cursor: str | None = None


class SyncStarted(SyncRunView):
    status_url: str


class DocumentLink(Record):
    url: str
    file_name: str
    content_type: str
    expires_in_seconds: int


def _view(run: SyncRun) -> SyncRunView:
    return SyncRunView.model_validate(run.model_dump(exclude={"checkpoint"}))


# ---------------------------------------------------------------------------------------------- syncs


@app.post("/connections/<connection_id>/sync", status_code=202)
def start_sync(connection_id: IdentifierPath) -> Response[SyncStarted]:
    """Sync now: 202 with the sync run; a sync already queued or running is returned instead of a new one."""
    connection = owned_connection(services().store, caller(), connection_id)
    if connection.status is not ConnectionStatus.CONNECTED:
        raise ConflictError(f"the connection is {connection.status.value}; only a connected connection syncs")
    run, message = request_sync(services(), connection, SyncTrigger.ON_DEMAND)
    if message is not None:
        send_sync_messages(load_settings(SyncSettings).sync_queue_url, [message])
    body = SyncStarted.model_validate(
        {**_view(run).model_dump(), "status_url": f"/connections/{connection_id}/sync-runs/{run.sync_run_id}"}
    )
    return Response(status_code=202, body=body, content_type="application/json")


@app.get("/connections/<connection_id>/sync-runs")
def list_sync_runs(
    connection_id: IdentifierPath,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query()] = None,
) -> SyncRunList:
    owned_connection(services().store, caller(), connection_id)
    page = services().store.syncs.list_sync_runs(connection_id, limit=limit, cursor=cursor)
    return SyncRunList(sync_runs=[_view(run) for run in page.items], next_cursor=page.next_cursor)


@app.get("/connections/<connection_id>/sync-runs/<sync_run_id>")
def show_sync_run(connection_id: IdentifierPath, sync_run_id: IdentifierPath) -> SyncRunView:
    owned_connection(services().store, caller(), connection_id)
    run = services().store.syncs.get_sync_run(connection_id, sync_run_id)
    if run is None:
        raise NotFoundError(f"no sync run {sync_run_id}")
    return _view(run)


# ---------------------------------------------------------------------------------------------- read APIs


@app.get("/connections/<connection_id>/payables")
def list_payables(
    connection_id: IdentifierPath,
    status: Annotated[PayableStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query()] = None,
) -> PayableList:
    """Unpaid payables (status open or part_paid; closed ones on request), by due date within a status."""
    owned_connection(services().store, caller(), connection_id)
    page = services().store.payables.list_payables(connection_id, status=status, limit=limit, cursor=cursor)
    return PayableList(payables=page.items, next_cursor=page.next_cursor)


@app.get("/connections/<connection_id>/payables/<bill_id>")
def show_payable(connection_id: IdentifierPath, bill_id: IdentifierPath) -> Payable:
    owned_connection(services().store, caller(), connection_id)
    payable = services().store.payables.get_payable(connection_id, bill_id)
    if payable is None:
        raise NotFoundError(f"no payable {bill_id}")
    return payable


@app.get("/connections/<connection_id>/payables/<bill_id>/document")
def payable_document(connection_id: IdentifierPath, bill_id: IdentifierPath) -> DocumentLink:
    """A short-lived link to the invoice document (fetched from the provider on first request)."""
    connection = owned_connection(services().store, caller(), connection_id)
    payable = services().store.payables.get_payable(connection_id, bill_id)
    if payable is None or payable.document is None:
        raise NotFoundError(f"bill {bill_id} has no invoice document")
    if payable.document.object_key is None:
        connector = services().connector(connection.provider)
        payable = documents().fetch_into_bucket(connector, services().api(connection), payable)
    assert payable.document is not None
    return DocumentLink(
        url=documents().presigned_url(payable),
        file_name=payable.document.file_name,
        content_type=payable.document.content_type,
        expires_in_seconds=PRESIGNED_URL_SECONDS,
    )


@app.get("/connections/<connection_id>/vendors")
def list_vendors(
    connection_id: IdentifierPath,
    attention_required: Annotated[bool | None, Query(alias="attentionRequired")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query()] = None,
) -> VendorList:
    """Vendors that unpaid bills are owed to; attentionRequired=true gives the "Attention required" tab."""
    owned_connection(services().store, caller(), connection_id)
    page = services().store.payables.list_vendors(
        connection_id, attention_required=attention_required, limit=limit, cursor=cursor
    )
    return VendorList(vendors=page.items, next_cursor=page.next_cursor)


@app.post("/connections/<connection_id>/vendors/<vendor_id>/acknowledgement")
def acknowledge_vendor(connection_id: IdentifierPath, vendor_id: IdentifierPath) -> Vendor:
    """The platform has seen the vendor's details: it leaves the attention tab until they change."""
    owned_connection(services().store, caller(), connection_id)
    vendor = services().store.payables.get_vendors(connection_id, [vendor_id]).get(vendor_id)
    if vendor is None:
        raise NotFoundError(f"no vendor {vendor_id}")
    acknowledged = vendor.model_copy(update={"attention_required": False})
    services().store.payables.put_vendors([acknowledged], previous={vendor_id: vendor})
    return acknowledged


# ---------------------------------------------------------------------------------------------- webhooks


def _webhook(provider: Provider, signature_header: str) -> Response[str]:
    event = app.current_event
    # The gateway's resolver refused an oversized body already; the signature is over these exact bytes.
    raw = body_bytes(event.raw_event, MAX_WEBHOOK_BYTES)
    try:
        outcome = handle_webhook(services(), provider, raw, event.headers.get(signature_header))
    except InvalidSignature:
        return problem_response(401, "Unauthorized", "signature does not match")
    try:
        send_sync_messages(load_settings(SyncSettings).sync_queue_url, outcome.messages)
    except Exception:
        # Nothing queued: forget the events so the provider's retry of this delivery is not taken for a replay.
        services().store.syncs.release_webhook_events(provider, outcome.claimed)
        raise
    logger.info(
        "Webhook accepted",
        extra={
            "provider": provider.value,
            "events": outcome.events,
            "replays": outcome.replays,
            "ignored": outcome.ignored[:10],
            "syncs_queued": len(outcome.messages),
        },
    )
    if outcome.ignored:
        metrics.add_metric(name="WebhookPartsIgnored", unit="Count", value=len(outcome.ignored))
    if outcome.replays:
        metrics.add_metric(name="WebhookReplaysIgnored", unit="Count", value=outcome.replays)
    # Xero wants an empty 200 body.
    return Response(status_code=200, body="", content_type="text/plain")


@app.post("/webhooks/quickbooks")
def quickbooks_webhook() -> Response[str]:
    return _webhook(Provider.QUICKBOOKS, "intuit-signature")


@app.post("/webhooks/xero")
def xero_webhook() -> Response[str]:
    return _webhook(Provider.XERO, "x-xero-signature")


# ---------------------------------------------------------------------------------------------- worker


def sync_worker(record: SQSRecord, context: LambdaContext) -> None:
    """Run (or continue) one sync; a paused sync is re-queued with a delay, never lost."""
    message = SyncMessage.model_validate_json(record.body)
    run = services().store.syncs.get_sync_run(message.connection_id, message.sync_run_id)
    if run is None:
        logger.warning("Sync message for an unknown run", extra={"sync_run_id": message.sync_run_id})
        return
    result = run_sync(
        services(),
        run,
        documents=documents(),
        time_left=lambda: context.get_remaining_time_in_millis() / 1000,
        full=message.full,
        bill_ids=message.bill_ids,
        vendor_ids=message.vendor_ids,
    )
    if result.continue_after_seconds is not None:
        send_sync_messages(
            load_settings(SyncSettings).sync_queue_url, [message], delay_seconds=result.continue_after_seconds
        )


def handle_action(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action")
    if action == "dispatch":
        report = dispatch_due(
            services(),
            load_settings(SyncSettings).sync_queue_url,
            time_left=lambda: context.get_remaining_time_in_millis() / 1000,
        )
        return {
            "action": "dispatch",
            "queued": report.queued,
            "due": report.due,
            "alreadyRunning": report.already_running,
            "reindexed": report.reindexed,
            "stoppedEarly": report.stopped_early,
        }
    if action == "sync":
        connection = services().store.connections.get_connection(str(event.get("connectionId")))
        if connection is None:
            raise NotFoundError(f"no connection {event.get('connectionId')}")
        run, message = request_sync(services(), connection, SyncTrigger.CONSOLE, full=bool(event.get("full")))
        if message is None:
            return {"action": "sync", "alreadyRunning": _view(run).model_dump(mode="json", by_alias=True)}
        result = run_sync(
            services(),
            run,
            documents=documents(),
            time_left=lambda: context.get_remaining_time_in_millis() / 1000,
            full=message.full,
        )
        if result.continue_after_seconds is not None:
            send_sync_messages(
                load_settings(SyncSettings).sync_queue_url, [message], delay_seconds=result.continue_after_seconds
            )
        return {"action": "sync", "syncRun": _view(result.run).model_dump(mode="json", by_alias=True)}
    raise ValueError(f"unknown action {action!r}; known: dispatch, sync")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "requestContext" in event:
        return app.resolve(event, context)
    if event.get("Records"):
        return dict(
            process_partial_response(
                event=event,
                record_handler=lambda record: sync_worker(record, context),
                processor=processor,
                context=context,
            )
        )
    return handle_action(event, context)
