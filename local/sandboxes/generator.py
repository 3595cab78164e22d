"""Deterministic, provider-neutral accounts-payable data that each sandbox turns into its own entities.

`generate_ledger(seed=..., bills=...)` gives the same ledger for the same arguments. The first vendors
and the first open bills carry the awkward cases on purpose (unicode and apostrophes in names, missing
optional fields, references longer than the 21- and 25-character limits of QuickBooks and Sage, a
shared invoice number), so even a ledger of a handful of bills exercises them.
"""

from __future__ import annotations

import hashlib
import random
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Literal

BillState = Literal["open", "part_paid", "paid", "voided", "deleted", "draft"]
AccountKind = Literal["bank", "expense", "payable"]

BILL_STATES: tuple[BillState, ...] = ("open", "part_paid", "paid", "voided", "deleted", "draft")
UNPAID_STATES: frozenset[BillState] = frozenset({"open", "part_paid"})
CURRENCIES = ("CAD", "USD", "EUR", "GBP")
# Default moment a ledger describes; fixed so that the same seed always gives the same ledger.
DEFAULT_AS_OF = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
DEFAULT_OPEN_SHARE = 0.83

CENT = Decimal("0.01")

# Units of each currency per one unit of another, through CAD; fixed so every sandbox agrees.
_CAD_PER_UNIT = {
    "CAD": Decimal("1"),
    "USD": Decimal("1.3725"),
    "EUR": Decimal("1.4890"),
    "GBP": Decimal("1.7410"),
}


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    line1: str
    line2: str | None
    city: str
    region: str | None
    postal_code: str | None
    country: str  # ISO 3166-1 alpha-2


@dataclass(frozen=True)
class VendorRecord:
    """A supplier. tax_id, the bank fields, phone, mobile, notes and contact_person are sensitive."""

    key: str
    name: str
    email: str | None
    address: Address | None
    currency: str
    tax_id: str
    bank_account_number: str
    bank_routing: str
    iban: str | None
    phone: str
    mobile: str | None
    notes: str
    contact_person: str
    active: bool
    # When the vendor was last changed: spread over the year before `as_of`, never one instant for all.
    updated_at: datetime


@dataclass(frozen=True)
class AttachmentRecord:
    key: str
    file_name: str
    mime_type: str
    content: bytes


@dataclass(frozen=True)
class BillLine:
    description: str
    amount: Decimal
    expense_account_key: str


@dataclass(frozen=True)
class BillRecord:
    key: str
    vendor_key: str
    currency: str
    invoice_number: str | None
    memo: str | None
    issue_date: date
    due_date: date | None
    lines: tuple[BillLine, ...]
    total: Decimal
    amount_paid: Decimal
    state: BillState
    attachment: AttachmentRecord | None
    updated_at: datetime

    @property
    def amount_due(self) -> Decimal:
        return self.total - self.amount_paid


@dataclass(frozen=True)
class AccountRecord:
    key: str
    name: str
    code: str
    kind: AccountKind
    currency: str
    active: bool
    bank_account_number: str | None


@dataclass(frozen=True)
class Ledger:
    company_name: str
    base_currency: str
    vendors: tuple[VendorRecord, ...]
    bills: tuple[BillRecord, ...]
    accounts: tuple[AccountRecord, ...]

    @cached_property
    def _vendors_by_key(self) -> dict[str, VendorRecord]:
        return {vendor.key: vendor for vendor in self.vendors}

    @cached_property
    def _bills_by_key(self) -> dict[str, BillRecord]:
        return {bill.key: bill for bill in self.bills}

    def vendor(self, key: str) -> VendorRecord:
        return self._vendors_by_key[key]

    def bill(self, key: str) -> BillRecord:
        return self._bills_by_key[key]

    def unpaid_bills(self) -> list[BillRecord]:
        """Bills in state open or part_paid."""
        return [bill for bill in self.bills if bill.state in UNPAID_STATES]

    def accounts_of_kind(self, kind: AccountKind) -> list[AccountRecord]:
        return [account for account in self.accounts if account.kind == kind]


def exchange_rate(currency: str, base_currency: str) -> Decimal:
    """Units of `base_currency` for one unit of `currency` (fixed table, 6 decimal places)."""
    rate = _CAD_PER_UNIT[currency] / _CAD_PER_UNIT[base_currency]
    return rate.quantize(Decimal("0.000001"))


