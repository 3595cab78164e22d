"""Events that reach the service without an HTTP request: the dispatch schedule and the platform's
PaymentCompleted events, on the stack created from template.yaml."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from local.stack import LocalStack
from payedge_connect.models import Connection, ConnectionStatus, Provider
from payedge_connect.storage import RecordsStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    """template.yaml's stack with its queues left unpolled, so the tests see what lands on them."""
    with LocalStack(poll_queues=False) as running:
        yield running


def _messages(stack: LocalStack, queue: str, wait_seconds: int = 0) -> list[dict[str, Any]]:
    response = stack.client("sqs").receive_message(
        QueueUrl=stack.physical_id(queue), MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
    )
    return [json.loads(message["Body"]) for message in response.get("Messages", [])]


def test_the_dispatch_schedule_is_the_template_schedule(stack: LocalStack) -> None:
    schedule = stack.scheduler.find("DispatchDueConnections")

    assert schedule.function == "SyncFunction"
    assert schedule.expression == "rate(15 minutes)"
    assert schedule.payload(datetime.now(UTC)) == {"action": "dispatch"}


def test_firing_the_dispatch_schedule_queues_a_sync_for_each_connected_connection(stack: LocalStack) -> None:
    # Given one connected connection and one still authorizing
    store = RecordsStore(stack.physical_id("RecordsTable"), dynamodb=stack.resource("dynamodb"))
    now = datetime.now(UTC)
    for connection_id, status in (
        ("conn-live", ConnectionStatus.CONNECTED),
        ("conn-new", ConnectionStatus.AUTHORIZING),
    ):
        store.connections.create_connection(
            Connection(
                connection_id=connection_id,
                business_id="biz-1",
                provider=Provider.XERO,
                status=status,
                created_at=now,
                updated_at=now,
            )
        )

    # When the schedule fires, delivering its Input to the sync function
    result = stack.scheduler.fire("DispatchDueConnections")

    # Then one sync message was queued, for the connected connection only
    assert (result["action"], result["queued"], result["due"]) == ("dispatch", 1, 1)
    (message,) = _messages(stack, "SyncQueue")
    assert (message["connectionId"], message["trigger"]) == ("conn-live", "schedule")


def test_a_payment_completed_event_on_the_bus_lands_on_the_write_back_queue(stack: LocalStack) -> None:
    # Given the platform publishes a payment on its event bus (PaymentCompletedRule's pattern)
    detail = {"paymentOrderId": "po-1", "billId": "bill-9", "amount": "120.00", "currency": "CAD"}
    response = stack.client("events").put_events(
        Entries=[
            {
                "Source": "payedge.payments",
                "DetailType": "PaymentCompleted",
                "Detail": json.dumps(detail),
                "EventBusName": stack.parameters["PlatformEventBusName"],
            }
        ]
    )
    assert response["FailedEntryCount"] == 0

    # Then the rule delivered the whole EventBridge event to the write-back queue
    (event,) = _messages(stack, "WritebackQueue", wait_seconds=2)
    assert event["source"] == "payedge.payments"
    assert event["detail-type"] == "PaymentCompleted"
    assert event["detail"] == detail


def test_other_platform_events_do_not_reach_the_write_back_queue(stack: LocalStack) -> None:
    stack.client("events").put_events(
        Entries=[{"Source": "payedge.payments", "DetailType": "PaymentFailed", "Detail": "{}"}]
    )

    assert _messages(stack, "WritebackQueue", wait_seconds=1) == []
