"""Payment runs: many paid bills of one connection written back together - one staleness check, the
provider's largest batches, an outcome per payment, exactly once - at each provider's sandbox."""

import threading
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from payedge_connect.models import Payable, PayableStatus, PaymentOrder, PaymentOrderStatus, Provider
from payedge_connect.writeback.orders import submit_payment
from payedge_connect.writeback.service import PaymentRun, batch_idempotency_key, process_payments
from tests.worlds import CLIENT_ID, SyncWorld, reconnect
from tests.writeback.test_writeback import BUS, details, paying, provider_fees, provider_payments

__all__ = ["paying"]  # the fixture, shared with the single-payment tests

# Where each provider's payments land in its sandbox's request log.
POST_ENDPOINT = {
    Provider.QUICKBOOKS: "batch",
    Provider.XERO: "create_payments",
    Provider.SAGE: "create_contact_payment",
}
# The staleness check: QuickBooks `select ... where Id in (...)`, Xero `GET /Invoices?IDs=`, Sage a
# changed-since and a deleted-since read of purchase_invoices.
CHECK_ENDPOINT = {
    Provider.QUICKBOOKS: "query",
    Provider.XERO: "get_invoices",
    Provider.SAGE: "list_purchase_invoices",
}


def open_payables(world: SyncWorld, count: int) -> list[Payable]:
    """`count` open payables in the organisation's base currency, never part-paid."""
    store = world.services.store
    stored = store.payables.get_payables(world.connection.connection_id, sorted(world.open_payables()))
    found = [
        payable
        for _, payable in sorted(stored.items())
        if payable.status is PayableStatus.OPEN
        and payable.currency == world.ledger.base_currency
        and payable.amount_due == payable.total_amount
    ]
    assert len(found) >= count, f"{len(found)} open payables, {count} wanted"
    return found[:count]


def submit(world: SyncWorld, payments: list[Any]) -> list[str]:
    numbers = []
    for payment in payments:
        order = submit_payment(
            world.services, payment, business_id="biz-1", connection_id=world.connection.connection_id
        )
        numbers.append(order.payment_order_number)
    return numbers


def run(world: SyncWorld, numbers: list[str]) -> PaymentRun:
    return process_payments(world.services, world.connection.connection_id, numbers, bus_name=BUS)


def requests_by_endpoint(world: SyncWorld, since: int) -> Counter[str]:
    return Counter(entry.endpoint for entry in world.sandbox.requests.entries()[since:])


def statuses(run_result: PaymentRun, numbers: list[str]) -> dict[str, PaymentOrderStatus]:
    return {number: run_result.orders[number].status for number in numbers}


def test_a_payment_run_is_checked_once_and_posted_in_the_providers_batches(paying: SyncWorld) -> None:
    # Given eight paid bills, two of them with a fee
    payables = open_payables(paying, 8)
    payments = [
        details(payable, f"PO-RUN-{index}", fee_amount=Decimal("2.50") if index in (2, 5) else None)
        for index, payable in enumerate(payables)
    ]
    numbers = submit(paying, payments)
    before_payments, before_fees = len(provider_payments(paying)), len(provider_fees(paying))
    since = paying.sandbox.requests.total()
    # When they are written back as one payment run
    result = run(paying, numbers)
    # Then every one is posted, once, with its fee
    assert set(statuses(result, numbers).values()) == {PaymentOrderStatus.POSTED}, result.orders
    assert len(provider_payments(paying)) == before_payments + 8
    assert len(provider_fees(paying)) == before_fees + 2
    # And the provider saw one staleness check for the group and the payments in its largest batch
    seen = requests_by_endpoint(paying, since)
    if paying.provider is Provider.SAGE:
        # No batch path: one contact payment each, and the two changed-since reads check all eight bills.
        assert seen[CHECK_ENDPOINT[paying.provider]] == 2
        assert seen["get_purchase_invoice"] == 0
        assert seen[POST_ENDPOINT[paying.provider]] == 8
        assert seen["create_other_payment"] == 2
    elif paying.provider is Provider.QUICKBOOKS:
        assert seen["query"] == 1  # select * from Bill where Id in (...), and no attachment query
        assert seen["batch"] == 2  # the eight BillPayments, then the two Purchases
    else:
        assert seen["get_invoices"] == 1
        assert seen["create_payments"] == 1
        assert seen["create_bank_transactions"] == 1
    # And the bills read paid in our records
    stored = paying.services.store.payables.get_payables(paying.connection.connection_id, [p.bill_id for p in payables])
    assert {payable.status for payable in stored.values()} == {PayableStatus.CLOSED}


