"""One call budget per provider organisation for the whole fleet, kept in DynamoDB.

Every Lambda (sync worker, write-back worker, read APIs) takes from the same budget before each
provider call, so together they stay under the provider's limits (providers/limits.py) and the
provider never has to answer 429 (which Xero also counts against the day).

How it stays cheap: a process takes a small block of calls with one atomic ADD to the organisation's
budget item (storage/budgets.py), which answers the whole item; if the window went over, the excess
is given back with a second ADD and the process waits. It spends the block locally. A block is only good
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
counts (X-MinLimit-Remaining, X-DayLimit-Remaining, X-AppMinLimit-Remaining) that are well below ours
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
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from payedge_connect.models import Provider
from payedge_connect.observability import logger, metrics
from payedge_connect.providers.errors import CallBudgetSpent
from payedge_connect.providers.limits import ProviderLimits
from payedge_connect.storage.budgets import BudgetState, BudgetStore

TOKEN_VALIDITY = 3.0
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
LONGEST_WAIT = 90.0  # a minute window, waited out inside an invocation that has the time
DEADLINE_MARGIN = 15.0  # stop this long before the Lambda's deadline
# A 429 without a pause named (by the caller's backoff or Retry-After) pauses every caller this long.
DEFAULT_PAUSE_SECONDS = 5.0
CORRECTION_SECONDS = 10.0
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


def _other_lanes(state: BudgetState, now: float, holder: str) -> list[float]:
    return [until for name, until in state.lanes.items() if until > now and name != holder]


def _lanes_allowed(limits: ProviderLimits, priority: Priority) -> int:
    concurrent = limits.concurrent or 0
    return concurrent - 1 if priority is Priority.BACKGROUND and concurrent > 1 else concurrent


def hold_for(
    state: BudgetState,
    limits: ProviderLimits,
    now: float,
    *,
    priority: Priority,
    holder: str = "",
    units: int = 1,
    batch: bool = False,
    block: int = 1,
) -> Hold | None:
    """What holds `units` calls of `priority` back now (None: they may go). A caller held by the minute
    is told to wait until `block` calls fit: waking for every call that ages out costs a write each."""
    if state.paused_until > now:
        return Hold(state.pause_limit or "minute", state.paused_until)
    if limits.concurrent and holder not in {name for name, until in state.lanes.items() if until > now}:
        others = sorted(_other_lanes(state, now, holder))
        allowed = _lanes_allowed(limits, priority)
        if len(others) >= allowed:
            return Hold("concurrent", others[len(others) - allowed])
    minute_capacity = _capacity(limits.per_minute, priority)
    at = _fits_at(state.minute, now, MINUTE_WINDOW, minute_capacity, units)
    if at is not None:
        block = min(max(block, units), max(units, minute_capacity // 10))
        return Hold("minute", _fits_at(state.minute, now, MINUTE_WINDOW, minute_capacity, block) or at)
    if limits.per_day:
        at = _fits_at(state.day, now, DAY_WINDOW, _capacity(limits.per_day, priority), units)
        if at is not None:
            return Hold("day", at)
    if batch and limits.batch_per_minute:
        at = _fits_at(state.batch, now, MINUTE_WINDOW, _capacity(limits.batch_per_minute, priority), 1)
        if at is not None:
            return Hold("batch", at)
    return None


def available(state: BudgetState, limits: ProviderLimits, now: float, *, priority: Priority) -> int:
    """Calls of `priority` that fit every window now."""
    room = _capacity(limits.per_minute, priority) - _used(state.minute, now, MINUTE_WINDOW)
    if limits.per_day:
        room = min(room, _capacity(limits.per_day, priority) - _used(state.day, now, DAY_WINDOW))
    return room


def _aged_out(state: BudgetState, now: float) -> list[str]:
    """Attributes of the item no window counts any more (removed with the next grant)."""
    names = [f"m{start}" for start in state.minute if start + MINUTE_WINDOW <= now]
    names += [f"q{start}" for start in state.batch if start + MINUTE_WINDOW <= now]
    names += [f"d{start}" for start in state.day if start + DAY_WINDOW <= now]
    names += [f"l{holder}" for holder, until in state.lanes.items() if until + LANE_SECONDS <= now]
    return names[:20]


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
        self.granted = 0
        self._clock = clock
        self._sleep = sleep
        self._state = BudgetState()
        self._fresh_at = 0.0
        self._corrected_at: dict[str, float] = {}
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
        holder = f"{self.holder}-{thread}"
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
            want = units if batch else max(units, block.next_size)
            now = self._clock()
            # What we last saw undercounts (others took since): a hold it shows is real.
            hold = hold_for(
                self._state, self.limits, now, priority=priority, holder=holder, units=units, batch=batch, block=want
            )
            if hold is not None:
                return hold
            granted = max(units, min(want, available(self._state, self.limits, now, priority=priority)))
            counts = self._counts(now, granted, batch)
            had_lane = holder in {name for name, until in self._state.lanes.items() if until > now}
            lane = (holder, now + LANE_SECONDS) if self.limits.concurrent else None
            self._state = self.store.add(
                self.provider, self.scope, counts, now=now, lane=lane, aged_out=_aged_out(self._state, now)
            )
            self._fresh_at = now
            over = self._overdraft(self._state, now, holder, priority, granted, had_lane=had_lane, batch=batch)
            if over == 0:
                self._keep(block, granted, units, now)
                return None
            if over < granted and granted - over >= units:
                # Part of the block went over: keep what fits, give the rest back.
                self._state = self.store.add(self.provider, self.scope, self._counts(now, -over, False), now=now)
                self._keep(block, granted - over, units, now)
                return None
            free_lane = holder if lane is not None and not had_lane else None
            self._state = self.store.add(
                self.provider, self.scope, self._counts(now, -granted, batch), now=now, free_lane=free_lane
            )
            return hold_for(
                self._state, self.limits, now, priority=priority, holder=holder, units=units, batch=batch, block=want
            ) or Hold("minute", now)

    def _counts(self, now: float, calls: int, batch: bool) -> dict[str, int]:
        counts = {f"m{int(now) // MINUTE_BUCKET * MINUTE_BUCKET}": calls}
        if self.limits.per_day:
            counts[f"d{int(now) // DAY_BUCKET * DAY_BUCKET}"] = calls
        if batch and self.limits.batch_per_minute:
            counts[f"q{int(now) // MINUTE_BUCKET * MINUTE_BUCKET}"] = 1 if calls > 0 else -1
        return counts

    def _overdraft(
        self,
        state: BudgetState,
        now: float,
        holder: str,
        priority: Priority,
        granted: int,
        *,
        had_lane: bool,
        batch: bool,
    ) -> int:
        """How many of the calls just granted went over (all of them: a pause, a lane or a batch too many)."""
        if state.paused_until > now:
            return granted
        if (
            self.limits.concurrent
            and not had_lane
            and len(_other_lanes(state, now, holder)) >= _lanes_allowed(self.limits, priority)
        ):
            return granted
        batches = _used(state.batch, now, MINUTE_WINDOW)
        if batch and self.limits.batch_per_minute and batches > _capacity(self.limits.batch_per_minute, priority):
            return granted
        return max(0, -available(state, self.limits, now, priority=priority))

    def _keep(self, block: _Block, granted: int, units: int, now: float) -> None:
        self.granted += granted
        block.size, block.left, block.good_until = granted, granted - units, now + TOKEN_VALIDITY

    def _wait(self, hold: Hold, time_left: Callable[[], float] | None) -> None:
        delay = max(0.0, hold.until - self._clock()) + random.uniform(0.0, 0.5)  # noqa: S311 - jitter
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
        with self._lock:
            now = self._clock()
            until = now + seconds
            self.store.pause(self.provider, self.scope, until=until, limit=limit, now=now)
            if until > self._state.paused_until:
                self._state = replace(self._state, paused_until=until, pause_limit=limit)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn from the remaining counts the provider reports (Xero), if well below ours."""
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
        with self._lock:
            now = self._clock()
            # Only against a state seen this second (others' grants since would look like unseen calls),
            # and at most every CORRECTION_SECONDS.
            if now - self._fresh_at > 1.0 or now - self._corrected_at.get(window, 0.0) < CORRECTION_SECONDS:
                return
            counts, span, bucket, limit = (
                (self._state.minute, MINUTE_WINDOW, MINUTE_BUCKET, self.limits.per_minute)
                if window == "minute"
                else (self._state.day, DAY_WINDOW, DAY_BUCKET, self.limits.per_day or 0)
            )
            unseen = (limit - _used(counts, now, span)) - provider_remaining
            if unseen <= max(2, limit // 10 if window == "minute" else limit // 100):
                return  # ours counts grants before the calls arrive, and a block or two may be in flight
            self._corrected_at[window] = now
            logger.info("The provider counts calls we did not", extra={"window": window, "unseen": unseen})
            self._state = self.store.add(
                self.provider, self.scope, {f"{window[0]}{int(now) // bucket * bucket}": unseen}, now=now
            )
            self._fresh_at = now

    # ------------------------------------------------------------------ showing

    def hold(self, *, priority: Priority = Priority.INTERACTIVE) -> Hold | None:
        """What holds calls back right now, read fresh from DynamoDB (for the connection's view)."""
        state = self.store.load(self.provider, self.scope)
        with self._lock:
            self._state, self._fresh_at = state, self._clock()
        return hold_for(state, self.limits, self._fresh_at, priority=priority)


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
    Outside a function (no metrics namespace) or with metrics disabled there is nowhere to send it."""
    if metrics.namespace is None or is_metrics_disabled():
        return
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=metrics.namespace) as metric:
        metric.add_dimension(name="provider", value=provider.value)
