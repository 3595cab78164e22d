"""Issue 13: a sync costs what changed, records have a lifetime, the schedule scales out."""

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from pydantic import ValidationError

from local.worlds import SyncWorld
from payedge_connect.models import (
    Connection,
    ConnectionStatus,
    Payable,
    PayableStatus,
    PaymentOrder,
    PaymentOrderStatus,
    Provider,
    SyncOutcome,
    SyncSchedule,
    SyncTrigger,
)
from payedge_connect.settings import SyncSettings
from payedge_connect.storage import RecordsStore, Retention
from payedge_connect.storage.connections import CONNECTION_SHARDS
from payedge_connect.storage.syncs import SEEN_PAGES_KEPT
from payedge_connect.sync import schedule
from payedge_connect.sync.dispatch import dispatch_due
from payedge_connect.sync.engine import MAX_TROUBLE_PAUSES
from payedge_connect.sync.requests import new_sync_run

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def a_connection(
    connection_id: str, *, status: ConnectionStatus = ConnectionStatus.CONNECTED, **extra: Any
) -> Connection:
    return Connection(
        connection_id=connection_id,
        business_id="biz-1",
        provider=Provider.SAGE,
        status=status,
        created_at=NOW,
        updated_at=NOW,
        **extra,
    )


def a_payable(bill_id: str, status: PayableStatus = PayableStatus.OPEN) -> Payable:
    return Payable(
        connection_id="conn-1",
        bill_id=bill_id,
        vendor_id="v-1",
        vendor_name="Fournitures Québec Inc.",
        currency="CAD",
        amount_due=Decimal("0.00") if status is PayableStatus.CLOSED else Decimal("100.00"),
        total_amount=Decimal("100.00"),
        accounting_software="Sage Accounting",
        status=status,
    )


def raw_item(table: str, sort_key: str, partition: str = "CONNECTION#conn-1") -> dict[str, Any]:
    item = boto3.resource("dynamodb").Table(table).get_item(Key={"PK": partition, "SK": sort_key}).get("Item")
    assert item is not None, sort_key
    return item


# ---------------------------------------------------------------------------------------------- schedule


@pytest.mark.parametrize(
    ("provider", "first", "longest"),
    [
        (Provider.SAGE, timedelta(minutes=30), timedelta(hours=4)),
        (Provider.QUICKBOOKS, timedelta(hours=12), timedelta(hours=24)),
        (Provider.XERO, timedelta(hours=12), timedelta(hours=24)),
    ],
)
def test_an_idle_connection_backs_off_and_a_change_brings_it_back(
    provider: Provider, first: timedelta, longest: timedelta
) -> None:
    previous = None
    intervals = []
    for _ in range(6):
        previous = schedule.after_run(provider, "c-1", previous, outcome=SyncOutcome.SUCCEEDED, changed=False, now=NOW)
        intervals.append(previous.next_due_at - NOW)
    # Each idle run doubles the interval (plus at most 10% jitter), up to the provider's longest
    for count, interval in enumerate(intervals, start=1):
        expected = min(first * 2**count, longest)
        assert expected <= interval <= expected * 1.1
    assert previous is not None and previous.idle_runs == 6
    # A run that found a change polls at the first interval again
    active = schedule.after_run(provider, "c-1", previous, outcome=SyncOutcome.SUCCEEDED, changed=True, now=NOW)
    assert first <= active.next_due_at - NOW <= first * 1.1
    assert active.idle_runs == 0


def test_a_failed_run_is_retried_on_its_own_growing_delay_until_one_succeeds() -> None:
    previous = SyncSchedule(next_due_at=NOW, idle_runs=2)
    delays = []
    for _ in range(8):
        previous = schedule.after_run(
            Provider.XERO, "c-1", previous, outcome=SyncOutcome.FAILED, changed=False, now=NOW
        )
        delays.append(previous.next_due_at - NOW)
    assert delays[:4] == [timedelta(minutes=5), timedelta(minutes=10), timedelta(minutes=20), timedelta(minutes=40)]
    assert delays[-1] == schedule.LONGEST_RETRY
    assert previous.failed_runs == 8
    recovered = schedule.after_run(Provider.XERO, "c-1", previous, outcome=SyncOutcome.PARTIAL, changed=True, now=NOW)
    assert recovered.failed_runs == 0
    assert recovered.next_due_at - NOW >= timedelta(hours=12)


