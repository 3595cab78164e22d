"""One QuickBooks Online company (a realm): its entities as QBO JSON, and the rules of its writes.

Entities are kept as the JSON QuickBooks returns (field names = XSD element names), so queries and
CDC read them directly. Facts reproduced here:
- Bills have no status: open means Balance > 0; a voided bill keeps its Id with every amount zeroed
  and PrivateNote "Voided"; a deleted bill leaves queries and shows in CDC as status "Deleted".
- A BillPayment reduces each linked bill's Balance, appends a LinkedTxn (TxnType BillPaymentCheck or
  BillPaymentCreditCard) and bumps the bill's SyncToken and MetaData.LastUpdatedTime.
- Timestamps are written with the company's UTC offset (Pacific), as Intuit does ("…-07:00").
- A multicurrency company: every transaction carries ExchangeRate; bills carry HomeBalance; there is
  one A/P account per currency ("Accounts Payable (A/P) - EUR").
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from local.sandboxes.generator import (
    CURRENCIES,
    AccountRecord,
    BillRecord,
    Ledger,
    VendorRecord,
    exchange_rate,
)

ENTITY_TYPES = ("Account", "Attachable", "Bill", "BillPayment", "Purchase", "Vendor")
# Names of other QBO entities: a query on them is valid and finds nothing in this sandbox.
OTHER_QBO_ENTITIES = frozenset(
    {
        "Budget",
        "Class",
        "CompanyCurrency",
        "CompanyInfo",
        "CreditMemo",
        "Customer",
        "Department",
        "Deposit",
        "Employee",
        "Estimate",
        "Invoice",
        "Item",
        "JournalEntry",
        "Payment",
        "PaymentMethod",
        "Preferences",
        "PurchaseOrder",
        "RefundReceipt",
        "SalesReceipt",
        "TaxCode",
        "TaxRate",
        "Term",
        "TimeActivity",
        "Transfer",
        "VendorCredit",
    }
)
DOC_NUMBER_MAX = 21  # BillPayment/Bill DocNumber limit (docs/providers.md#quickbooks-payments: a 3P mirror)
PRIVATE_NOTE_MAX = 4000
CURRENCY_NAMES = {
    "AUD": "Australian Dollar",
    "CAD": "Canadian Dollar",
    "CHF": "Swiss Franc",
    "EUR": "Euro",
    "GBP": "British Pound Sterling",
    "JPY": "Japanese Yen",
    "USD": "United States Dollar",
}
CENT = Decimal("0.01")
EXPENSE_TYPES = frozenset({"Expense", "Other Expense", "Cost of Goods Sold"})


@functools.cache
def _company_zone() -> ZoneInfo:
    # QBO writes times in the company's time zone; Intuit's samples use Pacific time.
    return ZoneInfo("America/Los_Angeles")


def qbo_time(moment: datetime, timespec: str = "seconds") -> str:
    """A timestamp as QBO writes it, with the company's UTC offset (2026-05-01T09:12:03-07:00)."""
    return moment.astimezone(_company_zone()).isoformat(timespec=timespec)


def parse_qbo_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def company_today(moment: datetime) -> date:
    return moment.astimezone(_company_zone()).date()


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT)


def currency_ref(code: str) -> dict[str, str]:
    return {"value": code, "name": CURRENCY_NAMES.get(code, code)}


