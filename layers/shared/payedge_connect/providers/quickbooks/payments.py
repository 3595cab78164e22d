"""Where QuickBooks payments are built and read back: a bill's payment (BillPayment) and its fee (Purchase).

Facts: docs/providers.md#quickbooks-payments, #quickbooks-fees and #quickbooks-errors.
- A payment is `POST billpayment?requestid=<key>`: a Check bill payment from the mapped bank account
  with one line linking the bill. Intuit answers a repeated requestid with the first answer (I-REQID),
  so a dropped or failed call is resent with the same key; when our record says an earlier attempt may
  have reached QuickBooks, `find_payment` looks the payment up by its DocNumber first.
- The fee is `POST purchase?requestid=<fee key>`: a Check expense from the same bank account, one line to
  the fee expense account.
- A refusal is a Fault of type ValidationFault: QuickBooks answers it with HTTP 400, sometimes inside a 200.

Payment runs go through `POST /batch`: up to 30 BillPayment (or Purchase) creates in one request under
one requestid, each answered by its `bId` with the created entity or its own Fault (I-BATCH; Intuit's
limits page recommends at most 30 items, docs/providers.md#quickbooks-batch). A look-up of many is one query
`select * from BillPayment where DocNumber in (...)`.

Calls: post_payment 1, post_fee 1, find_payment 1, find_fee 1 (resends after a dropped answer aside);
post_payments / post_fees 1 per 30, find_payments / find_fees 1 per 1,000.
"""

import json
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import requests
from pydantic import ValidationError

from payedge_connect.providers.base import FeeToPost, PaymentRejected, PaymentToPost, Posted
from payedge_connect.providers.http import ProviderApi, ProviderError, ProviderUnavailable
from payedge_connect.providers.quickbooks import wire

# DocNumber holds "a maximum of 21 chars" (Intuit's BillPayment and Purchase references, Finance.xsd).
DOC_NUMBER_MAX = 21
# PrivateNote holds "max of 4000 chars" (Intuit's BillPayment and Purchase references).
PRIVATE_NOTE_MAX = 4000
# A requestid has at most 50 characters outside batch (I-REQID).
REQUEST_ID_MAX = 50
# Intuit refuses a DocNumber already used (6140) unless asked to allow it: the fee carries its payment's
# number, and a cut order number can equal a check number the business wrote itself.
_ALLOW_DUPLICATE_DOC_NUMBER = "allowduplicatedocnum"
_VALIDATION_FAULT = "ValidationFault"
# "Recommended maximum of 30" items per batch; 31 failed for a user (QuickBooks-V3-DotNET-SDK #358, the
# SDK raised its cap to 30 in #363; docs/providers.md#quickbooks-batch). bId holds at most 10 characters (I-REQID).
BATCH_MAX_ITEMS = 30
# A query answers at most 1,000 objects (MAXRESULTS).
_LOOKUP_CHUNK = 1000


# ---------------------------------------------------------------------------------------------- payment


def bill_payment(payment: PaymentToPost) -> dict[str, Any]:
    """The BillPayment that pays `payment.amount` of the bill from the mapped bank account."""
    body: dict[str, Any] = {
        "VendorRef": {"value": payment.vendor_id},
        "PayType": "Check",
        # NotSet: the platform has paid; the default NeedToPrint would queue a cheque to print.
        "CheckPayment": {"BankAccountRef": {"value": payment.bank_account_id}, "PrintStatus": "NotSet"},
        "TotalAmt": payment.amount,
        "TxnDate": payment.payment_date.isoformat(),
        "DocNumber": doc_number(payment.reference),
        "PrivateNote": payment_note(payment),
        # Required once the company has multicurrency on; the bill's own currency either way.
        "CurrencyRef": {"value": payment.currency},
        "Line": [{"Amount": payment.amount, "LinkedTxn": [{"TxnId": payment.bill_id, "TxnType": "Bill"}]}],
    }
    if payment.exchange_rate is not None:
        # Home-currency units for one unit of the bill's currency, as QuickBooks defines ExchangeRate.
        body["ExchangeRate"] = payment.exchange_rate
    return body


