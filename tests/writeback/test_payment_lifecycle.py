"""A payment's life after write-back, at each provider's sandbox: only a settled payment posts, and a
reversed payment is undone at the provider (payment and fee), exactly once, the bill open again."""

import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from payedge_connect.errors import ConflictError, NotFoundError
from payedge_connect.models import PayableStatus, PaymentOrder, PaymentOrderStatus, Provider
from payedge_connect.services import Services
from payedge_connect.writeback.events import ReversalDetails
from payedge_connect.writeback.orders import WritebackBusy, request_reversal, submit_payment
from payedge_connect.writeback.service import process_payment
from tests.worlds import SyncWorld
from tests.writeback.test_writeback import BUS, a_payable, details, pay, paying, provider_fees, provider_payments

__all__ = ["paying"]  # the fixture, shared with the single-payment tests


def test_a_pending_payment_posts_once_when_settled_and_a_failed_one_never_posts(paying: SyncWorld) -> None:
    payable = a_payable(paying)
    before = len(provider_payments(paying))
    # Given the platform reports the payment as still processing
    waiting = pay(paying, details(payable, "PO-3001", payment_status="processing", fee_amount=Decimal("1.00")))
    assert (waiting.status, waiting.reason_code) == (PaymentOrderStatus.WAITING_FOR_SETTLEMENT, "payment_not_settled")
    assert len(provider_payments(paying)) == before and waiting.attempts == 0
    # The same event again, and the worker running again, change nothing
    assert pay(paying, details(payable, "PO-3001", payment_status="processing", fee_amount=Decimal("1.00"))).status is (
        PaymentOrderStatus.WAITING_FOR_SETTLEMENT
    )
    # When a later event says settled (twice: the platform delivers at least once)
    for _ in range(2):
        posted = pay(paying, details(payable, "PO-3001", payment_status="Settled", fee_amount=Decimal("1.00")))
        assert posted.status is PaymentOrderStatus.POSTED, posted.reason
    # Then it is posted once
    assert len(provider_payments(paying)) == before + 1
    stored = paying.services.store.payables.get_payable(paying.connection.connection_id, payable.bill_id)
    assert stored is not None and stored.amount_due == 0
    # And a failed, cancelled or returned payment is never posted
    before = len(provider_payments(paying))
    for number, status in (("PO-3002", "failed"), ("PO-3003", "cancelled"), ("PO-3004", "returned")):
        order = pay(paying, details(payable, number, payment_status=status))
        assert (order.status, order.reason_code) == (PaymentOrderStatus.REJECTED, f"payment_{status}")
        assert order.reason and status in order.reason
    # A pending payment that then failed is rejected too, and that event again changes nothing
    pay(paying, details(payable, "PO-3005", payment_status="pending"))
    failed = pay(paying, details(payable, "PO-3005", payment_status="failed"))
    assert (failed.status, failed.reason_code) == (PaymentOrderStatus.REJECTED, "payment_failed")
    order = submit_payment(
        paying.services,
        details(payable, "PO-3005", payment_status="failed"),
        business_id="biz-1",
        connection_id=paying.connection.connection_id,
    )
    assert process_payment(paying.services, order.connection_id, "PO-3005", bus_name=BUS).status is (
        PaymentOrderStatus.REJECTED
    )
    assert len(provider_payments(paying)) == before


# Where each provider's undo of a payment lands in its sandbox's request log (QuickBooks' void is a POST
# to billpayment; its payments themselves go through /batch).
UNDO_ENDPOINT = {
    Provider.QUICKBOOKS: "create_billpayment",
    Provider.XERO: "delete_payment",
    Provider.SAGE: "delete_contact_payment",
}
RETURNED = ReversalDetails(reason="ACH return R01: insufficient funds", reversal_date=datetime.now(UTC).date())


def reverse(
    world: SyncWorld, number: str, *, services: Services | None = None, business_id: str = "biz-1"
) -> PaymentOrder:
    """What the queue does with a PaymentReversed delivery: record it, then run until not busy."""
    services = services or world.services
    connection_id = world.connection.connection_id
    request_reversal(
        services, RETURNED, business_id=business_id, connection_id=connection_id, payment_order_number=number,
        bus_name=BUS,
    )  # fmt: skip
    for _ in range(50):
        try:
            return process_payment(services, connection_id, number, bus_name=BUS)
        except WritebackBusy:
            continue
    raise AssertionError("the reversal never got its turn")


def undone_at_provider(world: SyncWorld, order: PaymentOrder) -> tuple[bool, bool]:
    """Whether the sandbox holds the order's payment and fee as undone, read from its own state."""
    payment = next(p for p in provider_payments(world) if _id(world, p) == order.provider_payment_id)
    fees = [f for f in provider_fees(world) if _id(world, f) == order.provider_fee_id]
    if world.provider is Provider.QUICKBOOKS:
        # Voided: kept, amounts zeroed, lines cleared, "Voided" first in PrivateNote; the Purchase deleted.
        voided = payment["TotalAmt"] == 0 and payment["Line"] == [] and payment["PrivateNote"].startswith("Voided")
        return voided, fees == []
    if world.provider is Provider.XERO:
        return payment["Status"] == "DELETED", [f["Status"] for f in fees] == ["DELETED"]
    return payment["deleted_at"] is not None, [f["deleted_at"] is not None for f in fees] == [True]


