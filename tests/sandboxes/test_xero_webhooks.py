"""Xero webhooks from the sandbox: signed INVOICE and CONTACT events, and the intent-to-receive check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from local.sandboxes.generator import generate_ledger
from local.sandboxes.xero import XeroSandbox
from tests.sandboxes.test_xero_helpers import CLIENT_ID, Org, connect


class Receiver:
    """A webhook endpoint on loopback that keeps what it received and answers as `answer` decides."""

    def __init__(self, answer: Callable[[bytes, str], int]) -> None:
        self.deliveries: list[tuple[bytes, str]] = []
        self._answer = answer
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/xero/webhooks"

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        body = request.get_data()
        signature = request.headers.get("x-xero-signature", "")
        self.deliveries.append((body, signature))
        return Response(b"", status=self._answer(body, signature))(environ, start_response)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._thread.join()

    def events(self) -> list[dict[str, Any]]:
        return [event for body, _ in self.deliveries for event in json.loads(body)["events"]]


def signature_of(body: bytes, key: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def verifying(key_holder: dict[str, str]) -> Callable[[bytes, str], int]:
    """A correct receiver: 200 for a valid signature, 401 otherwise."""

    def answer(body: bytes, signature: str) -> int:
        expected = signature_of(body, key_holder["key"])
        return 200 if hmac.compare_digest(expected, signature) else 401

    return answer


@pytest.fixture
def org() -> Iterator[Org]:
    sandbox = XeroSandbox(seed=41)
    with sandbox:
        yield connect(sandbox, generate_ledger(seed=41, bills=12, as_of=sandbox.clock.now()))


def open_bill(org: Org) -> str:
    return next(b.key for b in org.ledger.bills if b.state == "open" and b.currency == org.ledger.base_currency)


def test_paying_a_bill_sends_a_signed_invoice_update(org: Org) -> None:
    # Given the app subscribed with a verifying endpoint
    keys: dict[str, str] = {}
    with Receiver(verifying(keys)) as receiver:
        keys["key"] = org.sandbox.configure_webhook(CLIENT_ID, receiver.url)
        key = open_bill(org)

        # When the bill is paid through the API
        body = {
            "Invoice": {"InvoiceID": org.invoice_id(key)},
            "Account": {"AccountID": org.account_id(f"bank-{org.ledger.base_currency.lower()}")},
            "Amount": "1.00",
        }
        assert org.put("Payments", {"Payments": [body]}).status_code == 200
        org.sandbox.wait_for_webhooks()

    # Then one INVOICE UPDATE for that bill arrives, signed with the webhook key
    (delivered, signature) = receiver.deliveries[0]
    (event,) = receiver.events()
    assert signature == signature_of(delivered, keys["key"])
    assert (event["eventCategory"], event["eventType"]) == ("INVOICE", "UPDATE")
    assert (event["resourceId"], event["tenantId"], event["tenantType"]) == (
        org.invoice_id(key),
        org.tenant,
        "ORGANISATION",
    )
    assert event["resourceUrl"].endswith(f"/api.xro/2.0/Invoices/{org.invoice_id(key)}")
    assert [d.status for d in org.sandbox.webhook_deliveries()] == [200]


def test_vendor_edits_and_new_bills_send_contact_and_invoice_events_in_sequence(org: Org) -> None:
    keys: dict[str, str] = {}
    with Receiver(verifying(keys)) as receiver:
        keys["key"] = org.sandbox.configure_webhook(CLIENT_ID, receiver.url)
        contact = org.sandbox.contact_id(org.tenant, org.ledger.vendors[0].key)

        org.sandbox.edit_vendor(org.tenant, contact, name="Northwind Office Supplies (2026) Ltd.")
        org.sandbox.wait_for_webhooks()
        new_bill = org.sandbox.add_bill(org.tenant, replace(org.ledger.bills[0], key="bill-new-1"))
        org.sandbox.wait_for_webhooks()

    payloads = [json.loads(body) for body, _ in receiver.deliveries]
    events = receiver.events()
    assert [(e["eventCategory"], e["eventType"], e["resourceId"]) for e in events] == [
        ("CONTACT", "UPDATE", contact),
        ("INVOICE", "CREATE", new_bill),
    ]
    assert [p["firstEventSequence"] for p in payloads] == [1, 2]
    assert all(p["firstEventSequence"] == p["lastEventSequence"] and p["entropy"] for p in payloads)


def test_no_events_for_an_organisation_the_app_is_not_connected_to(org: Org) -> None:
    other = org.sandbox.add_tenant(generate_ledger(seed=42, bills=4, as_of=org.sandbox.clock.now()))
    keys: dict[str, str] = {}
    with Receiver(verifying(keys)) as receiver:
        keys["key"] = org.sandbox.configure_webhook(CLIENT_ID, receiver.url)
        bill = next(iter(org.sandbox.organisation(other).invoices))

        org.sandbox.change_bill_amount(other, bill, Decimal("10.00"))
        org.sandbox.wait_for_webhooks()

    assert receiver.deliveries == []


def test_intent_to_receive_passes_for_an_endpoint_that_checks_signatures(org: Org) -> None:
    keys: dict[str, str] = {}
    with Receiver(verifying(keys)) as receiver:
        keys["key"] = org.sandbox.configure_webhook(CLIENT_ID, receiver.url)

        passed = org.sandbox.intent_to_receive(CLIENT_ID)

    bodies = [json.loads(body) for body, _ in receiver.deliveries]
    assert passed is True
    assert [b["events"] for b in bodies] == [[], []]
    assert receiver.deliveries[0][1] != receiver.deliveries[1][1]


def test_intent_to_receive_fails_for_an_endpoint_that_accepts_anything(org: Org) -> None:
    with Receiver(lambda body, signature: 200) as receiver:
        org.sandbox.configure_webhook(CLIENT_ID, receiver.url)

        assert org.sandbox.intent_to_receive(CLIENT_ID) is False


def test_intent_to_receive_fails_for_an_unreachable_endpoint(org: Org) -> None:
    with Receiver(lambda body, signature: 200) as receiver:
        url = receiver.url
    org.sandbox.configure_webhook(CLIENT_ID, url)

    assert org.sandbox.intent_to_receive(CLIENT_ID) is False
