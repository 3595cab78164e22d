"""Payment orders: the write-back's audit trail and its exactly-once key.

Key design (the whole table: storage/__init__.py):
  payment  PK=CONNECTION#<id>  SK=PAYMENT#<paymentOrderNumber>  (never expires)
           GSI2PK=CONNECTION#<id>#PAYMENTS#<status>  GSI2SK=<createdAt>#<paymentOrderNumber>  (orders by status)
           GSI3PK=INFLIGHT#<shard>  GSI3SK=<updatedAt>#PAYMENT#<paymentOrderNumber>  (only while received,
           posting or reversing: the sweeper's index of work in flight, in_flight.py)
  number   PK=BUSINESS#<businessId>  SK=PAYMENT#<paymentOrderNumber>  (the one connection it was sent to)
A payment order is saved with optimistic locking on `version`.
"""

from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from payedge_connect.errors import ConflictError
from payedge_connect.models import PaymentOrder, PaymentOrderStatus
from payedge_connect.storage.in_flight import in_flight_keys
from payedge_connect.storage.table import (
    TableStore,
    condition_failed,
    connection_pk,
    dump_record,
    record_fields,
)

# Payment orders in these states may be retried at any later time and then re-read their payable: a
# closed payable they name does not expire. (A posting order is in the write-back queue's hands and
# ends within its 14-day retention, well inside the closed-payable retention of at least 30 days.)
_ORDERS_NEEDING_PAYABLE = (
    PaymentOrderStatus.RECEIVED,
    PaymentOrderStatus.NEEDS_ATTENTION,
    PaymentOrderStatus.WAITING_FOR_RECONNECTION,
    PaymentOrderStatus.FAILED,
)

# Payment orders in these states are under way: on the in-flight index, so the sweeper finds one that
# stopped moving (its message lost, its worker killed) and queues it again.
_IN_FLIGHT = (PaymentOrderStatus.RECEIVED, PaymentOrderStatus.POSTING, PaymentOrderStatus.REVERSING)


class PaymentOrdersStore(TableStore):
    def create_payment_order(self, order: PaymentOrder) -> PaymentOrder | None:
        """Record a new payment order; returns the one already recorded under that number instead, if any.

        A payment order number belongs to one connection of its business: the number is claimed for the
        business first (idempotent for the same connection), so another connection's claim is a conflict.
        """
        try:
            self.table.put_item(
                Item={
                    "PK": f"BUSINESS#{order.business_id}",
                    "SK": f"PAYMENT#{order.payment_order_number}",
                    "recordType": "paymentOrderNumber",
                    "connectionId": order.connection_id,
                },
                ConditionExpression=Attr("PK").not_exists() | Attr("connectionId").eq(order.connection_id),
            )
        except ClientError as error:
            if condition_failed(error):
                raise ConflictError(
                    f"payment order {order.payment_order_number} was already sent to another connection",
                    field="body.paymentOrderNumber",
                ) from None
            raise
        try:
            self.table.put_item(Item=self._payment_item(order), ConditionExpression=Attr("PK").not_exists())
        except ClientError as error:
            if not condition_failed(error):
                raise
            return self.get_payment_order(order.connection_id, order.payment_order_number)
        return None

    def get_payment_order(self, connection_id: str, payment_order_number: str) -> PaymentOrder | None:
        item = self.table.get_item(
            Key={"PK": connection_pk(connection_id), "SK": f"PAYMENT#{payment_order_number}"}, ConsistentRead=True
        ).get("Item")
        return PaymentOrder.model_validate(record_fields(item)) if item else None

    def save_payment_order(self, order: PaymentOrder) -> PaymentOrder:
        """Write the next state of a payment order if nobody else changed it since it was read."""
        saved = order.model_copy(update={"version": order.version + 1})
        self._put_versioned(
            self._payment_item(saved), order.version, f"payment order {order.payment_order_number} changed meanwhile"
        )
        return saved

    def payment_orders_in_status(self, connection_id: str, status: PaymentOrderStatus) -> list[PaymentOrder]:
        return [
            PaymentOrder.model_validate(record_fields(item))
            for item in self._query_all(
                Key("GSI2PK").eq(f"CONNECTION#{connection_id}#PAYMENTS#{status.value}"), index="GSI2"
            )
        ]

    def bills_with_pending_payments(self, connection_id: str) -> set[str]:
        """Bills named by payment orders that may still be retried (and would then re-read the payable)."""
        return {
            order.bill_id
            for status in _ORDERS_NEEDING_PAYABLE
            for order in self.payment_orders_in_status(connection_id, status)
        }

    @staticmethod
    def _payment_item(order: PaymentOrder) -> dict[str, Any]:
        sort_key = f"PAYMENT#{order.payment_order_number}"
        in_flight = order.status in _IN_FLIGHT
        return {
            "PK": connection_pk(order.connection_id),
            "SK": sort_key,
            **(in_flight_keys(order.connection_id, sort_key, order.updated_at) if in_flight else {}),
            "GSI2PK": f"CONNECTION#{order.connection_id}#PAYMENTS#{order.status.value}",
            "GSI2SK": f"{order.created_at.isoformat()}#{order.payment_order_number}",
            "recordType": "paymentOrder",
            **dump_record(order),
        }