def payment_note(payment: PaymentToPost) -> str:
    """PrivateNote (the payment's Memo in QuickBooks) is where the order number, invoice number, payment
    status and remittance note go: BillPayment has no other free-text field. The remittance note comes
    last, so it is the only part ever cut to the 4,000 characters."""
    parts = [f"PayEdge payment order {payment.reference}"]
    if payment.invoice_number:
        parts.append(f"invoice {payment.invoice_number}")
    parts.append(f"payment status {payment.payment_status}")
    if payment.remittance_note:
        parts.append(f"remittance note: {payment.remittance_note}")
    return "; ".join(parts)[:PRIVATE_NOTE_MAX]


def post_payment(api: ProviderApi, payment: PaymentToPost) -> str:
    return _create(api, "billpayment", "BillPayment", payment.idempotency_key, bill_payment(payment))


def find_payment(api: ProviderApi, payment: PaymentToPost) -> str | None:
    """One query: the BillPayments with the order's DocNumber, kept if one of their lines pays the bill."""
    for raw in _with_doc_number(api, "BillPayment", payment.reference):
        found = _read(wire.BillPayment, raw)
        if found is None:
            continue
        links = (link for line in found.Line for link in line.LinkedTxn)
        if any(link.TxnId == payment.bill_id and link.TxnType == "Bill" for link in links):
            return found.Id
    return None


# ---------------------------------------------------------------------------------------------- fee


def fee_purchase(fee: FeeToPost) -> dict[str, Any]:
    """The Purchase (an expense) that books the fee from the bank account to the fee expense account.

    No EntityRef: the fee is the platform's, not the vendor's, so it must not count as spend with the
    vendor (vendor reports, 1099 totals)."""
    return {
        "PaymentType": "Check",
        "AccountRef": {"value": fee.bank_account_id},
        "TxnDate": fee.payment_date.isoformat(),
        "DocNumber": doc_number(fee.reference),
        "PrivateNote": fee.description[:PRIVATE_NOTE_MAX],
        "CurrencyRef": {"value": fee.currency},
        **({"ExchangeRate": fee.exchange_rate} if fee.exchange_rate is not None else {}),
        "Line": [
            {
                "Amount": fee.amount,
                "Description": fee.description[:PRIVATE_NOTE_MAX],
                "DetailType": "AccountBasedExpenseLineDetail",
                "AccountBasedExpenseLineDetail": {"AccountRef": {"value": fee.expense_account_id}},
            }
        ],
    }


def post_fee(api: ProviderApi, fee: FeeToPost) -> str:
    return _create(api, "purchase", "Purchase", fee.idempotency_key, fee_purchase(fee))


def find_fee(api: ProviderApi, fee: FeeToPost) -> str | None:
    """One query: the Purchases with the order's DocNumber, kept if paid from the bank account to the fee account."""
    for raw in _with_doc_number(api, "Purchase", fee.reference):
        found = _read(wire.Purchase, raw)
        if found is None or found.AccountRef.value != fee.bank_account_id:
            continue
        details = (line.AccountBasedExpenseLineDetail for line in found.Line)
        if any(detail is not None and detail.AccountRef.value == fee.expense_account_id for detail in details):
            return found.Id
    return None


# ---------------------------------------------------------------------------------------------- references


def doc_number(reference: str) -> str:
    """The payment order number cut to DocNumber's 21 characters, keeping its end: order numbers share
    their beginning and differ at the end. The whole number is in PrivateNote."""
    return reference[-DOC_NUMBER_MAX:]


# ---------------------------------------------------------------------------------------------- calls


def _create(api: ProviderApi, path: str, entity: str, request_id: str, body: dict[str, Any]) -> str:
    """Create one transaction under a requestid; returns its Id. A ValidationFault is PaymentRejected."""
    if not 0 < len(request_id) <= REQUEST_ID_MAX:
        raise ValueError(f"a QuickBooks requestid has 1 to {REQUEST_ID_MAX} characters, not {len(request_id)}")
    try:
        response = api.request(
            "POST",
            path,
            # The requestid makes a resend safe: QuickBooks answers it with the first answer (I-REQID).
            idempotent=True,
            route=f"POST {path}",
            params={"requestid": request_id, "include": _ALLOW_DUPLICATE_DOC_NUMBER},
            json=body,
        )
    except ProviderError as error:
        refusal = _refusal(error)
        if refusal is not None:
            raise PaymentRejected(refusal) from None
        raise
    return _created_id(response, entity)