def _id(world: SyncWorld, record: dict[str, Any]) -> str:
    key = {Provider.QUICKBOOKS: "Id", Provider.XERO: "PaymentID", Provider.SAGE: "id"}[world.provider]
    return str(record.get(key) or record.get("BankTransactionID"))


def provider_bill(world: SyncWorld, bill_id: str) -> Any:
    connector = world.services.connector(world.provider)
    [bill] = connector.bills_by_id(world.services.api(world.connection), [bill_id]).bills
    return bill


def test_a_posted_payment_reversed_is_undone_at_the_provider_and_the_bill_is_open_again(paying: SyncWorld) -> None:
    # Given a bill paid in full through the platform, with a fee, posted
    payable = a_payable(paying)
    posted = pay(paying, details(payable, "PO-3101", fee_amount=Decimal("2.50")))
    assert posted.status is PaymentOrderStatus.POSTED, posted.reason
    assert not provider_bill(paying, payable.bill_id).is_open
    # When the platform reports it reversed (an ACH return)
    reversed_order = reverse(paying, "PO-3101")
    # Then the payment and its fee are voided or deleted at the provider
    assert (reversed_order.status, reversed_order.reason_code) == (PaymentOrderStatus.REVERSED, "payment_reversed")
    assert reversed_order.payment_reversed and reversed_order.fee_reversed
    assert undone_at_provider(paying, reversed_order) == (True, True)
    # And the bill is open there with its balance, and the payable open here with the amount due back
    bill = provider_bill(paying, payable.bill_id)
    assert bill.is_open and bill.amount_due == payable.amount_due
    stored = paying.services.store.payables.get_payable(paying.connection.connection_id, payable.bill_id)
    assert stored is not None and stored.status is payable.status and stored.amount_due == payable.amount_due
    # And the next sync agrees
    paying.sandbox.clock.advance(60)
    paying.sync()
    again = paying.services.store.payables.get_payable(paying.connection.connection_id, payable.bill_id)
    assert again is not None and (again.status, again.amount_due) == (stored.status, stored.amount_due)
    assert payable.bill_id in paying.open_payables()


