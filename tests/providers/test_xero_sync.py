"""The Xero connector reading unpaid bills and vendors, against the Xero sandbox (real wire format)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from local.sandboxes.core import Clock
from local.sandboxes.generator import Ledger, generate_ledger, sensitive_values
from local.sandboxes.xero import XeroSandbox
from payedge_connect.models import ClosedReason, Provider
from payedge_connect.providers.base import ChangesPage, ProviderBill, ProviderVendor, SkippedRecord
from payedge_connect.providers.http import CallCounter, ProviderApi
from payedge_connect.providers.limits import limits_for
from payedge_connect.providers.xero import XeroConnector
from payedge_connect.providers.xero.bills import bill_from_xero, vendor_from_xero
from payedge_connect.providers.xero.connector import MAX_PAGE_SIZE, if_modified_since

CLIENT_ID, SECRET, REDIRECT = "payedge-xero", "xero-s3cret", "http://127.0.0.1:9/oauth/xero/callback"


@dataclass
class Org:
    """One organisation in a running sandbox, connected with the connector's own (granular) scopes."""

    sandbox: XeroSandbox
    tenant: str
    ledger: Ledger
    connector: XeroConnector
    token: str

    def api(self) -> ProviderApi:
        return self.connector.api(self.tenant, access_token=lambda: self.token, calls=CallCounter())

    def invoice_id(self, bill_key: str) -> str:
        return self.sandbox.invoice_id(self.tenant, bill_key)

    def contact_id(self, vendor_key: str) -> str:
        return self.sandbox.contact_id(self.tenant, vendor_key)

    def bill_keys(self, *states: str) -> list[str]:
        return [bill.key for bill in self.ledger.bills if bill.state in states]

    def statuses(self, endpoint: str) -> list[int]:
        return [entry.status for entry in self.sandbox.requests.entries() if entry.endpoint == endpoint]


def connect(sandbox: XeroSandbox, ledger: Ledger) -> Org:
    tenant = sandbox.add_tenant(ledger, name="Maple Books Ltd.")
    sandbox.register_app(CLIENT_ID, SECRET, [REDIRECT], name="PayEdge Connect")
    connector = XeroConnector(base_url=sandbox.base_url)
    token = sandbox.issue_tokens(CLIENT_ID, tenants=[tenant], scopes=connector.oauth.scopes)["access_token"]
    return Org(sandbox, tenant, ledger, connector, token)


def started(seed: int, **ledger_args: Any) -> Iterator[Org]:
    sandbox = XeroSandbox(clock=Clock(), seed=seed)
    # The ledger ends a minute before "now", so "changed since now" starts out empty.
    ledger = generate_ledger(seed=seed, as_of=sandbox.clock.now() - timedelta(minutes=1), **ledger_args)
    with sandbox:
        yield connect(sandbox, ledger)


@pytest.fixture
def org() -> Iterator[Org]:
    yield from started(12, bills=40, documents=8)


@pytest.fixture(scope="module")
def big_org() -> Iterator[Org]:
    # 2,500 bills (2,075 open) and 1,500 vendors: three pages of bills and two of suppliers.
    yield from started(7, bills=2500, vendors=1500, documents=0)


def drain(pages: Iterator[ChangesPage]) -> list[ChangesPage]:
    return list(pages)


def bills_of(pages: list[ChangesPage]) -> list[ProviderBill]:
    return [bill for page in pages for bill in page.bills]


def vendors_of(pages: list[ChangesPage]) -> list[ProviderVendor]:
    return [vendor for page in pages for vendor in page.vendors]


def skipped_of(pages: list[ChangesPage]) -> list[SkippedRecord]:
    return [record for page in pages for record in page.skipped]


def active_suppliers(org: Org) -> set[str]:
    return {
        contact["ContactID"]
        for contact in org.sandbox.contacts(org.tenant)
        if contact["IsSupplier"] and contact["ContactStatus"] == "ACTIVE"
    }


# ---- full listings ------------------------------------------------------------------------------


