"""SQS event source and schedule emulation, on the echo stack.

The echo stack's queue has a 1-second visibility timeout and maxReceiveCount 2, so a failing message
is redelivered and then dead-lettered within seconds. The queue is polled one batch at a time here
(`poll_once`), except in the test of the background poller.
"""

import json
import time
from typing import Any

import pytest

from local.event_sources import SqsEventSource
from local.stack import LocalStack

pytestmark = pytest.mark.integration


@pytest.fixture
def inbox(echo_stack: LocalStack) -> SqsEventSource:
    """The echo function's event source, with all three queues empty."""
    for queue in ("Inbox", "InboxDeadLetterQueue", "Outbox"):
        _drain(echo_stack, queue)
    return echo_stack.event_sources["EchoFunctionMessages"]


def _drain(stack: LocalStack, queue: str) -> None:
    # PurgeQueue is allowed once a minute; delete what is there, waiting out in-flight messages.
    sqs = stack.client("sqs")
    url = stack.physical_id(queue)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        counts = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        if not any(int(value) for value in counts.values()):
            return
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        time.sleep(0.2)
    raise AssertionError(f"{queue} could not be emptied")


def _send(stack: LocalStack, *bodies: str) -> list[str]:
    sqs = stack.client("sqs")
    return [
        sqs.send_message(
            QueueUrl=stack.physical_id("Inbox"),
            MessageBody=body,
            MessageAttributes={"tenant": {"DataType": "String", "StringValue": "t-1"}},
        )["MessageId"]
        for body in bodies
    ]


def _bodies(stack: LocalStack, queue: str) -> list[str]:
    response = stack.client("sqs").receive_message(
        QueueUrl=stack.physical_id(queue), MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0
    )
    return sorted(message["Body"] for message in response.get("Messages", []))


def _poll_until(source: SqsEventSource, received: int) -> None:
    """Poll until a batch with `received` messages was handled (messages become visible in ~1 s)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if source.poll_once(wait_seconds=1).received >= received:
            return
    raise AssertionError(f"no batch of {received} arrived")


def test_the_mapping_is_read_from_the_template(inbox: SqsEventSource, echo_stack: LocalStack) -> None:
    assert inbox.mapping.function == "EchoFunction"
    assert inbox.mapping.batch_size == 5
    assert inbox.mapping.report_batch_item_failures is True
    assert inbox.mapping.queue_arn.endswith(echo_stack.physical_id("Inbox").rsplit("/", 1)[1])


def test_the_function_gets_sqs_shaped_records(inbox: SqsEventSource, echo_stack: LocalStack) -> None:
    # Given a message the echo function copies to its outbox, through a plain boto3 client
    (message_id,) = _send(echo_stack, "echo")

    # When the queue is polled
    outcome = inbox.poll_once()

    # Then the record it got has Lambda's SQS event shape
    assert (outcome.received, outcome.deleted) == (1, 1)
    (copied,) = _bodies(echo_stack, "Outbox")
    record: dict[str, Any] = json.loads(copied)
    assert record["messageId"] == message_id
    assert record["body"] == "echo"
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == inbox.mapping.queue_arn
    assert record["awsRegion"] == "us-east-1"
    assert record["receiptHandle"]
    assert record["md5OfBody"]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(record["attributes"])
    assert record["messageAttributes"]["tenant"]["stringValue"] == "t-1"
    assert record["messageAttributes"]["tenant"]["dataType"] == "String"


def test_a_reported_failure_is_redelivered_then_dead_lettered_while_the_rest_are_deleted(
    inbox: SqsEventSource, echo_stack: LocalStack
) -> None:
    # Given a batch with one message the function reports in batchItemFailures
    _send(echo_stack, "fine", "fail", "also fine")
    time.sleep(0.2)

    # When the batch is processed
    first = inbox.poll_once()

    # Then only the failed message stays on the queue
    assert (first.received, first.deleted, len(first.failed)) == (3, 2, 1)

    # And it comes back once its visibility timeout is over, and fails again
    _poll_until(inbox, received=1)

    # And after maxReceiveCount (2) receives SQS moves it to the dead-letter queue
    time.sleep(1.2)
    assert inbox.poll_once(wait_seconds=0).received == 0
    assert _bodies(echo_stack, "InboxDeadLetterQueue") == ["fail"]
    assert _bodies(echo_stack, "Inbox") == []


def test_a_function_error_fails_the_whole_batch(inbox: SqsEventSource, echo_stack: LocalStack) -> None:
    # Given a batch in which one message makes the function raise
    _send(echo_stack, "fine", "crash")
    time.sleep(0.2)

    # When the batch is processed
    outcome = inbox.poll_once()

    # Then nothing was deleted: both messages come back
    assert (outcome.received, outcome.deleted) == (2, 0)
    assert outcome.error is not None and "crash requested" in outcome.error
    time.sleep(1.2)
    assert _bodies(echo_stack, "Inbox") == ["crash", "fine"]


def test_the_background_poller_drains_the_queue(inbox: SqsEventSource, echo_stack: LocalStack) -> None:
    # Given the poller running in the background, as in `make dev`
    inbox.start()
    try:
        # When messages arrive
        _send(echo_stack, "echo", "echo")

        # Then the function gets them without anyone polling by hand
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(_bodies(echo_stack, "Outbox")) < 2:
            time.sleep(0.2)
    finally:
        inbox.stop()
    assert len(_bodies(echo_stack, "Outbox")) == 2


def test_a_schedule_delivers_its_input_with_the_context_attributes_filled_in(echo_stack: LocalStack) -> None:
    # When the template's ScheduleV2 event "Tick" fires
    result = echo_stack.scheduler.fire("Tick")

    # Then the function received the schedule's Input, as EventBridge Scheduler delivers it
    received = result["received"]
    assert received["action"] == "tick"
    assert received["schedule"] == "arn:aws:scheduler:us-east-1:123456789012:schedule/default/EchoFunctionTick"
    assert received["at"].endswith("Z") and "<" not in received["at"]
    assert result["function"] == echo_stack.physical_id("EchoFunction")
    assert echo_stack.scheduler.find("Tick").interval_seconds == 60
