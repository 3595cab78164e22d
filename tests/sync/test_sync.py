"""The main job, per provider, against the sandboxes: unpaid bills and their vendors, exactly."""

import threading
from collections import Counter
from decimal import Decimal

import boto3
import pytest

from local.sandboxes.generator import generate_ledger, sensitive_values
from local.worlds import ALL_PROVIDERS, SyncWorld, connect
from payedge_connect.models import Provider, SyncOutcome, SyncTrigger
from payedge_connect.sync.requests import request_sync


def expected_open_bills(world: SyncWorld) -> Counter[tuple[str, Decimal, Decimal]]:
    return Counter(
        (bill.currency, bill.amount_due, bill.total)
        for bill in world.ledger.bills
        if bill.state in ("open", "part_paid")
    )


def stored_open_bills(world: SyncWorld) -> Counter[tuple[str, Decimal, Decimal]]:
    return Counter(
        (item["currency"], Decimal(item["amountDue"]), Decimal(item["totalAmount"]))
        for item in world.open_payables().values()
    )


def test_the_first_sync_stores_every_open_bill_and_the_vendors_they_are_owed_to(world: SyncWorld) -> None:
    # When the first sync runs
    result = world.sync()

    # Then the stored open payables are exactly the provider's open bills, amounts exact
    run = result.run
    assert run.outcome is SyncOutcome.SUCCEEDED, run
    assert stored_open_bills(world) == expected_open_bills(world)
    assert run.counts.bills_new == sum(expected_open_bills(world).values())
    # and each payable names its vendor, the software, and a due date where the bill has one
    payables = world.open_payables()
    vendors = {item["vendorId"]: item for item in world.items() if item.get("recordType") == "vendor"}
    for payable in payables.values():
        assert payable["accountingSoftware"] in {"QuickBooks Online", "Xero", "Sage Accounting"}
        assert payable["vendorId"] in vendors, f"vendor of bill {payable['billId']} not stored"
        assert vendors[payable["vendorId"]]["name"] == payable["vendorName"]
    # and every vendor stored is owed something, flagged for the platform's attention
    owed = {payable["vendorId"] for payable in payables.values()}
    assert set(vendors) == owed
    assert all(vendor["attentionRequired"] for vendor in vendors.values())
    assert run.provider_calls > 0
    connection = world.services.store.connections.get_connection(world.connection.connection_id)
    assert connection is not None and connection.last_sync is not None
    assert connection.last_sync.open_bills == len(payables)


def test_nothing_personal_is_stored_anywhere(world: SyncWorld) -> None:
    # Given vendors with tax ids, bank details, phone numbers and notes naming people
    secrets_of_vendors = sensitive_values(world.ledger)
    assert secrets_of_vendors
    # When the sync has run (documents included)
    world.sync()
    # Then no DynamoDB item and no document's metadata carries any of them
    stored_text = repr(world.items())
    leaked = sorted(value for value in secrets_of_vendors if value in stored_text)
    assert leaked == []
    s3 = boto3.client("s3")
    for listed in s3.list_objects_v2(Bucket=world.bucket).get("Contents", []):
        head = s3.head_object(Bucket=world.bucket, Key=listed["Key"])
        assert head.get("Metadata", {}) == {}


def test_a_resync_with_no_change_writes_nothing(world: SyncWorld) -> None:
    # Given a completed sync
    world.sync()
    before = {
        (item["PK"], item["SK"]): item for item in world.items() if item.get("recordType") in ("payable", "vendor")
    }
    # When the business syncs again with nothing changed at the provider
    run = world.sync().run
    # Then no payable or vendor was written
    after = {
        (item["PK"], item["SK"]): item for item in world.items() if item.get("recordType") in ("payable", "vendor")
    }
    assert after == before
    counts = run.counts
    assert (counts.bills_new, counts.bills_changed, counts.bills_closed) == (0, 0, 0)
    assert (counts.vendors_new, counts.vendors_changed) == (0, 0)


