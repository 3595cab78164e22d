"""The write-back queue: platform events arrive on it, and we queue our own work on it too.

Our own messages ({"connectionId", "paymentOrderNumber"}) carry API submissions, retries, payments
resumed after a reconnect, and delayed retries after provider trouble. A payment order that failed for
good is also copied to the dead-letter queue, whose alarm tells the operator.
"""

import json
from typing import TYPE_CHECKING

import boto3

from payedge_connect.models import PaymentOrderStatus, Record
from payedge_connect.storage.records import RecordsStore

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

_MAX_SQS_DELAY_SECONDS = 900


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


def resume_waiting_payments(store: RecordsStore, connection_id: str, queue_url: str) -> int:
    """After a reconnect: queue every payment order that waited for it; returns how many."""
    waiting = store.payment_orders_in_status(connection_id, PaymentOrderStatus.WAITING_FOR_RECONNECTION)
    for order in waiting:
        queue_payment(
            queue_url, PaymentMessage(connection_id=connection_id, payment_order_number=order.payment_order_number)
        )
    return len(waiting)
