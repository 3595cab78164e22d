"""Every failure path of a payment order ends in a state someone sees: failed with its outcome event (and
retryable), never parked on the dead-letter queue unseen; every order that is not final can be retried."""

import json
from typing import Any

import boto3
import pytest

from payedge_connect.errors import ConflictError
from payedge_connect.models import PaymentOrder, PaymentOrderStatus, Provider
from payedge_connect.writeback.orders import MAX_ATTEMPTS, retry_payment
from payedge_connect.writeback.service import process_payments
from tests.worlds import SyncWorld
from tests.writeback.test_payment_runs import CHECK_ENDPOINT, open_payables, submit
from tests.writeback.test_writeback import BUS, details, paying, provider_payments

__all__ = ["paying"]


def outcome_events() -> str:
    """A queue receiving every outcome the write-back publishes on the bus (as the platform's rule does)."""
    sqs, events = boto3.client("sqs"), boto3.client("events")
    queue_url = sqs.create_queue(QueueName="outcomes")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="outcomes", EventBusName=BUS, EventPattern=json.dumps({"source": [{"prefix": ""}]}))
    events.put_targets(Rule="outcomes", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])
    return queue_url


def received(queue_url: str) -> list[dict[str, Any]]:
    messages = boto3.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(message["Body"])["detail"] for message in messages]


def order_of(world: SyncWorld, number: str) -> PaymentOrder:
    order = world.services.store.payment_orders.get_payment_order(world.connection.connection_id, number)
    assert order is not None
    return order


@pytest.mark.parametrize(
    "world", [Provider.XERO, Provider.QUICKBOOKS, Provider.SAGE], indirect=True, ids=["xero", "quickbooks", "sage"]
)
def test_a_staleness_check_never_answered_fails_the_order_visibly_and_it_can_be_retried(paying: SyncWorld) -> None:
    # Given the provider answers every staleness check 503 (the backoffs move the sandbox clock)
    paying.services.sleep = paying.sandbox.clock.advance
    outcomes = outcome_events()
    # (Sage checks one or two bills by reading each by id; a run of more, by listing what changed)
    check = "get_purchase_invoice" if paying.provider is Provider.SAGE else CHECK_ENDPOINT[paying.provider]
    paying.sandbox.faults.fail(check, 503)
    (payable,) = open_payables(paying, 1)
    (number,) = submit(paying, [details(payable, "PO-CHECK-DOWN")])
    before = len(provider_payments(paying))
    # When the queue delivers it again each time it is handed back
    runs = 0
    while True:
        runs += 1
        result = process_payments(paying.services, paying.connection.connection_id, [number], bus_name=BUS)
        if number not in result.retry_later:
            break
        assert runs < 2 * MAX_ATTEMPTS, "the order was handed back for ever"
    # Then after the bounded attempts it is failed with its reason, and the platform was told
    failed = order_of(paying, number)
    assert runs == MAX_ATTEMPTS
    assert (failed.status, failed.reason_code) == (PaymentOrderStatus.FAILED, "provider_unavailable")
    assert failed.check_attempts == MAX_ATTEMPTS and failed.attempts == 0  # nothing was posted
    assert [(event["paymentOrderNumber"], event["status"]) for event in received(outcomes)] == [(number, "failed")]
    assert len(provider_payments(paying)) == before
    # And once the provider is back, the retry API brings it back and it posts once
    paying.sandbox.faults.clear()
    retried = retry_payment(
        paying.services, business_id="biz-1", connection_id=paying.connection.connection_id, payment_order_number=number
    )
    assert retried.status is PaymentOrderStatus.RECEIVED
    process_payments(paying.services, paying.connection.connection_id, [number], bus_name=BUS)
    assert order_of(paying, number).status is PaymentOrderStatus.POSTED
    assert len(provider_payments(paying)) == before + 1


