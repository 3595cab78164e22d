"""The shared call budget in one process: what it grants, holds and learns (AWS in moto, in-process).

Two `CallBudget` objects on one store stand for two Lambdas: they share nothing but the DynamoDB item.
"""

import json

import pytest

from payedge_connect.models import Provider
from payedge_connect.observability import metrics
from payedge_connect.providers.budget import (
    DAY_WINDOW,
    MINUTE_WINDOW,
    TOKEN_VALIDITY,
    CallBudget,
    Priority,
    hold_for,
)
from payedge_connect.providers.errors import CallBudgetSpent
from payedge_connect.providers.limits import ProviderLimits, limits_for
from payedge_connect.storage.budgets import BudgetState, BudgetStore


class FakeTime:
    """A clock the budget sleeps on: sleeping moves it forward."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def store(records_table: str) -> BudgetStore:
    return BudgetStore(records_table)


def lambda_budget(store: BudgetStore, fake_time: FakeTime, limits: ProviderLimits) -> CallBudget:
    return CallBudget(store, Provider.XERO, "org-1", limits, clock=fake_time.clock, sleep=fake_time.sleep)


XERO = limits_for(Provider.XERO, xero_daily_call_limit=1000)


def no_deadline() -> float:
    return 10_000.0


# ---------------------------------------------------------------------------------------------- planning


def test_a_take_counts_its_block_in_the_minute_and_the_day_and_holds_a_lane(
    store: BudgetStore, fake_time: FakeTime
) -> None:
    budget = lambda_budget(store, fake_time, XERO)
    budget.take(priority=Priority.INTERACTIVE, time_left=no_deadline)
    state = store.load(Provider.XERO, "org-1")
    assert sum(state.minute.values()) == budget.granted >= 1
    assert sum(state.day.values()) == budget.granted
    assert len(state.lanes) == 1


def test_background_work_leaves_a_fifth_of_the_minute_to_payments_and_users() -> None:
    full = BudgetState(minute={1000: 48})
    background = hold_for(full, XERO, 1001.0, priority=Priority.BACKGROUND)
    interactive = hold_for(full, XERO, 1001.0, priority=Priority.INTERACTIVE)
    assert background is not None and background.limit == "minute"
    assert background.until == 1000 + MINUTE_WINDOW
    assert interactive is None


def test_a_spent_day_holds_every_caller_until_its_oldest_hour_ages_out() -> None:
    spent = BudgetState(day={3600 * 10: 600, 3600 * 11: 400})
    hold = hold_for(spent, XERO, 3600 * 12.0, priority=Priority.INTERACTIVE)
    assert hold is not None and hold.limit == "day"
    assert hold.until == 3600 * 10 + DAY_WINDOW


def test_a_sixth_concurrent_caller_waits_for_a_lane_and_background_work_keeps_one_free() -> None:
    lanes = {f"holder-{n}": 1005.0 + n for n in range(4)}
    state = BudgetState(lanes=lanes)
    assert hold_for(state, XERO, 1001.0, priority=Priority.INTERACTIVE) is None
    background = hold_for(state, XERO, 1001.0, priority=Priority.BACKGROUND)
    assert background is not None and background.limit == "concurrent" and background.until == 1005.0
    state.lanes["holder-4"] = 1010.0
    interactive = hold_for(state, XERO, 1001.0, priority=Priority.INTERACTIVE)
    assert interactive is not None and interactive.until == 1005.0


def test_a_quickbooks_batch_takes_its_items_from_the_minute_and_one_of_forty_batch_requests(
    store: BudgetStore, fake_time: FakeTime
) -> None:
    quickbooks = limits_for(Provider.QUICKBOOKS, xero_daily_call_limit=1000)
    held = hold_for(BudgetState(batch={1000: 40}), quickbooks, 1001.0, priority=Priority.INTERACTIVE, batch=True)
    assert held is not None and held.limit == "batch"
    budget = CallBudget(store, Provider.QUICKBOOKS, "realm-1", quickbooks, clock=fake_time.clock, sleep=fake_time.sleep)
    budget.take(priority=Priority.INTERACTIVE, units=30, batch=True, time_left=no_deadline)
    state = store.load(Provider.QUICKBOOKS, "realm-1")
    assert sum(state.minute.values()) == 30 and sum(state.batch.values()) == 1


# ---------------------------------------------------------------------------------------------- shared


def test_two_lambdas_together_never_take_more_than_the_minute_allows(store: BudgetStore, fake_time: FakeTime) -> None:
    limits = ProviderLimits(per_minute=60)
    first, second = lambda_budget(store, fake_time, limits), lambda_budget(store, fake_time, limits)
    calls: list[float] = []
    while fake_time.now < 1_800_000_000.0 + 300:
        for budget in (first, second):
            budget.take(priority=Priority.INTERACTIVE, time_left=no_deadline)
            calls.append(fake_time.now)
            fake_time.now += 0.05
    busiest = max(sum(1 for t in calls if start <= t < start + 60) for start in calls)
    assert busiest <= 60
    assert len(calls) >= 60 * 4  # and it keeps going at the limit, minute after minute
    assert store.requests / len(calls) <= 0.5  # blocks: the budget's own cost per call


def test_a_waiting_lambda_books_ahead_and_sleeps_without_asking_again(records_table: str, fake_time: FakeTime) -> None:
    limits = ProviderLimits(per_minute=54)  # the first Lambda's blocks of 2, 4, 8 and 10 calls fill it
    first = lambda_budget(BudgetStore(records_table), fake_time, limits)
    second_store = BudgetStore(records_table)
    second = lambda_budget(second_store, fake_time, limits)
    # Given the first Lambda has the whole minute
    for _ in range(54):
        first.take(priority=Priority.INTERACTIVE, time_left=no_deadline)
        fake_time.now += 0.01
    assert first.waits == 0
    started = fake_time.now
    # When the second, which has seen nothing yet, wants a call
    second.take(priority=Priority.INTERACTIVE, time_left=no_deadline)
    # Then its first booking lost (and told it the window), its second booked the moment the window frees,
    # and it slept until then: two requests in all
    assert second_store.lost == 1 and second_store.requests == 2
    assert fake_time.now >= started + MINUTE_WINDOW - 1
    assert second.waits == 1


def test_a_booking_is_not_lost_to_calls_booked_earlier_in_the_same_hour(
    records_table: str, fake_time: FakeTime
) -> None:
    limits = ProviderLimits(per_minute=2, per_day=1000)  # Xero's shape: a minute and a day window
    first = lambda_budget(BudgetStore(records_table), fake_time, limits)
    second_store = BudgetStore(records_table)
    second = lambda_budget(second_store, fake_time, limits)
    # Given the first Lambda took the whole minute, and the minute has passed (the hour has not)
    first.take(priority=Priority.INTERACTIVE, time_left=no_deadline)
    fake_time.now += MINUTE_WINDOW + 1
    # When the second, which has seen nothing yet, takes the whole new minute
    second.take(priority=Priority.INTERACTIVE, time_left=no_deadline)
    # Then its one booking holds: the day's bucket changed since it looked, but the day has room
    assert second_store.lost == 0 and second_store.requests == 1
    assert second.waits == 0


def test_a_backfill_booked_ahead_leaves_the_reserve_to_a_payment(store: BudgetStore, fake_time: FakeTime) -> None:
    limits = ProviderLimits(per_minute=60)
    backfill, payment = lambda_budget(store, fake_time, limits), lambda_budget(store, fake_time, limits)
    for _ in range(48 + 10):  # the backfill's share of the minute, and a block booked ahead beyond it
        backfill.take(priority=Priority.BACKGROUND, time_left=no_deadline)
        fake_time.now += 0.01
    assert backfill.waits >= 1
    before = fake_time.now
    payment.take(priority=Priority.INTERACTIVE, time_left=no_deadline)
    assert fake_time.now == before  # at once: the backfill never books into the payments' fifth


def test_a_429_seen_by_one_lambda_pauses_the_other(store: BudgetStore, fake_time: FakeTime) -> None:
    first, second = lambda_budget(store, fake_time, XERO), lambda_budget(store, fake_time, XERO)
    second.take(priority=Priority.INTERACTIVE, time_left=no_deadline)
    fake_time.now += TOKEN_VALIDITY  # the second Lambda's block is no longer good
    first.throttled(20.0, "minute")
    before = fake_time.now
    second.take(priority=Priority.INTERACTIVE, time_left=no_deadline)
    assert fake_time.now >= before + 20.0


def test_a_wait_that_does_not_fit_the_invocation_is_named_and_nothing_is_counted(
    store: BudgetStore, fake_time: FakeTime
) -> None:
    budget = lambda_budget(store, fake_time, XERO)
    budget.throttled(3600.0, "day")
    with pytest.raises(CallBudgetSpent) as spent:
        budget.take(priority=Priority.BACKGROUND, time_left=lambda: 300.0)
    assert spent.value.limit == "day" and 3599 <= (spent.value.retry_after or 0) <= 3601
    assert fake_time.slept == []
    assert sum(store.load(Provider.XERO, "org-1").minute.values()) == 0


def test_xeros_lower_remaining_count_adds_the_calls_we_did_not_see(store: BudgetStore, fake_time: FakeTime) -> None:
    first, second = lambda_budget(store, fake_time, XERO), lambda_budget(store, fake_time, XERO)
    first.take(priority=Priority.INTERACTIVE, time_left=no_deadline)
    # Xero says 10 calls are left this minute and 100 today: someone else used the rest
    first.observe({"X-MinLimit-Remaining": "10", "X-DayLimit-Remaining": "100"})
    state = store.load(Provider.XERO, "org-1")
    assert sum(state.minute.values()) == 50 and sum(state.day.values()) == 900
    # The other Lambda gets at most what Xero said was left
    granted = 0
    fake_time.now += TOKEN_VALIDITY
    while hold_for(store.load(Provider.XERO, "org-1"), XERO, fake_time.now, priority=Priority.INTERACTIVE) is None:
        second.take(priority=Priority.INTERACTIVE, time_left=no_deadline)
        granted += 1
        fake_time.now += 0.1
    assert granted <= 10


def test_once_xero_reports_the_app_near_its_limit_every_organisation_takes_from_the_app_budget(
    store: BudgetStore, fake_time: FakeTime
) -> None:
    app = CallBudget(
        store, Provider.XERO, "APP", ProviderLimits(per_minute=100), clock=fake_time.clock, sleep=fake_time.sleep
    )
    organisations = [
        CallBudget(store, Provider.XERO, f"org-{n}", XERO, clock=fake_time.clock, sleep=fake_time.sleep, app=app)
        for n in range(3)
    ]
    # While Xero reports plenty left for the app, its own count is the app's budget: ours is not taken
    for budget in organisations:
        budget.take(priority=Priority.INTERACTIVE, time_left=no_deadline)
        budget.observe({"X-AppMinLimit-Remaining": "90"})
    assert store.load(Provider.XERO, "APP").minute == {}
    # Then Xero says 12 are left for the app this minute: other organisations of the app used the rest
    for budget in organisations:
        budget.observe({"X-AppMinLimit-Remaining": "12"})
    fake_time.now += TOKEN_VALIDITY  # the blocks in hand are no longer good
    calls = []
    for _ in range(20):
        for budget in organisations:
            try:
                budget.take(priority=Priority.INTERACTIVE, time_left=lambda: 30.0)
            except CallBudgetSpent:
                continue
            calls.append(fake_time.now)
    # Every organisation's calls now come out of what Xero said was left for the app
    assert 0 < len([t for t in calls if t < calls[0] + 60]) <= 12


def test_throttled_waits_and_provider_429s_are_counted_per_provider(
    store: BudgetStore, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(metrics, "namespace", "PayEdgeConnect")
    budget = lambda_budget(store, fake_time, XERO)
    budget.throttled(5.0, "minute")
    budget.take(priority=Priority.INTERACTIVE, time_left=no_deadline)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    counted = {(line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], line["provider"]) for line in lines}
    assert counted == {("Provider429s", "xero"), ("ThrottledWaits", "xero")}
