"""One Sage Accounting business: its contacts, purchase invoices, bank and ledger accounts,
attachments and payments, loaded from a generator `Ledger`, and the rules that change them.

Values are stored the way Sage stores them (string lengths cut to Sage's maxima, timestamps to the
second), so what the API serves is exactly what is held here.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from local.sandboxes.generator import AccountRecord, Address, BillRecord, Ledger, VendorRecord
from local.sandboxes.generator import exchange_rate as base_per_unit

# Alias for annotations inside classes that have a field named `date`.
Day = date

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
RATE_PLACES = Decimal("0.000001")

# Sage field limits from the Swagger (maxLength).
CONTACT_NAME_MAX = 100
CONTACT_REFERENCE_MAX = 10
CONTACT_NOTES_MAX = 4000
EMAIL_MAX = 100
PERSON_FIELD_MAX = 50
ADDRESS_LINE_MAX = 50
POSTAL_CODE_MAX = 10
INVOICE_REFERENCE_MAX = 25
VENDOR_REFERENCE_MAX = 31
INVOICE_NOTES_MAX = 2000
PAYMENT_REFERENCE_MAX = 25

# Artefact statuses (S-STAT; no primary listing was found, docs/providers.md#sage-bills, so the set Sage's UI
# shows for purchase artefacts is used).
DRAFT, UNPAID, PART_PAID, PAID, VOID = "DRAFT", "UNPAID", "PART_PAID", "PAID", "VOID"
ARTEFACT_STATUSES: dict[str, str] = {
    DRAFT: "Draft",
    UNPAID: "Unpaid",
    PART_PAID: "Part Paid",
    PAID: "Paid",
    VOID: "Void",
    "DISPUTED": "Disputed",
}
PAYABLE_STATUSES = (UNPAID, PART_PAID)
_STATE_TO_STATUS = {
    "open": UNPAID,
    "part_paid": PART_PAID,
    "paid": PAID,
    "voided": VOID,
    "deleted": UNPAID,  # stored with deleted_at set; the status is what it had before deletion
    "draft": DRAFT,
}

VENDOR_PAYMENT = "VENDOR_PAYMENT"
OTHER_PAYMENT = "OTHER_PAYMENT"
OTHER_RECEIPT = "OTHER_RECEIPT"
TRANSACTION_TYPES: dict[str, str] = {
    VENDOR_PAYMENT: "Supplier Payment",
    "VENDOR_REFUND": "Supplier Refund",
    "CUSTOMER_RECEIPT": "Customer Receipt",
    "CUSTOMER_REFUND": "Customer Refund",
    OTHER_PAYMENT: "Other Payment",
    OTHER_RECEIPT: "Other Receipt",
    "PURCHASE_INVOICE": "Purchase Invoice",
}
PAYMENT_METHODS: dict[str, str] = {
    "BANK_TRANSFER": "Bank Transfer",
    "CASH": "Cash",
    "CHEQUE": "Cheque",
    "CREDIT_DEBIT": "Credit/Debit Card",
    "ALTERNATIVE_PAYMENT": "Alternative Payment Method",
}
DEFAULT_PAYMENT_METHOD = "BANK_TRANSFER"
CURRENCY_NAMES: dict[str, str] = {
    "CAD": "Canadian Dollar",
    "USD": "US Dollar",
    "EUR": "Euro",
    "GBP": "Pound Sterling",
}
# Country Sage serves a business from, by base currency (the `country` sent back to the callback).
BUSINESS_COUNTRY: dict[str, str] = {"CAD": "ca", "GBP": "gb", "EUR": "ie", "USD": "us"}


@dataclass(frozen=True)
class SageError:
    """One element of Sage's error array."""

    data_code: str
    message: str
    source: str = ""
    severity: str = "error"

    def wire(self) -> dict[str, str]:
        return {
            "$severity": self.severity,
            "$dataCode": self.data_code,
            "$message": self.message,
            "$source": self.source,
        }


class SageValidationError(Exception):
    """A write Sage refuses with 422 and an error array."""

    def __init__(self, errors: list[SageError]) -> None:
        super().__init__("; ".join(f"{error.source}: {error.message}" for error in errors))
        self.errors = errors


