"""The QuickBooks side of sync against the QuickBooks sandbox: open bills, vendors, changes, reads by
id, documents, paging and resuming, call counts, throttling and server errors."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests

from local.sandboxes.generator import BillRecord, Ledger, generate_ledger, sensitive_values
from local.sandboxes.quickbooks import QuickBooksSandbox
from payedge_connect.models import ClosedReason, PostalAddress
from payedge_connect.providers.base import (
    ChangesPage,
    IncrementalWindowExpired,
    ProviderBill,
    ProviderVendor,
    SkippedRecord,
)
from payedge_connect.providers.http import CallCounter, ProviderApi, ProviderError
from payedge_connect.providers.quickbooks import QuickBooksConnector, wire
from payedge_connect.providers.quickbooks import bills as qbo_bills

CLIENT_ID = "sync-app"
MAX_PAGE = 1000
# Every amount QuickBooks sends has two decimal places; a float on the way would lose them.
CENTS = -2


@dataclass
class Company:
    sandbox: QuickBooksSandbox
    realm_id: str
    ledger: Ledger
    connector: QuickBooksConnector

    def api(self) -> ProviderApi:
        """A fresh API client (own call counter) with a token issued as if the user had consented."""
        token = self.sandbox.issue_tokens(CLIENT_ID, self.realm_id)["access_token"]
        return self.connector.api(self.realm_id, access_token=lambda: token, calls=CallCounter())

    def bill_id(self, record: BillRecord) -> str:
        return self.sandbox.entity_id(self.realm_id, record.key)

    def vendor_id(self, key: str) -> str:
        return self.sandbox.entity_id(self.realm_id, key)

    def statuses(self) -> list[tuple[str, int]]:
        return [(entry.endpoint, entry.status) for entry in self.sandbox.requests.entries()]


def start_company(*, seed: int, bills: int, open_bills: int | None = None, documents: int | None = None) -> Company:
    sandbox = QuickBooksSandbox(seed=seed)
    sandbox.register_app(CLIENT_ID, "secret", ["http://127.0.0.1:9/callback"])
    # The ledger ends 40 days ago, so CDC (30 days) sees only what a test changes.
    ledger = generate_ledger(
        seed=seed,
        bills=bills,
        open_bills=open_bills,
        documents=documents,
        as_of=sandbox.clock.now() - timedelta(days=40),
    )
    realm_id = sandbox.add_tenant(ledger)
    sandbox.start()
    return Company(sandbox, realm_id, ledger, QuickBooksConnector(base_url=sandbox.base_url))


@pytest.fixture
def company() -> Iterator[Company]:
    company = start_company(seed=7, bills=60, documents=12)
    yield company
    company.sandbox.stop()
    assert company.sandbox.handler_errors == []


@pytest.fixture(scope="module")
def big_company() -> Iterator[Company]:
    """2,500 open bills: three pages of 1,000. Tests using it only read."""
    company = start_company(seed=11, bills=2600, open_bills=2500, documents=40)
    yield company
    company.sandbox.stop()
    assert company.sandbox.handler_errors == []


def every_page(pages: Iterator[ChangesPage]) -> list[ChangesPage]:
    return list(pages)


def bills_of(pages: list[ChangesPage]) -> list[ProviderBill]:
    return [bill for page in pages for bill in page.bills]


def vendors_of(pages: list[ChangesPage]) -> list[ProviderVendor]:
    return [vendor for page in pages for vendor in page.vendors]


def now_plus_a_moment(company: Company) -> datetime:
    """The sandbox's now; the clock then moves on, so what changes next is after it."""
    moment = company.sandbox.clock.now()
    company.sandbox.clock.advance(2)
    return moment


# ---------------------------------------------------------------------------------------------- open bills


