"""Where Xero payments are built and read back: a bill paid through the platform becomes one Xero
payment against that bill, and its fee one spend-money bank transaction, each exactly once.

Calls: a payment is one `PUT /Payments`; a fee adds `GET /Accounts` (the fee account's code and the
bank account's currency, in one call) and `PUT /BankTransactions`. After an uncertain outcome the
write-back service asks `find_payment` / `find_fee` first: one `GET` each.

A payment run posts up to 50 payments in one `PUT /Payments?summarizeErrors=false` under one
Idempotency-Key (it covers the whole array), and their fees in one `GET /Accounts` and one
`PUT /BankTransactions`; Xero saves the valid elements and answers each refused one with its
ValidationErrors, in the order sent. Look-ups of many: one `GET` per 25, a `where` of ORs.

Where the payment order's facts go in Xero:
- payment order number: first in `Payment.Reference`, whole (and the fee's `Reference`);
- remittance note: after it in `Payment.Reference`, cut to the field's limit. A Xero payment has no
  other free-text field (`Details` is the text a batch payment sends to the supplier's bank), and a
  History note would be a second write that no lookup could check;
- vendor, currency, invoice number: the bill's own - a payment is applied to the bill (`Invoice`)
  and carries no contact, currency or number of its own;
- payment status: not sent. Only completed payments are written back, and `Payment.Status`
  (AUTHORISED, DELETED) is Xero's own state of the payment;
- payment date `Date`, amount `Amount`, funding source `Account` (the mapped bank account),
  exchange rate `CurrencyRate`; the fee: a SPEND bank transaction to the fee expense account.
"""

import json
import re
import uuid
from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_EVEN, Decimal

import requests
from pydantic import ValidationError

from payedge_connect.providers.base import FeeToPost, PaymentRejected, PaymentToPost, Posted
from payedge_connect.providers.http import ProviderApi, ProviderError, ProviderUnavailable
from payedge_connect.providers.xero import wire

# Xero's OpenAPI (16.1.0) gives Payment.Reference and BankTransaction.Reference no maxLength; 255 is
# its limit on the neighbouring reference fields (BatchPayment.Reference, Invoice.InvoiceNumber).
REFERENCE_MAX_LENGTH = 255
# The Idempotency-Key header takes at most 128 characters (docs/providers.md#xero-payments).
IDEMPOTENCY_KEY_MAX_LENGTH = 128
# Ten places keep the bank amount Xero derives (Amount / CurrencyRate) exact to the cent; Xero has
# been seen answering rates with 7 places (singer-io/tap-xero#87), so 6 would be too few.
_RATE_PLACES = Decimal("0.0000000001")
_SEPARATOR = " - "
# ProviderError keeps only the first 300 characters of an error body, so a 400's messages are
# picked out of that text rather than parsed as one JSON document.
_MESSAGE = re.compile(r'"Message"\s*:\s*"((?:[^"\\]|\\.)*)"')

# PUT /Payments and PUT /BankTransactions take arrays; about 50 elements a request is what Xero
# recommends (docs/providers.md#xero-batch; paulschwarz/kohana-xero README).
BATCH_MAX_ELEMENTS = 50
# Look-ups of many name them in one `where` of ORs; 25 keep the URL well under what Xero accepts.
_LOOKUP_CHUNK = 25

JsonObject = dict[str, object]


# ---------------------------------------------------------------------------------------- payments


def find_payment(api: ProviderApi, payment: PaymentToPost) -> str | None:
    """The id of a payment on this bill with the Reference we send, or None: one call.

    Filtered by the bill only and compared here: the Reference carries the remittance note (free
    text), and Xero's where has no reliable escape for a double quote (XeroAPI/Xero-Java#347). A
    bill has a handful of payments. A payment someone deleted at Xero still counts: posting again
    would write the payment order a second time.
    """
    reference = payment_reference(payment)
    response = api.get(
        "Payments", params={"where": f"Invoice.InvoiceID=={_guid(payment.bill_id)}"}, route="GET /Payments"
    )
    for record in _read(response, write=False).payments:
        if record.payment_id and record.reference.strip() == reference:
            return record.payment_id
    return None


