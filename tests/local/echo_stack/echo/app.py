"""Test-only function of the echo stack: shows the tests what the local stack delivered to it.

- HTTP (payload 2.0): answers 200 with {"event": <the event>}; a few path names ask for other result
  shapes instead (see RESULTS), "boom" raises.
- SQS: a record whose body is "fail" is reported in batchItemFailures, "crash" raises (the whole batch
  fails), "echo" is copied as JSON to the outbox queue (through a plain boto3 client, as the service's
  functions do); any other body just succeeds.
- Anything else (a schedule's input): returns {"received": <the event>, "function": <its name>}.
"""

import base64
import json
import os
from typing import Any

import boto3

RESULTS: dict[str, Any] = {
    "plain": {"hello": "world"},
    "text": "just text",
    "binary": {
        "statusCode": 200,
        "headers": {"content-type": "image/png"},
        "isBase64Encoded": True,
        "body": base64.b64encode(b"\x89PNG binary").decode(),
    },
    "cookies": {"statusCode": 201, "headers": {"x-echo": "yes"}, "cookies": ["a=1; Path=/", "b=2"], "body": "made"},
    "malformed": {"statusCode": "two hundred"},
}


def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    if "Records" in event:
        return _sqs_batch(event["Records"])
    if "requestContext" not in event:
        return {"received": event, "function": context.function_name}
    name = (event.get("pathParameters") or {}).get("name", "")
    if name == "boom":
        raise RuntimeError("boom requested")
    if name in RESULTS:
        return RESULTS[name]
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps({"event": event})}


def _sqs_batch(records: list[dict[str, Any]]) -> dict[str, Any]:
    failures = []
    for record in records:
        if record["body"] == "crash":
            raise RuntimeError("crash requested")
        if record["body"] == "fail":
            failures.append({"itemIdentifier": record["messageId"]})
        if record["body"] == "echo":
            boto3.client("sqs").send_message(QueueUrl=os.environ["OUTBOX_URL"], MessageBody=json.dumps(record))
    return {"batchItemFailures": failures}
