"""Where Xero bills and vendors are mapped into ProviderBill / ProviderVendor.

One function per entity. A record that cannot be read becomes a SkippedRecord whose reason a user can
act on; it never raises. Reasons name the bill by its invoice number (or id) and the field at fault,
never a value of a contact's personal fields.
"""

import re
from collections.abc import Mapping

from pydantic import ValidationError

from payedge_connect.models import ClosedReason, PostalAddress
from payedge_connect.providers.base import DocumentRef, ProviderBill, ProviderVendor, SkippedRecord
from payedge_connect.providers.xero import wire

_CURRENCY = re.compile(r"^[A-Z]{3}$")
# Xero's bill lists only say HasAttachments. Naming the file takes one more call per bill
# (GET /Invoices/{id}/Attachments), which a daily reconciliation of every open bill cannot afford
# at 60 calls a minute and 5,000 (Starter: 1,000) a day. So the listing marks the document as
# "the bill's first attachment", and download_document looks its AttachmentID up when it fetches it.
FIRST_ATTACHMENT = "first-attachment"
UNKNOWN_CONTENT_TYPE = "application/octet-stream"

# Xero field names as a user would read them in a reason.
_FIELD_WORDS = {
    "InvoiceID": "InvoiceID",
    "Type": "type",
    "Status": "status",
    "InvoiceNumber": "invoice number",
    "Contact": "vendor",
    "ContactID": "ContactID",
    "Name": "name",
    "CurrencyCode": "currency",
    "Total": "total",
    "AmountDue": "amount due",
    "AmountPaid": "amount paid",
    "AmountCredited": "amount credited",
    "Date": "date",
    "DueDate": "due date",
    "UpdatedDateUTC": "last-updated time",
    "HasAttachments": "attachment flag",
    "EmailAddress": "email address",
    "Addresses": "address",
}


def bill_from_xero(raw: object) -> ProviderBill | SkippedRecord:
    """A Xero invoice of Type ACCPAY as a ProviderBill.

    Open = AUTHORISED with AmountDue > 0. DRAFT and SUBMITTED (awaiting approval) are not open and
    not closed. PAID is closed as paid elsewhere, or as credited when credit notes, prepayments or
    overpayments (AmountCredited) cover the whole total. Whether a payment was ours is for the sync
    to say (it knows its payment orders): Xero only knows the bill was paid.
    """
    provider_id = _raw_text(raw, "InvoiceID")
    try:
        invoice = wire.Invoice.model_validate(raw)
    except ValidationError as error:
        return _skipped_bill(provider_id, _raw_text(raw, "InvoiceNumber"), _what(error))
    if invoice.type != "ACCPAY":
        # GET /Invoices also serves sales invoices (ACCREC); only ACCPAY is payable.
        return _skipped_bill(invoice.invoice_id, invoice.invoice_number, f"it is a {invoice.type} invoice, not a bill")
    if not _CURRENCY.fullmatch(invoice.currency_code):
        return _skipped_bill(
            invoice.invoice_id,
            invoice.invoice_number,
            f"its currency {invoice.currency_code!r} is not a three-letter currency code",
        )
    if invoice.contact.name is None:
        return _skipped_bill(invoice.invoice_id, invoice.invoice_number, "its vendor has no name")
    state = _open_or_closed(invoice)
    if state is None:
        return _skipped_bill(invoice.invoice_id, invoice.invoice_number, f"its status {invoice.status!r} is unknown")
    is_open, closed_reason = state
    return ProviderBill(
        bill_id=invoice.invoice_id,
        vendor_id=invoice.contact.contact_id,
        vendor_name=invoice.contact.name,
        currency=invoice.currency_code,
        total_amount=invoice.total,
        amount_due=invoice.amount_due,
        invoice_number=invoice.invoice_number,
        # Xero bills have no free-text memo (the API's Reference is ACCREC only; notes live in
        # History, which costs a call per bill and is written by people about people).
        remittance_note=None,
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        is_open=is_open,
        closed_reason=closed_reason,
        document=_document(invoice),
        updated_at=invoice.updated_date_utc,
    )


