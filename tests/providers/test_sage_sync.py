"""The Sage connector's sync reads against the Sage sandbox: open bills, vendors, changes, look-ups by id,
documents, paging and resuming, call counts, retries; and the mapping of records the sandbox cannot make.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from local.sandboxes.core import Clock
from local.sandboxes.generator import BillRecord, Ledger, VendorRecord, generate_ledger, sensitive_values
from local.sandboxes.sage import SageSandbox
from local.sandboxes.sage.ledger import INVOICE_NOTES_MAX, VENDOR_REFERENCE_MAX
from payedge_connect.models import ClosedReason
from payedge_connect.providers.base import ChangesPage, ProviderBill, ProviderVendor, SkippedRecord
from payedge_connect.providers.http import ProviderApi
from payedge_connect.providers.sage import SageConnector
from payedge_connect.providers.sage import bills as sage_bills

CLIENT_ID = "payedge-sage-sync"
PAGE = 200  # Sage's maximum items_per_page


@dataclass
class Business:
    """A Sage business in a running sandbox, with a connector and an access token for it."""

    sandbox: SageSandbox
    business_id: str
    ledger: Ledger
    connector: SageConnector
    access_token: str

    def api(self) -> ProviderApi:
        """A fresh API (and call counter) for the business, as one sync run would have."""
        return self.connector.api(self.business_id, access_token=lambda: self.access_token)

    def list_calls(self, endpoint: str) -> int:
        return self.sandbox.requests.count(endpoint)


def start_business(ledger: Ledger) -> Business:
    sandbox = SageSandbox(clock=Clock())
    sandbox.register_app(CLIENT_ID, "secret", ["https://payedge.example/oauth/sage/callback"])
    user_id = sandbox.add_user("Owner", "owner@example.com")
    business_id = sandbox.add_tenant(ledger, name="Maple Leaf Trading", user_id=user_id)
    base_url = sandbox.start()
    # The sandbox's token store stands in for the OAuth flow (tested with the sandbox itself).
    tokens = sandbox.tokens.issue(user_id=user_id, client_id=CLIENT_ID, scope="full_access")
    return Business(sandbox, business_id, ledger, SageConnector(base_url=base_url), tokens.access_token)


def ledger_of(*, seed: int, bills: int, documents: int) -> Ledger:
    # Everything in the ledger happened before the sandbox clock's "now", whatever the machine's date.
    return generate_ledger(seed=seed, bills=bills, documents=documents, as_of=datetime.now(UTC) - timedelta(days=1))


@pytest.fixture
def small() -> Iterator[Business]:
    business = start_business(ledger_of(seed=7, bills=40, documents=8))
    yield business
    business.sandbox.stop()


@pytest.fixture(scope="module")
def big() -> Iterator[Business]:
    """2,500 bills: 11 pages of open bills. Read only by the tests that use it."""
    business = start_business(ledger_of(seed=11, bills=2500, documents=25))
    yield business
    business.sandbox.stop()


def everything(pages: Iterator[ChangesPage]) -> list[ChangesPage]:
    return list(pages)


def bills_of(pages: list[ChangesPage]) -> list[ProviderBill]:
    return [bill for page in pages for bill in page.bills]


def vendors_of(pages: list[ChangesPage]) -> list[ProviderVendor]:
    return [vendor for page in pages for vendor in page.vendors]


def skipped_of(pages: list[ChangesPage]) -> list[SkippedRecord]:
    return [record for page in pages for record in page.skipped]


def open_bill_id(business: Business, record: BillRecord) -> str:
    return business.sandbox.entity_id(business.business_id, record.key)


# ---- what the generator says Sage holds ------------------------------------------------------------


def expected_bill(ledger: Ledger, record: BillRecord) -> tuple[Any, ...]:
    # Sage holds at most 31 characters of vendor_reference and 2,000 of notes (Swagger maxLength).
    number = record.invoice_number[:VENDOR_REFERENCE_MAX] if record.invoice_number else None
    memo = record.memo[:INVOICE_NOTES_MAX] if record.memo else None
    document = (record.attachment.file_name, record.attachment.mime_type) if record.attachment else None
    return (
        number,
        ledger.vendor(record.vendor_key).name,
        record.currency,
        record.total,
        record.amount_due,
        record.issue_date,
        record.due_date,
        memo,
        document,
    )


def actual_bill(bill: ProviderBill) -> tuple[Any, ...]:
    document = (bill.document.file_name, bill.document.content_type) if bill.document else None
    return (
        bill.invoice_number,
        bill.vendor_name,
        bill.currency,
        bill.total_amount,
        bill.amount_due,
        bill.issue_date,
        bill.due_date,
        bill.remittance_note,
        document,
    )


def expected_vendor(vendor: VendorRecord) -> tuple[Any, ...]:
    address = vendor.address
    lines = (
        (address.line1, address.line2, address.city, address.region, address.postal_code, address.country)
        if address
        else None
    )
    return (vendor.name, vendor.email, lines)


def actual_vendor(vendor: ProviderVendor) -> tuple[Any, ...]:
    address = vendor.address
    lines = (
        (address.line1, address.line2, address.city, address.region, address.postal_code, address.country)
        if address
        else None
    )
    return (vendor.name, vendor.email, lines)


def assert_open_bills_match(ledger: Ledger, bills: list[ProviderBill]) -> None:
    assert all(bill.is_open and bill.closed_reason is None for bill in bills)
    assert all(isinstance(bill.total_amount, Decimal) and isinstance(bill.amount_due, Decimal) for bill in bills)
    assert len({bill.bill_id for bill in bills}) == len(bills)
    expected = Counter(expected_bill(ledger, record) for record in ledger.unpaid_bills())
    assert Counter(actual_bill(bill) for bill in bills) == expected


# ---- full listings ---------------------------------------------------------------------------------


def test_every_open_bill_comes_back_with_its_fields_and_nothing_else(small: Business) -> None:
    # Given a business whose ledger holds open, part-paid, paid, void, deleted and draft bills
    ledger = small.ledger
    # When the connector lists the open bills
    pages = everything(small.connector.open_bills(small.api(), resume=None))
    # Then exactly the unpaid bills come back, amounts, dates, numbers, vendors and documents exact
    assert skipped_of(pages) == []
    assert_open_bills_match(ledger, bills_of(pages))
    # And the last page says the listing is complete
    assert pages[-1].resume is None


def test_a_document_downloads_as_the_bytes_attached_in_sage(small: Business) -> None:
    # Given an open bill whose document has an accent and a space in its name
    record = next(bill for bill in small.ledger.unpaid_bills() if bill.attachment is not None)
    assert record.attachment is not None
    assert record.attachment.file_name == "Facture été 2026.pdf"
    api = small.api()
    bill = next(
        b
        for b in bills_of(everything(small.connector.open_bills(api, resume=None)))
        if b.bill_id == open_bill_id(small, record)
    )
    assert bill.document is not None
    # When the connector downloads it
    content = small.connector.download_document(api, bill.bill_id, bill.document)
    # Then the bytes are the attachment's, fetched with Accept: application/octet-stream
    assert content == record.attachment.content
    assert bill.document.size_bytes == len(record.attachment.content)


def test_vendors_come_with_name_address_and_email_and_nothing_sensitive(small: Business) -> None:
    # Given vendors with tax ids, bank details, phone numbers, notes and contact persons in Sage
    ledger = small.ledger
    api = small.api()
    # When the connector reads vendors, open bills, changes and look-ups by id
    vendor_pages = everything(small.connector.vendors(api, resume=None))
    bill_pages = everything(small.connector.open_bills(api, resume=None))
    change_pages = everything(small.connector.changes_since(api, datetime(2000, 1, 1, tzinfo=UTC), resume=None))
    vendors = vendors_of(vendor_pages)
    by_id = small.connector.vendors_by_id(api, [vendor.vendor_id for vendor in vendors])
    bills = small.connector.bills_by_id(api, [bill.bill_id for bill in bills_of(bill_pages)])
    # Then every vendor (and no customer) comes with its name, email and address
    assert Counter(actual_vendor(vendor) for vendor in vendors) == Counter(map(expected_vendor, ledger.vendors))
    assert Counter(map(actual_vendor, by_id.vendors)) == Counter(map(expected_vendor, ledger.vendors))
    # And no sensitive value appears anywhere in what the connector returned
    returned = repr([vendor_pages, bill_pages, change_pages, by_id, bills])
    leaked = sorted(value for value in sensitive_values(ledger) if value in returned)
    assert leaked == []


# ---- incremental reads -----------------------------------------------------------------------------


def test_changes_since_return_exactly_the_bills_paid_voided_deleted_or_changed(small: Business) -> None:
    # Given a sync that finished at a checkpoint, read in a time zone five hours behind UTC
    sandbox, business_id, connector = small.sandbox, small.business_id, small.connector
    open_records = [record for record in small.ledger.unpaid_bills() if record.state == "open"]
    part_paid = next(record for record in small.ledger.unpaid_bills() if record.state == "part_paid")
    paid, voided, deleted, changed, partly = (open_bill_id(small, record) for record in open_records[:5])
    checkpoint = sandbox.clock.now().astimezone(timezone(timedelta(hours=-5)))
    sandbox.clock.advance(5)
    # When, in Sage, one bill is paid, one voided, one deleted, one re-totalled and one part-paid
    sandbox.pay_bill_elsewhere(business_id, paid)
    sandbox.void_bill(business_id, voided)
    sandbox.delete_bill(business_id, deleted)
    sandbox.change_bill_amount(business_id, changed, Decimal("1234.56"))
    sandbox.pay_bill_elsewhere(business_id, partly, Decimal("10.00"))
    pages = everything(connector.changes_since(small.api(), checkpoint, resume=None))
    # Then exactly those bills come back, each with its closed reason or its new amount
    bills = {bill.bill_id: bill for bill in bills_of(pages)}
    assert len(bills_of(pages)) == 5
    assert set(bills) == {paid, voided, deleted, changed, partly}
    assert (bills[paid].is_open, bills[paid].closed_reason, bills[paid].amount_due) == (
        False,
        ClosedReason.PAID_ELSEWHERE,
        Decimal("0"),
    )
    assert (bills[voided].is_open, bills[voided].closed_reason) == (False, ClosedReason.VOIDED)
    assert (bills[deleted].is_open, bills[deleted].closed_reason) == (False, ClosedReason.DELETED)
    assert (bills[changed].is_open, bills[changed].total_amount, bills[changed].amount_due) == (
        True,
        Decimal("1234.56"),
        Decimal("1234.56"),
    )
    partly_record = open_records[4]
    assert (bills[partly].is_open, bills[partly].amount_due) == (True, partly_record.total - Decimal("10.00"))
    # And the deleted bill keeps the details Sage still lists with it
    assert bills[deleted].vendor_name == small.ledger.vendor(open_records[2].vendor_key).name
    # And no vendor changed, and the part-paid bill untouched in Sage is not among the changes
    assert vendors_of(pages) == []
    assert open_bill_id(small, part_paid) not in bills


def test_an_edited_vendor_comes_back_in_the_changes(small: Business) -> None:
    # Given a checkpoint, and then a vendor renamed and moved in Sage
    sandbox = small.sandbox
    vendor_id = sandbox.entity_id(small.business_id, small.ledger.vendors[0].key)
    checkpoint = sandbox.clock.now()
    sandbox.clock.advance(3)
    address = {"line1": "1 Bay Street", "city": "Toronto", "region": "ON", "postal_code": "M5J 2T3", "country": "CA"}
    sandbox.edit_vendor(small.business_id, vendor_id, name="Northwind Office Supply Co.", address=address)
    # When the connector reads the changes
    pages = everything(small.connector.changes_since(small.api(), checkpoint, resume=None))
    # Then that vendor alone comes back, with its new name and address
    assert [(vendor.vendor_id, vendor.name) for vendor in vendors_of(pages)] == [
        (vendor_id, "Northwind Office Supply Co.")
    ]
    moved = vendors_of(pages)[0].address
    assert moved is not None
    assert (moved.line1, moved.city, moved.region, moved.postal_code, moved.country) == (
        "1 Bay Street",
        "Toronto",
        "ON",
        "M5J 2T3",
        "CA",
    )
    assert bills_of(pages) == []


def test_bills_by_id_tell_why_bills_left_the_open_listing(small: Business) -> None:
    # Given three open bills: one paid in Sage, one deleted there, one untouched with a document
    sandbox, business_id = small.sandbox, small.business_id
    records = [record for record in small.ledger.unpaid_bills() if record.state == "open"]
    with_document = next(record for record in records if record.attachment is not None)
    others = [record for record in records if record is not with_document]
    paid, deleted, kept = (
        open_bill_id(small, others[0]),
        open_bill_id(small, others[1]),
        open_bill_id(small, with_document),
    )
    sandbox.pay_bill_elsewhere(business_id, paid)
    sandbox.delete_bill(business_id, deleted)
    # When the connector looks them up by id (one of them twice)
    api = small.api()
    page = small.connector.bills_by_id(api, [paid, deleted, kept, paid])
    # Then the paid bill comes back closed with its reason, the open one with its document, each once
    bills = {bill.bill_id: bill for bill in page.bills}
    assert len(page.bills) == 2
    assert (bills[paid].is_open, bills[paid].closed_reason) == (False, ClosedReason.PAID_ELSEWHERE)
    open_bill = bills[kept]
    assert open_bill.is_open
    assert open_bill.document is not None
    assert with_document.attachment is not None
    assert open_bill.document.file_name == with_document.attachment.file_name
    # And the deleted bill (Sage answers 404) is left out, for the sync to close from what it stored
    assert deleted not in bills
    assert page.skipped == []
    # And it cost one call per bill, plus one attachment look-up for the open bill only
    assert api.calls.by_route == {"GET /purchase_invoices/{key}": 3, "GET /attachments": 1}


def test_vendors_by_id_return_current_details_and_name_the_unknown(small: Business) -> None:
    # Given one vendor of the business and an id Sage does not know
    vendor = small.ledger.vendors[1]
    vendor_id = small.sandbox.entity_id(small.business_id, vendor.key)
    # When the connector looks both up
    page = small.connector.vendors_by_id(small.api(), [vendor_id, "0" * 32])
    # Then the vendor comes back and the unknown id is skipped with a reason
    assert [actual_vendor(item) for item in page.vendors] == [expected_vendor(vendor)]
    assert [(item.provider_id, item.reason) for item in page.skipped] == [
        ("0" * 32, "Sage no longer has this supplier")
    ]


# ---- records that cannot be read -------------------------------------------------------------------


def test_a_malformed_bill_and_a_nameless_vendor_are_skipped_and_the_rest_syncs(small: Business) -> None:
    # Given an open invoice whose currency is not a code, and a vendor whose name was emptied in Sage.
    # The sandbox has no control for a malformed invoice, so the test edits its ledger directly.
    record = small.ledger.unpaid_bills()[0]
    bill_id = open_bill_id(small, record)
    small.sandbox.business(small.business_id).purchase_invoices[bill_id].currency = "Dollars"
    vendor_id = small.sandbox.entity_id(small.business_id, small.ledger.vendors[2].key)
    small.sandbox.edit_vendor(small.business_id, vendor_id, name="")
    api = small.api()
    # When the connector lists open bills and vendors
    bill_pages = everything(small.connector.open_bills(api, resume=None))
    vendor_pages = everything(small.connector.vendors(api, resume=None))
    # Then each becomes a skipped record with a reason a user can read
    assert skipped_of(bill_pages) == [
        SkippedRecord("bill", bill_id, "Sage purchase invoice currency 'Dollars' is not a three-letter code")
    ]
    assert skipped_of(vendor_pages) == [SkippedRecord("vendor", vendor_id, "Sage contact has no name")]
    # And every other record still comes back
    assert len(bills_of(bill_pages)) == len(small.ledger.unpaid_bills()) - 1
    assert len(vendors_of(vendor_pages)) == len(small.ledger.vendors) - 1


def invoice_json(**overrides: Any) -> dict[str, Any]:
    """A purchase invoice as Sage's list serves it (attributes=all), trimmed to what the connector reads."""
    invoice: dict[str, Any] = {
        "id": "a" * 32,
        "displayed_as": "INV-7",
        "contact": {"id": "c" * 32, "displayed_as": "Maple Paper Co (MAPL001)"},
        "contact_name": "Maple Paper Co",
        "currency": {"id": "CAD", "displayed_as": "Canadian Dollar (CAD)"},
        "total_amount": Decimal("100.10"),
        "outstanding_amount": Decimal("0.00"),
        "vendor_reference": "INV-7",
        "notes": "",
        "date": "2026-10-01",
        "due_date": "2026-10-31",
        "status": {"id": "PAID", "displayed_as": "Paid"},
        "transaction": {"id": "t" * 32, "number_of_attachments": "0"},
        "updated_at": "2026-10-02T09:00:00Z",
        "deleted_at": None,
    }
    invoice.update(overrides)
    return invoice


