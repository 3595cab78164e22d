"""One call budget per provider organisation for the whole fleet, kept in DynamoDB.

Every Lambda (sync worker, write-back worker, read APIs) takes from the same budget before each
provider call, so together they stay under the provider's limits (providers/limits.py) and the
provider never has to answer 429 (which Xero also counts against the day).

How it stays cheap: a process takes a small block of calls with one conditional write of the
organisation's budget item (storage/budgets.py) and spends the block locally. A block is only good
for TOKEN_VALIDITY seconds, and the windows are counted a little longer than the provider's
(MINUTE_WINDOW, DAY_WINDOW), so a call made late in its block still falls inside the window that
counted it. Blocks grow while a process uses them up and shrink when it does not.

What is counted, per organisation: calls in any minute; calls in any day (Xero); QuickBooks batch
requests in any minute (a batch of n items also takes n calls); concurrent callers (a process holds
a lane while it calls, renewed with each block and free LANE_SECONDS after its last one). Per app:
Xero's 10,000 calls a minute, in a budget item of its own.

Priorities: scheduled and webhook syncs (BACKGROUND) may use only part of each window and one lane
fewer, so a payment's write-back or a user's request (INTERACTIVE) never waits behind a backfill.

Learning: a 429 pauses the budget for every Lambda until the provider's Retry-After; Xero's remaining
counts (X-MinLimit-Remaining, X-DayLimit-Remaining, X-AppMinLimit-Remaining) that are lower than ours
add the calls we did not see (another client of the same app) to the window.

Deadlines: a caller waits for the budget inside its invocation only while that leaves it time;
otherwise `CallBudgetSpent` names the wait, and the caller stops at a safe point and comes back then.
"""

import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from payedge_connect.models import Provider
from payedge_connect.observability import logger, metrics
from payedge_connect.providers.errors import CallBudgetSpent
from payedge_connect.providers.limits import ProviderLimits
from payedge_connect.storage.budgets import BudgetState, BudgetStore

TOKEN_VALIDITY = 2.0
MINUTE_BUCKET = 2
# 60 s, plus a block's validity, a bucket's width and a second for the call's way to the provider.
MINUTE_WINDOW = 60.0 + TOKEN_VALIDITY + MINUTE_BUCKET + 1.0
DAY_BUCKET = 3600
# Day buckets are an hour wide: the window is counted an hour longer than the provider's day.
DAY_WINDOW = 24 * 3600.0 + DAY_BUCKET
LANE_SECONDS = 5.0
RESERVE_SHARE = 0.2  # of every window, kept for payments and users
MAX_BLOCK = 10
# A caller with no deadline (an HTTP request: API Gateway gives up after 30 s) waits this long at most.
DEFAULT_LONGEST_WAIT = 10.0
LONGEST_WAIT = 60.0
DEADLINE_MARGIN = 15.0  # stop this long before the Lambda's deadline
# A 429 without a pause named (by the caller's backoff or Retry-After) pauses every caller this long.
DEFAULT_PAUSE_SECONDS = 5.0
_XERO_PROBLEM_LIMITS = {"minute": "minute", "day": "day", "concurrent": "concurrent", "appminute": "app minute"}


class Priority(StrEnum):
    INTERACTIVE = "interactive"  # a payment's write-back, a user's request, the console
    BACKGROUND = "background"  # scheduled and webhook syncs


@dataclass(frozen=True)
class Hold:
    """Why and until when (epoch seconds) a caller must wait."""

    limit: str
    until: float


def _live(counts: Mapping[int, int], now: float, window: float) -> list[tuple[int, int]]:
    return sorted((start, count) for start, count in counts.items() if start + window > now)


def _used(counts: Mapping[int, int], now: float, window: float) -> int:
    return sum(count for _, count in _live(counts, now, window))


def _fits_at(counts: Mapping[int, int], now: float, window: float, capacity: int, units: int) -> float | None:
    """None if `units` more calls fit in the window now; else when enough of the counted ones age out."""
    live = _live(counts, now, window)
    excess = sum(count for _, count in live) + units - capacity
    if excess <= 0:
        return None
    for start, count in live:
        excess -= count
        if excess <= 0:
            return start + window
    return now + window  # more units than the window holds: never asked for (blocks are capped)


def _capacity(limit: int, priority: Priority) -> int:
    if priority is Priority.BACKGROUND:
        return max(1, int(limit * (1 - RESERVE_SHARE)))
    return limit


def _added(counts: Mapping[int, int], now: float, window: float, bucket: int, units: int) -> dict[int, int]:
    """The window's live counts with `units` more in the current bucket (aged-out buckets dropped)."""
    kept = dict(_live(counts, now, window))
    start = int(now) // bucket * bucket
    kept[start] = kept.get(start, 0) + units
    return kept


