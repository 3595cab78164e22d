"""One call budget per provider organisation for the whole fleet, kept in DynamoDB.

Every Lambda (sync worker, write-back worker, read APIs) takes from the same budget before each
provider call, so together they stay under the provider's limits (providers/limits.py) and the
provider never has to answer 429 (which Xero also counts against the day).

How it stays cheap: a process books a small block of calls with one conditional ADD to the
organisation's budget item (storage/budgets.py). It books at the first moment the windows it has seen
leave room (now, or when older calls age out) and sleeps until then: waiting costs no request, and
waiters do not race for the same moment (each books after the others' bookings). A booking whose
bucket filled since the process last looked fails and answers the item as it is, and the process books
again from there; the rare booking that still went over (others booked beside it in the same window)
is given back. A block is only good for TOKEN_VALIDITY seconds from its start, and the windows are
counted a little longer than the provider's (MINUTE_WINDOW, DAY_WINDOW), so a call made late in its
block still falls inside the window that counted it. Blocks grow while a process uses them up and
shrink when it does not.

What is counted, per organisation: calls in any minute; calls in any day (Xero); QuickBooks batch
requests in any minute (a batch of n items also takes n calls); concurrent callers (a block holds a
lane from its start for LANE_SPAN seconds). Per app: Xero's 10,000 calls a minute, in a budget item of
its own, taken while Xero reports the app near that limit (X-AppMinLimit-Remaining, or an app-minute
429): until then Xero's own count, on every answer, shows there is room, and an app item taken by every
call of every organisation would double the budget's cost.

Priorities: scheduled and webhook syncs (BACKGROUND) may book only part of each window and one lane
fewer, so a payment's write-back or a user's request (INTERACTIVE) never waits behind a backfill.

Learning: a 429 pauses the budget for every Lambda until the provider's Retry-After; Xero's remaining
counts (X-MinLimit-Remaining, X-DayLimit-Remaining, X-AppMinLimit-Remaining) that are well below ours
add the calls we did not see (another client of the same app) to the window.

Deadlines: a caller waits for the budget inside its invocation only while that leaves it time;
otherwise `CallBudgetSpent` names the wait (nothing is booked), and the caller stops at a safe point
and comes back then.
"""

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from payedge_connect.models import Provider
from payedge_connect.observability import count_by_provider, logger
from payedge_connect.providers.errors import CallBudgetSpent
from payedge_connect.providers.limits import ProviderLimits
from payedge_connect.storage.budgets import BudgetState, BudgetStore

TOKEN_VALIDITY = 5.0
MINUTE_BUCKET = 2
# 60 s, plus a block's validity, a bucket's width and a second for the call's way to the provider.
MINUTE_WINDOW = 60.0 + TOKEN_VALIDITY + MINUTE_BUCKET + 1.0
DAY_BUCKET = 3600
# Day buckets are an hour wide: the window is counted an hour longer than the provider's day.
DAY_WINDOW = 24 * 3600.0 + DAY_BUCKET
# A block's lane: from its start until its last call (made before the block runs out) has surely returned.
LANE_SPAN = TOKEN_VALIDITY + 2.0
RESERVE_SHARE = 0.2  # of every window, kept for payments and users
MAX_BLOCK = 10
# A caller books a whole block this much later rather than a part of one at once.
BLOCK_PATIENCE = 4.0
# A caller with no deadline (an HTTP request: API Gateway gives up after 30 s) waits this long at most.
DEFAULT_LONGEST_WAIT = 10.0
LONGEST_WAIT = 90.0  # a minute window, waited out inside an invocation that has the time
DEADLINE_MARGIN = 15.0  # stop this long before the Lambda's deadline
# A 429 without a pause named (by the caller's backoff or Retry-After) pauses every caller this long.
DEFAULT_PAUSE_SECONDS = 5.0
CORRECTION_SECONDS = 10.0
# The app's budget is taken while Xero reports less than this priority of the app's minute left, and for
# APP_WATCH_SECONDS after it last did.
APP_WATCH_SHARE = 0.2
APP_WATCH_SECONDS = 60.0
_XERO_PROBLEM_LIMITS = {"minute": "minute", "day": "day", "concurrent": "concurrent", "appminute": "app minute"}


class Priority(StrEnum):
    INTERACTIVE = "interactive"  # a payment's write-back, a user's request, the console
    BACKGROUND = "background"  # scheduled and webhook syncs


@dataclass(frozen=True)
class Hold:
    """Why and until when (epoch seconds) a caller must wait."""

    limit: str
    until: float


