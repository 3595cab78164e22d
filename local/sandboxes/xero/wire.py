"""Xero's JSON as the Accounting and Identity APIs emit it: MS-JSON dates, envelopes, error bodies (and
the same answers as XML, which the Accounting API sends unless the request asks for JSON).

Field order and shapes follow the response examples in `xero_accounting.yaml` (docs/providers.md#specs)
(XeroAPI/Xero-OpenAPI 16.1.0). Money is a Decimal, written as a JSON number with its own digits.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote
from xml.sax.saxutils import escape as xml_escape

from local.sandboxes.xero.ledger import (
    Account,
    Attachment,
    BankTransaction,
    Contact,
    Invoice,
    LineItem,
    Organisation,
    Payment,
)
from local.sandboxes.xero.oauth import Connection

JsonObject = dict[str, Any]
InvoiceDetail = Literal["full", "unpaged", "summary"]

NOT_FOUND_TEXT = "The resource you're looking for cannot be found"
ZERO = Decimal("0.00")


# ---- dates --------------------------------------------------------------------------------------


def _epoch_millis(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() * 1000 + 0.5)


def ms_date(day: date) -> str:
    """A date as Xero's MS-JSON: `/Date(1539993600000+0000)/` (midnight UTC)."""
    return f"/Date({_epoch_millis(datetime(day.year, day.month, day.day, tzinfo=UTC))}+0000)/"


def ms_datetime(moment: datetime) -> str:
    """UpdatedDateUTC as Xero writes it: `/Date(1541176290160+0000)/`."""
    return f"/Date({_epoch_millis(moment)}+0000)/"


def envelope_timestamp(moment: datetime) -> str:
    """The envelope's DateTimeUTC carries no offset: `/Date(1552326816230)/`."""
    return f"/Date({_epoch_millis(moment)})/"


def date_string(day: date) -> str:
    """DateString / DueDateString: `2018-10-20T00:00:00`."""
    return f"{day.isoformat()}T00:00:00"


def identity_timestamp(moment: datetime) -> str:
    """/connections dates: seven fractional digits and no offset, `2019-12-07T18:46:19.5165400`."""
    utc = moment.astimezone(UTC)
    return f"{utc.strftime('%Y-%m-%dT%H:%M:%S')}.{utc.microsecond:06d}0"


def webhook_timestamp(moment: datetime) -> str:
    """A webhook event's eventDateUtc: milliseconds, no offset, `2024-06-21T01:15:39.902`."""
    utc = moment.astimezone(UTC)
    return f"{utc.strftime('%Y-%m-%dT%H:%M:%S')}.{utc.microsecond // 1000:03d}"


# ---- envelopes and errors -----------------------------------------------------------------------


def envelope(
    provider_name: str, now: datetime, key: str, records: list[JsonObject], pagination: dict[str, int] | None = None
) -> JsonObject:
    body: JsonObject = {
        "Id": str(uuid.uuid4()),
        "Status": "OK",
        "ProviderName": provider_name,
        "DateTimeUTC": envelope_timestamp(now),
    }
    if pagination is not None:
        body["pagination"] = pagination
    body[key] = records
    return body


def validation_exception(elements: list[JsonObject], message: str = "A validation exception occurred") -> JsonObject:
    return {"ErrorNumber": 10, "Type": "ValidationException", "Message": message, "Elements": elements}


def query_parse_exception(message: str) -> JsonObject:
    return {"ErrorNumber": 16, "Type": "QueryParseException", "Message": message}


def post_data_invalid(message: str) -> JsonObject:
    return {"ErrorNumber": 14, "Type": "PostDataInvalidException", "Message": message}


def problem(status: int, title: str, detail: str) -> JsonObject:
    """The body Xero's API gateway sends with 401/403 (and its other gateway errors)."""
    return {
        "Type": None,
        "Title": title,
        "Status": status,
        "Detail": detail,
        "Instance": str(uuid.uuid4()),
        "Extensions": {},
    }


# ---- contacts -----------------------------------------------------------------------------------


def contact_summary(contact: Contact) -> JsonObject:
    """The contact as embedded in a bill, payment or bank transaction (no personal details)."""
    return {
        "ContactID": contact.contact_id,
        "Name": contact.vendor.name,
        "Addresses": [],
        "Phones": [],
        "ContactGroups": [],
        "ContactPersons": [],
        "HasValidationErrors": False,
    }


