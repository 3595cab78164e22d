"""Finding changes in the QuickBooks sandbox: CDC (30-day look-back, 1,000 objects) and signed webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import requests
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from local.sandboxes.generator import generate_ledger
from local.sandboxes.quickbooks import QuickBooksSandbox

CLIENT_ID = "changes-app"
VERIFIER = "verifier-token-5c1f"


@dataclass
class Company:
    sandbox: QuickBooksSandbox
    realm_id: str
    headers: dict[str, str]

    def cdc(self, entities: str, changed_since: str) -> requests.Response:
        return requests.get(
            f"{self.sandbox.base_url}/v3/company/{self.realm_id}/cdc",
            params={"entities": entities, "changedSince": changed_since, "minorversion": "75"},
            headers=self.headers,
            timeout=10,
        )

    def since(self) -> str:
        """Now, as a client would send it (seconds, UTC offset); later changes are after it."""
        moment = self.sandbox.clock.now().replace(microsecond=0)
        self.sandbox.clock.advance(1)
        return moment.isoformat()


def make_company(bills: int, seed: int = 21) -> Company:
    sandbox = QuickBooksSandbox(seed=seed)
    sandbox.register_app(CLIENT_ID, "secret", ["http://127.0.0.1:9/cb"])
    realm_id = sandbox.add_tenant(
        generate_ledger(seed=seed, bills=bills, as_of=sandbox.clock.now() - timedelta(days=40))
    )
    token = sandbox.issue_tokens(CLIENT_ID, realm_id)["access_token"]
    return Company(sandbox, realm_id, {"Authorization": f"Bearer {token}", "Accept": "application/json"})


@pytest.fixture
def company() -> Iterator[Company]:
    company = make_company(bills=40)
    with company.sandbox:
        yield company


def open_bills(company: Company) -> list[dict[str, Any]]:
    active = {v["Id"] for v in company.sandbox.vendors(company.realm_id) if v["Active"]}
    return [
        b for b in company.sandbox.bills(company.realm_id) if b["Balance"] > 0 and b["VendorRef"]["value"] in active
    ]


# ---- CDC -------------------------------------------------------------------------------------


def test_cdc_returns_what_changed_with_deleted_bills_as_tombstones(company: Company) -> None:
    # Given a ledger last touched 40 days ago, then three changes in QuickBooks
    since = company.since()
    paid, deleted = open_bills(company)[:2]
    company.sandbox.pay_bill_elsewhere(company.realm_id, paid["Id"])
    company.sandbox.delete_bill(company.realm_id, deleted["Id"])
    company.sandbox.edit_vendor(company.realm_id, paid["VendorRef"]["value"], name="Renamed Supplies Ltd.")

    # When the client asks CDC for bills, vendors, bill payments and invoices since before them
    response = company.cdc("Bill,Vendor,BillPayment,Invoice", since)

    # Then one QueryResponse per entity, in the order asked, holds exactly the changes
    assert response.status_code == 200
    (cdc,) = response.json()["CDCResponse"]
    bills, vendors, payments, invoices = cdc["QueryResponse"]
    by_id = {bill["Id"]: bill for bill in bills["Bill"]}
    assert set(by_id) == {paid["Id"], deleted["Id"]}
    assert by_id[paid["Id"]]["Balance"] == 0
    tombstone = by_id[deleted["Id"]]
    assert tombstone["status"] == "Deleted"
    assert set(tombstone) == {"domain", "status", "Id", "MetaData"}
    assert [v["DisplayName"] for v in vendors["Vendor"]] == ["Renamed Supplies Ltd."]
    assert len(payments["BillPayment"]) == 1 and payments["totalCount"] == 1
    assert invoices == {}


def test_cdc_look_back_is_limited_to_30_days(company: Company) -> None:
    # Given a changedSince 31 days back, and one just under 30 days back
    now = company.sandbox.clock.now().replace(microsecond=0)
    too_old = (now - timedelta(days=31)).isoformat()
    in_range = (now - timedelta(days=30) + timedelta(minutes=1)).isoformat()

    # When CDC is called with each, then the older one is refused as Intuit does
    refused = company.cdc("Bill", too_old)
    assert refused.status_code == 400
    error = refused.json()["Fault"]["Error"][0]
    assert (
        error["Detail"]
        == f"Operation cdc with changedSince date {too_old} which is older than fixed days is not supported."
    )
    assert company.cdc("Bill", in_range).status_code == 200


def test_cdc_answers_at_most_1000_objects_the_oldest_changes_first() -> None:
    # Given 1,050 bills changed one after another
    company = make_company(bills=1300, seed=22)
    since = company.since()
    changed = [b for b in company.sandbox.bills(company.realm_id) if b["Balance"] > 0][:1050]
    assert len(changed) == 1050
    for bill in changed:
        company.sandbox.void_bill(company.realm_id, bill["Id"])
        company.sandbox.clock.advance(1)

    # When CDC is asked for bills since before the first change
    with company.sandbox:
        bills = company.cdc("Bill", since).json()["CDCResponse"][0]["QueryResponse"][0]["Bill"]

    # Then it holds 1,000 of them, the earliest changed, so the client can narrow the window
    assert len(bills) == 1000
    assert [b["Id"] for b in bills] == [b["Id"] for b in changed[:1000]]


def test_cdc_needs_its_parameters(company: Company) -> None:
    assert company.cdc("", company.since()).json()["Fault"]["Error"][0]["code"] == "2020"
    assert company.cdc("Bill", "yesterday").json()["Fault"]["Error"][0]["code"] == "2040"


# ---- webhooks --------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A webhook endpoint that checks intuit-signature like an integrator's handler does."""

    token: str
    deliveries: list[tuple[dict[str, str], bytes, bool]] = field(default_factory=list)
    server: BaseWSGIServer | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        expected = base64.b64encode(hmac.new(self.token.encode(), body, hashlib.sha256).digest()).decode()
        valid = hmac.compare_digest(expected, request.headers.get("intuit-signature", ""))
        self.deliveries.append((dict(request.headers), body, valid))
        return Response(status=200 if valid else 401)(environ, start_response)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}/quickbooks/webhooks"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(VERIFIER)
    receiver.server = make_server("127.0.0.1", 0, receiver, threaded=True)
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.server.shutdown()
    thread.join()