class IdFactory:
    """Sage-looking ids (32 lowercase hex digits) from a seeded generator, so runs are repeatable."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def new(self) -> str:
        return f"{self._rng.getrandbits(128):032x}"


# --------------------------------------------------------------------------------------------------
# Entities
# --------------------------------------------------------------------------------------------------


@dataclass
class Contact:
    id: str
    contact_type: str  # VENDOR or CUSTOMER
    name: str
    reference: str
    email: str | None
    address: Address | None
    currency: str
    tax_number: str | None
    bank_account_number: str | None
    sort_code: str | None
    iban: str | None
    telephone: str | None
    mobile: str | None
    notes: str | None
    contact_person: str | None
    is_active: bool
    created_at: datetime
    updated_at: datetime
    address_id: str
    person_id: str
    deleted_at: datetime | None = None


@dataclass
class InvoiceLine:
    id: str
    description: str
    ledger_account_id: str
    net_amount: Decimal
    tax_amount: Decimal

    @property
    def total_amount(self) -> Decimal:
        return self.net_amount + self.tax_amount


@dataclass
class InvoiceAllocation:
    """A payment applied to an invoice, as listed in its `payments_allocations`."""

    payment_id: str
    date: date
    reference: str | None
    amount: Decimal
    discount: Decimal


@dataclass
class PurchaseInvoice:
    id: str
    transaction_id: str
    contact_id: str
    contact_name: str
    contact_reference: str
    date: date
    due_date: Day | None
    reference: str | None
    vendor_reference: str | None
    notes: str | None
    currency: str
    base_rate: Decimal  # base currency per one unit of `currency`
    lines: list[InvoiceLine]
    total_paid: Decimal
    status_id: str
    created_at: datetime
    updated_at: datetime
    void_reason: str | None = None
    last_paid: Day | None = None
    deleted_at: datetime | None = None
    allocations: list[InvoiceAllocation] = field(default_factory=list)
    attachment_ids: list[str] = field(default_factory=list)

    @property
    def net_amount(self) -> Decimal:
        return sum((line.net_amount for line in self.lines), Decimal("0.00"))

    @property
    def tax_amount(self) -> Decimal:
        return sum((line.tax_amount for line in self.lines), Decimal("0.00"))

    @property
    def total_amount(self) -> Decimal:
        return self.net_amount + self.tax_amount

    @property
    def outstanding_amount(self) -> Decimal:
        if self.status_id == VOID:
            return Decimal("0.00")
        return self.total_amount - self.total_paid


@dataclass
class BankAccount:
    id: str
    name: str
    ledger_account_id: str
    account_number: str | None
    currency: str
    is_active: bool
    balance: Decimal
    nominal_code: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None


@dataclass
class LedgerAccount:
    id: str
    name: str
    nominal_code: int
    type_id: str  # OVERHEADS, BANK, CURRENT_LIABILITY
    included_in_chart: bool
    visible_in_banking: bool
    visible_in_expenses: bool
    visible_in_other_payments: bool
    is_control_account: bool
    control_name: str | None
    created_at: datetime
    updated_at: datetime


@dataclass
class Attachment:
    id: str
    file_name: str
    mime_type: str
    content: bytes
    context_type: str  # PURCHASE_INVOICE
    context_id: str
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None

    @property
    def file_extension(self) -> str:
        _, dot, extension = self.file_name.rpartition(".")
        return f".{extension.lower()}" if dot else ""


@dataclass
class PaymentAllocation:
    id: str
    invoice_id: str
    amount: Decimal
    discount: Decimal


@dataclass
class ContactPayment:
    id: str
    transaction_id: str
    transaction_type_id: str
    contact_id: str
    bank_account_id: str
    payment_method_id: str
    date: date
    total_amount: Decimal
    currency: str
    base_rate: Decimal  # base currency per one unit of `currency`
    reference: str | None
    allocations: list[PaymentAllocation]
    on_account_id: str | None
    on_account_amount: Decimal
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None
    # Matched to a bank statement line: Sage keeps a reconciled bank transaction from being deleted.
    reconciled: bool = False


@dataclass
class OtherPaymentLine:
    id: str
    ledger_account_id: str
    details: str | None
    total_amount: Decimal


@dataclass
class OtherPayment:
    id: str
    transaction_id: str
    transaction_type_id: str
    bank_account_id: str
    payment_method_id: str
    contact_id: str | None
    date: date
    total_amount: Decimal
    reference: str | None
    lines: list[OtherPaymentLine]
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None
    reconciled: bool = False


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def fit(text: str | None, limit: int) -> str | None:
    """`text` cut to Sage's field limit (Sage never holds longer values)."""
    if text is None:
        return None
    return text[:limit]


def to_second(moment: datetime) -> datetime:
    """Sage's timestamps carry whole seconds; hold them that way so filters compare what is served."""
    return moment.astimezone(UTC).replace(microsecond=0)


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def sage_exchange_rate(base_rate: Decimal) -> Decimal:
    """Sage's `exchange_rate`: units of the foreign currency per one unit of base currency.

    The ledger keeps the generator's rate the other way round (base per foreign unit, Sage's
    `inverse_exchange_rate`) so base-currency amounts agree with the other sandboxes.
    """
    return (Decimal(1) / base_rate).quantize(RATE_PLACES, rounding=ROUND_HALF_UP)


def to_base(amount: Decimal, base_rate: Decimal) -> Decimal:
    return cents(amount * base_rate)


def _contact_reference(name: str, number: int) -> str:
    letters = "".join(
        char
        for char in unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().upper()
        if char.isalpha()
    )
    prefix = (letters[:4] or "SUPP").ljust(4, "X")
    return fit(f"{prefix}{number:03d}", CONTACT_REFERENCE_MAX) or prefix


def _nominal_code(code: str, fallback: int) -> int:
    digits = "".join(char for char in code if char.isdigit())
    return int(digits[:8]) if digits else fallback


# --------------------------------------------------------------------------------------------------
# The business
# --------------------------------------------------------------------------------------------------