def map_invoice(raw: dict[str, Any]) -> ProviderBill | SkippedRecord:
    read = sage_bills.read_bill(raw)
    return read if isinstance(read, SkippedRecord) else sage_bills.bill_from_sage(read, None)


def test_an_unparseable_amount_is_skipped_with_a_reason_naming_the_field() -> None:
    # Given an invoice whose total is not a number (the sandbox holds amounts as Decimals and cannot serve one)
    raw = invoice_json(total_amount="twelve", notes="Call Maria Okafor")
    # When it is mapped
    result = map_invoice(raw)
    # Then it is skipped, the reason naming the field but not repeating the record's text
    assert isinstance(result, SkippedRecord)
    assert result.provider_id == "a" * 32
    assert result.reason.startswith("Sage purchase invoice could not be read (total_amount: ")
    assert "twelve" not in result.reason and "Maria" not in result.reason


def test_a_bill_settled_by_a_credit_note_closes_as_credited() -> None:
    # Given a paid invoice whose only allocation is a purchase credit note (the sandbox books no credit notes)
    credit = {"type": "Purchase Credit Note", "amount": Decimal("100.10"), "contact_allocation": {"id": "d" * 32}}
    payment = {"type": "Supplier Payment", "amount": Decimal("50.00"), "contact_payment": {"id": "e" * 32}}
    # When it is mapped, and again with a payment among its allocations
    credited = map_invoice(invoice_json(payments_allocations=[credit]))
    paid = map_invoice(invoice_json(payments_allocations=[credit, payment]))
    # Then the first closes as credited, the second as paid elsewhere
    assert isinstance(credited, ProviderBill) and isinstance(paid, ProviderBill)
    assert (credited.is_open, credited.closed_reason) == (False, ClosedReason.CREDITED)
    assert paid.closed_reason is ClosedReason.PAID_ELSEWHERE


