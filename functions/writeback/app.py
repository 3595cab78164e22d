"""Write-back: bills paid through the platform, posted as payments in the accounting software, once.

Events:
- SQS (the write-back queue): the platform's PaymentCompleted events (EventBridge rule on its bus) and
  our own {"connectionId", "paymentOrderNumber"} messages (API submissions, retries, reconnects).
- HTTP API: POST /connections/{id}/payments (202 + status URL), GET .../payments/{paymentOrderNumber},
  POST .../payments/{paymentOrderNumber}/retry.
- Console: {"action": "process_payment", "connectionId": "...", "paymentOrderNumber": "..."} processes now;
           {"action": "show_payment", "connectionId": "...", "paymentOrderNumber": "..."}.
Every outcome is published to the platform's bus as PaymentWriteBackUpdated.
"""

import json
from functools import cache
from typing import Any
from urllib.parse import quote

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field, ValidationError

from payedge_connect.api.http import HttpApi, IdentifierPath
from payedge_connect.api.identity import business_id_of
from payedge_connect.connections.access import owned_connection
from payedge_connect.errors import ConflictError, InvalidInputError, NotFoundError
from payedge_connect.models import PaymentOrder, PaymentOrderStatus
from payedge_connect.observability import logger, metrics, tracer
from payedge_connect.services import Services
from payedge_connect.settings import WritebackSettings, load_settings
from payedge_connect.writeback.events import PAYMENT_COMPLETED, PaymentCompleted, PaymentDetails, publish_rejected_event
from payedge_connect.writeback.queue import PaymentMessage, queue_payment
from payedge_connect.writeback.service import (
    WritebackBusy,
    WritebackRetryLater,
    process_payment,
    retry_payment,
    submit_payment,
)

app = HttpApi()
processor = BatchProcessor(event_type=EventType.SQS)


@cache
def services() -> Services:
    return Services(load_settings(WritebackSettings))


def settings() -> WritebackSettings:
    return load_settings(WritebackSettings)


def caller() -> str:
    return business_id_of(app.current_event, settings().business_id_claim)


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
    business_id = caller()
    owned_connection(services().store, business_id, connection_id)
    order = submit_payment(services(), payment, business_id=business_id, connection_id=connection_id)
    if order.status is PaymentOrderStatus.RECEIVED:
        queue_payment(
            settings().writeback_queue_url,
            PaymentMessage(connection_id=connection_id, payment_order_number=order.payment_order_number),
        )
    return Response(status_code=202, body=_accepted(order), content_type="application/json")


@app.get("/connections/<connection_id>/payments/<payment_order_number>")
def show(connection_id: IdentifierPath, payment_order_number: IdentifierPath) -> PaymentOrderView:
    owned_connection(services().store, caller(), connection_id)
    order = services().store.get_payment_order(connection_id, payment_order_number)
    if order is None:
        raise NotFoundError(f"no payment order {payment_order_number}")
    return _view(order)


@app.post("/connections/<connection_id>/payments/<payment_order_number>/retry", status_code=202)
def retry(connection_id: IdentifierPath, payment_order_number: IdentifierPath) -> Response[PaymentAccepted]:
    """Try a failed or held payment order again (after the cause is fixed: reconnect, re-sync, mapping)."""
    business_id = caller()
    owned_connection(services().store, business_id, connection_id)
    order = retry_payment(
        services(), business_id=business_id, connection_id=connection_id, payment_order_number=payment_order_number
    )
    queue_payment(
        settings().writeback_queue_url,
        PaymentMessage(connection_id=connection_id, payment_order_number=payment_order_number),
    )
    return Response(status_code=202, body=_accepted(order), content_type="application/json")


# ---------------------------------------------------------------------------------------------- worker


def _process(connection_id: str, payment_order_number: str) -> PaymentOrder:
    """Process one order; provider trouble re-queues it with a growing delay instead of blocking the queue."""
    try:
        order = process_payment(
            services(), connection_id, payment_order_number, bus_name=settings().platform_event_bus_name
        )
    except (WritebackBusy, WritebackRetryLater) as error:
        current = services().store.get_payment_order(connection_id, payment_order_number)
        attempts = current.attempts if current else 0
        delay = 5 if isinstance(error, WritebackBusy) else min(900, error.delay_seconds or 30 * 2**attempts)
        logger.info(
            "Payment retried later", extra={"order": payment_order_number, "delay_s": delay, "reason": str(error)}
        )
        queue_payment(
            settings().writeback_queue_url,
            PaymentMessage(connection_id=connection_id, payment_order_number=payment_order_number),
            delay_seconds=delay,
        )
        return current  # type: ignore[return-value]
    if order.status is PaymentOrderStatus.FAILED:
        # Parked where the operator's alarm sees it; the API's retry brings it back.
        queue_payment(
            settings().writeback_dead_letter_queue_url,
            PaymentMessage(connection_id=connection_id, payment_order_number=payment_order_number),
        )
    return order


def payment_worker(record: SQSRecord) -> None:
    body = json.loads(record.body)
    if body.get("detail-type") != PAYMENT_COMPLETED:
        message = PaymentMessage.model_validate(body)
        _process(message.connection_id, message.payment_order_number)
        return
    try:
        event = PaymentCompleted.model_validate(body.get("detail"))
    except ValidationError as error:
        # A malformed event never becomes valid: named back to the platform, nothing posted.
        fields = sorted({".".join(str(part) for part in item["loc"]) for item in error.errors()})
        publish_rejected_event(
            settings().platform_event_bus_name,
            body.get("detail"),
            "invalid_event",
            f"Invalid fields: {', '.join(fields)}",
        )
        return
    try:
        order = submit_payment(
            services(),
            PaymentDetails.model_validate(event.model_dump(exclude={"business_id", "connection_id"})),
            business_id=event.business_id,
            connection_id=event.connection_id,
        )
    except NotFoundError:
        publish_rejected_event(
            settings().platform_event_bus_name,
            body.get("detail"),
            "unknown_connection",
            "The connection does not exist or belongs to another business.",
        )
        return
    except (InvalidInputError, ConflictError) as error:
        # A date outside the window, a number already sent to another connection: never becomes valid.
        code = "invalid_event" if isinstance(error, InvalidInputError) else "duplicate_payment_order_number"
        publish_rejected_event(settings().platform_event_bus_name, body.get("detail"), code, error.detail)
        return
    _process(order.connection_id, order.payment_order_number)


def handle_console(event: dict[str, Any]) -> dict[str, Any]:
    action = event.get("action")
    connection_id, number = str(event.get("connectionId")), str(event.get("paymentOrderNumber"))
    if action == "process_payment":
        return _view(_process(connection_id, number)).model_dump(mode="json", by_alias=True)
    if action == "show_payment":
        order = services().store.get_payment_order(connection_id, number)
        if order is None:
            raise NotFoundError(f"no payment order {number}")
        return _view(order).model_dump(mode="json", by_alias=True)
    raise ValueError(f"unknown action {action!r}; known: process_payment, show_payment")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "requestContext" in event:
        return app.resolve(event, context)
    if event.get("Records"):
        return dict(
            process_partial_response(event=event, record_handler=payment_worker, processor=processor, context=context)
        )
    return handle_console(event)
