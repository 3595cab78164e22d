"""Xero's JSON as the connector reads it: only the fields we use, everything else ignored.

Shapes from the official OpenAPI (XeroAPI/Xero-OpenAPI 16.1.0, `xero_accounting.yaml`, docs/providers.md#specs):
Invoice, Contact, Address, Attachment and the list envelope with its `pagination` object.
Field names are Xero's (PascalCase aliases); personal fields of a contact (FirstName, LastName,
Phones, BankAccountDetails, TaxNumber, ContactPersons, AttentionTo) are deliberately not modelled,
so they cannot leave this module even by accident.
"""

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# Xero writes dates as MS-JSON: `/Date(1539993600000+0000)/` - epoch milliseconds and the offset of
# the organisation's local time (always +0000 in what Xero documents; honoured when present).
_MS_JSON = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def _ms_json(value: str) -> tuple[datetime, timedelta]:
    """The instant (UTC) and the local offset of an MS-JSON date."""
    match = _MS_JSON.match(value.strip())
    if match is None:
        raise ValueError("is not a Xero date (/Date(milliseconds+offset)/)")
    instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(match.group(1)))
    offset = timedelta()
    if match.group(2):
        sign = -1 if match.group(2)[0] == "-" else 1
        offset = sign * timedelta(hours=int(match.group(2)[1:3]), minutes=int(match.group(2)[3:5]))
    return instant, offset


def _calendar_date(value: object) -> date | None:
    """A bill's Date/DueDate as the calendar day Xero shows: the day of the instant in the offset it
    was written with (midnight UTC with +0000), so no server time zone can move it a day."""
    if value is None or value == "":
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("is not a date")
    if value.startswith("/Date("):
        instant, offset = _ms_json(value)
        return (instant + offset).date()
    try:
        # DateString-style values (`2026-10-01T00:00:00`) carry the calendar day in their text.
        return datetime.fromisoformat(value).date()
    except ValueError:
        raise ValueError("is not a Xero date") from None


def _utc_instant(value: object) -> datetime | None:
    """UpdatedDateUTC: an MS-JSON instant, kept as an aware UTC datetime."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("is not a timestamp")
    if value.startswith("/Date("):
        return _ms_json(value)[0]
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("is not a Xero timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _money(value: object) -> Decimal:
    """An amount: JSON parsed with parse_float=Decimal gives Decimal (or int for whole numbers).

    A float here would mean the JSON went through binary floating point somewhere: refused rather
    than silently rounded.
    """
    if isinstance(value, bool | float):
        raise ValueError("is not an exact decimal amount")
    try:
        amount = Decimal(value) if isinstance(value, int | Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValueError("is not a number") from None
    if not amount.is_finite():
        raise ValueError("is not a number")
    return amount


def _text(value: object) -> str | None:
    """Optional text: Xero writes absent strings as "" (InvoiceNumber, address lines, email)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("is not text")
    stripped = value.strip()
    return stripped or None


CalendarDate = Annotated[date | None, BeforeValidator(_calendar_date)]
UtcInstant = Annotated[datetime | None, BeforeValidator(_utc_instant)]
Money = Annotated[Decimal, BeforeValidator(_money)]
Text = Annotated[str | None, BeforeValidator(_text)]


class XeroModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Pagination(XeroModel):
    """The `pagination` object of a paged list (absent on unpaged lists)."""

    page: int
    page_size: int = Field(alias="pageSize")
    page_count: int = Field(alias="pageCount")
    item_count: int = Field(alias="itemCount")


class Envelope(XeroModel):
    """A list response. Records stay raw here: each is read on its own, so one bad record is skipped
    instead of failing the page."""

    pagination: Pagination | None = None
    invoices: list[Any] = Field(default_factory=list, alias="Invoices")
    contacts: list[Any] = Field(default_factory=list, alias="Contacts")
    attachments: list[Any] = Field(default_factory=list, alias="Attachments")


class ContactRef(XeroModel):
    """The contact embedded in a bill (id and name only)."""

    contact_id: str = Field(alias="ContactID", min_length=1)
    name: Text = Field(default=None, alias="Name")