def test_bill_change_sends_a_signed_cloudevents_notification(company: Company, receiver: Receiver) -> None:
    # Given webhooks configured with a verifier token (CloudEvents is the default format)
    company.sandbox.configure_webhooks(receiver.url, VERIFIER, entities=("Bill",))
    bill = open_bills(company)[0]

    # When the bill is voided in QuickBooks
    company.sandbox.void_bill(company.realm_id, bill["Id"])
    company.sandbox.wait_for_webhooks()

    # Then one delivery arrives whose intuit-signature verifies, describing the bill as a CloudEvent
    ((headers, body, valid),) = receiver.deliveries
    assert valid
    assert headers["Content-Type"] == "application/cloudevents+json"
    (event,) = json.loads(body)
    assert event["specversion"] == "1.0"
    assert event["type"] == "qbo.bill.updated.v1"
    assert (event["intuitaccountid"], event["intuitentityid"]) == (company.realm_id, bill["Id"])
    assert event["data"]["PrivateNote"] == "Voided"
    assert [d.status for d in company.sandbox.webhook_deliveries()] == [200]


def test_legacy_event_notifications_are_an_option(company: Company, receiver: Receiver) -> None:
    # Given the legacy format
    company.sandbox.configure_webhooks(receiver.url, VERIFIER, payload_format="legacy")
    vendor = company.sandbox.vendors(company.realm_id)[0]

    # When a vendor is edited and a bill deleted
    company.sandbox.edit_vendor(company.realm_id, vendor["Id"], email="ap@renamed.example")
    company.sandbox.delete_bill(company.realm_id, open_bills(company)[0]["Id"])
    company.sandbox.wait_for_webhooks()

    # Then each delivery is signed and in the eventNotifications shape
    operations = []
    for headers, body, valid in receiver.deliveries:
        assert valid and headers["Content-Type"] == "application/json"
        (notification,) = json.loads(body)["eventNotifications"]
        assert notification["realmId"] == company.realm_id
        operations += [(e["name"], e["operation"]) for e in notification["dataChangeEvent"]["entities"]]
    assert sorted(operations) == [("Bill", "Delete"), ("Vendor", "Update")]


def test_a_receiver_with_another_token_would_reject_the_signature(company: Company, receiver: Receiver) -> None:
    company.sandbox.configure_webhooks(receiver.url, "some-other-token")
    company.sandbox.void_bill(company.realm_id, open_bills(company)[0]["Id"])
    company.sandbox.wait_for_webhooks()
    assert [valid for _, _, valid in receiver.deliveries] == [False]
    assert [d.status for d in company.sandbox.webhook_deliveries()] == [401]