def test_in_a_run_only_the_refused_stale_and_over_amount_payments_are_held_or_rejected(paying: SyncWorld) -> None:
    # Given a run of six: one bill paid elsewhere since the sync, one payment over the amount due, and
    # two payments of the same bill, each of all of it (the provider refuses the second)
    payables = open_payables(paying, 5)
    stale, over, twice, *fine = payables
    paying.sandbox.pay_bill_elsewhere(paying.tenant_id, stale.bill_id)
    paying.sandbox.clock.advance(2)
    payments = [
        details(stale, "PO-MIX-STALE"),
        details(over, "PO-MIX-OVER", amount=over.amount_due + Decimal("10.00")),
        details(twice, "PO-MIX-TWICE-1"),
        details(twice, "PO-MIX-TWICE-2"),
        *(details(payable, f"PO-MIX-OK-{index}") for index, payable in enumerate(fine)),
    ]
    numbers = submit(paying, payments)
    before = len(provider_payments(paying))
    # When they are written back as one run
    result = run(paying, numbers)
    # Then exactly those are held or rejected, each with its reason, and the rest post
    orders = result.orders
    assert orders["PO-MIX-STALE"].status is PaymentOrderStatus.NEEDS_ATTENTION
    assert orders["PO-MIX-STALE"].reason_code == "bill_changed_at_provider"
    assert orders["PO-MIX-OVER"].status is PaymentOrderStatus.REJECTED
    assert orders["PO-MIX-OVER"].reason_code == "amount_exceeds_due"
    assert orders["PO-MIX-TWICE-1"].status is PaymentOrderStatus.POSTED
    refused = orders["PO-MIX-TWICE-2"]
    assert refused.status is PaymentOrderStatus.REJECTED, refused
    assert refused.reason_code == "provider_rejected" and refused.reason  # the provider's own words
    assert {orders[f"PO-MIX-OK-{index}"].status for index in range(len(fine))} == {PaymentOrderStatus.POSTED}
    assert len(provider_payments(paying)) == before + 1 + len(fine)


def test_a_run_whose_answer_was_lost_is_looked_up_and_posts_once(paying: SyncWorld) -> None:
    # Given the provider commits the batch and every answer to it is lost (the client's retries too)
    paying.sandbox.faults.drop_response_after_commit(POST_ENDPOINT[paying.provider], count=5)
    payables = open_payables(paying, 4)
    numbers = submit(paying, [details(payable, f"PO-LOST-{index}") for index, payable in enumerate(payables)])
    before = len(provider_payments(paying))
    since = paying.sandbox.requests.total()
    # When the run is written back
    result = run(paying, numbers)
    assert requests_by_endpoint(paying, since)[POST_ENDPOINT[paying.provider]] >= 5  # the answers were lost
    paying.sandbox.faults.clear()
    for _ in range(3):  # what the queue does with what it is handed back
        if not result.retry_later:
            break
        result = run(paying, list(result.retry_later))
    # Then every payment is found by its reference or posted once: none twice
    orders = [
        paying.services.store.payment_orders.get_payment_order(paying.connection.connection_id, n) for n in numbers
    ]
    assert all(order is not None and order.status is PaymentOrderStatus.POSTED for order in orders), orders
    assert len(provider_payments(paying)) == before + 4
    numbers_at_provider = Counter(n for payment in provider_payments(paying) for n in numbers if n in repr(payment))
    assert set(numbers_at_provider.values()) == {1}


def test_a_run_through_5xx_429_and_timeouts_posts_each_payment_once(paying: SyncWorld) -> None:
    endpoint = POST_ENDPOINT[paying.provider]
    paying.sandbox.faults.fail(endpoint, 503, count=2)
    paying.sandbox.faults.throttle(endpoint, count=1)
    paying.sandbox.faults.timeout(endpoint, count=1, seconds=0.1)
    payables = open_payables(paying, 3)
    numbers = submit(paying, [details(payable, f"PO-FLAKY-{index}") for index, payable in enumerate(payables)])
    before = len(provider_payments(paying))
    since = paying.sandbox.requests.total()
    result = run(paying, numbers)
    for _ in range(5):
        if not result.retry_later:
            break
        result = run(paying, list(result.retry_later))
    orders = [
        paying.services.store.payment_orders.get_payment_order(paying.connection.connection_id, n) for n in numbers
    ]
    assert all(order is not None and order.status is PaymentOrderStatus.POSTED for order in orders), orders
    assert requests_by_endpoint(paying, since)[endpoint] >= 5  # the faults were met
    assert len(provider_payments(paying)) == before + 3


