"""A sync the provider keeps refusing (a steady 4xx) ends failed with the provider's words after a few
pauses; it is never paused for ever."""

import pytest

from payedge_connect.models import Provider, SyncOutcome
from payedge_connect.sync.engine import MAX_REFUSED_PAUSES
from tests.worlds import SyncWorld


@pytest.mark.parametrize(
    ("world", "status"), [(Provider.XERO, 403), (Provider.QUICKBOOKS, 400)], indirect=["world"], ids=["xero", "qbo"]
)
def test_a_steady_refusal_fails_the_run_with_the_providers_words_after_bounded_pauses(
    world: SyncWorld, status: int
) -> None:
    # Given the provider refuses every call (Xero: the organisation was disconnected from the app)
    world.sandbox.faults.fail("*", status)
    # When the worker continues the run each time it pauses
    result = world.sync()
    pauses = 0
    while result.continue_after_seconds is not None:
        pauses += 1
        assert pauses <= MAX_REFUSED_PAUSES, "the run kept pausing"
        assert result.run.outcome is SyncOutcome.RUNNING
        world.sandbox.clock.advance(result.continue_after_seconds)
        result = world.run(result.run)
    # Then it ends failed after the bounded pauses, naming the provider's status and its words
    assert pauses == MAX_REFUSED_PAUSES
    failed = world.services.store.syncs.get_sync_run(world.connection.connection_id, result.run.sync_run_id)
    assert failed is not None and failed.outcome is SyncOutcome.FAILED
    assert failed.detail and f"({status})" in failed.detail and "Injected failure" in failed.detail
    world.sandbox.faults.clear()
