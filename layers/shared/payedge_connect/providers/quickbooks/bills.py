"""Where QuickBooks bills and vendors become ProviderBill and ProviderVendor.

A QuickBooks bill has no status field (docs/providers.md#quickbooks-bills): it is open while `Balance > 0`; paid,
voided and credited bills all have `Balance == 0` and only the rest of the bill tells them apart; a
deleted bill exists only as a CDC tombstone or a 610 "Object Not Found" on read.
"""

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from pydantic import ValidationError

from payedge_connect.models import ClosedReason, PostalAddress
from payedge_connect.providers.base import DocumentRef, ProviderBill, ProviderVendor, SkippedRecord
from payedge_connect.providers.quickbooks import wire

_ZERO = Decimal("0")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_DEFAULT_CONTENT_TYPE = "application/octet-stream"


# ---------------------------------------------------------------------------------------------- reading


def read_bill(raw: object) -> wire.Bill | wire.DeletedEntity | SkippedRecord:
    """One Bill object of a query or CDC answer, or why it cannot be read."""
    if isinstance(raw, dict) and raw.get("status") == "Deleted":
        # CDC reports a deleted bill as a tombstone: Id, status and MetaData only.
        return _read(wire.DeletedEntity, raw, "bill")
    return _read(wire.Bill, raw, "bill")


def read_vendor(raw: object) -> wire.Vendor | wire.DeletedEntity | SkippedRecord:
    if isinstance(raw, dict) and raw.get("status") == "Deleted":
        return _read(wire.DeletedEntity, raw, "vendor")
    return _read(wire.Vendor, raw, "vendor")


def _read[T: wire.Wire](model: type[T], raw: object, entity: Literal["bill", "vendor"]) -> T | SkippedRecord:
    provider_id = raw.get("Id") if isinstance(raw, dict) else None
    provider_id = provider_id if isinstance(provider_id, str) else ""
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        return SkippedRecord(
            entity=entity,
            provider_id=provider_id,
            reason=f"QuickBooks {entity} could not be read: {wire.problem(error)}",
        )


# ---------------------------------------------------------------------------------------------- bills


def bill_from_qbo(bill: wire.Bill, document: DocumentRef | None) -> ProviderBill | SkippedRecord:
    """A QuickBooks Bill as a ProviderBill, or why it cannot be one."""
    currency = bill.CurrencyRef.value.strip() if bill.CurrencyRef else ""
    vendor_name = (bill.VendorRef.name or "").strip()
    problems = (
        (not bill.Id.strip(), "has no Id"),
        (not bill.VendorRef.value.strip(), "names no vendor (VendorRef)"),
        (not vendor_name, "has no vendor name (VendorRef.name)"),
        # QuickBooks sends CurrencyRef on every transaction, multicurrency or not.
        (not _CURRENCY.match(currency), f"has no ISO currency code (CurrencyRef is {currency or 'missing'})"),
        (bill.TotalAmt < _ZERO, "has a negative total (TotalAmt)"),
    )
    for failed, reason in problems:
        if failed:
            return SkippedRecord(entity="bill", provider_id=bill.Id, reason=f"QuickBooks bill {reason}")
    is_open = bill.Balance > _ZERO  # no status field: Balance > 0 is QuickBooks' own "open" (I-QUERY)
    return ProviderBill(
        bill_id=bill.Id,
        vendor_id=bill.VendorRef.value,
        vendor_name=vendor_name,
        currency=currency,
        total_amount=bill.TotalAmt,
        amount_due=bill.Balance if is_open else _ZERO,
        invoice_number=_text(bill.DocNumber),
        # PrivateNote is the bill's memo in QuickBooks Online; Bill.Memo is documented QBW-only.
        remittance_note=_text(bill.PrivateNote),
        # TxnDate and DueDate are calendar dates of the company, kept as dates (no time zone to shift).
        issue_date=bill.TxnDate,
        due_date=bill.DueDate,
        is_open=is_open,
        closed_reason=None if is_open else _closed_reason(bill),
        document=document if is_open else None,
        updated_at=_updated_at(bill.MetaData),
    )


