"""The write-back queue: platform events arrive on it, and we queue our own work on it too.

Our own messages ({"connectionId", "paymentOrderNumber"}) carry API submissions, retries, payments
resumed after a reconnect, and delayed retries after provider trouble. A payment order that failed for
good is also copied to the dead-letter queue, whose alarm tells the operator.
"""

import json
from typing import TYPE_CHECKING

import boto3

from payedge_connect.models import PaymentOrderStatus, Record
from payedge_connect.storage import RecordsStore

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

_MAX_SQS_DELAY_SECONDS = 900
_SQS_BATCH = 10


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


def resume_waiting_payments(store: RecordsStore, connection_id: str, queue_url: str) -> int:
    """After a reconnect: queue every payment order that waited for it; returns how many."""
    waiting = store.payment_orders.payment_orders_in_status(connection_id, PaymentOrderStatus.WAITING_FOR_RECONNECTION)
    for order in waiting:
        queue_payment(
            queue_url, PaymentMessage(connection_id=connection_id, payment_order_number=order.payment_order_number)
        )
    return len(waiting)
