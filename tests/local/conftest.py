"""One local stack per test module: the service's own template, or the test-only echo stack."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from local.stack import LocalStack

ECHO_TEMPLATE = Path(__file__).resolve().parent / "echo_stack" / "template.yaml"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    """The stack created from template.yaml, with its gateway, schedules and queue pollers."""
    with LocalStack() as running:
        yield running


@pytest.fixture(scope="module")
def echo_stack() -> Iterator[LocalStack]:
    """The echo stack; its queue is not polled in the background, tests poll it one batch at a time."""
    with LocalStack(ECHO_TEMPLATE, stack_name="echo", poll_queues=False) as running:
        yield running