def test_every_open_bill_comes_back_with_its_fields_and_nothing_else_is_open(company: Company) -> None:
    # Given a company whose ledger has open, part-paid, paid, voided and deleted bills
    unpaid = {company.bill_id(record): record for record in company.ledger.unpaid_bills()}
    assert len(unpaid) < len(company.ledger.bills)

    # When the open bills are listed
    pages = every_page(company.connector.open_bills(company.api(), resume=None))
    found = {bill.bill_id: bill for bill in bills_of(pages)}

    # Then exactly the unpaid bills come back, nothing skipped, the listing complete
    assert set(found) == set(unpaid)
    assert len(bills_of(pages)) == len(found)
    assert all(not page.skipped for page in pages)
    assert pages[-1].resume is None
    # And each one carries the generator's values: amounts exact, dates, invoice number, vendor, document
    for bill_id, record in unpaid.items():
        bill = found[bill_id]
        vendor = company.ledger.vendor(record.vendor_key)
        assert bill.is_open and bill.closed_reason is None
        assert isinstance(bill.amount_due, Decimal) and isinstance(bill.total_amount, Decimal)
        assert bill.amount_due == record.amount_due and bill.amount_due.as_tuple().exponent == CENTS
        assert bill.total_amount == record.total and bill.total_amount.as_tuple().exponent == CENTS
        assert bill.currency == record.currency
        assert (bill.vendor_id, bill.vendor_name) == (company.vendor_id(record.vendor_key), vendor.name)
        # QuickBooks keeps at most 21 characters of DocNumber.
        assert bill.invoice_number == (record.invoice_number[:21] if record.invoice_number else None)
        assert bill.remittance_note == record.memo
        assert (bill.issue_date, bill.due_date) == (record.issue_date, record.due_date)
        # QuickBooks writes LastUpdatedTime in the company's zone (-07:00/-08:00): the same instant in UTC.
        assert bill.updated_at == record.updated_at.replace(microsecond=0)
        assert bill.updated_at is not None and bill.updated_at.tzinfo == UTC
        if record.attachment is None:
            assert bill.document is None
        else:
            assert bill.document is not None
            assert bill.document.file_name == record.attachment.file_name
            assert bill.document.content_type == record.attachment.mime_type
            assert bill.document.size_bytes == len(record.attachment.content)
    # And the awkward cases are really there: part paid, no due date, a long invoice number, a document
    assert any(bill.amount_due < bill.total_amount for bill in found.values())
    assert any(bill.due_date is None for bill in found.values())
    assert any(record.invoice_number and len(record.invoice_number) > 21 for record in unpaid.values())
    assert any(bill.document is not None for bill in found.values())


def test_invoice_document_bytes_are_downloaded_through_the_temporary_link(company: Company) -> None:
    # Given an open bill with an invoice document
    api = company.api()
    bills = bills_of(every_page(company.connector.open_bills(api, resume=None)))
    bill = next(bill for bill in bills if bill.document is not None)
    record = next(r for r in company.ledger.unpaid_bills() if company.bill_id(r) == bill.bill_id)
    assert record.attachment is not None and bill.document is not None
    company.sandbox.requests.reset()

    # When its document is downloaded
    content = company.connector.download_document(api, bill.bill_id, bill.document)

    # Then the bytes are the file's, fetched in two hops: the download link, then the file itself
    assert content == record.attachment.content
    assert [entry.endpoint for entry in company.sandbox.requests.entries()] == ["download", "download_file"]


# ---------------------------------------------------------------------------------------------- vendors