@dataclass(frozen=True)
class Slot:
    """The first moment `calls` calls (at least the ones asked for) fit every window, and what held them
    back until then (None: they fit now)."""

    at: float
    calls: int
    held_by: str | None = None


def _bucket(moment: float, width: int) -> int:
    return int(moment) // width * width


def _room(counts: Mapping[int, int], start: int, width: int, window: float, capacity: int) -> int:
    """How many more calls the bucket starting at `start` may count with every window that counts it (a
    window ending at t counts the buckets starting in (t - window, t]) staying within `capacity`."""
    near = {s: c for s, c in counts.items() if start - window < s < start + window}
    # A window's count only grows where a bucket starts: the fullest window counting `start` ends at
    # `start` or at a later bucket's start.
    ends = [start] + [s for s in near if start < s < start + window]
    fullest = max(sum(c for s, c in near.items() if end - window < s <= end) for end in ends)
    return capacity - fullest


def _capacity(limit: int, priority: Priority) -> int:
    if priority is Priority.BACKGROUND:
        return max(1, int(limit * (1 - RESERVE_SHARE)))
    return limit


def _lanes_allowed(limits: ProviderLimits, priority: Priority) -> int:
    concurrent = limits.concurrent or 0
    return concurrent - 1 if priority is Priority.BACKGROUND and concurrent > 1 else concurrent


def _other_lanes(state: BudgetState, holder: str, begins: float) -> list[float]:
    """When the other holders' lanes that overlap a lane beginning at `begins` end."""
    return [
        until
        for name, until in state.lanes.items()
        if name != holder and until > begins and until - LANE_SPAN < begins + LANE_SPAN
    ]


def _fits(
    state: BudgetState,
    limits: ProviderLimits,
    moment: float,
    *,
    priority: Priority,
    holder: str,
    units: int,
    batch: bool,
) -> tuple[int, str | None]:
    """How many calls of `priority` fit from `moment`, at most; and the limit that keeps `units` from
    fitting (None: they fit)."""
    if state.paused_until > moment:
        return 0, state.pause_limit or "minute"
    if limits.concurrent and len(_other_lanes(state, holder, moment)) >= _lanes_allowed(limits, priority):
        return 0, "concurrent"
    room = _room(
        state.minute,
        _bucket(moment, MINUTE_BUCKET),
        MINUTE_BUCKET,
        MINUTE_WINDOW,
        _capacity(limits.per_minute, priority),
    )
    if room < units:
        return room, "minute"
    if limits.per_day:
        day = _room(state.day, _bucket(moment, DAY_BUCKET), DAY_BUCKET, DAY_WINDOW, _capacity(limits.per_day, priority))
        if day < units:
            return day, "day"
        room = min(room, day)
    if batch and limits.batch_per_minute:
        batches = _room(
            state.batch,
            _bucket(moment, MINUTE_BUCKET),
            MINUTE_BUCKET,
            MINUTE_WINDOW,
            _capacity(limits.batch_per_minute, priority),
        )
        if batches < 1:
            return 0, "batch"
    return room, None


def _over(state: BudgetState, limits: ProviderLimits, moment: float, *, holder: str, batch: bool) -> bool:
    """Whether a booking from `moment` (already counted in `state`) takes any window past the provider's
    own limit, or one lane too many."""
    if limits.concurrent and len(_other_lanes(state, holder, moment)) >= limits.concurrent:
        return True
    minute = _bucket(moment, MINUTE_BUCKET)
    if _room(state.minute, minute, MINUTE_BUCKET, MINUTE_WINDOW, limits.per_minute) < 0:
        return True
    if limits.per_day and _room(state.day, _bucket(moment, DAY_BUCKET), DAY_BUCKET, DAY_WINDOW, limits.per_day) < 0:
        return True
    return bool(
        batch
        and limits.batch_per_minute
        and _room(state.batch, minute, MINUTE_BUCKET, MINUTE_WINDOW, limits.batch_per_minute) < 0
    )


def next_slot(
    state: BudgetState,
    limits: ProviderLimits,
    now: float,
    *,
    priority: Priority,
    holder: str = "",
    units: int = 1,
    batch: bool = False,
    want: int = 1,
) -> Slot:
    """The first moment from `now` at which `units` calls of `priority` fit every window (and how many,
    up to `want`, fit then), as far as `state` shows. Room only appears when something ends: a pause,
    another holder's lane, or a bucket ageing out of its window; those are the moments tried."""
    moments = {now, state.paused_until}
    moments |= {s + MINUTE_WINDOW for s in state.minute} | {s + MINUTE_WINDOW for s in state.batch}
    moments |= {s + DAY_WINDOW for s in state.day} | set(state.lanes.values())
    held_by, first = None, None
    for moment in sorted(m for m in moments if m >= now):
        room, limit = _fits(state, limits, moment, priority=priority, holder=holder, units=units, batch=batch)
        if limit is None and first is None:
            first = Slot(moment, max(units, min(want, room)), held_by)
        if first is not None and (room >= want or moment - first.at > BLOCK_PATIENCE):
            # A whole block a moment later costs one booking instead of several small ones.
            return first if room < want else Slot(moment, want, held_by)
        if first is None:
            held_by = limit  # what still held the calls back just before they fit
    if first is not None:
        return first
    raise ValueError(f"{units} calls are more than the {held_by} window of this budget holds")


