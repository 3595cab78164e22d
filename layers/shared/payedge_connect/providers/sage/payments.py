"""Where Sage payments are built and read back: a bill paid through the platform becomes one contact
payment (VENDOR_PAYMENT) allocated to its purchase invoice, and its fee one other payment
(OTHER_PAYMENT) from the same bank account to the fee expense account, each exactly once.

Facts: docs/providers.md#sage-payments, #sage-fees, #sage-errors (Swagger: postContactPayments, postOtherPayments).
- Every post carries Sage's `idempotency_id` inside the resource (S-IDEM): Sage answers a repeated id
  with the first answer for 7 days, so a dropped or failed call is resent with the same id. When our
  record says an earlier attempt may have reached Sage, the write-back service asks `find_payment` /
  `find_fee` first, which also covers attempts older than Sage's 7 days.
- A refusal is a 422 with Sage's error array (S-RC): PaymentRejected in Sage's words.

Where the payment order's facts go in Sage:
- payment order number: `reference`, cut to 25 characters (the fee's `reference` too);
- vendor `contact_id`, funding source `bank_account_id`, payment date `date`, amount `total_amount` and
  the allocation's `amount`, currency `currency_id`, exchange rate `exchange_rate` (inverted, below);
- invoice number: the bill's own (`vendor_reference`): the payment is allocated to the bill;
- remittance note and payment status: not sent. A contact payment has no free-text field (the
  Swagger's postContactPayments has no notes, memo or details), and its 25-character `reference`
  is the payment order number's;
- fee: an other payment with one line to the fee account; the line's `details` carries its description.

Calls: post_payment 1, post_fee 1, find_payment 1, find_fee 1 (each list read is one page of 200
unless the vendor or bank account has more payments than that within three days). A payment run posts
each payment on its own (Sage has no batch path); its look-ups read the payments of the run's dates
once, 200 a page.
"""

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import partial
from typing import Any

import requests
from pydantic import BaseModel, ValidationError

from payedge_connect.providers.base import FeeToPost, PaymentRejected, PaymentToPost, Posted
from payedge_connect.providers.http import ProviderApi, ProviderError, ProviderUnavailable
from payedge_connect.providers.sage import paging, wire
from payedge_connect.providers.sage.paging import Listing

# ContactPayment.reference and OtherPayment.reference have maxLength 25 in the Swagger (S-SW; its note
# allows 40 "conditionally", so 25 is what always fits).
REFERENCE_MAX = 25
# Sage has no batch path (none of the Swagger's 169 paths takes many payments, docs/providers.md#sage-batch): a
# payment run posts one contact payment per payment order, each under its own idempotency_id.
BATCH_MAX_ELEMENTS = 1
VENDOR_PAYMENT = "VENDOR_PAYMENT"
# The transaction type of a bank payment out that pays no invoice. No primary listing names it
# (docs/providers.md#sage-fees); it is the id Sage's /transaction_types lists as "Other Payment", and the one
# public Sage clients post.
OTHER_PAYMENT = "OTHER_PAYMENT"
# Sage keeps exchange rates to 6 decimal places (its inverse rates read like 0.833333).
_RATE_PLACES = Decimal("0.000001")
_IDEMPOTENCY_ID = re.compile(r"[0-9a-f]{32}")
# One complete object of Sage's error array; ProviderError keeps only the first 300 characters of a body.
_ERROR_OBJECT = re.compile(r"\{[^{}]*\}")
# A look-up reads one day either side of the payment date: Sage does not say whether from_date and
# to_date are inclusive.
_LOOKUP_MARGIN = timedelta(days=1)


# ---------------------------------------------------------------------------------------------- payment


