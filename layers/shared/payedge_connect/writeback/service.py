"""Writing a paid bill back to the accounting software: checks, staleness, then exactly one payment.

Exactly once, across duplicates, retries, timeouts, crashes and reconnections:
1. the payment order is recorded under its number before anything else (a duplicate finds it);
2. one write-back per connection at a time (a DynamoDB lease);
3. each provider call is counted on the record BEFORE it is made, so after an uncertain outcome
   (timeout, 5xx, dropped connection) the next attempt first looks the payment up at the provider by
   its reference, and only posts if it is not there;
4. the provider's own idempotency key (derived from the payment order number) covers its window,
   and our record outlives every provider's window (Xero's is minutes).

Outcomes: posted, rejected (a check or the provider refused, with the reason), needs_attention (the
bill changed at the provider since the last sync, or the mapping lacks an account), waiting_for_reconnection
(held until the user reconnects), failed (after bounded retries; retryable through the API).
"""

import hashlib
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from payedge_connect.errors import ConflictError, NotFoundError
from payedge_connect.models import (
    ClosedReason,
    Connection,
    ConnectionStatus,
    Payable,
    PayableStatus,
    PaymentOrder,
    PaymentOrderStatus,
)
from payedge_connect.observability import logger, metrics
from payedge_connect.providers.base import AccountingConnector, FeeToPost, PaymentRejected, PaymentToPost
from payedge_connect.providers.http import CallBudgetSpent, ProviderApi, ProviderError, ProviderUnavailable
from payedge_connect.services import Services
from payedge_connect.tokens.refresh import ReauthorizationRequired, TokenRefreshUnavailable
from payedge_connect.writeback.events import PaymentDetails, check_payment_date, publish_outcome

# Provider calls that may have reached the provider before we give up and mark the order failed.
MAX_ATTEMPTS = 5
_LEASE_SECONDS = 120.0
_FINAL = {PaymentOrderStatus.POSTED, PaymentOrderStatus.REJECTED, PaymentOrderStatus.NEEDS_ATTENTION}


class WritebackBusy(Exception):
    """Another write-back of this connection holds the lease: try again shortly."""


class WritebackRetryLater(Exception):
    """The provider could not be reached or answered with a fault worth retrying; `delay_seconds` when
    the wait is known (the organisation's call budget names it)."""

    def __init__(self, reason: str, *, delay_seconds: int | None = None) -> None:
        super().__init__(reason)
        self.delay_seconds = delay_seconds


@dataclass(frozen=True)
class Outcome:
    status: PaymentOrderStatus
    reason_code: str | None = None
    reason: str | None = None


def idempotency_key(connection_id: str, payment_order_number: str, purpose: str) -> str:
    """A stable key per payment order and purpose (payment or fee): 32 hex characters fit every provider."""
    return hashlib.sha256(f"{connection_id}:{payment_order_number}:{purpose}".encode()).hexdigest()[:32]


def submit_payment(
    services: Services, details: PaymentDetails, *, business_id: str, connection_id: str
) -> PaymentOrder:
    """Record a payment order (no provider call yet); the same order again returns the one recorded."""
    connection = services.store.get_connection(connection_id)
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
    existing = services.store.create_payment_order(order)
    if existing is None:
        return order
    if existing.model_dump(include=set(PaymentDetails.model_fields)) != order.model_dump(
        include=set(PaymentDetails.model_fields)
    ):
        raise ConflictError(
            f"payment order {order.payment_order_number} was already received with different details",
            field="body.paymentOrderNumber",
        )
    return existing


def retry_payment(
    services: Services, *, business_id: str, connection_id: str, payment_order_number: str
) -> PaymentOrder:
    """Make a failed (or held) payment order eligible again; the caller queues it."""
    order = services.store.get_payment_order(connection_id, payment_order_number)
    if order is None or order.business_id != business_id:
        raise NotFoundError(f"no payment order {payment_order_number}")
    if order.status not in (PaymentOrderStatus.FAILED, PaymentOrderStatus.NEEDS_ATTENTION):
        raise ConflictError(f"payment order is {order.status.value}; only failed or held orders are retried")
    # An order whose payment may have reached the provider keeps its attempts: it is looked up first.
    status = PaymentOrderStatus.POSTING if order.attempts else PaymentOrderStatus.RECEIVED
    return services.store.save_payment_order(
        order.model_copy(
            update={
                "status": status,
                "reason": None,
                "reason_code": None,
                "attempts": min(order.attempts, MAX_ATTEMPTS - 1),
                "updated_at": services.clock(),
            }
        )
    )