class QboError(Exception):
    """A request QuickBooks rejects: becomes a Fault body with these Error fields."""

    def __init__(
        self,
        code: str,
        message: str,
        detail: str,
        *,
        element: str = "",
        status: int = 400,
        fault_type: str = "ValidationFault",
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.message = message
        self.detail = detail
        self.element = element
        self.status = status
        self.fault_type = fault_type


def missing_param(element: str) -> QboError:
    return QboError(
        "2020",
        "Required param missing, need to supply the required value for the API",
        f"Required parameter {element} is missing in the request",
        element=element,
    )


def business_error(detail: str, element: str = "") -> QboError:
    # Choice: rules whose exact Intuit wording was not found use the generic 6000 business error.
    return QboError(
        "6000",
        "A business validation error has occurred while processing your request",
        f"Business Validation Error: {detail}",
        element=element,
    )


def invalid_reference(element: str, what: str) -> QboError:
    return QboError("2500", "Invalid Reference Id", f"Invalid Reference Id : {what}", element=element)


def object_not_found(detail: str) -> QboError:
    return QboError("610", "Object Not Found", f"Object Not Found : {detail}")


INACTIVE_DETAIL = (
    "Something you're trying to use has been made inactive. "
    "Check the fields with accounts, customers, items, vendors or employees."
)


def string_too_long(element: str, limit: int, supplied: int) -> QboError:
    return QboError(
        "2050",
        "String length is either shorter or longer than supported by specification",
        f"String length specified does not match the supported length. Min:0 Max:{limit} supported. "
        f"Supplied length:{supplied}",
        element=element,
    )


def _decimal(value: object, element: str) -> Decimal:
    if value is None:
        raise missing_param(element)
    if isinstance(value, bool):
        raise QboError("2090", "Invalid Number", f"Invalid Number : {value}", element=element)
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise QboError("2090", "Invalid Number", f"Invalid Number : {value}", element=element) from exc


def _ref_value(body: Mapping[str, Any], name: str) -> str | None:
    ref = body.get(name)
    if ref is None:
        return None
    if isinstance(ref, Mapping) and ref.get("value") not in (None, ""):
        return str(ref["value"])
    raise missing_param(f"{name}.value")


@dataclass
class StoredFile:
    file_name: str
    content_type: str
    content: bytes


ChangeListener = Callable[["Realm", str, str, str], None]


@dataclass
class Realm:
    """One company: entities by type and Id, tombstones of deleted entities, attachment bytes."""

    realm_id: str
    company_name: str
    home_currency: str
    entities: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {name: {} for name in ENTITY_TYPES})
    deleted: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {name: {} for name in ENTITY_TYPES})
    files: dict[str, StoredFile] = field(default_factory=dict)
    # Generator key (vendor, bill, account) → the Id QuickBooks gave it.
    ids_by_key: dict[str, str] = field(default_factory=dict)
    next_id: int = 1
    # The company's closing date (Account and Settings > Advanced): transactions on or before it are locked.
    books_closed_on: date | None = None
    # Called as (realm, entity type, Id, operation) after every committed change: Create/Update/Delete.
    on_change: ChangeListener | None = None

    # ---- ids, reads, bookkeeping -------------------------------------------------------------

    def new_id(self) -> str:
        value = str(self.next_id)
        self.next_id += 1
        return value

    def get(self, entity_type: str, entity_id: str) -> dict[str, Any] | None:
        return self.entities[entity_type].get(entity_id)

    def all(self, entity_type: str) -> list[dict[str, Any]]:
        return list(self.entities[entity_type].values())

    def _notify(self, entity_type: str, entity_id: str, operation: str) -> None:
        if self.on_change is not None:
            self.on_change(self, entity_type, entity_id, operation)

    @staticmethod
    def touch(entity: dict[str, Any], now: datetime) -> None:
        entity["SyncToken"] = str(int(entity["SyncToken"]) + 1)
        entity["MetaData"]["LastUpdatedTime"] = qbo_time(now)

    @staticmethod
    def _base(entity_id: str, created: datetime, updated: datetime) -> dict[str, Any]:
        return {
            "Id": entity_id,
            "SyncToken": "0",
            "domain": "QBO",
            "sparse": False,
            "MetaData": {"CreateTime": qbo_time(created), "LastUpdatedTime": qbo_time(updated)},
        }

    def _new_transaction(self, body: Mapping[str, Any], now: datetime, currency: str, rate: Decimal) -> dict[str, Any]:
        """A new BillPayment or Purchase up to its own fields: both take these from the request, and
        QBO answers them in this order."""
        txn_date = self._txn_date(body, now)
        entity = self._base(self.new_id(), now, now)
        if body.get("DocNumber") is not None:
            entity["DocNumber"] = str(body["DocNumber"])
        entity["TxnDate"] = txn_date
        entity["CurrencyRef"] = currency_ref(currency)
        entity["ExchangeRate"] = rate
        if body.get("PrivateNote") is not None:
            entity["PrivateNote"] = str(body["PrivateNote"])
        return entity

    def changed_since(self, entity_type: str, since: datetime) -> list[dict[str, Any]]:
        """Entities of a type changed after `since`, deleted ones as CDC tombstones."""
        live = [
            e for e in self.entities[entity_type].values() if parse_qbo_time(e["MetaData"]["LastUpdatedTime"]) > since
        ]
        gone = [
            e for e in self.deleted[entity_type].values() if parse_qbo_time(e["MetaData"]["LastUpdatedTime"]) > since
        ]
        return live + gone

    # ---- references ---------------------------------------------------------------------------

    def _active_reference(self, entity_type: str, entity_id: str, element: str) -> dict[str, Any]:
        """The Vendor or Account a request names in `element`: an unknown id is an invalid reference,
        an inactive one is "not found" (QBO treats both kinds of reference alike)."""
        entity = self.get(entity_type, entity_id)
        if entity is None:
            raise invalid_reference(element, f"{entity_type} {entity_id} does not exist")
        if not entity["Active"]:
            raise object_not_found(INACTIVE_DETAIL)
        return entity

    def _currency(self, body: Mapping[str, Any]) -> tuple[str, Decimal]:
        """The transaction currency and exchange rate; a foreign currency needs an ExchangeRate."""
        code = _ref_value(body, "CurrencyRef") or self.home_currency
        if code not in CURRENCIES:
            raise invalid_reference("CurrencyRef", f"Currency {code} is not enabled for this company")
        if code == self.home_currency:
            return code, Decimal("1")
        if body.get("ExchangeRate") is None:
            raise business_error(
                f"An exchange rate is required for a transaction in {code}; the home currency is {self.home_currency}.",
                "ExchangeRate",
            )
        rate = _decimal(body.get("ExchangeRate"), "ExchangeRate")
        if rate <= 0:
            raise business_error("ExchangeRate must be greater than zero.", "ExchangeRate")
        return code, rate

    @staticmethod
    def _check_text(body: Mapping[str, Any]) -> None:
        doc_number = body.get("DocNumber")
        if doc_number is not None and len(str(doc_number)) > DOC_NUMBER_MAX:
            raise string_too_long("DocNumber", DOC_NUMBER_MAX, len(str(doc_number)))
        note = body.get("PrivateNote")
        if note is not None and len(str(note)) > PRIVATE_NOTE_MAX:
            raise string_too_long("PrivateNote", PRIVATE_NOTE_MAX, len(str(note)))

    def _txn_date(self, body: Mapping[str, Any], now: datetime) -> str:
        raw = body.get("TxnDate")
        # Absent or empty: the company's today (QBO takes "TxnDate": "" on a Purchase as today).
        if raw is None or raw == "":
            return company_today(now).isoformat()
        try:
            return date.fromisoformat(str(raw)).isoformat()
        except ValueError as exc:
            raise QboError("2040", "Invalid Date", f"Invalid Date : {raw}", element="TxnDate") from exc

    # ---- bill payments ----------------------------------------------------------------------

    def create_bill_payment(self, body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """Validate and commit a BillPayment as QBO does; raises QboError without changing anything."""
        vendor_id = _ref_value(body, "VendorRef")
        if vendor_id is None:
            raise missing_param("VendorRef")
        pay_type = body.get("PayType")
        if pay_type is None:
            raise missing_param("PayType")
        if body.get("Line") in (None, []):
            raise missing_param("Line")
        if body.get("TotalAmt") is None:
            raise missing_param("TotalAmt")
        self._check_text(body)
        vendor = self._active_reference("Vendor", vendor_id, "VendorRef")
        payment_account, detail_key, ref_key, linked_type = self._payment_account(body, pay_type)
        currency, rate = self._currency(body)
        if payment_account["CurrencyRef"]["value"] not in (currency, self.home_currency):
            raise business_error(
                f"The account {payment_account['Name']} is in {payment_account['CurrencyRef']['value']}; "
                f"a payment in {currency} must come from an account in {currency} or {self.home_currency}.",
                f"{detail_key}.{ref_key}",
            )
        applied = self._applied_bills(body["Line"], vendor, currency)
        total = money(_decimal(body.get("TotalAmt"), "TotalAmt"))
        # Choice: the total must equal the applied lines (QBO would keep an excess as vendor credit).
        if total != sum((amount for _, amount in applied), Decimal("0")):
            raise business_error("TotalAmt must equal the sum of the Line amounts.", "TotalAmt")

        payment = self._new_transaction(body, now, currency, rate)
        payment_id = payment["Id"]
        payment["Line"] = [
            {"Amount": amount, "LinkedTxn": [{"TxnId": bill["Id"], "TxnType": "Bill"}]} for bill, amount in applied
        ]
        payment["VendorRef"] = {"value": vendor["Id"], "name": vendor["DisplayName"]}
        payment["APAccountRef"] = dict(applied[0][0]["APAccountRef"])
        payment["PayType"] = pay_type
        payment[detail_key] = {ref_key: {"value": payment_account["Id"], "name": payment_account["Name"]}}
        if pay_type == "Check":
            payment[detail_key]["PrintStatus"] = "NotSet"
        payment["TotalAmt"] = total
        self.entities["BillPayment"][payment_id] = payment

        for bill, amount in applied:
            bill["Balance"] = money(bill["Balance"] - amount)
            bill["HomeBalance"] = money(bill["Balance"] * bill["ExchangeRate"])
            bill.setdefault("LinkedTxn", []).append({"TxnId": payment_id, "TxnType": linked_type})
            self.touch(bill, now)
        self._refresh_vendor_balance(vendor["Id"])
        self._notify("BillPayment", payment_id, "Create")
        for bill, _ in applied:
            self._notify("Bill", bill["Id"], "Update")
        return payment

    def _payment_account(self, body: Mapping[str, Any], pay_type: object) -> tuple[dict[str, Any], str, str, str]:
        if pay_type == "Check":
            detail_key, ref_key, wanted, linked = "CheckPayment", "BankAccountRef", "Bank", "BillPaymentCheck"
        elif pay_type == "CreditCard":
            detail_key, ref_key, wanted, linked = (
                "CreditCardPayment",
                "CCAccountRef",
                "Credit Card",
                "BillPaymentCreditCard",
            )
        else:
            raise QboError("2170", "Invalid Enumeration", f"Invalid Enumeration : {pay_type}", element="PayType")
        detail = body.get(detail_key)
        account_id = _ref_value(detail, ref_key) if isinstance(detail, Mapping) else None
        if account_id is None:
            raise missing_param(f"{detail_key}.{ref_key}")
        account = self._active_reference("Account", account_id, f"{detail_key}.{ref_key}")
        if account["AccountType"] != wanted:
            raise business_error(
                f"{detail_key}.{ref_key} must be an account of type {wanted}; "
                f"{account['Name']} is {account['AccountType']}.",
                f"{detail_key}.{ref_key}",
            )
        return account, detail_key, ref_key, linked

    def _applied_bills(
        self, lines: object, vendor: Mapping[str, Any], currency: str
    ) -> list[tuple[dict[str, Any], Decimal]]:
        if not isinstance(lines, list):
            raise missing_param("Line")
        applied: list[tuple[dict[str, Any], Decimal]] = []
        pending: dict[str, Decimal] = {}
        for line in lines:
            if not isinstance(line, Mapping):
                raise missing_param("Line")
            amount = money(_decimal(line.get("Amount"), "Line.Amount"))
            linked = line.get("LinkedTxn")
            if not isinstance(linked, list) or not linked or not isinstance(linked[0], Mapping):
                raise missing_param("Line.LinkedTxn")
            txn_id = str(linked[0].get("TxnId", ""))
            if linked[0].get("TxnType") != "Bill":
                raise business_error("A bill payment line must link a Bill.", "Line.LinkedTxn.TxnType")
            bill = self.get("Bill", txn_id)
            if bill is None:
                if txn_id in self.deleted["Bill"]:
                    raise object_not_found("Another user has deleted this transaction.")
                raise invalid_reference("Line.LinkedTxn.TxnId", f"Bill {txn_id} does not exist")
            if bill["VendorRef"]["value"] != vendor["Id"]:
                raise business_error(f"Bill {txn_id} belongs to another vendor than VendorRef.", "Line.LinkedTxn")
            if bill["CurrencyRef"]["value"] != currency:
                raise business_error(
                    f"Bill {txn_id} is in {bill['CurrencyRef']['value']}; the payment's CurrencyRef is {currency}.",
                    "CurrencyRef",
                )
            if amount <= 0:
                raise business_error("A bill payment line amount must be greater than zero.", "Line.Amount")
            already = pending.get(txn_id, Decimal("0"))
            if amount + already > bill["Balance"]:
                raise business_error(
                    f"The amount applied to bill {txn_id} ({amount + already}) exceeds its open balance "
                    f"({bill['Balance']}).",
                    "Line.Amount",
                )
            pending[txn_id] = already + amount
            applied.append((bill, amount))
        return applied

    # ---- purchases (bank fees) ----------------------------------------------------------------

    def create_purchase(self, body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        payment_type = body.get("PaymentType")
        if payment_type is None:
            raise missing_param("PaymentType")
        if payment_type not in ("Cash", "Check", "CreditCard"):
            raise QboError(
                "2170", "Invalid Enumeration", f"Invalid Enumeration : {payment_type}", element="PaymentType"
            )
        account_id = _ref_value(body, "AccountRef")
        if account_id is None:
            raise missing_param("AccountRef")
        lines = body.get("Line")
        if not isinstance(lines, list) or not lines:
            raise missing_param("Line")
        self._check_text(body)
        account = self._active_reference("Account", account_id, "AccountRef")
        wanted = "Credit Card" if payment_type == "CreditCard" else "Bank"
        if account["AccountType"] != wanted:
            raise business_error(
                f"AccountRef must be an account of type {wanted} for PaymentType {payment_type}; "
                f"{account['Name']} is {account['AccountType']}.",
                "AccountRef",
            )
        currency, rate = self._currency(body)
        if account["CurrencyRef"]["value"] != currency:
            raise business_error(
                f"The account {account['Name']} is in {account['CurrencyRef']['value']}; "
                f"the transaction's CurrencyRef is {currency}.",
                "CurrencyRef",
            )
        entity_ref: dict[str, str] | None = None
        entity_id = _ref_value(body, "EntityRef")
        if entity_id is not None:
            vendor = self._active_reference("Vendor", entity_id, "EntityRef")
            entity_ref = {"value": vendor["Id"], "name": vendor["DisplayName"], "type": "Vendor"}
        out_lines: list[dict[str, Any]] = []
        for number, line in enumerate(lines, start=1):
            out_lines.append(self._expense_line(line, number))

        purchase = self._new_transaction(body, now, currency, rate)
        purchase_id = purchase["Id"]
        purchase["Line"] = out_lines
        purchase["AccountRef"] = {"value": account["Id"], "name": account["Name"]}
        purchase["PaymentType"] = payment_type
        if entity_ref is not None:
            purchase["EntityRef"] = entity_ref
        purchase["Credit"] = False
        # QBO computes TotalAmt from the lines whatever the request says.
        purchase["TotalAmt"] = money(sum((line["Amount"] for line in out_lines), Decimal("0")))
        self.entities["Purchase"][purchase_id] = purchase
        self._notify("Purchase", purchase_id, "Create")
        return purchase

    def _expense_line(self, line: object, number: int) -> dict[str, Any]:
        if not isinstance(line, Mapping):
            raise missing_param("Line")
        if line.get("DetailType") != "AccountBasedExpenseLineDetail":
            raise missing_param("Line.DetailType")
        detail = line.get("AccountBasedExpenseLineDetail")
        expense_id = _ref_value(detail, "AccountRef") if isinstance(detail, Mapping) else None
        if expense_id is None:
            raise missing_param("Line.AccountBasedExpenseLineDetail.AccountRef")
        expense = self._active_reference("Account", expense_id, "Line.AccountBasedExpenseLineDetail.AccountRef")
        if expense["AccountType"] not in EXPENSE_TYPES:
            raise business_error(
                f"The expense line account {expense['Name']} is {expense['AccountType']}, not an expense account.",
                "Line.AccountBasedExpenseLineDetail.AccountRef",
            )
        amount = money(_decimal(line.get("Amount"), "Line.Amount"))
        if amount <= 0:
            raise business_error("A line amount must be greater than zero.", "Line.Amount")
        out: dict[str, Any] = {"Id": str(number), "LineNum": number}
        if line.get("Description") is not None:
            out["Description"] = str(line["Description"])
        out["Amount"] = amount
        out["DetailType"] = "AccountBasedExpenseLineDetail"
        out["AccountBasedExpenseLineDetail"] = {
            "AccountRef": {"value": expense["Id"], "name": expense["Name"]},
            "BillableStatus": "NotBillable",
        }
        return out

    # ---- changes made "in QuickBooks" by someone else (test controls) -------------------------

    def bill(self, bill_id: str) -> dict[str, Any]:
        bill = self.get("Bill", bill_id)
        if bill is None:
            raise KeyError(f"no bill {bill_id} in realm {self.realm_id}")
        return bill

    def default_bank_account(self, currency: str) -> dict[str, Any]:
        banks = [a for a in self.all("Account") if a["AccountType"] == "Bank" and a["Active"]]
        for wanted in (currency, self.home_currency):
            for account in banks:
                if account["CurrencyRef"]["value"] == wanted:
                    return account
        raise KeyError(f"no active bank account in {currency} or {self.home_currency}")

    def pay_elsewhere(self, bill_id: str, amount: Decimal | None, now: datetime) -> dict[str, Any]:
        """Someone pays the bill in QuickBooks: a Check BillPayment, the whole balance by default."""
        bill = self.bill(bill_id)
        currency = bill["CurrencyRef"]["value"]
        bank = self.default_bank_account(currency)
        pay = money(amount if amount is not None else bill["Balance"])
        body: dict[str, Any] = {
            "VendorRef": {"value": bill["VendorRef"]["value"]},
            "PayType": "Check",
            "CheckPayment": {"BankAccountRef": {"value": bank["Id"]}},
            "TotalAmt": pay,
            "CurrencyRef": {"value": currency},
            "PrivateNote": "Paid in QuickBooks",
            "Line": [{"Amount": pay, "LinkedTxn": [{"TxnId": bill_id, "TxnType": "Bill"}]}],
        }
        if currency != self.home_currency:
            body["ExchangeRate"] = bill["ExchangeRate"]
        return self.create_bill_payment(body, now)

    def change_bill_amount(self, bill_id: str, new_total: Decimal, now: datetime) -> dict[str, Any]:
        bill = self.bill(bill_id)
        new_total = money(new_total)
        paid = bill["TotalAmt"] - bill["Balance"]
        if new_total < paid or new_total <= 0:
            raise ValueError(f"new total {new_total} is below what was already paid ({paid}) or not positive")
        delta = new_total - bill["TotalAmt"]
        bill["Line"][0]["Amount"] = money(bill["Line"][0]["Amount"] + delta)
        bill["TotalAmt"] = new_total
        bill["Balance"] = money(new_total - paid)
        bill["HomeBalance"] = money(bill["Balance"] * bill["ExchangeRate"])
        self.touch(bill, now)
        self._refresh_vendor_balance(bill["VendorRef"]["value"])
        self._notify("Bill", bill_id, "Update")
        return bill

    def void_bill(self, bill_id: str, now: datetime) -> dict[str, Any]:
        bill = self.bill(bill_id)
        for line in bill["Line"]:
            line["Amount"] = Decimal("0.00")
        bill["TotalAmt"] = Decimal("0.00")
        bill["Balance"] = Decimal("0.00")
        bill["HomeBalance"] = Decimal("0.00")
        bill["PrivateNote"] = "Voided"
        self.touch(bill, now)
        self._refresh_vendor_balance(bill["VendorRef"]["value"])
        self._notify("Bill", bill_id, "Update")
        return bill

    def delete_bill(self, bill_id: str, now: datetime) -> None:
        bill = self.bill(bill_id)
        del self.entities["Bill"][bill_id]
        self.deleted["Bill"][bill_id] = {
            "domain": "QBO",
            "status": "Deleted",
            "Id": bill_id,
            "MetaData": {"LastUpdatedTime": qbo_time(now)},
        }
        for attachable in list(self.entities["Attachable"].values()):
            if any(ref["EntityRef"]["value"] == bill_id for ref in attachable.get("AttachableRef", [])):
                del self.entities["Attachable"][attachable["Id"]]
        self._refresh_vendor_balance(bill["VendorRef"]["value"])
        self._notify("Bill", bill_id, "Delete")

    # ---- voids and deletes (a payment reversed) --------------------------------------------------

    def _for_update(self, entity_type: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """The entity a void or delete names by Id, at the SyncToken it was read at (else Stale Object)."""
        entity_id = str(body.get("Id", ""))
        if not entity_id:
            raise missing_param("Id")
        if body.get("SyncToken") is None:
            raise missing_param("SyncToken")
        entity = self.get(entity_type, entity_id)
        if entity is None:
            raise object_not_found(INACTIVE_DETAIL)
        if str(body["SyncToken"]) != entity["SyncToken"]:
            raise QboError(
                "5010",
                "Stale Object Error",
                f"Stale Object Error : You and another user were working on the same thing. {entity_type} "
                f"{entity_id} has SyncToken {entity['SyncToken']}, not {body['SyncToken']}.",
            )
        if self.books_closed_on is not None and entity["TxnDate"] <= self.books_closed_on.isoformat():
            # Choice: the closing-date refusal's exact Intuit wording was not found; the generic 6000.
            raise business_error(
                f"The books are closed through {self.books_closed_on.isoformat()}: a transaction dated "
                f"{entity['TxnDate']} cannot be changed."
            )
        return entity

    def void_bill_payment(self, body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """Void as Intuit's BillPayment reference says: "the transaction remains active but all amounts
        and quantities are zeroed, all lines are cleared, and the string, Voided, is injected into
        BillPayment.PrivateNote, prepended to existing text if present". The bills it paid reopen."""
        payment = self._for_update("BillPayment", body)
        for line in payment["Line"]:
            for link in line["LinkedTxn"]:
                bill = self.get("Bill", link["TxnId"])
                if bill is None:
                    continue
                bill["Balance"] = money(bill["Balance"] + line["Amount"])
                bill["HomeBalance"] = money(bill["Balance"] * bill["ExchangeRate"])
                bill["LinkedTxn"] = [t for t in bill.get("LinkedTxn", []) if t["TxnId"] != payment["Id"]]
                if not bill["LinkedTxn"]:
                    del bill["LinkedTxn"]
                self.touch(bill, now)
                self._notify("Bill", bill["Id"], "Update")
        payment["Line"] = []
        payment["TotalAmt"] = Decimal("0.00")
        note = payment.get("PrivateNote")
        payment["PrivateNote"] = f"Voided {note}" if note else "Voided"
        self.touch(payment, now)
        self._refresh_vendor_balance(payment["VendorRef"]["value"])
        self._notify("BillPayment", payment["Id"], "Void")
        return payment

    def delete_purchase(self, body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """Delete a Purchase: it leaves reads and queries; the answer is its tombstone."""
        purchase = self._for_update("Purchase", body)
        del self.entities["Purchase"][purchase["Id"]]
        tombstone = {"status": "Deleted", "domain": "QBO", "Id": purchase["Id"]}
        self.deleted["Purchase"][purchase["Id"]] = {**tombstone, "MetaData": {"LastUpdatedTime": qbo_time(now)}}
        self._notify("Purchase", purchase["Id"], "Delete")
        return tombstone

    def edit_vendor(self, vendor_id: str, changes: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        vendor = self.get("Vendor", vendor_id)
        if vendor is None:
            raise KeyError(f"no vendor {vendor_id} in realm {self.realm_id}")
        for key, value in changes.items():
            _apply_vendor_change(vendor, key, value)
        self.touch(vendor, now)
        for entity_type in ("Bill", "BillPayment"):
            for txn in self.entities[entity_type].values():
                if txn["VendorRef"]["value"] == vendor_id:
                    txn["VendorRef"]["name"] = vendor["DisplayName"]
        self._notify("Vendor", vendor_id, "Update")
        return vendor

    def _refresh_vendor_balance(self, vendor_id: str) -> None:
        vendor = self.get("Vendor", vendor_id)
        if vendor is None:
            return
        vendor["Balance"] = money(
            sum(
                (b["Balance"] for b in self.entities["Bill"].values() if b["VendorRef"]["value"] == vendor_id),
                Decimal("0"),
            )
        )


# Generic change names accepted by edit_vendor, mapped to where QuickBooks keeps them.
def _apply_vendor_change(vendor: dict[str, Any], key: str, value: Any) -> None:
    if key == "name":
        vendor["DisplayName"] = vendor["CompanyName"] = vendor["PrintOnCheckName"] = str(value)
    elif key == "email":
        if value is None:
            vendor.pop("PrimaryEmailAddr", None)
        else:
            vendor["PrimaryEmailAddr"] = {"Address": str(value)}
    elif key == "active":
        vendor["Active"] = bool(value)
    elif key == "phone":
        vendor["PrimaryPhone"] = {"FreeFormNumber": str(value)}
    elif key == "notes":
        vendor["Notes"] = str(value)
    elif key == "tax_id":
        vendor["TaxIdentifier"] = str(value)
    elif key[:1].isupper():
        vendor[key] = value  # an Intuit field name, set as given
    else:
        raise ValueError(f"unknown vendor change {key!r}")


# ----------------------------------------------------------------------------------------------
# Loading a provider-neutral ledger
# ----------------------------------------------------------------------------------------------


def _midday(day: date) -> datetime:
    return datetime.combine(day, time(12, 0), tzinfo=UTC)


def _account_json(realm: Realm, record: AccountRecord, created: datetime) -> dict[str, Any]:
    entity = realm._base(realm.new_id(), created, created)
    kind_map = {
        "bank": ("Bank", "Asset", "Checking"),
        "payable": ("Accounts Payable", "Liability", "AccountsPayable"),
        "expense": ("Expense", "Expense", "OtherMiscellaneousServiceCost"),
    }
    account_type, classification, sub_type = kind_map[record.kind]
    if record.kind == "expense" and "fee" in record.name.lower():
        sub_type = "BankCharges"
    entity.update(
        {
            "Name": record.name,
            "SubAccount": False,
            "FullyQualifiedName": record.name,
            "Active": record.active,
            "Classification": classification,
            "AccountType": account_type,
            "AccountSubType": sub_type,
            "AcctNum": record.code,
            "CurrentBalance": Decimal("0.00"),
            "CurrentBalanceWithSubAccounts": Decimal("0.00"),
            "CurrencyRef": currency_ref(record.currency),
        }
    )
    return entity


def _vendor_json(realm: Realm, record: VendorRecord, created: datetime) -> dict[str, Any]:
    """A Vendor with the generator's sensitive fields in Intuit's places (tax id, phones, notes, bank)."""
    entity = realm._base(realm.new_id(), created, created)
    given, _, family = (record.contact_person or "").partition(" ")
    entity.update({"GivenName": given} if given else {})
    entity.update({"FamilyName": family} if family else {})
    entity.update(
        {
            "CompanyName": record.name,
            "DisplayName": record.name,
            "PrintOnCheckName": record.name,
            "Active": record.active,
        }
    )
    if record.phone:
        entity["PrimaryPhone"] = {"FreeFormNumber": record.phone}
    if record.mobile:
        entity["Mobile"] = {"FreeFormNumber": record.mobile}
    if record.email:
        entity["PrimaryEmailAddr"] = {"Address": record.email}
    if record.notes:
        entity["Notes"] = record.notes
    if record.address is not None:
        address: dict[str, Any] = {"Id": realm.new_id(), "Line1": record.address.line1}
        if record.address.line2:
            address["Line2"] = record.address.line2
        address.update(
            {
                "City": record.address.city,
                "Country": record.address.country,
                "CountrySubDivisionCode": record.address.region,
                "PostalCode": record.address.postal_code,
            }
        )
        entity["BillAddr"] = address
    if record.tax_id:
        entity["TaxIdentifier"] = record.tax_id
    entity["Balance"] = Decimal("0.00")
    if record.iban:
        entity["AcctNum"] = record.iban
    entity["Vendor1099"] = False
    entity["CurrencyRef"] = currency_ref(record.currency)
    if record.bank_account_number or record.bank_routing:
        bank: dict[str, Any] = {"BankAccountName": record.name}
        if record.bank_routing:
            bank["BankBranchIdentifier"] = record.bank_routing
        if record.bank_account_number:
            bank["BankAccountNumber"] = record.bank_account_number
        entity["VendorPaymentBankDetail"] = bank
    return entity


def load_realm(realm_id: str, ledger: Ledger, company_name: str) -> Realm:
    """The realm holding `ledger` as QuickBooks would show it.

    Draft bills are not loaded: QuickBooks Online has no draft bills. Part-paid and paid bills get
    the BillPayment that paid them, from a bank account in their currency (else the home currency).
    """
    realm = Realm(realm_id=realm_id, company_name=company_name, home_currency=ledger.base_currency)
    earliest = min((b.updated_at for b in ledger.bills), default=datetime.now(tz=UTC))
    account_ids: dict[str, str] = {}
    ap_by_currency: dict[str, dict[str, Any]] = {}
    for record in ledger.accounts:
        account = _account_json(realm, record, earliest)
        realm.entities["Account"][account["Id"]] = account
        account_ids[record.key] = account["Id"]
        realm.ids_by_key[record.key] = account["Id"]
        if record.kind == "payable" and record.currency not in ap_by_currency:
            ap_by_currency[record.currency] = account
    for currency in sorted({b.currency for b in ledger.bills} - set(ap_by_currency)):
        name = f"Accounts Payable (A/P) - {currency}"
        record = AccountRecord(
            key=f"ap-{currency}",
            name=name,
            code="",
            kind="payable",
            currency=currency,
            active=True,
            bank_account_number=None,
        )
        account = _account_json(realm, record, earliest)
        account.pop("AcctNum")
        realm.entities["Account"][account["Id"]] = account
        ap_by_currency[currency] = account

    vendor_ids: dict[str, str] = {}
    for vendor_record in ledger.vendors:
        vendor = _vendor_json(realm, vendor_record, vendor_record.updated_at)
        realm.entities["Vendor"][vendor["Id"]] = vendor
        vendor_ids[vendor_record.key] = vendor["Id"]
        realm.ids_by_key[vendor_record.key] = vendor["Id"]

    accounts_by_id = realm.entities["Account"]
    for bill_record in ledger.bills:
        if bill_record.state == "draft":
            continue
        _load_bill(
            realm,
            bill_record,
            vendor_ids=vendor_ids,
            account_ids=account_ids,
            ap_by_currency=ap_by_currency,
            accounts=accounts_by_id,
        )
    owed: dict[str, Decimal] = {}
    for bill in realm.entities["Bill"].values():
        vendor_id = bill["VendorRef"]["value"]
        owed[vendor_id] = owed.get(vendor_id, Decimal("0")) + bill["Balance"]
    for vendor_id, vendor in realm.entities["Vendor"].items():
        vendor["Balance"] = money(owed.get(vendor_id, Decimal("0")))
    return realm


def _load_bill(
    realm: Realm,
    record: BillRecord,
    *,
    vendor_ids: Mapping[str, str],
    account_ids: Mapping[str, str],
    ap_by_currency: Mapping[str, Mapping[str, Any]],
    accounts: Mapping[str, Mapping[str, Any]],
) -> None:
    bill_id = realm.new_id()
    realm.ids_by_key[record.key] = bill_id
    created = min(_midday(record.issue_date), record.updated_at)
    if record.state == "deleted":
        realm.deleted["Bill"][bill_id] = {
            "domain": "QBO",
            "status": "Deleted",
            "Id": bill_id,
            "MetaData": {"LastUpdatedTime": qbo_time(record.updated_at)},
        }
        return
    vendor = realm.entities["Vendor"][vendor_ids[record.vendor_key]]
    voided = record.state == "voided"
    rate = exchange_rate(record.currency, realm.home_currency)
    bill = realm._base(bill_id, created, record.updated_at)
    if record.invoice_number:
        bill["DocNumber"] = record.invoice_number[:DOC_NUMBER_MAX]  # QBO stores at most 21 characters
    bill["TxnDate"] = record.issue_date.isoformat()
    bill["CurrencyRef"] = currency_ref(record.currency)
    bill["ExchangeRate"] = rate
    if voided:
        bill["PrivateNote"] = "Voided"
    elif record.memo:
        bill["PrivateNote"] = record.memo[:PRIVATE_NOTE_MAX]
    lines: list[dict[str, Any]] = []
    for number, line in enumerate(record.lines, start=1):
        expense = accounts[account_ids[line.expense_account_key]]
        lines.append(
            {
                "Id": str(number),
                "LineNum": number,
                "Description": line.description,
                "Amount": Decimal("0.00") if voided else money(line.amount),
                "DetailType": "AccountBasedExpenseLineDetail",
                "AccountBasedExpenseLineDetail": {
                    "AccountRef": {"value": expense["Id"], "name": expense["Name"]},
                    "BillableStatus": "NotBillable",
                },
            }
        )
    bill["Line"] = lines
    bill["VendorRef"] = {"value": vendor["Id"], "name": vendor["DisplayName"]}
    ap = ap_by_currency[record.currency]
    bill["APAccountRef"] = {"value": ap["Id"], "name": ap["Name"]}
    total = Decimal("0.00") if voided else money(record.total)
    paid = Decimal("0.00") if voided else money(record.amount_paid)
    bill["TotalAmt"] = total
    if record.due_date is not None:
        bill["DueDate"] = record.due_date.isoformat()
    bill["Balance"] = money(total - paid)
    bill["HomeBalance"] = money(bill["Balance"] * rate)
    realm.entities["Bill"][bill_id] = bill
    if paid > 0:
        _load_payment(realm, bill, paid, record.updated_at)
    if record.attachment is not None:
        _load_attachment(realm, bill, record, created)


def _load_payment(realm: Realm, bill: dict[str, Any], amount: Decimal, paid_at: datetime) -> None:
    bank = realm.default_bank_account(bill["CurrencyRef"]["value"])
    payment_id = realm.new_id()
    payment = realm._base(payment_id, paid_at, paid_at)
    payment.update(
        {
            "TxnDate": company_today(paid_at).isoformat(),
            "CurrencyRef": dict(bill["CurrencyRef"]),
            "ExchangeRate": bill["ExchangeRate"],
            "Line": [{"Amount": amount, "LinkedTxn": [{"TxnId": bill["Id"], "TxnType": "Bill"}]}],
            "VendorRef": dict(bill["VendorRef"]),
            "APAccountRef": dict(bill["APAccountRef"]),
            "PayType": "Check",
            "CheckPayment": {
                "BankAccountRef": {"value": bank["Id"], "name": bank["Name"]},
                "PrintStatus": "NotSet",
            },
            "TotalAmt": amount,
        }
    )
    realm.entities["BillPayment"][payment_id] = payment
    bill["LinkedTxn"] = [{"TxnId": payment_id, "TxnType": "BillPaymentCheck"}]


def _load_attachment(realm: Realm, bill: Mapping[str, Any], record: BillRecord, created: datetime) -> None:
    attachment = record.attachment
    if attachment is None:
        return
    attachable_id = realm.new_id()
    attachable = realm._base(attachable_id, created, created)
    attachable.update(
        {
            "AttachableRef": [{"EntityRef": {"value": bill["Id"], "type": "Bill"}, "IncludeOnSend": False}],
            "FileName": attachment.file_name,
            "FileAccessUri": f"/v3/company/{realm.realm_id}/download/{attachable_id}",
            "Size": len(attachment.content),
            "ContentType": attachment.mime_type,
        }
    )
    realm.entities["Attachable"][attachable_id] = attachable
    realm.files[attachable_id] = StoredFile(attachment.file_name, attachment.mime_type, attachment.content)


def entities_sorted(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda e: parse_qbo_time(e["MetaData"]["LastUpdatedTime"]))