def test_amounts_sent_as_strings_stay_exact_and_dates_stay_calendar_dates() -> None:
    # Given an unpaid invoice with amounts as strings (Sage's attributes guide shows "110.0") and an offset time
    raw = invoice_json(
        status={"id": "UNPAID"},
        total_amount="110.0",
        outstanding_amount="0.10",
        updated_at="2026-10-01T23:30:00-05:00",
    )
    # When it is mapped
    bill = map_invoice(raw)
    # Then the amounts are the exact Decimals, the dates unchanged and the timestamp the same instant in UTC
    assert isinstance(bill, ProviderBill)
    assert (bill.total_amount, bill.amount_due, bill.is_open) == (Decimal("110.0"), Decimal("0.10"), True)
    assert (bill.issue_date.isoformat() if bill.issue_date else None) == "2026-10-01"
    assert bill.updated_at == datetime(2026, 10, 2, 4, 30, tzinfo=UTC)
    assert bill.remittance_note is None


# ---- paging, resuming, call counts -----------------------------------------------------------------


def test_a_full_listing_costs_one_call_per_200_bills_of_each_open_status(big: Business) -> None:
    # Given 2,500 bills, of which the unpaid and the part-paid are listed separately (status_id takes one value)
    unpaid = sum(1 for record in big.ledger.bills if record.state == "open")
    part_paid = sum(1 for record in big.ledger.bills if record.state == "part_paid")
    expected_calls = math.ceil(unpaid / PAGE) + math.ceil(part_paid / PAGE)
    api = big.api()
    before = big.list_calls("list_purchase_invoices")
    # When the connector lists the open bills
    pages = everything(big.connector.open_bills(api, resume=None))
    # Then it made ceil(n / 200) listing calls per status, counted by the connector and by Sage alike
    assert api.calls.by_route["GET /purchase_invoices"] == expected_calls == len(pages)
    assert big.list_calls("list_purchase_invoices") - before == expected_calls
    assert expected_calls == math.ceil((unpaid + part_paid) / PAGE) == 11
    # And every page but the last of each status is full
    assert [len(page.bills) for page in pages].count(PAGE) == expected_calls - 2
    # And the documents cost one pass over the attachment list, not one call per bill
    assert api.calls.by_route["GET /attachments"] == 1
    assert_open_bills_match(big.ledger, bills_of(pages))