def hold_for(state: BudgetState, limits: ProviderLimits, now: float, *, priority: Priority) -> Hold | None:
    """What would hold one ordinary call of `priority` back now (None: it may go)."""
    plan = plan_grant(state, limits, now, holder="", priority=priority, units=1, want=1, batch=False)
    return plan if isinstance(plan, Hold) else None


def plan_grant(
    state: BudgetState,
    limits: ProviderLimits,
    now: float,
    *,
    holder: str,
    priority: Priority,
    units: int,
    want: int,
    batch: bool,
) -> Hold | tuple[BudgetState, int]:
    """Either why `units` calls cannot be made now, or the next state with up to `want` calls granted."""
    if state.paused_until > now:
        return Hold(state.pause_limit or "minute", state.paused_until)
    lanes = {name: until for name, until in state.lanes.items() if until > now}
    if limits.concurrent and holder not in lanes:
        allowed = (
            limits.concurrent - 1 if priority is Priority.BACKGROUND and limits.concurrent > 1 else limits.concurrent
        )
        if len(lanes) >= allowed:
            return Hold("concurrent", sorted(lanes.values())[len(lanes) - allowed])
    minute_capacity = _capacity(limits.per_minute, priority)
    at = _fits_at(state.minute, now, MINUTE_WINDOW, minute_capacity, units)
    if at is not None:
        return Hold("minute", at)
    grant = min(max(want, units), minute_capacity - _used(state.minute, now, MINUTE_WINDOW))
    if limits.per_day:
        day_capacity = _capacity(limits.per_day, priority)
        at = _fits_at(state.day, now, DAY_WINDOW, day_capacity, units)
        if at is not None:
            return Hold("day", at)
        grant = min(grant, day_capacity - _used(state.day, now, DAY_WINDOW))
    batches = dict(_live(state.batch, now, MINUTE_WINDOW))
    if batch and limits.batch_per_minute:
        at = _fits_at(state.batch, now, MINUTE_WINDOW, _capacity(limits.batch_per_minute, priority), 1)
        if at is not None:
            return Hold("batch", at)
        batches = _added(state.batch, now, MINUTE_WINDOW, MINUTE_BUCKET, 1)
    if limits.concurrent:
        lanes[holder] = now + LANE_SECONDS
    following = BudgetState(
        version=state.version,
        minute=_added(state.minute, now, MINUTE_WINDOW, MINUTE_BUCKET, grant),
        day=_added(state.day, now, DAY_WINDOW, DAY_BUCKET, grant) if limits.per_day else {},
        batch=batches,
        lanes=lanes,
    )
    return following, grant


@dataclass
class _Block:
    """Calls a thread of this process may still make without asking DynamoDB."""

    left: int = 0
    size: int = 0
    good_until: float = 0.0
    next_size: int = 2