def test_vendors_carry_name_address_and_email_and_nothing_sensitive(company: Company) -> None:
    # Given a ledger whose vendors have tax ids, bank details, phones, notes and contact people
    secrets = sensitive_values(company.ledger)
    assert secrets

    # When vendors and open bills are listed
    api = company.api()
    vendor_pages = every_page(company.connector.vendors(api, resume=None))
    bill_pages = every_page(company.connector.open_bills(api, resume=None))

    # Then every vendor (inactive ones too) comes back with its name, address and email
    found = {vendor.vendor_id: vendor for vendor in vendors_of(vendor_pages)}
    assert set(found) == {company.vendor_id(record.key) for record in company.ledger.vendors}
    for record in company.ledger.vendors:
        vendor = found[company.vendor_id(record.key)]
        assert vendor.name == record.name
        assert vendor.email == record.email
        if record.address is None:
            assert vendor.address is None
        else:
            assert vendor.address == PostalAddress(
                line1=record.address.line1,
                line2=record.address.line2,
                city=record.address.city,
                region=record.address.region,
                postal_code=record.address.postal_code,
                country=record.address.country,
            )
    # And none of the sensitive values appears anywhere in what the connector returned
    returned = repr(vendor_pages) + repr(bill_pages)
    leaked = sorted(value for value in secrets if value in returned)
    assert leaked == []


def test_vendors_by_id_reads_inactive_vendors_and_names_unknown_ids(company: Company) -> None:
    # Given an inactive vendor, an active one, and an id QuickBooks never had
    inactive = next(record for record in company.ledger.vendors if not record.active)
    active = company.ledger.vendors[0]
    ids = [company.vendor_id(inactive.key), company.vendor_id(active.key), "999999"]

    # When they are read by id
    api = company.api()
    page = company.connector.vendors_by_id(api, ids)

    # Then both vendors come back, the unknown id is a skipped record, in one call
    assert {vendor.name for vendor in page.vendors} == {inactive.name, active.name}
    assert [(record.provider_id, record.entity) for record in page.skipped] == [("999999", "vendor")]
    assert api.calls.total == 1


# ---------------------------------------------------------------------------------------------- changes


def test_changes_since_returns_exactly_the_bills_changed_with_their_reason_or_new_amount(company: Company) -> None:
    # Given four open bills, and a moment after the last sync
    api = company.api()
    open_bills = [company.bill_id(record) for record in company.ledger.unpaid_bills()]
    paid, voided, deleted, changed = open_bills[:4]
    changed_record = next(r for r in company.ledger.unpaid_bills() if company.bill_id(r) == changed)
    since = now_plus_a_moment(company)

    # When someone pays one in QuickBooks, voids one, deletes one and raises the amount of the last
    realm = company.realm_id
    company.sandbox.pay_bill_elsewhere(realm, paid)
    company.sandbox.void_bill(realm, voided)
    company.sandbox.delete_bill(realm, deleted)
    company.sandbox.change_bill_amount(realm, changed, changed_record.total + Decimal("10.00"))
    pages = every_page(company.connector.changes_since(api, since, resume=None))

    # Then exactly those four bills come back: closed with the reason, or open with the new amounts
    found = {bill.bill_id: bill for bill in bills_of(pages)}
    assert set(found) == {paid, voided, deleted, changed}
    assert (found[paid].is_open, found[paid].closed_reason) == (False, ClosedReason.PAID_ELSEWHERE)
    assert (found[voided].is_open, found[voided].closed_reason) == (False, ClosedReason.VOIDED)
    assert (found[deleted].is_open, found[deleted].closed_reason) == (False, ClosedReason.DELETED)
    assert found[changed].is_open and found[changed].closed_reason is None
    assert found[changed].total_amount == changed_record.total + Decimal("10.00")
    assert found[changed].amount_due == changed_record.amount_due + Decimal("10.00")
    assert vendors_of(pages) == [] and pages[-1].resume is None


def test_changes_since_reports_a_changed_vendor(company: Company) -> None:
    # Given a vendor whose email changes after the last sync
    record = company.ledger.vendors[0]
    since = now_plus_a_moment(company)
    company.sandbox.edit_vendor(company.realm_id, company.vendor_id(record.key), email="new-ap@example.test")

    # When changes are listed
    pages = every_page(company.connector.changes_since(company.api(), since, resume=None))

    # Then the vendor comes back with its new email, and no bill
    assert [(vendor.name, vendor.email) for vendor in vendors_of(pages)] == [(record.name, "new-ap@example.test")]
    assert bills_of(pages) == []


