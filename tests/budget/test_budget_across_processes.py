"""The call budget across OS processes: several Lambdas (processes that share nothing but DynamoDB, here
the moto server) take from one organisation's budget at once."""

import multiprocessing
from typing import Any

from payedge_connect.providers.budget import TOKEN_VALIDITY, Priority
from payedge_connect.providers.limits import ProviderLimits
from tests.budget.lambdas import Caller, run_caller


def run_lambdas(callers: list[Caller]) -> dict[str, dict[str, Any]]:
    """Each caller in an OS process of its own, all starting together; their reports by name."""
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(len(callers)), context.Queue()
    processes = [context.Process(target=run_caller, args=(caller, ready, results)) for caller in callers]
    for process in processes:
        process.start()
    reports = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    return {report["name"]: report for report in reports}


def busiest_minute(calls: list[float]) -> int:
    calls = sorted(calls)
    return max(sum(1 for t in calls[i:] if t < start + 60) for i, start in enumerate(calls))


def test_six_processes_together_never_exceed_the_minute(moto_server: tuple[str, str]) -> None:
    # Given six Lambdas calling one Xero organisation (60 a minute, 5 at once) for three minutes:
    # two scheduled syncs and four payment or user callers
    limits = ProviderLimits(per_minute=60, concurrent=5)
    priorities = {"sync-1": Priority.BACKGROUND, "sync-2": Priority.BACKGROUND}
    priorities |= {f"payments-{n}": Priority.INTERACTIVE for n in range(4)}
    reports = run_lambdas(
        [Caller(name, *moto_server, limits, priority, duration=180) for name, priority in priorities.items()]
    )
    calls = [t for report in reports.values() for t in report["calls"]]
    requests = sum(report["requests"] for report in reports.values())
    for n, r in reports.items():
        print(n, len(r["calls"]), r["requests"], r.get("lost"), r["granted"], r["waits"])
    print(f"{len(calls)} calls, busiest minute {busiest_minute(calls)}, {requests / len(calls):.2f} requests a call")
    # Then no minute holds more than 60, yet the budget was used again as calls aged out of the window
    assert busiest_minute(calls) <= 60
    assert len(calls) > 60
    # And every payment caller got its turn beside the syncs
    assert all(reports[name]["calls"] for name in priorities)


def test_a_429_seen_by_one_process_pauses_the_others(moto_server: tuple[str, str]) -> None:
    # Given three Lambdas calling well under the limit, when one of them is answered 429 (Retry-After 30)
    limits = ProviderLimits(per_minute=600)
    reports = run_lambdas(
        [
            Caller("throttled", *moto_server, limits, Priority.INTERACTIVE, duration=90, throttle_after=30),
            Caller("other-1", *moto_server, limits, Priority.INTERACTIVE, duration=90),
            Caller("other-2", *moto_server, limits, Priority.INTERACTIVE, duration=90),
        ]
    )
    throttled_at = reports["throttled"]["throttled_at"]
    assert throttled_at is not None
    # Then the others make no call in the 30 seconds after it (a block taken just before may be finished)
    for name in ("other-1", "other-2"):
        calls = reports[name]["calls"]
        assert [t for t in calls if throttled_at + TOKEN_VALIDITY + 0.5 <= t < throttled_at + 30] == []
        assert any(t < throttled_at for t in calls) and any(t >= throttled_at + 30 for t in calls)