def process_payment(
    services: Services, connection_id: str, payment_order_number: str, *, bus_name: str
) -> PaymentOrder:
    """Take a payment order as far as it can go now. Raises WritebackBusy/WritebackRetryLater to be retried."""
    store = services.store
    order = store.get_payment_order(connection_id, payment_order_number)
    if order is None:
        raise NotFoundError(f"no payment order {payment_order_number}")
    if order.status in _FINAL or order.status is PaymentOrderStatus.FAILED:
        return order
    connection = store.get_connection(connection_id)
    if connection is None or connection.status is ConnectionStatus.DISCONNECTED:
        return _conclude(
            services,
            order,
            Outcome(
                PaymentOrderStatus.REJECTED,
                "connection_disconnected",
                "The connection to the accounting software was removed.",
            ),
            bus_name,
        )
    if connection.status is not ConnectionStatus.CONNECTED:
        return _conclude(services, order, _waiting(connection), bus_name)

    lease = store.acquire_lease(
        connection_id, "writeback", uuid.uuid4().hex, now=services.clock(), seconds=_LEASE_SECONDS
    )
    if lease is None:
        raise WritebackBusy(f"another write-back of connection {connection_id} is running")
    try:
        return _post(services, connection, order, bus_name)
    except CallBudgetSpent as error:
        # Nothing more was sent: the order waits for the budget without using up an attempt.
        raise WritebackRetryLater(str(error), delay_seconds=math.ceil(error.retry_after or 60)) from None
    except ReauthorizationRequired:
        current = store.get_payment_order(connection_id, payment_order_number) or order
        refreshed = store.get_connection(connection_id) or connection
        return _conclude(services, current, _waiting(refreshed), bus_name)
    finally:
        store.release_lease(lease)


def _waiting(connection: Connection) -> Outcome:
    return Outcome(
        PaymentOrderStatus.WAITING_FOR_RECONNECTION,
        "reauthorization_required",
        "The accounting software needs to be reconnected; the payment is held and will be posted after.",
    )


def _post(services: Services, connection: Connection, order: PaymentOrder, bus_name: str) -> PaymentOrder:
    connector = services.connector(connection.provider)
    api = services.api(connection)
    payable = services.store.get_payable(connection.connection_id, order.bill_id)

    if order.provider_payment_id is None and order.attempts == 0:
        # Nothing can have reached the provider yet: the checks and the staleness check decide.
        problem = _check(order, connection, payable) or _staleness(connector, api, order, payable)
        if problem is not None:
            return _conclude(services, order, problem, bus_name)
    assert payable is not None  # _check refused unknown bills before any attempt was made
    try:
        _post_transactions(services, connector=connector, api=api, connection=connection, order=order, payable=payable)
    except PaymentRejected as error:
        return _refused(services, _current(services, order), payable, str(error), bus_name)
    except CallBudgetSpent:
        raise
    except ProviderError as error:
        if isinstance(error, ProviderUnavailable) or error.status == 429 or error.status >= 500:
            return _retry_or_fail(services, order, f"the accounting software did not answer ({error.status})", bus_name)
        message = f"{error.status}: {error.message[:300]}"
        return _refused(services, _current(services, order), payable, message, bus_name)
    except TokenRefreshUnavailable as error:
        return _retry_or_fail(services, order, str(error), bus_name)
    _mark_payable_paid(services, payable, order)
    return _conclude(services, _current(services, order), Outcome(PaymentOrderStatus.POSTED), bus_name)


