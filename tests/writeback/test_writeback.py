"""Bills paid through the platform become payments in the accounting software - exactly once."""

import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from payedge_connect.errors import ConflictError, NotFoundError
from payedge_connect.models import AccountMapping, Payable, PayableStatus, PaymentOrder, PaymentOrderStatus, Provider
from payedge_connect.providers.base import AccountKind
from payedge_connect.writeback.events import PaymentDetails
from payedge_connect.writeback.orders import WritebackBusy, submit_payment
from payedge_connect.writeback.service import WritebackRetryLater, process_payment
from tests.worlds import CLIENT_ID, SyncWorld, reconnect

BUS = "default"


@pytest.fixture
def paying(world: SyncWorld) -> SyncWorld:
    """A synced organisation whose mapping names a bank account per currency and a fee account."""
    return with_mapping(world)


def with_mapping(world: SyncWorld) -> SyncWorld:
    """`world` synced, with a mapping of a bank account per currency and a fee account."""
    world.sync()
    connector = world.services.connector(world.provider)
    accounts = connector.accounts(world.services.api(world.connection))
    banks = {a.currency: a.account_id for a in accounts if a.kind is AccountKind.BANK and a.active}
    fees = [a.account_id for a in accounts if a.kind is AccountKind.EXPENSE and "fee" in a.name.lower()]
    connection = world.services.store.connections.get_connection(world.connection.connection_id)
    assert connection is not None
    mapping = AccountMapping(
        funding_sources={f"{currency.lower()}-operating": account for currency, account in banks.items() if currency},
        fee_account_id=fees[0],
        accepted_at=world.sandbox.clock.now(),
    )
    # As accepting the mapping does: the organisation's home currency, read from the provider.
    home_currency = connector.home_currency(world.services.api(world.connection))
    assert home_currency == world.ledger.base_currency
    update = {"mapping": mapping, "home_currency": home_currency}
    world.connection = world.services.store.connections.save_connection(connection.model_copy(update=update))
    return world


def provider_payments(world: SyncWorld) -> list[dict[str, Any]]:
    if world.provider is Provider.QUICKBOOKS:
        return world.sandbox.bill_payments(world.tenant_id)
    if world.provider is Provider.XERO:
        return world.sandbox.payments(world.tenant_id)
    return world.sandbox.contact_payments(world.tenant_id)


def provider_fees(world: SyncWorld) -> list[dict[str, Any]]:
    if world.provider is Provider.QUICKBOOKS:
        return world.sandbox.purchases(world.tenant_id)
    if world.provider is Provider.XERO:
        return world.sandbox.bank_transactions(world.tenant_id)
    return world.sandbox.other_payments(world.tenant_id)


def a_payable(world: SyncWorld, *, currency: str | None = None, base: bool = True) -> Payable:
    """An open payable; by default in the organisation's base currency."""
    payables = [
        world.services.store.payables.get_payable(world.connection.connection_id, bill_id)
        for bill_id in sorted(world.open_payables())
    ]
    wanted = currency or world.ledger.base_currency
    for payable in payables:
        if payable is not None and payable.status is PayableStatus.OPEN and (payable.currency == wanted) == base:
            return payable
    raise AssertionError(f"no open payable in {wanted}")


def details(payable: Payable, number: str, **changes: Any) -> PaymentDetails:
    fields: dict[str, Any] = {
        "payment_order_number": number,
        "bill_id": payable.bill_id,
        "vendor_name": payable.vendor_name,
        "currency": payable.currency,
        "amount": payable.amount_due,
        "remittance_note": "Paid by PayEdge",
        "invoice_number": payable.invoice_number,
        "payment_status": "completed",
        "payment_date": datetime.now(UTC).date(),
        "fee_amount": None,
        "funding_source": f"{payable.currency.lower()}-operating",
        "exchange_rate": None,
    }
    fields.update(changes)
    return PaymentDetails(**fields)


