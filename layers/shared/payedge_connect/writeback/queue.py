"""The write-back queue: what goes on it, what comes off it, and what goes back on it.

On it: the platform's PaymentCompleted and PaymentReversed events (an EventBridge rule), and our own
messages ({"connectionId", "paymentOrderNumber"}) for the API's submissions, retries and reversals,
payments resumed after a reconnect, and delayed retries after provider trouble.
Off it: up to BatchSize messages an invocation (template.yaml), each read on its own (a bad one fails
alone) as the payment order it is about, then one payment run per connection (`process_batch`).
Back on it, the re-queue policy (`requeue`): what a run could not finish; a payment order that failed
for good is copied to the dead-letter queue, whose alarm tells the operator.
"""

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from payedge_connect.connections.access import owned_connection
from payedge_connect.errors import ConflictError, InvalidInputError, NotFoundError
from payedge_connect.models import ConnectionStatus, PaymentOrder, PaymentOrderStatus, Record
from payedge_connect.observability import logger
from payedge_connect.services import Services
from payedge_connect.settings import WritebackSettings
from payedge_connect.storage import RecordsStore
from payedge_connect.writeback.events import (
    PAYMENT_COMPLETED,
    PAYMENT_REVERSED,
    PaymentCompleted,
    PaymentDetails,
    PaymentReversed,
    ReversalDetails,
    publish_rejected_event,
)
from payedge_connect.writeback.service import (
    PaymentRun,
    process_payments,
    request_reversal,
    retry_payment,
    submit_payment,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

_MAX_SQS_DELAY_SECONDS = 900
_SQS_BATCH = 10
# Another run holds the connection's lease: it is soon done.
_BUSY_DELAY_SECONDS = 5
# Provider trouble with no Retry-After: 30 s doubled with each attempt, at most SQS's longest delay.
_FIRST_RETRY_DELAY_SECONDS = 30

_processor = BatchProcessor(event_type=EventType.SQS)


class PaymentMessage(Record):
    connection_id: str
    payment_order_number: str


def queue_payment(
    queue_url: str, message: PaymentMessage, *, delay_seconds: int = 0, sqs: "SQSClient | None" = None
) -> None:
    (sqs or boto3.client("sqs")).send_message(
        QueueUrl=queue_url,
        MessageBody=json.dumps(message.model_dump(mode="json", by_alias=True)),
        DelaySeconds=max(0, min(delay_seconds, _MAX_SQS_DELAY_SECONDS)),
    )


def queue_payments(
    queue_url: str,
    connection_id: str,
    payment_order_numbers: list[str],
    *,
    delay_seconds: int = 0,
    sqs: "SQSClient | None" = None,
) -> None:
    """Queue many payment orders of one connection, ten a request (SQS's most per SendMessageBatch)."""
    client = sqs or boto3.client("sqs")
    delay = max(0, min(delay_seconds, _MAX_SQS_DELAY_SECONDS))
    for start in range(0, len(payment_order_numbers), _SQS_BATCH):
        entries = [
            {
                "Id": str(index),
                "MessageBody": json.dumps(
                    PaymentMessage(connection_id=connection_id, payment_order_number=number).model_dump(
                        mode="json", by_alias=True
                    )
                ),
                "DelaySeconds": delay,
            }
            for index, number in enumerate(payment_order_numbers[start : start + _SQS_BATCH])
        ]
        answer = client.send_message_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]
        if answer.get("Failed"):
            raise RuntimeError(f"SQS refused {len(answer['Failed'])} payment messages: {answer['Failed'][0]}")


def resume_after_reconnect(store: RecordsStore, connection_id: str, outcome: str, queue_url: str) -> int:
    """After an authorisation that left the connection connected (a reconnect): queue every payment order
    that waited for it; returns how many."""
    if outcome != ConnectionStatus.CONNECTED.value:
        return 0
    waiting = store.payment_orders.payment_orders_in_status(connection_id, PaymentOrderStatus.WAITING_FOR_RECONNECTION)
    for order in waiting:
        queue_payment(
            queue_url, PaymentMessage(connection_id=connection_id, payment_order_number=order.payment_order_number)
        )
    logger.info("Held payments resumed", extra={"connection_id": connection_id, "payments": len(waiting)})
    return len(waiting)


# ---------------------------------------------------------------------------------------------- on it


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


# ---------------------------------------------------------------------------------------------- off it


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


# ---------------------------------------------------------------------------------------------- back on it


def run_payments(
    services: Services,
    settings: WritebackSettings,
    connection_id: str,
    numbers: list[str],
    *,
    time_left: Callable[[], float] | None,
) -> PaymentRun:
    """One payment run (service.process_payments), then what it could not finish queued again."""
    run = process_payments(
        services, connection_id, numbers, bus_name=settings.platform_event_bus_name, time_left=time_left
    )
    requeue(run, connection_id, numbers, settings=settings)
    return run


def requeue(run: PaymentRun, connection_id: str, numbers: list[str], *, settings: WritebackSettings) -> None:
    """The re-queue policy: busy (another run holds the lease) after 5 s; provider trouble after the
    provider's Retry-After, else 30 s doubled with each attempt, at most 900 s (SQS's longest delay);
    orders the run had no time for at once. Orders that failed for good are parked on the dead-letter
    queue for the operator's alarm (the API's retry brings them back)."""
    queue_url = settings.writeback_queue_url
    if run.busy:
        logger.info(
            "Payment run retried later: connection busy",
            extra={"orders": len(numbers), "delay_s": _BUSY_DELAY_SECONDS},
        )
        queue_payments(queue_url, connection_id, numbers, delay_seconds=_BUSY_DELAY_SECONDS)
        return
    by_delay: dict[int, list[str]] = {}
    for number, reason in run.retry_later.items():
        order = run.orders.get(number)
        attempts = max(order.attempts, order.fee_attempts, order.check_attempts) if order else 0
        wait = run.wait_s.get(number) or _FIRST_RETRY_DELAY_SECONDS * 2**attempts
        delay = min(_MAX_SQS_DELAY_SECONDS, math.ceil(wait))
        logger.info("Payment retried later", extra={"order": number, "delay_s": delay, "reason": reason})
        by_delay.setdefault(delay, []).append(number)
    for delay, delayed in sorted(by_delay.items()):
        queue_payments(queue_url, connection_id, delayed, delay_seconds=delay)
    if run.not_reached:
        queue_payments(queue_url, connection_id, run.not_reached)
    failed = [n for n, order in run.orders.items() if order.status is PaymentOrderStatus.FAILED and n in numbers]
    if failed:
        queue_payments(settings.writeback_dead_letter_queue_url, connection_id, failed)