def test_every_open_bill_comes_back_with_its_fields_and_nothing_else_is_open(org: Org) -> None:
    # Given a ledger with open, part-paid, paid, voided, deleted and draft bills
    expected = {org.invoice_id(key): org.ledger.bill(key) for key in org.bill_keys("open", "part_paid")}

    # When the connector lists the open bills
    pages = drain(org.connector.open_bills(org.api(), resume=None))

    # Then exactly the unpaid bills come back open, each with the ledger's values
    bills = {bill.bill_id: bill for bill in bills_of(pages)}
    assert {bill_id for bill_id, bill in bills.items() if bill.is_open} == set(expected)
    assert set(bills) == set(expected)
    assert not skipped_of(pages)
    for bill_id, record in expected.items():
        bill = bills[bill_id]
        vendor = org.ledger.vendor(record.vendor_key)
        assert bill.amount_due == record.total - record.amount_paid
        assert bill.total_amount == record.total
        assert isinstance(bill.amount_due, Decimal) and isinstance(bill.total_amount, Decimal)
        assert (bill.issue_date, bill.due_date) == (record.issue_date, record.due_date)
        assert bill.invoice_number == record.invoice_number
        assert (bill.vendor_id, bill.vendor_name) == (org.contact_id(vendor.key), vendor.name)
        assert bill.currency == record.currency
        assert (bill.document is not None) == (record.attachment is not None)
        assert bill.closed_reason is None
        assert bill.remittance_note is None  # Xero bills carry no memo
        assert bill.updated_at is not None and bill.updated_at.tzinfo is not None


def test_suppliers_come_back_with_name_address_and_email_only(org: Org) -> None:
    # Given the ledger's vendors, loaded as Xero contacts carrying tax numbers, bank details, phones
    wanted = {org.contact_id(vendor.key): vendor for vendor in org.ledger.vendors}

    # When the connector lists the vendors
    pages = drain(org.connector.vendors(org.api(), resume=None))

    # Then every active supplier comes back with its name, email and postal address
    vendors = {vendor.vendor_id: vendor for vendor in vendors_of(pages)}
    assert set(vendors) == active_suppliers(org)
    for vendor_id, vendor in vendors.items():
        record = wanted[vendor_id]
        assert (vendor.name, vendor.email) == (record.name, record.email)
        if record.address is None:
            assert vendor.address is None
        else:
            assert vendor.address is not None
            assert (vendor.address.line1, vendor.address.line2, vendor.address.city) == (
                record.address.line1,
                record.address.line2,
                record.address.city,
            )
            assert (vendor.address.region, vendor.address.postal_code, vendor.address.country) == (
                record.address.region,
                record.address.postal_code,
                record.address.country,
            )


def test_nothing_personal_is_returned_by_any_read(org: Org) -> None:
    # Given the vendors' tax ids, bank details, phones, notes and contact persons
    secrets = sensitive_values(org.ledger)
    api = org.api()
    bill_ids = [org.invoice_id(bill.key) for bill in org.ledger.bills]
    vendor_ids = [org.contact_id(vendor.key) for vendor in org.ledger.vendors]

    # When every read of the connector runs
    returned: list[object] = [
        *drain(org.connector.open_bills(api, resume=None)),
        *drain(org.connector.vendors(api, resume=None)),
        *drain(org.connector.changes_since(api, datetime(2000, 1, 1, tzinfo=UTC), resume=None)),
        org.connector.bills_by_id(api, bill_ids),
        org.connector.vendors_by_id(api, vendor_ids),
    ]

    # Then none of those values appears in anything it returned
    text = repr(returned)
    assert [value for value in secrets if value in text] == []


# ---- changes -------------------------------------------------------------------------------------