def contact_json(
    contact: Contact, *, is_supplier: bool, balance: tuple[Decimal, Decimal], summary: bool = False
) -> JsonObject:
    """A Contact carrying the generator's sensitive vendor fields where Xero keeps them.

    The vendor's free-text notes have no field on Xero's Contact (they live in History), so they are
    not served.
    """
    vendor = contact.vendor
    body: JsonObject = {
        "ContactID": contact.contact_id,
        "ContactStatus": contact.status,
        "Name": vendor.name,
    }
    if vendor.contact_person:
        first, _, last = vendor.contact_person.partition(" ")
        body["FirstName"] = first
        body["LastName"] = last
    if vendor.email:
        body["EmailAddress"] = vendor.email
    body["BankAccountDetails"] = _bank_details(contact)
    body["TaxNumber"] = vendor.tax_id or ""
    body["Addresses"] = _addresses(contact)
    body["Phones"] = _phones(contact)
    body["UpdatedDateUTC"] = ms_datetime(contact.updated_at)
    body["ContactGroups"] = []
    if not summary:
        body["IsSupplier"] = is_supplier
        body["IsCustomer"] = False
    body["DefaultCurrency"] = vendor.currency
    if not summary:
        outstanding, overdue = balance
        body["Balances"] = {
            "AccountsReceivable": {"Outstanding": ZERO, "Overdue": ZERO},
            "AccountsPayable": {"Outstanding": outstanding, "Overdue": overdue},
        }
    body["ContactPersons"] = _contact_persons(contact)
    body["HasAttachments"] = False
    body["HasValidationErrors"] = False
    return body


def _bank_details(contact: Contact) -> str:
    vendor = contact.vendor
    if vendor.iban:
        return vendor.iban
    parts = [part for part in (vendor.bank_routing, vendor.bank_account_number) if part]
    return " ".join(parts)


def _addresses(contact: Contact) -> list[JsonObject]:
    address = contact.vendor.address
    street: JsonObject = {"AddressType": "STREET", "City": "", "Region": "", "PostalCode": "", "Country": ""}
    postal: JsonObject = {
        "AddressType": "POBOX",
        "AddressLine1": address.line1 if address else "",
        "AddressLine2": (address.line2 or "") if address else "",
        "AddressLine3": "",
        "AddressLine4": "",
        "City": address.city if address else "",
        "Region": (address.region or "") if address else "",
        "PostalCode": (address.postal_code or "") if address else "",
        "Country": address.country if address else "",
    }
    if contact.vendor.contact_person:
        postal["AttentionTo"] = contact.vendor.contact_person
    return [street, postal]


def _phones(contact: Contact) -> list[JsonObject]:
    def phone(kind: str, number: str | None) -> JsonObject:
        return {"PhoneType": kind, "PhoneNumber": number or "", "PhoneAreaCode": "", "PhoneCountryCode": ""}

    vendor = contact.vendor
    return [phone("DDI", None), phone("DEFAULT", vendor.phone), phone("FAX", None), phone("MOBILE", vendor.mobile)]


def _contact_persons(contact: Contact) -> list[JsonObject]:
    person = contact.vendor.contact_person
    if not person:
        return []
    first, _, last = person.partition(" ")
    return [{"FirstName": first, "LastName": last, "EmailAddress": "", "IncludeInEmails": False}]


# ---- bills --------------------------------------------------------------------------------------


def line_item_json(line: LineItem) -> JsonObject:
    return {
        "Description": line.description,
        "UnitAmount": line.unit_amount,
        "TaxType": "NONE",
        "TaxAmount": ZERO,
        "LineAmount": line.line_amount,
        "AccountCode": line.account_code,
        "Tracking": [],
        "Quantity": line.quantity.quantize(Decimal("0.0001")),
        "LineItemID": line.line_item_id,
        "ValidationErrors": [],
    }


def _dates(day: date, due: date | None) -> JsonObject:
    body: JsonObject = {"DateString": date_string(day), "Date": ms_date(day)}
    if due is not None:
        body["DueDateString"] = date_string(due)
        body["DueDate"] = ms_date(due)
    return body