class Business:
    """A Sage Accounting business and its ledger. Not thread-safe: the sandbox holds a lock around it."""

    def __init__(
        self, *, business_id: str, name: str, base_currency: str, ids: IdFactory, created_at: datetime
    ) -> None:
        self.id = business_id
        self.name = name
        self.base_currency = base_currency
        self.country = BUSINESS_COUNTRY.get(base_currency, "gb")
        self.created_at = to_second(created_at)
        self._ids = ids
        self.contacts: dict[str, Contact] = {}
        self.purchase_invoices: dict[str, PurchaseInvoice] = {}
        self.bank_accounts: dict[str, BankAccount] = {}
        self.ledger_accounts: dict[str, LedgerAccount] = {}
        self.attachments: dict[str, Attachment] = {}
        self.contact_payments: dict[str, ContactPayment] = {}
        self.other_payments: dict[str, OtherPayment] = {}
        self.ids_by_key: dict[str, str] = {}  # generator key (vendor-00001, bill-00001, ...) -> Sage id

    # ---- loading ---------------------------------------------------------------------------------

    @classmethod
    def from_ledger(cls, ledger: Ledger, *, business_id: str, name: str, ids: IdFactory, now: datetime) -> Business:
        business = cls(
            business_id=business_id,
            name=name,
            base_currency=ledger.base_currency,
            ids=ids,
            created_at=now - timedelta(days=400),
        )
        # Contacts and accounts predate every generated bill (those are at most a year old).
        loaded_at = business.created_at
        account_ids = {record.key: business._load_account(record, loaded_at) for record in ledger.accounts}
        vendor_ids: dict[str, str] = {}
        for number, vendor in enumerate(ledger.vendors, start=1):
            vendor_ids[vendor.key] = business._load_vendor(vendor, number, vendor.updated_at)
        business._add_customer(loaded_at)
        for bill in ledger.bills:
            business._load_bill(bill, vendor_ids[bill.vendor_key], account_ids)
        business.ids_by_key.update(vendor_ids)
        return business

    def _load_account(self, record: AccountRecord, at: datetime) -> str:
        fallback_code = 9000 + len(self.ledger_accounts)
        if record.kind == "bank":
            ledger = LedgerAccount(
                id=self._ids.new(),
                name=record.name,
                nominal_code=_nominal_code(record.code, 1200 + len(self.bank_accounts)),
                type_id="BANK",
                included_in_chart=True,
                visible_in_banking=True,
                visible_in_expenses=False,
                visible_in_other_payments=False,
                is_control_account=False,
                control_name=None,
                created_at=at,
                updated_at=at,
            )
            self.ledger_accounts[ledger.id] = ledger
            bank = BankAccount(
                id=self._ids.new(),
                name=record.name,
                ledger_account_id=ledger.id,
                account_number=record.bank_account_number,
                currency=record.currency or self.base_currency,
                is_active=record.active,
                balance=Decimal("25000.00"),  # an opening balance, so payments visibly draw it down
                nominal_code=ledger.nominal_code,
                created_at=at,
                updated_at=at,
            )
            self.bank_accounts[bank.id] = bank
            self.ids_by_key[record.key] = bank.id
            return ledger.id
        is_payable = record.kind == "payable"
        ledger = LedgerAccount(
            id=self._ids.new(),
            name=record.name,
            nominal_code=_nominal_code(record.code, fallback_code),
            type_id="CURRENT_LIABILITY" if is_payable else "OVERHEADS",
            included_in_chart=record.active,
            visible_in_banking=False,
            visible_in_expenses=record.active and not is_payable,
            visible_in_other_payments=record.active and not is_payable,
            is_control_account=is_payable,
            control_name="purchase_ledger_control" if is_payable else None,
            created_at=at,
            updated_at=at,
        )
        self.ledger_accounts[ledger.id] = ledger
        self.ids_by_key[record.key] = ledger.id
        return ledger.id

    def _load_vendor(self, vendor: VendorRecord, number: int, at: datetime) -> str:
        contact = Contact(
            id=self._ids.new(),
            contact_type="VENDOR",
            name=fit(vendor.name, CONTACT_NAME_MAX) or "",
            reference=_contact_reference(vendor.name, number),
            email=fit(vendor.email, EMAIL_MAX),
            address=vendor.address,
            currency=vendor.currency or self.base_currency,
            tax_number=vendor.tax_id,
            bank_account_number=vendor.bank_account_number,
            sort_code=vendor.bank_routing,
            iban=vendor.iban,
            telephone=fit(vendor.phone, PERSON_FIELD_MAX),
            mobile=fit(vendor.mobile, PERSON_FIELD_MAX),
            notes=fit(vendor.notes, CONTACT_NOTES_MAX),
            contact_person=fit(vendor.contact_person, PERSON_FIELD_MAX),
            is_active=vendor.active,
            created_at=at,
            updated_at=at,
            address_id=self._ids.new(),
            person_id=self._ids.new(),
        )
        self.contacts[contact.id] = contact
        return contact.id

    def _add_customer(self, at: datetime) -> None:
        # Sage businesses hold customers too; one makes `contact_type_id=VENDOR` matter to callers.
        customer = Contact(
            id=self._ids.new(),
            contact_type="CUSTOMER",
            name=f"{self.name} - cash sales"[:CONTACT_NAME_MAX],
            reference="CASH001",
            email=None,
            address=None,
            currency=self.base_currency,
            tax_number=None,
            bank_account_number=None,
            sort_code=None,
            iban=None,
            telephone=None,
            mobile=None,
            notes=None,
            contact_person=None,
            is_active=True,
            created_at=at,
            updated_at=at,
            address_id=self._ids.new(),
            person_id=self._ids.new(),
        )
        self.contacts[customer.id] = customer

    def _load_bill(self, bill: BillRecord, contact_id: str, account_ids: Mapping[str, str]) -> None:
        contact = self.contacts[contact_id]
        updated_at = to_second(bill.updated_at)
        created_at = min(updated_at, datetime.combine(bill.issue_date, time(9, 0), tzinfo=UTC))
        lines = [
            InvoiceLine(
                id=self._ids.new(),
                description=line.description,
                ledger_account_id=account_ids[line.expense_account_key],
                net_amount=cents(line.amount),
                tax_amount=Decimal("0.00"),
            )
            for line in bill.lines
        ]
        invoice = PurchaseInvoice(
            id=self._ids.new(),
            transaction_id=self._ids.new(),
            contact_id=contact.id,
            contact_name=contact.name,
            contact_reference=contact.reference,
            date=bill.issue_date,
            due_date=bill.due_date,
            reference=None,
            vendor_reference=fit(bill.invoice_number, VENDOR_REFERENCE_MAX),
            notes=fit(bill.memo, INVOICE_NOTES_MAX),
            currency=bill.currency,
            base_rate=base_per_unit(bill.currency, self.base_currency),
            lines=lines,
            total_paid=Decimal("0.00"),
            status_id=_STATE_TO_STATUS[bill.state],
            created_at=created_at,
            updated_at=updated_at,
            void_reason="Cancelled by the supplier" if bill.state == "voided" else None,
        )
        self.purchase_invoices[invoice.id] = invoice
        self.ids_by_key[bill.key] = invoice.id
        if bill.amount_paid > 0 and bill.state in ("part_paid", "paid"):
            self._record_historic_payment(invoice, cents(bill.amount_paid), updated_at)
        if bill.state == "deleted":
            invoice.deleted_at = updated_at
        if bill.attachment is not None:
            attachment = Attachment(
                id=self._ids.new(),
                file_name=bill.attachment.file_name,
                mime_type=bill.attachment.mime_type,
                content=bill.attachment.content,
                context_type="PURCHASE_INVOICE",
                context_id=invoice.id,
                created_at=created_at,
                updated_at=created_at,
                deleted_at=invoice.deleted_at,
            )
            self.attachments[attachment.id] = attachment
            self.ids_by_key[bill.attachment.key] = attachment.id
            invoice.attachment_ids.append(attachment.id)

    def _record_historic_payment(self, invoice: PurchaseInvoice, amount: Decimal, at: datetime) -> None:
        """The payment behind a generated part-paid or paid bill, as someone recorded it in Sage."""
        bank = self.bank_for(invoice.currency)
        paid_on = min(invoice.date + timedelta(days=7), at.date())
        self._commit_vendor_payment(
            contact_id=invoice.contact_id,
            bank=bank,
            payment_method_id=DEFAULT_PAYMENT_METHOD,
            paid_on=paid_on,
            currency=invoice.currency,
            base_rate=invoice.base_rate,
            total=amount,
            reference=f"PMT-{len(self.contact_payments) + 1:05d}",
            allocations=[(invoice, amount, Decimal("0.00"))],
            now=at,
            keep_invoice_timestamps=True,
        )

    # ---- look-ups --------------------------------------------------------------------------------

    def live_invoice(self, invoice_id: str) -> PurchaseInvoice | None:
        invoice = self.purchase_invoices.get(invoice_id)
        return invoice if invoice is not None and invoice.deleted_at is None else None

    def live_contact(self, contact_id: str) -> Contact | None:
        contact = self.contacts.get(contact_id)
        return contact if contact is not None and contact.deleted_at is None else None

    def bank_for(self, currency: str) -> BankAccount:
        """The first active bank account in `currency`, else in base currency."""
        for wanted in (currency, self.base_currency):
            for bank in self.bank_accounts.values():
                if bank.is_active and bank.deleted_at is None and bank.currency == wanted:
                    return bank
        raise ValueError(f"business {self.id} has no active bank account in {currency} or base currency")

    def contact_balances(self) -> dict[str, Decimal]:
        """What the business owes each contact: the outstanding amounts of its live invoices."""
        balances: dict[str, Decimal] = {}
        for invoice in self.purchase_invoices.values():
            if invoice.deleted_at is None:
                balances[invoice.contact_id] = balances.get(invoice.contact_id, ZERO) + invoice.outstanding_amount
        return balances

    # ---- contact payments ------------------------------------------------------------------------

    def post_contact_payment(self, fields: Mapping[str, Any], now: datetime) -> ContactPayment:
        """POST /contact_payments for a VENDOR_PAYMENT; raises SageValidationError with Sage's errors."""
        errors: list[SageError] = []
        required = ("transaction_type_id", "contact_id", "bank_account_id", "date", "total_amount")
        for name in required:
            if fields.get(name) in (None, ""):
                errors.append(SageError("RecordInvalid", "can't be blank", name))
        if errors:
            raise SageValidationError(errors)
        if str(fields["transaction_type_id"]) != VENDOR_PAYMENT:
            # The sandbox ledger holds purchase invoices only, so vendor payments are what it can book.
            errors.append(SageError("RecordInvalid", "is not a valid transaction type", "transaction_type_id"))
        contact = self.live_contact(str(fields["contact_id"]))
        if contact is None or contact.contact_type != "VENDOR":
            errors.append(SageError("RecordInvalid", "Couldn't find Supplier.", "contact_id"))
        bank = self._usable_bank(fields["bank_account_id"], errors)
        paid_on = _parse_date(fields["date"], "date", errors)
        total = _parse_amount(fields["total_amount"], "total_amount", errors)
        reference = _optional_text(fields.get("reference"), "reference", PAYMENT_REFERENCE_MAX, errors)
        method_id = self._payment_method(fields.get("payment_method_id"), errors)
        if errors or contact is None or bank is None or paid_on is None or total is None:
            raise SageValidationError(errors)

        currency = str(fields.get("currency_id") or contact.currency or self.base_currency)
        base_rate = self._payment_rate(fields, currency, bank, errors)
        allocations = self._parse_allocations(fields.get("allocated_artefacts"), contact, currency, errors)
        if sum((amount for _, amount, _ in allocations), Decimal("0.00")) > total:
            errors.append(SageError("RecordInvalid", "The allocated amounts exceed the payment total", "total_amount"))
        if errors:
            raise SageValidationError(errors)
        return self._commit_vendor_payment(
            contact_id=contact.id,
            bank=bank,
            payment_method_id=method_id,
            paid_on=paid_on,
            currency=currency,
            base_rate=base_rate,
            total=total,
            reference=reference,
            allocations=allocations,
            now=now,
        )

    def _usable_bank(self, raw_id: object, errors: list[SageError]) -> BankAccount | None:
        bank = self.bank_accounts.get(str(raw_id))
        if bank is None or bank.deleted_at is not None:
            errors.append(SageError("RecordInvalid", "Couldn't find BankAccount.", "bank_account_id"))
            return None
        if not bank.is_active:
            errors.append(SageError("RecordInvalid", "The bank account is inactive", "bank_account_id"))
            return None
        return bank

    @staticmethod
    def _payment_method(raw_id: object, errors: list[SageError]) -> str:
        method_id = str(raw_id or DEFAULT_PAYMENT_METHOD)
        if method_id not in PAYMENT_METHODS:
            errors.append(SageError("RecordInvalid", "Couldn't find PaymentMethod.", "payment_method_id"))
        return method_id

    def _payment_rate(
        self, fields: Mapping[str, Any], currency: str, bank: BankAccount, errors: list[SageError]
    ) -> Decimal:
        """Base currency per payment-currency unit; the bank account must hold that or base currency."""
        if currency not in CURRENCY_NAMES:
            errors.append(SageError("RecordInvalid", "Couldn't find Currency.", "currency_id"))
            return Decimal(1)
        if bank.currency not in (currency, self.base_currency):
            errors.append(
                SageError(
                    "RecordInvalid",
                    f"The bank account currency ({bank.currency}) does not match the payment currency ({currency})",
                    "bank_account_id",
                )
            )
        if fields.get("exchange_rate") not in (None, ""):
            given = _parse_rate(fields["exchange_rate"], errors)
            if given is not None:
                return Decimal(1) / given  # Sage's rate is foreign units per base unit
        return base_per_unit(currency, self.base_currency)

    def _parse_allocations(
        self, raw: object, contact: Contact, currency: str, errors: list[SageError]
    ) -> list[tuple[PurchaseInvoice, Decimal, Decimal]]:
        if raw in (None, ""):
            return []
        if not isinstance(raw, list):
            errors.append(SageError("RecordInvalid", "must be an array", "allocated_artefacts"))
            return []
        result: list[tuple[PurchaseInvoice, Decimal, Decimal]] = []
        seen: set[str] = set()
        # Sage names nested fields without an index (S-IDEM example: "line_items.tax_rate_id").
        source = "allocated_artefacts"
        for item in raw:
            if not isinstance(item, Mapping):
                errors.append(SageError("RecordInvalid", "must be an object", source))
                continue
            invoice = self.live_invoice(str(item.get("artefact_id") or ""))
            amount = _parse_amount(item.get("amount"), f"{source}.amount", errors)
            discount = _parse_amount(item.get("discount", 0), f"{source}.discount", errors, allow_zero=True)
            if invoice is None or invoice.contact_id != contact.id:
                errors.append(
                    SageError(
                        "RecordInvalid", f"Couldn't find Artefact {item.get('artefact_id')}.", f"{source}.artefact_id"
                    )
                )
                continue
            if invoice.id in seen:
                errors.append(SageError("RecordInvalid", "is allocated twice", f"{source}.artefact_id"))
                continue
            seen.add(invoice.id)
            if invoice.status_id not in PAYABLE_STATUSES:
                errors.append(
                    SageError(
                        "RecordInvalid",
                        f"Artefact {invoice.id} cannot be paid as its status is {ARTEFACT_STATUSES[invoice.status_id]}",
                        f"{source}.artefact_id",
                    )
                )
                continue
            if invoice.currency != currency:
                errors.append(
                    SageError(
                        "RecordInvalid",
                        f"The artefact currency ({invoice.currency}) does not match the payment currency",
                        f"{source}.artefact_id",
                    )
                )
                continue
            if amount is None or discount is None:
                continue
            if amount + discount > invoice.outstanding_amount:
                errors.append(
                    SageError(
                        "RecordInvalid",
                        f"The amount ({amount + discount}) exceeds the outstanding amount of artefact "
                        f"{invoice.id} ({invoice.outstanding_amount})",
                        f"{source}.amount",
                    )
                )
                continue
            result.append((invoice, amount, discount))
        return result

    def _commit_vendor_payment(
        self,
        *,
        contact_id: str,
        bank: BankAccount,
        payment_method_id: str,
        paid_on: date,
        currency: str,
        base_rate: Decimal,
        total: Decimal,
        reference: str | None,
        allocations: list[tuple[PurchaseInvoice, Decimal, Decimal]],
        now: datetime,
        keep_invoice_timestamps: bool = False,
    ) -> ContactPayment:
        stamp = to_second(now)
        payment_id = self._ids.new()
        records: list[PaymentAllocation] = []
        for invoice, amount, discount in allocations:
            records.append(PaymentAllocation(self._ids.new(), invoice.id, amount, discount))
            invoice.total_paid += amount + discount
            invoice.status_id = PAID if invoice.outstanding_amount == 0 else PART_PAID
            invoice.last_paid = paid_on if invoice.last_paid is None else max(invoice.last_paid, paid_on)
            invoice.allocations.append(InvoiceAllocation(payment_id, paid_on, reference, amount, discount))
            if not keep_invoice_timestamps:
                invoice.updated_at = stamp
        # An unallocated remainder becomes a payment on account (S-PAY).
        on_account = total - sum((amount for _, amount, _ in allocations), Decimal("0.00"))
        payment = ContactPayment(
            id=payment_id,
            transaction_id=self._ids.new(),
            transaction_type_id=VENDOR_PAYMENT,
            contact_id=contact_id,
            bank_account_id=bank.id,
            payment_method_id=payment_method_id,
            date=paid_on,
            total_amount=total,
            currency=currency,
            base_rate=base_rate,
            reference=reference,
            allocations=records,
            on_account_id=self._ids.new() if on_account > 0 else None,
            on_account_amount=on_account,
            created_at=stamp,
            updated_at=stamp,
        )
        self.contact_payments[payment.id] = payment
        bank.balance -= total if bank.currency == currency else to_base(total, base_rate)
        return payment

    # ---- other payments --------------------------------------------------------------------------

    def post_other_payment(self, fields: Mapping[str, Any], now: datetime) -> OtherPayment:
        """POST /other_payments (e.g. a bank fee booked to an expense ledger account)."""
        errors: list[SageError] = []
        # The Swagger does not list bank_account_id as required, but a payment leaves a bank account.
        for name in ("transaction_type_id", "date", "total_amount", "payment_lines", "bank_account_id"):
            if fields.get(name) in (None, "", []):
                errors.append(SageError("RecordInvalid", "can't be blank", name))
        if errors:
            raise SageValidationError(errors)
        type_id = str(fields["transaction_type_id"])
        if type_id not in (OTHER_PAYMENT, OTHER_RECEIPT):
            errors.append(SageError("RecordInvalid", "is not a valid transaction type", "transaction_type_id"))
        bank = self._usable_bank(fields["bank_account_id"], errors)
        contact_id = fields.get("contact_id")
        if contact_id not in (None, "") and self.live_contact(str(contact_id)) is None:
            errors.append(SageError("RecordInvalid", "Couldn't find Contact.", "contact_id"))
        paid_on = _parse_date(fields["date"], "date", errors)
        total = _parse_amount(fields["total_amount"], "total_amount", errors)
        reference = _optional_text(fields.get("reference"), "reference", PAYMENT_REFERENCE_MAX, errors)
        method_id = self._payment_method(fields.get("payment_method_id"), errors)
        lines = self._parse_payment_lines(fields["payment_lines"], errors)
        lines_total = sum((line.total_amount for line in lines), Decimal("0.00"))
        if total is not None and not errors and lines_total != total:
            errors.append(
                SageError(
                    "RecordInvalid",
                    f"The payment lines total ({lines_total}) does not match total_amount ({total})",
                    "total_amount",
                )
            )
        if errors or bank is None or paid_on is None or total is None:
            raise SageValidationError(errors)
        stamp = to_second(now)
        payment = OtherPayment(
            id=self._ids.new(),
            transaction_id=self._ids.new(),
            transaction_type_id=type_id,
            bank_account_id=bank.id,
            payment_method_id=method_id,
            contact_id=str(contact_id) if contact_id not in (None, "") else None,
            date=paid_on,
            total_amount=total,
            reference=reference,
            lines=lines,
            created_at=stamp,
            updated_at=stamp,
        )
        self.other_payments[payment.id] = payment
        bank.balance += -total if type_id == OTHER_PAYMENT else total
        return payment

    def _parse_payment_lines(self, raw: object, errors: list[SageError]) -> list[OtherPaymentLine]:
        if not isinstance(raw, list):
            errors.append(SageError("RecordInvalid", "must be an array", "payment_lines"))
            return []
        lines: list[OtherPaymentLine] = []
        source = "payment_lines"
        for item in raw:
            if not isinstance(item, Mapping):
                errors.append(SageError("RecordInvalid", "must be an object", source))
                continue
            account = self.ledger_accounts.get(str(item.get("ledger_account_id") or ""))
            if account is None:
                errors.append(SageError("RecordInvalid", "Couldn't find LedgerAccount.", f"{source}.ledger_account_id"))
            elif not account.visible_in_other_payments:
                errors.append(
                    SageError(
                        "RecordInvalid",
                        "The ledger account is not available for other payments",
                        f"{source}.ledger_account_id",
                    )
                )
            amount = _parse_amount(item.get("total_amount"), f"{source}.total_amount", errors)
            details = _optional_text(item.get("details"), f"{source}.details", 255, errors)
            if account is not None and amount is not None:
                lines.append(OtherPaymentLine(self._ids.new(), account.id, details, amount))
        return lines

    # ---- changes made "in Sage" by someone else --------------------------------------------------

    # ---- deletes (a payment reversed) -----------------------------------------------------------

    def reconcile(self, payment_id: str) -> None:
        """A contact or other payment matched to the bank statement: it can no longer be deleted."""
        payment = self.contact_payments.get(payment_id) or self.other_payments.get(payment_id)
        if payment is None:
            raise KeyError(f"no payment {payment_id}")
        payment.reconciled = True

    def delete_contact_payment(self, payment_id: str, now: datetime) -> None:
        """DELETE /contact_payments/{key} (204): the invoices it paid owe that amount again."""
        payment = self.contact_payments[payment_id]
        _refuse_if_reconciled(payment.reconciled, "contact payment")
        stamp = to_second(now)
        for allocation in payment.allocations:
            invoice = self.purchase_invoices[allocation.invoice_id]
            invoice.total_paid -= allocation.amount + allocation.discount
            invoice.allocations = [a for a in invoice.allocations if a.payment_id != payment.id]
            invoice.status_id = UNPAID if invoice.total_paid == 0 else PART_PAID
            invoice.last_paid = max((a.date for a in invoice.allocations), default=None)
            invoice.updated_at = stamp
        bank = self.bank_accounts[payment.bank_account_id]
        bank.balance += (
            payment.total_amount
            if bank.currency == payment.currency
            else to_base(payment.total_amount, payment.base_rate)
        )
        payment.deleted_at = stamp
        payment.updated_at = stamp

    def delete_other_payment(self, payment_id: str, now: datetime) -> None:
        """DELETE /other_payments/{key} (204): the money is back in the bank account."""
        payment = self.other_payments[payment_id]
        _refuse_if_reconciled(payment.reconciled, "other payment")
        stamp = to_second(now)
        bank = self.bank_accounts[payment.bank_account_id]
        bank.balance += payment.total_amount if payment.transaction_type_id == OTHER_PAYMENT else -payment.total_amount
        payment.deleted_at = stamp
        payment.updated_at = stamp

    def pay_elsewhere(self, invoice_id: str, amount: Decimal | None, now: datetime) -> ContactPayment:
        invoice = self._payable_invoice(invoice_id)
        paid = cents(amount) if amount is not None else invoice.outstanding_amount
        if paid <= 0 or paid > invoice.outstanding_amount:
            raise ValueError(f"amount must be in (0, {invoice.outstanding_amount}], got {paid}")
        return self._commit_vendor_payment(
            contact_id=invoice.contact_id,
            bank=self.bank_for(invoice.currency),
            payment_method_id=DEFAULT_PAYMENT_METHOD,
            paid_on=now.date(),
            currency=invoice.currency,
            base_rate=invoice.base_rate,
            total=paid,
            reference="Paid in Sage",
            allocations=[(invoice, paid, Decimal("0.00"))],
            now=now,
        )

    def change_invoice_total(self, invoice_id: str, new_total: Decimal, now: datetime) -> PurchaseInvoice:
        invoice = self._existing_invoice(invoice_id)
        new_total = cents(new_total)
        if new_total < invoice.total_paid or new_total <= 0:
            raise ValueError(f"new total {new_total} is below what is already paid ({invoice.total_paid})")
        # The difference lands on the last line, as an edit in Sage's invoice form would.
        last = invoice.lines[-1]
        last.net_amount += new_total - invoice.total_amount
        if invoice.status_id in (UNPAID, PART_PAID, PAID):
            if invoice.outstanding_amount == 0:
                invoice.status_id = PAID
            else:
                invoice.status_id = PART_PAID if invoice.total_paid > 0 else UNPAID
        invoice.updated_at = to_second(now)
        return invoice

    def void_invoice(self, invoice_id: str, now: datetime, reason: str = "Voided in Sage") -> None:
        invoice = self._existing_invoice(invoice_id)
        if invoice.total_paid > 0:
            raise ValueError("Sage voids an invoice only once its payments are removed")
        invoice.status_id = VOID
        invoice.void_reason = reason
        invoice.updated_at = to_second(now)

    def delete_invoice(self, invoice_id: str, now: datetime) -> None:
        invoice = self._existing_invoice(invoice_id)
        if invoice.total_paid > 0:
            raise ValueError("Sage deletes an invoice only once its payments are removed")
        stamp = to_second(now)
        invoice.deleted_at = stamp
        invoice.updated_at = stamp
        for attachment_id in invoice.attachment_ids:
            self.attachments[attachment_id].deleted_at = stamp

    def edit_contact(self, contact_id: str, changes: Mapping[str, Any], now: datetime) -> Contact:
        """Apply generator-named vendor fields (name, email, address, active, phone, ...) to a contact."""
        contact = self.live_contact(contact_id)
        if contact is None:
            raise KeyError(f"no contact {contact_id} in business {self.id}")
        setters = {
            "name": lambda value: setattr(contact, "name", fit(str(value), CONTACT_NAME_MAX)),
            "email": lambda value: setattr(contact, "email", fit(_text_or_none(value), EMAIL_MAX)),
            "address": lambda value: setattr(contact, "address", _address(value)),
            "currency": lambda value: setattr(contact, "currency", str(value)),
            "tax_id": lambda value: setattr(contact, "tax_number", _text_or_none(value)),
            "bank_account_number": lambda value: setattr(contact, "bank_account_number", _text_or_none(value)),
            "bank_routing": lambda value: setattr(contact, "sort_code", _text_or_none(value)),
            "iban": lambda value: setattr(contact, "iban", _text_or_none(value)),
            "phone": lambda value: setattr(contact, "telephone", fit(_text_or_none(value), PERSON_FIELD_MAX)),
            "mobile": lambda value: setattr(contact, "mobile", fit(_text_or_none(value), PERSON_FIELD_MAX)),
            "notes": lambda value: setattr(contact, "notes", fit(_text_or_none(value), CONTACT_NOTES_MAX)),
            "contact_person": lambda value: setattr(
                contact, "contact_person", fit(_text_or_none(value), PERSON_FIELD_MAX)
            ),
            "active": lambda value: setattr(contact, "is_active", bool(value)),
        }
        unknown = sorted(set(changes) - set(setters))
        if unknown:
            raise ValueError(f"cannot edit {unknown}; editable: {sorted(setters)}")
        for name, value in changes.items():
            setters[name](value)
        contact.updated_at = to_second(now)
        return contact

    def _existing_invoice(self, invoice_id: str) -> PurchaseInvoice:
        invoice = self.live_invoice(invoice_id)
        if invoice is None:
            raise KeyError(f"no purchase invoice {invoice_id} in business {self.id}")
        return invoice

    def _payable_invoice(self, invoice_id: str) -> PurchaseInvoice:
        invoice = self._existing_invoice(invoice_id)
        if invoice.status_id not in PAYABLE_STATUSES:
            raise ValueError(f"purchase invoice {invoice_id} is {invoice.status_id}, not payable")
        return invoice