def post_payment(api: ProviderApi, payment: PaymentToPost) -> str:
    """Apply the payment to the bill; returns Xero's PaymentID. Raises PaymentRejected when Xero
    refuses it (amount over what is due, bill not AUTHORISED, account taking no payments...)."""
    answer = _put(api, "Payments", {"Payments": [payment_body(payment)]}, payment.idempotency_key)
    record = _accepted(answer.payments, "payment")
    if not record.payment_id:
        raise ProviderUnavailable(200, "Xero accepted the payment but named no PaymentID")
    return record.payment_id


def payment_body(payment: PaymentToPost) -> JsonObject:
    body: JsonObject = {
        "Invoice": {"InvoiceID": payment.bill_id},
        "Account": {"AccountID": payment.bank_account_id},
        "Date": payment.payment_date.isoformat(),
        "Amount": payment.amount,
        "Reference": payment_reference(payment),
    }
    if payment.exchange_rate is not None:
        # Xero ignores CurrencyRate on a bill in the organisation's base currency.
        body["CurrencyRate"] = currency_rate(payment.exchange_rate)
    return body


def payment_reference(payment: PaymentToPost) -> str:
    """The payment order number, then the remittance note on one line, cut to REFERENCE_MAX_LENGTH."""
    note = " ".join((payment.remittance_note or "").split())
    return fit_reference(f"{payment.reference}{_SEPARATOR}{note}" if note else payment.reference)


def fit_reference(text: str) -> str:
    # Stripped after the cut: Xero keeps no trailing space, and the lookups compare what it kept.
    return text.strip()[:REFERENCE_MAX_LENGTH].strip()


def currency_rate(exchange_rate: Decimal) -> Decimal:
    """Xero's CurrencyRate for the platform's exchange rate.

    The platform quotes the bill's currency in the base currency, as QuickBooks' ExchangeRate does
    (1 USD = 1.3725 CAD: 1.3725). Xero's CurrencyRate goes the other way: bill-currency units per
    unit of base currency (0.7285974499 USD per CAD).
    """
    return (Decimal(1) / exchange_rate).quantize(_RATE_PLACES, rounding=ROUND_HALF_EVEN)


# -------------------------------------------------------------------------------------------- fees


def find_fee(api: ProviderApi, fee: FeeToPost) -> str | None:
    """The id of a spend-money transaction from the bank account with the fee's Reference, or None."""
    reference = fit_reference(fee.reference)
    where = f'Type=="SPEND" AND BankAccount.AccountID=={_guid(fee.bank_account_id)} AND Reference=={_string(reference)}'
    response = api.get("BankTransactions", params={"where": where}, route="GET /BankTransactions")
    for record in _read(response, write=False).bank_transactions:
        if record.bank_transaction_id and record.type == "SPEND" and record.reference.strip() == reference:
            return record.bank_transaction_id
    return None


def post_fee(api: ProviderApi, fee: FeeToPost) -> str:
    """Book the fee as a SPEND bank transaction; returns Xero's BankTransactionID."""
    body: JsonObject = {"BankTransactions": [fee_body(fee, _fee_account_code(api, fee))]}
    record = _accepted(_put(api, "BankTransactions", body, fee.idempotency_key).bank_transactions, "fee")
    if not record.bank_transaction_id:
        raise ProviderUnavailable(200, "Xero accepted the fee but named no BankTransactionID")
    return record.bank_transaction_id