def sensitive_values(ledger: Ledger) -> set[str]:
    """Every sensitive string in the ledger: the service must never store any of them."""
    values: set[str] = set()
    for vendor in ledger.vendors:
        for value in (
            vendor.tax_id,
            vendor.bank_account_number,
            vendor.bank_routing,
            vendor.iban,
            vendor.phone,
            vendor.mobile,
            vendor.notes,
            vendor.contact_person,
        ):
            if value is not None:
                values.add(value)
    return values


# --------------------------------------------------------------------------------------------------
# Word lists
# --------------------------------------------------------------------------------------------------

_NAME_PREFIXES = (
    "Northwind", "Maple", "Harbour", "Summit", "Cedar", "Granite", "Prairie", "Riverbend", "Lakeshore",
    "Bluewater", "Ironwood", "Silverline", "Redstone", "Evergreen", "Oakridge", "Pinecrest", "Stonebridge",
    "Westfield", "Eastgate", "Highland", "Coastal", "Frontier", "Aurora", "Beacon", "Keystone", "Meridian",
    "Pioneer", "Sterling", "Trillium", "Vantage", "Zenith", "Crescent", "Falcon", "Glacier", "Horizon",
    "Juniper", "Lighthouse", "Orchard", "Quarry", "Willow",
)  # fmt: skip
_NAME_CORES = (
    "Office Supplies", "Logistics", "Print Works", "Cleaning Services", "Electrical", "Plumbing",
    "Software", "Consulting", "Catering", "Freight", "Packaging", "Hardware", "Security", "Telecom",
    "Landscaping", "Courier", "Fuel", "Equipment Rental", "Signage", "Staffing", "Uniforms", "Paper Co",
    "Machining", "Auto Parts", "IT Services", "Coffee Roasters", "Furniture", "Lab Supplies", "Media",
    "Waste Management", "Insurance Brokers", "Legal Services", "Translation", "Tooling", "Textiles",
    "Water Services", "Glassworks", "Steel", "Timber", "Chemicals",
)  # fmt: skip
_NAME_SUFFIXES = ("Ltd.", "Inc.", "LLC", "Corp.", "& Co.", "Group", "Partners", "Limited", "GmbH", "SARL")
_FIRST_NAMES = (
    "Maria", "Jonas", "Aiko", "Priya", "Liam", "Chloé", "Mateo", "Ingrid", "Kwame", "Sofia", "Dmitri",
    "Amélie", "Hiroshi", "Fatima", "Noah", "Zoë", "Rafael", "Greta", "Oluwaseun", "Camille",
)  # fmt: skip
_LAST_NAMES = (
    "Lindqvist", "Okafor", "Tanaka", "Raghunathan", "Brennan", "Dubois", "Fernández", "Halvorsen",
    "Mensah", "Kowalczyk", "Petrov", "Lefèvre", "Nakamura", "Haddad", "Whitfield", "Østergaard",
    "Castellanos", "Vogt", "Adeyemi", "Marchetti",
)  # fmt: skip
_NOTE_TEMPLATES = (
    "Call {person} before changing any bank details.",
    "{person} approves early payments; ask for the 2% discount.",
    "Remittance advice goes to {person}, not the general inbox.",
    "Bank details confirmed by phone with {person} last spring.",
    "{person} handles disputes; copy them on short payments.",
)
_LINE_DESCRIPTIONS = (
    "Monthly service", "Consumables", "Freight charges", "Hardware", "Licence renewal", "Repairs",
    "Cleaning", "Printing", "Consulting hours", "Delivery", "Equipment rental", "Maintenance contract",
)  # fmt: skip
_MEMOS = (
    "Approved by AP team",
    "Quarterly order",
    "Net 30 per contract",
    "Matched to PO",
    "Recurring charge",
    "Disputed line resolved",
)
# The awkward vendors, first in every ledger: (name, currency or None for base, has_email, has_address).
_SPECIAL_VENDORS: tuple[tuple[str, str | None, bool, bool], ...] = (
    ("Northwind Office Supplies Ltd.", None, True, True),
    ("Café Müller & Söhne GmbH", "EUR", True, True),
    ("Großhandel Weiß KG", "EUR", False, True),
    ("東京文具株式会社", "USD", True, True),
    ("Rocket 🚀 Supplies Inc.", "USD", True, False),
    ("O'Brien's Hardware & Co.", "GBP", True, True),
    ("Dormant Trading Partners Ltd.", None, True, True),  # inactive, see _INACTIVE_SPECIAL
    ("Plain Supplies Ltd.", None, False, False),
)
_INACTIVE_SPECIAL = 6
_COUNTRY_OF = {"CAD": "CA", "USD": "US", "EUR": "DE", "GBP": "GB"}
_CITIES = {
    "CA": (("Toronto", "ON", "M5V 2T6"), ("Vancouver", "BC", "V6B 1A1"), ("Montréal", "QC", "H2Y 1C6")),
    "US": (("Seattle", "WA", "98101"), ("Austin", "TX", "73301"), ("Boston", "MA", "02110")),
    "DE": (("Berlin", None, "10115"), ("München", None, "80331"), ("Köln", None, "50667")),
    "GB": (("London", None, "EC1A 1BB"), ("Manchester", None, "M1 1AE"), ("Edinburgh", None, "EH1 1YZ")),
}
_STREETS = {
    "CA": ("King Street West", "Rue Saint-Paul Ouest", "Harbour Road"),
    "US": ("Main Street", "Pike Street", "Congress Avenue"),
    "DE": ("Hauptstraße", "Königsallee", "Schillerstraße"),
    "GB": ("High Street", "Baker Street", "Deansgate"),
}
_EXPENSE_ACCOUNTS = (
    ("exp-office", "Office supplies", "6100"),
    ("exp-software", "Software subscriptions", "6200"),
    ("exp-professional", "Professional fees", "6300"),
    ("exp-freight", "Freight and delivery", "6400"),
    ("exp-repairs", "Repairs and maintenance", "6500"),
    ("exp-bank-fees", "Bank fees", "6900"),
)
_BILL_EXPENSE_KEYS = tuple(key for key, _, _ in _EXPENSE_ACCOUNTS if key != "exp-bank-fees")
# Closed (not unpaid) states are dealt from this pattern, so even small ledgers get each of them.
_CLOSED_PATTERN: tuple[BillState, ...] = (
    "paid", "draft", "voided", "deleted", "paid", "paid", "draft", "paid", "voided", "deleted",
)  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------


