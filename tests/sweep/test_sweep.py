"""The sweeper moves on what stopped moving: unmoved payment orders queued again, sync slots of finished
runs freed, connections abandoned in `authorizing` disconnected - and leaves alone what is still moving."""

import json
from datetime import timedelta

import boto3
import pytest

from payedge_connect.models import Connection, ConnectionStatus, PaymentOrderStatus, Provider, SyncOutcome, SyncTrigger
from payedge_connect.sweep import ABANDONED_REASON, AUTHORIZATION_ABANDONED_AFTER, ORDER_UNMOVED_AFTER, sweep
from payedge_connect.sync.engine import new_sync_run
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