def invoice_json(org: Organisation, invoice: Invoice, detail: InvoiceDetail = "full") -> JsonObject:
    """A bill. `unpaged` lists carry no line items; `summary` (summaryOnly) also drops payments."""
    body: JsonObject = {
        "Type": "ACCPAY",
        "InvoiceID": invoice.invoice_id,
        "InvoiceNumber": invoice.invoice_number or "",
    }
    if detail != "summary":
        body["Payments"] = [invoice_payment_json(org.payments[pid]) for pid in invoice.payment_ids]
        body["CreditNotes"] = []
        body["Prepayments"] = []
        body["Overpayments"] = []
    body["AmountDue"] = invoice.amount_due
    body["AmountPaid"] = invoice.amount_paid
    body["AmountCredited"] = ZERO
    body["CurrencyRate"] = invoice.currency_rate
    body["IsDiscounted"] = False
    if detail != "summary":
        body["HasAttachments"] = invoice.attachment is not None
    body["HasErrors"] = False
    body["Contact"] = contact_summary(org.contact_for(invoice))
    body.update(_dates(invoice.issue_date, invoice.due_date))
    body["Status"] = invoice.status
    body["LineAmountTypes"] = "NoTax"
    if detail == "full":
        body["LineItems"] = [line_item_json(line) for line in invoice.line_items]
    body["SubTotal"] = invoice.total
    body["TotalTax"] = ZERO
    body["Total"] = invoice.total
    body["UpdatedDateUTC"] = ms_datetime(invoice.updated_at)
    body["CurrencyCode"] = invoice.currency
    if invoice.fully_paid_on is not None and invoice.status == "PAID":
        body["FullyPaidOnDate"] = ms_date(invoice.fully_paid_on)
    return body


def invoice_payment_json(payment: Payment) -> JsonObject:
    """A payment as listed inside its bill."""
    return {
        "PaymentID": payment.payment_id,
        "Date": ms_date(payment.payment_date),
        "Amount": payment.amount,
        "Reference": payment.reference,
        "CurrencyRate": payment.currency_rate,
        "HasAccount": False,
        "HasValidationErrors": False,
    }


def attachment_json(base_url: str, invoice: Invoice, attachment: Attachment) -> JsonObject:
    return {
        "AttachmentID": attachment.attachment_id,
        "FileName": attachment.file_name,
        "Url": f"{base_url}/api.xro/2.0/Invoices/{invoice.invoice_id}/Attachments/{quote(attachment.file_name)}",
        "MimeType": attachment.mime_type,
        "ContentLength": len(attachment.content),
    }


# ---- accounts, payments, bank transactions, organisation ----------------------------------------


def account_json(account: Account) -> JsonObject:
    body: JsonObject = {
        "AccountID": account.account_id,
        "Code": account.code,
        "Name": account.name,
        "Status": account.status,
        "Type": account.type,
        "TaxType": "NONE",
        "Class": account.account_class,
        "EnablePaymentsToAccount": account.enable_payments_to_account,
        "ShowInExpenseClaims": False,
    }
    if account.type == "BANK":
        body["BankAccountNumber"] = account.bank_account_number or ""
        body["BankAccountType"] = "BANK"
        body["CurrencyCode"] = account.currency
    if account.system_account:
        body["SystemAccount"] = account.system_account
    body["ReportingCode"] = {"ASSET": "ASS", "EXPENSE": "EXP", "LIABILITY": "LIA"}.get(account.account_class, "")
    body["HasAttachments"] = False
    body["UpdatedDateUTC"] = ms_datetime(account.updated_at)
    body["AddToWatchlist"] = False
    return body


def _account_reference(account: Account) -> JsonObject:
    return {"AccountID": account.account_id, "Code": account.code, "Name": account.name}


def payment_json(org: Organisation, payment: Payment, *, with_invoice_detail: bool = False) -> JsonObject:
    """A payment; a created one carries its bill in detail (with the new AmountDue), a listed one a summary."""
    invoice = org.invoices[payment.invoice_id]
    if with_invoice_detail:
        invoice_body = invoice_json(org, invoice)
        del invoice_body["Payments"], invoice_body["CreditNotes"]
    else:
        invoice_body = {
            "Type": "ACCPAY",
            "InvoiceID": invoice.invoice_id,
            "InvoiceNumber": invoice.invoice_number or "",
            "Payments": [],
            "CreditNotes": [],
            "Prepayments": [],
            "Overpayments": [],
            "HasErrors": False,
            "IsDiscounted": False,
            "Contact": contact_summary(org.contact_for(invoice)),
            "LineItems": [],
            "CurrencyCode": invoice.currency,
        }
    return {
        "PaymentID": payment.payment_id,
        "Date": ms_date(payment.payment_date),
        "BankAmount": payment.bank_amount,
        "Amount": payment.amount,
        "Reference": payment.reference,
        "CurrencyRate": payment.currency_rate,
        "PaymentType": "ACCPAYPAYMENT",
        "Status": payment.status,
        "UpdatedDateUTC": ms_datetime(payment.updated_at),
        "HasAccount": True,
        "IsReconciled": payment.is_reconciled,
        "Account": _account_reference(org.accounts[payment.account_id]),
        "Invoice": invoice_body,
        "HasValidationErrors": False,
    }