def test_a_resync_with_no_change_costs_one_call(company: Company) -> None:
    # Given a company synced a moment ago, where nothing changed since
    since = now_plus_a_moment(company)
    company.sandbox.requests.reset()

    # When changes are listed
    api = company.api()
    pages = every_page(company.connector.changes_since(api, since, resume=None))

    # Then nothing comes back, for one CDC call covering bills and vendors (at most 2 per entity type)
    assert bills_of(pages) == [] and vendors_of(pages) == []
    assert api.calls.total == 1
    assert company.statuses() == [("cdc", 200)]


def test_changes_beyond_thirty_days_ask_for_a_full_sync_without_a_call(company: Company) -> None:
    # Given a last sync 31 days ago
    api = company.api()
    since = datetime.now(UTC) - timedelta(days=31)

    # When changes are asked for, then the connector says the incremental window expired, calling nobody
    with pytest.raises(IncrementalWindowExpired):
        every_page(company.connector.changes_since(api, since, resume=None))
    assert api.calls.total == 0


def test_quickbooks_refusing_an_old_change_date_asks_for_a_full_sync(company: Company) -> None:
    # Given QuickBooks' clock 31 days ahead of ours, so our "29 days ago" is past its 30-day window
    company.sandbox.clock.advance(31 * 86400)
    api = company.api()
    since = datetime.now(UTC) - timedelta(days=29)

    # When changes are asked for, then QuickBooks' refusal becomes IncrementalWindowExpired
    with pytest.raises(IncrementalWindowExpired):
        every_page(company.connector.changes_since(api, since, resume=None))
    assert company.statuses() == [("cdc", 400)]


def test_a_cdc_answer_at_its_1000_object_limit_falls_back_to_the_full_listing() -> None:
    # Given 1,100 open bills that all changed since the last sync (more than one CDC answer holds)
    company = start_company(seed=3, bills=1150, open_bills=1100, documents=0)
    try:
        since = now_plus_a_moment(company)
        open_ids = [company.bill_id(record) for record in company.ledger.unpaid_bills()]
        totals = {bill["Id"]: bill["TotalAmt"] for bill in company.sandbox.bills(company.realm_id)}
        for bill_id in open_ids:
            company.sandbox.change_bill_amount(company.realm_id, bill_id, totals[bill_id] + Decimal("1.00"))
        api = company.api()

        # When changes are listed, then the connector does not trust the answer: it asks for a full sync
        with pytest.raises(IncrementalWindowExpired, match="1000 objects"):
            every_page(company.connector.changes_since(api, since, resume=None))
        assert api.calls.total == 1

        # And the full listing it falls back to has every open bill with its new amount
        listed = bills_of(every_page(company.connector.open_bills(api, resume=None)))
        assert {bill.bill_id for bill in listed} == set(open_ids)
        by_key = {company.bill_id(r): r for r in company.ledger.unpaid_bills()}
        assert all(bill.amount_due == by_key[bill.bill_id].amount_due + Decimal("1.00") for bill in listed)
    finally:
        company.sandbox.stop()


# ---------------------------------------------------------------------------------------------- bills by id


def test_bills_by_id_says_why_each_bill_is_no_longer_open(company: Company) -> None:
    # Given bills the ledger has open, paid, voided and deleted, and one deleted in QuickBooks now
    by_state: dict[str, str] = {}
    for record in company.ledger.bills:
        if record.state in ("open", "paid", "voided", "deleted") and record.state not in by_state:
            by_state[record.state] = company.bill_id(record)
    just_deleted = next(
        company.bill_id(r) for r in company.ledger.unpaid_bills() if company.bill_id(r) not in by_state.values()
    )
    company.sandbox.delete_bill(company.realm_id, just_deleted)
    company.sandbox.requests.reset()

    # When they are read by id
    api = company.api()
    page = company.connector.bills_by_id(api, [*by_state.values(), just_deleted])

    # Then each comes back with its state: open, paid elsewhere, voided, deleted (both deletions)
    found = {bill.bill_id: bill for bill in page.bills}
    assert found[by_state["open"]].is_open
    assert found[by_state["paid"]].closed_reason is ClosedReason.PAID_ELSEWHERE
    assert found[by_state["voided"]].closed_reason is ClosedReason.VOIDED
    assert found[by_state["deleted"]].closed_reason is ClosedReason.DELETED
    assert found[just_deleted].closed_reason is ClosedReason.DELETED
    # And the cost: one query for all, one read per bill the query did not return, one for documents
    assert company.statuses() == [("query", 200), ("read_entity", 400), ("read_entity", 400), ("query", 200)]