def pay(world: SyncWorld, payment: PaymentDetails, *, business_id: str = "biz-1") -> PaymentOrder:
    """What the queue does with one delivery: record, then process until it is no longer busy."""
    order = submit_payment(
        world.services, payment, business_id=business_id, connection_id=world.connection.connection_id
    )
    for _ in range(20):
        try:
            return process_payment(world.services, order.connection_id, order.payment_order_number, bus_name=BUS)
        except WritebackBusy:
            continue
    raise AssertionError("the write-back never got its turn")


def test_a_paid_bill_becomes_one_payment_and_one_fee_and_reads_paid(paying: SyncWorld) -> None:
    # Given an open bill, and the platform paid it in full with a fee
    payable = a_payable(paying)
    before_payments, before_fees = len(provider_payments(paying)), len(provider_fees(paying))
    # When the write-back runs
    order = pay(paying, details(payable, "PO-1001", fee_amount=Decimal("2.50")))
    # Then the provider holds exactly one more payment and one more fee transaction
    assert order.status is PaymentOrderStatus.POSTED, order.reason
    assert order.provider_payment_id and order.provider_fee_id
    assert len(provider_payments(paying)) == before_payments + 1
    assert len(provider_fees(paying)) == before_fees + 1
    # And the bill reads paid at the provider and closed in our records
    connector = paying.services.connector(paying.provider)
    page = connector.bills_by_id(paying.services.api(paying.connection), [payable.bill_id])
    assert [bill.is_open for bill in page.bills] == [False]
    stored = paying.services.store.payables.get_payable(paying.connection.connection_id, payable.bill_id)
    assert stored is not None and stored.status is PayableStatus.CLOSED
    assert stored.closed_reason is not None and stored.closed_reason.value == "paid_through_platform"
    # And the next sync agrees (and keeps the reason)
    paying.sandbox.clock.advance(60)
    paying.sync()
    again = paying.services.store.payables.get_payable(paying.connection.connection_id, payable.bill_id)
    assert again is not None and again.closed_reason == stored.closed_reason


def test_a_partial_payment_reduces_the_balance_at_the_provider_and_here(paying: SyncWorld) -> None:
    payable = a_payable(paying)
    part = (payable.amount_due / 2).quantize(Decimal("0.01"))
    order = pay(paying, details(payable, "PO-1002", amount=part))
    assert order.status is PaymentOrderStatus.POSTED, order.reason
    connector = paying.services.connector(paying.provider)
    [bill] = connector.bills_by_id(paying.services.api(paying.connection), [payable.bill_id]).bills
    assert bill.is_open and bill.amount_due == payable.amount_due - part
    stored = paying.services.store.payables.get_payable(paying.connection.connection_id, payable.bill_id)
    assert stored is not None and stored.status is PayableStatus.PART_PAID
    assert stored.amount_due == payable.amount_due - part


def test_a_foreign_currency_bill_is_paid_with_the_events_exchange_rate(paying: SyncWorld) -> None:
    payable = a_payable(paying, base=False)
    order = pay(paying, details(payable, "PO-1003", exchange_rate=Decimal("1.3650")))
    assert order.status is PaymentOrderStatus.POSTED, order.reason
    connector = paying.services.connector(paying.provider)
    [bill] = connector.bills_by_id(paying.services.api(paying.connection), [payable.bill_id]).bills
    assert not bill.is_open


def test_a_foreign_currency_payment_without_an_exchange_rate_is_stopped_before_the_provider(paying: SyncWorld) -> None:
    foreign, home = a_payable(paying, base=False), a_payable(paying)
    before = len(provider_payments(paying))
    missing = pay(paying, details(foreign, "PO-1010"))
    assert (missing.status, missing.reason_code) == (PaymentOrderStatus.REJECTED, "exchange_rate_required")
    assert paying.ledger.base_currency in (missing.reason or "")
    wrong = pay(paying, details(home, "PO-1011", exchange_rate=Decimal("1.25")))
    assert (wrong.status, wrong.reason_code) == (PaymentOrderStatus.REJECTED, "exchange_rate_not_allowed")
    assert len(provider_payments(paying)) == before
    assert missing.attempts == wrong.attempts == 0