def _post_transactions(
    services: Services,
    *,
    connector: AccountingConnector,
    api: ProviderApi,
    connection: Connection,
    order: PaymentOrder,
    payable: Payable,
) -> None:
    """The payment, then the fee, each posted once (and recorded on the order as it goes)."""
    mapping = connection.mapping
    assert mapping is not None
    bank_account_id = mapping.funding_sources[order.funding_source]
    if order.provider_payment_id is None:
        payment = PaymentToPost(
            reference=order.payment_order_number,
            idempotency_key=idempotency_key(connection.connection_id, order.payment_order_number, "payment"),
            bill_id=order.bill_id,
            vendor_id=payable.vendor_id,
            vendor_name=order.vendor_name,
            currency=order.currency,
            amount=order.amount,
            payment_date=order.payment_date,
            bank_account_id=bank_account_id,
            exchange_rate=order.exchange_rate,
            remittance_note=order.remittance_note,
            invoice_number=order.invoice_number or payable.invoice_number,
            payment_status=order.payment_status,
        )
        order = _post_once(
            services,
            order,
            find=lambda: connector.find_payment(api, payment),
            post=lambda: connector.post_payment(api, payment),
            field="provider_payment_id",
        )
    if order.fee_amount and order.provider_fee_id is None:
        fee = FeeToPost(
            reference=order.payment_order_number,
            idempotency_key=idempotency_key(connection.connection_id, order.payment_order_number, "fee"),
            vendor_id=payable.vendor_id,
            currency=order.currency,
            amount=order.fee_amount,
            payment_date=order.payment_date,
            bank_account_id=bank_account_id,
            expense_account_id=mapping.fee_account_id or "",
            description=f"Payment fee, payment order {order.payment_order_number}",
            exchange_rate=order.exchange_rate,
        )
        _post_once(
            services,
            order,
            find=lambda: connector.find_fee(api, fee),
            post=lambda: connector.post_fee(api, fee),
            field="provider_fee_id",
        )


def _current(services: Services, order: PaymentOrder) -> PaymentOrder:
    """The order as last saved (each step of the posting saves it)."""
    return services.store.get_payment_order(order.connection_id, order.payment_order_number) or order


def _refused(services: Services, order: PaymentOrder, payable: Payable, message: str, bus_name: str) -> PaymentOrder:
    if order.provider_payment_id is not None:
        # The bill is paid at the provider; only the fee was refused: the user books it by hand.
        _mark_payable_paid(services, payable, order)
        held = Outcome(
            PaymentOrderStatus.NEEDS_ATTENTION,
            "fee_rejected",
            f"The payment was posted; the fee was refused: {message}",
        )
        return _conclude(services, order, held, bus_name)
    return _conclude(services, order, Outcome(PaymentOrderStatus.REJECTED, "provider_rejected", message), bus_name)


def _post_once(
    services: Services,
    order: PaymentOrder,
    *,
    find: Callable[[], str | None],
    post: Callable[[], str],
    field: str,
) -> PaymentOrder:
    """Look the transaction up if an earlier call may have created it; else count the call, then make it."""
    store = services.store
    if order.attempts > 0:
        found = find()
        if found is not None:
            logger.info("Found the earlier attempt at the provider", extra={"order": order.payment_order_number})
            return store.save_payment_order(order.model_copy(update={field: found, "updated_at": services.clock()}))
    if order.attempts >= MAX_ATTEMPTS:
        raise ProviderUnavailable(0, "too many attempts")
    # The intent, durably, before the call: a crash after this line is recovered by the lookup above.
    order = store.save_payment_order(
        order.model_copy(
            update={
                "status": PaymentOrderStatus.POSTING,
                "attempts": order.attempts + 1,
                "updated_at": services.clock(),
            }
        )
    )
    provider_id = post()
    return store.save_payment_order(order.model_copy(update={field: provider_id, "updated_at": services.clock()}))


def _retry_or_fail(services: Services, order: PaymentOrder, reason: str, bus_name: str) -> PaymentOrder:
    current = _current(services, order)
    if current.attempts >= MAX_ATTEMPTS:
        return _conclude(
            services, current, Outcome(PaymentOrderStatus.FAILED, "provider_unavailable", reason), bus_name
        )
    raise WritebackRetryLater(reason)