def _closed_reason(bill: wire.Bill) -> ClosedReason:
    if bill.TotalAmt == _ZERO:
        # Voiding a bill keeps its Id and zeroes every amount (PrivateNote becomes "Voided").
        return ClosedReason.VOIDED
    kinds = {link.TxnType for link in bill.LinkedTxn}
    if kinds and kinds <= {"VendorCredit"}:
        # Settled only by vendor credits, no payment linked.
        return ClosedReason.CREDITED
    return ClosedReason.PAID_ELSEWHERE


def deleted_bill(tombstone: wire.DeletedEntity) -> ProviderBill:
    """A bill QuickBooks deleted: only the id, `is_open` and `closed_reason` mean anything; the other
    fields are empty because QuickBooks no longer says what they were."""
    return deleted_bill_id(tombstone.Id, _updated_at(tombstone.MetaData))


def deleted_bill_id(bill_id: str, updated_at: datetime | None = None) -> ProviderBill:
    return ProviderBill(
        bill_id=bill_id,
        vendor_id="",
        vendor_name="",
        currency="",
        total_amount=_ZERO,
        amount_due=_ZERO,
        invoice_number=None,
        remittance_note=None,
        issue_date=None,
        due_date=None,
        is_open=False,
        closed_reason=ClosedReason.DELETED,
        document=None,
        updated_at=updated_at,
    )


def document_from_qbo(attachables: Iterable[wire.Attachable]) -> DocumentRef | None:
    """The invoice document among a bill's attachables: a file (not a note), a PDF first, oldest first."""
    files = [item for item in attachables if _text(item.FileName)]
    if not files:
        return None
    chosen = min(files, key=lambda item: (item.ContentType != "application/pdf", _numeric(item.Id)))
    return DocumentRef(
        provider_document_id=chosen.Id,
        file_name=(chosen.FileName or "").strip(),
        content_type=_text(chosen.ContentType) or _DEFAULT_CONTENT_TYPE,
        size_bytes=chosen.Size,
    )


# ---------------------------------------------------------------------------------------------- vendors


def vendor_from_qbo(vendor: wire.Vendor) -> ProviderVendor | SkippedRecord:
    """A QuickBooks Vendor as a ProviderVendor: name, address and email only."""
    # DisplayName is unique per company and always set; CompanyName is the fallback.
    name = _text(vendor.DisplayName) or _text(vendor.CompanyName)
    if not vendor.Id.strip() or name is None:
        reason = "has no Id" if not vendor.Id.strip() else "has no name (DisplayName, CompanyName)"
        return SkippedRecord(entity="vendor", provider_id=vendor.Id, reason=f"QuickBooks vendor {reason}")
    return ProviderVendor(
        vendor_id=vendor.Id,
        name=name,
        email=_text(vendor.PrimaryEmailAddr.Address) if vendor.PrimaryEmailAddr else None,
        address=_address(vendor.BillAddr),
        updated_at=_updated_at(vendor.MetaData),
    )


def _address(address: wire.PhysicalAddress | None) -> PostalAddress | None:
    if address is None:
        return None
    # QuickBooks has five street lines; ours has two, so lines 2-5 share the second.
    rest = [line for line in map(_text, (address.Line2, address.Line3, address.Line4, address.Line5)) if line]
    mapped = PostalAddress(
        line1=_text(address.Line1),
        line2=", ".join(rest) or None,
        city=_text(address.City),
        # CountrySubDivisionCode is the province or state ("ON", "WA").
        region=_text(address.CountrySubDivisionCode),
        postal_code=_text(address.PostalCode),
        # Country is free text in QuickBooks ("CA", "Canada"): passed on as written.
        country=_text(address.Country),
    )
    return mapped if mapped != PostalAddress() else None


# ---------------------------------------------------------------------------------------------- helpers


def _text(value: str | None) -> str | None:
    stripped = (value or "").strip()
    return stripped or None


def _numeric(entity_id: str) -> tuple[int, str]:
    return (int(entity_id), "") if entity_id.isdigit() else (0, entity_id)


def _updated_at(metadata: wire.Metadata | None) -> datetime | None:
    moment = metadata.LastUpdatedTime if metadata else None
    if moment is None:
        return None
    # QuickBooks writes the company's offset ("-07:00"); one without an offset is read as UTC.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
