"""One Xero organisation's books: contacts, bills (ACCPAY invoices), accounts, payments, bank transactions.

Loaded from the generator's provider-neutral ledger and changed by the API (payments, bank
transactions) and by the test controls (paid elsewhere, amount changed, voided, deleted, vendor
edited). Knows nothing about HTTP; `wire.py` turns these records into Xero's JSON.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from local.sandboxes.core import Clock
from local.sandboxes.generator import (
    AccountRecord,
    Address,
    AttachmentRecord,
    BillRecord,
    Ledger,
    VendorRecord,
    exchange_rate,
)
from local.sandboxes.xero.query import FieldKind, FieldValue

CENT = Decimal("0.01")
RATE_PLACES = Decimal("0.000001")

_BILL_STATUS = {
    "open": "AUTHORISED",
    "part_paid": "AUTHORISED",
    "paid": "PAID",
    "voided": "VOIDED",
    "deleted": "DELETED",
    "draft": "DRAFT",
}


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def currency_rate(currency: str, base_currency: str) -> Decimal:
    """Xero's CurrencyRate for a document in `currency`: units of it per one unit of base currency.

    Built on the generator's fixed table so every sandbox converts alike.
    """
    if currency == base_currency:
        return Decimal("1.000000")
    return (1 / exchange_rate(currency, base_currency)).quantize(RATE_PLACES, rounding=ROUND_HALF_UP)


def currency_rate_on(currency: str, base_currency: str, day: date) -> Decimal:
    """Xero's daily rate for `day` (it uses a daily XE.com feed): the sandbox moves the fixed table rate
    by up to 1.5% with the day, so a payment dated unlike its bill converts at another rate, as at Xero."""
    if currency == base_currency:
        return Decimal("1.000000")
    drift = Decimal((day.toordinal() % 31) - 15) / Decimal(1000)
    return (currency_rate(currency, base_currency) * (1 + drift)).quantize(RATE_PLACES, rounding=ROUND_HALF_UP)


def currencies(org: Organisation) -> list[str]:
    """The organisation's currencies: its base currency first, then those its accounts and bills use."""
    used = {account.currency for account in org.accounts.values()} | {i.currency for i in org.invoices.values()}
    return [org.base_currency, *sorted(used - {org.base_currency})]


def to_millis(moment: datetime) -> datetime:
    """Xero keeps UpdatedDateUTC to the millisecond."""
    return moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)


class LedgerError(ValueError):
    """A control-surface change Xero itself would not allow (e.g. deleting an AUTHORISED bill)."""


# ---- records ------------------------------------------------------------------------------------


@dataclass
class Attachment:
    attachment_id: str
    file_name: str
    mime_type: str
    content: bytes


@dataclass
class LineItem:
    line_item_id: str
    description: str
    quantity: Decimal
    unit_amount: Decimal
    account_code: str

    @property
    def line_amount(self) -> Decimal:
        return money(self.quantity * self.unit_amount)


@dataclass
class Contact:
    contact_id: str
    vendor: VendorRecord
    updated_at: datetime

    @property
    def status(self) -> str:
        return "ACTIVE" if self.vendor.active else "ARCHIVED"


@dataclass
class Invoice:
    invoice_id: str
    contact_id: str
    invoice_number: str | None
    currency: str
    currency_rate: Decimal
    issue_date: date
    due_date: date | None
    status: str
    line_items: list[LineItem]
    amount_paid: Decimal
    updated_at: datetime
    attachment: Attachment | None = None
    fully_paid_on: date | None = None
    payment_ids: list[str] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return money(sum((line.line_amount for line in self.line_items), Decimal("0")))

    @property
    def amount_due(self) -> Decimal:
        # A voided or deleted bill owes nothing (Xero shows AmountDue 0.00 on them).
        if self.status in ("VOIDED", "DELETED"):
            return Decimal("0.00")
        return money(self.total - self.amount_paid)


@dataclass
class Account:
    account_id: str
    code: str
    name: str
    type: str
    account_class: str
    status: str
    currency: str
    bank_account_number: str | None
    system_account: str | None
    updated_at: datetime
    enable_payments_to_account: bool = False

    @property
    def takes_payments(self) -> bool:
        return self.status == "ACTIVE" and (self.type == "BANK" or self.enable_payments_to_account)


@dataclass
class Payment:
    payment_id: str
    invoice_id: str
    account_id: str
    payment_date: date
    amount: Decimal
    bank_amount: Decimal
    currency_rate: Decimal
    reference: str
    is_reconciled: bool
    updated_at: datetime
    status: str = "AUTHORISED"