def test_connections_created_together_do_not_stay_in_step() -> None:
    due = {
        schedule.after_run(
            Provider.SAGE, f"c-{i}", None, outcome=SyncOutcome.SUCCEEDED, changed=True, now=NOW
        ).next_due_at
        for i in range(50)
    }
    assert len(due) > 40


# ---------------------------------------------------------------------------------------------- sharded index


def test_connections_are_spread_over_the_index_shards_and_read_only_when_due(records_table: str) -> None:
    store = RecordsStore(records_table)
    for index in range(200):
        due_at = NOW + timedelta(minutes=index - 100)  # half are due at NOW
        store.connections.create_connection(
            a_connection(f"conn-{index:03d}", sync_schedule=SyncSchedule(next_due_at=due_at))
        )
    store.connections.create_connection(a_connection("conn-new"))  # no schedule yet: due now
    store.connections.create_connection(a_connection("conn-off", status=ConnectionStatus.REAUTHORIZATION_REQUIRED))
    items = boto3.resource("dynamodb").Table(records_table).scan()["Items"]
    partitions = Counter(
        str(i["GSI2PK"]) for i in items if str(i.get("GSI2PK", "")).startswith("CONNECTIONS#connected")
    )
    # No index partition holds more than a small share of the connections
    assert len(partitions) == CONNECTION_SHARDS
    assert max(partitions.values()) <= 0.1 * sum(partitions.values())
    # Each shard gives its due connections only, most overdue first
    due: list[str] = []
    for shard in range(CONNECTION_SHARDS):
        connections, cursor = store.connections.due_connections(shard, NOW, limit=1000)
        assert cursor is None
        times = [
            c.sync_schedule.next_due_at if c.sync_schedule else datetime.min.replace(tzinfo=UTC) for c in connections
        ]
        assert times == sorted(times)
        due.extend(c.connection_id for c in connections)
    assert sorted(due) == sorted([f"conn-{i:03d}" for i in range(101)] + ["conn-new"])


def test_connections_stored_before_the_index_was_sharded_are_moved_to_it(records_table: str) -> None:
    store = RecordsStore(records_table)
    store.connections.create_connection(a_connection("conn-old"))
    table = boto3.resource("dynamodb").Table(records_table)
    # As the previous version wrote it: one partition for every connected connection
    table.update_item(
        Key={"PK": "CONNECTION#conn-old", "SK": "CONNECTION"},
        UpdateExpression="SET GSI2PK = :pk, GSI2SK = :sk",
        ExpressionAttributeValues={":pk": "CONNECTIONS#connected", ":sk": "CONNECTION#conn-old"},
    )
    assert not any(store.connections.due_connections(shard, NOW)[0] for shard in range(CONNECTION_SHARDS))
    assert store.connections.reindex_legacy_connections() == 1
    assert store.connections.reindex_legacy_connections() == 0
    due = [
        c.connection_id for shard in range(CONNECTION_SHARDS) for c in store.connections.due_connections(shard, NOW)[0]
    ]
    assert due == ["conn-old"]


# ---------------------------------------------------------------------------------------------- lifetimes


def test_closed_payables_expire_after_the_retention_and_open_ones_never(records_table: str) -> None:
    store = RecordsStore(records_table, retention=Retention(closed_payables=timedelta(days=45)))
    store.payables.put_payables([a_payable("b-open"), a_payable("b-closed", PayableStatus.CLOSED)], now=NOW)
    assert "expiresAt" not in raw_item(records_table, "PAYABLE#b-open")
    assert raw_item(records_table, "PAYABLE#b-closed")["expiresAt"] == int((NOW + timedelta(days=45)).timestamp())
    # A closed bill reopened at the provider (a payment voided) stops expiring
    store.payables.put_payables([a_payable("b-closed")], now=NOW)
    assert "expiresAt" not in raw_item(records_table, "PAYABLE#b-closed")