def _created_id(response: requests.Response, entity: str) -> str:
    """The Id of the created transaction. An answer without one leaves the outcome unknown, so it is
    ProviderUnavailable: the next attempt looks the transaction up before posting again."""
    try:
        body = response.json(parse_float=Decimal)
    except requests.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("Fault"), dict):
        # A 200 can carry a Fault (I-ERR).
        fault = body["Fault"]
        if fault.get("type") == _VALIDATION_FAULT:
            raise PaymentRejected(wire.fault_text(fault))
        raise ProviderUnavailable(response.status_code, wire.fault_text(fault))
    created = body.get(entity) if isinstance(body, dict) else None
    entity_id = created.get("Id") if isinstance(created, dict) else None
    if not isinstance(entity_id, str) or not entity_id:
        raise ProviderUnavailable(response.status_code, f"QuickBooks answered the {entity} without its Id")
    return entity_id


def _refusal(error: ProviderError) -> str | None:
    """QuickBooks' own words when it refused the write as invalid (an HTTP 400 Fault), else None.

    ProviderError keeps only the first 300 characters of the body, so a long Fault arrives cut: its
    fields are read one by one, and one cut before its `type` is taken as what a 400 Fault is, a
    ValidationFault (authentication and system faults come with 401, 403 and 5xx)."""
    text = error.message
    if error.status != 400 or isinstance(error, ProviderUnavailable) or '"Fault"' not in text:
        return None
    if _json_field(text, "type") not in (None, _VALIDATION_FAULT):
        return None
    words = ": ".join(part for part in (_json_field(text, "Message"), _json_field(text, "Detail")) if part)
    code = _json_field(text, "code")
    return f"{code} {words}" if code and words else words or text


def _json_field(text: str, name: str) -> str | None:
    """The first complete string value of `"name": "..."` in JSON text that may be cut short."""
    match = re.search(rf'"{name}"\s*:\s*"((?:[^"\\]|\\.)*)"', text)
    if match is None:
        return None
    value = json.loads(f'"{match.group(1)}"')
    return value if isinstance(value, str) else None


def _with_doc_number(api: ProviderApi, entity: str, reference: str) -> list[Any]:
    # A quote inside a query literal is written \' (Intuit's escape).
    number = doc_number(reference).replace("\\", "\\\\").replace("'", "\\'")
    text = f"select * from {entity} where DocNumber = '{number}'"  # noqa: S608 - the literal is escaped
    response = api.get("query", params={"query": text}, route=f"GET query {entity} by DocNumber")
    return wire.query_items(wire.read_json(response), entity)


def _read[T: wire.Wire](model: type[T], raw: object) -> T | None:
    # A record that cannot be read is not one we posted: ours always have what the model asks for.
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


# ---------------------------------------------------------------------------------------------- payment runs


def post_payments(api: ProviderApi, payments: Sequence[PaymentToPost], request_id: str) -> list[Posted]:
    """BillPayments for a batch of payments, one `POST /batch` under `request_id`."""
    items = [{"bId": str(n), "operation": "create", "BillPayment": bill_payment(p)} for n, p in enumerate(payments)]
    return _batch(api, items, "BillPayment", request_id)


def post_fees(api: ProviderApi, fees: Sequence[FeeToPost], request_id: str) -> list[Posted]:
    """Purchases for a batch of fees, one `POST /batch` under `request_id`."""
    items = [{"bId": str(n), "operation": "create", "Purchase": fee_purchase(fee)} for n, fee in enumerate(fees)]
    return _batch(api, items, "Purchase", request_id)


def find_payments(api: ProviderApi, payments: Sequence[PaymentToPost]) -> dict[str, str]:
    """The BillPayments carrying these payments' DocNumbers, kept where a line pays the payment's bill."""
    wanted = {doc_number(payment.reference): payment for payment in payments}
    found: dict[str, str] = {}
    for raw in _with_doc_numbers(api, "BillPayment", list(wanted)):
        record = _read(wire.BillPayment, raw)
        payment = wanted.get(record.DocNumber or "") if record else None
        if record is None or payment is None:
            continue
        links = (link for line in record.Line for link in line.LinkedTxn)
        if any(link.TxnId == payment.bill_id and link.TxnType == "Bill" for link in links):
            found[payment.reference] = record.Id
    return found