def contact_payment(payment: PaymentToPost) -> dict[str, Any]:
    """The contact payment that pays `payment.amount` of the bill from the mapped bank account."""
    fields: dict[str, Any] = {
        "transaction_type_id": VENDOR_PAYMENT,
        "contact_id": payment.vendor_id,
        "bank_account_id": payment.bank_account_id,
        "date": payment.payment_date.isoformat(),
        "total_amount": payment.amount,
        "currency_id": payment.currency,
        "reference": reference(payment.reference),
        # The whole amount goes to the bill: anything unallocated would become a payment on account (S-PAY).
        "allocated_artefacts": [{"artefact_id": payment.bill_id, "amount": payment.amount}],
        "idempotency_id": idempotency_id(payment.idempotency_key),
    }
    if payment.exchange_rate is not None:
        fields["exchange_rate"] = exchange_rate(payment.exchange_rate)
    return fields


def post_payment(api: ProviderApi, payment: PaymentToPost) -> str:
    """Record the payment against the bill; returns Sage's contact payment id. Raises PaymentRejected
    when Sage refuses it (amount over what is outstanding, bill not payable, bank account or currency...)."""
    response = _create(api, "contact_payments", "contact_payment", contact_payment(payment))
    return _created_id(response, wire.ContactPayment, "contact payment")


def find_payment(api: ProviderApi, payment: PaymentToPost) -> str | None:
    """The id of a vendor payment with our reference that pays this bill, or None: one list read of the
    vendor's payments around the payment date, with only the attributes compared."""
    wanted = reference(payment.reference)
    params = {
        "contact_id": payment.vendor_id,
        "transaction_type_id": VENDOR_PAYMENT,
        **_around(payment.payment_date),
        "attributes": "reference,allocated_artefacts",
    }
    for raw in paging.read_all(api, Listing("payment look-up", "contact_payments", params)):
        found = _read(wire.ContactPayment, raw)
        if found is None or not found.id or (found.reference or "").strip() != wanted:
            continue
        allocations = found.allocated_artefacts or []
        if any(item.artefact is not None and item.artefact.id == payment.bill_id for item in allocations):
            return found.id
    return None


# ---------------------------------------------------------------------------------------------- fee


def other_payment(fee: FeeToPost) -> dict[str, Any]:
    """The other payment that books the fee from the bank account to the fee expense account.

    No contact_id: the fee is the platform's, not the vendor's, so it must not count as spend with the
    vendor. Sage books it in the bank account's currency (an other payment has no currency_id)."""
    return {
        "transaction_type_id": OTHER_PAYMENT,
        # Not required by the Swagger, but a payment out leaves from a bank account.
        "bank_account_id": fee.bank_account_id,
        "date": fee.payment_date.isoformat(),
        "total_amount": fee.amount,
        "reference": reference(fee.reference),
        "payment_lines": [
            {"ledger_account_id": fee.expense_account_id, "total_amount": fee.amount, "details": fee.description}
        ],
        # The fee's key differs from the payment's: Sage refuses an id reused on another resource type.
        "idempotency_id": idempotency_id(fee.idempotency_key),
    }


def post_fee(api: ProviderApi, fee: FeeToPost) -> str:
    """Record the fee as its own other payment; returns Sage's id for it."""
    response = _create(api, "other_payments", "other_payment", other_payment(fee))
    return _created_id(response, wire.OtherPayment, "other payment")


def find_fee(api: ProviderApi, fee: FeeToPost) -> str | None:
    """The id of an other payment with our reference from the bank account to the fee account, or None:
    one list read of the bank account's other payments around the payment date."""
    wanted = reference(fee.reference)
    params = {
        "transaction_type_id": OTHER_PAYMENT,
        "bank_account_id": fee.bank_account_id,
        **_around(fee.payment_date),
        "attributes": "reference,bank_account,payment_lines",
    }
    for raw in paging.read_all(api, Listing("fee look-up", "other_payments", params)):
        found = _read(wire.OtherPayment, raw)
        if found is None or not found.id or (found.reference or "").strip() != wanted:
            continue
        if found.bank_account is not None and found.bank_account.id != fee.bank_account_id:
            continue
        lines = found.payment_lines or []
        if any(line.ledger_account is not None and line.ledger_account.id == fee.expense_account_id for line in lines):
            return found.id
    return None


# ---------------------------------------------------------------------------------------------- fields


