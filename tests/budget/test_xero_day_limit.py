"""Xero's Starter tier (1,000 calls a day per organisation): the day is used up, the connection says
until when, nothing is lost, and once the day turns the waiting sync and payment finish by themselves.

The service's waits for its call budget move the sandbox clock (`simulated_waits`), so a day of
Xero's limits passes in seconds."""

from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from local.sandboxes.core import Clock
from local.sandboxes.generator import generate_ledger
from local.sandboxes.xero import XeroSandbox
from local.sandboxes.xero.limits import XeroLimits
from payedge_connect.connections.manage import show_connection
from payedge_connect.models import PaymentOrderStatus, Provider, SyncOutcome, SyncTrigger
from payedge_connect.providers.errors import CallBudgetSpent
from payedge_connect.sync.requests import request_sync
from payedge_connect.writeback.events import PaymentDetails
from payedge_connect.writeback.orders import submit_payment
from payedge_connect.writeback.service import WritebackRetryLater, process_payment
from tests.worlds import SyncWorld, connect

DAY_LIMIT = 1000


@pytest.fixture
def starter_tier(records_table: str, kms_key_arn: str, documents_bucket: str) -> Iterator[SyncWorld]:
    sandbox = XeroSandbox(clock=Clock(), auto_approve=True)
    sandbox.set_limits(XeroLimits(tenant_per_day=DAY_LIMIT))
    ledger = generate_ledger(seed=21, bills=30, vendors=8, documents=2)
    with connect(
        Provider.XERO,
        ledger,
        table=records_table,
        kms_key_arn=kms_key_arn,
        bucket=documents_bucket,
        sandbox=sandbox,
        xero_daily_call_limit=DAY_LIMIT,
        simulated_waits=True,
    ) as world:
        yield world


def a_long_invocation() -> float:
    return 900.0


def test_a_spent_day_is_shown_waited_out_and_nothing_is_lost(starter_tier: SyncWorld) -> None:
    world = starter_tier
    world.sync()
    world.accept_mapping()
    connector = world.services.connector(Provider.XERO)

    # Given the user's reads use up the organisation's day at Xero
    with pytest.raises(CallBudgetSpent) as spent:
        for _ in range(2 * DAY_LIMIT):
            connector.accounts(world.services.api(world.connection, time_left=a_long_invocation))
    assert spent.value.limit == "day"
    answers = [entry.status for entry in world.sandbox.requests.entries() if entry.tenant]
    assert len(answers) <= DAY_LIMIT
    assert 429 not in answers  # the budget stopped first: Xero never had to refuse (and count it)

    # Then the connection says the day is spent, and until when
    now = world.sandbox.clock.now()
    view = show_connection(world.services, business_id="biz-1", connection_id=world.connection.connection_id)
    assert view.call_budget is not None and view.call_budget.limit == "day"
    assert now < view.call_budget.resumes_at <= now + timedelta(hours=25)
    assert any("resume by themselves" in note for note in view.attention)

    # And a payment and a scheduled sync wait instead of failing
    payable = next(
        p
        for p in world.services.store.payables.list_payables(
            world.connection.connection_id, status=None, limit=50, cursor=None
        ).items
        if p.status.value == "open"
    )
    order = submit_payment(
        world.services,
        PaymentDetails.model_validate(
            {
                "payment_order_number": "PO-DAY-1",
                "bill_id": payable.bill_id,
                "vendor_name": payable.vendor_name,
                "currency": payable.currency,
                "amount": str(payable.amount_due),
                "remittance_note": "Paid by PayEdge",
                "invoice_number": payable.invoice_number,
                "payment_status": "completed",
                "payment_date": date(2026, 11, 24).isoformat(),
                "funding_source": f"{payable.currency.lower()}-operating",
            }
        ),
        business_id="biz-1",
        connection_id=world.connection.connection_id,
    )
    with pytest.raises(WritebackRetryLater) as later:
        process_payment(world.services, order.connection_id, order.payment_order_number, bus_name="default")
    assert later.value.delay_seconds is not None and later.value.delay_seconds > 0
    waiting = world.services.store.payment_orders.get_payment_order(order.connection_id, order.payment_order_number)
    assert (
        waiting is not None and waiting.status is not PaymentOrderStatus.FAILED and waiting.provider_payment_id is None
    )

    connection = world.services.store.connections.get_connection(world.connection.connection_id)
    assert connection is not None
    run, _ = request_sync(world.services, connection, SyncTrigger.SCHEDULE)
    paused = world.run(run)
    assert paused.continue_after_seconds is not None
    assert "day call budget" in (paused.run.detail or "")

    # When the day turns
    world.sandbox.clock.advance(view.call_budget.resumes_at.timestamp() - now.timestamp() + 1)

    # Then the payment posts once and the sync finishes
    posted = process_payment(world.services, order.connection_id, order.payment_order_number, bus_name="default")
    assert posted.status is PaymentOrderStatus.POSTED, posted.reason
    ours = [p for p in world.sandbox.payments(world.tenant_id) if "PO-DAY-1" in str(p)]
    assert len(ours) == 1
    result = world.run(run)
    while result.continue_after_seconds is not None:
        result = world.run(result.run)
    assert result.run.outcome is SyncOutcome.SUCCEEDED
