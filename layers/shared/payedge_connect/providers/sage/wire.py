"""Sage Accounting v3.1 JSON as this service reads it: only the fields used, everything else ignored.

Field names follow the Swagger definitions (docs/providers.md#specs, S-SW). Every field is optional here;
bills.py decides what a record cannot do without and says so in words a user can read. Amounts are
Decimals: pages are parsed with `parse_float=Decimal`, and Sage sometimes sends amounts as strings
("110.0" in its attributes guide), which pydantic turns into Decimals without a float in between.
"""

import datetime as dt
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Ref(WireModel):
    """Sage's `Base`: a link to another resource."""

    id: str | None = None
    displayed_as: str | None = None


class Page(WireModel):
    """Sage's list envelope (S-PAG): follow `$next` until it is null."""

    items: list[Any] = Field(alias="$items")
    next: str | None = Field(default=None, alias="$next")


class TransactionRef(Ref):
    # A string in the Swagger; read leniently in bills.py (unknown means "look it up").
    number_of_attachments: str | int | None = None


class PaymentAllocation(WireModel):
    """One entry of `payments_allocations` (with show_payments_allocations=true)."""

    type: str | None = None
    amount: Decimal | None = None
    contact_payment: Ref | None = None
    contact_allocation: Ref | None = None


class PurchaseInvoice(WireModel):
    id: str | None = None
    displayed_as: str | None = None
    contact: Ref | None = None
    contact_name: str | None = None
    currency: Ref | None = None
    total_amount: Decimal | None = None
    outstanding_amount: Decimal | None = None
    vendor_reference: str | None = None
    notes: str | None = None
    date: dt.date | None = None
    due_date: dt.date | None = None
    status: Ref | None = None
    transaction: TransactionRef | None = None
    payments_allocations: list[PaymentAllocation] | None = None
    updated_at: dt.datetime | None = None
    deleted_at: dt.datetime | None = None


class Address(WireModel):
    address_line_1: str | None = None
    address_line_2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: Ref | None = None


class Contact(WireModel):
    """A Sage contact, read for name, address and email only: the Swagger's tax_number,
    bank_account_details, notes and main_contact_person are deliberately not modelled."""

    id: str | None = None
    name: str | None = None
    email: str | None = None
    main_address: Address | None = None
    updated_at: dt.datetime | None = None
    deleted_at: dt.datetime | None = None


class Attachment(WireModel):
    id: str | None = None
    file_name: str | None = None
    mime_type: str | None = None
    file_size: int | None = None
    attachment_context_type: Ref | None = None
    attachment_context: Ref | None = None


def problem(error: ValidationError) -> str:
    """A pydantic error in words, naming fields but never their values (which may be personal)."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in item["loc"]) or "record"
        parts.append(f"{where}: {item['msg'][:1].lower()}{item['msg'][1:]}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------- write-back


class AllocatedArtefact(WireModel):
    """One entry of a contact payment's `allocated_artefacts`: the purchase invoice it pays, and how much."""

    artefact: Ref | None = None
    amount: Decimal | None = None


class ContactPayment(WireModel):
    """A contact payment as payments.py reads it back: enough to recognise one we posted."""

    id: str | None = None
    reference: str | None = None
    allocated_artefacts: list[AllocatedArtefact] | None = None


class OtherPaymentLine(WireModel):
    ledger_account: Ref | None = None
    total_amount: Decimal | None = None


class OtherPayment(WireModel):
    """An other payment (a fee we posted) as payments.py reads it back."""

    id: str | None = None
    reference: str | None = None
    bank_account: Ref | None = None
    payment_lines: list[OtherPaymentLine] | None = None