def test_changes_since_returns_exactly_the_changed_bills_with_their_reasons(org: Org) -> None:
    # Given a sync that ended now
    sandbox, tenant = org.sandbox, org.tenant
    since = sandbox.clock.now()
    open_keys = [key for key in org.bill_keys("open") if org.ledger.bill(key).amount_paid == 0]
    paid, part_paid, voided, changed = (org.invoice_id(key) for key in open_keys[:4])
    deleted = org.invoice_id(org.bill_keys("draft")[0])
    edited_vendor = org.contact_id(org.ledger.bill(open_keys[0]).vendor_key)

    # When, at Xero, bills are paid, part-paid, voided, re-priced, deleted and a vendor edited
    sandbox.pay_bill_elsewhere(tenant, paid)
    sandbox.pay_bill_elsewhere(tenant, part_paid, Decimal("1.00"))
    sandbox.void_bill(tenant, voided)
    sandbox.change_bill_amount(tenant, changed, Decimal("1234.56"))
    sandbox.delete_bill(tenant, deleted)
    sandbox.edit_vendor(tenant, edited_vendor, email="payables@renamed.example")
    pages = drain(org.connector.changes_since(org.api(), since, resume=None))

    # Then exactly those bills and that vendor come back, closed with the right reason or re-priced
    bills = {bill.bill_id: bill for bill in bills_of(pages)}
    assert set(bills) == {paid, part_paid, voided, changed, deleted}
    assert (bills[paid].is_open, bills[paid].closed_reason, bills[paid].amount_due) == (
        False,
        ClosedReason.PAID_ELSEWHERE,
        Decimal("0.00"),
    )
    part_record = org.ledger.bill(open_keys[1])
    assert bills[part_paid].is_open and bills[part_paid].amount_due == part_record.total - Decimal("1.00")
    assert (bills[voided].is_open, bills[voided].closed_reason) == (False, ClosedReason.VOIDED)
    assert (bills[deleted].is_open, bills[deleted].closed_reason) == (False, ClosedReason.DELETED)
    assert bills[changed].is_open
    assert (bills[changed].total_amount, bills[changed].amount_due) == (Decimal("1234.56"), Decimal("1234.56"))
    assert [(v.vendor_id, v.email) for v in vendors_of(pages)] == [(edited_vendor, "payables@renamed.example")]


def test_resync_with_no_change_costs_one_call_per_entity_type(org: Org) -> None:
    # Given nothing changed at Xero since the last sync
    api = org.api()
    org.sandbox.requests.reset()

    # When the connector asks for changes
    pages = drain(org.connector.changes_since(api, org.sandbox.clock.now(), resume=None))

    # Then nothing comes back, for one Invoices and one Contacts call
    assert not bills_of(pages) and not vendors_of(pages) and not skipped_of(pages)
    assert api.calls.by_route == {"GET /Invoices": 1, "GET /Contacts": 1}
    assert org.sandbox.requests.counts() == {"get_invoices": 1, "get_contacts": 1}


def test_if_modified_since_is_sent_in_utc_without_an_offset() -> None:
    toronto = timezone(timedelta(hours=-5))
    assert if_modified_since(datetime(2026, 11, 1, 4, 30, 15, 999_000, tzinfo=toronto)) == "2026-11-01T09:30:15"
    assert if_modified_since(datetime(2026, 11, 1, 9, 30, 15, tzinfo=UTC)) == "2026-11-01T09:30:15"


def test_changes_resume_after_the_bills_page_with_the_vendors(org: Org) -> None:
    # Given a change to a bill and to a vendor
    since = org.sandbox.clock.now()
    bill_id = org.invoice_id(org.bill_keys("open")[0])
    vendor_id = org.contact_id(org.ledger.vendors[0].key)
    org.sandbox.change_bill_amount(org.tenant, bill_id, Decimal("99.99"))
    org.sandbox.edit_vendor(org.tenant, vendor_id, name="Northwind Office Supplies Limited")

    # When a sync stops after the bills page and a later invocation resumes it
    first = next(org.connector.changes_since(org.api(), since, resume=None))
    org.sandbox.requests.reset()
    rest = drain(org.connector.changes_since(org.api(), since + timedelta(hours=1), resume=first.resume))

    # Then the resumed listing reads only the vendors, with the question it started with
    assert [bill.bill_id for bill in first.bills] == [bill_id]
    assert [vendor.vendor_id for vendor in vendors_of(rest)] == [vendor_id]
    assert not bills_of(rest)
    assert org.sandbox.requests.counts() == {"get_contacts": 1}


# ---- by id, documents ---------------------------------------------------------------------------


def test_bills_by_id_tell_why_a_bill_left_the_open_listing(org: Org) -> None:
    # Given an open bill voided at Xero, a deleted draft and a paid bill
    voided = next(org.invoice_id(key) for key in org.bill_keys("open") if org.ledger.bill(key).amount_paid == 0)
    org.sandbox.void_bill(org.tenant, voided)
    deleted = org.invoice_id(org.bill_keys("deleted")[0])
    paid = org.invoice_id(org.bill_keys("paid")[0])
    api = org.api()

    # When the connector reads them by id
    page = org.connector.bills_by_id(api, [voided, deleted, paid])

    # Then each comes back closed with its reason, in one call
    reasons = {bill.bill_id: (bill.is_open, bill.closed_reason) for bill in page.bills}
    assert reasons == {
        voided: (False, ClosedReason.VOIDED),
        deleted: (False, ClosedReason.DELETED),
        paid: (False, ClosedReason.PAID_ELSEWHERE),
    }
    assert api.calls.total == 1


