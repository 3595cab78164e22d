"""A write-back worker killed while it holds the connection's lease (a Lambda that timed out or ran out of
memory mid-posting): its heartbeat stops, the next worker takes the lease seconds later with a higher
fence, finds the payment the killed one had sent, and nothing is posted twice."""

import multiprocessing
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from local.sandboxes.generator import generate_ledger
from local.worlds import SyncWorld, connect
from payedge_connect.models import PaymentOrderStatus, Provider
from payedge_connect.storage import RecordsStore
from payedge_connect.storage.leases import HEARTBEAT_TIMEOUT_SECONDS, HeldLease
from payedge_connect.writeback.orders import submit_payment
from payedge_connect.writeback.service import process_payments
from tests.writeback.killed_worker import run_worker
from tests.writeback.test_writeback import BUS, a_payable, details, provider_payments, with_mapping

POST = "create_payments"  # Xero's PUT /Payments


@pytest.fixture
def shared_world(moto_server: tuple[str, str]) -> Iterator[tuple[str, SyncWorld]]:
    """A connected Xero organisation whose AWS is a moto server, which another OS process can reach."""
    endpoint, table = moto_server
    key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    bucket = f"documents-{uuid.uuid4().hex[:8]}"  # moto's backends outlive one server in this process
    boto3.client("s3").create_bucket(Bucket=bucket)
    ledger = generate_ledger(seed=11, bills=12, vendors=4, documents=0)
    with connect(Provider.XERO, ledger, table=table, kms_key_arn=key, bucket=bucket) as world:
        yield endpoint, with_mapping(world)


def lease_item(connection_id: str, table: str) -> dict[str, Any]:
    item = (
        boto3.resource("dynamodb")
        .Table(table)
        .get_item(Key={"PK": f"CONNECTION#{connection_id}", "SK": "LEASE#writeback"}, ConsistentRead=True)["Item"]
    )
    return dict(item)


def test_a_killed_lease_holder_is_detected_in_seconds_and_nothing_is_posted_twice(
    shared_world: tuple[str, SyncWorld],
) -> None:
    endpoint, world = shared_world
    connection_id, table = world.connection.connection_id, world.services.settings.records_table_name
    order = submit_payment(
        world.services, details(a_payable(world), "PO-KILLED"), business_id="biz-1", connection_id=connection_id
    )
    before = len(provider_payments(world))
    # Given a worker in its own process whose posting is in flight at Xero (held there a moment)
    world.sandbox.faults.add_handler_delay(2.0, POST)
    settings = world.services.settings.model_dump(mode="json", by_alias=True)
    worker = multiprocessing.get_context("spawn").Process(
        target=run_worker, args=(endpoint, settings, connection_id, order.payment_order_number)
    )
    worker.start()
    deadline = time.monotonic() + 120
    while world.sandbox.requests.count(POST) == 0:
        assert worker.is_alive() and time.monotonic() < deadline, "the worker never posted"
        time.sleep(0.05)
    killed_fence = int(lease_item(connection_id, table)["fence"])
    # When it is killed (as Lambda ends an invocation at its timeout): no release, no more heartbeats
    worker.kill()
    worker.join()
    killed_at = datetime.now(UTC).timestamp()
    world.sandbox.faults.clear()
    # Then the lease it left runs out within one heartbeat timeout of its death
    lease_until = float(lease_item(connection_id, table)["leaseUntil"])
    assert lease_until <= killed_at + HEARTBEAT_TIMEOUT_SECONDS
    # And the next worker is turned away only until then, then takes over with a higher fence
    runs = 0
    while True:
        runs += 1
        result = process_payments(world.services, connection_id, [order.payment_order_number], bus_name=BUS)
        if not result.busy:
            break
        assert runs < 4 * HEARTBEAT_TIMEOUT_SECONDS, "the lease of the killed worker was never free"
        time.sleep(0.5)
    assert int(lease_item(connection_id, table)["fence"]) > killed_fence
    # And the payment the killed worker sent is found by its reference, not posted again
    final = world.services.store.payment_orders.get_payment_order(connection_id, order.payment_order_number)
    assert final is not None and final.status is PaymentOrderStatus.POSTED, final
    assert len(provider_payments(world)) == before + 1


def test_a_live_holder_keeps_its_lease_beyond_the_timeout_by_its_heartbeat(records_table: str) -> None:
    store = RecordsStore(records_table)

    def now() -> datetime:
        return datetime.now(UTC)

    with HeldLease(store.leases, "conn-1", "probe", "holder-1", clock=now, interval=0.2, timeout=2.0) as held:
        assert held.held
        # Twice the timeout, beat by beat (ten beats a timeout: a loaded machine may delay a few)
        for _ in range(20):
            time.sleep(0.2)
            assert store.leases.acquire_lease("conn-1", "probe", "holder-2", now=now(), seconds=1) is None
        assert not held.lost
    # Released at the end of the block: the next holder needs no wait at all
    assert store.leases.acquire_lease("conn-1", "probe", "holder-2", now=now(), seconds=1) is not None