@dataclass
class BankTransaction:
    bank_transaction_id: str
    type: str
    contact_id: str
    bank_account_id: str
    transaction_date: date
    reference: str
    currency: str
    currency_rate: Decimal
    line_amount_types: str
    line_items: list[LineItem]
    is_reconciled: bool
    updated_at: datetime
    status: str = "AUTHORISED"

    @property
    def total(self) -> Decimal:
        return money(sum((line.line_amount for line in self.line_items), Decimal("0")))


# ---- where/order fields -------------------------------------------------------------------------

INVOICE_FIELDS: dict[str, FieldKind] = {
    "Type": "string",
    "Status": "string",
    "InvoiceID": "guid",
    "InvoiceNumber": "string",
    "Contact.ContactID": "guid",
    "Contact.Name": "string",
    "CurrencyCode": "string",
    "Date": "date",
    "DueDate": "date",
    "UpdatedDateUTC": "datetime",
    "Total": "number",
    "AmountDue": "number",
    "AmountPaid": "number",
    "HasAttachments": "bool",
}
CONTACT_FIELDS: dict[str, FieldKind] = {
    "ContactID": "guid",
    "Name": "string",
    "EmailAddress": "string",
    "ContactStatus": "string",
    "IsSupplier": "bool",
    "IsCustomer": "bool",
    "DefaultCurrency": "string",
    "UpdatedDateUTC": "datetime",
}
ACCOUNT_FIELDS: dict[str, FieldKind] = {
    "AccountID": "guid",
    "Code": "string",
    "Name": "string",
    "Type": "string",
    "Class": "string",
    "Status": "string",
    "CurrencyCode": "string",
    "BankAccountType": "string",
    "EnablePaymentsToAccount": "bool",
    "UpdatedDateUTC": "datetime",
}
PAYMENT_FIELDS: dict[str, FieldKind] = {
    "PaymentID": "guid",
    "Invoice.InvoiceID": "guid",
    "Invoice.InvoiceNumber": "string",
    "Account.AccountID": "guid",
    "Account.Code": "string",
    "Reference": "string",
    "Status": "string",
    "PaymentType": "string",
    "Amount": "number",
    "Date": "date",
    "IsReconciled": "bool",
    "UpdatedDateUTC": "datetime",
}
BANK_TRANSACTION_FIELDS: dict[str, FieldKind] = {
    "BankTransactionID": "guid",
    "Type": "string",
    "Status": "string",
    "Reference": "string",
    "BankAccount.AccountID": "guid",
    "BankAccount.Code": "string",
    "Contact.ContactID": "guid",
    "Date": "date",
    "Total": "number",
    "IsReconciled": "bool",
    "UpdatedDateUTC": "datetime",
}


# ---- plans (validated writes, not yet committed) --------------------------------------------------


@dataclass(frozen=True)
class PaymentPlan:
    invoice: Invoice
    account: Account
    payment_date: date
    amount: Decimal
    bank_amount: Decimal
    currency_rate: Decimal
    reference: str
    is_reconciled: bool


@dataclass(frozen=True)
class BankTransactionPlan:
    type: str
    contact: Contact
    bank_account: Account
    transaction_date: date
    reference: str
    currency_rate: Decimal
    line_amount_types: str
    lines: tuple[tuple[str, Decimal, Decimal, str], ...]  # description, quantity, unit amount, code
    is_reconciled: bool


ChangeListener = Callable[[str, str, str], None]  # (event category, event type, resource id)
IdSource = Callable[[], str]


