"""Sage sandbox writes: contact payments against purchase invoices, bank fees as other payments,
idempotency, validation, lost responses, and the controls that change the ledger "in Sage"."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from local.sandboxes.sage import SageSandbox
from tests.sandboxes.test_sage_helpers import (
    SageApi,
    api_for,
    bank_in,
    first_invoice,
    payment_body,
    start_sandbox,
)

SEVEN_DAYS = 7 * 24 * 3600
IDEMPOTENCY_ID = "3f2b9c1d7e8a4b5c9d0e1f2a3b4c5d6e"


@pytest.fixture
def env() -> Iterator[tuple[SageSandbox, str, SageApi]]:
    running, business_id = start_sandbox()
    yield running, business_id, api_for(running)
    running.stop()


def money(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def fee_body(api: SageApi, bank_id: str, amount: str, **overrides: Any) -> dict[str, dict[str, Any]]:
    offered = api.items("/ledger_accounts", visible_in="other_payments")
    fees = next(item for item in offered if "Bank fees" in item["displayed_as"])
    fields: dict[str, Any] = {
        "transaction_type_id": "OTHER_PAYMENT",
        "date": "2026-11-20",
        "bank_account_id": bank_id,
        "total_amount": float(amount),
        "reference": "Wire fee ACH-1",
        "payment_lines": [{"ledger_account_id": fees["id"], "total_amount": float(amount), "details": "Wire fee"}],
    }
    fields.update(overrides)
    return {"other_payment": fields}


# ---- contact payments ------------------------------------------------------------------------------


def test_payments_move_an_invoice_from_unpaid_to_part_paid_to_paid(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given an unpaid invoice and a bank account in its currency
    running, _, api = env
    invoice = first_invoice(api, "UNPAID")
    total = money(invoice["total_amount"])
    bank = bank_in(api, invoice["currency"]["id"])
    part = (total / 2).quantize(Decimal("0.01"))
    running.clock.advance(30)
    # When the app pays part of it
    first = api.post("/contact_payments", payment_body(invoice, bank["id"], str(part)))
    # Then the payment is created and the invoice is part paid, with updated_at moved on
    assert first.status_code == 201, first.text
    after_first = api.one(f"/purchase_invoices/{invoice['id']}")
    assert after_first["status"]["id"] == "PART_PAID"
    assert money(after_first["total_paid"]) == part
    assert money(after_first["outstanding_amount"]) == total - part
    assert after_first["updated_at"] > invoice["updated_at"]
    assert after_first["last_paid"] == "2026-11-20"
    # When the app pays the rest
    second = api.post("/contact_payments", payment_body(invoice, bank["id"], str(total - part)))
    # Then the invoice is paid, nothing is outstanding and both payments are listed on it
    assert second.status_code == 201, second.text
    paid = api.one(f"/purchase_invoices/{invoice['id']}", show_payments_allocations="true")
    assert paid["status"]["id"] == "PAID"
    assert money(paid["outstanding_amount"]) == 0
    assert [money(item["amount"]) for item in paid["payments_allocations"]] == [part, total - part]
    assert {item["contact_payment"]["id"] for item in paid["payments_allocations"]} == {
        first.json()["id"],
        second.json()["id"],
    }


def test_created_payment_echoes_sages_contact_payment(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given an unpaid invoice
    _, _, api = env
    invoice = first_invoice(api, "UNPAID")
    bank = bank_in(api, invoice["currency"]["id"])
    # When the app pays 12.34 of it
    created = api.post("/contact_payments", payment_body(invoice, bank["id"], "12.34")).json()
    # Then the answer is a VENDOR_PAYMENT for the contact, bank and invoice it named
    assert created["transaction_type"]["id"] == "VENDOR_PAYMENT"
    assert created["contact"]["id"] == invoice["contact"]["id"]
    assert created["bank_account"]["id"] == bank["id"]
    assert created["reference"] == "ACH-20261120-01"
    assert [(item["artefact"]["id"], money(item["amount"])) for item in created["allocated_artefacts"]] == [
        (invoice["id"], Decimal("12.34"))
    ]
    assert created["payment_on_account"] is None
    assert api.one(f"/contact_payments/{created['id']}") == created


def test_overpayment_is_refused_with_sages_error_array(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given an unpaid invoice
    _, _, api = env
    invoice = first_invoice(api, "UNPAID")
    bank = bank_in(api, invoice["currency"]["id"])
    too_much = str(money(invoice["outstanding_amount"]) + Decimal("0.01"))
    # When the app pays one cent more than is outstanding
    answer = api.post("/contact_payments", payment_body(invoice, bank["id"], too_much))
    # Then Sage answers 422 with its error array and the invoice is unchanged
    assert answer.status_code == 422
    errors = answer.json()
    assert isinstance(errors, list)
    assert errors[0]["$severity"] == "error"
    assert errors[0]["$dataCode"] == "RecordInvalid"
    assert errors[0]["$source"] == "allocated_artefacts.amount"
    assert "outstanding" in errors[0]["$message"]
    assert api.one(f"/purchase_invoices/{invoice['id']}")["outstanding_amount"] == invoice["outstanding_amount"]
    assert api.one("/contact_payments", contact_id=invoice["contact"]["id"], from_date="2026-11-20")["$total"] == 0


def test_inactive_bank_account_is_refused(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given an invoice in base currency and the closed bank account
    _, _, api = env
    invoice = _invoice_in(api, "CAD")
    closed = bank_in(api, "CAD", active=False)
    # When the app pays from the closed account
    answer = api.post("/contact_payments", payment_body(invoice, closed["id"], "10.00"))
    # Then Sage refuses it on bank_account_id
    assert answer.status_code == 422
    assert [error["$source"] for error in answer.json()] == ["bank_account_id"]


def test_bank_account_in_another_currency_is_refused(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given a EUR invoice and the GBP bank account (neither its currency nor base currency)
    _, _, api = env
    invoice = _invoice_in(api, "EUR")
    gbp = bank_in(api, "GBP")
    # When the app pays the EUR invoice from the GBP account
    answer = api.post("/contact_payments", payment_body(invoice, gbp["id"], "10.00"))
    # Then Sage refuses it
    assert answer.status_code == 422
    assert "currency" in answer.json()[0]["$message"]


def test_foreign_invoice_may_be_paid_from_the_base_currency_account(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given a EUR invoice and the CAD (base currency) bank account
    _, _, api = env
    invoice = _invoice_in(api, "EUR")
    cad = bank_in(api, "CAD")
    # When the app pays it from the CAD account
    answer = api.post("/contact_payments", payment_body(invoice, cad["id"], "10.00"))
    # Then the payment is in EUR with its base-currency value
    assert answer.status_code == 201, answer.text
    payment = answer.json()
    assert payment["currency"]["id"] == "EUR"
    assert money(payment["base_currency_total_amount"]) > Decimal("10.00")


def test_void_and_paid_invoices_cannot_be_paid(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given a voided and a paid invoice
    _, _, api = env
    for status_id in ("VOID", "PAID"):
        invoice = first_invoice(api, status_id)
        bank = bank_in(api, invoice["currency"]["id"])
        # When the app pays one of them
        answer = api.post("/contact_payments", payment_body(invoice, bank["id"], "1.00"))
        # Then Sage refuses, naming the artefact
        assert answer.status_code == 422, status_id
        assert answer.json()[0]["$source"] == "allocated_artefacts.artefact_id"


def test_missing_required_fields_are_each_reported(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given a contact payment without contact, bank account and date
    _, _, api = env
    body = {"contact_payment": {"transaction_type_id": "VENDOR_PAYMENT", "total_amount": 10}}
    # When it is posted
    answer = api.post("/contact_payments", body)
    # Then each missing field has its own entry
    assert answer.status_code == 422
    assert [(error["$source"], error["$message"]) for error in answer.json()] == [
        ("contact_id", "can't be blank"),
        ("bank_account_id", "can't be blank"),
        ("date", "can't be blank"),
    ]


def test_payment_without_its_resource_root_is_refused(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given payment fields sent without the contact_payment wrapper
    _, _, api = env
    # When they are posted
    answer = api.post("/contact_payments", {"transaction_type_id": "VENDOR_PAYMENT"})
    # Then Sage says the contact_payment parameter is missing
    assert answer.status_code == 422
    assert answer.json()[0]["$source"] == "contact_payment"


def test_reference_longer_than_25_characters_is_refused(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given a payment whose reference is 26 characters long
    _, _, api = env
    invoice = first_invoice(api, "UNPAID")
    bank = bank_in(api, invoice["currency"]["id"])
    body = payment_body(invoice, bank["id"], "5.00", reference="R" * 26)
    # When it is posted
    answer = api.post("/contact_payments", body)
    # Then Sage refuses it on reference, and 25 characters pass
    assert answer.status_code == 422
    assert answer.json()[0]["$source"] == "reference"
    ok = api.post("/contact_payments", payment_body(invoice, bank["id"], "5.00", reference="R" * 25))
    assert ok.status_code == 201


def test_payment_must_be_json(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given a payment posted as a form
    _, _, api = env
    # When it reaches Sage
    answer = api.session.post(f"{api.base}/contact_payments", data={"contact_payment[total_amount]": "1"})
    # Then the media type is refused
    assert answer.status_code == 415


def test_unallocated_remainder_becomes_a_payment_on_account(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given an unpaid invoice
    _, _, api = env
    invoice = first_invoice(api, "UNPAID")
    bank = bank_in(api, invoice["currency"]["id"])
    body = payment_body(invoice, bank["id"], "10.00", total_amount=25.0)
    # When the app pays 25.00 but allocates 10.00
    created = api.post("/contact_payments", body).json()
    # Then the 15.00 left over is a payment on account
    assert money(created["payment_on_account"]["total_amount"]) == Decimal("15.00")
    assert money(api.one(f"/purchase_invoices/{invoice['id']}")["total_paid"]) == Decimal("10.00")


def test_allocations_above_the_payment_total_are_refused(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given a payment of 5.00 that allocates 10.00
    _, _, api = env
    invoice = first_invoice(api, "UNPAID")
    bank = bank_in(api, invoice["currency"]["id"])
    # When it is posted
    answer = api.post("/contact_payments", payment_body(invoice, bank["id"], "10.00", total_amount=5.0))
    # Then Sage refuses it on total_amount
    assert answer.status_code == 422
    assert answer.json()[0]["$source"] == "total_amount"


# ---- idempotency -----------------------------------------------------------------------------------


def test_idempotency_id_replays_the_same_payment_within_7_days(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given a payment posted with an idempotency_id
    running, business_id, api = env
    invoice = first_invoice(api, "UNPAID")
    bank = bank_in(api, invoice["currency"]["id"])
    body = payment_body(invoice, bank["id"], "20.00", idempotency_id=IDEMPOTENCY_ID)
    first = api.post("/contact_payments", body)
    # When the same request is sent again six days later (with a fresh access token)
    running.clock.advance(6 * 24 * 3600)
    api = api_for(running)
    again = api.post("/contact_payments", body)
    # Then Sage answers with the identical result and books nothing more
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert money(api.one(f"/purchase_invoices/{invoice['id']}")["total_paid"]) == Decimal("20.00")
    ours = [p for p in running.contact_payments(business_id) if p["reference"] == "ACH-20261120-01"]
    assert [p["id"] for p in ours] == [first.json()["id"]]


def test_idempotency_id_after_7_days_creates_a_new_payment(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given a payment posted with an idempotency_id
    running, _, api = env
    invoice = first_invoice(api, "UNPAID")
    bank = bank_in(api, invoice["currency"]["id"])
    body = payment_body(invoice, bank["id"], "20.00", idempotency_id=IDEMPOTENCY_ID)
    first = api.post("/contact_payments", body).json()
    # When the same request is sent seven days later (with a fresh access token)
    running.clock.advance(SEVEN_DAYS)
    api = api_for(running)
    again = api.post("/contact_payments", body)
    # Then it is a new payment and the invoice has been paid twice
    assert again.status_code == 201
    assert again.json()["id"] != first["id"]
    assert money(api.one(f"/purchase_invoices/{invoice['id']}")["total_paid"]) == Decimal("40.00")


def test_idempotency_id_reused_for_another_resource_type_is_a_mismatch(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given an idempotency_id used for a contact payment
    _, _, api = env
    invoice = first_invoice(api, "UNPAID")
    bank = bank_in(api, invoice["currency"]["id"])
    api.post("/contact_payments", payment_body(invoice, bank["id"], "20.00", idempotency_id=IDEMPOTENCY_ID))
    # When the same id is sent with an other payment
    answer = api.post("/other_payments", fee_body(api, bank["id"], "3.00", idempotency_id=IDEMPOTENCY_ID))
    # Then Sage answers IdempotencyResourceMismatch
    assert answer.status_code == 422
    assert answer.json()[0]["$dataCode"] == "IdempotencyResourceMismatch"


def test_refused_payment_does_not_use_up_its_idempotency_id(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given a payment refused for a too long reference, sent with an idempotency_id
    _, _, api = env
    invoice = first_invoice(api, "UNPAID")
    bank = bank_in(api, invoice["currency"]["id"])
    refused = api.post(
        "/contact_payments",
        payment_body(invoice, bank["id"], "5.00", reference="R" * 30, idempotency_id=IDEMPOTENCY_ID),
    )
    assert refused.status_code == 422
    # When the corrected payment is sent with the same id
    fixed = api.post("/contact_payments", payment_body(invoice, bank["id"], "5.00", idempotency_id=IDEMPOTENCY_ID))
    # Then it is booked
    assert fixed.status_code == 201


# ---- lost response ---------------------------------------------------------------------------------


def test_lost_response_payment_is_committed_and_found_by_a_later_read(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given Sage will commit the next payment but drop its response
    running, _, api = env
    invoice = first_invoice(api, "UNPAID")
    bank = bank_in(api, invoice["currency"]["id"])
    running.faults.drop_response_after_commit("create_contact_payment")
    # When the app posts the payment
    with pytest.raises(requests.ConnectionError):
        api.post("/contact_payments", payment_body(invoice, bank["id"], "30.00", reference="PAYEDGE-7781"))
    # Then the request log shows it unanswered
    assert [entry.status for entry in running.requests.entries() if entry.endpoint == "create_contact_payment"] == [0]
    # And a read by contact and date finds the committed payment with its reference
    found = api.items(
        "/contact_payments",
        contact_id=invoice["contact"]["id"],
        from_date="2026-11-20",
        to_date="2026-11-20",
        attributes="reference,total_amount,allocated_artefacts",
    )
    assert [(item["reference"], money(item["total_amount"])) for item in found] == [("PAYEDGE-7781", Decimal("30.00"))]
    assert found[0]["allocated_artefacts"][0]["artefact"]["id"] == invoice["id"]
    assert money(api.one(f"/purchase_invoices/{invoice['id']}")["total_paid"]) == Decimal("30.00")


# ---- other payments (bank fees) --------------------------------------------------------------------


def test_bank_fee_is_booked_as_an_other_payment_to_the_expense_account(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given the CAD bank account and its balance
    running, business_id, api = env
    bank = bank_in(api, "CAD")
    # When the app books a 3.50 fee
    answer = api.post("/other_payments", fee_body(api, bank["id"], "3.50"))
    # Then an OTHER_PAYMENT with one line on "Bank fees" exists and the bank balance fell by 3.50
    assert answer.status_code == 201, answer.text
    fee = answer.json()
    assert fee["transaction_type"]["id"] == "OTHER_PAYMENT"
    assert fee["payment_lines"][0]["ledger_account"]["displayed_as"].startswith("Bank fees")
    assert [item["id"] for item in running.other_payments(business_id)] == [fee["id"]]
    assert money(api.one(f"/bank_accounts/{bank['id']}")["balance"]) == money(bank["balance"]) - Decimal("3.50")
    assert api.one(f"/other_payments/{fee['id']}") == fee


def test_other_payment_lines_must_add_up_to_the_total(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given a fee whose total differs from its line
    _, _, api = env
    bank = bank_in(api, "CAD")
    # When it is posted
    answer = api.post("/other_payments", fee_body(api, bank["id"], "3.50", total_amount=4.0))
    # Then Sage refuses it
    assert answer.status_code == 422
    assert answer.json()[0]["$source"] == "total_amount"


def test_other_payment_to_an_account_hidden_from_other_payments_is_refused(
    env: tuple[SageSandbox, str, SageApi],
) -> None:
    # Given the accounts payable control account, which other payments may not use
    _, _, api = env
    bank = bank_in(api, "CAD")
    payable = api.items("/ledger_accounts", ledger_account_type_id="CURRENT_LIABILITY")[0]
    line = {"ledger_account_id": payable["id"], "total_amount": 2.0}
    # When a fee is booked to it
    answer = api.post("/other_payments", fee_body(api, bank["id"], "2.00", payment_lines=[line]))
    # Then Sage refuses the line
    assert answer.status_code == 422
    assert answer.json()[0]["$source"] == "payment_lines.ledger_account_id"


# ---- controls (changes made in Sage by someone else) -----------------------------------------------


def test_pay_bill_elsewhere_pays_the_outstanding_amount(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given an unpaid invoice
    running, business_id, api = env
    invoice = first_invoice(api, "UNPAID")
    # When someone pays it in Sage (admin route)
    answer = requests.post(
        f"{running.base_url}/_admin/pay_bill_elsewhere", json={"business_id": business_id, "bill_id": invoice["id"]}
    )
    # Then the invoice is paid and the payment is visible to the app
    assert answer.status_code == 200
    payment_id = answer.json()["contact_payment_id"]
    assert api.one(f"/purchase_invoices/{invoice['id']}")["status"]["id"] == "PAID"
    assert api.one(f"/contact_payments/{payment_id}")["total_amount"] == invoice["outstanding_amount"]


def test_changed_bill_amount_moves_the_outstanding_amount(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given an unpaid invoice
    running, business_id, api = env
    invoice = first_invoice(api, "UNPAID")
    # When its total is changed in Sage to 99.99
    running.change_bill_amount(business_id, invoice["id"], Decimal("99.99"))
    # Then total and outstanding follow
    changed = api.one(f"/purchase_invoices/{invoice['id']}")
    assert money(changed["total_amount"]) == Decimal("99.99")
    assert money(changed["outstanding_amount"]) == Decimal("99.99")


def test_voided_bill_shows_void_with_nothing_outstanding(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given an unpaid invoice
    running, business_id, api = env
    invoice = first_invoice(api, "UNPAID")
    # When it is voided in Sage
    running.void_bill(business_id, invoice["id"])
    # Then it reads VOID with nothing outstanding and a void reason
    voided = api.one(f"/purchase_invoices/{invoice['id']}")
    assert voided["status"]["id"] == "VOID"
    assert money(voided["outstanding_amount"]) == 0
    assert voided["void_reason"]


def test_bill_with_payments_cannot_be_deleted(env: tuple[SageSandbox, str, SageApi]) -> None:
    # Given a part-paid invoice
    running, business_id, api = env
    invoice = first_invoice(api, "PART_PAID")
    # When deleting it is attempted
    answer = requests.post(
        f"{running.base_url}/_admin/delete_bill", json={"business_id": business_id, "bill_id": invoice["id"]}
    )
    # Then the control refuses, as Sage wants payments removed first
    assert answer.status_code == 400
    assert api.get(f"/purchase_invoices/{invoice['id']}").status_code == 200


def _invoice_in(api: SageApi, currency: str) -> dict[str, Any]:
    for invoice in api.items("/purchase_invoices", status_id="UNPAID", attributes="all", items_per_page=200):
        if invoice["currency"]["id"] == currency:
            return invoice
    raise AssertionError(f"no unpaid {currency} invoice")