def test_the_same_run_delivered_five_times_concurrently_and_days_apart_posts_once(paying: SyncWorld) -> None:
    payables = open_payables(paying, 3)
    numbers = submit(paying, [details(payable, f"PO-DUP-{index}") for index, payable in enumerate(payables)])
    before = len(provider_payments(paying))
    barrier = threading.Barrier(5)
    outcomes: list[object] = []

    def delivery() -> None:
        barrier.wait()
        try:
            for _ in range(40):  # a busy run is delivered again, as the queue does
                result = run(paying, numbers)
                if not result.busy:
                    outcomes.append(result)
                    return
        except Exception as error:  # every outcome is inspected
            outcomes.append(error)

    threads = [threading.Thread(target=delivery) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    paying.sandbox.clock.advance(3 * 24 * 3600)  # beyond every provider's idempotency window
    outcomes.append(run(paying, numbers))
    assert len(outcomes) == 6 and all(isinstance(outcome, PaymentRun) for outcome in outcomes), outcomes
    for outcome in outcomes:
        assert isinstance(outcome, PaymentRun)
        assert set(statuses(outcome, numbers).values()) == {PaymentOrderStatus.POSTED}
    assert len(provider_payments(paying)) == before + 3


@pytest.mark.parametrize("when", ["before_the_run", "mid_run"])
def test_a_revoked_grant_holds_the_whole_run_and_it_posts_once_after_reconnecting(paying: SyncWorld, when: str) -> None:
    if paying.provider is Provider.SAGE:
        paying.sandbox.revoke_grant(client_id=CLIENT_ID)
    else:
        paying.sandbox.revoke_grant(paying.tenant_id)
    if when == "before_the_run":
        paying.sandbox.clock.advance(3600)  # the access token expired too: the first call finds out
    else:
        # The access token still works for the staleness check; the posting is refused with 401, and
        # the refresh that follows finds the grant revoked.
        paying.sandbox.faults.fail(POST_ENDPOINT[paying.provider], 401, count=1)
    payables = open_payables(paying, 3)
    numbers = submit(paying, [details(payable, f"PO-REVOKED-{index}") for index, payable in enumerate(payables)])
    before = len(provider_payments(paying))
    held = run(paying, numbers)
    assert set(statuses(held, numbers).values()) == {PaymentOrderStatus.WAITING_FOR_RECONNECTION}
    assert len(provider_payments(paying)) == before
    reconnect(paying)
    posted = run(paying, numbers)
    assert set(statuses(posted, numbers).values()) == {PaymentOrderStatus.POSTED}
    assert len(provider_payments(paying)) == before + 3


def test_a_single_payment_posts_in_one_invocation(paying: SyncWorld) -> None:
    # A trickle payment waits for no batch: one run of one, posted by the end of it.
    (payable,) = open_payables(paying, 1)
    numbers = submit(paying, [details(payable, "PO-TRICKLE-1", fee_amount=Decimal("1.25"))])
    result = run(paying, numbers)
    order: PaymentOrder = result.orders["PO-TRICKLE-1"]
    assert order.status is PaymentOrderStatus.POSTED and order.provider_payment_id and order.provider_fee_id


def test_a_batch_key_is_derived_from_its_members() -> None:
    same = batch_idempotency_key("conn-1", "payment", ["PO-2", "PO-1"])
    assert same == batch_idempotency_key("conn-1", "payment", ["PO-1", "PO-2"])  # a replay of the same batch
    assert same != batch_idempotency_key("conn-1", "payment", ["PO-1"])  # a different batch
    assert same != batch_idempotency_key("conn-1", "fee", ["PO-1", "PO-2"])
    assert same != batch_idempotency_key("conn-2", "payment", ["PO-1", "PO-2"])
    assert len(same) == 32


@pytest.mark.parametrize("members", [1, 2, 3])
def test_the_run_posts_what_it_has_time_for_and_hands_back_the_rest(paying: SyncWorld, members: int) -> None:
    payables = open_payables(paying, members)
    numbers = submit(paying, [details(payable, f"PO-LATE-{members}-{i}") for i, payable in enumerate(payables)])
    before = len(provider_payments(paying))
    # An invocation with too little time left starts no batch: every order handed back, nothing posted.
    result = process_payments(
        paying.services, paying.connection.connection_id, numbers, bus_name=BUS, time_left=lambda: 5.0
    )
    assert sorted(result.not_reached) == sorted(numbers)
    assert len(provider_payments(paying)) == before
    assert {order.attempts for order in result.orders.values()} == {0}
    posted = run(paying, result.not_reached)
    assert set(statuses(posted, numbers).values()) == {PaymentOrderStatus.POSTED}


def test_a_staleness_check_without_an_answer_posts_nothing_and_the_run_is_retried(paying: SyncWorld) -> None:
    # Given the provider does not answer the run's staleness check (every retry of it too)
    paying.sandbox.faults.fail(CHECK_ENDPOINT[paying.provider], 503, count=5)
    payables = open_payables(paying, 3)
    numbers = submit(paying, [details(payable, f"PO-UNCHECKED-{i}") for i, payable in enumerate(payables)])
    before = len(provider_payments(paying))
    # When the run is written back
    result = run(paying, numbers)
    # Then nothing is posted unchecked: every order is handed back to be retried
    assert sorted(result.retry_later) == sorted(numbers)
    assert len(provider_payments(paying)) == before
    # And once the provider answers, the run posts
    paying.sandbox.faults.clear()
    again = run(paying, numbers)
    assert set(statuses(again, numbers).values()) == {PaymentOrderStatus.POSTED}
    assert len(provider_payments(paying)) == before + 3


LOOKUP_ENDPOINT = {
    Provider.QUICKBOOKS: "query",
    Provider.XERO: "get_payments",
    Provider.SAGE: "list_contact_payments",
}


def test_a_lost_answer_whose_look_up_also_fails_is_retried_and_never_posted_twice(paying: SyncWorld) -> None:
    if paying.provider is Provider.QUICKBOOKS:
        pytest.skip("QuickBooks' look-up and staleness check are both `query`: a sandbox fault hits both")
    # Given the batch is committed and its answer lost, and the look-up that follows gets no answer either
    payables = open_payables(paying, 2)
    numbers = submit(paying, [details(payable, f"PO-BLIND-{i}") for i, payable in enumerate(payables)])
    before = len(provider_payments(paying))
    paying.sandbox.faults.drop_response_after_commit(POST_ENDPOINT[paying.provider], count=5)
    paying.sandbox.faults.fail(LOOKUP_ENDPOINT[paying.provider], 503, count=5)
    first = run(paying, numbers)
    # Then the orders of the lost batch (Sage: the lost payment) are handed back, not posted again blind
    assert first.retry_later and set(first.retry_later) <= set(numbers), first.orders
    committed = len(provider_payments(paying)) - before
    assert committed >= 1
    # And delivered again while the look-up still gets no answer, they are handed back again
    paying.sandbox.faults.clear()
    paying.sandbox.faults.fail(LOOKUP_ENDPOINT[paying.provider], 503, count=5)
    again = run(paying, list(first.retry_later))
    assert sorted(again.retry_later) == sorted(first.retry_later)
    assert len(provider_payments(paying)) - before == committed
    # And when the look-up answers, it finds what was committed: nothing twice
    paying.sandbox.faults.clear()
    run(paying, list(again.retry_later))
    for number in numbers:
        order = paying.services.store.payment_orders.get_payment_order(paying.connection.connection_id, number)
        assert order is not None and order.status is PaymentOrderStatus.POSTED, order
    assert len(provider_payments(paying)) == before + 2


def test_a_run_throttled_past_its_retries_waits_as_long_as_the_provider_asked(paying: SyncWorld) -> None:
    if paying.provider is Provider.QUICKBOOKS:
        pytest.skip("QuickBooks documents no Retry-After on its 429 (docs/providers.md#quickbooks-rate-limits)")
    # Given the provider answers the run's staleness check 429 with Retry-After, every retry too
    paying.sandbox.faults.throttle(CHECK_ENDPOINT[paying.provider], count=5)
    payables = open_payables(paying, 3)
    numbers = submit(paying, [details(payable, f"PO-WAIT-{i}") for i, payable in enumerate(payables)])
    result = run(paying, numbers)
    # Then every order is handed back with the provider's wait, nothing posted
    assert sorted(result.retry_later) == sorted(numbers)
    assert set(result.wait_s) == set(numbers) and all(wait > 0 for wait in result.wait_s.values())
