"""Writing payments and fees back to the Xero sandbox: effects on bills, Xero's validation,
Idempotency-Key, the lost response, bank transactions and the test controls."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from xml.etree import ElementTree

import pytest
import requests

from local.sandboxes.generator import generate_ledger
from local.sandboxes.xero import XeroSandbox
from local.sandboxes.xero.ledger import LedgerError
from tests.sandboxes.test_xero_helpers import Org, connect

OVERPAID = "Payment amount exceeds the amount outstanding on this document"


@pytest.fixture
def org() -> Iterator[Org]:
    sandbox = XeroSandbox(seed=21)
    ledger = generate_ledger(seed=21, bills=40, base_currency="CAD", as_of=sandbox.clock.now())
    with sandbox:
        yield connect(sandbox, ledger)


def open_bill(org: Org, currency: str = "CAD", state: str = "open") -> str:
    """The key of an unpaid bill in `currency`."""
    return next(b.key for b in org.ledger.bills if b.state == state and b.currency == currency)


def payment(org: Org, bill_key: str, amount: Decimal | str, *, account: str = "bank-cad", **extra: Any) -> dict:
    return {
        "Invoice": {"InvoiceID": org.invoice_id(bill_key)},
        "Account": {"AccountID": org.account_id(account)},
        "Date": "2026-11-20",
        "Amount": str(amount),
        "Reference": "PO-1001",
        **extra,
    }


def due(org: Org, bill_key: str) -> Decimal:
    return Decimal(str(org.bill(bill_key)["AmountDue"]))


def errors_of(element: dict[str, Any]) -> list[str]:
    return [error["Message"] for error in element.get("ValidationErrors", [])]


# ---- payments change the bill -------------------------------------------------------------------


def test_part_payment_reduces_amount_due_and_bumps_updated_date(org: Org) -> None:
    # Given an open bill
    key = open_bill(org)
    before = org.bill(key)

    # When part of it is paid
    org.sandbox.clock.advance(1)
    response = org.put("Payments", {"Payments": [payment(org, key, "10.00")]})

    # Then AmountDue falls, AmountPaid rises, the bill stays AUTHORISED and its UpdatedDateUTC moves on
    (created,) = response.json()["Payments"]
    after = org.bill(key)
    assert response.status_code == 200
    assert Decimal(str(after["AmountDue"])) == Decimal(str(before["AmountDue"])) - Decimal("10.00")
    assert Decimal(str(after["AmountPaid"])) == Decimal("10.00")
    assert after["Status"] == "AUTHORISED"
    assert after["UpdatedDateUTC"] > before["UpdatedDateUTC"]
    assert (created["PaymentType"], created["Status"], created["Reference"]) == (
        "ACCPAYPAYMENT",
        "AUTHORISED",
        "PO-1001",
    )
    assert Decimal(str(created["Invoice"]["AmountDue"])) == Decimal(str(after["AmountDue"]))


def test_paying_the_full_amount_marks_the_bill_paid(org: Org) -> None:
    key = open_bill(org)

    response = org.post("Payments", payment(org, key, due(org, key)))

    bill = org.bill(key)
    assert response.status_code == 200
    assert (bill["Status"], bill["AmountDue"]) == ("PAID", 0)
    paid_on = datetime(2026, 11, 20, tzinfo=UTC)
    assert bill["FullyPaidOnDate"] == f"/Date({int(paid_on.timestamp()) * 1000}+0000)/"


def test_money_keeps_its_cents(org: Org) -> None:
    key = open_bill(org)
    before = due(org, key)

    org.put("Payments", {"Payments": [payment(org, key, "0.10"), payment(org, key, "0.20")]})

    assert due(org, key) == before - Decimal("0.30")


# ---- Xero's validation --------------------------------------------------------------------------


def test_overpayment_is_rejected_and_nothing_is_written(org: Org) -> None:
    key = open_bill(org)
    before = due(org, key)

    response = org.put("Payments", {"Payments": [payment(org, key, before + Decimal("0.01"))]})

    body = response.json()
    assert response.status_code == 400
    assert (body["ErrorNumber"], body["Type"]) == (10, "ValidationException")
    assert errors_of(body["Elements"][0]) == [OVERPAID]
    assert due(org, key) == before
    assert org.records("Payments", "Payments", where='Reference=="PO-1001"') == []


def test_a_batch_fails_whole_unless_summarize_errors_is_false(org: Org) -> None:
    # Given one valid and one over-paying payment
    good_key, bad_key = [b.key for b in org.ledger.bills if b.state == "open" and b.currency == "CAD"][:2]
    good = payment(org, good_key, "5.00", Reference="GOOD")
    bad = payment(org, bad_key, due(org, bad_key) + 1, Reference="BAD")

    # When sent together, first by default, then with summarizeErrors=false
    summarised = org.put("Payments", {"Payments": [good, bad]})
    nothing_written = org.records("Payments", "Payments", where='Reference=="GOOD"')
    itemised = org.put("Payments", {"Payments": [good, bad]}, summarizeErrors="false")

    # Then the default fails all of them; the itemised call writes the good one and flags the bad one
    assert summarised.status_code == 400
    assert nothing_written == []
    first, second = itemised.json()["Payments"]
    assert itemised.status_code == 200
    assert (first["StatusAttributeString"], errors_of(first)) == ("OK", [])
    assert (second["StatusAttributeString"], second["HasValidationErrors"]) == ("ERROR", True)
    assert errors_of(second) == [OVERPAID]
    assert len(org.records("Payments", "Payments", where='Reference=="GOOD"')) == 1


def test_two_payments_in_one_call_cannot_together_exceed_the_bill(org: Org) -> None:
    key = open_bill(org)
    half = (due(org, key) / 2).quantize(Decimal("0.01")) + Decimal("0.01")

    response = org.put("Payments", {"Payments": [payment(org, key, half), payment(org, key, half)]})

    assert response.status_code == 400
    assert [errors_of(e) for e in response.json()["Elements"]] == [[], [OVERPAID]]


@pytest.mark.parametrize("account", ["exp-bank-fees", "bank-closed", "ap"])
def test_paying_from_an_account_that_takes_no_payments_is_rejected(org: Org, account: str) -> None:
    response = org.put("Payments", {"Payments": [payment(org, open_bill(org), "1.00", account=account)]})

    assert response.status_code == 400
    assert errors_of(response.json()["Elements"][0]) == ["Account type is invalid for making a payment to/from"]


@pytest.mark.parametrize("state", ["draft", "voided", "paid"])
def test_only_authorised_bills_take_payments(org: Org, state: str) -> None:
    key = next(b.key for b in org.ledger.bills if b.state == state)

    response = org.put("Payments", {"Payments": [payment(org, key, "1.00")]})

    assert errors_of(response.json()["Elements"][0]) == ["Payments can only be made against Authorised documents"]


def test_unknown_bill_and_account_are_named(org: Org) -> None:
    body = {
        "Invoice": {"InvoiceID": "00000000-0000-4000-8000-000000000001"},
        "Account": {"Code": "9999"},
        "Amount": "1.00",
    }

    response = org.put("Payments", {"Payments": [body]})

    assert errors_of(response.json()["Elements"][0]) == ["Invoice could not be found", "Account could not be found"]


def test_account_can_be_named_by_code(org: Org) -> None:
    key = open_bill(org)
    body = {**payment(org, key, "3.00"), "Account": {"Code": "1001"}}

    assert org.put("Payments", {"Payments": [body]}).status_code == 200


def test_bank_account_in_a_third_currency_is_rejected(org: Org) -> None:
    key = open_bill(org, "EUR")

    response = org.put("Payments", {"Payments": [payment(org, key, "1.00", account="bank-usd")]})

    assert response.status_code == 400
    assert "currency" in errors_of(response.json()["Elements"][0])[0]


def test_foreign_bill_paid_from_base_currency_account_converts_at_currency_rate(org: Org) -> None:
    # Given a EUR bill in a CAD organisation, paid from the CAD account at 0.680000 EUR per CAD
    key = open_bill(org, "EUR")

    response = org.put(
        "Payments", {"Payments": [payment(org, key, "68.00", account="bank-cad", CurrencyRate="0.680000")]}
    )

    # Then the bank moves 100.00 CAD for the 68.00 EUR applied to the bill
    (created,) = response.json()["Payments"]
    assert Decimal(str(created["Amount"])) == Decimal("68.00")
    assert Decimal(str(created["BankAmount"])) == Decimal("100.00")
    assert Decimal(str(created["CurrencyRate"])) == Decimal("0.680000")


def test_foreign_bill_paid_from_its_own_currency_account_moves_the_same_amount(org: Org) -> None:
    key = open_bill(org, "EUR")

    (created,) = org.put("Payments", {"Payments": [payment(org, key, "12.34", account="bank-eur")]}).json()["Payments"]

    assert Decimal(str(created["BankAmount"])) == Decimal("12.34")


def test_unreadable_json_is_post_data_invalid(org: Org) -> None:
    response = requests.put(
        org.url("Payments"), data=b"{not json", headers={**org.headers, "Content-Type": "application/json"}
    )
    body = response.json()
    assert response.status_code == 400
    assert (body["ErrorNumber"], body["Type"]) == (14, "PostDataInvalidException")


# ---- Idempotency-Key ------------------------------------------------------------------------------


def test_same_idempotency_key_within_6_minutes_replays_the_first_answer(org: Org) -> None:
    key = open_bill(org)
    body = {"Payments": [payment(org, key, "7.00")]}
    headers = {"Idempotency-Key": "payment-order-77"}

    first = org.put("Payments", body, headers=headers)
    org.sandbox.clock.advance(5 * 60 + 59)
    second = org.put("Payments", body, headers=headers)

    assert second.status_code == first.status_code == 200
    assert second.json()["Payments"][0]["PaymentID"] == first.json()["Payments"][0]["PaymentID"]
    assert len(org.records("Payments", "Payments", where='Reference=="PO-1001"')) == 1


def test_same_idempotency_key_after_6_minutes_is_a_new_request(org: Org) -> None:
    key = open_bill(org)
    body = {"Payments": [payment(org, key, "7.00")]}
    headers = {"Idempotency-Key": "payment-order-78"}

    first = org.put("Payments", body, headers=headers)
    org.sandbox.clock.advance(6 * 60)
    second = org.put("Payments", body, headers=headers)

    assert second.json()["Payments"][0]["PaymentID"] != first.json()["Payments"][0]["PaymentID"]
    assert len(org.records("Payments", "Payments", where='Reference=="PO-1001"')) == 2


def test_idempotency_key_reused_with_another_body_is_refused(org: Org) -> None:
    key = open_bill(org)
    headers = {"Idempotency-Key": "payment-order-79"}
    org.put("Payments", {"Payments": [payment(org, key, "7.00")]}, headers=headers)

    response = org.put("Payments", {"Payments": [payment(org, key, "8.00")]}, headers=headers)

    assert response.status_code == 400
    assert "is used with a different request" in response.json()["Message"]


def test_idempotent_replay_repeats_an_error_too(org: Org) -> None:
    key = open_bill(org)
    too_much = {"Payments": [payment(org, key, due(org, key) + 1)]}
    headers = {"Idempotency-Key": "payment-order-80"}

    first = org.put("Payments", too_much, headers=headers)
    org.sandbox.change_bill_amount(org.tenant, org.invoice_id(key), due(org, key) + 100)
    again = org.put("Payments", too_much, headers=headers)

    assert first.status_code == again.status_code == 400
    assert again.content == first.content


# ---- the lost response --------------------------------------------------------------------------


def test_payment_committed_but_response_lost_is_found_by_a_later_get(org: Org) -> None:
    # Given the sandbox will drop the response of the next payment call after committing it
    key = open_bill(org)
    org.sandbox.faults.drop_response_after_commit("create_payments")

    # When the connector posts the payment, the connection closes without an answer
    with pytest.raises(requests.ConnectionError):
        org.put("Payments", {"Payments": [payment(org, key, "11.00", Reference="PO-LOST-1")]})

    # Then looking it up by reference or by bill finds the committed payment
    by_reference = org.records("Payments", "Payments", where='Reference=="PO-LOST-1"')
    by_bill = org.records("Payments", "Payments", where=f'Invoice.InvoiceID==guid("{org.invoice_id(key)}")')
    assert len(by_reference) == 1
    assert by_reference[0]["PaymentID"] in {p["PaymentID"] for p in by_bill}
    assert Decimal(str(org.bill(key)["AmountPaid"])) == Decimal("11.00")
    (dropped,) = [entry for entry in org.sandbox.requests.entries() if entry.endpoint == "create_payments"]
    assert dropped.status == 0  # logged without a response


def test_lost_response_retried_with_the_same_key_does_not_pay_twice(org: Org) -> None:
    key = open_bill(org)
    body = {"Payments": [payment(org, key, "11.00", Reference="PO-LOST-2")]}
    headers = {"Idempotency-Key": "payment-order-81"}
    org.sandbox.faults.drop_response_after_commit("create_payments")

    with pytest.raises(requests.ConnectionError):
        org.put("Payments", body, headers=headers)
    retried = org.put("Payments", body, headers=headers)

    assert retried.status_code == 200
    assert len(org.records("Payments", "Payments", where='Reference=="PO-LOST-2"')) == 1


# ---- bank transactions (fees) -----------------------------------------------------------------------


def fee(org: Org, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "SPEND",
        "Contact": {"ContactID": org.sandbox.contact_id(org.tenant, org.ledger.vendors[0].key)},
        "BankAccount": {"AccountID": org.account_id("bank-cad")},
        "Date": "2026-11-20",
        "Reference": "PO-1001 fee",
        "LineItems": [{"Description": "Wire fee", "Quantity": 1, "UnitAmount": "15.00", "AccountCode": "6900"}],
        **extra,
    }


def test_bank_fee_is_recorded_as_a_spend_transaction(org: Org) -> None:
    response = org.put("BankTransactions", {"BankTransactions": [fee(org)]})

    (created,) = response.json()["BankTransactions"]
    listed = org.records("BankTransactions", "BankTransactions", where='Reference=="PO-1001 fee"')
    assert response.status_code == 200
    assert (created["Type"], created["Status"], Decimal(str(created["Total"]))) == (
        "SPEND",
        "AUTHORISED",
        Decimal("15.00"),
    )
    assert created["LineItems"][0]["AccountCode"] == "6900"
    assert [t["BankTransactionID"] for t in listed] == [created["BankTransactionID"]]
    assert org.sandbox.bank_transactions(org.tenant)[0]["BankTransactionID"] == created["BankTransactionID"]


def test_bank_fee_with_an_unknown_account_code_is_rejected(org: Org) -> None:
    line = {"Description": "Wire fee", "UnitAmount": "15.00", "AccountCode": "477"}

    response = org.put("BankTransactions", {"BankTransactions": [fee(org, LineItems=[line])]})

    assert response.status_code == 400
    assert errors_of(response.json()["Elements"][0]) == ["Account code '477' is not a valid code for this document."]


# ---- test controls ----------------------------------------------------------------------------------


def test_bill_paid_elsewhere_is_paid_with_a_payment_on_record(org: Org) -> None:
    key = open_bill(org)

    payment_id = org.sandbox.pay_bill_elsewhere(org.tenant, org.invoice_id(key))

    bill = org.bill(key)
    assert bill["Status"] == "PAID"
    assert payment_id in {p["PaymentID"] for p in bill["Payments"]}


def test_voiding_an_unpaid_bill_zeroes_what_it_owes(org: Org) -> None:
    key = open_bill(org)
    org.sandbox.void_bill(org.tenant, org.invoice_id(key))
    bill = org.bill(key)
    assert (bill["Status"], bill["AmountDue"]) == ("VOIDED", 0)


def test_controls_refuse_what_xero_refuses(org: Org) -> None:
    part_paid = org.invoice_id(open_bill(org, state="part_paid"))
    authorised = org.invoice_id(open_bill(org))

    with pytest.raises(LedgerError):
        org.sandbox.void_bill(org.tenant, part_paid)  # a bill with payments cannot be voided
    with pytest.raises(LedgerError):
        org.sandbox.delete_bill(org.tenant, authorised)  # an AUTHORISED bill can only be voided


def test_deleting_a_draft_and_approving_another(org: Org) -> None:
    first, second = org.bill_keys("draft")[:2]

    org.sandbox.delete_bill(org.tenant, org.invoice_id(first))
    org.sandbox.approve_bill(org.tenant, org.invoice_id(second))

    assert org.bill(first)["Status"] == "DELETED"
    assert org.bill(second)["Status"] == "AUTHORISED"


def test_changed_amount_shows_in_total_and_amount_due(org: Org) -> None:
    key = open_bill(org, state="part_paid")
    paid = Decimal(str(org.bill(key)["AmountPaid"]))

    org.sandbox.change_bill_amount(org.tenant, org.invoice_id(key), paid + Decimal("50.05"))

    bill = org.bill(key)
    assert Decimal(str(bill["Total"])) == paid + Decimal("50.05")
    assert Decimal(str(bill["AmountDue"])) == Decimal("50.05")
    assert sum(Decimal(str(line["LineAmount"])) for line in bill["LineItems"]) == Decimal(str(bill["Total"]))


def test_controls_work_over_the_admin_surface(org: Org) -> None:
    key = open_bill(org)
    admin = f"{org.sandbox.base_url}/_admin"

    paid = requests.post(
        f"{admin}/pay_bill_elsewhere", json={"tenant": org.tenant, "bill_id": org.invoice_id(key), "amount": "1.00"}
    )
    refused = requests.post(f"{admin}/delete_bill", json={"tenant": org.tenant, "bill_id": org.invoice_id(key)})
    listed = requests.post(f"{admin}/payments", json={"tenant": org.tenant}).json()["payments"]

    assert paid.status_code == 200
    assert paid.json()["payment_id"] in {p["PaymentID"] for p in listed}
    assert refused.status_code == 400


# ---- fidelity: XML by default, currencies, the daily rate ------------------------------------


def test_the_accounting_api_answers_xml_unless_json_is_asked_for(org: Org) -> None:
    key = open_bill(org)
    plain = {name: value for name, value in org.headers.items() if name != "Accept"}
    response = requests.get(org.url(f"Invoices/{org.invoice_id(key)}"), headers=plain, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    root = ElementTree.fromstring(response.content)
    assert root.tag == "Response" and root.findtext("Status") == "OK"
    invoices = root.find("Invoices")
    assert invoices is not None
    (invoice,) = list(invoices)
    assert invoice.tag == "Invoice" and invoice.findtext("InvoiceID") == org.invoice_id(key)
    # A refusal comes back as XML too
    refused = requests.put(
        org.url("Payments"), json={"Payments": [payment(org, key, "0.00")]}, headers=plain, timeout=10
    )
    assert refused.status_code == 400 and ElementTree.fromstring(refused.content).tag == "ApiException"
    # And with Accept: application/json, JSON
    assert org.get(f"Invoices/{org.invoice_id(key)}").headers["Content-Type"].startswith("application/json")


def test_currencies_lists_the_base_currency_first(org: Org) -> None:
    response = org.get("Currencies")
    assert response.status_code == 200
    codes = [currency["Code"] for currency in response.json()["Currencies"]]
    assert codes[0] == "CAD" and {"USD", "EUR"} <= set(codes)


def test_a_foreign_payment_without_currency_rate_converts_at_the_payment_dates_rate(org: Org) -> None:
    # Given a EUR bill, paid from the CAD account on two different days without a CurrencyRate
    key = open_bill(org, "EUR")
    bill_rate = Decimal(str(org.bill(key)["CurrencyRate"]))
    first = payment(org, key, "1.00", Date="2026-11-02")
    second = payment(org, key, "1.00", Date="2026-11-16")
    (one,) = org.put("Payments", {"Payments": [first]}).json()["Payments"]
    (other,) = org.put("Payments", {"Payments": [second]}).json()["Payments"]
    # Then each takes its own day's rate, and neither is simply the bill's
    rates = {Decimal(str(one["CurrencyRate"])), Decimal(str(other["CurrencyRate"]))}
    assert len(rates) == 2 and bill_rate not in rates
