"""Write-back: bills paid through the platform, posted as payments in the accounting software, once.

Events:
- SQS (the write-back queue): the platform's PaymentCompleted and PaymentReversed events (EventBridge
  rule on its bus) and our own {"connectionId", "paymentOrderNumber"} messages (API submissions,
  reversals, retries, reconnects), up to BatchSize a time: grouped per connection, each group written
  back (or undone) as one payment run; what a run could not finish is queued again
  (payedge_connect/writeback/worker.py; the re-queue policy: writeback/queue.py).
- HTTP API: POST /connections/{id}/payments (202 + status URL), GET .../payments/{paymentOrderNumber},
  POST .../payments/{paymentOrderNumber}/retry, POST .../payments/{paymentOrderNumber}/reversal.
- EventBridge Scheduler: {"action": "sweep"} (payedge_connect/sweep.py: work that stopped moving, moved on).
- Console: {"action": "process_payment", "connectionId": "...", "paymentOrderNumber": "..."} processes now;
           {"action": "show_payment", "connectionId": "...", "paymentOrderNumber": "..."}.
Every outcome is published to the platform's bus as PaymentWriteBackUpdated.
"""

from typing import Any
from urllib.parse import quote

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from payedge_connect.api.http import IdentifierPath
from payedge_connect.errors import NotFoundError
from payedge_connect.function import Function, time_left
from payedge_connect.models import PaymentOrder
from payedge_connect.settings import WritebackSettings
from payedge_connect.sweep import sweep
from payedge_connect.writeback.events import PaymentDetails, ReversalDetails
from payedge_connect.writeback.worker import accept_payment, accept_retry, accept_reversal, process_batch, process_now

function = Function(WritebackSettings)
app = function.app


class PaymentOrderView(PaymentOrder):
    """A payment order as the API shows it (without the record's version)."""

    version: int = Field(default=0, exclude=True)


class PaymentAccepted(PaymentOrderView):
    status_url: str


def _view(order: PaymentOrder) -> PaymentOrderView:
    return PaymentOrderView.model_validate(order.model_dump())


def _accepted(order: PaymentOrder) -> PaymentAccepted:
    # Identifiers never need encoding (models.IDENTIFIER_PATTERN); quote() keeps the URL safe regardless.
    status_url = (
        f"/connections/{quote(order.connection_id, safe='')}/payments/{quote(order.payment_order_number, safe='')}"
    )
    return PaymentAccepted.model_validate({**order.model_dump(), "status_url": status_url})


# ---------------------------------------------------------------------------------------------- HTTP


@app.post("/connections/<connection_id>/payments", status_code=202)
def submit(connection_id: IdentifierPath, payment: PaymentDetails) -> Response[PaymentAccepted]:
    """The web app reports a bill paid through the platform: recorded now, posted by the worker."""
    order = accept_payment(
        function.services(),
        payment,
        business_id=function.caller(),
        connection_id=connection_id,
        queue_url=function.settings().writeback_queue_url,
    )
    return Response(status_code=202, body=_accepted(order), content_type="application/json")


@app.get("/connections/<connection_id>/payments/<payment_order_number>")
def show(connection_id: IdentifierPath, payment_order_number: IdentifierPath) -> PaymentOrderView:
    function.owned_connection(connection_id)
    order = function.services().store.payment_orders.get_payment_order(connection_id, payment_order_number)
    if order is None:
        raise NotFoundError(f"no payment order {payment_order_number}")
    return _view(order)


@app.post("/connections/<connection_id>/payments/<payment_order_number>/retry", status_code=202)
def retry(connection_id: IdentifierPath, payment_order_number: IdentifierPath) -> Response[PaymentAccepted]:
    """Try a payment order that is not final again (after the cause is fixed: reconnect, re-sync, mapping)."""
    order = accept_retry(
        function.services(),
        business_id=function.caller(),
        connection_id=connection_id,
        payment_order_number=payment_order_number,
        queue_url=function.settings().writeback_queue_url,
    )
    return Response(status_code=202, body=_accepted(order), content_type="application/json")


@app.post("/connections/<connection_id>/payments/<payment_order_number>/reversal", status_code=202)
def reversal(
    connection_id: IdentifierPath, payment_order_number: IdentifierPath, reversal: ReversalDetails
) -> Response[PaymentAccepted]:
    """The platform reversed a payment (returned, stopped, recalled, cancelled): undone at the provider by
    the worker; before it was posted, it is cancelled. Asking again is safe, and retries one that needs
    attention."""
    order = accept_reversal(
        function.services(),
        reversal,
        business_id=function.caller(),
        connection_id=connection_id,
        payment_order_number=payment_order_number,
        settings=function.settings(),
    )
    return Response(status_code=202, body=_accepted(order), content_type="application/json")


# ---------------------------------------------------------------------------------------------- worker and console


def handle_queue(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_batch(function.services(), function.settings(), event, context, time_left=time_left(context))


def handle_console(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action")
    connection_id, number = str(event.get("connectionId")), str(event.get("paymentOrderNumber"))
    if action == "process_payment":
        processed = process_now(function.services(), function.settings(), connection_id, number)
        return _view(processed).model_dump(mode="json", by_alias=True)
    if action == "show_payment":
        order = function.services().store.payment_orders.get_payment_order(connection_id, number)
        if order is None:
            raise NotFoundError(f"no payment order {number}")
        return _view(order).model_dump(mode="json", by_alias=True)
    if action == "sweep":
        report = sweep(function.services(), writeback_queue_url=function.settings().writeback_queue_url)
        return {"action": "sweep", **report.as_dict()}
    raise ValueError(f"unknown action {action!r}; known: process_payment, show_payment, sweep")


lambda_handler = function.handler(console=handle_console, queue=handle_queue)