# --------------------------------------------------------------------------------------------------
# Field parsing (request bodies)
# --------------------------------------------------------------------------------------------------


def _parse_date(raw: object, source: str, errors: list[SageError]) -> date | None:
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        errors.append(SageError("RecordInvalid", "is not a valid date", source))
        return None


def _parse_amount(raw: object, source: str, errors: list[SageError], *, allow_zero: bool = False) -> Decimal | None:
    if raw is None or isinstance(raw, bool):
        errors.append(SageError("RecordInvalid", "can't be blank", source))
        return None
    try:
        amount = Decimal(str(raw))
    except InvalidOperation:
        errors.append(SageError("RecordInvalid", "is not a number", source))
        return None
    if not amount.is_finite() or amount != amount.quantize(CENT):
        errors.append(SageError("RecordInvalid", "must have at most 2 decimal places", source))
        return None
    if amount < 0 or (amount == 0 and not allow_zero):
        errors.append(SageError("RecordInvalid", "must be greater than 0", source))
        return None
    return cents(amount)


def _parse_rate(raw: object, errors: list[SageError]) -> Decimal | None:
    try:
        rate = Decimal(str(raw))
    except InvalidOperation:
        rate = Decimal(0)
    if not rate.is_finite() or rate <= 0:
        errors.append(SageError("RecordInvalid", "must be greater than 0", "exchange_rate"))
        return None
    return rate.quantize(RATE_PLACES, rounding=ROUND_HALF_UP)


def _optional_text(raw: object, source: str, limit: int, errors: list[SageError]) -> str | None:
    if raw in (None, ""):
        return None
    text = str(raw)
    if len(text) > limit:
        errors.append(SageError("RecordInvalid", f"is too long (maximum is {limit} characters)", source))
        return None
    return text


def _text_or_none(value: object) -> str | None:
    return None if value in (None, "") else str(value)


def _address(value: object) -> Address | None:
    if value is None or isinstance(value, Address):
        return value
    if isinstance(value, Mapping):
        return Address(
            line1=str(value["line1"]),
            line2=_text_or_none(value.get("line2")),
            city=str(value["city"]),
            region=_text_or_none(value.get("region")),
            postal_code=_text_or_none(value.get("postal_code")),
            country=str(value["country"]),
        )
    raise ValueError("address must be an Address, a mapping of its fields, or None")


def _refuse_if_reconciled(reconciled: bool, what: str) -> None:
    if reconciled:
        # Choice: Sage's exact wording for this refusal was not found; its 422 error array shape is used.
        raise SageValidationError(
            [SageError("RecordInvalid", f"This {what} has been reconciled and cannot be deleted.", "base")]
        )
