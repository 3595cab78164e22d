"""Payment orders as the platform sends them: recorded under their number (a duplicate finds the one
recorded), made eligible again (retry), and a reversal recorded. No provider call happens here: the
caller queues the order, and a payment run (service.py) takes it to the accounting software.
"""

from payedge_connect.errors import ConflictError, NotFoundError
from payedge_connect.models import (
    PENDING_PAYMENT_STATUSES,
    SETTLED_PAYMENT_STATUSES,
    PaymentOrder,
    PaymentOrderStatus,
)
from payedge_connect.services import Services
from payedge_connect.writeback.events import PaymentDetails, ReversalDetails, check_payment_date, publish_outcome

# Provider calls that may have reached the provider before we give up and mark the order failed.
MAX_ATTEMPTS = 5


class WritebackBusy(Exception):
    """Another write-back of this connection holds the lease: try again shortly."""


def submit_payment(
    services: Services, details: PaymentDetails, *, business_id: str, connection_id: str
) -> PaymentOrder:
    """Record a payment order (no provider call yet); the same order again returns the one recorded."""
    connection = services.store.connections.get_connection(connection_id)
    if connection is None or connection.business_id != business_id:
        raise NotFoundError(f"no connection {connection_id}")
    now = services.clock()
    check_payment_date(details.payment_date, now.date())
    order = PaymentOrder(
        **details.model_dump(),
        connection_id=connection_id,
        business_id=business_id,
        status=PaymentOrderStatus.RECEIVED,
        created_at=now,
        updated_at=now,
    )
    existing = services.store.payment_orders.create_payment_order(order)
    for _ in range(3):
        if existing is None:
            return order
        if _details(existing) == _details(order):
            return existing
        if _details(existing, "payment_status") != _details(order, "payment_status"):
            break
        if settlement(existing.payment_status) == settlement(order.payment_status):
            return existing  # "completed" then "settled": the same news
        if existing.status not in (PaymentOrderStatus.RECEIVED, PaymentOrderStatus.WAITING_FOR_SETTLEMENT):
            break
        # A later status of a payment not posted yet (pending, then settled or failed): processed again.
        update = {"payment_status": order.payment_status, "status": PaymentOrderStatus.RECEIVED, "updated_at": now}
        try:
            return services.store.payment_orders.save_payment_order(existing.model_copy(update=update))
        except ConflictError:
            existing = services.store.payment_orders.get_payment_order(connection_id, order.payment_order_number)
    raise ConflictError(
        f"payment order {order.payment_order_number} was already received with different details",
        field="body.paymentOrderNumber",
    )


def _details(order: PaymentOrder, *leave_out: str) -> dict[str, object]:
    return order.model_dump(include=set(PaymentDetails.model_fields) - set(leave_out))


def settlement(payment_status: str) -> str:
    """What the platform's payment status means here: "settled", "pending" or "unpaid" (models.py)."""
    status = payment_status.lower()
    if status in SETTLED_PAYMENT_STATUSES:
        return "settled"
    return "pending" if status in PENDING_PAYMENT_STATUSES else "unpaid"


def retry_payment(
    services: Services, *, business_id: str, connection_id: str, payment_order_number: str
) -> PaymentOrder:
    """Make a payment order that is not final (failed, held, waiting for reconnection, or still received or
    posting: its message may have been lost) eligible again; the caller queues it."""
    order = services.store.payment_orders.get_payment_order(connection_id, payment_order_number)
    if order is None or order.business_id != business_id:
        raise NotFoundError(f"no payment order {payment_order_number}")
    if order.status in (PaymentOrderStatus.POSTED, PaymentOrderStatus.REJECTED, PaymentOrderStatus.REVERSED):
        raise ConflictError(f"payment order is {order.status.value}; only orders that are not final are retried")
    if order.status is PaymentOrderStatus.WAITING_FOR_SETTLEMENT:
        raise ConflictError("payment order is waiting_for_settlement; it posts when the platform reports it settled")
    if order.status in (PaymentOrderStatus.REVERSING, PaymentOrderStatus.REVERSAL_NEEDS_ATTENTION):
        raise ConflictError(f"payment order is {order.status.value}; ask for its reversal again to continue it")
    # An order whose payment may have reached the provider keeps its attempts: it is looked up first.
    status = PaymentOrderStatus.POSTING if order.attempts or order.fee_attempts else PaymentOrderStatus.RECEIVED
    return services.store.payment_orders.save_payment_order(
        order.model_copy(
            update={
                "status": status,
                "reason": None,
                "reason_code": None,
                "attempts": min(order.attempts, MAX_ATTEMPTS - 1),
                "fee_attempts": min(order.fee_attempts, MAX_ATTEMPTS - 1),
                "check_attempts": 0,
                "updated_at": services.clock(),
            }
        )
    )


def request_reversal(
    services: Services,
    reversal: ReversalDetails,
    *,
    business_id: str,
    connection_id: str,
    payment_order_number: str,
    bus_name: str,
) -> PaymentOrder:
    """Record that the platform reversed a payment (no provider call yet; the caller queues the order).
    The same reversal again returns the order as it stands; one that needs attention is tried again."""
    for _ in range(3):
        order = services.store.payment_orders.get_payment_order(connection_id, payment_order_number)
        if order is None or order.business_id != business_id:
            raise NotFoundError(
                f"no payment order {payment_order_number} of this business on connection {connection_id}",
                field="path.paymentOrderNumber",
            )
        if order.reversal_requested_at is not None and order.status is not PaymentOrderStatus.REVERSAL_NEEDS_ATTENTION:
            return order  # reversing, reversed, or cancelled before it posted
        if order.status is PaymentOrderStatus.REJECTED:
            raise ConflictError(
                f"payment order {payment_order_number} was rejected ({order.reason_code}): nothing was posted "
                "to reverse",
                field="path.paymentOrderNumber",
            )
        now = services.clock()
        update = {
            "status": PaymentOrderStatus.REVERSING,
            "reason_code": None,
            "reason": None,
            "reversal_reason": reversal.reason,
            "reversal_date": reversal.reversal_date,
            "reversal_requested_at": order.reversal_requested_at or now,
            # Tried again after attention: the undo calls get their attempts back (each is looked up first).
            "reversal_attempts": min(order.reversal_attempts, MAX_ATTEMPTS - 1),
            "fee_reversal_attempts": min(order.fee_reversal_attempts, MAX_ATTEMPTS - 1),
            "updated_at": now,
        }
        try:
            saved = services.store.payment_orders.save_payment_order(order.model_copy(update=update))
        except ConflictError:
            continue  # the order moved on meanwhile (a run posting it): read it again
        publish_outcome(bus_name, saved)
        return saved
    raise WritebackBusy(f"payment order {payment_order_number} kept changing; try the reversal again")
