"""The write-back's work with its queue: the API's submissions, retries and reversals recorded, then
queued; a batch taken off the queue, up to BatchSize messages an invocation (template.yaml), each read on
its own (a bad one fails alone) as the payment order it is about, then one payment run per connection,
whose unfinished orders go back by the re-queue policy (queue.py `requeue`).
"""

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from payedge_connect.connections.access import owned_connection
from payedge_connect.errors import ConflictError, InvalidInputError, NotFoundError
from payedge_connect.models import PaymentOrder, PaymentOrderStatus
from payedge_connect.observability import logger
from payedge_connect.services import Services
from payedge_connect.settings import WritebackSettings
from payedge_connect.writeback.events import (
    PAYMENT_COMPLETED,
    PAYMENT_REVERSED,
    PaymentCompleted,
    PaymentDetails,
    PaymentReversed,
    ReversalDetails,
    publish_rejected_event,
)
from payedge_connect.writeback.orders import request_reversal, retry_payment, submit_payment
from payedge_connect.writeback.queue import PaymentMessage, queue_payment, requeue

if TYPE_CHECKING:
    from payedge_connect.writeback.service import PaymentRun

_processor = BatchProcessor(event_type=EventType.SQS)


# ---------------------------------------------------------------------------------------------- onto the queue


def accept_payment(
    services: Services, details: PaymentDetails, *, business_id: str, connection_id: str, queue_url: str
) -> PaymentOrder:
    """The API's submission: recorded now, queued for the worker unless it was received before."""
    owned_connection(services.store, business_id, connection_id)
    order = submit_payment(services, details, business_id=business_id, connection_id=connection_id)
    if order.status is PaymentOrderStatus.RECEIVED:
        queue_payment(
            queue_url, PaymentMessage(connection_id=connection_id, payment_order_number=order.payment_order_number)
        )
    return order


def accept_retry(
    services: Services, *, business_id: str, connection_id: str, payment_order_number: str, queue_url: str
) -> PaymentOrder:
    """The API's retry of an order that is not final: made eligible again and queued."""
    owned_connection(services.store, business_id, connection_id)
    order = retry_payment(
        services, business_id=business_id, connection_id=connection_id, payment_order_number=payment_order_number
    )
    queue_payment(queue_url, PaymentMessage(connection_id=connection_id, payment_order_number=payment_order_number))
    return order


def accept_reversal(
    services: Services,
    reversal: ReversalDetails,
    *,
    business_id: str,
    connection_id: str,
    payment_order_number: str,
    settings: WritebackSettings,
) -> PaymentOrder:
    """The API's reversal: recorded, and queued while there is something to undo at the provider."""
    owned_connection(services.store, business_id, connection_id)
    order = request_reversal(
        services,
        reversal,
        business_id=business_id,
        connection_id=connection_id,
        payment_order_number=payment_order_number,
        bus_name=settings.platform_event_bus_name,
    )
    if order.status is PaymentOrderStatus.REVERSING:
        queue_payment(
            settings.writeback_queue_url,
            PaymentMessage(connection_id=connection_id, payment_order_number=payment_order_number),
        )
    return order


# ---------------------------------------------------------------------------------------------- off the queue


def process_batch(
    services: Services,
    settings: WritebackSettings,
    event: dict[str, Any],
    context: LambdaContext,
    *,
    time_left: Callable[[], float],
) -> dict[str, Any]:
    """Read every record (partial failures per record), then one payment run per connection. A run that
    raises fails only its own records, which SQS delivers again."""
    runs: dict[str, dict[str, list[str]]] = {}

    def read(record: SQSRecord) -> None:
        message = read_message(services, settings, record)
        if message is not None:
            numbers = runs.setdefault(message.connection_id, {})
            numbers.setdefault(message.payment_order_number, []).append(record.message_id)

    response = process_partial_response(event=event, record_handler=read, processor=_processor, context=context)
    failures = list(response.get("batchItemFailures", []))
    for connection_id, numbers in runs.items():
        try:
            run_payments(services, settings, connection_id, list(numbers), time_left=time_left)
        except Exception:
            logger.exception("Payment run failed", extra={"connection_id": connection_id, "orders": len(numbers)})
            failures += [{"itemIdentifier": message_id} for ids in numbers.values() for message_id in ids]
    return {"batchItemFailures": failures}


