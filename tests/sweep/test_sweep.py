"""The sweeper moves on what stopped moving: unmoved payment orders queued again, sync slots of finished
runs freed, connections abandoned in `authorizing` disconnected - and leaves alone what is still moving."""

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from payedge_connect.models import (
    Connection,
    ConnectionStatus,
    PaymentOrder,
    PaymentOrderStatus,
    Provider,
    SyncOutcome,
    SyncTrigger,
)
from payedge_connect.storage import RecordsStore
from payedge_connect.storage.connections import CONNECTION_SHARDS
from payedge_connect.sweep import ABANDONED_REASON, AUTHORIZATION_ABANDONED_AFTER, ORDER_UNMOVED_AFTER, sweep
from payedge_connect.sync.requests import new_sync_run
from payedge_connect.writeback.service import process_payments
from tests.worlds import SyncWorld
from tests.writeback.test_payment_runs import open_payables, submit
from tests.writeback.test_writeback import BUS, details, paying, provider_payments

__all__ = ["paying"]


@pytest.mark.parametrize("world", [Provider.XERO], indirect=True, ids=["xero"])
def test_the_sweeper_moves_on_what_stopped_and_leaves_what_moves(paying: SyncWorld) -> None:
    store, clock = paying.services.store, paying.sandbox.clock
    connection_id = paying.connection.connection_id
    queue_url = boto3.client("sqs").create_queue(QueueName="writeback")["QueueUrl"]
    # Given an order whose message was lost, one left posting by a killed worker (its payment sent)
    lost, crashed, fresh = open_payables(paying, 3)
    lost_number, crashed_number = submit(paying, [details(lost, "PO-LOST-MSG"), details(crashed, "PO-CRASHED")])
    posting = store.payment_orders.get_payment_order(connection_id, crashed_number)
    assert posting is not None
    store.payment_orders.save_payment_order(
        posting.model_copy(update={"status": PaymentOrderStatus.POSTING, "attempts": 1})
    )
    # a sync slot left by a finished run whose worker died before freeing it, and one of a running sync
    finished = new_sync_run(connection_id, SyncTrigger.SCHEDULE, clock.now()).model_copy(
        update={"outcome": SyncOutcome.SUCCEEDED}
    )
    store.syncs.put_sync_run(finished)
    assert (
        store.syncs.claim_sync_slot(connection_id, finished.sync_run_id, now=clock.now(), stale_after=timedelta(1))
        is None
    )
    # a connection the user never came back to from the consent page, and one just started
    now = clock.now()
    for name in ("conn-abandoned", "conn-starting"):
        store.connections.create_connection(
            Connection(
                connection_id=name,
                business_id="biz-1",
                provider=Provider.XERO,
                status=ConnectionStatus.AUTHORIZING,
                created_at=now,
                updated_at=now,
            )
        )
    clock.advance(max(ORDER_UNMOVED_AFTER, AUTHORIZATION_ABANDONED_AFTER).total_seconds() + 60)
    starting = store.connections.get_connection("conn-starting")
    assert starting is not None
    store.connections.save_connection(starting.model_copy(update={"updated_at": clock.now()}))
    (fresh_number,) = submit(paying, [details(fresh, "PO-JUST-IN")])
    # When the sweeper runs
    report = sweep(paying.services, writeback_queue_url=queue_url)
    # Then the two unmoved orders are queued again (not the one just received), the finished run's slot
    # is free, and the abandoned connection is disconnected with a reason; the one just started is not
    assert report.as_dict() == {"ordersRequeued": 2, "syncSlotsFreed": 1, "connectionsExpired": 1}
    messages = boto3.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    queued = {json.loads(m["Body"])["paymentOrderNumber"] for m in messages}
    assert queued == {lost_number, crashed_number} and fresh_number not in queued
    assert store.syncs.active_sync_run_id(connection_id) is None
    abandoned = store.connections.get_connection("conn-abandoned")
    assert abandoned is not None and abandoned.status is ConnectionStatus.DISCONNECTED
    assert abandoned.attention == [ABANDONED_REASON]
    assert store.connections.get_connection("conn-starting").status is ConnectionStatus.AUTHORIZING  # type: ignore[union-attr]
    # And what it queued posts once each (the crashed one is looked up first: its payment was not sent)
    before = len(provider_payments(paying))
    run = process_payments(paying.services, connection_id, sorted(queued), bus_name=BUS)
    assert {run.orders[n].status for n in queued} == {PaymentOrderStatus.POSTED}
    assert len(provider_payments(paying)) == before + 2
    # And a second sweep finds nothing more to move
    assert sweep(paying.services, writeback_queue_url=queue_url).as_dict() == {
        "ordersRequeued": 0,
        "syncSlotsFreed": 0,
        "connectionsExpired": 0,
    }


NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def an_order(connection_id: str, number: str, status: PaymentOrderStatus, at: datetime) -> PaymentOrder:
    return PaymentOrder(
        payment_order_number=number,
        connection_id=connection_id,
        business_id=f"biz-{connection_id}",
        bill_id="bill-1",
        vendor_name="Fournitures Québec Inc.",
        currency="CAD",
        amount=Decimal("10.00"),
        funding_source="bank",
        payment_date=date(2026, 11, 24),
        payment_status="settled",
        status=status,
        created_at=at,
        updated_at=at,
    )


def a_connected(connection_id: str) -> Connection:
    return Connection(
        connection_id=connection_id,
        business_id=f"biz-{connection_id}",
        provider=Provider.XERO,
        status=ConnectionStatus.CONNECTED,
        created_at=NOW,
        updated_at=NOW,
    )


@pytest.mark.parametrize("world", [Provider.XERO], indirect=True, ids=["xero"])
def test_a_sweep_reads_what_is_in_flight_not_every_connection(paying: SyncWorld) -> None:
    store, clock = paying.services.store, paying.sandbox.clock
    queue_url = boto3.client("sqs").create_queue(QueueName="writeback")["QueueUrl"]
    requests: list[str] = []

    def count(event_name: str, **_: Any) -> None:
        requests.append(event_name)

    store.table.meta.client.meta.events.register("before-call.dynamodb", count)
    # Given two connections each with an order whose message was lost
    for name in ("conn-stuck-1", "conn-stuck-2"):
        store.connections.create_connection(a_connected(name))
        stuck = an_order(name, f"PO-{name}", PaymentOrderStatus.RECEIVED, clock.now())
        store.payment_orders.create_payment_order(stuck)
    clock.advance(ORDER_UNMOVED_AFTER.total_seconds() + 60)
    requests.clear()
    assert sweep(paying.services, writeback_queue_url=queue_url).orders_requeued == 2
    few = len(requests)
    # When 200 connections with nothing in flight join (each with a posted order) and the sweep runs again
    for index in range(200):
        name = f"conn-idle-{index:03d}"
        store.connections.create_connection(a_connected(name))
        store.payment_orders.create_payment_order(an_order(name, f"PO-{name}", PaymentOrderStatus.POSTED, NOW))
    requests.clear()
    report = sweep(paying.services, writeback_queue_url=queue_url)
    # Then it queues the same two orders with the same requests: one query per shard of the in-flight
    # index and one per shard of the authorizing connections (each a single page here), nothing per
    # connection (before the index: about 4 per connected connection, over 800 here)
    assert report.orders_requeued == 2
    assert len(requests) == few == 2 * CONNECTION_SHARDS
    assert set(requests) == {"before-call.dynamodb.Query"}


def test_an_order_is_in_flight_only_until_it_reaches_another_status(records_table: str) -> None:
    # Given a received order and an order posting
    store = RecordsStore(records_table)
    store.payment_orders.create_payment_order(an_order("conn-1", "PO-1", PaymentOrderStatus.RECEIVED, NOW))
    posting = an_order("conn-1", "PO-2", PaymentOrderStatus.POSTING, NOW)
    store.payment_orders.create_payment_order(posting)
    later = NOW + timedelta(days=1)
    assert {work.sort_key for work in store.in_flight.unmoved_since(later)} == {"PAYMENT#PO-1", "PAYMENT#PO-2"}
    # When the posting one is posted and the received one moves on to posting
    store.payment_orders.save_payment_order(posting.model_copy(update={"status": PaymentOrderStatus.POSTED}))
    received = store.payment_orders.get_payment_order("conn-1", "PO-1")
    assert received is not None
    moved = NOW + timedelta(minutes=5)
    store.payment_orders.save_payment_order(
        received.model_copy(update={"status": PaymentOrderStatus.POSTING, "updated_at": moved})
    )
    # Then the posted order has left the index, and the other one is in it from when it last moved
    assert [work.sort_key for work in store.in_flight.unmoved_since(later)] == ["PAYMENT#PO-1"]
    assert list(store.in_flight.unmoved_since(moved - timedelta(seconds=1))) == []
    assert [w.connection_id for w in store.in_flight.unmoved_since(moved)] == ["conn-1"]


def test_a_sync_slot_is_in_flight_while_held(records_table: str) -> None:
    # Given a claimed sync slot
    store = RecordsStore(records_table)
    assert store.syncs.claim_sync_slot("conn-1", "run-1", now=NOW, stale_after=timedelta(hours=2)) is None
    (held,) = store.in_flight.unmoved_since(NOW)
    assert (held.connection_id, held.sort_key, held.sync_run_id) == ("conn-1", "SYNC#ACTIVE", "run-1")
    # When it is released
    store.syncs.release_sync_slot("conn-1", "run-1")
    # Then it has left the index
    assert list(store.in_flight.unmoved_since(NOW + timedelta(days=1))) == []
