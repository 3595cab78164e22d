"""The write-back queue: what goes on it and what goes back on it (writeback/worker.py takes it off).

On it: the platform's PaymentCompleted and PaymentReversed events (an EventBridge rule), and our own
messages ({"connectionId", "paymentOrderNumber"}) for the API's submissions, retries and reversals,
payments resumed after a reconnect, and delayed retries after provider trouble.
Back on it, the re-queue policy (`requeue`): what a payment run could not finish; a payment order that
failed for good is copied to the dead-letter queue, whose alarm tells the operator.
"""

import json
import math
from typing import TYPE_CHECKING

import boto3

from payedge_connect.models import ConnectionStatus, PaymentOrderStatus, Record
from payedge_connect.observability import logger
from payedge_connect.settings import WritebackSettings
from payedge_connect.storage import RecordsStore

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from payedge_connect.writeback.service import PaymentRun

_MAX_SQS_DELAY_SECONDS = 900
_SQS_BATCH = 10
# Another run holds the connection's lease: it is soon done.
_BUSY_DELAY_SECONDS = 5
# Provider trouble with no Retry-After: 30 s doubled with each attempt, at most SQS's longest delay.
_FIRST_RETRY_DELAY_SECONDS = 30


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


# ---------------------------------------------------------------------------------------------- back on it


def requeue(run: "PaymentRun", connection_id: str, numbers: list[str], *, settings: WritebackSettings) -> None:
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
