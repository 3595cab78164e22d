"""Webhook-triggered syncs of just the named entities, and one bad record never failing a sync."""

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from payedge_connect.models import Provider, SyncOutcome
from payedge_connect.sync.engine import run_sync
from payedge_connect.sync.requests import request_entity_sync
from payedge_connect.sync.webhooks import InvalidSignature, handle_webhook
from tests.worlds import CLIENT_ID, WEBHOOK_KEY, SyncWorld


def break_a_bill(world: SyncWorld) -> str:
    """Give one open bill a currency that is not a code, behind the connector's back (no sandbox control
    makes a malformed bill, so the test edits the sandbox's ledger directly)."""
    if world.provider is Provider.QUICKBOOKS:
        bills = world.sandbox._realm(world.tenant_id).entities["Bill"]
        bill_id = next(bill_id for bill_id, bill in sorted(bills.items()) if Decimal(str(bill["Balance"])) > 0)
        bills[bill_id]["CurrencyRef"] = {"value": "Dollars"}
    elif world.provider is Provider.XERO:
        invoices = world.sandbox.organisation(world.tenant_id).invoices
        bill_id = next(i for i, bill in sorted(invoices.items()) if bill.status == "AUTHORISED")
        invoices[bill_id].currency = "Dollars"
    else:
        invoices = world.sandbox.business(world.tenant_id).purchase_invoices
        bill_id = next(i for i, bill in sorted(invoices.items()) if bill.status_id in ("UNPAID", "PART_PAID"))
        invoices[bill_id].currency = "Dollars"
    return bill_id


def test_a_malformed_bill_is_skipped_with_its_reason_and_every_other_bill_syncs(world: SyncWorld) -> None:
    # Given one open bill the provider holds in a shape we cannot read
    broken = break_a_bill(world)
    # When the sync runs
    run = world.sync().run
    # Then it completes, says which bill it skipped and why, and stores every other open bill
    assert run.outcome is SyncOutcome.PARTIAL
    assert [(error.entity, error.provider_id) for error in run.errors] == [("bill", broken)]
    assert "currency" in run.errors[0].reason.lower()
    expected = sum(1 for bill in world.ledger.bills if bill.state in ("open", "part_paid")) - 1
    stored = world.open_payables()
    assert broken not in stored and len(stored) == expected


@dataclass
class Receiver:
    """A loopback endpoint that keeps what the provider's webhook delivered (raw body and headers)."""

    url: str = ""
    deliveries: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received = Receiver()

    @Request.application  # type: ignore[arg-type]
    def app(request: Request) -> Response:
        received.deliveries.append((request.get_data(), {k.lower(): v for k, v in request.headers.items()}))
        return Response("", status=200)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    received.url = f"http://127.0.0.1:{server.server_port}/webhook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield received
    server.shutdown()
    thread.join(timeout=5)


@pytest.mark.parametrize("world", [Provider.QUICKBOOKS, Provider.XERO], indirect=True, ids=lambda p: p.value)
def test_a_provider_webhook_syncs_just_the_bill_it_names(world: SyncWorld, receiver: Receiver) -> None:
    # Given a synced organisation whose provider notifies us of changes
    world.sync()
    if world.provider is Provider.QUICKBOOKS:
        world.sandbox.configure_webhooks(receiver.url, WEBHOOK_KEY)
        signature_header = "intuit-signature"
    else:
        world.sandbox.configure_webhook(CLIENT_ID, receiver.url, key=WEBHOOK_KEY)
        signature_header = "x-xero-signature"
    bill_id = sorted(world.open_payables())[0]
    # When the bill is paid elsewhere and the provider's signed notification arrives
    world.sandbox.pay_bill_elsewhere(world.tenant_id, bill_id)
    world.sandbox.wait_for_webhooks()
    assert receiver.deliveries, "the sandbox sent no webhook"
    messages = [
        message
        for raw, headers in receiver.deliveries
        for message in handle_webhook(world.services, world.provider, raw, headers.get(signature_header)).messages
    ]
    # Then exactly that bill is synced and closed, with a handful of provider calls
    named = [message for message in messages if bill_id in message.bill_ids]
    assert named, [message.bill_ids for message in messages]
    for message in messages:
        run = world.services.store.syncs.get_sync_run(message.connection_id, message.sync_run_id)
        assert run is not None
        result = run_sync(
            world.services, run, documents=world.documents, time_left=lambda: 900.0, bill_ids=message.bill_ids
        )
        assert result.run.outcome is SyncOutcome.SUCCEEDED
        assert result.run.counts.bills_closed == 1 and result.run.provider_calls <= 4
    stored = world.services.store.payables.get_payable(world.connection.connection_id, bill_id)
    assert stored is not None and stored.closed_reason is not None
    assert stored.closed_reason.value == "paid_elsewhere"


@pytest.mark.parametrize("world", [Provider.QUICKBOOKS, Provider.XERO], indirect=True, ids=lambda p: p.value)
def test_a_notification_not_signed_with_our_key_is_refused_and_nothing_syncs(world: SyncWorld) -> None:
    def sync_runs() -> int:
        return len(
            world.services.store.syncs.list_sync_runs(world.connection.connection_id, limit=100, cursor=None).items
        )

    before = sync_runs()
    body = b'{"eventNotifications": [{"realmId": "1", "dataChangeEvent": {"entities": [{"name": "Bill", "id": "1"}]}}]}'
    with pytest.raises(InvalidSignature):
        handle_webhook(world.services, world.provider, body, "bm90LXRoZS1zaWduYXR1cmU=")
    assert sync_runs() == before


@pytest.mark.parametrize("world", [Provider.QUICKBOOKS, Provider.SAGE], indirect=True, ids=lambda p: p.value)
def test_an_entity_sync_of_a_bill_deleted_at_the_provider_closes_it(world: SyncWorld) -> None:
    # Given a synced bill, then deleted at the provider (Xero only deletes drafts, which we never hold)
    world.sync()
    bill_id = sorted(world.open_payables())[0]
    world.sandbox.delete_bill(world.tenant_id, bill_id)
    # When a webhook-style sync names just that bill
    connection = world.services.store.connections.get_connection(world.connection.connection_id)
    assert connection is not None
    message = request_entity_sync(world.services, connection, bill_ids=[bill_id], vendor_ids=[])
    run = world.services.store.syncs.get_sync_run(message.connection_id, message.sync_run_id)
    assert run is not None
    result = run_sync(world.services, run, documents=world.documents, time_left=lambda: 900.0, bill_ids=[bill_id])
    # Then the bill is closed as deleted, from what we stored
    assert result.run.counts.bills_closed == 1
    stored = world.services.store.payables.get_payable(world.connection.connection_id, bill_id)
    assert stored is not None and stored.closed_reason is not None and stored.closed_reason.value == "deleted"