def fee_body(fee: FeeToPost, account_code: str) -> JsonObject:
    return {
        "Type": "SPEND",
        "Contact": {"ContactID": fee.vendor_id},
        "BankAccount": {"AccountID": fee.bank_account_id},
        "Date": fee.payment_date.isoformat(),
        "Reference": fit_reference(fee.reference),
        # NoTax: the line is exactly what left the bank. Xero's default (Exclusive) would add the
        # fee account's default tax rate on top of the fee.
        "LineAmountTypes": "NoTax",
        "LineItems": [
            {"Description": fee.description, "Quantity": 1, "UnitAmount": fee.amount, "AccountCode": account_code}
        ],
    }


def _fee_account_code(api: ProviderApi, fee: FeeToPost) -> str:
    """The fee account's Code, and a check that the bank account is in the fee's currency: one call.

    Xero books bank-transaction lines by AccountCode (LineItem.AccountID is read-only there,
    XeroAPI/Xero-OpenAPI#414).
    """
    where = f"AccountID=={_guid(fee.expense_account_id)} OR AccountID=={_guid(fee.bank_account_id)}"
    answer = _read(api.get("Accounts", params={"where": where}, route="GET /Accounts"), write=False)
    return _fee_code({account.account_id.lower(): account for account in answer.accounts}, fee)


def _fee_code(accounts: dict[str, wire.Account], fee: FeeToPost) -> str:
    """The fee account's Code from the accounts read. A bank transaction is always in its bank
    account's currency, so a fee in another currency would be booked as the wrong amount: refused."""
    expense = accounts.get(fee.expense_account_id.lower())
    if expense is None or expense.code is None:
        raise PaymentRejected(f"The fee account {fee.expense_account_id} has no account code in Xero.")
    bank = accounts.get(fee.bank_account_id.lower())
    if bank is not None and bank.currency_code and bank.currency_code != fee.currency:
        raise PaymentRejected(
            f"The fee is in {fee.currency} but the bank account pays in {bank.currency_code}: "
            "Xero books a bank transaction in its bank account's currency."
        )
    return expense.code


# ----------------------------------------------------------------------------------------- helpers


def _put(api: ProviderApi, collection: str, body: JsonObject, idempotency_key: str) -> wire.WriteBackEnvelope:
    """PUT with Xero's Idempotency-Key, so retrying a lost answer replays it (for 6 minutes)."""
    if not 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_MAX_LENGTH:
        raise ValueError(f"an Idempotency-Key has 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters")
    try:
        response = api.request(
            "PUT",
            collection,
            idempotent=True,
            route=f"PUT /{collection}",
            # summarizeErrors=false: a refused element comes back in a 200 with its ValidationErrors.
            params={"summarizeErrors": "false"},
            json=body,
            headers={"Idempotency-Key": idempotency_key},
        )
    except ProviderError as error:
        if error.status == 400 and '"ValidationException"' in error.message:
            raise PaymentRejected(_messages(error.message)) from None
        raise
    return _read(response, write=True)


def _accepted[T: wire.WrittenElement](records: list[T], what: str) -> T:
    """The one element of a PUT answer, or PaymentRejected with Xero's reasons."""
    if not records:
        raise ProviderUnavailable(200, f"Xero's answer to the {what} has no element")
    record = records[0]
    if record.validation_errors or record.status_attribute_string == "ERROR":
        reasons = "; ".join(error.message for error in record.validation_errors)
        raise PaymentRejected(reasons or f"Xero refused the {what}")
    return record


def _read(response: requests.Response, *, write: bool) -> wire.WriteBackEnvelope:
    try:
        return wire.WriteBackEnvelope.model_validate(response.json())
    except (ValueError, ValidationError):
        # An unreadable answer to a write leaves its outcome unknown: retried, so looked up first.
        error = ProviderUnavailable if write else ProviderError
        raise error(response.status_code, "Xero answered something write-back cannot read") from None


def _messages(body: str) -> str:
    """The reasons in (the start of) a ValidationException body: the elements' ValidationErrors when
    they fit in what was kept, else the exception's own Message."""
    messages = [json.loads(f'"{text}"') for text in _MESSAGE.findall(body)]
    return "; ".join(messages[1:] or messages) or body


