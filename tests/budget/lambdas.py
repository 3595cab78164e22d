"""A Lambda stand-in for the cross-process budget tests: an OS process of its own that takes from one
organisation's budget in DynamoDB (the moto server) and reports when each call was allowed.

Time runs SPEED times faster than the wall clock, so minutes of budget fit in seconds of test."""

import time
from dataclasses import dataclass
from typing import Any

import boto3

from payedge_connect.models import Provider
from payedge_connect.providers.budget import CallBudget, Priority
from payedge_connect.providers.errors import CallBudgetSpent
from payedge_connect.providers.limits import ProviderLimits
from payedge_connect.storage.budgets import BudgetStore

SPEED = 10.0


def fast_clock() -> float:
    return time.time() * SPEED


def fast_sleep(seconds: float) -> None:
    time.sleep(seconds / SPEED)


@dataclass(frozen=True)
class Caller:
    name: str
    endpoint: str
    table: str
    limits: ProviderLimits
    priority: Priority
    duration: float  # fast-clock seconds to call for, from when every caller is ready
    throttle_after: float | None = None  # fast-clock seconds after the start at which this caller sees a 429
    call_seconds: float = 0.5  # fast-clock seconds a call takes


def run_caller(caller: Caller, ready: Any, results: Any) -> None:
    """Call until the duration is over, starting with the others (`ready`: a Barrier); put what
    happened on `results` (a Queue)."""
    client = boto3.client(
        "dynamodb",
        endpoint_url=caller.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    store = BudgetStore(caller.table, client=client)
    budget = CallBudget(store, Provider.XERO, "org-1", caller.limits, clock=fast_clock, sleep=fast_sleep)
    calls: list[float] = []
    throttled_at = None
    ready.wait()
    start = fast_clock()
    while fast_clock() < start + caller.duration:
        if caller.throttle_after is not None and throttled_at is None and fast_clock() >= start + caller.throttle_after:
            throttled_at = fast_clock()
            budget.throttled(30.0, "minute")
        try:
            budget.take(priority=caller.priority, time_left=lambda: 60.0)
        except CallBudgetSpent as spent:
            fast_sleep(spent.retry_after or 1.0)  # the queue brings the work back after the named delay
            continue
        calls.append(fast_clock())
        fast_sleep(caller.call_seconds)
    results.put(
        {
            "name": caller.name,
            "calls": calls,
            "requests": store.requests,
            "lost": store.lost,
            "throttled_at": throttled_at,
            "waits": budget.waits,
            "granted": budget.granted,
            "start": start,
        }
    )