def find_fees(api: ProviderApi, fees: Sequence[FeeToPost]) -> dict[str, str]:
    """The Purchases carrying these fees' DocNumbers, paid from the fee's bank account to its fee account."""
    wanted = {doc_number(fee.reference): fee for fee in fees}
    found: dict[str, str] = {}
    for raw in _with_doc_numbers(api, "Purchase", list(wanted)):
        record = _read(wire.Purchase, raw)
        fee = wanted.get(record.DocNumber or "") if record else None
        if record is None or fee is None or record.AccountRef.value != fee.bank_account_id:
            continue
        details = (line.AccountBasedExpenseLineDetail for line in record.Line)
        if any(detail is not None and detail.AccountRef.value == fee.expense_account_id for detail in details):
            found[fee.reference] = record.Id
    return found


def _batch(api: ProviderApi, items: list[dict[str, Any]], entity: str, request_id: str) -> list[Posted]:
    """One /batch request; each item's answer found by its bId (Intuit does not keep their order)."""
    if not 0 < len(items) <= BATCH_MAX_ITEMS:
        raise ValueError(f"a QuickBooks batch holds 1 to {BATCH_MAX_ITEMS} items, not {len(items)}")
    if not 0 < len(request_id) <= REQUEST_ID_MAX:
        raise ValueError(f"a QuickBooks requestid has 1 to {REQUEST_ID_MAX} characters, not {len(request_id)}")
    response = api.request(
        "POST",
        "batch",
        # The requestid makes a resend safe: QuickBooks answers it with the first answer (I-REQID).
        idempotent=True,
        route="POST /batch",
        params={"requestid": request_id, "include": _ALLOW_DUPLICATE_DOC_NUMBER},
        json={"BatchItemRequest": items},
        # 40 batch requests a minute, each item counted as a call (the call budget: providers/limits.py).
        batch_items=len(items),
    )
    try:
        body = response.json(parse_float=Decimal)
    except requests.JSONDecodeError:
        raise ProviderUnavailable(response.status_code, "QuickBooks answered the batch with no JSON") from None
    answers = body.get("BatchItemResponse") if isinstance(body, dict) else None
    if not isinstance(answers, list):
        fault = body.get("Fault") if isinstance(body, dict) else None
        if isinstance(fault, dict) and fault.get("type") == _VALIDATION_FAULT:
            # The whole batch refused (too many items, unreadable body): nothing in it was created.
            raise ProviderError(400, wire.fault_text(fault))
        raise ProviderUnavailable(response.status_code, "QuickBooks answered the batch without BatchItemResponse")
    by_id = {str(answer.get("bId")): answer for answer in answers if isinstance(answer, dict)}
    return [_item_outcome(by_id.get(item["bId"]), entity) for item in items]


def _item_outcome(answer: dict[str, Any] | None, entity: str) -> Posted:
    if answer is None:
        return Posted()  # no answer for this item: looked up before it is posted again
    fault = answer.get("Fault")
    if isinstance(fault, dict):
        # A ValidationFault is QuickBooks refusing the item; any other fault leaves it unknown.
        return Posted(refused=wire.fault_text(fault)) if fault.get("type") == _VALIDATION_FAULT else Posted()
    created = answer.get(entity)
    entity_id = created.get("Id") if isinstance(created, dict) else None
    return Posted(provider_id=entity_id) if isinstance(entity_id, str) and entity_id else Posted()


def _with_doc_numbers(api: ProviderApi, entity: str, numbers: list[str]) -> list[Any]:
    found: list[Any] = []
    for start in range(0, len(numbers), _LOOKUP_CHUNK):
        chunk = numbers[start : start + _LOOKUP_CHUNK]
        text = f"select * from {entity} where DocNumber in ({wire.quoted(chunk)}) maxresults {_LOOKUP_CHUNK}"  # noqa: S608
        found += wire.query_items(wire.query(api, text, f"POST query {entity} by DocNumber"), entity)
    return found