def test_a_closed_payable_that_a_retryable_payment_order_names_does_not_expire(records_table: str) -> None:
    store = RecordsStore(records_table)
    order = PaymentOrder(
        payment_order_number="PO-1",
        connection_id="conn-1",
        business_id="biz-1",
        bill_id="b-paid",
        vendor_name="Fournitures Québec Inc.",
        currency="CAD",
        amount=Decimal("100.00"),
        funding_source="cad-operating",
        payment_date=NOW.date(),
        payment_status="completed",
        status=PaymentOrderStatus.FAILED,
        attempts=2,
        created_at=NOW,
        updated_at=NOW,
    )
    assert store.payment_orders.create_payment_order(order) is None
    store.payables.put_payables(
        [a_payable("b-paid", PayableStatus.CLOSED), a_payable("b-other", PayableStatus.CLOSED)], now=NOW
    )
    assert "expiresAt" not in raw_item(records_table, "PAYABLE#b-paid")
    assert "expiresAt" in raw_item(records_table, "PAYABLE#b-other")
    # Payment orders themselves never expire (the audit trail, and the write-back's exactly-once key)
    assert "expiresAt" not in raw_item(records_table, "PAYMENT#PO-1")


def test_sync_runs_and_their_seen_pages_expire(records_table: str) -> None:
    store = RecordsStore(records_table, retention=Retention(sync_runs=timedelta(days=7)))
    run = new_sync_run("conn-1", SyncTrigger.SCHEDULE, NOW)
    store.syncs.put_sync_run(run)
    store.syncs.add_seen_bills("conn-1", run.sync_run_id, 0, ["b-1"], now=NOW)
    assert raw_item(records_table, f"SYNCRUN#{run.sync_run_id}")["expiresAt"] == int(
        (NOW + timedelta(days=7)).timestamp()
    )
    seen = raw_item(records_table, f"SYNCRUN#{run.sync_run_id}#SEEN#000000")
    assert seen["expiresAt"] == int((NOW + SEEN_PAGES_KEPT).timestamp())
    # An expired-but-not-yet-deleted run still reads as itself (TTL deletes lazily)
    assert store.syncs.get_sync_run("conn-1", run.sync_run_id) == run


@pytest.mark.parametrize(
    ("variable", "value"), [("SYNC_RUN_RETENTION_DAYS", "1"), ("CLOSED_PAYABLE_RETENTION_DAYS", "29")]
)
def test_a_retention_shorter_than_what_the_guarantees_need_is_refused(variable: str, value: str) -> None:
    environment = {
        "RECORDS_TABLE_NAME": "records",
        "SECRET_NAME_PREFIX": "p/",
        "STACK_KMS_KEY_ARN": "arn:aws:kms:us-east-1:123456789012:key/k",
        "BUSINESS_ID_CLAIM": "business_id",
        "PROVIDER_BASE_URLS": "{}",
        "XERO_SCOPE_SET": "granular",
        "XERO_DAILY_CALL_LIMIT": "5000",
        "FUNDING_SOURCES": "[]",
        "SYNC_QUEUE_URL": "q",
        "DOCUMENTS_BUCKET_NAME": "d",
    }
    assert SyncSettings.model_validate(environment).closed_payable_retention_days == 30
    with pytest.raises(ValidationError, match=variable):
        SyncSettings.model_validate({**environment, variable: value})


# ---------------------------------------------------------------------------------------------- counts


def test_counts_move_with_each_write_without_recounting(records_table: str) -> None:
    store = RecordsStore(records_table)
    store.payables.set_counts("conn-1", open_bills=0, vendors_needing_attention=0)
    store.payables.put_payables([a_payable("b-1"), a_payable("b-2"), a_payable("b-3")], now=NOW)
    store.payables.put_payables([a_payable("b-2", PayableStatus.CLOSED)], now=NOW)
    store.payables.put_payables([a_payable("b-1")], now=NOW)  # unchanged status: no move
    counts = store.payables.get_counts("conn-1")
    assert counts is not None and counts.open_bills == 2


# ---------------------------------------------------------------------------------------------- the engine


