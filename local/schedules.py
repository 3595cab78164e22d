"""EventBridge Scheduler, locally: the template's `ScheduleV2` events (AWS::Scheduler::Schedule).

moto's CloudFormation skips schedules, so the stack reads them from the translated template. A schedule
with a Lambda target (EventBridge Scheduler's templated Lambda Invoke) delivers its `Input` - the JSON
the template gives, with the context attributes `<aws.scheduler.schedule-arn>`,
`<aws.scheduler.scheduled-time>`, `<aws.scheduler.execution-id>` and `<aws.scheduler.attempt-number>`
substituted - as the function's event. `fire(name)` delivers it now and returns what the function
returned (in AWS the invocation is asynchronous and its result discarded; locally it is handy to see
it); `start()` also fires `rate(...)` schedules on their rate. `cron(...)` and `at(...)` schedules fire
on demand only.
"""

import json
import logging
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from local.functions import FunctionRuntime

logger = logging.getLogger(__name__)

_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Schedule:
    name: str  # the schedule's Name (SAM: <Function><EventName>)
    event_name: str  # the SAM event's name, e.g. "DispatchDueConnections"
    function: str  # logical id of the target function
    expression: str  # "rate(15 minutes)", "cron(...)", "at(...)"
    input: str | None
    arn: str
    enabled: bool = True

    @property
    def interval_seconds(self) -> int | None:
        match = _RATE.match(self.expression.strip())
        if match is None:
            return None
        return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")]

    def payload(self, scheduled_time: datetime, attempt: int = 1) -> Any:
        """The event the target function receives for one delivery."""
        if self.input is None:
            # AWS sends an unspecified "default notification"; an empty object stands in for it.
            return {}
        text = (
            self.input.replace("<aws.scheduler.schedule-arn>", self.arn)
            .replace("<aws.scheduler.scheduled-time>", scheduled_time.strftime("%Y-%m-%dT%H:%M:%SZ"))
            .replace("<aws.scheduler.execution-id>", str(uuid.uuid4()))
            .replace("<aws.scheduler.attempt-number>", str(attempt))
        )
        return json.loads(text)


@dataclass
class LocalScheduler:
    schedules: Mapping[str, Schedule]
    runtime: FunctionRuntime
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)

    def find(self, name: str) -> Schedule:
        """A schedule by its Name or by its SAM event name (e.g. "DispatchDueConnections")."""
        if name in self.schedules:
            return self.schedules[name]
        matches = [schedule for schedule in self.schedules.values() if schedule.event_name == name]
        if len(matches) != 1:
            raise KeyError(f"no single schedule named {name!r}; the stack has {sorted(self.schedules)}")
        return matches[0]

    def fire(self, name: str) -> Any:
        """Deliver the schedule's input to its function now; returns the function's result."""
        schedule = self.find(name)
        return self.runtime.invoke(schedule.function, schedule.payload(datetime.now(UTC)))

    def start(self) -> None:
        """Fire every enabled rate schedule on its rate, first one interval from now."""
        self._stop.clear()
        for schedule in self.schedules.values():
            interval = schedule.interval_seconds
            if not schedule.enabled or interval is None:
                continue
            thread = threading.Thread(
                target=self._every, args=(schedule, interval), name=f"schedule-{schedule.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()

    def _every(self, schedule: Schedule, interval: int) -> None:
        while not self._stop.wait(interval):
            try:
                self.fire(schedule.name)
            except Exception:
                # The asynchronous invocation failed; AWS would retry it per the function's async config.
                logger.exception("schedule %s: %s failed", schedule.name, schedule.function)