def bank_transaction_json(org: Organisation, transaction: BankTransaction) -> JsonObject:
    body: JsonObject = {
        "BankTransactionID": transaction.bank_transaction_id,
        "BankAccount": _account_reference(org.accounts[transaction.bank_account_id]),
        "Type": transaction.type,
        "Reference": transaction.reference,
        "IsReconciled": transaction.is_reconciled,
        "HasAttachments": False,
        "Contact": contact_summary(org.contacts[transaction.contact_id]),
        "DateString": date_string(transaction.transaction_date),
        "Date": ms_date(transaction.transaction_date),
        "Status": transaction.status,
        "LineAmountTypes": transaction.line_amount_types,
        "LineItems": [line_item_json(line) for line in transaction.line_items],
        "SubTotal": transaction.total,
        "TotalTax": ZERO,
        "Total": transaction.total,
        "UpdatedDateUTC": ms_datetime(transaction.updated_at),
        "CurrencyCode": transaction.currency,
    }
    if transaction.currency != org.base_currency:
        body["CurrencyRate"] = transaction.currency_rate
    return body


def organisation_json(org: Organisation) -> JsonObject:
    return {
        "Name": org.name,
        "LegalName": org.name,
        "PaysTax": False,
        "Version": "GLOBAL",
        "OrganisationType": "COMPANY",
        "BaseCurrency": org.base_currency,
        "IsDemoCompany": False,
        "OrganisationStatus": "ACTIVE",
        "CreatedDateUTC": envelope_timestamp(org.created_at),
        "OrganisationEntityType": "COMPANY",
        "OrganisationID": org.tenant_id,
        "Edition": "BUSINESS",
        "Class": "STANDARD",
        "Addresses": [],
        "Phones": [],
        "ExternalLinks": [],
        "PaymentTerms": {},
    }


def connection_json(connection: Connection) -> JsonObject:
    """One entry of GET /connections (xero-identity.yaml Connection)."""
    return {
        "id": connection.id,
        "authEventId": connection.auth_event_id,
        "tenantId": connection.tenant_id,
        "tenantType": "ORGANISATION",
        "tenantName": connection.tenant_name,
        "createdDateUtc": identity_timestamp(connection.created_at),
        "updatedDateUtc": identity_timestamp(connection.updated_at),
    }


# ---- XML: what the Accounting API answers unless asked for JSON --------------------------------

_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
# Xero's XML names each element of a collection in the singular.
_SINGULAR = {
    "Addresses": "Address",
    "Currencies": "Currency",
    "Elements": "DataContractBase",
    "Tracking": "TrackingCategory",
}


def to_xml(body: JsonObject) -> bytes:
    """A JSON answer as Xero's XML: `<Response>` around an envelope, `<ApiException>` around an error;
    collections hold one element per item named in the singular, MS-JSON dates become ISO 8601."""
    root = "ApiException" if "ErrorNumber" in body else "Response"
    lines = ['<?xml version="1.0" encoding="utf-8"?>']
    namespaces = ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
    lines.append(f"<{root}{namespaces}>{_xml_content(body)}</{root}>")
    return "\n".join(lines).encode("utf-8")


def _xml_content(value: object) -> str:
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            if item is None:
                continue
            inner = _xml_collection(key, item) if isinstance(item, list) else _xml_content(item)
            parts.append(f"<{key}>{inner}</{key}>")
        return "".join(parts)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        match = _MS_DATE.match(value)
        if match:
            moment = datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
            return moment.strftime("%Y-%m-%dT%H:%M:%S")
        return xml_escape(value)
    return xml_escape(str(value))


def _xml_collection(key: str, items: list[Any]) -> str:
    name = _SINGULAR.get(key) or (key[:-3] + "y" if key.endswith("ies") else key.removesuffix("s"))
    return "".join(f"<{name}>{_xml_content(item)}</{name}>" for item in items)


def currency_json(code: str) -> JsonObject:
    return {"Code": code, "Description": _CURRENCY_NAMES.get(code, code)}


_CURRENCY_NAMES = {"CAD": "Canadian Dollar", "USD": "United States Dollar", "EUR": "Euro", "GBP": "British Pound"}