def hold_for(
    state: BudgetState,
    limits: ProviderLimits,
    now: float,
    *,
    priority: Priority,
    holder: str = "",
    units: int = 1,
    batch: bool = False,
) -> Hold | None:
    """What holds `units` calls of `priority` back now, and until when (None: they may go)."""
    slot = next_slot(state, limits, now, priority=priority, holder=holder, units=units, batch=batch)
    return None if slot.at <= now else Hold(slot.held_by or "minute", slot.at)


def _aged_out(state: BudgetState, now: float) -> list[str]:
    """Attributes of the item no window counts any more (removed with the next booking)."""
    names = [f"m{start}" for start in state.minute if start + MINUTE_WINDOW <= now]
    names += [f"q{start}" for start in state.batch if start + MINUTE_WINDOW <= now]
    names += [f"d{start}" for start in state.day if start + DAY_WINDOW <= now]
    names += [f"l{holder}" for holder, until in state.lanes.items() if until <= now]
    return names[:20]


@dataclass
class _Block:
    """Calls a thread of this process may still make without asking DynamoDB, from `good_from`."""

    left: int = 0
    size: int = 0
    good_from: float = 0.0
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
        self._app_watched_until = 0.0
        self._blocks: dict[int, _Block] = {}
        self._lock = threading.Lock()
        self._max_block = max(MAX_BLOCK, limits.per_minute // 100)

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
        thread = threading.get_ident()
        with self._lock:
            block = self._blocks.setdefault(thread, _Block())
            now = self._clock()
            # A pause (a 429 this process saw) voids the block in hand.
            if batch or block.left < units or block.good_until <= now or self._state.paused_until > now:
                self._book(
                    block,
                    holder=f"{self.holder}-{thread}",
                    priority=priority,
                    units=units,
                    batch=batch,
                    time_left=time_left,
                )
            block.left -= units
            start = block.good_from
        now = self._clock()
        if start > now:
            self._wait(start - now)

    def _book(
        self,
        block: _Block,
        *,
        holder: str,
        priority: Priority,
        units: int,
        batch: bool,
        time_left: Callable[[], float] | None,
    ) -> None:
        """Book this thread's next block: at the first moment it fits, as far as the item shows."""
        # A block used up in time earns a bigger one; a block left unused, a smaller one.
        if block.size:
            used = block.size - block.left
            block.next_size = min(self._max_block, block.next_size * 2) if block.left <= 0 else max(1, used)
        want = units if batch else max(units, block.next_size)
        if self.app is not None and self._app_watched_until > self._clock():
            self.app.take(priority=priority, units=want, time_left=time_left)
        while True:
            now = self._clock()
            slot = next_slot(
                self._state, self.limits, now, priority=priority, holder=holder, units=units, batch=batch, want=want
            )
            if slot.at > now and slot.at - now > _longest_wait(time_left):
                raise CallBudgetSpent(slot.held_by or "minute", slot.at - now)
            booked, self._state = self.store.book(
                self.provider,
                self.scope,
                self._counts(slot.at, slot.calls, batch),
                ceilings=self._ceilings(slot, priority, batch),
                starts=slot.at,
                now=now,
                lane=(holder, slot.at + LANE_SPAN) if self.limits.concurrent else None,
                aged_out=_aged_out(self._state, now),
            )
            self._fresh_at = now
            if not booked:
                continue  # the bucket filled since we looked: book again from the item as it is
            if _over(self._state, self.limits, slot.at, holder=holder, batch=batch):
                # Others booked beside us in the same window: give ours back and book again.
                self._state = self.store.add(
                    self.provider, self.scope, self._counts(slot.at, -slot.calls, batch), now=now, free_lane=holder
                )
                continue
            self.granted += slot.calls
            block.size = block.left = slot.calls
            block.good_from = max(now, slot.at)
            block.good_until = block.good_from + TOKEN_VALIDITY
            if slot.at > now:
                logger.debug(
                    "Booked the call budget ahead", extra={"limit": slot.held_by, "delay_s": round(slot.at - now, 2)}
                )
            return

    def _counts(self, moment: float, calls: int, batch: bool) -> dict[str, int]:
        counts = {f"m{_bucket(moment, MINUTE_BUCKET)}": calls}
        if self.limits.per_day:
            counts[f"d{_bucket(moment, DAY_BUCKET)}"] = calls
        if batch and self.limits.batch_per_minute:
            counts[f"q{_bucket(moment, MINUTE_BUCKET)}"] = 1 if calls > 0 else -1
        return counts

    def _ceilings(self, slot: Slot, priority: Priority, batch: bool) -> dict[str, int]:
        """The most the buckets booked into may hold before the booking, for it to fit as we saw: a bucket
        that others filled since makes the booking fail and answer what they did. Only the booked bucket
        is guarded: conditions on every bucket of the window made bookings lose to changes that still left
        room (measured: more requests a call, not fewer); a booking that finds itself over after all
        gives its calls back. Each bucket is guarded by its own window's room: the day's (Xero), guarded by
        the minute's, failed a booking whenever another caller booked in the same hour (measured: half of
        Xero's bookings lost under six Lambdas)."""
        minute = _bucket(slot.at, MINUTE_BUCKET)
        minute_room = _room(
            self._state.minute, minute, MINUTE_BUCKET, MINUTE_WINDOW, _capacity(self.limits.per_minute, priority)
        )
        ceilings = {f"m{minute}": self._state.minute.get(minute, 0) + minute_room - slot.calls}
        if self.limits.per_day:
            day = _bucket(slot.at, DAY_BUCKET)
            day_room = _room(self._state.day, day, DAY_BUCKET, DAY_WINDOW, _capacity(self.limits.per_day, priority))
            ceilings[f"d{day}"] = self._state.day.get(day, 0) + day_room - slot.calls
        if batch and self.limits.batch_per_minute:
            batches = _room(
                self._state.batch,
                minute,
                MINUTE_BUCKET,
                MINUTE_WINDOW,
                _capacity(self.limits.batch_per_minute, priority),
            )
            ceilings[f"q{minute}"] = self._state.batch.get(minute, 0) + batches - 1
        return ceilings

    def _wait(self, delay: float) -> None:
        self.waits += 1
        self.waited_seconds += delay
        count_by_provider("ThrottledWaits", self.provider)
        self._sleep(delay)

    # ------------------------------------------------------------------ learning

    def throttled(self, retry_after: float | None, problem: str | None = None) -> None:
        """The provider answered 429: every caller of this organisation (or app) pauses."""
        count_by_provider("Provider429s", self.provider)
        limit = _XERO_PROBLEM_LIMITS.get((problem or "").lower(), "minute")
        if limit == "app minute" and self.app is not None:
            self._app_watched_until = self._clock() + APP_WATCH_SECONDS
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
        if (
            app_minute is not None
            and self.app is not None
            and app_minute < self.app.limits.per_minute * APP_WATCH_SHARE
        ):
            self._app_watched_until = self._clock() + APP_WATCH_SECONDS
            self.app._correct("minute", app_minute, look=True)

    def _correct(self, window: str, provider_remaining: int, *, look: bool = False) -> None:
        with self._lock:
            now = self._clock()
            if now - self._corrected_at.get(window, 0.0) < CORRECTION_SECONDS:
                return
            # Only against a state seen this second (others' bookings since would look like unseen calls);
            # `look`: read it now if it is older.
            if now - self._fresh_at > 1.0:
                if not look:
                    return
                self._state, self._fresh_at = self.store.load(self.provider, self.scope), now
            counts, span, bucket, limit = (
                (self._state.minute, MINUTE_WINDOW, MINUTE_BUCKET, self.limits.per_minute)
                if window == "minute"
                else (self._state.day, DAY_WINDOW, DAY_BUCKET, self.limits.per_day or 0)
            )
            used = sum(count for start, count in counts.items() if now - span < start <= now)
            unseen = (limit - used) - provider_remaining
            self._corrected_at[window] = now
            if unseen <= max(2, limit // 10 if window == "minute" else limit // 100):
                return  # ours counts bookings before the calls arrive, and a block or two may be in flight
            logger.info("The provider counts calls we did not", extra={"window": window, "unseen": unseen})
            self._state = self.store.add(
                self.provider, self.scope, {f"{window[0]}{_bucket(now, bucket)}": unseen}, now=now
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


def _longest_wait(time_left: Callable[[], float] | None) -> float:
    return DEFAULT_LONGEST_WAIT if time_left is None else min(LONGEST_WAIT, time_left() - DEADLINE_MARGIN)


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