def generate_ledger(
    *,
    seed: int,
    bills: int,
    vendors: int | None = None,
    documents: int | None = None,
    base_currency: str = "CAD",
    company_name: str | None = None,
    open_bills: int | None = None,
    as_of: datetime | None = None,
) -> Ledger:
    """A ledger of `bills` bills, `vendors` vendors and `documents` bills with an attachment.

    `open_bills` is the exact number of unpaid (open + part_paid) bills; by default about 83%.
    Every date and timestamp is on or before `as_of` (default DEFAULT_AS_OF).
    """
    vendor_count = vendors if vendors is not None else max(len(_SPECIAL_VENDORS), -(-bills // 6))
    unpaid_count = open_bills if open_bills is not None else round(bills * DEFAULT_OPEN_SHARE)
    document_count = documents if documents is not None else bills // 10
    moment = as_of if as_of is not None else DEFAULT_AS_OF
    if bills < 0 or vendor_count < 1:
        raise ValueError("bills must not be negative and a ledger needs at least one vendor")
    if not 0 <= unpaid_count <= bills:
        raise ValueError(f"open_bills must be between 0 and {bills}, got {unpaid_count}")
    if not 0 <= document_count <= bills:
        raise ValueError(f"documents must be between 0 and {bills}, got {document_count}")
    if base_currency not in _CAD_PER_UNIT:
        raise ValueError(f"base_currency must be one of {sorted(_CAD_PER_UNIT)}")
    if moment.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")

    rng = random.Random(seed)
    name = company_name if company_name is not None else f"{rng.choice(_NAME_PREFIXES)} Holdings Inc."
    accounts = _accounts(base_currency)
    vendor_records = _vendors(rng, vendor_count, base_currency, as_of=moment.astimezone(UTC))
    bill_records = _bills(
        rng,
        count=bills,
        unpaid=unpaid_count,
        documents=document_count,
        vendors=vendor_records,
        as_of=moment.astimezone(UTC),
    )
    return Ledger(
        company_name=name,
        base_currency=base_currency,
        vendors=tuple(vendor_records),
        bills=tuple(bill_records),
        accounts=tuple(accounts),
    )


def _accounts(base_currency: str) -> list[AccountRecord]:
    currencies = [base_currency, *(c for c in CURRENCIES if c != base_currency)]
    accounts = [
        AccountRecord(
            key=f"bank-{currency.lower()}",
            name=f"Operating {currency}",
            code=f"10{index + 1:02d}",
            kind="bank",
            currency=currency,
            active=True,
            bank_account_number=f"00{index + 1}-4417-{3300 + index * 71:06d}",
        )
        for index, currency in enumerate(currencies)
    ]
    accounts.append(
        AccountRecord(
            key="bank-closed",
            name=f"Old chequing {base_currency} (closed)",
            code="1090",
            kind="bank",
            currency=base_currency,
            active=False,
            bank_account_number="009-4417-009911",
        )
    )
    accounts.extend(
        AccountRecord(key, name, code, "expense", base_currency, True, None) for key, name, code in _EXPENSE_ACCOUNTS
    )
    accounts.append(AccountRecord("ap", "Accounts Payable", "2000", "payable", base_currency, True, None))
    return accounts


def _vendors(rng: random.Random, count: int, base_currency: str, *, as_of: datetime) -> list[VendorRecord]:
    taken: set[str] = set()
    records: list[VendorRecord] = []
    for index in range(count):
        if index < len(_SPECIAL_VENDORS):
            name, currency, has_email, has_address = _SPECIAL_VENDORS[index]
            currency = currency or base_currency
            active = index != _INACTIVE_SPECIAL
        else:
            name = _unique_vendor_name(rng, taken)
            currency = base_currency if rng.random() < 0.6 else rng.choice(CURRENCIES)
            has_email = rng.random() >= 0.1
            has_address = rng.random() >= 0.08
            active = rng.random() >= 0.03
        taken.add(name.casefold())  # QuickBooks and Xero refuse duplicate names, whatever the case
        records.append(
            _vendor(
                rng,
                index,
                name=name,
                currency=currency,
                has_email=has_email,
                has_address=has_address,
                active=active,
                updated_at=as_of - _vendor_age(index),
            )
        )
    return records


def _vendor_age(index: int) -> timedelta:
    """How long before `as_of` a vendor last changed: up to a year, spread by a hash of its index (not
    drawn from the ledger's random stream, so every other generated value stays as it was)."""
    digest = hashlib.sha256(f"vendor-{index}".encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % (365 * 24 * 3600))


def _unique_vendor_name(rng: random.Random, taken: set[str]) -> str:
    for _ in range(20):
        name = f"{rng.choice(_NAME_PREFIXES)} {rng.choice(_NAME_CORES)} {rng.choice(_NAME_SUFFIXES)}"
        if name.casefold() not in taken:
            return name
    # The word lists give 16,000 names; past that, number them.
    name = f"{rng.choice(_NAME_PREFIXES)} {rng.choice(_NAME_CORES)} {len(taken) + 1}"
    while name.casefold() in taken:
        name += "+"
    return name


def _vendor(
    rng: random.Random,
    index: int,
    *,
    name: str,
    currency: str,
    has_email: bool,
    has_address: bool,
    active: bool,
    updated_at: datetime,
) -> VendorRecord:
    key = f"vendor-{index + 1:05d}"
    country = _COUNTRY_OF[currency]
    person = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
    slug = "".join(c for c in name.lower() if c.isascii() and c.isalnum())[:24] or "vendor"
    address = None
    if has_address:
        city, region, postal_code = rng.choice(_CITIES[country])
        address = Address(
            line1=f"{rng.randint(1, 999)} {rng.choice(_STREETS[country])}",
            line2=f"Suite {rng.randint(100, 1900)}" if rng.random() < 0.3 else None,
            city=city,
            region=region,
            postal_code=postal_code,
            country=country,
        )
    return VendorRecord(
        key=key,
        name=name,
        email=f"ap+{index + 1}@{slug}.example" if has_email else None,
        address=address,
        currency=currency,
        tax_id=_tax_id(rng, country),
        bank_account_number=f"{rng.randint(10**9, 10**12 - 1)}",
        bank_routing=_routing(rng, country),
        iban=_iban(rng, country) if country in ("DE", "GB") else None,
        phone=_phone(rng, country),
        mobile=_phone(rng, country) if rng.random() < 0.5 else None,
        notes=rng.choice(_NOTE_TEMPLATES).format(person=person),
        contact_person=person,
        active=active,
        updated_at=updated_at,
    )


def _tax_id(rng: random.Random, country: str) -> str:
    if country == "CA":
        return f"{rng.randint(10**8, 10**9 - 1)}RT0001"  # business number + GST/HST account
    if country == "US":
        return f"{rng.randint(10, 99)}-{rng.randint(10**6, 10**7 - 1)}"  # EIN
    if country == "DE":
        return f"DE{rng.randint(10**8, 10**9 - 1)}"
    return f"GB{rng.randint(10**8, 10**9 - 1)}"


def _routing(rng: random.Random, country: str) -> str:
    if country == "CA":
        return f"{rng.randint(1, 999):03d}-{rng.randint(10**4, 10**5 - 1)}"  # institution-transit
    if country == "US":
        return f"{rng.randint(10**8, 10**9 - 1)}"  # ABA routing number
    if country == "DE":
        return f"{rng.choice(('DEUT', 'COBA', 'HYVE'))}DE{rng.choice(('FF', 'MM', 'BB'))}{rng.randint(100, 999)}"
    return f"{rng.randint(10, 99)}-{rng.randint(10, 99)}-{rng.randint(10, 99)}"  # UK sort code


def _iban(rng: random.Random, country: str) -> str:
    if country == "DE":
        bban = f"{rng.randint(10**7, 10**8 - 1)}{rng.randint(10**9, 10**10 - 1)}"
    else:
        bban = f"NWBK{rng.randint(10**5, 10**6 - 1)}{rng.randint(10**7, 10**8 - 1)}"
    # ISO 13616 check digits: move the country code and "00" to the end, letters to numbers, mod 97.
    rearranged = "".join(str(int(c, 36)) for c in f"{bban}{country}00")
    check = 98 - int(rearranged) % 97
    return f"{country}{check:02d}{bban}"


def _phone(rng: random.Random, country: str) -> str:
    if country in ("CA", "US"):
        return f"+1 {rng.choice((416, 604, 206, 512, 617))}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
    if country == "DE":
        return f"+49 30 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"
    return f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"


def _states(rng: random.Random, bills: int, unpaid: int) -> list[BillState]:
    """Shuffled states: `unpaid` open/part_paid (one in six part paid), the rest dealt from the pattern."""
    states: list[BillState] = ["part_paid" if i % 6 == 1 else "open" for i in range(unpaid)]
    states += [_CLOSED_PATTERN[i % len(_CLOSED_PATTERN)] for i in range(bills - unpaid)]
    rng.shuffle(states)
    return states


def _bills(
    rng: random.Random,
    *,
    count: int,
    unpaid: int,
    documents: int,
    vendors: list[VendorRecord],
    as_of: datetime,
) -> list[BillRecord]:
    states = _states(rng, count, unpaid)
    unpaid_indexes = [i for i, state in enumerate(states) if state in UNPAID_STATES]
    other_indexes = [i for i, state in enumerate(states) if state not in UNPAID_STATES]
    # Attachments go on unpaid bills first: those are the ones a sync downloads.
    with_documents = set(rng.sample(unpaid_indexes, min(documents, len(unpaid_indexes))))
    with_documents |= set(rng.sample(other_indexes, documents - len(with_documents)))
    active_vendors = [vendor for vendor in vendors if vendor.active] or vendors
    # The n-th unpaid bill carries feature n (see _invoice_number); the first bills cover every vendor.
    unpaid_rank = {index: rank for rank, index in enumerate(unpaid_indexes)}
    first_document = min(with_documents, default=None)

    records = []
    for index, state in enumerate(states):
        rank = unpaid_rank.get(index)
        if rank is not None:
            vendor = active_vendors[rank] if rank < len(active_vendors) else rng.choice(active_vendors)
        else:
            vendor = rng.choice(vendors)
        document: Literal["first", "yes", "no"] = "no"
        if index in with_documents:
            document = "first" if index == first_document else "yes"
        records.append(_bill(rng, index, state=state, unpaid_rank=rank, vendor=vendor, document=document, as_of=as_of))
    return records


def _bill(
    rng: random.Random,
    index: int,
    *,
    state: BillState,
    unpaid_rank: int | None,
    vendor: VendorRecord,
    document: Literal["first", "yes", "no"],
    as_of: datetime,
) -> BillRecord:
    key = f"bill-{index + 1:05d}"
    lines = tuple(
        BillLine(
            description=rng.choice(_LINE_DESCRIPTIONS),
            amount=Decimal(rng.randint(500, 500_000)) * CENT,
            expense_account_key=rng.choice(_BILL_EXPENSE_KEYS),
        )
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3)))
    )
    total = sum((line.amount for line in lines), Decimal("0.00"))
    amount_paid = Decimal("0.00")
    if state == "paid":
        amount_paid = total
    elif state == "part_paid":
        amount_paid = Decimal(rng.randint(1, int(total / CENT) - 1)) * CENT  # lines are at least 5.00

    issue_date = as_of.date() - timedelta(days=rng.randint(1, 365))
    due_date: date | None = issue_date + timedelta(days=rng.choice((0, 15, 30, 30, 45, 60)))
    if unpaid_rank == 3 or rng.random() < 0.05:
        due_date = None
    issued_at = datetime(issue_date.year, issue_date.month, issue_date.day, tzinfo=UTC)
    updated_at = issued_at + timedelta(seconds=rng.randint(0, int((as_of - issued_at).total_seconds())))

    memo = rng.choice(_MEMOS) if rng.random() < 0.6 else None
    if unpaid_rank == 4:
        memo = "Livraison express : reçu signé ✔"
    invoice_number = _invoice_number(rng, index, unpaid_rank)
    attachment = None
    if document != "no":
        attachment = _attachment(
            rng,
            key,
            invoice_number=invoice_number,
            currency=vendor.currency,
            total=total,
            first=document == "first",
        )
    return BillRecord(
        key=key,
        vendor_key=vendor.key,
        currency=vendor.currency,  # QuickBooks requires a bill in its vendor's currency
        invoice_number=invoice_number,
        memo=memo,
        issue_date=issue_date,
        due_date=due_date,
        lines=lines,
        total=total,
        amount_paid=amount_paid,
        state=state,
        attachment=attachment,
        updated_at=updated_at,
    )