def test_a_full_vendor_listing_costs_one_call_per_200_vendors(big: Business) -> None:
    # Given 417 vendors (and a customer Sage also lists among contacts)
    api = big.api()
    # When the connector lists the vendors
    pages = everything(big.connector.vendors(api, resume=None))
    # Then it made ceil(417 / 200) calls and returned every vendor once
    assert api.calls.total == math.ceil(len(big.ledger.vendors) / PAGE) == 3
    assert len({vendor.vendor_id for vendor in vendors_of(pages)}) == len(big.ledger.vendors)


def test_a_listing_resumed_after_its_first_page_reads_the_rest_once(big: Business) -> None:
    # Given a full listing interrupted after its first page
    whole = bills_of(everything(big.connector.open_bills(big.api(), resume=None)))
    first = next(big.connector.open_bills(big.api(), resume=None))
    assert first.resume is not None
    # When the sync resumes from that page's token
    api = big.api()
    rest = everything(big.connector.open_bills(api, resume=first.resume))
    # Then the union is the whole listing, nothing twice, and page 1 was not read again
    ids = [bill.bill_id for bill in [*first.bills, *bills_of(rest)]]
    assert len(ids) == len(set(ids)) == len(whole)
    assert set(ids) == {bill.bill_id for bill in whole}
    assert api.calls.by_route["GET /purchase_invoices"] == len(rest) == 10