# ---------------------------------------------------------------------------------------------- reversal
# A payment the platform reversed is undone: the BillPayment voided (the bill's balance comes back), the
# fee's Purchase deleted. Each is read first (its SyncToken), and an undo already done is not made again.
# Neither call is resent by the HTTP layer: after a lost answer the write-back looks the state up instead.


def reverse_payment(api: ProviderApi, payment_id: str) -> None:
    """Void the BillPayment: `POST billpayment?operation=update&include=void` with its `Id`, `SyncToken`
    and `sparse: true` (Intuit's BillPayment API reference, "Void a billpayment": "all amounts and
    quantities are zeroed, all lines are cleared, and the string, Voided, is injected into
    BillPayment.PrivateNote"). `operation=void` is how an Invoice is voided; for a BillPayment (and a
    Purchase) Intuit answers "Operation void is not supported." (a public project's check against
    Intuit's sandbox, 2026-08). Raises PaymentRejected when QuickBooks refuses (a closed period, say)."""
    current = _current(api, "billpayment", "BillPayment", payment_id)
    if current is None or _voided(current):
        return
    body = {"Id": payment_id, "SyncToken": current.get("SyncToken"), "sparse": True}
    _undo(api, "billpayment", "BillPayment", body, {"operation": "update", "include": "void"})


def payment_reversed(api: ProviderApi, payment_id: str) -> bool:
    """Whether the BillPayment is voided (or no longer there): one read."""
    current = _current(api, "billpayment", "BillPayment", payment_id)
    return current is None or _voided(current)


def reverse_fee(api: ProviderApi, fee_id: str) -> None:
    """Delete the fee's Purchase: `POST purchase?operation=delete` with its `Id` and `SyncToken`
    (Intuit's Purchase API reference, "Delete a purchase"; a Purchase has no void operation)."""
    current = _current(api, "purchase", "Purchase", fee_id)
    if current is None:
        return
    _undo(api, "purchase", "Purchase", {"Id": fee_id, "SyncToken": current.get("SyncToken")}, {"operation": "delete"})


def fee_reversed(api: ProviderApi, fee_id: str) -> bool:
    return _current(api, "purchase", "Purchase", fee_id) is None


def _voided(entity: dict[str, Any]) -> bool:
    # Ours always have an amount: zero and the "Voided" note is what a void leaves.
    return Decimal(str(entity.get("TotalAmt", "0"))) == 0 and str(entity.get("PrivateNote", "")).startswith("Voided")


def _current(api: ProviderApi, path: str, entity: str, entity_id: str) -> dict[str, Any] | None:
    """The entity as QuickBooks has it now; None when it is gone (Fault 610 Object Not Found)."""
    if not entity_id.isdigit():
        raise ValueError(f"a QuickBooks Id is digits, not {entity_id!r}")
    try:
        response = api.get(f"{path}/{entity_id}", route=f"GET {path}/{{id}}")
    except ProviderError as error:
        if error.status == 400 and _json_field(error.message, "code") == "610":
            return None
        raise
    found = wire.read_json(response).get(entity)
    if not isinstance(found, dict):
        raise ProviderUnavailable(response.status_code, f"QuickBooks answered without the {entity}")
    return found


def _undo(api: ProviderApi, path: str, entity: str, body: dict[str, Any], params: dict[str, str]) -> None:
    try:
        response = api.request("POST", path, idempotent=False, route=f"POST {path} {params['operation']}",
                               params=params, json=body)  # fmt: skip
    except ProviderError as error:
        refusal = _refusal(error)
        if refusal is not None:
            raise PaymentRejected(refusal) from None
        raise
    answer = wire.read_json(response)
    fault = answer.get("Fault")
    if isinstance(fault, dict):
        # A 200 can carry a Fault (I-ERR).
        if fault.get("type") == _VALIDATION_FAULT:
            raise PaymentRejected(wire.fault_text(fault))
        raise ProviderUnavailable(response.status_code, wire.fault_text(fault))
    if not isinstance(answer.get(entity), dict):
        raise ProviderUnavailable(response.status_code, f"QuickBooks answered the {entity} change without it")