def test_bills_paid_voided_deleted_or_changed_elsewhere_change_exactly_and_close_with_their_reason(
    world: SyncWorld,
) -> None:
    # Given a synced organisation
    world.sync()
    open_before = world.open_payables()
    ids = sorted(open_before)
    changed, paid, voided = ids[0], ids[1], ids[2]
    new_total = Decimal(open_before[changed]["totalAmount"]) + Decimal("10.00")
    # When, at the provider, one bill's amount changes, one is paid elsewhere, one voided (and one deleted
    # where the provider allows deleting an approved bill)
    world.sandbox.change_bill_amount(world.tenant_id, changed, new_total)
    world.sandbox.pay_bill_elsewhere(world.tenant_id, paid)
    world.sandbox.void_bill(world.tenant_id, voided)
    deleted = None
    if world.provider is not Provider.XERO:  # Xero deletes only draft bills; approved ones are voided
        deleted = ids[3]
        world.sandbox.delete_bill(world.tenant_id, deleted)
    world.sandbox.clock.advance(60)
    run = world.sync().run

    # Then exactly those records change, the closed ones with the right reason
    payables = {item["billId"]: item for item in world.items() if item.get("recordType") == "payable"}
    assert Decimal(payables[changed]["totalAmount"]) == new_total
    assert payables[changed]["status"] in ("open", "part_paid")
    assert (payables[paid]["status"], payables[paid]["closedReason"]) == ("closed", "paid_elsewhere")
    assert (payables[voided]["status"], payables[voided]["closedReason"]) == ("closed", "voided")
    if deleted:
        assert (payables[deleted]["status"], payables[deleted]["closedReason"]) == ("closed", "deleted")
    closed = 3 if deleted else 2
    assert (run.counts.bills_changed, run.counts.bills_closed, run.counts.bills_new) == (1, closed, 0)
    untouched = set(ids) - {changed, paid, voided, deleted}
    assert all(payables[bill_id] == open_before[bill_id] for bill_id in untouched)


def test_concurrent_requests_make_one_sync(world: SyncWorld) -> None:
    # When two requests for a sync arrive while none is running
    connection = world.services.store.connections.get_connection(world.connection.connection_id)
    assert connection is not None
    first, first_message = request_sync(world.services, connection, SyncTrigger.ON_DEMAND)
    second, second_message = request_sync(world.services, connection, SyncTrigger.SCHEDULE)
    # Then the second gets the first, and only one message would be queued
    assert second.sync_run_id == first.sync_run_id
    assert first_message is not None and second_message is None
    # And two workers handed the same run at once: one syncs, the other waits its turn
    results: list[object] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        barrier.wait()
        results.append(world.run(first))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    finished = [r for r in results if r.continue_after_seconds is None]  # type: ignore[attr-defined]
    waiting = [r for r in results if r.continue_after_seconds is not None]  # type: ignore[attr-defined]
    assert len(finished) >= 1
    assert stored_open_bills(world) == expected_open_bills(world)
    assert len(finished) + len(waiting) == 2


def test_429_bursts_and_5xx_are_retried_and_the_sync_completes(world: SyncWorld) -> None:
    # Given a provider answering the next calls with 429s and 503s
    world.sandbox.faults.throttle("*", count=2)
    world.sandbox.faults.fail("*", 503, count=2)
    # When the sync runs
    run = world.sync().run
    # Then it completes with every open bill
    assert run.outcome is SyncOutcome.SUCCEEDED, run.detail
    assert stored_open_bills(world) == expected_open_bills(world)


def test_a_provider_that_stays_unavailable_pauses_the_sync_and_it_resumes_later(world: SyncWorld) -> None:
    # Given a provider failing every call for a while
    world.sandbox.faults.fail("*", 503, count=50)
    result = world.sync()
    # Then the sync is paused, checkpointed, to be continued - not failed, nothing lost
    assert result.continue_after_seconds is not None
    assert result.run.outcome is SyncOutcome.RUNNING
    # When the provider is back and the queue delivers the continuation
    world.sandbox.faults.clear()
    resumed = world.run(result.run)
    assert resumed.run.outcome is SyncOutcome.SUCCEEDED
    assert stored_open_bills(world) == expected_open_bills(world)


@pytest.mark.parametrize("provider", ALL_PROVIDERS, ids=lambda p: p.value)
def test_an_interrupted_sync_resumes_mid_pagination_with_nothing_lost_or_duplicated(
    provider: Provider, records_table: str, kms_key_arn: str, documents_bucket: str
) -> None:
    # Given more open bills than one page holds at the provider's largest page size
    size = {Provider.QUICKBOOKS: 1300, Provider.XERO: 1300, Provider.SAGE: 500}[provider]
    ledger = generate_ledger(seed=5, bills=size, vendors=30, documents=0)
    with connect(provider, ledger, table=records_table, kms_key_arn=kms_key_arn, bucket=documents_bucket) as world:
        # When the Lambda runs out of time right after the first page
        budget = iter([900.0])
        result = world.sync(time_left=lambda: next(budget, 0.0))
        assert result.continue_after_seconds == 0
        assert result.run.checkpoint is not None and result.run.checkpoint.pages >= 1
        stored_after_first = len(world.open_payables())
        assert 0 < stored_after_first < sum(expected_open_bills(world).values())
        # And the queue runs the continuation
        finished = world.run(result.run)
        # Then every open bill is stored once, and the pages already read were not read again
        assert finished.run.outcome is SyncOutcome.SUCCEEDED
        assert stored_open_bills(world) == expected_open_bills(world)
        assert finished.run.counts.bills_new == sum(expected_open_bills(world).values())