class ItemsRead:
    """Items DynamoDB read for the store's requests (ScannedCount of queries, items of gets)."""

    def __init__(self, world: SyncWorld) -> None:
        self.total = 0
        world.services.store.table.meta.client.meta.events.register("after-call.dynamodb", self._count)

    def _count(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in ("Query", "Scan"):
            self.total += int(parsed.get("ScannedCount", parsed.get("Count", 0)))
        elif model.name == "GetItem":
            self.total += 1 if "Item" in parsed else 0
        elif model.name == "BatchGetItem":
            self.total += sum(len(items) for items in parsed.get("Responses", {}).values())


def test_an_incremental_sync_reads_what_changed_not_the_whole_connection(world: SyncWorld) -> None:
    # Given a synced organisation (dozens of payables and vendors stored)
    world.sync()
    stored = sum(1 for item in world.items() if item.get("recordType") in ("payable", "vendor"))
    reads = ItemsRead(world)
    # When it syncs again with nothing changed
    assert world.sync().run.mode.value == "incremental"  # type: ignore[union-attr]
    # Then it read its own bookkeeping, not the stored records
    assert reads.total <= 15 < stored
    # And after one bill is paid elsewhere, it reads that bill, not the rest
    bill_id = sorted(world.open_payables())[0]
    world.sandbox.pay_bill_elsewhere(world.tenant_id, bill_id)
    world.sandbox.clock.advance(60)
    reads.total = 0
    run = world.sync().run
    assert run.counts.bills_closed == 1
    assert reads.total <= 20
    # And the connection's open-bill count followed the change without a recount
    connection = world.services.store.connections.get_connection(world.connection.connection_id)
    assert connection is not None and connection.last_sync is not None
    assert connection.last_sync.open_bills == len(world.open_payables())


def test_a_sync_sets_the_next_due_time_and_dispatch_queues_only_due_connections(world: SyncWorld) -> None:
    clock = world.sandbox.clock
    queue_url = world.services.settings.sync_queue_url  # type: ignore[attr-defined]
    # Given a connection never synced: due now
    assert dispatch_due(world.services, queue_url).queued == 1
    # A second tick while that sync is queued queues nothing more
    again = dispatch_due(world.services, queue_url)
    assert (again.queued, again.already_running) == (0, 1)
    # When the queued sync runs
    store = world.services.store
    run_id = store.syncs.active_sync_run_id(world.connection.connection_id)
    run = store.syncs.get_sync_run(world.connection.connection_id, run_id or "")
    assert run is not None
    world.run(run)
    # Then it is next due one poll interval later, and dispatch leaves it alone until then
    connection = store.connections.get_connection(world.connection.connection_id)
    assert connection is not None and connection.sync_schedule is not None
    interval = schedule.POLL_POLICIES[world.provider].interval
    assert interval <= connection.sync_schedule.next_due_at - clock.now() <= interval * 1.1
    assert dispatch_due(world.services, queue_url).due == 0
    clock.advance((interval * 1.1).total_seconds() + 1)
    assert dispatch_due(world.services, queue_url).queued == 1


def test_a_provider_that_keeps_failing_ends_the_run_failed_and_the_retry_schedule_takes_over(
    world: SyncWorld,
) -> None:
    world.sandbox.faults.fail("*", 503, count=1000)
    result = world.sync()
    assert result.continue_after_seconds is not None
    # Given the run already paused as often as a run may for provider trouble
    paused = result.run
    assert paused.checkpoint is not None
    paused.checkpoint.trouble_pauses = MAX_TROUBLE_PAUSES
    world.services.store.syncs.put_sync_run(paused)
    # When it is continued and the provider still fails
    ended = world.run(paused)
    # Then it ends failed, not re-queued, and the connection is due again in five minutes
    assert ended.continue_after_seconds is None
    assert ended.run.outcome is SyncOutcome.FAILED
    connection = world.services.store.connections.get_connection(world.connection.connection_id)
    assert connection is not None and connection.sync_schedule is not None
    assert connection.sync_schedule.failed_runs == 1
    assert connection.sync_schedule.next_due_at - world.sandbox.clock.now() <= schedule.FIRST_RETRY
    world.sandbox.faults.clear()