# ---------------------------------------------------------------------------------------------- bad records


def test_a_malformed_vendor_is_skipped_with_a_reason_and_the_page_goes_on(company: Company) -> None:
    # Given a vendor whose email QuickBooks holds in the wrong shape (the sandbox sets Intuit fields as given)
    record = company.ledger.vendors[0]
    vendor_id = company.vendor_id(record.key)
    company.sandbox.edit_vendor(company.realm_id, vendor_id, PrimaryEmailAddr="not-an-object")

    # When vendors are listed
    pages = every_page(company.connector.vendors(company.api(), resume=None))

    # Then that vendor is a skipped record saying which field is wrong, and the others all come back
    skipped = [record for page in pages for record in page.skipped]
    assert [(s.entity, s.provider_id) for s in skipped] == [("vendor", vendor_id)]
    assert "PrimaryEmailAddr" in skipped[0].reason
    assert len(vendors_of(pages)) == len(company.ledger.vendors) - 1


@pytest.mark.parametrize(
    ("change", "expected_reason"),
    [
        ({"Id": None}, "Id is missing"),
        ({"TotalAmt": "12,50"}, "TotalAmt is not valid"),
        ({"Balance": "NaN"}, "Balance is not valid"),
        ({"CurrencyRef": {"value": "Dollars"}}, "no ISO currency code"),
        ({"VendorRef": {"value": "7"}}, "no vendor name"),
        ({"TxnDate": "31/12/2026"}, "TxnDate is not valid"),
    ],
)
def test_a_malformed_bill_becomes_a_skipped_record(change: dict[str, object], expected_reason: str) -> None:
    # Given a bill as QuickBooks sends it, with one field broken (the sandbox has no control for this)
    raw: dict[str, object] = {
        "Id": "41",
        "VendorRef": {"value": "7", "name": "Acme"},
        "CurrencyRef": {"value": "CAD", "name": "Canadian Dollar"},
        "TotalAmt": Decimal("12.50"),
        "Balance": Decimal("12.50"),
        "TxnDate": "2026-10-01",
    }
    raw.update(change)
    if raw["Id"] is None:
        del raw["Id"]

    # When it is read and mapped
    read = qbo_bills.read_bill(raw)
    assert not isinstance(read, wire.DeletedEntity)
    result = read if isinstance(read, SkippedRecord) else qbo_bills.bill_from_qbo(read, None)

    # Then it is a skipped bill whose reason names the problem
    assert isinstance(result, SkippedRecord)
    assert result.entity == "bill"
    assert expected_reason in result.reason


def test_a_fault_inside_a_200_is_an_error() -> None:
    # Given a 200 answer carrying a Fault, as QuickBooks can send (I-ERR)
    response = requests.Response()
    response.status_code = 200
    response._content = (
        b'{"Fault":{"Error":[{"Message":"Stale","Detail":"boom","code":"5010"}],"type":"ValidationFault"}}'
    )
    # When it is read, then it is a provider error naming the fault
    with pytest.raises(ProviderError, match="5010 Stale"):
        wire.read_json(response)


# ---------------------------------------------------------------------------------------------- paging and cost