class Organisation:
    """A Xero organisation (tenant). Callers hold `lock` around reads that must be consistent."""

    def __init__(self, *, tenant_id: str, name: str, base_currency: str, clock: Clock, new_id: IdSource) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.base_currency = base_currency
        self.created_at = to_millis(clock.now())
        self.lock = threading.RLock()
        self.contacts: dict[str, Contact] = {}
        self.invoices: dict[str, Invoice] = {}
        self.accounts: dict[str, Account] = {}
        self.payments: dict[str, Payment] = {}
        self.bank_transactions: dict[str, BankTransaction] = {}
        self.contact_ids: dict[str, str] = {}  # generator vendor key -> ContactID
        self.invoice_ids: dict[str, str] = {}  # generator bill key -> InvoiceID
        self.account_ids: dict[str, str] = {}  # generator account key -> AccountID
        self.listeners: list[ChangeListener] = []
        self._clock = clock
        self._new_id = new_id

    # ---- loading ----------------------------------------------------------------------------

    @classmethod
    def from_ledger(
        cls, ledger: Ledger, *, tenant_id: str, name: str | None, clock: Clock, new_id: IdSource
    ) -> Organisation:
        org = cls(
            tenant_id=tenant_id,
            name=name or ledger.company_name,
            base_currency=ledger.base_currency,
            clock=clock,
            new_id=new_id,
        )
        first_update = min((bill.updated_at for bill in ledger.bills), default=clock.now())
        for account in ledger.accounts:
            org._load_account(account, first_update)
        for vendor in ledger.vendors:
            org._load_vendor(vendor, vendor.updated_at)
        for bill in ledger.bills:
            org._load_bill(bill)
        return org

    def _load_account(self, record: AccountRecord, updated_at: datetime) -> None:
        kind = {
            "bank": ("BANK", "ASSET", None),
            "expense": ("EXPENSE", "EXPENSE", None),
            "payable": ("CURRLIAB", "LIABILITY", "CREDITORS"),
        }[record.kind]
        account = Account(
            account_id=self._new_id(),
            code=record.code,
            name=record.name,
            type=kind[0],
            account_class=kind[1],
            status="ACTIVE" if record.active else "ARCHIVED",
            currency=record.currency,
            bank_account_number=record.bank_account_number,
            system_account=kind[2],
            updated_at=to_millis(updated_at),
        )
        self.accounts[account.account_id] = account
        self.account_ids[record.key] = account.account_id

    def _load_vendor(self, vendor: VendorRecord, updated_at: datetime) -> Contact:
        contact = Contact(contact_id=self._new_id(), vendor=vendor, updated_at=to_millis(updated_at))
        self.contacts[contact.contact_id] = contact
        self.contact_ids[vendor.key] = contact.contact_id
        return contact

    def _load_bill(self, bill: BillRecord) -> Invoice:
        status = _BILL_STATUS[bill.state]
        lines = [
            LineItem(
                line_item_id=self._new_id(),
                description=line.description,
                quantity=Decimal("1.0000"),
                unit_amount=money(line.amount),
                account_code=self.accounts[self.account_ids[line.expense_account_key]].code,
            )
            for line in bill.lines
        ]
        # Only AUTHORISED and PAID bills can carry payments in Xero.
        paid = money(bill.amount_paid) if status in ("AUTHORISED", "PAID") else Decimal("0.00")
        invoice = Invoice(
            invoice_id=self._new_id(),
            contact_id=self.contact_ids[bill.vendor_key],
            invoice_number=bill.invoice_number,
            currency=bill.currency,
            currency_rate=currency_rate(bill.currency, self.base_currency),
            issue_date=bill.issue_date,
            due_date=bill.due_date,
            status=status,
            line_items=lines,
            amount_paid=Decimal("0.00"),
            updated_at=to_millis(bill.updated_at),
            attachment=self._attachment(bill.attachment),
        )
        if invoice.total != money(bill.total):
            raise ValueError(f"bill {bill.key}: lines add up to {invoice.total}, total says {bill.total}")
        self.invoices[invoice.invoice_id] = invoice
        self.invoice_ids[bill.key] = invoice.invoice_id
        if paid > 0:
            account = self._default_bank_account(invoice.currency)
            self._record_payment(
                self._plan_for(
                    invoice, account, amount=paid, on=invoice.issue_date, reference="", rate=invoice.currency_rate
                ),
                updated_at=invoice.updated_at,
            )
        return invoice

    def _attachment(self, record: AttachmentRecord | None) -> Attachment | None:
        if record is None:
            return None
        return Attachment(self._new_id(), record.file_name, record.mime_type, record.content)

    # ---- look-ups -----------------------------------------------------------------------------

    def contact_for(self, invoice: Invoice) -> Contact:
        return self.contacts[invoice.contact_id]

    def is_supplier(self, contact_id: str) -> bool:
        return any(invoice.contact_id == contact_id for invoice in self.invoices.values())

    def supplier_ids(self) -> set[str]:
        return {invoice.contact_id for invoice in self.invoices.values()}

    def payable_balances(self, today: date) -> dict[str, tuple[Decimal, Decimal]]:
        """Per contact: (outstanding, overdue) on AUTHORISED bills, not converted to base currency."""
        balances: dict[str, tuple[Decimal, Decimal]] = {}
        for invoice in self.invoices.values():
            if invoice.status != "AUTHORISED":
                continue
            outstanding, overdue = balances.get(invoice.contact_id, (Decimal("0.00"), Decimal("0.00")))
            due = invoice.amount_due
            late = invoice.due_date is not None and invoice.due_date < today
            balances[invoice.contact_id] = (outstanding + due, overdue + (due if late else Decimal("0")))
        return balances

    def find_account(self, reference: Mapping[str, Any]) -> Account | None:
        """An account named by `{"AccountID": ...}` or `{"Code": ...}`."""
        account_id = str(reference.get("AccountID") or "").lower()
        if account_id:
            return self.accounts.get(account_id)
        code = reference.get("Code")
        return next((a for a in self.accounts.values() if code and a.code == str(code)), None)

    def find_invoice(self, reference: Mapping[str, Any]) -> Invoice | None:
        """A bill named by `{"InvoiceID": ...}` or `{"InvoiceNumber": ...}`."""
        invoice_id = str(reference.get("InvoiceID") or "").lower()
        if invoice_id:
            return self.invoices.get(invoice_id)
        number = reference.get("InvoiceNumber")
        return next((i for i in self.invoices.values() if number and i.invoice_number == number), None)

    def _default_bank_account(self, currency: str) -> Account:
        banks = [a for a in self.accounts.values() if a.type == "BANK" and a.status == "ACTIVE"]
        for wanted in (currency, self.base_currency):
            for account in banks:
                if account.currency == wanted:
                    return account
        raise LedgerError(f"organisation {self.name!r} has no active bank account in {currency}")

    # ---- field values for where/order -----------------------------------------------------------

    def invoice_fields(self, invoice: Invoice) -> dict[str, FieldValue]:
        return {
            "Type": "ACCPAY",
            "Status": invoice.status,
            "InvoiceID": invoice.invoice_id,
            "InvoiceNumber": invoice.invoice_number,
            "Contact.ContactID": invoice.contact_id,
            "Contact.Name": self.contact_for(invoice).vendor.name,
            "CurrencyCode": invoice.currency,
            "Date": invoice.issue_date,
            "DueDate": invoice.due_date,
            "UpdatedDateUTC": invoice.updated_at,
            "Total": invoice.total,
            "AmountDue": invoice.amount_due,
            "AmountPaid": invoice.amount_paid,
            "HasAttachments": invoice.attachment is not None,
        }

    def contact_fields(self, contact: Contact, suppliers: set[str]) -> dict[str, FieldValue]:
        return {
            "ContactID": contact.contact_id,
            "Name": contact.vendor.name,
            "EmailAddress": contact.vendor.email,
            "ContactStatus": contact.status,
            "IsSupplier": contact.contact_id in suppliers,
            "IsCustomer": False,
            "DefaultCurrency": contact.vendor.currency,
            "UpdatedDateUTC": contact.updated_at,
        }

    @staticmethod
    def account_fields(account: Account) -> dict[str, FieldValue]:
        return {
            "AccountID": account.account_id,
            "Code": account.code,
            "Name": account.name,
            "Type": account.type,
            "Class": account.account_class,
            "Status": account.status,
            "CurrencyCode": account.currency,
            "BankAccountType": "BANK" if account.type == "BANK" else "",
            "EnablePaymentsToAccount": account.enable_payments_to_account,
            "UpdatedDateUTC": account.updated_at,
        }

    def payment_fields(self, payment: Payment) -> dict[str, FieldValue]:
        invoice = self.invoices[payment.invoice_id]
        return {
            "PaymentID": payment.payment_id,
            "Invoice.InvoiceID": payment.invoice_id,
            "Invoice.InvoiceNumber": invoice.invoice_number,
            "Account.AccountID": payment.account_id,
            "Account.Code": self.accounts[payment.account_id].code,
            "Reference": payment.reference,
            "Status": payment.status,
            "PaymentType": "ACCPAYPAYMENT",
            "Amount": payment.amount,
            "Date": payment.payment_date,
            "IsReconciled": payment.is_reconciled,
            "UpdatedDateUTC": payment.updated_at,
        }

    def bank_transaction_fields(self, transaction: BankTransaction) -> dict[str, FieldValue]:
        return {
            "BankTransactionID": transaction.bank_transaction_id,
            "Type": transaction.type,
            "Status": transaction.status,
            "Reference": transaction.reference,
            "BankAccount.AccountID": transaction.bank_account_id,
            "BankAccount.Code": self.accounts[transaction.bank_account_id].code,
            "Contact.ContactID": transaction.contact_id,
            "Date": transaction.transaction_date,
            "Total": transaction.total,
            "IsReconciled": transaction.is_reconciled,
            "UpdatedDateUTC": transaction.updated_at,
        }

    # ---- payments -------------------------------------------------------------------------------

    def plan_payment(self, raw: Mapping[str, Any], planned: Iterable[PaymentPlan] = ()) -> PaymentPlan | list[str]:
        """Validate one element of a Payments request; `planned` are earlier elements of the same call.

        Returns the plan, or the ValidationErrors messages. Messages Xero is known to send are used
        verbatim (amount outstanding, non-authorised document, account type); the rest are ours.
        """
        invoice, errors = self._payment_invoice(raw.get("Invoice"))
        account, account_errors = self._payment_account(raw.get("Account"))
        errors += account_errors
        amount = _decimal(raw.get("Amount"))
        if amount is None or money(amount) <= 0:
            errors.append("Payment amount must be greater than zero")
        payment_date = _date(raw.get("Date"), default=self._clock.now().date())
        if payment_date is None:
            errors.append("The payment date is not a valid date")
        if invoice is not None:
            errors += self._payable(invoice, account, amount, planned)
        if errors or invoice is None or account is None or amount is None or payment_date is None:
            return errors
        rate = _decimal(raw.get("CurrencyRate"))
        bank_amount = _decimal(raw.get("BankAmount"))
        if rate is None and bank_amount is not None and bank_amount > 0:
            rate = amount / bank_amount
        plan = self._plan_for(
            invoice,
            account,
            amount=money(amount),
            on=payment_date,
            reference=str(raw.get("Reference") or ""),
            rate=rate,
        )
        return dataclasses.replace(plan, is_reconciled=bool(raw.get("IsReconciled", False)))

    def _payment_invoice(self, reference: object) -> tuple[Invoice | None, list[str]]:
        if not isinstance(reference, Mapping):
            return None, ["An Invoice must be specified"]
        invoice = self.find_invoice(reference)
        return invoice, [] if invoice is not None else ["Invoice could not be found"]

    def _payment_account(self, reference: object) -> tuple[Account | None, list[str]]:
        if not isinstance(reference, Mapping):
            return None, ["An Account must be specified"]
        account = self.find_account(reference)
        if account is None:
            return None, ["Account could not be found"]
        if not account.takes_payments:
            return account, ["Account type is invalid for making a payment to/from"]
        return account, []

    def _payable(
        self, invoice: Invoice, account: Account | None, amount: Decimal | None, planned: Iterable[PaymentPlan]
    ) -> list[str]:
        if invoice.status != "AUTHORISED":
            return ["Payments can only be made against Authorised documents"]
        errors = []
        if amount is not None:
            already = sum((p.amount for p in planned if p.invoice is invoice), Decimal("0"))
            if money(amount) + already > invoice.amount_due:
                errors.append("Payment amount exceeds the amount outstanding on this document")
        if account is not None and account.currency not in (invoice.currency, self.base_currency):
            errors.append("The bank account currency must match the invoice currency or the base currency")
        return errors

    def _plan_for(
        self,
        invoice: Invoice,
        account: Account,
        *,
        amount: Decimal,
        on: date,
        reference: str,
        rate: Decimal | None = None,
    ) -> PaymentPlan:
        if invoice.currency == self.base_currency:
            rate = Decimal("1.000000")  # CurrencyRate only applies to foreign-currency documents
        elif rate is None or rate <= 0:
            # Without CurrencyRate Xero converts at its daily rate of the payment date, not the bill's.
            rate = currency_rate_on(invoice.currency, self.base_currency, on)
        rate = rate.quantize(RATE_PLACES, rounding=ROUND_HALF_UP)
        # Paying from a bank account in the bill's own currency moves that amount; from a base
        # currency account, the amount converted at CurrencyRate (bill units per base unit).
        bank_amount = amount if account.currency == invoice.currency else money(amount / rate)
        return PaymentPlan(invoice, account, on, amount, bank_amount, rate, reference, False)

    def record_payment(self, plan: PaymentPlan) -> Payment:
        """Commit a validated payment: the bill's AmountPaid rises, AmountDue falls, PAID when settled."""
        payment = self._record_payment(plan, updated_at=self.next_update(plan.invoice.updated_at))
        # Xero has no payment webhook and does not say a payment fires INVOICE; the bill changed, so it does here.
        self._notify("INVOICE", "UPDATE", plan.invoice.invoice_id)
        return payment

    def _record_payment(self, plan: PaymentPlan, *, updated_at: datetime) -> Payment:
        invoice = plan.invoice
        payment = Payment(
            payment_id=self._new_id(),
            invoice_id=invoice.invoice_id,
            account_id=plan.account.account_id,
            payment_date=plan.payment_date,
            amount=plan.amount,
            bank_amount=plan.bank_amount,
            currency_rate=plan.currency_rate,
            reference=plan.reference,
            is_reconciled=plan.is_reconciled,
            updated_at=updated_at,
        )
        self.payments[payment.payment_id] = payment
        invoice.payment_ids.append(payment.payment_id)
        invoice.amount_paid = money(invoice.amount_paid + plan.amount)
        invoice.updated_at = updated_at
        if invoice.amount_due == 0:
            invoice.status = "PAID"
            invoice.fully_paid_on = plan.payment_date
        return payment

    # ---- bank transactions ------------------------------------------------------------------

    def plan_bank_transaction(self, raw: Mapping[str, Any]) -> BankTransactionPlan | list[str]:
        """Validate one element of a BankTransactions request (SPEND or RECEIVE money)."""
        errors: list[str] = []
        kind = str(raw.get("Type") or "")
        if kind not in ("SPEND", "RECEIVE"):
            errors.append("Type must be SPEND or RECEIVE")
        contact_ref = raw.get("Contact")
        contact_id = str(contact_ref.get("ContactID") or "").lower() if isinstance(contact_ref, Mapping) else ""
        contact = self.contacts.get(contact_id)
        if contact is None:
            errors.append("A Contact must be specified for this type of transaction")
        bank_ref = raw.get("BankAccount")
        bank = self.find_account(bank_ref) if isinstance(bank_ref, Mapping) else None
        if bank is None:
            errors.append("A valid BankAccount must be specified")
        elif bank.type != "BANK" or bank.status != "ACTIVE":
            errors.append("The BankAccount must be an active bank account")
        currency = str(raw.get("CurrencyCode") or (bank.currency if bank else ""))
        if bank is not None and currency != bank.currency:
            errors.append("The currency of the transaction must match the currency of the bank account")
        lines, line_errors = self._plan_lines(raw.get("LineItems"))
        errors.extend(line_errors)
        transaction_date = _date(raw.get("Date"), default=self._clock.now().date())
        if transaction_date is None:
            errors.append("The date is not a valid date")
        if errors or contact is None or bank is None or transaction_date is None:
            return errors
        rate = _decimal(raw.get("CurrencyRate")) or currency_rate(bank.currency, self.base_currency)
        return BankTransactionPlan(
            type=kind,
            contact=contact,
            bank_account=bank,
            transaction_date=transaction_date,
            reference=str(raw.get("Reference") or ""),
            currency_rate=rate.quantize(RATE_PLACES, rounding=ROUND_HALF_UP),
            line_amount_types=str(raw.get("LineAmountTypes") or "NoTax"),
            lines=tuple(lines),
            is_reconciled=bool(raw.get("IsReconciled", False)),
        )

    def _plan_lines(self, raw_lines: object) -> tuple[list[tuple[str, Decimal, Decimal, str]], list[str]]:
        if not isinstance(raw_lines, list) or not raw_lines:
            return [], ["At least one line item is required"]
        codes = {account.code for account in self.accounts.values() if account.status == "ACTIVE"}
        lines: list[tuple[str, Decimal, Decimal, str]] = []
        errors: list[str] = []
        for raw in raw_lines:
            if not isinstance(raw, Mapping):
                errors.append("Line items must be objects")
                continue
            quantity = _decimal(raw.get("Quantity")) or Decimal("1")
            unit = _decimal(raw.get("UnitAmount"))
            if unit is None:
                line_amount = _decimal(raw.get("LineAmount"))
                unit = None if line_amount is None else line_amount / quantity
            code = str(raw.get("AccountCode") or "")
            if unit is None:
                errors.append("A line item must have a UnitAmount")
            if code not in codes:
                errors.append(f"Account code '{code}' is not a valid code for this document.")
            if unit is not None and code in codes:
                lines.append((str(raw.get("Description") or ""), quantity, money(unit), code))
        return lines, errors

    def record_bank_transaction(self, plan: BankTransactionPlan) -> BankTransaction:
        transaction = BankTransaction(
            bank_transaction_id=self._new_id(),
            type=plan.type,
            contact_id=plan.contact.contact_id,
            bank_account_id=plan.bank_account.account_id,
            transaction_date=plan.transaction_date,
            reference=plan.reference,
            currency=plan.bank_account.currency,
            currency_rate=plan.currency_rate,
            line_amount_types=plan.line_amount_types,
            line_items=[
                LineItem(self._new_id(), description, quantity, unit, code)
                for description, quantity, unit, code in plan.lines
            ],
            is_reconciled=plan.is_reconciled,
            updated_at=self.next_update(None),
        )
        self.bank_transactions[transaction.bank_transaction_id] = transaction
        return transaction

    # ---- deletes (a payment reversed) ---------------------------------------------------------

    def delete_payment(self, payment_id: str, raw: Mapping[str, Any]) -> Payment | list[str]:
        """`POST /Payments/{PaymentID}` with `{"Status": "DELETED"}`: the only update Xero takes on a
        payment ("Only Status accepted for updates."); a reconciled payment is refused (PROVIDERS.md §7).
        The bill's AmountPaid falls back and a PAID bill is AUTHORISED again."""
        payment = self.payments[payment_id]
        errors = _status_only(raw, payment.payment_id, "PaymentID")
        if errors:
            return errors
        if payment.status == "DELETED":
            return payment  # Choice: deleting a deleted payment again answers it as it is.
        if payment.is_reconciled:
            # Choice: Xero's exact wording for this refusal was not found in its spec or notes.
            return ["This payment has been reconciled and cannot be deleted. Unreconcile it first."]
        invoice = self.invoices[payment.invoice_id]
        updated_at = self.next_update(invoice.updated_at)
        payment.status = "DELETED"
        payment.updated_at = updated_at
        invoice.payment_ids.remove(payment.payment_id)
        invoice.amount_paid = money(invoice.amount_paid - payment.amount)
        if invoice.status == "PAID":
            invoice.status = "AUTHORISED"
            invoice.fully_paid_on = None
        invoice.updated_at = updated_at
        self._notify("INVOICE", "UPDATE", invoice.invoice_id)
        return payment

    def delete_bank_transaction(self, transaction_id: str, raw: Mapping[str, Any]) -> BankTransaction | list[str]:
        """`POST /BankTransactions/{BankTransactionID}` with `{"Status": "DELETED"}` (PROVIDERS.md §7);
        a reconciled transaction is refused, as a reconciled payment is."""
        transaction = self.bank_transactions[transaction_id]
        if set(raw) - {"Status", "BankTransactionID"} or raw.get("Status") != "DELETED":
            # Choice: only the delete is modelled; Xero would also take a full update of the transaction.
            return ["Only a Status of DELETED is supported by this sandbox for an existing bank transaction."]
        if transaction.status != "DELETED" and transaction.is_reconciled:
            return ["This bank transaction has been reconciled and cannot be deleted. Unreconcile it first."]
        transaction.status = "DELETED"
        transaction.updated_at = self.next_update(transaction.updated_at)
        return transaction

    def reconcile(self, transaction_id: str, *, reconciled: bool = True) -> None:
        """The bank statement line was matched to this payment or bank transaction in Xero (or unmatched)."""
        record = self.payments.get(transaction_id) or self.bank_transactions.get(transaction_id)
        if record is None:
            raise LedgerError(f"no payment or bank transaction {transaction_id}")
        record.is_reconciled = reconciled

    # ---- test controls ----------------------------------------------------------------------

    def pay_elsewhere(self, invoice_id: str, amount: Decimal | None = None) -> Payment:
        """Someone paid the bill in Xero directly (another app, or by hand)."""
        invoice = self._invoice(invoice_id)
        if invoice.status != "AUTHORISED":
            raise LedgerError(f"bill {invoice_id} is {invoice.status}; only AUTHORISED bills take payments")
        paid = money(amount) if amount is not None else invoice.amount_due
        if not 0 < paid <= invoice.amount_due:
            raise LedgerError(f"amount {paid} must be above 0 and at most {invoice.amount_due}")
        plan = self._plan_for(
            invoice,
            self._default_bank_account(invoice.currency),
            amount=paid,
            on=self._clock.now().date(),
            reference="Paid in Xero",
        )
        return self.record_payment(plan)

    def change_total(self, invoice_id: str, new_total: Decimal) -> Invoice:
        """The bill's amount was edited: the last line absorbs the difference."""
        invoice = self._invoice(invoice_id)
        if invoice.status not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
            raise LedgerError(f"bill {invoice_id} is {invoice.status} and can no longer be edited")
        new_total = money(new_total)
        if new_total < invoice.amount_paid or new_total <= 0:
            raise LedgerError(f"new total {new_total} must be positive and at least the {invoice.amount_paid} paid")
        last = invoice.line_items[-1]
        last.unit_amount = money(last.line_amount + new_total - invoice.total)
        last.quantity = Decimal("1.0000")
        return self._touch_invoice(invoice)

    def void(self, invoice_id: str) -> Invoice:
        invoice = self._invoice(invoice_id)
        # Xero voids only AUTHORISED bills without payments applied.
        if invoice.status != "AUTHORISED" or invoice.payment_ids:
            raise LedgerError(f"bill {invoice_id} is {invoice.status} with {len(invoice.payment_ids)} payments")
        invoice.status = "VOIDED"
        return self._touch_invoice(invoice)

    def delete(self, invoice_id: str) -> Invoice:
        invoice = self._invoice(invoice_id)
        # Xero deletes only DRAFT or SUBMITTED bills; an AUTHORISED bill can only be voided.
        if invoice.status not in ("DRAFT", "SUBMITTED"):
            raise LedgerError(f"bill {invoice_id} is {invoice.status}; Xero deletes only DRAFT or SUBMITTED bills")
        invoice.status = "DELETED"
        return self._touch_invoice(invoice)

    def authorise(self, invoice_id: str) -> Invoice:
        """A draft bill was approved."""
        invoice = self._invoice(invoice_id)
        if invoice.status not in ("DRAFT", "SUBMITTED"):
            raise LedgerError(f"bill {invoice_id} is {invoice.status}, not DRAFT or SUBMITTED")
        invoice.status = "AUTHORISED"
        return self._touch_invoice(invoice)

    def edit_contact(self, contact_id: str, changes: Mapping[str, Any]) -> Contact:
        """Change vendor fields, named as in the generator's VendorRecord (name, email, address...)."""
        contact = self.contacts.get(contact_id.lower())
        if contact is None:
            raise LedgerError(f"no contact {contact_id}")
        values = dict(changes)
        if isinstance(values.get("address"), Mapping):
            values["address"] = Address(**values["address"])
        unknown = set(values) - ({f.name for f in dataclasses.fields(VendorRecord)} - {"key"})
        if unknown:
            raise LedgerError(f"cannot change {sorted(unknown)} on a vendor")
        contact.vendor = dataclasses.replace(contact.vendor, **values)
        contact.updated_at = self.next_update(contact.updated_at)
        self._notify("CONTACT", "UPDATE", contact.contact_id)
        return contact

    def add_vendor(self, vendor: VendorRecord) -> Contact:
        contact = self._load_vendor(vendor, self.next_update(None))
        self._notify("CONTACT", "CREATE", contact.contact_id)
        return contact

    def add_bill(self, bill: BillRecord) -> Invoice:
        invoice = self._load_bill(dataclasses.replace(bill, updated_at=self.next_update(None)))
        self._notify("INVOICE", "CREATE", invoice.invoice_id)
        return invoice

    # ---- helpers ----------------------------------------------------------------------------

    def next_update(self, previous: datetime | None) -> datetime:
        """Now, to the millisecond, and always later than `previous` (UpdatedDateUTC only moves on)."""
        now = to_millis(self._clock.now())
        if previous is not None and now <= previous:
            return previous + timedelta(milliseconds=1)
        return now

    def _invoice(self, invoice_id: str) -> Invoice:
        invoice = self.invoices.get(invoice_id.lower())
        if invoice is None:
            raise LedgerError(f"no bill {invoice_id}")
        return invoice

    def _touch_invoice(self, invoice: Invoice) -> Invoice:
        invoice.updated_at = self.next_update(invoice.updated_at)
        if invoice.status == "AUTHORISED" and invoice.amount_due == 0:
            invoice.status = "PAID"
            invoice.fully_paid_on = self._clock.now().date()
        self._notify("INVOICE", "UPDATE", invoice.invoice_id)
        return invoice

    def _notify(self, category: str, event_type: str, resource_id: str) -> None:
        for listener in self.listeners:
            listener(category, event_type, resource_id)


def _decimal(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _date(value: object, *, default: date) -> date | None:
    """A request date: `2026-10-01`, `2026-10-01T00:00:00` or MS-JSON `/Date(1573755038314+0000)/`."""
    if value is None or value == "":
        return default
    text = str(value)
    if text.startswith("/Date(") and text.endswith(")/"):
        digits = text[6:-2].split("+", maxsplit=1)[0]
        try:
            return datetime.fromtimestamp(int(digits) / 1000, tz=UTC).date()
        except ValueError:
            return None
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        return None


def _status_only(raw: Mapping[str, Any], record_id: str, id_field: str) -> list[str]:
    if set(raw) - {"Status", id_field} or str(raw.get(id_field, record_id)).lower() != record_id:
        return ["Only Status accepted for updates."]
    if raw.get("Status") != "DELETED":
        return ["Only Status accepted for updates."]
    return []