def process_now(
    services: Services, settings: WritebackSettings, connection_id: str, payment_order_number: str
) -> PaymentOrder:
    """Process one order now (the console); provider trouble re-queues it like the queue's runs do."""
    run = run_payments(services, settings, connection_id, [payment_order_number], time_left=None)
    order = run.orders.get(payment_order_number) or services.store.payment_orders.get_payment_order(
        connection_id, payment_order_number
    )
    if order is None:
        raise NotFoundError(f"no payment order {payment_order_number}")
    return order


def read_message(services: Services, settings: WritebackSettings, record: SQSRecord) -> PaymentMessage | None:
    """A queue message as the payment order it is about: our own message names one; a platform event is
    recorded as one first. A malformed event, or one for a connection of another business, is named back
    to the platform (None: nothing to process)."""
    body = json.loads(record.body)
    if body.get("detail-type") == PAYMENT_REVERSED:
        return read_reversal(services, settings, body.get("detail"))
    if body.get("detail-type") != PAYMENT_COMPLETED:
        return PaymentMessage.model_validate(body)
    bus = settings.platform_event_bus_name
    try:
        event = PaymentCompleted.model_validate(body.get("detail"))
    except ValidationError as error:
        # A malformed event never becomes valid: named back to the platform, nothing posted.
        publish_rejected_event(bus, body.get("detail"), "invalid_event", _invalid_fields(error))
        return None
    try:
        order = submit_payment(
            services,
            PaymentDetails.model_validate(event.model_dump(exclude={"business_id", "connection_id"})),
            business_id=event.business_id,
            connection_id=event.connection_id,
        )
    except NotFoundError:
        reason = "The connection does not exist or belongs to another business."
        publish_rejected_event(bus, body.get("detail"), "unknown_connection", reason)
        return None
    except (InvalidInputError, ConflictError) as error:
        # A date outside the window, a number already sent to another connection: never becomes valid.
        code = "invalid_event" if isinstance(error, InvalidInputError) else "duplicate_payment_order_number"
        publish_rejected_event(bus, body.get("detail"), code, error.detail)
        return None
    return PaymentMessage(connection_id=order.connection_id, payment_order_number=order.payment_order_number)


def read_reversal(services: Services, settings: WritebackSettings, detail: Any) -> PaymentMessage | None:
    """A PaymentReversed event recorded on its payment order; one that is malformed, names no order of
    that business, or an order never posted (rejected) is named back to the platform."""
    bus = settings.platform_event_bus_name
    try:
        event = PaymentReversed.model_validate(detail)
    except ValidationError as error:
        publish_rejected_event(bus, detail, "invalid_event", _invalid_fields(error))
        return None
    try:
        order = request_reversal(
            services,
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


def _invalid_fields(error: ValidationError) -> str:
    fields = sorted({".".join(str(part) for part in item["loc"]) for item in error.errors()})
    return f"Invalid fields: {', '.join(fields)}"


def run_payments(
    services: Services,
    settings: WritebackSettings,
    connection_id: str,
    numbers: list[str],
    *,
    time_left: Callable[[], float] | None,
) -> "PaymentRun":
    """One payment run (service.process_payments), then what it could not finish queued again."""
    # The payment run is the provider side (connectors, call budget, tokens): loaded with the first run
    # this process makes, so the API's submissions, retries and reads never pay for it.
    from payedge_connect.writeback.service import process_payments  # noqa: PLC0415

    run = process_payments(
        services, connection_id, numbers, bus_name=settings.platform_event_bus_name, time_left=time_left
    )
    requeue(run, connection_id, numbers, settings=settings)
    return run
