"""Sage sandbox API reads: business routing, paging, attributes, filters, incremental sync, limits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests

from local.sandboxes.generator import generate_ledger
from local.sandboxes.sage import SageSandbox
from tests.sandboxes.test_sage_helpers import (
    SageApi,
    api_for,
    connect,
    first_invoice,
    small_ledger,
    start_sandbox,
)


@pytest.fixture
def sandbox() -> Iterator[tuple[SageSandbox, str]]:
    running, business_id = start_sandbox()
    yield running, business_id
    running.stop()


@pytest.fixture(scope="module")
def big() -> Iterator[tuple[SageSandbox, SageApi]]:
    """A business of 450 bills, read-only for the tests that use it."""
    running, _ = start_sandbox(ledger=generate_ledger(seed=11, bills=450, documents=20))
    yield running, api_for(running)
    running.stop()


def lead_business(running: SageSandbox) -> str:
    return running.businesses_of(running.users()[0])[0]


def parse_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- businesses and X-Business ---------------------------------------------------------------------


def test_businesses_lists_every_business_of_the_user_with_base_attributes(sandbox: tuple[SageSandbox, str]) -> None:
    # Given a user with two businesses
    running, lead = sandbox
    second = running.add_tenant(small_ledger(seed=3, base_currency="GBP"), name="Thames Office Ltd")
    api = api_for(running)
    # When the app lists the businesses
    body = api.one("/businesses")
    # Then both come back, lead first, with id, displayed_as and $path only
    assert [item["id"] for item in body["$items"]] == [lead, second]
    assert body["$items"][1] == {
        "id": second,
        "displayed_as": "Thames Office Ltd",
        "$path": f"/businesses/{second}",
    }
    assert body["$total"] == 2
    assert api.one("/businesses/lead")["id"] == lead


def test_without_x_business_the_lead_business_answers(sandbox: tuple[SageSandbox, str]) -> None:
    # Given a user whose lead business holds 30 bills and a second business holding 5
    running, lead = sandbox
    second = running.add_tenant(small_ledger(seed=3, bills=5, documents=1), name="Second Co")
    api = api_for(running)
    # When the app calls without X-Business
    answer = api.get("/purchase_invoices")
    # Then the lead business answers and says so in the X-Business response header
    assert answer.status_code == 200
    assert answer.headers["X-Business"] == lead
    lead_total = answer.json()["$total"]
    # And with X-Business the other business answers
    other = SageApi(running, connect(running)["access_token"], second).get("/purchase_invoices")
    assert other.headers["X-Business"] == second
    assert other.json()["$total"] != lead_total
    assert other.json()["$total"] == len(running.purchase_invoices(second))


def test_x_business_the_user_cannot_reach_is_refused(sandbox: tuple[SageSandbox, str]) -> None:
    # Given a business that belongs to another Sage user
    running, _ = sandbox
    stranger = running.add_user("Other Person", "other@example.com")
    foreign = running.add_tenant(small_ledger(seed=5, bills=3, documents=0), user_id=stranger)
    api = SageApi(running, connect(running)["access_token"], foreign)
    # When the app names it in X-Business
    answer = api.get("/purchase_invoices")
    # Then Sage refuses with its 401 error array
    assert answer.status_code == 401
    assert answer.json()[0]["$dataCode"] == "AuthorizationFailure"


def test_invited_business_becomes_reachable_but_not_lead(sandbox: tuple[SageSandbox, str]) -> None:
    # Given a business of another user to which our user is then invited
    running, lead = sandbox
    owner = running.add_user("Accountant", "acct@example.com")
    client_business = running.add_tenant(small_ledger(seed=9, bills=4, documents=0), user_id=owner)
    running.grant_access(running.users()[0], client_business)
    api = api_for(running)
    # When the app lists businesses
    ids = [item["id"] for item in api.one("/businesses")["$items"]]
    # Then it sees both, and the lead is still the first one
    assert ids == [lead, client_business]
    assert api.one("/businesses/lead")["id"] == lead


# ---- attributes and paging -------------------------------------------------------------------------


def test_list_items_carry_only_base_attributes_unless_asked(big: tuple[SageSandbox, SageApi]) -> None:
    # Given a business with purchase invoices
    _, api = big
    # When the app lists them without attributes, with two named attributes, and with all
    bare = api.one("/purchase_invoices", items_per_page=5)["$items"]
    named = api.one("/purchase_invoices", items_per_page=5, attributes="total_amount,status")["$items"]
    full = api.one("/purchase_invoices", items_per_page=5, attributes="all")["$items"]
    # Then the bare list shows id/displayed_as/$path, the named list adds just those, all shows everything
    assert all(set(item) == {"id", "displayed_as", "$path"} for item in bare)
    assert all(set(item) == {"id", "displayed_as", "$path", "total_amount", "status"} for item in named)
    assert all({"outstanding_amount", "vendor_reference", "contact", "updated_at"} <= set(item) for item in full)


def test_single_invoice_shows_every_attribute(big: tuple[SageSandbox, SageApi]) -> None:
    # Given an invoice id from a bare list
    _, api = big
    key = api.one("/purchase_invoices", items_per_page=1)["$items"][0]["id"]
    # When the app fetches it
    invoice = api.one(f"/purchase_invoices/{key}")
    # Then it holds the full representation
    assert {"total_amount", "outstanding_amount", "invoice_lines", "currency", "status"} <= set(invoice)


def test_items_per_page_above_200_gets_200_a_page(big: tuple[SageSandbox, SageApi]) -> None:
    # Given more than 200 invoices
    _, api = big
    # When the app asks for 1000 a page
    page = api.one("/purchase_invoices", items_per_page=1000)
    # Then Sage's maximum of 200 applies and $next leads on
    assert page["$itemsPerPage"] == 200
    assert len(page["$items"]) == 200
    assert page["$next"] == "/purchase_invoices?page=2&items_per_page=200"
    assert page["$back"] is None


def test_following_next_visits_every_invoice_once(big: tuple[SageSandbox, SageApi]) -> None:
    # Given 450 bills of which some are deleted
    running, api = big
    expected = {item["id"] for item in running.purchase_invoices(lead_business(running))}
    # When the app follows $next from the first page of 50
    seen = [item["id"] for item in api.items("/purchase_invoices", items_per_page=50)]
    # Then every live invoice comes exactly once
    assert len(seen) == len(set(seen)) == len(expected)
    assert set(seen) == expected


def test_next_and_back_keep_the_filters(big: tuple[SageSandbox, SageApi]) -> None:
    # Given a filtered list on its second page
    _, api = big
    page = api.one("/purchase_invoices", status_id="UNPAID", items_per_page=20, page=2, attributes="status")
    # Then $next and $back repeat the filters, and every item has that status
    assert page["$back"] == "/purchase_invoices?page=1&items_per_page=20&status_id=UNPAID&attributes=status"
    assert page["$next"] == "/purchase_invoices?page=3&items_per_page=20&status_id=UNPAID&attributes=status"
    assert {item["status"]["id"] for item in page["$items"]} == {"UNPAID"}


def test_page_beyond_the_last_returns_the_last_page(big: tuple[SageSandbox, SageApi]) -> None:
    # Given a list of N invoices in pages of 200
    _, api = big
    total = api.one("/purchase_invoices", items_per_page=200)["$total"]
    last = -(-total // 200)
    # When the app asks for page 99
    page = api.one("/purchase_invoices", items_per_page=200, page=99)
    # Then the last page comes back, with no $next
    assert page["$page"] == last
    assert len(page["$items"]) == total - 200 * (last - 1)
    assert page["$next"] is None


def test_sort_orders_by_the_named_attribute_and_direction(big: tuple[SageSandbox, SageApi]) -> None:
    # Given many invoices
    _, api = big
    # When the app sorts them by updated_at, newest first
    items = api.items("/purchase_invoices", sort="updated_at:desc", attributes="updated_at", items_per_page=200)
    # Then they come newest first; an unknown sort attribute is refused
    stamps = [item["updated_at"] for item in items]
    assert stamps == sorted(stamps, reverse=True)
    assert api.get("/purchase_invoices", sort="total_amount").status_code == 422


def test_status_id_takes_one_value_and_a_list_matches_nothing(big: tuple[SageSandbox, SageApi]) -> None:
    # Given unpaid and part-paid invoices
    _, api = big
    unpaid = api.one("/purchase_invoices", status_id="UNPAID")["$total"]
    part_paid = api.one("/purchase_invoices", status_id="PART_PAID")["$total"]
    # When the app puts both ids in one status_id
    both = api.one("/purchase_invoices", status_id="UNPAID,PART_PAID")["$total"]
    # Then nothing matches: each status needs its own call
    assert unpaid > 0
    assert part_paid > 0
    assert both == 0


def test_artefact_statuses_list_the_purchase_statuses(big: tuple[SageSandbox, SageApi]) -> None:
    # Given the look-up of artefact statuses
    _, api = big
    # When the app lists them
    ids = {item["id"] for item in api.items("/artefact_statuses")}
    # Then the ids used to filter purchase invoices are there
    assert {"UNPAID", "PART_PAID", "PAID", "VOID"} <= ids


def test_ledger_accounts_for_other_payments_include_bank_fees(big: tuple[SageSandbox, SageApi]) -> None:
    # Given the chart of accounts
    _, api = big
    # When the app asks for accounts visible in other payments
    names = {item["displayed_as"] for item in api.items("/ledger_accounts", visible_in="other_payments")}
    # Then the bank fees expense account is offered and bank accounts are not
    assert any(name.startswith("Bank fees") for name in names)
    assert not any(name.startswith("Operating") for name in names)


def test_unknown_invoice_is_a_404_array(big: tuple[SageSandbox, SageApi]) -> None:
    # Given an id that does not exist
    _, api = big
    # When the app fetches it
    answer = api.get("/purchase_invoices/0123456789abcdef0123456789abcdef")
    # Then Sage answers 404 with its error array
    assert answer.status_code == 404
    assert answer.json()[0]["$dataCode"] == "RecordNotFound"
    assert set(answer.json()[0]) == {"$severity", "$dataCode", "$message", "$source"}


# ---- incremental sync ------------------------------------------------------------------------------


def test_updated_or_created_since_is_inclusive(sandbox: tuple[SageSandbox, str]) -> None:
    # Given an invoice whose updated_at is T
    running, _ = sandbox
    api = api_for(running)
    invoice = first_invoice(api, "UNPAID")
    moment = parse_time(invoice["updated_at"])
    # When the app asks for changes since T and since T plus one second
    at = {item["id"] for item in api.items("/purchase_invoices", updated_or_created_since=stamp(moment))}
    after = {
        item["id"]
        for item in api.items("/purchase_invoices", updated_or_created_since=stamp(moment + timedelta(seconds=1)))
    }
    # Then T itself is included, one second later it is not
    assert invoice["id"] in at
    assert invoice["id"] not in after


def test_edited_vendor_shows_in_the_next_incremental_read(sandbox: tuple[SageSandbox, str]) -> None:
    # Given a moment after the initial load and a vendor edited in Sage later on
    running, business_id = sandbox
    api = api_for(running)
    checkpoint = running.clock.now().replace(microsecond=0)
    running.clock.advance(5)
    vendor = api.items("/contacts", contact_type_id="VENDOR")[0]
    admin = requests.post(
        f"{running.base_url}/_admin/edit_vendor",
        json={"business_id": business_id, "vendor_id": vendor["id"], "changes": {"name": "Renamed Supplies Ltd."}},
    )
    assert admin.status_code == 200
    # When the app reads contacts changed since the checkpoint
    changed = api.items("/contacts", updated_or_created_since=stamp(checkpoint), attributes="name")
    # Then only the edited vendor comes, with its new name
    assert [(item["id"], item["name"]) for item in changed] == [(vendor["id"], "Renamed Supplies Ltd.")]


def test_deleted_since_is_exclusive_and_lists_the_deleted_invoice(sandbox: tuple[SageSandbox, str]) -> None:
    # Given an unpaid invoice deleted in Sage at moment D
    running, business_id = sandbox
    api = api_for(running)
    invoice = first_invoice(api, "UNPAID")
    running.clock.advance(10)
    running.delete_bill(business_id, invoice["id"])
    deleted_at = running.clock.now().replace(microsecond=0)
    # When the app asks for deletions since one second before D, and since D
    before = api.items("/purchase_invoices", deleted_since=stamp(deleted_at - timedelta(seconds=1)), attributes="all")
    at = api.items("/purchase_invoices", deleted_since=stamp(deleted_at))
    # Then the first answer holds the invoice with its deleted_at, the second does not
    assert [(item["id"], item["deleted_at"]) for item in before] == [(invoice["id"], stamp(deleted_at))]
    assert at == []
    # And the invoice is gone from ordinary reads
    assert invoice["id"] not in {item["id"] for item in api.items("/purchase_invoices", items_per_page=200)}
    assert api.get(f"/purchase_invoices/{invoice['id']}").status_code == 404


# ---- contacts and attachments ----------------------------------------------------------------------


def test_contacts_filter_by_type_and_hold_sensitive_fields_in_sages_places(sandbox: tuple[SageSandbox, str]) -> None:
    # Given the ledger's vendors and one customer
    running, _ = sandbox
    api = api_for(running)
    ledger = small_ledger()
    # When the app lists vendors with all attributes
    vendors = api.items("/contacts", contact_type_id="VENDOR", attributes="all")
    everyone = api.items("/contacts")
    # Then only suppliers come, and the customer is left out
    assert len(vendors) == len(ledger.vendors)
    assert len(everyone) == len(ledger.vendors) + 1
    assert {item["contact_types"][0]["id"] for item in vendors} == {"VENDOR"}
    # And a vendor's sensitive fields sit where Sage keeps them
    record = ledger.vendors[0]
    vendor = next(item for item in vendors if item["name"] == record.name)
    assert vendor["tax_number"] == record.tax_id
    assert vendor["notes"] == record.notes
    assert vendor["bank_account_details"]["account_number"] == record.bank_account_number
    assert vendor["bank_account_details"]["sort_code"] == record.bank_routing
    assert vendor["main_contact_person"]["name"] == record.contact_person
    assert vendor["main_contact_person"]["telephone"] == record.phone
    assert vendor["email"] == record.email


def test_attachment_filters_must_come_together(sandbox: tuple[SageSandbox, str]) -> None:
    # Given the attachments endpoint
    running, _ = sandbox
    api = api_for(running)
    # When the app filters by context type only
    answer = api.get("/attachments", attachment_context_type_id="PURCHASE_INVOICE")
    # Then Sage refuses with 422
    assert answer.status_code == 422
    assert answer.json()[0]["$source"] == "attachment_context_id"


def test_attachment_of_an_invoice_downloads_its_bytes_with_octet_stream_accept(
    sandbox: tuple[SageSandbox, str],
) -> None:
    # Given an invoice with an attachment
    running, _ = sandbox
    api = api_for(running)
    invoice = api.items("/purchase_invoices", has_attachments="true", attributes="all")[0]
    attachments = api.items(
        "/attachments", attachment_context_type_id="PURCHASE_INVOICE", attachment_context_id=invoice["id"]
    )
    assert len(attachments) == 1
    meta = api.one(f"/attachments/{attachments[0]['id']}")
    url = f"{api.base}/attachments/{meta['id']}/file"
    # When the file is fetched with the usual JSON Accept header
    refused = api.session.get(url)
    # Then Sage wants application/octet-stream
    assert refused.status_code == 406
    # When it is fetched with Accept: application/octet-stream
    download = api.session.get(url, headers={"Accept": "application/octet-stream"})
    # Then the raw bytes come back, matching the size in the metadata
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert len(download.content) == meta["file_size"]
    assert download.content[:4] in (b"%PDF", b"\x89PNG")


def test_generator_keys_map_to_the_sage_ids_served(sandbox: tuple[SageSandbox, str]) -> None:
    # Given the generated ledger behind the business
    running, business_id = sandbox
    api = api_for(running)
    ledger = small_ledger()
    bill = next(item for item in ledger.bills if item.state == "open")
    vendor = ledger.vendor(bill.vendor_key)
    # When the sandbox is asked for the Sage ids of that bill and its vendor
    invoice = api.one(f"/purchase_invoices/{running.entity_id(business_id, bill.key)}")
    contact = api.one(f"/contacts/{running.entity_id(business_id, vendor.key)}")
    # Then those ids serve that bill and that vendor
    assert Decimal(str(invoice["total_amount"])) == bill.total
    assert invoice["contact"]["id"] == contact["id"]
    assert contact["name"] == vendor.name


# ---- admin surface for other processes -------------------------------------------------------------


def test_admin_route_registers_an_app_and_loads_a_business() -> None:
    # Given an empty sandbox driven from another process through its admin routes
    running = SageSandbox(auto_approve=True)
    base = running.start()
    try:
        app = {"client_id": "proc-client", "client_secret": "proc-secret", "redirect_uris": ["https://x.example/cb"]}
        assert requests.post(f"{base}/_admin/register_app", json=app).status_code == 200
        # When it loads a generated GBP business of 12 bills
        added = requests.post(f"{base}/_admin/add_business", json={"seed": 5, "bills": 12, "base_currency": "GBP"})
        business_id = added.json()["business_id"]
        # Then the ledger read-out and the request counts are available over HTTP
        invoices = requests.post(f"{base}/_admin/purchase_invoices", json={"business_id": business_id}).json()
        assert len(invoices["items"]) == len(running.purchase_invoices(business_id)) > 0
        assert requests.get(f"{base}/_admin/requests").json() == {"counts": {}, "total": 0}
        assert running.business(business_id).country == "gb"
    finally:
        running.stop()


# ---- limits and faults -----------------------------------------------------------------------------


def test_rate_limit_counts_per_business_and_answers_429_with_retry_after(sandbox: tuple[SageSandbox, str]) -> None:
    # Given a limit lowered to 3 calls a minute and a user with two businesses
    running, _ = sandbox
    second = running.add_tenant(small_ledger(seed=4, bills=3, documents=0), name="Second Co")
    running.set_rate_limit(3)
    token = connect(running)["access_token"]
    lead_api, second_api = SageApi(running, token), SageApi(running, token, second)
    # When the lead business is called four times
    statuses = [lead_api.get("/bank_accounts").status_code for _ in range(4)]
    # Then the fourth call is throttled with Sage's array and a Retry-After
    assert statuses == [200, 200, 200, 429]
    throttled = lead_api.get("/bank_accounts")
    assert throttled.json()[0]["$dataCode"] == "TooManyRequests"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    # And the other business still has its own allowance
    assert second_api.get("/bank_accounts").status_code == 200
    # And a minute later the lead business may call again
    running.clock.advance(60)
    assert lead_api.get("/bank_accounts").status_code == 200


def test_injected_failure_and_throttle_use_sages_error_bodies(sandbox: tuple[SageSandbox, str]) -> None:
    # Given a 503 and a throttle planned on the invoice list
    running, _ = sandbox
    api = api_for(running)
    running.faults.fail("list_purchase_invoices", 503, count=1)
    running.faults.throttle("list_purchase_invoices", count=1)
    # When the list is called three times
    answers = [api.get("/purchase_invoices") for _ in range(3)]
    # Then the first two carry Sage's error array and the third succeeds
    assert [answer.status_code for answer in answers] == [503, 429, 200]
    assert answers[0].json()[0]["$dataCode"] == "ServiceUnavailable"
    assert answers[1].json()[0]["$dataCode"] == "TooManyRequests"
    assert answers[1].headers["Retry-After"] == "1"
    assert running.requests.count("list_purchase_invoices") == 3