def vendor_from_xero(raw: object) -> ProviderVendor | SkippedRecord:
    """A Xero contact as a ProviderVendor: name, email and one postal address, nothing personal."""
    provider_id = _raw_text(raw, "ContactID")
    try:
        contact = wire.Contact.model_validate(raw)
    except ValidationError as error:
        return SkippedRecord("vendor", provider_id or "", f"Xero contact could not be read: {_what(error)}")
    if contact.name is None:
        return SkippedRecord("vendor", contact.contact_id, "Xero contact has no name")
    return ProviderVendor(
        vendor_id=contact.contact_id,
        name=contact.name,
        email=contact.email_address,
        address=_postal_address(contact.addresses),
        updated_at=contact.updated_date_utc,
    )


def attachment_from_xero(raw: object) -> wire.Attachment | None:
    """An entry of a bill's attachment list, or None when it cannot be read."""
    try:
        return wire.Attachment.model_validate(raw)
    except ValidationError:
        return None


# ---------------------------------------------------------------------------------------------- details


def _open_or_closed(invoice: wire.Invoice) -> tuple[bool, ClosedReason | None] | None:
    """(is_open, closed_reason), or None for a status Xero does not document."""
    match invoice.status:
        case "AUTHORISED" if invoice.amount_due > 0:
            return True, None
        case "AUTHORISED" | "PAID":
            # An approved bill owing nothing is settled, whatever the status says yet.
            return False, _settled_by(invoice)
        case "VOIDED":
            return False, ClosedReason.VOIDED
        case "DELETED":
            return False, ClosedReason.DELETED
        case "DRAFT" | "SUBMITTED":
            return False, None  # not approved yet: not payable, but not closed either
        case _:
            return None


def _settled_by(invoice: wire.Invoice) -> ClosedReason:
    # AmountCredited sums credit notes, prepayments and overpayments applied to the bill.
    if invoice.amount_credited > 0 and invoice.amount_credited >= invoice.total:
        return ClosedReason.CREDITED
    return ClosedReason.PAID_ELSEWHERE


def _document(invoice: wire.Invoice) -> DocumentRef | None:
    if not invoice.has_attachments:
        return None
    # Resolved to an AttachmentID, file name and MIME type when downloaded (see FIRST_ATTACHMENT).
    return DocumentRef(provider_document_id=FIRST_ATTACHMENT, file_name="", content_type=UNKNOWN_CONTENT_TYPE)


def _postal_address(addresses: list[wire.Address]) -> PostalAddress | None:
    """POBOX first: it is Xero's postal (mailing) address, where remittances and cheques go; STREET is
    the premises. Whichever has content wins, POBOX over STREET; AttentionTo (a person) is dropped."""
    by_type = {address.address_type: address for address in addresses}
    for kind in ("POBOX", "STREET"):
        address = by_type.get(kind)
        if address is None:
            continue
        extra_lines = [line for line in (address.line2, address.line3, address.line4) if line]
        mapped = PostalAddress(
            line1=address.line1,
            line2=", ".join(extra_lines) or None,
            city=address.city,
            region=address.region,
            postal_code=address.postal_code,
            country=address.country,
        )
        if any(value is not None for value in mapped.model_dump().values()):
            return mapped
    return None


def _skipped_bill(bill_id: str | None, invoice_number: str | None, what: str) -> SkippedRecord:
    name = f"Xero bill {invoice_number}" if invoice_number else "Xero bill"
    return SkippedRecord("bill", bill_id or "", f"{name} could not be read: {what}")


def _what(error: ValidationError) -> str:
    """The first problem of a validation error in words; never the offending value itself."""
    first = error.errors(include_url=False, include_input=False)[0]
    field = " ".join(_FIELD_WORDS.get(str(part), str(part)) for part in first["loc"]) or "the record"
    if first["type"] == "missing":
        return f"{field} is missing"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "value_error":
        return f"{field} {message}"
    return f"{field}: {message[:1].lower()}{message[1:]}"


def _raw_text(raw: object, key: str) -> str | None:
    value = raw.get(key) if isinstance(raw, Mapping) else None
    return value if isinstance(value, str) and value.strip() else None
