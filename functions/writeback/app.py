"""Write-back: bills paid through the platform, posted as payments in the accounting software, once.

Events:
- SQS (the write-back queue): the platform's PaymentCompleted and PaymentReversed events (EventBridge
  rule on its bus) and our own {"connectionId", "paymentOrderNumber"} messages (API submissions,
  reversals, retries, reconnects), up to BatchSize a time: grouped per connection, each group written
  back (or undone) as one payment run.
- HTTP API: POST /connections/{id}/payments (202 + status URL), GET .../payments/{paymentOrderNumber},
  POST .../payments/{paymentOrderNumber}/retry, POST .../payments/{paymentOrderNumber}/reversal.
- EventBridge Scheduler: {"action": "sweep"} (payedge_connect/sweep.py: work that stopped moving, moved on).
- Console: {"action": "process_payment", "connectionId": "...", "paymentOrderNumber": "..."} processes now;
           {"action": "show_payment", "connectionId": "...", "paymentOrderNumber": "..."}.
Every outcome is published to the platform's bus as PaymentWriteBackUpdated.
"""

import json
import math
from collections.abc import Callable
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
from payedge_connect.sweep import sweep
from payedge_connect.writeback.events import (
    PAYMENT_COMPLETED,
    PAYMENT_REVERSED,
    PaymentCompleted,
    PaymentDetails,
    PaymentReversed,
    ReversalDetails,
    publish_rejected_event,
)
from payedge_connect.writeback.queue import PaymentMessage, queue_payment, queue_payments
from payedge_connect.writeback.service import (
    PaymentRun,
    process_payments,
    request_reversal,
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
    order = services().store.payment_orders.get_payment_order(connection_id, payment_order_number)
    if order is None:
        raise NotFoundError(f"no payment order {payment_order_number}")
    return _view(order)


@app.post("/connections/<connection_id>/payments/<payment_order_number>/retry", status_code=202)
def retry(connection_id: IdentifierPath, payment_order_number: IdentifierPath) -> Response[PaymentAccepted]:
    """Try a payment order that is not final again (after the cause is fixed: reconnect, re-sync, mapping)."""
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


@app.post("/connections/<connection_id>/payments/<payment_order_number>/reversal", status_code=202)
def reversal(
    connection_id: IdentifierPath, payment_order_number: IdentifierPath, reversal: ReversalDetails
) -> Response[PaymentAccepted]:
    """The platform reversed a payment (returned, stopped, recalled, cancelled): undone at the provider by
    the worker; before it was posted, it is cancelled. Asking again is safe, and retries one that needs
    attention."""
    business_id = caller()
    owned_connection(services().store, business_id, connection_id)
    order = request_reversal(
        services(),
        reversal,
        business_id=business_id,
        connection_id=connection_id,
        payment_order_number=payment_order_number,
        bus_name=settings().platform_event_bus_name,
    )
    if order.status is PaymentOrderStatus.REVERSING:
        queue_payment(
            settings().writeback_queue_url,
            PaymentMessage(connection_id=connection_id, payment_order_number=payment_order_number),
        )
    return Response(status_code=202, body=_accepted(order), content_type="application/json")


# ---------------------------------------------------------------------------------------------- worker
# An invocation takes up to BatchSize messages (template.yaml): each is read on its own (a bad one fails
# alone), then the payment orders are grouped per connection and each group is one payment run.


def _process(connection_id: str, payment_order_number: str) -> PaymentOrder:
    """Process one order now (the console); provider trouble re-queues it like the queue's runs do."""
    run = _run(connection_id, [payment_order_number], time_left=None)
    order = run.orders.get(payment_order_number) or services().store.payment_orders.get_payment_order(
        connection_id, payment_order_number
    )
    if order is None:
        raise NotFoundError(f"no payment order {payment_order_number}")
    return order


def _run(connection_id: str, numbers: list[str], time_left: Callable[[], float] | None) -> PaymentRun:
    """One payment run; what it could not finish goes back on the queue: busy (another run holds the
    lease) after 5 s, provider trouble after a delay growing with the attempts, orders it had no time for
    at once. Orders that failed for good are parked on the dead-letter queue for the operator's alarm."""
    run = process_payments(
        services(), connection_id, numbers, bus_name=settings().platform_event_bus_name, time_left=time_left
    )
    queue_url = settings().writeback_queue_url
    if run.busy:
        logger.info("Payment run retried later: connection busy", extra={"orders": len(numbers), "delay_s": 5})
        queue_payments(queue_url, connection_id, numbers, delay_seconds=5)
        return run
    by_delay: dict[int, list[str]] = {}
    for number, reason in run.retry_later.items():
        order = run.orders.get(number)
        attempts = max(order.attempts, order.fee_attempts, order.check_attempts) if order else 0
        # The provider's Retry-After where it named one, else a delay growing with the attempts.
        delay = min(900, math.ceil(run.wait_s.get(number) or 30 * 2**attempts))
        logger.info("Payment retried later", extra={"order": number, "delay_s": delay, "reason": reason})
        by_delay.setdefault(delay, []).append(number)
    for delay, delayed in sorted(by_delay.items()):
        queue_payments(queue_url, connection_id, delayed, delay_seconds=delay)
    if run.not_reached:
        queue_payments(queue_url, connection_id, run.not_reached)
    failed = [n for n, order in run.orders.items() if order.status is PaymentOrderStatus.FAILED and n in numbers]
    if failed:
        # Parked where the operator's alarm sees it; the API's retry brings it back.
        queue_payments(settings().writeback_dead_letter_queue_url, connection_id, failed)
    return run


def read_message(record: SQSRecord) -> PaymentMessage | None:
    """A queue message as the payment order it is about: our own message names one; a platform event is
    recorded as one first. A malformed event, or one for a connection of another business, is named back
    to the platform (None: nothing to process)."""
    body = json.loads(record.body)
    if body.get("detail-type") == PAYMENT_REVERSED:
        return read_reversal(body.get("detail"))
    if body.get("detail-type") != PAYMENT_COMPLETED:
        return PaymentMessage.model_validate(body)
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
        return None
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
        return None
    except (InvalidInputError, ConflictError) as error:
        # A date outside the window, a number already sent to another connection: never becomes valid.
        code = "invalid_event" if isinstance(error, InvalidInputError) else "duplicate_payment_order_number"
        publish_rejected_event(settings().platform_event_bus_name, body.get("detail"), code, error.detail)
        return None
    return PaymentMessage(connection_id=order.connection_id, payment_order_number=order.payment_order_number)


def read_reversal(detail: Any) -> PaymentMessage | None:
    """A PaymentReversed event recorded on its payment order; one that is malformed, names no order of
    that business, or an order never posted (rejected) is named back to the platform."""
    bus = settings().platform_event_bus_name
    try:
        event = PaymentReversed.model_validate(detail)
    except ValidationError as error:
        fields = sorted({".".join(str(part) for part in item["loc"]) for item in error.errors()})
        publish_rejected_event(bus, detail, "invalid_event", f"Invalid fields: {', '.join(fields)}")
        return None
    try:
        order = request_reversal(
            services(),
            ReversalDetails.model_validate(event.model_dump(include=set(ReversalDetails.model_fields))),
            business_id=event.business_id,
            connection_id=event.connection_id,
            payment_order_number=event.payment_order_number,
            bus_name=bus,
        )
    except NotFoundError:
        reason = "No payment order of this number was received for this business and connection."
        publish_rejected_event(bus, detail, "unknown_payment_order", reason)
        return None
    except ConflictError as error:
        publish_rejected_event(bus, detail, "nothing_to_reverse", error.detail)
        return None
    if order.status is not PaymentOrderStatus.REVERSING:
        return None  # reversed or cancelled already: a duplicate delivery
    return PaymentMessage(connection_id=order.connection_id, payment_order_number=order.payment_order_number)


def handle_queue(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Read every record (partial failures per record), then one payment run per connection. A run that
    raises fails only its own records, which SQS delivers again."""
    runs: dict[str, dict[str, list[str]]] = {}

    def read(record: SQSRecord) -> None:
        message = read_message(record)
        if message is not None:
            numbers = runs.setdefault(message.connection_id, {})
            numbers.setdefault(message.payment_order_number, []).append(record.message_id)

    response = process_partial_response(event=event, record_handler=read, processor=processor, context=context)
    failures = list(response.get("batchItemFailures", []))
    for connection_id, numbers in runs.items():
        try:
            _run(connection_id, list(numbers), time_left=lambda: context.get_remaining_time_in_millis() / 1000)
        except Exception:
            logger.exception("Payment run failed", extra={"connection_id": connection_id, "orders": len(numbers)})
            failures += [{"itemIdentifier": message_id} for ids in numbers.values() for message_id in ids]
    return {"batchItemFailures": failures}


def handle_console(event: dict[str, Any]) -> dict[str, Any]:
    action = event.get("action")
    connection_id, number = str(event.get("connectionId")), str(event.get("paymentOrderNumber"))
    if action == "process_payment":
        return _view(_process(connection_id, number)).model_dump(mode="json", by_alias=True)
    if action == "show_payment":
        order = services().store.payment_orders.get_payment_order(connection_id, number)
        if order is None:
            raise NotFoundError(f"no payment order {number}")
        return _view(order).model_dump(mode="json", by_alias=True)
    if action == "sweep":
        return {"action": "sweep", **sweep(services(), writeback_queue_url=settings().writeback_queue_url).as_dict()}
    raise ValueError(f"unknown action {action!r}; known: process_payment, show_payment, sweep")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "requestContext" in event:
        return app.resolve(event, context)
    if event.get("Records"):
        return handle_queue(event, context)
    return handle_console(event)
