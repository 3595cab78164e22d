"""Behaviour of the deterministic ledger generator."""

from __future__ import annotations

import re
import struct
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from local.sandboxes.generator import (
    BILL_STATES,
    CURRENCIES,
    DEFAULT_AS_OF,
    Ledger,
    exchange_rate,
    generate_ledger,
    sensitive_values,
)
from local.sandboxes.quickbooks import QuickBooksSandbox
from local.sandboxes.xero import XeroSandbox


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return generate_ledger(seed=11, bills=600)


@pytest.fixture(scope="module")
def benchmark_ledger() -> Ledger:
    return generate_ledger(seed=5, bills=12_000, vendors=2_000, documents=200, open_bills=10_000)


# ---- determinism and sizes -----------------------------------------------------------------------


def test_same_seed_gives_the_same_ledger() -> None:
    # Given two ledgers made with the same arguments
    first = generate_ledger(seed=42, bills=150, documents=20)
    second = generate_ledger(seed=42, bills=150, documents=20)
    # Then they are equal, attachment bytes included
    assert first == second


def test_another_seed_gives_another_ledger() -> None:
    first = generate_ledger(seed=1, bills=50)
    second = generate_ledger(seed=2, bills=50)
    assert [b.total for b in first.bills] != [b.total for b in second.bills]


def test_benchmark_sizes_are_exact(benchmark_ledger: Ledger) -> None:
    # Given 12,000 bills of which 10,000 unpaid, 2,000 vendors and 200 documents
    # Then each count is exact
    assert len(benchmark_ledger.bills) == 12_000
    assert len(benchmark_ledger.unpaid_bills()) == 10_000
    assert len(benchmark_ledger.vendors) == 2_000
    assert sum(1 for bill in benchmark_ledger.bills if bill.attachment is not None) == 200


def test_a_large_ledger_of_twenty_thousand_bills_is_made() -> None:
    large = generate_ledger(seed=9, bills=20_000)
    assert len(large.bills) == 20_000
    assert len({bill.key for bill in large.bills}) == 20_000


@pytest.mark.parametrize("bills", [0, 1, 3, 8])
def test_tiny_ledgers_are_consistent(bills: int) -> None:
    tiny = generate_ledger(seed=3, bills=bills)
    assert len(tiny.bills) == bills
    assert tiny.vendors
    vendor_keys = {vendor.key for vendor in tiny.vendors}
    assert all(bill.vendor_key in vendor_keys for bill in tiny.bills)


def test_default_mix_is_about_83_percent_unpaid(ledger: Ledger) -> None:
    share = len(ledger.unpaid_bills()) / len(ledger.bills)
    assert 0.82 <= share <= 0.84


def test_every_state_appears(ledger: Ledger) -> None:
    states = Counter(bill.state for bill in ledger.bills)
    assert set(states) == set(BILL_STATES)
    assert states["open"] > states["part_paid"] > 0


def test_a_small_ledger_still_has_every_state() -> None:
    small = generate_ledger(seed=4, bills=40)
    assert {bill.state for bill in small.bills} == set(BILL_STATES)