@pytest.mark.parametrize("world", [Provider.SAGE], indirect=True, ids=["sage"])
def test_a_sage_run_whose_changed_bills_listing_never_answers_fails_every_order_visibly(paying: SyncWorld) -> None:
    # Given a run of three (Sage checks them by listing what changed since the sync) and that listing
    # answering 503 every time
    paying.services.sleep = paying.sandbox.clock.advance
    outcomes = outcome_events()
    paying.sandbox.faults.fail(CHECK_ENDPOINT[paying.provider], 503)
    payables = open_payables(paying, 3)
    numbers = submit(paying, [details(payable, f"PO-LIST-DOWN-{i}") for i, payable in enumerate(payables)])
    before = len(provider_payments(paying))
    # When the queue delivers the run again each time it is handed back
    for _ in range(MAX_ATTEMPTS):
        result = process_payments(paying.services, paying.connection.connection_id, numbers, bus_name=BUS)
    # Then once the attempts are spent every order is failed, counted, told to the platform, nothing posted
    assert not set(result.retry_later) & set(numbers)  # the last delivery hands nothing back
    orders = [order_of(paying, number) for number in numbers]
    assert {(order.status, order.reason_code, order.check_attempts) for order in orders} == {
        (PaymentOrderStatus.FAILED, "provider_unavailable", MAX_ATTEMPTS)
    }
    assert sorted(event["paymentOrderNumber"] for event in received(outcomes)) == sorted(numbers)
    assert len(provider_payments(paying)) == before
    # And once Sage answers, retrying one posts it
    paying.sandbox.faults.clear()
    retry_payment(
        paying.services,
        business_id="biz-1",
        connection_id=paying.connection.connection_id,
        payment_order_number=numbers[0],
    )
    process_payments(paying.services, paying.connection.connection_id, [numbers[0]], bus_name=BUS)
    assert order_of(paying, numbers[0]).status is PaymentOrderStatus.POSTED


@pytest.mark.parametrize("world", [Provider.XERO], indirect=True, ids=["xero"])
def test_a_staleness_check_refused_fails_the_order_with_the_providers_words(paying: SyncWorld) -> None:
    # Xero answers 403 once the organisation is disconnected from the app: asking again changes nothing.
    outcomes = outcome_events()
    paying.sandbox.faults.fail(CHECK_ENDPOINT[paying.provider], 403)
    (payable,) = open_payables(paying, 1)
    (number,) = submit(paying, [details(payable, "PO-CHECK-403")])
    result = process_payments(paying.services, paying.connection.connection_id, [number], bus_name=BUS)
    order = result.orders[number]
    assert (order.status, order.reason_code) == (PaymentOrderStatus.FAILED, "provider_refused")
    assert order.reason and "403" in order.reason
    assert number not in result.retry_later
    assert [event["status"] for event in received(outcomes)] == ["failed"]


@pytest.mark.parametrize("world", [Provider.QUICKBOOKS], indirect=True, ids=["quickbooks"])
def test_every_order_that_is_not_final_can_be_retried_and_posts_once(paying: SyncWorld) -> None:
    not_final = [
        PaymentOrderStatus.RECEIVED,
        PaymentOrderStatus.POSTING,
        PaymentOrderStatus.WAITING_FOR_RECONNECTION,
        PaymentOrderStatus.NEEDS_ATTENTION,
        PaymentOrderStatus.FAILED,
    ]
    payables = open_payables(paying, len(not_final))
    for status, payable in zip(not_final, payables, strict=True):
        # Given an order left in `status` (a lost message, a crash mid-posting, a reconnection, an outage)
        (number,) = submit(paying, [details(payable, f"PO-RETRY-{status.value}")])
        order = order_of(paying, number)
        attempts = 1 if status is PaymentOrderStatus.POSTING else 0
        paying.services.store.payment_orders.save_payment_order(
            order.model_copy(update={"status": status, "attempts": attempts})
        )
        before = len(provider_payments(paying))
        # When the user retries it and the queue delivers it
        retried = retry_payment(
            paying.services,
            business_id="biz-1",
            connection_id=paying.connection.connection_id,
            payment_order_number=number,
        )
        assert retried.reason is None
        process_payments(paying.services, paying.connection.connection_id, [number], bus_name=BUS)
        # Then it is posted, once (a posting order is looked up first, so never twice)
        assert order_of(paying, number).status is PaymentOrderStatus.POSTED, status
        assert len(provider_payments(paying)) == before + 1, status
        # And a posted order is final: a retry is refused
        with pytest.raises(ConflictError):
            retry_payment(
                paying.services,
                business_id="biz-1",
                connection_id=paying.connection.connection_id,
                payment_order_number=number,
            )