def _guid(value: str) -> str:
    """A where-clause guid literal; anything but a GUID is refused before it reaches the query."""
    return f'guid("{uuid.UUID(value)}")'


def _string(value: str) -> str:
    # Xero's where is .NET Dynamic LINQ: a double quote inside a string literal is written twice.
    return '"' + value.replace('"', '""') + '"'


# ----------------------------------------------------------------------------------------- payment runs


def post_payments(api: ProviderApi, payments: Sequence[PaymentToPost], idempotency_key: str) -> list[Posted]:
    """One `PUT /Payments?summarizeErrors=false` with every payment: Xero saves the valid elements and
    answers each refused one with its ValidationErrors (not transactional: xero-ruby#247, Xero-Net#354)."""
    _check_batch(payments)
    answer = _put(api, "Payments", {"Payments": [payment_body(p) for p in payments]}, idempotency_key)
    return _outcomes(answer.payments, len(payments), lambda record: record.payment_id)


def find_payments(api: ProviderApi, payments: Sequence[PaymentToPost]) -> dict[str, str]:
    """Payments on these bills with the References we send: one `GET /Payments` per 25 bills."""
    found: dict[str, str] = {}
    for start in range(0, len(payments), _LOOKUP_CHUNK):
        chunk = payments[start : start + _LOOKUP_CHUNK]
        where = " OR ".join(sorted({f"Invoice.InvoiceID=={_guid(p.bill_id)}" for p in chunk}))
        records = _read(api.get("Payments", params={"where": where}, route="GET /Payments"), write=False).payments
        by_reference = {record.reference.strip(): record.payment_id for record in records if record.payment_id}
        for payment in chunk:
            payment_id = by_reference.get(payment_reference(payment))
            if payment_id:
                found[payment.reference] = payment_id
    return found


def post_fees(api: ProviderApi, fees: Sequence[FeeToPost], idempotency_key: str) -> list[Posted]:
    """One `GET /Accounts` for every fee's account code and bank currency, then one
    `PUT /BankTransactions?summarizeErrors=false` with the fees that can be booked."""
    _check_batch(fees)
    ids = sorted({fee.expense_account_id for fee in fees} | {fee.bank_account_id for fee in fees})
    where = " OR ".join(f"AccountID=={_guid(account_id)}" for account_id in ids)
    answer = _read(api.get("Accounts", params={"where": where}, route="GET /Accounts"), write=False)
    accounts = {account.account_id.lower(): account for account in answer.accounts}
    outcomes: list[Posted | None] = []
    bodies: list[JsonObject] = []
    for fee in fees:
        try:
            bodies.append(fee_body(fee, _fee_code(accounts, fee)))
            outcomes.append(None)
        except PaymentRejected as error:
            outcomes.append(Posted(refused=str(error)))
    if bodies:
        written = _put(api, "BankTransactions", {"BankTransactions": bodies}, idempotency_key).bank_transactions
        posted = iter(_outcomes(written, len(bodies), lambda record: record.bank_transaction_id))
        outcomes = [outcome if outcome is not None else next(posted) for outcome in outcomes]
    return [outcome or Posted() for outcome in outcomes]


def find_fees(api: ProviderApi, fees: Sequence[FeeToPost]) -> dict[str, str]:
    """Spend-money transactions with these fees' References: one `GET /BankTransactions` per 25 fees."""
    found: dict[str, str] = {}
    for start in range(0, len(fees), _LOOKUP_CHUNK):
        chunk = fees[start : start + _LOOKUP_CHUNK]
        references = " OR ".join(f"Reference=={_string(fit_reference(fee.reference))}" for fee in chunk)
        where = f'Type=="SPEND" AND ({references})'
        records = _read(
            api.get("BankTransactions", params={"where": where}, route="GET /BankTransactions"), write=False
        ).bank_transactions
        for fee in chunk:
            reference = fit_reference(fee.reference)
            for record in records:
                if record.bank_transaction_id and record.type == "SPEND" and record.reference.strip() == reference:
                    found[fee.reference] = record.bank_transaction_id
                    break
    return found