@pytest.mark.parametrize(
    "arguments",
    [
        {"bills": 5, "open_bills": 6},
        {"bills": 5, "documents": 6},
        {"bills": 5, "vendors": 0},
        {"bills": -1},
        {"bills": 5, "base_currency": "JPY"},
        {"bills": 5, "as_of": datetime(2026, 1, 1)},  # noqa: DTZ001 (naive on purpose)
    ],
)
def test_impossible_requests_are_refused(arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        generate_ledger(seed=1, **arguments)  # type: ignore[arg-type]


# ---- bills ---------------------------------------------------------------------------------------


def test_amounts_have_two_places_and_lines_add_up(ledger: Ledger) -> None:
    for bill in ledger.bills:
        assert bill.total == sum(line.amount for line in bill.lines)
        assert all(amount.as_tuple().exponent == -2 for amount in (bill.total, bill.amount_paid, bill.amount_due))


def test_amount_due_follows_the_state(ledger: Ledger) -> None:
    for bill in ledger.bills:
        if bill.state == "paid":
            assert bill.amount_due == 0
        elif bill.state == "part_paid":
            assert 0 < bill.amount_due < bill.total
        else:
            assert bill.amount_due == bill.total


def test_unpaid_bills_belong_to_existing_active_vendors_in_their_currency(ledger: Ledger) -> None:
    for bill in ledger.unpaid_bills():
        vendor = ledger.vendor(bill.vendor_key)
        assert vendor.active
        assert bill.currency == vendor.currency


def test_every_currency_appears_on_unpaid_bills(ledger: Ledger) -> None:
    assert {bill.currency for bill in ledger.unpaid_bills()} == set(CURRENCIES)


def test_every_active_vendor_has_an_unpaid_bill_when_there_are_enough(benchmark_ledger: Ledger) -> None:
    billed = {bill.vendor_key for bill in benchmark_ledger.unpaid_bills()}
    assert billed == {vendor.key for vendor in benchmark_ledger.vendors if vendor.active}


def test_dates_and_timestamps_are_in_order(ledger: Ledger) -> None:
    for bill in ledger.bills:
        assert bill.updated_at.tzinfo is UTC
        assert bill.updated_at <= DEFAULT_AS_OF
        assert bill.issue_date <= bill.updated_at.date()
        assert bill.due_date is None or bill.due_date >= bill.issue_date


def test_vendors_were_last_changed_at_many_moments_before_as_of(ledger: Ledger) -> None:
    # Bookmarks (If-Modified-Since, updated_or_created_since) need vendors on both sides of a boundary.
    moments = [vendor.updated_at for vendor in ledger.vendors]
    assert all(moment <= DEFAULT_AS_OF and moment.tzinfo is UTC for moment in moments)
    assert len(set(moments)) > len(moments) * 0.9
    assert max(moments) - min(moments) > timedelta(days=100)


def test_every_sandbox_shows_the_vendors_own_timestamps() -> None:
    small = generate_ledger(seed=4, bills=12, vendors=6)
    xero = XeroSandbox()
    tenant = xero.add_tenant(small)
    contact_times = {contact["UpdatedDateUTC"] for contact in xero.contacts(tenant)}
    assert len(contact_times) == len({vendor.updated_at for vendor in small.vendors})
    quickbooks = QuickBooksSandbox()
    realm = quickbooks.add_tenant(small)
    vendor_times = {vendor["MetaData"]["LastUpdatedTime"] for vendor in quickbooks.vendors(realm)}
    assert len(vendor_times) == len({vendor.updated_at for vendor in small.vendors})


def test_as_of_moves_every_date() -> None:
    moment = datetime(2030, 6, 1, tzinfo=UTC)
    later = generate_ledger(seed=2, bills=30, as_of=moment)
    assert all(bill.updated_at <= moment and bill.issue_date.year >= 2029 for bill in later.bills)


def test_small_ledger_has_the_awkward_bills() -> None:
    # Given a dozen bills
    small = generate_ledger(seed=8, bills=12)
    unpaid = small.unpaid_bills()
    numbers = [bill.invoice_number for bill in unpaid]
    # Then among the unpaid ones are: references over 25 and over 21 chars, none, no due date,
    # a unicode memo and one invoice number used by two vendors
    assert any(n is not None and len(n) > 25 for n in numbers)
    assert any(n is not None and 21 < len(n) <= 25 for n in numbers)
    assert None in numbers
    assert any(bill.due_date is None for bill in unpaid)
    assert any(bill.memo is not None and not bill.memo.isascii() for bill in unpaid)
    shared = [bill for bill in unpaid if bill.invoice_number == "INV-1001"]
    assert len({bill.vendor_key for bill in shared}) == 2


def test_large_ledger_keeps_a_share_of_missing_fields(ledger: Ledger) -> None:
    assert sum(bill.invoice_number is None for bill in ledger.bills) >= 5
    assert sum(bill.due_date is None for bill in ledger.bills) >= 10
    assert sum(bill.memo is None for bill in ledger.bills) >= 100


# ---- attachments ---------------------------------------------------------------------------------


def test_attachments_are_real_pdf_and_png_files(ledger: Ledger) -> None:
    attachments = [bill.attachment for bill in ledger.bills if bill.attachment is not None]
    assert len(attachments) == 60  # a tenth of the bills by default
    kinds = Counter(attachment.mime_type for attachment in attachments)
    assert set(kinds) == {"application/pdf", "image/png"}
    for attachment in attachments:
        if attachment.mime_type == "application/pdf":
            assert_valid_pdf(attachment.content)
            assert attachment.file_name.endswith(".pdf")
        else:
            assert_valid_png(attachment.content)
            assert attachment.file_name.endswith(".png")
    assert len({attachment.key for attachment in attachments}) == len(attachments)


def test_first_attachment_has_a_file_name_that_needs_url_encoding(ledger: Ledger) -> None:
    first = next(bill.attachment for bill in ledger.bills if bill.attachment is not None)
    assert first.file_name == "Facture été 2026.pdf"


def test_documents_go_on_unpaid_bills_first(benchmark_ledger: Ledger) -> None:
    assert all(bill.state in ("open", "part_paid") for bill in benchmark_ledger.bills if bill.attachment)


def assert_valid_pdf(content: bytes) -> None:
    assert content.startswith(b"%PDF-1.4\n")
    assert content.endswith(b"%%EOF\n")
    # The cross-reference table points at each object
    xref_at = int(content.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
    assert content[xref_at:].startswith(b"xref\n")
    entries = re.findall(rb"(\d{10}) 00000 n ", content[xref_at:])
    for number, offset in enumerate(entries, start=1):
        assert content[int(offset) :].startswith(b"%d 0 obj" % number)


def assert_valid_png(content: bytes) -> None:
    assert content.startswith(b"\x89PNG\r\n\x1a\n")
    position = 8
    kinds = []
    while position < len(content):
        (length,) = struct.unpack(">I", content[position : position + 4])
        kind = content[position + 4 : position + 8]
        data = content[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", content[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + data)
        kinds.append(kind)
        position += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]


# ---- vendors -------------------------------------------------------------------------------------


def test_vendor_names_are_unique_ignoring_case(benchmark_ledger: Ledger) -> None:
    names = [vendor.name.casefold() for vendor in benchmark_ledger.vendors]
    assert len(names) == len(set(names))


def test_vendor_names_include_unicode_and_apostrophes() -> None:
    names = " ".join(vendor.name for vendor in generate_ledger(seed=1, bills=3).vendors)
    for fragment in ("é", "ß", "東京", "🚀", "'"):
        assert fragment in names


def test_some_vendors_lack_email_or_address(ledger: Ledger) -> None:
    assert any(vendor.email is None for vendor in ledger.vendors)
    assert any(vendor.address is None for vendor in ledger.vendors)
    assert any(vendor.email is None and vendor.address is None for vendor in ledger.vendors)
    assert any(not vendor.active for vendor in ledger.vendors)


def test_every_vendor_carries_sensitive_fields(ledger: Ledger) -> None:
    for vendor in ledger.vendors:
        assert vendor.tax_id and vendor.bank_account_number and vendor.bank_routing and vendor.phone
        assert vendor.contact_person in vendor.notes  # the note names a person
    assert any(vendor.iban for vendor in ledger.vendors)
    assert any(vendor.mobile for vendor in ledger.vendors)


def test_ibans_have_valid_check_digits(ledger: Ledger) -> None:
    for iban in (vendor.iban for vendor in ledger.vendors if vendor.iban):
        rearranged = "".join(str(int(c, 36)) for c in iban[4:] + iban[:4])
        assert int(rearranged) % 97 == 1


def test_sensitive_values_list_every_sensitive_field(ledger: Ledger) -> None:
    values = sensitive_values(ledger)
    for vendor in ledger.vendors:
        expected = {
            vendor.tax_id,
            vendor.bank_account_number,
            vendor.bank_routing,
            vendor.phone,
            vendor.notes,
        }
        expected |= {vendor.contact_person} | {v for v in (vendor.iban, vendor.mobile) if v}
        assert expected <= values


def test_sensitive_values_do_not_appear_in_what_the_service_may_copy(ledger: Ledger) -> None:
    # A search of stored data for a sensitive value must not hit the fields the service does keep
    copied = " ".join(
        [vendor.name for vendor in ledger.vendors]
        + [vendor.email or "" for vendor in ledger.vendors]
        + [f"{bill.invoice_number} {bill.memo} {bill.total}" for bill in ledger.bills]
        + [line.description for bill in ledger.bills for line in bill.lines]
    )
    assert not [value for value in sensitive_values(ledger) if value in copied]


# ---- accounts and currencies ---------------------------------------------------------------------


def test_accounts_cover_every_currency_fees_and_payables(ledger: Ledger) -> None:
    banks = ledger.accounts_of_kind("bank")
    assert {account.currency for account in banks if account.active} == set(CURRENCIES)
    assert any(not account.active for account in banks)
    assert all(account.bank_account_number for account in banks)
    assert "Bank fees" in {account.name for account in ledger.accounts_of_kind("expense")}
    assert len(ledger.accounts_of_kind("payable")) == 1
    expense_keys = {account.key for account in ledger.accounts_of_kind("expense")}
    assert all(line.expense_account_key in expense_keys for bill in ledger.bills for line in bill.lines)


def test_base_currency_and_company_name_are_honoured() -> None:
    british = generate_ledger(seed=1, bills=10, base_currency="GBP", company_name="Acme Ltd")
    assert (british.base_currency, british.company_name) == ("GBP", "Acme Ltd")
    assert british.vendors[0].currency == "GBP"
    assert all(account.currency == "GBP" for account in british.accounts if account.kind != "bank")


def test_exchange_rates_are_consistent() -> None:
    assert exchange_rate("CAD", "CAD") == Decimal("1.000000")
    assert exchange_rate("USD", "CAD") == Decimal("1.372500")
    product = exchange_rate("EUR", "GBP") * exchange_rate("GBP", "EUR")
    assert abs(product - 1) < Decimal("0.00001")