def test_vendors_by_id_reads_those_vendors(org: Org) -> None:
    wanted = [org.contact_id(vendor.key) for vendor in org.ledger.vendors[:3]]

    page = org.connector.vendors_by_id(org.api(), wanted)

    assert sorted(vendor.vendor_id for vendor in page.vendors) == sorted(wanted)
    assert {vendor.name for vendor in page.vendors} == {vendor.name for vendor in org.ledger.vendors[:3]}


def test_invoice_document_downloads_as_the_original_bytes(org: Org) -> None:
    # Given open bills whose documents are a PDF (with an accented file name) and a PNG
    bills = {bill.bill_id: bill for bill in bills_of(drain(org.connector.open_bills(org.api(), resume=None)))}
    with_documents = [b for b in org.ledger.unpaid_bills() if b.attachment is not None]
    assert {b.attachment.mime_type for b in with_documents if b.attachment} == {"application/pdf", "image/png"}

    for record in with_documents:
        assert record.attachment is not None
        bill = bills[org.invoice_id(record.key)]
        assert bill.document is not None
        api = org.api()

        # When the connector downloads the bill's document
        content = org.connector.download_document(api, bill.bill_id, bill.document)

        # Then it gets the file's exact bytes: its attachment list, then the file by AttachmentID
        assert content == record.attachment.content
        assert api.calls.by_route == {
            "GET /Invoices/{id}/Attachments": 1,
            "GET /Invoices/{id}/Attachments/{id}": 1,
        }


# ---- records that cannot be read ------------------------------------------------------------------


def test_a_malformed_bill_and_vendor_are_skipped_with_a_reason_and_the_rest_is_read(org: Org) -> None:
    # Given a vendor whose name was emptied (a public control) and a bill whose currency is not an ISO
    # code; the sandbox has no control for a malformed bill, so its in-memory ledger is edited
    vendor_key = org.ledger.vendors[0].key
    org.sandbox.edit_vendor(org.tenant, org.contact_id(vendor_key), name="")
    bad_key = next(key for key in org.bill_keys("open") if org.ledger.bill(key).vendor_key != vendor_key)
    bad_bill = org.invoice_id(bad_key)
    organisation = org.sandbox.organisation(org.tenant)
    with organisation.lock:
        organisation.invoices[bad_bill].currency = "EURO"
    nameless = {org.invoice_id(b.key) for b in org.ledger.unpaid_bills() if b.vendor_key == vendor_key}
    assert nameless

    # When the connector lists bills and vendors
    bill_pages = drain(org.connector.open_bills(org.api(), resume=None))
    vendor_pages = drain(org.connector.vendors(org.api(), resume=None))

    # Then each bad record is a SkippedRecord a user can read, and every other record is read
    reasons = {record.provider_id: record.reason for record in skipped_of(bill_pages)}
    assert set(reasons) == {bad_bill} | nameless
    assert reasons[bad_bill].endswith("could not be read: its currency 'EURO' is not a three-letter currency code")
    assert {reasons[bill_id].split(": ", 1)[1] for bill_id in nameless} == {"its vendor has no name"}
    assert len(bills_of(bill_pages)) == len(org.bill_keys("open", "part_paid")) - len(reasons)
    (skipped_vendor,) = skipped_of(vendor_pages)
    assert (skipped_vendor.entity, skipped_vendor.provider_id) == ("vendor", org.contact_id(vendor_key))
    assert skipped_vendor.reason == "Xero contact has no name"
    assert len(vendors_of(vendor_pages)) == len(active_suppliers(org)) - 1


