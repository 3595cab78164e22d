"""A payment's life after write-back, at each provider's sandbox: only a settled payment posts, and a
reversed payment is undone at the provider (payment and fee), exactly once, the bill open again."""

from decimal import Decimal

from payedge_connect.models import PaymentOrderStatus
from payedge_connect.writeback.service import process_payment, submit_payment
from tests.worlds import SyncWorld
from tests.writeback.test_writeback import BUS, a_payable, details, pay, paying, provider_payments

__all__ = ["paying"]  # the fixture, shared with the single-payment tests


def test_a_pending_payment_waits_and_posts_once_when_a_later_event_says_settled(paying: SyncWorld) -> None:
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
    stored = paying.services.store.get_payable(paying.connection.connection_id, payable.bill_id)
    assert stored is not None and stored.amount_due == 0


def test_a_failed_cancelled_or_returned_payment_is_never_posted(paying: SyncWorld) -> None:
    payable = a_payable(paying)
    before = len(provider_payments(paying))
    for number, status in (("PO-3002", "failed"), ("PO-3003", "cancelled"), ("PO-3004", "returned")):
        order = pay(paying, details(payable, number, payment_status=status))
        assert (order.status, order.reason_code) == (PaymentOrderStatus.REJECTED, f"payment_{status}")
        assert order.reason and status in order.reason
    # A pending payment that then failed is rejected too, and a settled event after that posts nothing
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