def test_a_listing_resumed_between_the_two_statuses_reads_only_the_part_paid(big: Business) -> None:
    # Given a listing interrupted after the last page of unpaid bills
    pages = everything(big.connector.open_bills(big.api(), resume=None))
    boundary = next(
        page
        for page in pages
        if page.bills
        and all(b.amount_due == b.total_amount for b in page.bills)
        and page.resume
        and '"open:PART_PAID","next":null' in page.resume
    )
    # When the sync resumes from its token
    api = big.api()
    rest = everything(big.connector.open_bills(api, resume=boundary.resume))
    # Then exactly the part-paid bills follow
    part_paid = sum(1 for record in big.ledger.bills if record.state == "part_paid")
    assert len(bills_of(rest)) == part_paid
    assert all(bill.amount_due < bill.total_amount for bill in bills_of(rest))
    assert api.calls.by_route["GET /purchase_invoices"] == math.ceil(part_paid / PAGE)


def test_a_resync_without_changes_costs_at_most_two_calls_per_entity(big: Business) -> None:
    # Given a business where nothing changed since the last sync
    since = big.sandbox.clock.now()
    big.sandbox.clock.advance(1)
    api = big.api()
    # When the connector reads the changes
    pages = everything(big.connector.changes_since(api, since, resume=None))
    # Then nothing comes back, for one call on vendors and two on bills (changed, deleted)
    assert bills_of(pages) == vendors_of(pages) == skipped_of(pages) == []
    assert api.calls.by_route == {"GET /contacts": 1, "GET /purchase_invoices": 2}
    assert pages[-1].resume is None