def xero_bill(**changes: Any) -> dict[str, Any]:
    """A bill as Xero's JSON gives it (amounts already parsed as Decimal)."""
    bill: dict[str, Any] = {
        "Type": "ACCPAY",
        "InvoiceID": "0f8e1a9c-2d3b-4c5d-8e6f-7a8b9c0d1e2f",
        "InvoiceNumber": "INV-1001",
        "Contact": {"ContactID": "5b96e86b-418e-48e8-8949-308c14aec278", "Name": "Maple Office Supplies"},
        "Status": "AUTHORISED",
        "CurrencyCode": "CAD",
        "Total": Decimal("100.00"),
        "AmountDue": Decimal("100.00"),
        "AmountPaid": Decimal("0.00"),
        "AmountCredited": Decimal("0.00"),
        "Date": "/Date(1539993600000+0000)/",
        "DueDate": "/Date(1546128000000+0000)/",
        "UpdatedDateUTC": "/Date(1541176290160+0000)/",
        "HasAttachments": False,
    }
    bill.update(changes)
    return bill


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"AmountDue": "twelve"}, "Xero bill INV-1001 could not be read: amount due is not a number"),
        ({"Total": None}, "Xero bill INV-1001 could not be read: total is not a number"),
        ({"Contact": {"Name": "Maple"}}, "Xero bill INV-1001 could not be read: vendor ContactID is missing"),
        ({"DueDate": "next week"}, "Xero bill INV-1001 could not be read: due date is not a Xero date"),
        ({"Type": "ACCREC"}, "Xero bill INV-1001 could not be read: it is a ACCREC invoice, not a bill"),
        ({"Status": "ARCHIVED"}, "Xero bill INV-1001 could not be read: its status 'ARCHIVED' is unknown"),
    ],
)
def test_unreadable_bill_fields_give_a_readable_reason(changes: dict[str, Any], reason: str) -> None:
    skipped = bill_from_xero(xero_bill(**changes))

    assert skipped == SkippedRecord("bill", "0f8e1a9c-2d3b-4c5d-8e6f-7a8b9c0d1e2f", reason)


def test_a_record_that_is_not_an_object_is_skipped() -> None:
    assert bill_from_xero("oops") == SkippedRecord(
        "bill", "", "Xero bill could not be read: the record: input should be a valid dictionary or instance of Invoice"
    )
    assert isinstance(vendor_from_xero(None), SkippedRecord)


def test_a_paid_bill_covered_by_credit_notes_is_closed_as_credited() -> None:
    credited = bill_from_xero(xero_bill(Status="PAID", AmountDue=Decimal("0.00"), AmountCredited=Decimal("100.00")))
    paid = bill_from_xero(
        xero_bill(Status="PAID", AmountDue=Decimal("0.00"), AmountPaid=Decimal("60.00"), AmountCredited=Decimal("40"))
    )
    settled = bill_from_xero(xero_bill(AmountDue=Decimal("0.00"), AmountCredited=Decimal("100.00")))

    assert isinstance(credited, ProviderBill) and credited.closed_reason is ClosedReason.CREDITED
    assert isinstance(paid, ProviderBill) and paid.closed_reason is ClosedReason.PAID_ELSEWHERE
    assert isinstance(settled, ProviderBill) and (settled.is_open, settled.closed_reason) == (
        False,
        ClosedReason.CREDITED,
    )


