"""SQS event sources: the template's `SQS` events (AWS::Lambda::EventSourceMapping), polled locally.

moto creates the mappings from the template (so a mapping to a queue the template lacks fails stack
creation) but would run the function through Docker; the stack disables moto's copy and this poller
does Lambda's part instead, as documented for SQS event sources:

- it receives up to `BatchSize` messages (at most 10 per poll: no batching window locally) and invokes
  the function with SQS-shaped records (messageId, receiptHandle, body, attributes with
  ApproximateReceiveCount, messageAttributes, md5OfBody, eventSource "aws:sqs", eventSourceARN,
  awsRegion);
- if the function returns, the batch succeeded and its messages are deleted - except, with
  `ReportBatchItemFailures`, the ones named in `batchItemFailures`, which stay on the queue;
- if the function raises, or reports a failure naming no message of the batch, the whole batch fails
  and nothing is deleted.

Messages not deleted become visible again after the queue's visibility timeout, and SQS itself (moto)
moves one to the dead-letter queue once it has been received `maxReceiveCount` times.
"""

import base64
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from local.functions import FunctionRuntime

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

logger = logging.getLogger(__name__)

_MAX_MESSAGES_PER_RECEIVE = 10
# What the Lambda SQS record carries under "attributes" (the system attributes SQS returns).
_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "AWSTraceHeader",
)


@dataclass(frozen=True)
class SqsMapping:
    """One SQS event source mapping of the stack (as CloudFormation created it)."""

    name: str  # the mapping's logical id, e.g. "SyncFunctionSyncMessages"
    function: str  # logical id of the function
    queue_arn: str
    queue_url: str
    batch_size: int = 10
    report_batch_item_failures: bool = False
    enabled: bool = True


@dataclass(frozen=True)
class BatchOutcome:
    received: int
    deleted: int
    failed: tuple[str, ...] = ()  # message ids left on the queue
    error: str | None = None  # the function's error, when the whole batch failed


def sqs_record(message: "MessageTypeDef", mapping: SqsMapping, region: str) -> dict[str, Any]:
    """The Lambda SQS event record for a received message."""
    attributes = message.get("Attributes", {})
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": {name: attributes[name] for name in _RECORD_ATTRIBUTES if name in attributes},
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": _base64(value.get("BinaryValue")),
                "stringListValues": list(value.get("StringListValues", [])),
                "binaryListValues": [_base64(item) for item in value.get("BinaryListValues", [])],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": mapping.queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    for value in record["messageAttributes"].values():
        for key in ("stringValue", "binaryValue"):
            if value[key] is None:
                del value[key]
    return record


def _base64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def failed_message_ids(result: Any, batch_ids: list[str]) -> list[str] | None:
    """The ids a ReportBatchItemFailures response names, or None if it fails the whole batch."""
    if result is None or not isinstance(result, dict):
        return []
    failures = result.get("batchItemFailures")
    if failures is None:
        return []
    if not isinstance(failures, list):
        return None
    ids: list[str] = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        # Lambda treats an empty, null or unknown itemIdentifier as a failure of the whole batch.
        if not identifier or identifier not in batch_ids:
            return None
        ids.append(identifier)
    return ids


@dataclass
class SqsEventSource:
    """Polls one queue for one function; `poll_once()` is one receive-invoke-delete round."""

    mapping: SqsMapping
    runtime: FunctionRuntime
    sqs: "SQSClient"
    region: str
    wait_seconds: int = 1
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def poll_once(self, wait_seconds: int | None = None) -> BatchOutcome:
        response = self.sqs.receive_message(
            QueueUrl=self.mapping.queue_url,
            MaxNumberOfMessages=min(self.mapping.batch_size, _MAX_MESSAGES_PER_RECEIVE),
            WaitTimeSeconds=self.wait_seconds if wait_seconds is None else wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            return BatchOutcome(received=0, deleted=0)
        records = [sqs_record(message, self.mapping, self.region) for message in messages]
        batch_ids = [record["messageId"] for record in records]
        try:
            result = self.runtime.invoke(self.mapping.function, {"Records": records})
        except Exception as error:
            logger.warning("%s failed a batch of %d: %s", self.mapping.function, len(records), error)
            return BatchOutcome(len(records), 0, tuple(batch_ids), error=f"{type(error).__name__}: {error}")
        failed: list[str] | None = []
        if self.mapping.report_batch_item_failures:
            failed = failed_message_ids(result, batch_ids)
        if failed is None:
            logger.warning("%s returned an invalid batchItemFailures; the batch fails", self.mapping.function)
            return BatchOutcome(len(records), 0, tuple(batch_ids), error="invalid batchItemFailures")
        done = [message for message in messages if message["MessageId"] not in failed]
        for start in range(0, len(done), _MAX_MESSAGES_PER_RECEIVE):
            chunk = done[start : start + _MAX_MESSAGES_PER_RECEIVE]
            self.sqs.delete_message_batch(
                QueueUrl=self.mapping.queue_url,
                Entries=[{"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(chunk)],
            )
        return BatchOutcome(len(records), len(done), tuple(failed))

    def start(self) -> None:
        if self._thread is None and self.mapping.enabled:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"sqs-{self.mapping.name}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.wait_seconds + 10)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                if self._stop.is_set():
                    break
                logger.exception("polling %s failed", self.mapping.queue_url)
                self._stop.wait(1)