def reference(payment_order_number: str) -> str:
    """The payment order number in Sage's 25-character reference, keeping its end: order numbers share
    their beginning and differ at the end."""
    return payment_order_number.strip()[-REFERENCE_MAX:]


def idempotency_id(key: str) -> str:
    """Sage's idempotency_id: 32 hex characters without hyphens (S-IDEM). Our keys already have that
    form (writeback.service.idempotency_key); a UUID loses its hyphens; anything else is hashed to it."""
    compact = key.replace("-", "").lower()
    if _IDEMPOTENCY_ID.fullmatch(compact):
        return compact
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def exchange_rate(rate: Decimal) -> Decimal:
    """Sage's exchange_rate for the platform's rate.

    The platform gives base-currency units for one unit of the bill's currency (1 USD = 1.3725 CAD:
    1.3725), as QuickBooks does. Sage's exchange_rate goes the other way, bill-currency units per base
    unit (its `inverse_exchange_rate` is the platform's direction; the Swagger does not define either).
    """
    return (Decimal(1) / rate).quantize(_RATE_PLACES, rounding=ROUND_HALF_EVEN)


def _around(day: date) -> dict[str, str]:
    return {"from_date": (day - _LOOKUP_MARGIN).isoformat(), "to_date": (day + _LOOKUP_MARGIN).isoformat()}


# ---------------------------------------------------------------------------------------------- calls


def _create(api: ProviderApi, collection: str, resource: str, fields: Mapping[str, Any]) -> requests.Response:
    """POST one resource under its idempotency_id; a 422 (Sage's "invalid data") is PaymentRejected."""
    try:
        return api.request(
            "POST",
            collection,
            # The idempotency_id in the body makes a resend safe: Sage answers it with the first answer.
            idempotent=True,
            route=f"POST /{collection}",
            json={resource: fields},
        )
    except ProviderError as error:
        if error.status == 422:
            raise PaymentRejected(_refusal(error.message)) from None
        raise


def _created_id(response: requests.Response, model: type[wire.ContactPayment | wire.OtherPayment], what: str) -> str:
    """The id of the created resource. An answer without one leaves the outcome unknown, so it is
    ProviderUnavailable: the next attempt looks the payment up before posting again."""
    try:
        body = response.json(parse_float=Decimal)
    except requests.JSONDecodeError:
        body = None
    created = _read(model, body)
    if created is None or not created.id:
        raise ProviderUnavailable(response.status_code, f"Sage answered the {what} without its id")
    return created.id


def _refusal(text: str) -> str:
    """Sage's own words from its error array, "source: message; ..." (the raw text when none can be read)."""
    parts: list[str] = []
    for match in _ERROR_OBJECT.finditer(text):
        try:
            item = json.loads(match.group(0))
        except ValueError:
            continue
        message = item.get("$message") if isinstance(item, dict) else None
        if not isinstance(message, str) or not message:
            continue
        source = item.get("$source")
        parts.append(f"{source}: {message}" if isinstance(source, str) and source else message)
    return "; ".join(parts) or text


def _read[T: BaseModel](model: type[T], raw: object) -> T | None:
    # A record that cannot be read is not one we posted: ours always have what the model reads.
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


# ---------------------------------------------------------------------------------------------- payment runs


def post_payments(api: ProviderApi, payments: Sequence[PaymentToPost], idempotency_key: str) -> list[Posted]:
    """Each payment on its own, under its own idempotency_id (`idempotency_key` names the run's batch,
    which Sage has no use for)."""
    return [_posted(partial(post_payment, api, payment)) for payment in payments]


def post_fees(api: ProviderApi, fees: Sequence[FeeToPost], idempotency_key: str) -> list[Posted]:
    return [_posted(partial(post_fee, api, fee)) for fee in fees]