def test_draft_and_submitted_bills_are_neither_open_nor_closed() -> None:
    for status in ("DRAFT", "SUBMITTED"):
        bill = bill_from_xero(xero_bill(Status=status))
        assert isinstance(bill, ProviderBill) and (bill.is_open, bill.closed_reason) == (False, None)


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "America/Los_Angeles", "UTC"])
def test_bill_dates_keep_their_calendar_day_in_any_server_time_zone(zone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a server clock in a zone far from UTC
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        # When a bill dated 2018-10-20 (midnight UTC in MS-JSON) is read
        bill = bill_from_xero(xero_bill())
    finally:
        monkeypatch.undo()
        time.tzset()

    # Then its dates are the days Xero shows, whatever the zone
    assert isinstance(bill, ProviderBill)
    assert (bill.issue_date, bill.due_date) == (date(2018, 10, 20), date(2018, 12, 30))


def test_amounts_keep_every_digit() -> None:
    bill = bill_from_xero(xero_bill(Total=Decimal("0.30"), AmountDue=Decimal("0.10")))

    assert isinstance(bill, ProviderBill)
    assert (str(bill.total_amount), str(bill.amount_due)) == ("0.30", "0.10")


def test_a_float_amount_is_refused_rather_than_rounded() -> None:
    skipped = bill_from_xero(xero_bill(AmountDue=0.1))

    assert isinstance(skipped, SkippedRecord)
    assert skipped.reason.endswith("amount due is not an exact decimal amount")


# ---- paging, resuming, calls ----------------------------------------------------------------------


def test_full_listings_cost_one_call_per_thousand_records(big_org: Org) -> None:
    # Given 2,075 open bills and more than 1,000 active suppliers
    open_count = len(big_org.bill_keys("open", "part_paid"))
    supplier_count = len(active_suppliers(big_org))
    assert open_count > 2 * MAX_PAGE_SIZE and supplier_count > MAX_PAGE_SIZE
    api = big_org.api()
    big_org.sandbox.requests.reset()

    # When the connector lists open bills and vendors in full
    bill_pages = drain(big_org.connector.open_bills(api, resume=None))
    vendor_pages = drain(big_org.connector.vendors(api, resume=None))

    # Then it made ceil(n / 1000) calls for each, and read every record once
    bill_calls, vendor_calls = math.ceil(open_count / MAX_PAGE_SIZE), math.ceil(supplier_count / MAX_PAGE_SIZE)
    assert api.calls.by_route == {"GET /Invoices": bill_calls, "GET /Contacts": vendor_calls}
    assert big_org.sandbox.requests.counts() == {"get_invoices": bill_calls, "get_contacts": vendor_calls}
    assert (len(bill_pages), len(vendor_pages)) == (bill_calls, vendor_calls)
    bill_ids = [bill.bill_id for bill in bills_of(bill_pages)]
    assert len(bill_ids) == len(set(bill_ids)) == open_count
    assert len({vendor.vendor_id for vendor in vendors_of(vendor_pages)}) == supplier_count
    assert bill_pages[-1].resume is None and vendor_pages[-1].resume is None


def test_an_interrupted_listing_resumes_after_its_last_page(big_org: Org) -> None:
    # Given a full listing that stopped after its first page
    whole = {bill.bill_id for bill in bills_of(drain(big_org.connector.open_bills(big_org.api(), resume=None)))}
    first = next(big_org.connector.open_bills(big_org.api(), resume=None))
    assert first.resume is not None

    # When a later invocation resumes it
    big_org.sandbox.requests.reset()
    rest = drain(big_org.connector.open_bills(big_org.api(), resume=first.resume))

    # Then it reads only the remaining pages, and the union is the whole listing without duplicates
    ids = [bill.bill_id for bill in first.bills] + [bill.bill_id for bill in bills_of(rest)]
    assert len(ids) == len(set(ids))
    assert set(ids) == whole
    assert big_org.sandbox.requests.counts() == {"get_invoices": len(rest)} == {"get_invoices": 2}


def test_a_resume_token_of_another_listing_is_refused(org: Org) -> None:
    token = next(org.connector.changes_since(org.api(), org.sandbox.clock.now(), resume=None)).resume

    with pytest.raises(ValueError, match="cannot continue this Xero listing"):
        next(org.connector.open_bills(org.api(), resume=token))


def test_a_429_is_retried_after_its_retry_after(org: Org) -> None:
    # Given Xero throttles the next bills call (Retry-After: 1)
    org.sandbox.faults.throttle("get_invoices", count=1)
    started_at = time.monotonic()

    # When the connector lists the open bills
    bills = bills_of(drain(org.connector.open_bills(org.api(), resume=None)))

    # Then it waited the second Xero asked for and got the whole listing
    assert time.monotonic() - started_at >= 1.0
    assert org.statuses("get_invoices") == [429, 200]
    assert len(bills) == len(org.bill_keys("open", "part_paid"))


def test_server_errors_are_retried(org: Org) -> None:
    # Given Xero fails the next two contacts calls
    org.sandbox.faults.fail("get_contacts", 503, count=2)

    # When the connector lists the vendors
    vendors = vendors_of(drain(org.connector.vendors(org.api(), resume=None)))

    # Then it retried until Xero answered
    assert org.statuses("get_contacts") == [503, 503, 200]
    assert len(vendors) == len(active_suppliers(org))


def test_call_budget_keeps_to_xeros_limits(org: Org) -> None:
    limits = limits_for(Provider.XERO, xero_daily_call_limit=5000)

    assert limits.per_minute <= org.sandbox.limits.tenant_per_minute
    assert limits.concurrent == org.sandbox.limits.tenant_concurrent
    assert limits.per_day == org.sandbox.limits.tenant_per_day
    assert limits.app_per_minute == org.sandbox.limits.app_per_minute
