"""Where Sage purchase invoices, contacts and attachments become ProviderBill, ProviderVendor and
DocumentRef: one function per entity, each Sage quirk named where it is handled.

A record that cannot be read becomes a SkippedRecord whose reason a user can act on; the reason names
fields, never their values, except codes such as a currency that say nothing about a person.
"""

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from pydantic import ValidationError

from payedge_connect.models import ClosedReason, PostalAddress
from payedge_connect.providers.base import DocumentRef, ProviderBill, ProviderVendor, SkippedRecord
from payedge_connect.providers.sage import wire

# Sage artefact statuses (S-STAT). `status_id` filters take one value, so open bills take two listings.
UNPAID, PART_PAID, PAID, VOID = "UNPAID", "PART_PAID", "PAID", "VOID"
OPEN_STATUSES = (UNPAID, PART_PAID)
PURCHASE_INVOICE_CONTEXT = "PURCHASE_INVOICE"
_CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")
_ZERO = Decimal("0")
_PDF = "application/pdf"


# ------------------------------------------------------------------------------------------ reading


def read_bill(raw: object) -> wire.PurchaseInvoice | SkippedRecord:
    """One `$items` entry of /purchase_invoices, or why it cannot be read."""
    return _read(wire.PurchaseInvoice, raw, "bill", "purchase invoice")


def read_vendor(raw: object) -> wire.Contact | SkippedRecord:
    """One `$items` entry of /contacts, or why it cannot be read."""
    return _read(wire.Contact, raw, "vendor", "contact")


def read_attachment(raw: object) -> wire.Attachment | None:
    """An attachment we cannot read is treated as absent: the bill still syncs, without its document."""
    try:
        return wire.Attachment.model_validate(raw)
    except ValidationError:
        return None