class CallBudget:
    """One organisation's (or app's) budget as this process takes from it: the last state it saw, and
    each thread's current block. Shared by every API object of the organisation in the process."""

    def __init__(
        self,
        store: BudgetStore,
        provider: Provider,
        scope: str,
        limits: ProviderLimits,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        app: "CallBudget | None" = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.scope = scope
        self.limits = limits
        self.app = app
        self.holder = uuid.uuid4().hex[:16]
        self.waits = 0
        self.waited_seconds = 0.0
        self._clock = clock
        self._sleep = sleep
        self._state = BudgetState()
        self._blocks: dict[int, _Block] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ taking

    def take(
        self,
        *,
        priority: Priority,
        units: int = 1,
        batch: bool = False,
        time_left: Callable[[], float] | None = None,
    ) -> None:
        """Wait until `units` calls (a batch request: its items) may be made, then count them.

        Raises CallBudgetSpent when the wait would not fit the caller's time (nothing is counted)."""
        if self.app is not None:
            self.app.take(priority=priority, units=units, time_left=time_left)
        while True:
            hold = self._try_take(priority, units, batch)
            if hold is None:
                return
            self._wait(hold, time_left)

    def _try_take(self, priority: Priority, units: int, batch: bool) -> Hold | None:
        thread = threading.get_ident()
        with self._lock:
            block = self._blocks.setdefault(thread, _Block())
            if not batch and block.left >= units and block.good_until > self._clock():
                block.left -= units
                return None
            # A block used up in time earns a bigger one; a block left unused, a smaller one.
            if block.size:
                used = block.size - block.left
                block.next_size = min(MAX_BLOCK, block.next_size * 2) if block.left == 0 else max(1, used)
                block.size = block.left = 0
            while True:
                now = self._clock()
                plan = plan_grant(
                    self._state,
                    self.limits,
                    now,
                    holder=f"{self.holder}.{thread}",
                    priority=priority,
                    units=units,
                    want=units if batch else max(units, block.next_size),
                    batch=batch,
                )
                if isinstance(plan, Hold):
                    return plan
                following, granted = plan
                stored = self.store.replace(self.provider, self.scope, following, now=now)
                if stored is not None:
                    self._state = stored  # someone else wrote first: plan again from what they wrote
                    continue
                self._state = following
                block.size, block.left, block.good_until = granted, granted - units, now + TOKEN_VALIDITY
                return None

    def _wait(self, hold: Hold, time_left: Callable[[], float] | None) -> None:
        delay = max(0.0, hold.until - self._clock()) + random.uniform(0.0, 0.25)  # noqa: S311 - jitter
        longest = DEFAULT_LONGEST_WAIT if time_left is None else min(LONGEST_WAIT, time_left() - DEADLINE_MARGIN)
        if delay > longest:
            raise CallBudgetSpent(hold.limit, delay)
        self.waits += 1
        self.waited_seconds += delay
        _count("ThrottledWaits", self.provider)
        logger.debug("Waiting for the call budget", extra={"limit": hold.limit, "delay_s": round(delay, 2)})
        self._sleep(delay)

    # ------------------------------------------------------------------ learning

    def throttled(self, retry_after: float | None, problem: str | None = None) -> None:
        """The provider answered 429: every caller of this organisation (or app) pauses."""
        _count("Provider429s", self.provider)
        limit = _XERO_PROBLEM_LIMITS.get((problem or "").lower(), "minute")
        if limit == "app minute" and self.app is not None:
            self.app.throttled(retry_after)
            return
        seconds = retry_after if retry_after is not None else DEFAULT_PAUSE_SECONDS
        logger.warning("The provider throttled us", extra={"limit": limit, "retry_after_s": seconds})

        def paused(state: BudgetState, now: float) -> BudgetState:
            return replace(state, paused_until=max(state.paused_until, now + seconds), pause_limit=limit)

        self._write(paused)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn from the remaining counts the provider reports (Xero), if lower than ours."""
        if not self.limits.reports_remaining:
            return
        minute = _header_int(headers, "X-MinLimit-Remaining")
        if minute is not None:
            self._correct("minute", minute)
        day = _header_int(headers, "X-DayLimit-Remaining")
        if day is not None and self.limits.per_day:
            self._correct("day", day)
        app_minute = _header_int(headers, "X-AppMinLimit-Remaining")
        if app_minute is not None and self.app is not None:
            self.app._correct("minute", app_minute)

    def _correct(self, window: str, provider_remaining: int) -> None:
        def corrected(state: BudgetState, now: float) -> BudgetState | None:
            counts, span, bucket, limit = (
                (state.minute, MINUTE_WINDOW, MINUTE_BUCKET, self.limits.per_minute)
                if window == "minute"
                else (state.day, DAY_WINDOW, DAY_BUCKET, self.limits.per_day or 0)
            )
            unseen = (limit - _used(counts, now, span)) - provider_remaining
            if unseen <= 1:  # ours counts grants before the calls arrive: never lower than the provider's
                return None
            logger.info("The provider counts calls we did not", extra={"window": window, "unseen": unseen})
            added = _added(counts, now, span, bucket, unseen)
            return replace(state, minute=added) if window == "minute" else replace(state, day=added)

        self._write(corrected)

    def _write(self, change: Callable[[BudgetState, float], BudgetState | None]) -> None:
        with self._lock:
            while True:
                now = self._clock()
                following = change(self._state, now)
                if following is None:
                    return
                stored = self.store.replace(self.provider, self.scope, following, now=now)
                if stored is None:
                    self._state = following
                    return
                self._state = stored

    # ------------------------------------------------------------------ showing

    def hold(self, *, priority: Priority = Priority.INTERACTIVE) -> Hold | None:
        """What holds calls back right now, read fresh from DynamoDB (for the connection's view)."""
        state = self.store.load(self.provider, self.scope)
        with self._lock:
            self._state = state
        return hold_for(state, self.limits, self._clock(), priority=priority)


@dataclass(frozen=True)
class CallerBudget:
    """One caller's way into an organisation's budget: its priority and its deadline (what an API object
    of the organisation takes from before each call)."""

    budget: CallBudget
    priority: Priority = Priority.INTERACTIVE
    time_left: Callable[[], float] | None = None

    def take(self, *, units: int = 1, batch: bool = False) -> None:
        self.budget.take(priority=self.priority, units=units, batch=batch, time_left=self.time_left)

    def throttled(self, retry_after: float | None, problem: str | None = None) -> None:
        self.budget.throttled(retry_after, problem)

    def observe(self, headers: Mapping[str, str]) -> None:
        self.budget.observe(headers)


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _count(name: str, provider: Provider) -> None:
    """One count with the provider as its dimension, flushed at once (not with the function's metrics).
    Outside a function (no metrics namespace configured) there is nowhere to send it."""
    if metrics.namespace is None:
        return
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=metrics.namespace) as metric:
        metric.add_dimension(name="provider", value=provider.value)