class Invoice(XeroModel):
    """An invoice; Type ACCPAY is a bill. Xero has no free-text memo on it (notes live in History)."""

    invoice_id: str = Field(alias="InvoiceID", min_length=1)
    type: str = Field(alias="Type")
    status: str = Field(alias="Status")
    # ACCPAY: the supplier's invoice number (non-unique; the `Reference` field is ACCREC only).
    invoice_number: Text = Field(default=None, alias="InvoiceNumber")
    contact: ContactRef = Field(alias="Contact")
    currency_code: str = Field(alias="CurrencyCode")
    total: Money = Field(alias="Total")
    amount_due: Money = Field(alias="AmountDue")
    amount_paid: Money = Field(default=Decimal("0"), alias="AmountPaid")
    amount_credited: Money = Field(default=Decimal("0"), alias="AmountCredited")
    issue_date: CalendarDate = Field(default=None, alias="Date")
    due_date: CalendarDate = Field(default=None, alias="DueDate")
    updated_date_utc: UtcInstant = Field(default=None, alias="UpdatedDateUTC")
    has_attachments: bool = Field(default=False, alias="HasAttachments")


class Address(XeroModel):
    """A contact address. AttentionTo names a person and is left out on purpose."""

    address_type: str | None = Field(default=None, alias="AddressType")
    line1: Text = Field(default=None, alias="AddressLine1")
    line2: Text = Field(default=None, alias="AddressLine2")
    line3: Text = Field(default=None, alias="AddressLine3")
    line4: Text = Field(default=None, alias="AddressLine4")
    city: Text = Field(default=None, alias="City")
    region: Text = Field(default=None, alias="Region")
    postal_code: Text = Field(default=None, alias="PostalCode")
    country: Text = Field(default=None, alias="Country")


class Contact(XeroModel):
    """A contact; IsSupplier (computed by Xero) marks a vendor."""

    contact_id: str = Field(alias="ContactID", min_length=1)
    name: Text = Field(default=None, alias="Name")
    email_address: Text = Field(default=None, alias="EmailAddress")
    addresses: list[Address] = Field(default_factory=list, alias="Addresses")
    updated_date_utc: UtcInstant = Field(default=None, alias="UpdatedDateUTC")


class Attachment(XeroModel):
    """An entry of GET /Invoices/{InvoiceID}/Attachments."""

    attachment_id: str = Field(alias="AttachmentID", min_length=1)
    file_name: str = Field(alias="FileName")
    mime_type: str = Field(default="application/octet-stream", alias="MimeType")
    content_length: int | None = Field(default=None, alias="ContentLength")


# ---- write-back: payments, fees (spend-money bank transactions) and the accounts they name --------


class ValidationMessage(XeroModel):
    """One entry of an element's ValidationErrors: Xero's reason for refusing it."""

    message: str = Field(alias="Message")


class WrittenElement(XeroModel):
    """What every element of a PUT answer says about itself: with summarizeErrors=false a refused
    element comes back in a 200 answer, with StatusAttributeString ERROR and its ValidationErrors."""

    status_attribute_string: str | None = Field(default=None, alias="StatusAttributeString")
    validation_errors: list[ValidationMessage] = Field(default_factory=list, alias="ValidationErrors")
    # Xero's own state of the record: AUTHORISED, or DELETED once it was removed.
    status: str | None = Field(default=None, alias="Status")


class Payment(WrittenElement):
    """A payment as PUT /Payments answers it and GET /Payments lists it (what write-back reads)."""

    payment_id: str | None = Field(default=None, alias="PaymentID")
    # Kept as Xero wrote it: it is compared with the Reference we sent.
    reference: str = Field(default="", alias="Reference")


class BankTransaction(WrittenElement):
    """A bank transaction (a fee is a SPEND) as PUT and GET /BankTransactions return it."""

    bank_transaction_id: str | None = Field(default=None, alias="BankTransactionID")
    type: str | None = Field(default=None, alias="Type")
    reference: str = Field(default="", alias="Reference")


class Account(XeroModel):
    """An entry of GET /Accounts: the Code a fee line is booked by, and a bank account's currency."""

    account_id: str = Field(alias="AccountID", min_length=1)
    code: Text = Field(default=None, alias="Code")
    # Xero gives CurrencyCode on bank accounts only.
    currency_code: str | None = Field(default=None, alias="CurrencyCode")


class WriteBackEnvelope(XeroModel):
    """The answers write-back reads: Payments, BankTransactions or Accounts."""

    payments: list[Payment] = Field(default_factory=list, alias="Payments")
    bank_transactions: list[BankTransaction] = Field(default_factory=list, alias="BankTransactions")
    accounts: list[Account] = Field(default_factory=list, alias="Accounts")