def _read[M: wire.WireModel](
    model: type[M], raw: object, entity: Literal["bill", "vendor"], sage_name: str
) -> M | SkippedRecord:
    raw_id = raw.get("id") if isinstance(raw, Mapping) else None
    provider_id = raw_id if isinstance(raw_id, str) else ""
    if not isinstance(raw, Mapping):
        return SkippedRecord(entity, provider_id, f"Sage sent a {sage_name} that is not a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        return SkippedRecord(entity, provider_id, f"Sage {sage_name} could not be read ({wire.problem(error)})")


# -------------------------------------------------------------------------------------------- bills


def is_open(invoice: wire.PurchaseInvoice) -> bool:
    """Approved, not deleted, with an amount still due (Sage has no unapproved purchase invoice but DRAFT)."""
    status = invoice.status.id if invoice.status else None
    amount_due = invoice.outstanding_amount
    return invoice.deleted_at is None and status in OPEN_STATUSES and amount_due is not None and amount_due > _ZERO


def may_have_document(invoice: wire.PurchaseInvoice) -> bool:
    """Whether the invoice's transaction counts attachments; an unknown count means "look"."""
    count = invoice.transaction.number_of_attachments if invoice.transaction else None
    # Sage's Swagger types number_of_attachments as a string ("2").
    if isinstance(count, int):
        return count > 0
    if isinstance(count, str) and count.strip().isdigit():
        return int(count) > 0
    return True


def bill_from_sage(invoice: wire.PurchaseInvoice, document: DocumentRef | None) -> ProviderBill | SkippedRecord:
    """A Sage purchase invoice as a ProviderBill, or why it cannot be one."""
    bill_id = (invoice.id or "").strip()
    vendor_id = (invoice.contact.id or "").strip() if invoice.contact else ""
    vendor_name = _vendor_name(invoice)
    currency = (invoice.currency.id or "").strip() if invoice.currency else ""
    total, due = invoice.total_amount, invoice.outstanding_amount
    problems = (
        (not bill_id, "has no id"),
        (not vendor_id, "names no supplier (contact)"),
        (not vendor_name, "has no supplier name"),
        (not currency, "has no currency"),
        # A code says nothing about a person, so the reason may show the odd one.
        (not _CURRENCY_CODE.match(currency), f"currency {currency!r} is not a three-letter code"),
        (total is None, "has no total_amount"),
        (due is None, "has no outstanding_amount"),
    )
    problem = next((reason for failed, reason in problems if failed), None)
    if problem is not None or total is None or due is None:
        return SkippedRecord("bill", bill_id, f"Sage purchase invoice {problem}")
    open_now = is_open(invoice)
    return ProviderBill(
        bill_id=bill_id,
        vendor_id=vendor_id,
        vendor_name=vendor_name,
        currency=currency,
        total_amount=total,
        amount_due=due,
        # vendor_reference is the supplier's invoice number; `reference` is Sage's own numbering.
        invoice_number=_text(invoice.vendor_reference),
        remittance_note=_text(invoice.notes),
        issue_date=invoice.date,
        due_date=invoice.due_date,
        is_open=open_now,
        closed_reason=None if open_now else _closed_reason(invoice),
        document=document if open_now else None,
        updated_at=utc(invoice.updated_at),
    )


def _vendor_name(invoice: wire.PurchaseInvoice) -> str:
    # contact_name is the supplier's name when the invoice was made; displayed_as adds " (REFERENCE)".
    fallback = invoice.contact.displayed_as if invoice.contact else None
    return (invoice.contact_name or fallback or "").strip()


def _closed_reason(invoice: wire.PurchaseInvoice) -> ClosedReason | None:
    status = invoice.status.id if invoice.status else None
    if invoice.deleted_at is not None:
        return ClosedReason.DELETED
    if status == VOID:
        return ClosedReason.VOIDED
    # Sage marks an invoice PAID whether payments or purchase credit notes settled it.
    if status == PAID or status in OPEN_STATUSES:
        credited = _settled_by_credit(invoice.payments_allocations)
        return ClosedReason.CREDITED if credited else ClosedReason.PAID_ELSEWHERE
    # DRAFT (and DISPUTED): not approved for payment, so not open, and nothing closed it either.
    return None


def _settled_by_credit(allocations: Iterable[wire.PaymentAllocation] | None) -> bool:
    """Credit-note allocations carry a contact_allocation; payments carry a contact_payment."""
    entries = list(allocations or ())
    credits = [entry for entry in entries if entry.contact_allocation is not None]
    payments = [entry for entry in entries if entry.contact_payment is not None]
    return bool(credits) and not payments


# ------------------------------------------------------------------------------------------ vendors


def vendor_from_sage(contact: wire.Contact) -> ProviderVendor | SkippedRecord:
    """A Sage supplier contact as a ProviderVendor: name, address and email, nothing else."""
    vendor_id = (contact.id or "").strip()
    if not vendor_id:
        return SkippedRecord("vendor", "", "Sage contact has no id")
    name = (contact.name or "").strip()
    if not name:
        return SkippedRecord("vendor", vendor_id, "Sage contact has no name")
    return ProviderVendor(
        vendor_id=vendor_id,
        name=name,
        email=_text(contact.email),
        address=_address(contact.main_address),
        updated_at=utc(contact.updated_at),
    )


def _address(address: wire.Address | None) -> PostalAddress | None:
    if address is None:
        return None
    result = PostalAddress(
        line1=_text(address.address_line_1),
        line2=_text(address.address_line_2),
        city=_text(address.city),
        region=_text(address.region),
        postal_code=_text(address.postal_code),
        # Sage's country is a link whose id is the ISO 3166-1 alpha-2 code.
        country=_text(address.country.id.upper() if address.country and address.country.id else None),
    )
    return None if result == PostalAddress() else result


# ---------------------------------------------------------------------------------------- documents


def document_from_sage(attachment: wire.Attachment) -> DocumentRef | None:
    """A Sage attachment as the DocumentRef of its purchase invoice (None if it is not usable)."""
    attachment_id = (attachment.id or "").strip()
    if not attachment_id:
        return None
    return DocumentRef(
        provider_document_id=attachment_id,
        file_name=_text(attachment.file_name) or attachment_id,
        content_type=_text(attachment.mime_type) or "application/octet-stream",
        size_bytes=attachment.file_size,
    )


def documents_by_bill(attachments: Iterable[wire.Attachment]) -> dict[str, DocumentRef]:
    """The document of each purchase invoice among `attachments`: its first PDF, else its first file."""
    found: dict[str, DocumentRef] = {}
    for attachment in attachments:
        context_type = attachment.attachment_context_type.id if attachment.attachment_context_type else None
        bill_id = attachment.attachment_context.id if attachment.attachment_context else None
        document = document_from_sage(attachment)
        if context_type != PURCHASE_INVOICE_CONTEXT or not bill_id or document is None:
            continue
        current = found.get(bill_id)
        if current is None or (current.content_type != _PDF and document.content_type == _PDF):
            found[bill_id] = document
    return found


# ------------------------------------------------------------------------------------------ helpers


def _text(value: str | None) -> str | None:
    """Sage sends empty strings and nulls alike for an absent text."""
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None


def utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    # Sage's timestamps end in Z; one without an offset is read as UTC rather than local time.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