def test_the_same_payment_delivered_five_times_concurrently_and_days_apart_posts_once(paying: SyncWorld) -> None:
    payable = a_payable(paying)
    payment = details(payable, "PO-1004")
    before = len(provider_payments(paying))
    results: list[object] = []
    barrier = threading.Barrier(5)

    def delivery() -> None:
        barrier.wait()
        try:
            results.append(pay(paying, payment))
        except Exception as error:  # every outcome is inspected
            results.append(error)

    threads = [threading.Thread(target=delivery) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    paying.sandbox.clock.advance(3 * 24 * 3600)  # days later, beyond every provider's idempotency window
    results.append(pay(paying, payment))
    assert all(isinstance(r, PaymentOrder) and r.status is PaymentOrderStatus.POSTED for r in results), results
    assert len(provider_payments(paying)) == before + 1


def test_a_payment_committed_whose_response_was_lost_is_found_not_duplicated(paying: SyncWorld) -> None:
    # Given the provider commits the payment and the response never arrives
    endpoint = {
        Provider.QUICKBOOKS: "batch",  # payments go through /batch, even one
        Provider.XERO: "create_payments",
        Provider.SAGE: "create_contact_payment",
    }
    paying.sandbox.faults.drop_response_after_commit(endpoint[paying.provider], count=5)
    payable = a_payable(paying)
    before = len(provider_payments(paying))
    order = submit_payment(
        paying.services, details(payable, "PO-1005"), business_id="biz-1", connection_id=paying.connection.connection_id
    )
    # When the worker tries, and the queue retries after the uncertain outcome
    outcome: PaymentOrder | None = None
    for _ in range(3):
        try:
            outcome = process_payment(paying.services, order.connection_id, order.payment_order_number, bus_name=BUS)
            break
        except WritebackRetryLater:
            paying.sandbox.faults.clear()
    # Then the retry found the committed payment: posted once, no duplicate
    assert outcome is not None and outcome.status is PaymentOrderStatus.POSTED, outcome
    assert len(provider_payments(paying)) == before + 1


def test_timeouts_5xx_and_429_are_retried_and_post_once(paying: SyncWorld) -> None:
    paying.sandbox.faults.fail("*", 503, count=2)
    paying.sandbox.faults.throttle("*", count=2)
    payable = a_payable(paying)
    before = len(provider_payments(paying))
    order = submit_payment(
        paying.services, details(payable, "PO-1006"), business_id="biz-1", connection_id=paying.connection.connection_id
    )
    outcome: PaymentOrder | None = None
    for _ in range(5):
        try:
            outcome = process_payment(paying.services, order.connection_id, order.payment_order_number, bus_name=BUS)
            break
        except WritebackRetryLater:
            continue
    assert outcome is not None and outcome.status is PaymentOrderStatus.POSTED
    assert len(provider_payments(paying)) == before + 1


def test_a_revoked_grant_holds_the_payment_and_it_posts_once_after_reconnecting(paying: SyncWorld) -> None:
    # Given the user revoked our app at the provider and the access token expired
    if paying.provider is Provider.SAGE:
        paying.sandbox.revoke_grant(client_id=CLIENT_ID)  # a Sage grant belongs to the user, not the business
    else:
        paying.sandbox.revoke_grant(paying.tenant_id)
    paying.sandbox.clock.advance(3600)
    payable = a_payable(paying)
    before = len(provider_payments(paying))
    # When a payment arrives
    held = pay(paying, details(payable, "PO-1007"))
    # Then it waits for the reconnection, nothing posted
    assert held.status is PaymentOrderStatus.WAITING_FOR_RECONNECTION, held
    assert len(provider_payments(paying)) == before
    # When the user reconnects (new tokens) and the held payment is processed again
    reconnect(paying)
    posted = process_payment(paying.services, held.connection_id, held.payment_order_number, bus_name=BUS)
    assert posted.status is PaymentOrderStatus.POSTED, posted.reason
    assert len(provider_payments(paying)) == before + 1


@pytest.mark.parametrize("change", ["pay_elsewhere", "change_amount"])
def test_a_bill_paid_or_changed_at_the_provider_after_the_sync_is_held(paying: SyncWorld, change: str) -> None:
    payable = a_payable(paying)
    if change == "pay_elsewhere":
        paying.sandbox.pay_bill_elsewhere(paying.tenant_id, payable.bill_id)
    else:
        paying.sandbox.change_bill_amount(paying.tenant_id, payable.bill_id, payable.total_amount + Decimal("5.00"))
    before = len(provider_payments(paying))
    order = pay(paying, details(payable, "PO-1008"))
    assert order.status is PaymentOrderStatus.NEEDS_ATTENTION
    assert order.reason_code == "bill_changed_at_provider"
    assert len(provider_payments(paying)) == before


@pytest.mark.parametrize(
    ("changes", "reason_code"),
    [
        ({"bill_id": "no-such-bill"}, "unknown_bill"),
        ({"currency": "ZAR"}, "currency_mismatch"),
        ({"amount": Decimal("999999.00")}, "amount_exceeds_due"),
        ({"funding_source": "jpy-operating"}, "funding_source_not_mapped"),
    ],
)
def test_a_payment_that_fails_a_check_is_refused_with_its_reason_and_nothing_posted(
    paying: SyncWorld, changes: dict[str, Any], reason_code: str
) -> None:
    payable = a_payable(paying)
    before = len(provider_payments(paying))
    order = pay(paying, details(payable, f"PO-{reason_code}", **changes))
    assert order.status in (PaymentOrderStatus.REJECTED, PaymentOrderStatus.NEEDS_ATTENTION)
    assert order.reason_code == reason_code and order.reason
    assert len(provider_payments(paying)) == before


def test_bad_payment_details_are_refused_naming_the_field() -> None:
    with pytest.raises(Exception) as negative:
        PaymentDetails.model_validate(
            {
                "paymentOrderNumber": "PO-1",
                "billId": "b",
                "vendorName": "v",
                "currency": "CAD",
                "amount": "-5.00",
                "paymentStatus": "completed",
                "paymentDate": "2026-11-24",
                "fundingSource": "cad-operating",
            }
        )
    assert "amount" in str(negative.value)
    with pytest.raises(Exception) as missing:
        PaymentDetails.model_validate({"paymentOrderNumber": "PO-1"})
    assert "billId" in str(missing.value) and "currency" in str(missing.value)


def test_another_business_cannot_pay_through_this_connection(paying: SyncWorld) -> None:
    payable = a_payable(paying)
    before = len(provider_payments(paying))
    with pytest.raises(NotFoundError):
        submit_payment(
            paying.services,
            details(payable, "PO-1010"),
            business_id="biz-2",
            connection_id=paying.connection.connection_id,
        )
    assert len(provider_payments(paying)) == before


def test_a_payment_order_number_reused_for_another_payment_is_a_conflict(paying: SyncWorld) -> None:
    payable = a_payable(paying)
    pay(paying, details(payable, "PO-1011", amount=Decimal("1.00")))
    with pytest.raises(ConflictError):
        submit_payment(
            paying.services,
            details(payable, "PO-1011", amount=Decimal("2.00")),
            business_id="biz-1",
            connection_id=paying.connection.connection_id,
        )


def test_a_payment_the_provider_refuses_is_rejected_with_its_message_and_nothing_posted(paying: SyncWorld) -> None:
    # Given the funding source mapped (wrongly) to an expense account, which no provider pays from
    connection = paying.services.store.connections.get_connection(paying.connection.connection_id)
    assert connection is not None and connection.mapping is not None
    wrong = connection.mapping.model_copy(
        update={
            "funding_sources": {
                **connection.mapping.funding_sources,
                "cad-operating": connection.mapping.fee_account_id,
            }
        }
    )
    paying.connection = paying.services.store.connections.save_connection(
        connection.model_copy(update={"mapping": wrong})
    )
    payable = a_payable(paying, currency="CAD")
    before = len(provider_payments(paying))
    # When the payment is written back
    order = pay(paying, details(payable, "PO-1012"))
    # Then the provider's refusal is the reason, and the provider holds no new payment
    assert order.status is PaymentOrderStatus.REJECTED, order
    assert order.reason_code == "provider_rejected" and order.reason
    assert len(provider_payments(paying)) == before
    stored = paying.services.store.payables.get_payable(paying.connection.connection_id, payable.bill_id)
    assert stored is not None and stored.status is PayableStatus.OPEN