def test_the_same_reversal_three_times_and_concurrently_undoes_once(paying: SyncWorld) -> None:
    payable = a_payable(paying)
    pay(paying, details(payable, "PO-3102"))
    undo = UNDO_ENDPOINT[paying.provider]
    before = paying.sandbox.requests.count(undo)
    results: list[object] = []
    barrier = threading.Barrier(3)

    def delivery() -> None:
        # Each thread a Lambda of its own: its own Services; only DynamoDB is shared.
        services = Services(paying.services.settings, clock=paying.services.clock, sleep=paying.services.sleep)
        barrier.wait()
        try:
            results.append(reverse(paying, "PO-3102", services=services))
        except Exception as error:  # every outcome is inspected
            results.append(error)

    threads = [threading.Thread(target=delivery) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    results += [reverse(paying, "PO-3102") for _ in range(3)]
    assert all(isinstance(r, PaymentOrder) and r.status is PaymentOrderStatus.REVERSED for r in results), results
    assert paying.sandbox.requests.count(undo) == before + 1
    assert provider_bill(paying, payable.bill_id).amount_due == payable.amount_due


def test_an_undo_whose_answer_was_lost_is_looked_up_not_repeated(paying: SyncWorld) -> None:
    payable = a_payable(paying)
    pay(paying, details(payable, "PO-3103"))
    undo = UNDO_ENDPOINT[paying.provider]
    before = paying.sandbox.requests.count(undo)
    # Given the provider makes the undo and its answer never arrives
    paying.sandbox.faults.drop_response_after_commit(undo, count=1)
    outcome = reverse(paying, "PO-3103")
    # Then the look-up found it made: reversed, and the undo was sent once
    assert outcome.status is PaymentOrderStatus.REVERSED, outcome.reason
    assert outcome.reversal_attempts == 1
    assert paying.sandbox.requests.count(undo) == before + 1
    assert provider_bill(paying, payable.bill_id).amount_due == payable.amount_due


def test_a_reversal_the_provider_refuses_needs_attention_with_its_words_and_nothing_is_undone(
    paying: SyncWorld,
) -> None:
    payable = a_payable(paying)
    posted = pay(paying, details(payable, "PO-3104", fee_amount=Decimal("1.25")))
    assert posted.provider_payment_id is not None
    # Given the payment can no longer be undone there: reconciled (Xero, Sage), the books closed (QuickBooks)
    if paying.provider is Provider.QUICKBOOKS:
        paying.sandbox.close_books(paying.tenant_id, datetime.now(UTC).date())
    else:
        paying.sandbox.reconcile(paying.tenant_id, posted.provider_payment_id)
    held = reverse(paying, "PO-3104")
    # Then the order needs attention with the provider's words, and nothing is half-undone
    assert (held.status, held.reason_code) == (PaymentOrderStatus.REVERSAL_NEEDS_ATTENTION, "provider_refused_reversal")
    words = {Provider.QUICKBOOKS: "books are closed", Provider.XERO: "reconciled", Provider.SAGE: "reconciled"}
    assert held.reason and words[paying.provider] in held.reason and "Nothing was undone" in held.reason
    assert not held.payment_reversed and not held.fee_reversed
    assert undone_at_provider(paying, held) == (False, False)
    assert not provider_bill(paying, payable.bill_id).is_open
    stored = paying.services.store.payables.get_payable(paying.connection.connection_id, payable.bill_id)
    assert stored is not None and stored.status is PayableStatus.CLOSED
    if paying.provider is Provider.QUICKBOOKS:
        # When the user reopens the period and the reversal is asked for again, it is made
        paying.sandbox.close_books(paying.tenant_id, None)
        assert reverse(paying, "PO-3104").status is PaymentOrderStatus.REVERSED
        assert provider_bill(paying, payable.bill_id).is_open


@pytest.mark.parametrize("world", [Provider.XERO], indirect=True, ids=["xero"])
def test_a_payment_undone_whose_fee_is_refused_says_so_and_continues_when_asked_again(paying: SyncWorld) -> None:
    payable = a_payable(paying)
    posted = pay(paying, details(payable, "PO-3108", fee_amount=Decimal("3.00")))
    assert posted.provider_fee_id is not None
    # Given only the fee's bank transaction is reconciled
    paying.sandbox.reconcile(paying.tenant_id, posted.provider_fee_id)
    held = reverse(paying, "PO-3108")
    # Then the payment is deleted and the bill open again, and the standing fee is reported as such
    assert (held.status, held.reason_code) == (PaymentOrderStatus.REVERSAL_NEEDS_ATTENTION, "fee_reversal_refused")
    assert held.payment_reversed and not held.fee_reversed
    assert held.reason and "reconciled" in held.reason and "Already undone: payment" in held.reason
    assert undone_at_provider(paying, held) == (True, False)
    assert provider_bill(paying, payable.bill_id).amount_due == payable.amount_due
    # When the user unreconciles it and asks again: only the fee is deleted now
    paying.sandbox.reconcile(paying.tenant_id, posted.provider_fee_id, reconciled=False)
    deletes = paying.sandbox.requests.count("delete_payment")
    done = reverse(paying, "PO-3108")
    assert done.status is PaymentOrderStatus.REVERSED and undone_at_provider(paying, done) == (True, True)
    assert paying.sandbox.requests.count("delete_payment") == deletes


def test_a_reversal_before_posting_cancels_and_one_of_an_unknown_order_is_refused(paying: SyncWorld) -> None:
    payable = a_payable(paying)
    before = len(provider_payments(paying))
    # A pending payment, and one received but not processed yet, are both reversed
    pay(paying, details(payable, "PO-3105", payment_status="pending"))
    submit_payment(
        paying.services, details(payable, "PO-3106"), business_id="biz-1", connection_id=paying.connection.connection_id
    )
    for number in ("PO-3105", "PO-3106"):
        cancelled = reverse(paying, number)
        assert (cancelled.status, cancelled.reason_code) == (PaymentOrderStatus.REJECTED, "reversed_before_posting")
    # A settled event arriving after the reversal posts nothing
    with pytest.raises(ConflictError):
        submit_payment(
            paying.services,
            details(payable, "PO-3105", payment_status="settled"),
            business_id="biz-1",
            connection_id=paying.connection.connection_id,
        )
    assert process_payment(paying.services, paying.connection.connection_id, "PO-3106", bus_name=BUS).status is (
        PaymentOrderStatus.REJECTED
    )
    assert len(provider_payments(paying)) == before
    # A reversal for an order nobody sent, or for another business's, is refused with a named field
    pay(paying, details(payable, "PO-3107", amount=Decimal("1.00")))
    connection_id = paying.connection.connection_id
    for business_id, number in (("biz-1", "PO-NO-SUCH"), ("biz-2", "PO-3107")):
        with pytest.raises(NotFoundError) as refused:
            request_reversal(
                paying.services, RETURNED, business_id=business_id, connection_id=connection_id,
                payment_order_number=number, bus_name=BUS,
            )  # fmt: skip
        assert refused.value.field == "path.paymentOrderNumber"
    stored = paying.services.store.payment_orders.get_payment_order(connection_id, "PO-3107")
    assert stored is not None and stored.status is PaymentOrderStatus.POSTED