def test_a_resume_token_of_another_listing_is_refused(big: Business) -> None:
    # Given a token from the first page of the vendor listing
    token = next(big.connector.vendors(big.api(), resume=None)).resume
    assert token is not None
    # When it is given to the open-bill listing
    # Then the connector refuses it rather than reading the wrong thing
    with pytest.raises(ValueError, match="resume token"):
        next(big.connector.open_bills(big.api(), resume=token))


def test_changes_since_a_time_without_offset_are_refused(small: Business) -> None:
    # Given a checkpoint with no time zone, which Sage would read in its own
    checkpoint = datetime(2026, 11, 1, 9, 0)  # noqa: DTZ001 - the point of the test
    # When the connector is asked for the changes since it
    # Then it refuses rather than guess which instant was meant
    with pytest.raises(ValueError, match="timezone-aware"):
        next(small.connector.changes_since(small.api(), checkpoint, resume=None))


# ---- provider trouble ------------------------------------------------------------------------------


def test_a_throttled_listing_is_retried_after_retry_after(small: Business) -> None:
    # Given Sage answers the first listing call with 429 and Retry-After: 1
    small.sandbox.faults.throttle("list_purchase_invoices", count=1)
    # When the connector lists the open bills
    bills = bills_of(everything(small.connector.open_bills(small.api(), resume=None)))
    # Then the call was repeated no sooner than a second later, and the listing is complete
    calls = [entry for entry in small.sandbox.requests.entries() if entry.endpoint == "list_purchase_invoices"]
    assert [entry.status for entry in calls[:2]] == [429, 200]
    assert (calls[1].at - calls[0].at).total_seconds() >= 1.0
    assert len(bills) == len(small.ledger.unpaid_bills())


def test_server_errors_are_retried(small: Business) -> None:
    # Given Sage fails the vendor listing twice with 503
    small.sandbox.faults.fail("list_contacts", 503, count=2)
    # When the connector lists the vendors
    vendors = vendors_of(everything(small.connector.vendors(small.api(), resume=None)))
    # Then the third attempt succeeded and every vendor came back
    statuses = [entry.status for entry in small.sandbox.requests.entries() if entry.endpoint == "list_contacts"]
    assert statuses == [503, 503, 200]
    assert len(vendors) == len(small.ledger.vendors)