def _check_batch(members: Sequence[object]) -> None:
    if not 0 < len(members) <= BATCH_MAX_ELEMENTS:
        raise ValueError(f"a Xero batch holds 1 to {BATCH_MAX_ELEMENTS} elements, not {len(members)}")


def _outcomes[T: wire.WrittenElement](records: list[T], sent: int, ident: Callable[[T], str | None]) -> list[Posted]:
    """One Posted per element sent: Xero answers the elements in the order they were sent. An answer
    with another count of elements cannot be matched to them: unknown, so looked up."""
    if len(records) != sent:
        raise ProviderUnavailable(200, f"Xero answered {len(records)} elements to {sent} sent")
    outcomes = []
    for record in records:
        if record.validation_errors or record.status_attribute_string == "ERROR":
            reasons = "; ".join(error.message for error in record.validation_errors)
            outcomes.append(Posted(refused=reasons or "Xero refused the element"))
        else:
            outcomes.append(Posted(provider_id=ident(record)))
    return outcomes


# ----------------------------------------------------------------------------------------- reversal
# A payment the platform reversed is undone: the Payment deleted (the bill owes the amount again, PAID
# becomes AUTHORISED), the fee's spend-money BankTransaction deleted. Neither call is resent by the HTTP
# layer: after a lost answer the write-back reads the record's Status instead.


def reverse_payment(api: ProviderApi, payment_id: str) -> None:
    """`POST /Payments/{PaymentID}` with `{"Payments": [{"Status": "DELETED"}]}`: Xero's OpenAPI operation
    `deletePayment` (schema PaymentDelete: Status, default DELETED); only Status is accepted for updates
    (calcinai/xero-php#250, XeroAPI/xero-node#115). A reconciled payment cannot be deleted, nor one made
    through a batch payment (PROVIDERS.md §7): PaymentRejected with Xero's words."""
    _delete(api, "Payments", payment_id)


def payment_reversed(api: ProviderApi, payment_id: str) -> bool:
    """Whether the payment is DELETED (or gone): one `GET /Payments/{PaymentID}`."""
    return _deleted(api, "Payments", payment_id)


def reverse_fee(api: ProviderApi, transaction_id: str) -> None:
    """`POST /BankTransactions/{BankTransactionID}` with `{"BankTransactions": [{"Status": "DELETED"}]}`:
    Xero's `updateBankTransaction`; a bank transaction is removed by its Status (PROVIDERS.md §7), and
    a reconciled one is refused as a reconciled payment is."""
    _delete(api, "BankTransactions", transaction_id)


def fee_reversed(api: ProviderApi, transaction_id: str) -> bool:
    return _deleted(api, "BankTransactions", transaction_id)


def _delete(api: ProviderApi, collection: str, record_id: str) -> None:
    try:
        response = api.request(
            "POST",
            f"{collection}/{uuid.UUID(record_id)}",
            idempotent=False,
            route=f"POST /{collection}/{{id}}",
            json={collection: [{"Status": "DELETED"}]},
        )
    except ProviderError as error:
        if error.status == 400 and '"ValidationException"' in error.message:
            raise PaymentRejected(_messages(error.message)) from None
        raise
    answer = _read(response, write=True)
    records = answer.payments if collection == "Payments" else answer.bank_transactions
    _accepted(list(records), "deletion")


def _deleted(api: ProviderApi, collection: str, record_id: str) -> bool:
    try:
        response = api.get(f"{collection}/{uuid.UUID(record_id)}", route=f"GET /{collection}/{{id}}")
    except ProviderError as error:
        if error.status == 404:
            return True
        raise
    answer = _read(response, write=False)
    records = answer.payments if collection == "Payments" else answer.bank_transactions
    return bool(records) and all(record.status == "DELETED" for record in records)
