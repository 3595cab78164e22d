"""When each connection is next synced by the schedule (the capacity model in the README sizes these).

- Sage sends no webhooks: it is polled every 30 minutes while its books change; each poll that finds
  nothing doubles the interval, up to 4 hours (the web app's "sync now" is there for the impatient).
- QuickBooks and Xero send webhooks for bill and vendor changes (the webhook syncs carry the load),
  so the schedule is a safety net for lost notifications: every 12 hours, backing off to 24 when idle
  (a poll 24 hours after the last full reconciliation is the next full one).
- A failed run is retried after 5 minutes, doubling per failure in a row, up to 4 hours.
- A run that never finishes (its worker died) leaves the connection due; dispatch queues a new run
  once its sync slot is stale (two hours, sync/requests.py).
Due times carry a small per-connection jitter so connections created together do not stay in step.
"""

import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from payedge_connect.models import Provider, SyncOutcome, SyncSchedule


@dataclass(frozen=True)
class PollPolicy:
    interval: timedelta
    longest_idle_interval: timedelta


POLL_POLICIES = {
    Provider.SAGE: PollPolicy(timedelta(minutes=30), timedelta(hours=4)),
    Provider.QUICKBOOKS: PollPolicy(timedelta(hours=12), timedelta(hours=24)),
    Provider.XERO: PollPolicy(timedelta(hours=12), timedelta(hours=24)),
}
FIRST_RETRY = timedelta(minutes=5)
LONGEST_RETRY = timedelta(hours=4)
JITTER_SHARE = 0.1


def after_run(
    provider: Provider,
    connection_id: str,
    previous: SyncSchedule | None,
    *,
    outcome: SyncOutcome,
    changed: bool,
    now: datetime,
) -> SyncSchedule:
    """The schedule after a scheduled, on-demand or console run ended with `outcome`."""
    previous = previous or SyncSchedule(next_due_at=now)
    if outcome is SyncOutcome.FAILED:
        failed = previous.failed_runs + 1
        delay = min(FIRST_RETRY * 2 ** min(failed - 1, 16), LONGEST_RETRY)
        return SyncSchedule(next_due_at=now + delay, idle_runs=previous.idle_runs, failed_runs=failed)
    idle = 0 if changed else previous.idle_runs + 1
    policy = POLL_POLICIES[provider]
    interval = min(policy.interval * 2 ** min(idle, 16), policy.longest_idle_interval)
    return SyncSchedule(next_due_at=now + _jittered(interval, connection_id, now), idle_runs=idle, failed_runs=0)


def _jittered(interval: timedelta, connection_id: str, now: datetime) -> timedelta:
    # Deterministic (crc32, not hash(): str hashes are salted per process), different per connection and run.
    share = zlib.crc32(f"{connection_id}/{now.isoformat()}".encode()) / 2**32 * JITTER_SHARE
    return interval * (1 + share)