def test_a_full_listing_costs_ceil_n_over_1000_bill_queries(big_company: Company) -> None:
    # Given 2,500 open bills
    company = big_company
    expected = {company.bill_id(record) for record in company.ledger.unpaid_bills()}
    assert len(expected) == 2500
    company.sandbox.requests.reset()

    # When they are listed
    api = company.api()
    pages = every_page(company.connector.open_bills(api, resume=None))

    # Then three pages of at most 1,000 hold every open bill once, for ceil(2500 / 1000) = 3 bill queries
    listed = [bill.bill_id for bill in bills_of(pages)]
    assert [len(page.bills) for page in pages] == [1000, 1000, 500]
    assert sorted(listed) == sorted(expected) and len(listed) == len(set(listed))
    assert api.calls.by_route["POST query Bill"] == math.ceil(2500 / MAX_PAGE) == 3
    # And one Attachable query per page finds the documents; the sandbox saw exactly these calls
    assert api.calls.by_route["POST query Attachable"] == 3
    assert company.statuses() == [("query", 200)] * api.calls.total == [("query", 200)] * 6


def test_vendors_are_listed_in_one_call_per_1000(big_company: Company) -> None:
    company = big_company
    api = company.api()
    vendors = vendors_of(every_page(company.connector.vendors(api, resume=None)))
    assert len(vendors) == len(company.ledger.vendors)
    assert api.calls.total == math.ceil(len(company.ledger.vendors) / MAX_PAGE)


def test_a_listing_resumes_after_the_last_page_read(big_company: Company) -> None:
    # Given a listing interrupted after its first page
    company = big_company
    first_api = company.api()
    listing = company.connector.open_bills(first_api, resume=None)
    first = next(listing)
    assert first.resume is not None

    # When a new run resumes from that page's token
    api = company.api()
    rest = every_page(company.connector.open_bills(api, resume=first.resume))

    # Then the union is every open bill exactly once, and page one was not read again
    listed = [bill.bill_id for bill in first.bills] + [bill.bill_id for bill in bills_of(rest)]
    assert len(listed) == len(set(listed)) == 2500
    assert set(listed) == {company.bill_id(record) for record in company.ledger.unpaid_bills()}
    assert api.calls.by_route["POST query Bill"] == 2


def test_a_token_of_another_listing_is_refused(company: Company) -> None:
    with pytest.raises(ValueError, match="resume token"):
        every_page(company.connector.vendors(company.api(), resume="bills:1001"))


# ---------------------------------------------------------------------------------------------- faults


def test_a_429_is_retried_after_a_pause(company: Company) -> None:
    # Given QuickBooks throttling the next query (its 429 carries no Retry-After: backoff applies)
    company.sandbox.faults.throttle("query", count=1)

    # When the open bills are listed
    api = company.api()
    bills = bills_of(every_page(company.connector.open_bills(api, resume=None)))

    # Then the query was retried after a pause and the listing is complete
    assert len(bills) == len(company.ledger.unpaid_bills())
    entries = company.sandbox.requests.entries()
    assert [(e.endpoint, e.status) for e in entries[:2]] == [("query", 429), ("query", 200)]
    assert (entries[1].at - entries[0].at).total_seconds() >= 0.2


def test_server_errors_are_retried(company: Company) -> None:
    # Given QuickBooks' edge failing the next CDC call with a 503 and the next query with a 500
    company.sandbox.faults.fail("cdc", 503, count=1)
    company.sandbox.faults.fail("query", 500, count=1)
    since = now_plus_a_moment(company)
    company.sandbox.void_bill(company.realm_id, company.bill_id(company.ledger.unpaid_bills()[0]))
    api = company.api()

    # When changes are listed, then bills by id
    pages = every_page(company.connector.changes_since(api, since, resume=None))
    by_id = company.connector.bills_by_id(api, [company.bill_id(company.ledger.unpaid_bills()[1])])

    # Then both succeeded after one retry each
    assert [bill.closed_reason for bill in bills_of(pages)] == [ClosedReason.VOIDED]
    assert [bill.is_open for bill in by_id.bills] == [True]
    assert company.statuses()[:2] == [("cdc", 503), ("cdc", 200)]
    assert ("query", 500) in company.statuses()