# Invoice numbers of the first unpaid bills: over 25 chars (Sage reference limit), 22-25 chars (over
# the QuickBooks DocNumber limit of 21), none, and one number shared by two bills of different vendors.
_FEATURE_INVOICE_NUMBERS: dict[int, str | None] = {
    0: "SUPPLIER-REF-2026-LONG-{n:06d}-XYZ",
    1: "PO-2026-11-{n:06d}-ABCD",
    2: None,
    5: "INV-1001",
    6: "INV-1001",
}


def _invoice_number(rng: random.Random, index: int, unpaid_rank: int | None) -> str | None:
    if unpaid_rank in _FEATURE_INVOICE_NUMBERS:
        template = _FEATURE_INVOICE_NUMBERS[unpaid_rank]
        return None if template is None else template.format(n=index + 1)
    roll = rng.random()
    if roll < 0.03:
        return None
    if roll < 0.05:
        return f"SUPPLIER-REFERENCE-{rng.randint(10**9, 10**10 - 1)}"
    if roll < 0.08:
        return f"PO-{rng.randint(2024, 2026)}-{rng.randint(10**9, 10**10 - 1)}-CA"
    return rng.choice(("INV-", "A", "F-", "")) + f"{index + 1:05d}"


def _attachment(
    rng: random.Random,
    bill_key: str,
    *,
    invoice_number: str | None,
    currency: str,
    total: Decimal,
    first: bool,
) -> AttachmentRecord:
    reference = invoice_number or bill_key
    if rng.random() < 0.75 or first:
        # An accent and a space in the first file name exercise URL encoding of downloads by name.
        file_name = "Facture été 2026.pdf" if first else f"{reference}.pdf"
        content = _pdf(f"Invoice {reference} - {currency} {total}")
        return AttachmentRecord(f"att-{bill_key}", file_name, "application/pdf", content)
    colour = (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
    return AttachmentRecord(f"att-{bill_key}", f"scan-{reference}.png", "image/png", _png(colour))


def _pdf(text: str) -> bytes:
    """A one-page PDF 1.4 showing `text` in Helvetica, with a correct cross-reference table."""
    safe = text.encode("ascii", "replace").decode("ascii")
    safe = safe.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 16 Tf 72 720 Td ({safe}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref_at)
    return bytes(out)


def _png(colour: tuple[int, int, int], size: int = 8) -> bytes:
    """A `size`x`size` PNG of one colour (8-bit RGB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(colour) * size  # filter type 0, then the pixels
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * size)) + chunk(b"IEND", b"")
    )