def _check(order: PaymentOrder, connection: Connection, payable: Payable | None) -> Outcome | None:  # noqa: PLR0911
    """The checks made before anything is written at the provider, each with a reason a user can read."""
    rejected = PaymentOrderStatus.REJECTED
    held = PaymentOrderStatus.NEEDS_ATTENTION
    if payable is None:
        return Outcome(rejected, "unknown_bill", f"Bill {order.bill_id} is not one of this connection's unpaid bills.")
    if payable.status is PayableStatus.CLOSED:
        reason = payable.closed_reason.value if payable.closed_reason else "closed"
        return Outcome(held, "bill_closed", f"The bill is already closed ({reason.replace('_', ' ')}).")
    if order.currency != payable.currency:
        return Outcome(
            rejected, "currency_mismatch", f"The payment is in {order.currency} but the bill is in {payable.currency}."
        )
    home = connection.home_currency
    if home is not None and order.currency != home and order.exchange_rate is None:
        return Outcome(
            rejected,
            "exchange_rate_required",
            f"The payment is in {order.currency}, not the home currency {home}: it needs an exchange rate.",
        )
    if home is not None and order.currency == home and order.exchange_rate not in (None, 1):
        return Outcome(
            rejected,
            "exchange_rate_not_allowed",
            f"The payment is in the home currency {home}: its exchange rate can only be 1.",
        )
    if order.amount > payable.amount_due:
        return Outcome(
            rejected,
            "amount_exceeds_due",
            f"The payment of {order.amount} exceeds the {payable.amount_due} {payable.currency} still due.",
        )
    mapping = connection.mapping
    if mapping is None or order.funding_source not in mapping.funding_sources:
        return Outcome(
            held, "funding_source_not_mapped", f"Funding source {order.funding_source} is not mapped to a bank account."
        )
    if order.fee_amount and mapping.fee_account_id is None:
        return Outcome(held, "fee_account_not_mapped", "The payment has a fee but no fee account is mapped.")
    return None


def _staleness(
    connector: AccountingConnector, api: ProviderApi, order: PaymentOrder, payable: Payable | None
) -> Outcome | None:
    """Compare with the provider's bill now: a bill paid, voided, deleted or changed since the sync is held."""
    assert payable is not None
    page = connector.bills_by_id(api, [order.bill_id])
    current = next((bill for bill in page.bills if bill.bill_id == order.bill_id), None)
    held = PaymentOrderStatus.NEEDS_ATTENTION
    if current is None or not current.is_open:
        why = current.closed_reason.value.replace("_", " ") if current and current.closed_reason else "closed"
        return Outcome(
            held, "bill_changed_at_provider", f"The bill was {why} in the accounting software since the last sync."
        )
    if current.amount_due != payable.amount_due or current.total_amount != payable.total_amount:
        return Outcome(
            held,
            "bill_changed_at_provider",
            f"The bill's amount due changed from {payable.amount_due} to {current.amount_due} since the last sync.",
        )
    return None


def _mark_payable_paid(services: Services, payable: Payable, order: PaymentOrder) -> None:
    remaining = payable.amount_due - order.amount
    if remaining <= 0:
        changes = {
            "amount_due": Decimal("0.00"),
            "status": PayableStatus.CLOSED,
            "closed_reason": ClosedReason.PAID_THROUGH_PLATFORM,
        }
    else:
        changes = {"amount_due": remaining, "status": PayableStatus.PART_PAID, "closed_reason": None}
    services.store.put_payables([payable.model_copy(update=changes)])


def _conclude(services: Services, order: PaymentOrder, outcome: Outcome, bus_name: str) -> PaymentOrder:
    saved = services.store.save_payment_order(
        order.model_copy(
            update={
                "status": outcome.status,
                "reason_code": outcome.reason_code,
                "reason": outcome.reason,
                "updated_at": services.clock(),
            }
        )
    )
    publish_outcome(bus_name, saved)
    metrics.add_metric(name=f"Payment{outcome.status.value.title().replace('_', '')}", unit="Count", value=1)
    logger.info(
        "Payment write-back",
        extra={"order": saved.payment_order_number, "status": saved.status.value, "reason_code": outcome.reason_code},
    )
    return saved