def find_payments(api: ProviderApi, payments: Sequence[PaymentToPost]) -> dict[str, str]:
    """One list read of the vendor payments around the run's payment dates, matched by reference and bill."""
    if not payments:
        return {}
    params = {
        "transaction_type_id": VENDOR_PAYMENT,
        **_spanning([payment.payment_date for payment in payments]),
        "attributes": "reference,allocated_artefacts",
    }
    wanted = {(reference(payment.reference), payment.bill_id): payment.reference for payment in payments}
    found: dict[str, str] = {}
    for raw in paging.read_all(api, Listing("payment look-up", "contact_payments", params)):
        record = _read(wire.ContactPayment, raw)
        if record is None or not record.id:
            continue
        for item in record.allocated_artefacts or []:
            number = wanted.get(((record.reference or "").strip(), (item.artefact.id or "") if item.artefact else ""))
            if number is not None:
                found[number] = record.id
    return found


def find_fees(api: ProviderApi, fees: Sequence[FeeToPost]) -> dict[str, str]:
    """One list read of the other payments around the run's payment dates, matched by reference,
    bank account and fee account."""
    if not fees:
        return {}
    params = {
        "transaction_type_id": OTHER_PAYMENT,
        **_spanning([fee.payment_date for fee in fees]),
        "attributes": "reference,bank_account,payment_lines",
    }
    wanted = {reference(fee.reference): fee for fee in fees}
    found: dict[str, str] = {}
    for raw in paging.read_all(api, Listing("fee look-up", "other_payments", params)):
        record = _read(wire.OtherPayment, raw)
        fee = wanted.get((record.reference or "").strip()) if record else None
        if record is None or fee is None or not record.id:
            continue
        if record.bank_account is not None and record.bank_account.id != fee.bank_account_id:
            continue
        lines = record.payment_lines or []
        if any(line.ledger_account is not None and line.ledger_account.id == fee.expense_account_id for line in lines):
            found[fee.reference] = record.id
    return found


def _posted(post: Callable[[], str]) -> Posted:
    try:
        return Posted(provider_id=post())
    except PaymentRejected as error:
        return Posted(refused=str(error))


def _spanning(days: list[date]) -> dict[str, str]:
    return {"from_date": (min(days) - _LOOKUP_MARGIN).isoformat(), "to_date": (max(days) + _LOOKUP_MARGIN).isoformat()}


# ---------------------------------------------------------------------------------------------- reversal
# A payment the platform reversed is undone: the contact payment deleted (the invoice owes the amount
# again), the fee's other payment deleted. Neither call is resent by the HTTP layer: after a lost answer
# the write-back reads the record instead (a deleted one is not found).


def reverse_payment(api: ProviderApi, payment_id: str) -> None:
    """`DELETE /contact_payments/{key}`, 204 (Sage Accounting v3.1 Swagger, operation
    deleteContactPaymentsKey); a 422 is Sage refusing, in its words."""
    _delete(api, "contact_payments", payment_id)


def payment_reversed(api: ProviderApi, payment_id: str) -> bool:
    return _gone(api, "contact_payments", payment_id)


def reverse_fee(api: ProviderApi, fee_id: str) -> None:
    """`DELETE /other_payments/{key}`, 204 (Sage Accounting v3.1 Swagger, operation deleteOtherPaymentsKey)."""
    _delete(api, "other_payments", fee_id)


def fee_reversed(api: ProviderApi, fee_id: str) -> bool:
    return _gone(api, "other_payments", fee_id)


def _key(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{32}", value):
        raise ValueError(f"a Sage key is 32 hex characters, not {value!r}")
    return value


def _delete(api: ProviderApi, collection: str, key: str) -> None:
    try:
        api.request("DELETE", f"{collection}/{_key(key)}", idempotent=False, route=f"DELETE /{collection}/{{key}}")
    except ProviderError as error:
        if error.status == 404:
            return  # already deleted: what we wanted
        if error.status == 422:
            raise PaymentRejected(_refusal(error.message)) from None
        raise


def _gone(api: ProviderApi, collection: str, key: str) -> bool:
    try:
        api.get(f"{collection}/{_key(key)}", route=f"GET /{collection}/{{key}}")
    except ProviderError as error:
        if error.status == 404:
            return True
        raise
    return False
