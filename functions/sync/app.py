"""Sync: unpaid bills and their vendors, on schedule, on demand and on provider webhooks.

Events:
- EventBridge Scheduler: {"action": "dispatch"}
  -> one sync message per connected connection on the sync queue.
- SQS (the sync queue): the sync worker; a sync that must pause (Lambda time limit, provider busy)
  is re-queued with a delay and continues from its checkpoint (payedge_connect/sync/requests.py).
- HTTP API: read APIs for payables, vendors, documents and sync runs; POST .../sync; webhooks.
- Console: {"action": "sync", "connectionId": "...", "full": false} runs a sync now, in this invocation.
"""

from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from payedge_connect.api.http import IdentifierPath
from payedge_connect.api.problems import problem_response
from payedge_connect.api.requests import MAX_WEBHOOK_BYTES, body_bytes
from payedge_connect.errors import NotFoundError
from payedge_connect.function import Function, time_left
from payedge_connect.models import Payable, PayableStatus, Provider, Record, SyncRun, Vendor
from payedge_connect.settings import SyncSettings
from payedge_connect.sync.dispatch import dispatch_due
from payedge_connect.sync.documents import PRESIGNED_URL_SECONDS, DocumentStore
from payedge_connect.sync.requests import process_batch, start_on_demand_sync, sync_now
from payedge_connect.sync.webhooks import InvalidSignature, accept_webhook

function = Function(SyncSettings)
app = function.app


@cache
def documents() -> DocumentStore:
    return DocumentStore(function.settings().documents_bucket_name, function.services().store)


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
    run = start_on_demand_sync(
        function.services(),
        business_id=function.caller(),
        connection_id=connection_id,
        queue_url=function.settings().sync_queue_url,
    )
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
    function.owned_connection(connection_id)
    page = function.services().store.syncs.list_sync_runs(connection_id, limit=limit, cursor=cursor)
    return SyncRunList(sync_runs=[_view(run) for run in page.items], next_cursor=page.next_cursor)


@app.get("/connections/<connection_id>/sync-runs/<sync_run_id>")
def show_sync_run(connection_id: IdentifierPath, sync_run_id: IdentifierPath) -> SyncRunView:
    function.owned_connection(connection_id)
    run = function.services().store.syncs.get_sync_run(connection_id, sync_run_id)
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
    function.owned_connection(connection_id)
    page = function.services().store.payables.list_payables(connection_id, status=status, limit=limit, cursor=cursor)
    return PayableList(payables=page.items, next_cursor=page.next_cursor)


@app.get("/connections/<connection_id>/payables/<bill_id>")
def show_payable(connection_id: IdentifierPath, bill_id: IdentifierPath) -> Payable:
    function.owned_connection(connection_id)
    payable = function.services().store.payables.get_payable(connection_id, bill_id)
    if payable is None:
        raise NotFoundError(f"no payable {bill_id}")
    return payable


@app.get("/connections/<connection_id>/payables/<bill_id>/document")
def payable_document(connection_id: IdentifierPath, bill_id: IdentifierPath) -> DocumentLink:
    """A short-lived link to the invoice document (fetched from the provider on first request)."""
    connection = function.owned_connection(connection_id)
    payable = function.services().store.payables.get_payable(connection_id, bill_id)
    if payable is None or payable.document is None:
        raise NotFoundError(f"bill {bill_id} has no invoice document")
    if payable.document.object_key is None:
        connector = function.services().connector(connection.provider)
        payable = documents().fetch_into_bucket(connector, function.services().api(connection), payable)
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
    function.owned_connection(connection_id)
    page = function.services().store.payables.list_vendors(
        connection_id, attention_required=attention_required, limit=limit, cursor=cursor
    )
    return VendorList(vendors=page.items, next_cursor=page.next_cursor)


@app.post("/connections/<connection_id>/vendors/<vendor_id>/acknowledgement")
def acknowledge_vendor(connection_id: IdentifierPath, vendor_id: IdentifierPath) -> Vendor:
    """The platform has seen the vendor's details: it leaves the attention tab until they change."""
    function.owned_connection(connection_id)
    vendor = function.services().store.payables.get_vendors(connection_id, [vendor_id]).get(vendor_id)
    if vendor is None:
        raise NotFoundError(f"no vendor {vendor_id}")
    acknowledged = vendor.model_copy(update={"attention_required": False})
    function.services().store.payables.put_vendors([acknowledged], previous={vendor_id: vendor})
    return acknowledged


# ---------------------------------------------------------------------------------------------- webhooks


def _webhook(provider: Provider, signature_header: str) -> Response[str]:
    event = app.current_event
    # The gateway's resolver refused an oversized body already; the signature is over these exact bytes.
    raw = body_bytes(event.raw_event, MAX_WEBHOOK_BYTES)
    signature = event.headers.get(signature_header)
    try:
        accept_webhook(function.services(), provider, raw, signature, queue_url=function.settings().sync_queue_url)
    except InvalidSignature:
        return problem_response(401, "Unauthorized", "signature does not match")
    # Xero wants an empty 200 body.
    return Response(status_code=200, body="", content_type="text/plain")


@app.post("/webhooks/quickbooks")
def quickbooks_webhook() -> Response[str]:
    return _webhook(Provider.QUICKBOOKS, "intuit-signature")


@app.post("/webhooks/xero")
def xero_webhook() -> Response[str]:
    return _webhook(Provider.XERO, "x-xero-signature")


# ---------------------------------------------------------------------------------------------- worker


def handle_queue(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The sync worker: each message runs (or continues) one sync; a paused sync is queued again."""
    return process_batch(
        function.services(),
        event,
        context,
        queue_url=function.settings().sync_queue_url,
        documents=documents(),
        time_left=time_left(context),
    )


def handle_action(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action")
    if action == "dispatch":
        report = dispatch_due(function.services(), function.settings().sync_queue_url, time_left=time_left(context))
        return {
            "action": "dispatch",
            "queued": report.queued,
            "due": report.due,
            "alreadyRunning": report.already_running,
            "reindexed": report.reindexed,
            "stoppedEarly": report.stopped_early,
        }
    if action == "sync":
        connection = function.services().store.connections.get_connection(str(event.get("connectionId")))
        if connection is None:
            raise NotFoundError(f"no connection {event.get('connectionId')}")
        run, ran = sync_now(
            function.services(),
            connection,
            full=bool(event.get("full")),
            queue_url=function.settings().sync_queue_url,
            documents=documents(),
            time_left=time_left(context),
        )
        view = _view(run).model_dump(mode="json", by_alias=True)
        return {"action": "sync", "syncRun": view} if ran else {"action": "sync", "alreadyRunning": view}
    raise ValueError(f"unknown action {action!r}; known: dispatch, sync")


lambda_handler = function.handler(console=handle_action, queue=handle_queue)
