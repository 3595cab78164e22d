"""Reading bills, vendors, accounts and attachments from the Xero sandbox the way a connector does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
import requests

from local.sandboxes.generator import generate_ledger, sensitive_values
from local.sandboxes.xero import XeroSandbox
from tests.sandboxes.test_xero_helpers import Org, connect


@pytest.fixture
def org() -> Iterator[Org]:
    sandbox = XeroSandbox(seed=11)
    ledger = generate_ledger(seed=11, bills=60, documents=6, as_of=sandbox.clock.now())
    with sandbox:
        yield connect(sandbox, ledger)


# ---- bills --------------------------------------------------------------------------------------


def test_open_bills_filter_returns_exactly_the_unpaid_bills(org: Org) -> None:
    # When the connector asks for authorised payable invoices
    bills = org.records("Invoices", "Invoices", where='Type=="ACCPAY" AND Status=="AUTHORISED"', page=1)

    # Then it gets the ledger's open and part-paid bills, each still owing money
    expected = {org.invoice_id(key) for key in org.bill_keys("open", "part_paid")}
    assert {bill["InvoiceID"] for bill in bills} == expected
    assert all(bill["AmountDue"] > 0 and bill["Type"] == "ACCPAY" for bill in bills)


def test_part_paid_bill_shows_its_payment_and_remaining_amount(org: Org) -> None:
    key = org.bill_keys("part_paid")[0]
    record = org.ledger.bill(key)

    (bill,) = org.records(f"Invoices/{org.invoice_id(key)}", "Invoices")

    assert Decimal(str(bill["AmountPaid"])) == record.amount_paid
    assert Decimal(str(bill["AmountDue"])) == record.total - record.amount_paid
    assert [Decimal(str(p["Amount"])) for p in bill["Payments"]] == [record.amount_paid]


def test_statuses_parameter_selects_several_statuses(org: Org) -> None:
    bills = org.records("Invoices", "Invoices", Statuses="PAID,VOIDED", page=1)

    expected = {org.invoice_id(key) for key in org.bill_keys("paid", "voided")}
    assert {bill["InvoiceID"] for bill in bills} == expected


def test_contact_guid_filter_returns_that_vendors_bills(org: Org) -> None:
    vendor = org.ledger.bills[0].vendor_key
    contact = org.sandbox.contact_id(org.tenant, vendor)

    bills = org.records("Invoices", "Invoices", where=f'Contact.ContactID==guid("{contact}")', page=1)

    assert bills
    assert {bill["Contact"]["ContactID"] for bill in bills} == {contact}
    expected = {org.invoice_id(b.key) for b in org.ledger.bills if b.vendor_key == vendor and b.state != "deleted"}
    assert {bill["InvoiceID"] for bill in bills} == expected


def test_guid_field_compared_with_a_string_is_a_query_parse_error(org: Org) -> None:
    contact = org.sandbox.contact_id(org.tenant, org.ledger.vendors[0].key)

    response = org.get("Invoices", where=f'Contact.ContactID=="{contact}"')

    body = response.json()
    assert response.status_code == 400
    assert (body["ErrorNumber"], body["Type"]) == (16, "QueryParseException")
    assert "incompatible with operand types 'Guid' and 'String'" in body["Message"]


@pytest.mark.parametrize(
    "where",
    ['Contact.Name.Contains("Maple")', 'Colour=="RED"', 'Type=="ACCPAY" AND', 'Status=="AUTHORISED'],
)
def test_unsupported_or_malformed_filters_are_rejected(org: Org, where: str) -> None:
    response = org.get("Invoices", where=where)
    assert response.status_code == 400
    assert response.json()["Type"] == "QueryParseException"


def test_ids_parameter_returns_those_bills_even_when_quoted(org: Org) -> None:
    wanted = [org.invoice_id(bill.key) for bill in org.ledger.bills[:3]]

    bills = org.records("Invoices", "Invoices", IDs=",".join(f'"{i}"' for i in wanted))

    assert sorted(bill["InvoiceID"] for bill in bills) == sorted(wanted)


def test_deleted_bills_are_listed_only_when_asked_for(org: Org) -> None:
    deleted = {org.invoice_id(key) for key in org.bill_keys("deleted")}
    assert deleted

    default = {bill["InvoiceID"] for bill in org.records("Invoices", "Invoices", page=1, pageSize=1000)}
    asked = {bill["InvoiceID"] for bill in org.records("Invoices", "Invoices", Statuses="DELETED")}
    one = org.records(f"Invoices/{next(iter(deleted))}", "Invoices")

    assert not default & deleted
    assert asked == deleted
    assert one[0]["Status"] == "DELETED"


def test_paged_list_carries_line_items_and_pagination(org: Org) -> None:
    response = org.get("Invoices", page=2, pageSize=25)

    body = response.json()
    shown = len(org.ledger.bills) - len(org.bill_keys("deleted"))
    assert body["pagination"] == {"page": 2, "pageSize": 25, "pageCount": -(-shown // 25), "itemCount": shown}
    assert len(body["Invoices"]) == 25
    assert all(bill["LineItems"] for bill in body["Invoices"])
    assert (body["Status"], body["ProviderName"]) == ("OK", "PayEdge Connect")


def test_unpaged_list_has_no_line_items(org: Org) -> None:
    body = org.get("Invoices").json()

    assert "pagination" not in body
    assert body["Invoices"]
    assert all("LineItems" not in bill for bill in body["Invoices"])


def test_summary_only_drops_heavy_fields_and_pages(org: Org) -> None:
    body = org.get("Invoices", summaryOnly="true").json()

    assert body["pagination"]["page"] == 1
    assert all("LineItems" not in bill and "Payments" not in bill for bill in body["Invoices"])


def test_page_size_above_1000_is_clamped_to_1000() -> None:
    # Given 1,200 bills
    sandbox = XeroSandbox(seed=12)
    with sandbox:
        org = connect(sandbox, generate_ledger(seed=12, bills=1200, open_bills=1200, as_of=sandbox.clock.now()))

        # When a page of 5,000 is asked for
        body = org.get("Invoices", page=1, pageSize=5000).json()

    # Then Xero's maximum of 1,000 applies
    assert len(body["Invoices"]) == 1000
    assert body["pagination"] == {"page": 1, "pageSize": 1000, "pageCount": 2, "itemCount": 1200}


def test_order_parameter_sorts_bills(org: Org) -> None:
    bills = org.records("Invoices", "Invoices", order="Total DESC", page=1)
    totals = [Decimal(str(bill["Total"])) for bill in bills]
    assert totals == sorted(totals, reverse=True)


def test_default_order_is_by_last_update(org: Org) -> None:
    bills = org.records("Invoices", "Invoices", page=1)
    stamps = [int(bill["UpdatedDateUTC"][6:19]) for bill in bills]
    assert stamps == sorted(stamps)


def test_unknown_bill_is_xeros_plain_text_404(org: Org) -> None:
    response = org.get("Invoices/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert response.text == "The resource you're looking for cannot be found"


def test_bill_dates_are_ms_json_with_date_strings(org: Org) -> None:
    record = next(bill for bill in org.ledger.bills if bill.due_date is not None)
    assert record.due_date is not None
    (bill,) = org.records(f"Invoices/{org.invoice_id(record.key)}", "Invoices")

    assert bill["DateString"] == f"{record.issue_date.isoformat()}T00:00:00"
    assert bill["DueDateString"] == f"{record.due_date.isoformat()}T00:00:00"
    assert bill["Date"].startswith("/Date(") and bill["Date"].endswith("+0000)/")
    assert bill["UpdatedDateUTC"] == f"/Date({int(record.updated_at.timestamp() * 1000)}+0000)/"


# ---- If-Modified-Since --------------------------------------------------------------------------


def test_if_modified_since_returns_only_bills_changed_since(org: Org) -> None:
    # Given a sync that finished now
    watermark = org.sandbox.clock.now()
    org.sandbox.clock.advance(5)
    # When one bill is paid elsewhere and another changes amount after it
    paid, changed = org.bill_keys("open")[:2]
    org.sandbox.pay_bill_elsewhere(org.tenant, org.invoice_id(paid))
    org.sandbox.change_bill_amount(org.tenant, org.invoice_id(changed), Decimal("99.95"))

    # Then asking with Xero's offset-less timestamp returns just those two
    header = {"If-Modified-Since": watermark.strftime("%Y-%m-%dT%H:%M:%S")}
    response = org.get("Invoices", headers=header, page=1)
    bills = response.json()["Invoices"]
    assert {bill["InvoiceID"] for bill in bills} == {org.invoice_id(paid), org.invoice_id(changed)}
    assert next(b for b in bills if b["InvoiceID"] == org.invoice_id(paid))["Status"] == "PAID"


def test_if_modified_since_in_the_future_returns_nothing(org: Org) -> None:
    later = org.sandbox.clock.now() + timedelta(days=1)
    response = org.get("Invoices", headers={"If-Modified-Since": later.isoformat()}, page=1)
    assert response.json()["Invoices"] == []


def test_if_modified_since_applies_to_contacts(org: Org) -> None:
    watermark = org.sandbox.clock.now().strftime("%Y-%m-%dT%H:%M:%S")
    org.sandbox.clock.advance(2)
    contact = org.sandbox.contact_id(org.tenant, org.ledger.vendors[0].key)

    org.sandbox.edit_vendor(org.tenant, contact, email="new-ap@vendor.example")

    contacts = org.records("Contacts", "Contacts", headers={"If-Modified-Since": watermark})
    assert [c["ContactID"] for c in contacts] == [contact]
    assert contacts[0]["EmailAddress"] == "new-ap@vendor.example"


# ---- attachments --------------------------------------------------------------------------------


def test_attachment_is_listed_and_downloads_as_the_original_bytes(org: Org) -> None:
    record = next(bill for bill in org.ledger.bills if bill.attachment is not None)
    assert record.attachment is not None
    bill_id = org.invoice_id(record.key)

    (listed,) = org.records(f"Invoices/{bill_id}/Attachments", "Attachments")
    download = requests.get(listed["Url"], headers={**org.headers, "Accept": "application/octet-stream"})
    by_id = org.get(f"Invoices/{bill_id}/Attachments/{listed['AttachmentID']}")

    assert (listed["FileName"], listed["MimeType"]) == (record.attachment.file_name, record.attachment.mime_type)
    assert listed["ContentLength"] == len(record.attachment.content)
    assert download.content == by_id.content == record.attachment.content
    assert download.headers["Content-Type"].startswith(record.attachment.mime_type)


def test_bill_without_attachment_lists_none(org: Org) -> None:
    record = next(bill for bill in org.ledger.bills if bill.attachment is None)
    assert org.records(f"Invoices/{org.invoice_id(record.key)}/Attachments", "Attachments") == []


# ---- contacts, accounts, organisation ------------------------------------------------------------


def test_supplier_contacts_carry_sensitive_fields_where_xero_keeps_them(org: Org) -> None:
    # Given the generator's sensitive vendor values
    secrets = sensitive_values(org.ledger)

    # When the connector lists suppliers
    contacts = org.records("Contacts", "Contacts", where="IsSupplier==true", page=1)

    # Then tax number, bank details and phones are present, as a real Xero contact has them
    assert contacts and all(c["IsSupplier"] for c in contacts)
    served = {c["TaxNumber"] for c in contacts} | {c["BankAccountDetails"] for c in contacts}
    served |= {phone["PhoneNumber"] for c in contacts for phone in c["Phones"] if phone["PhoneNumber"]}
    assert served & secrets


def test_archived_contacts_need_include_archived(org: Org) -> None:
    inactive = [v.key for v in org.ledger.vendors if not v.active]
    archived = {org.sandbox.contact_id(org.tenant, key) for key in inactive}
    assert archived

    default = {c["ContactID"] for c in org.records("Contacts", "Contacts")}
    everything = {c["ContactID"] for c in org.records("Contacts", "Contacts", includeArchived="true")}

    assert not default & archived
    assert archived <= everything


def test_bank_accounts_filter_hides_the_closed_account(org: Org) -> None:
    active = org.records("Accounts", "Accounts", where='Status=="ACTIVE" AND Type=="BANK"')
    banks = org.records("Accounts", "Accounts", where='Type=="BANK"')

    expected = {a.currency for a in org.ledger.accounts_of_kind("bank") if a.active}
    assert {a["CurrencyCode"] for a in active} == expected
    assert all(a["Type"] == "BANK" and a["Status"] == "ACTIVE" for a in active)
    assert len(banks) == len(active) + 1


def test_organisation_reports_its_base_currency(org: Org) -> None:
    (organisation,) = org.records("Organisation", "Organisations")
    assert organisation["BaseCurrency"] == org.ledger.base_currency
    assert organisation["OrganisationID"] == org.tenant


def test_contact_ids_parameter_selects_those_vendors_bills(org: Org) -> None:
    vendors = {bill.vendor_key for bill in org.ledger.bills[:2]}
    contact_ids = {org.sandbox.contact_id(org.tenant, key) for key in vendors}

    bills = org.records("Invoices", "Invoices", ContactIDs=",".join(contact_ids), page=1)

    expected = {org.invoice_id(b.key) for b in org.ledger.bills if b.vendor_key in vendors and b.state != "deleted"}
    assert {bill["InvoiceID"] for bill in bills} == expected


def test_admin_surface_adds_an_organisation_from_a_generated_ledger(org: Org) -> None:
    answer = requests.post(
        f"{org.sandbox.base_url}/_admin/add_tenant", json={"seed": 3, "bills": 5, "name": "Admin Org Ltd."}
    ).json()

    assert answer["tenant"] in org.sandbox.tenant_ids()
    assert len(org.sandbox.invoices(answer["tenant"])) == 5
    assert org.sandbox.organisation(answer["tenant"]).name == "Admin Org Ltd."
