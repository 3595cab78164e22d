"""The Sage connector's write-back against the Sage sandbox: a bill's payment and its fee land in the
ledger exactly once - across resends, dropped answers and Sage's 7-day idempotency window - and Sage's
refusals come back in its own words.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from local.sandboxes.core import Clock
from local.sandboxes.generator import BillRecord, Ledger, generate_ledger
from local.sandboxes.sage import SageSandbox
from payedge_connect.providers import http
from payedge_connect.providers.base import FeeToPost, PaymentRejected, PaymentToPost
from payedge_connect.providers.http import ProviderApi, ProviderUnavailable
from payedge_connect.providers.sage import SageConnector
from payedge_connect.providers.sage import payments as sage_payments
from payedge_connect.writeback.service import idempotency_key

CLIENT_ID = "payedge-sage-writeback"
CONNECTION_ID = "conn-sage-1"
SAGE_REFERENCE_MAX = 25  # Swagger: ContactPayment.reference and OtherPayment.reference maxLength


@dataclass
class Business:
    """A Sage business in a running sandbox, with a connector and an access token for it."""

    sandbox: SageSandbox
    business_id: str
    user_id: str
    ledger: Ledger
    connector: SageConnector
    access_token: str
    # Payments the business already had: the generator's part-paid and paid bills were paid in Sage.
    earlier: frozenset[str]

    def api(self) -> ProviderApi:
        """A fresh API (and call counter) for the business, as one write-back attempt would have."""
        return self.connector.api(self.business_id, access_token=lambda: self.access_token)

    def sign_in_again(self) -> None:
        """A new access token: Sage's live for 5 minutes, and some tests move the clock by days."""
        self.access_token = self.sandbox.tokens.issue(
            user_id=self.user_id, client_id=CLIENT_ID, scope="full_access"
        ).access_token

    def sage_id(self, generator_key: str) -> str:
        return self.sandbox.entity_id(self.business_id, generator_key)

    def bill(self, record: BillRecord) -> dict[str, Any]:
        bill_id = self.sage_id(record.key)
        return next(item for item in self.sandbox.purchase_invoices(self.business_id) if item["id"] == bill_id)

    def contact_payments(self) -> list[dict[str, Any]]:
        """The contact payments made since the test began."""
        return [item for item in self.sandbox.contact_payments(self.business_id) if item["id"] not in self.earlier]

    def other_payments(self) -> list[dict[str, Any]]:
        """The other payments made since the test began."""
        return [item for item in self.sandbox.other_payments(self.business_id) if item["id"] not in self.earlier]

    def today(self) -> date:
        return self.sandbox.clock.now().date()


@pytest.fixture
def business() -> Iterator[Business]:
    ledger = generate_ledger(seed=5, bills=30, documents=0, as_of=datetime.now(UTC) - timedelta(days=1))
    sandbox = SageSandbox(clock=Clock())
    sandbox.register_app(CLIENT_ID, "secret", ["https://payedge.example/oauth/sage/callback"])
    user_id = sandbox.add_user("Owner", "owner@example.com")
    business_id = sandbox.add_tenant(ledger, name="Maple Leaf Trading", user_id=user_id)
    base_url = sandbox.start()
    # The sandbox's token store stands in for the OAuth flow (tested with the sandbox itself).
    token = sandbox.tokens.issue(user_id=user_id, client_id=CLIENT_ID, scope="full_access").access_token
    earlier = frozenset(
        item["id"] for item in [*sandbox.contact_payments(business_id), *sandbox.other_payments(business_id)]
    )
    yield Business(sandbox, business_id, user_id, ledger, SageConnector(base_url=base_url), token, earlier)
    sandbox.stop()


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries without waiting, so five attempts do not take seconds."""
    monkeypatch.setattr(http, "_BACKOFF_BASE_SECONDS", 0.001)


def open_bill(business: Business, currency: str | None = None) -> BillRecord:
    """The first open bill, by default in the business's base currency."""
    wanted = currency or business.ledger.base_currency
    return next(bill for bill in business.ledger.bills if bill.state == "open" and bill.currency == wanted)


def a_payment(
    business: Business,
    bill: BillRecord,
    *,
    number: str = "PO-000123",
    amount: Decimal | None = None,
    key: str | None = None,
    exchange_rate: Decimal | None = None,
) -> PaymentToPost:
    return PaymentToPost(
        reference=number,
        idempotency_key=key or idempotency_key(CONNECTION_ID, number, "payment"),
        bill_id=business.sage_id(bill.key),
        vendor_id=business.sage_id(bill.vendor_key),
        vendor_name=business.ledger.vendor(bill.vendor_key).name,
        currency=bill.currency,
        amount=bill.amount_due if amount is None else amount,
        payment_date=business.today(),
        bank_account_id=business.sage_id(f"bank-{bill.currency.lower()}"),
        exchange_rate=exchange_rate,
        remittance_note="Invoice paid in full, thank you",
        invoice_number=bill.invoice_number,
        payment_status="completed",
    )


def a_fee(business: Business, number: str = "PO-000123", amount: Decimal = Decimal("2.50")) -> FeeToPost:
    currency = business.ledger.base_currency
    return FeeToPost(
        reference=number,
        idempotency_key=idempotency_key(CONNECTION_ID, number, "fee"),
        vendor_id=business.sage_id(open_bill(business).vendor_key),
        currency=currency,
        amount=amount,
        payment_date=business.today(),
        bank_account_id=business.sage_id(f"bank-{currency.lower()}"),
        expense_account_id=business.sage_id("exp-bank-fees"),
        description=f"Payment fee, payment order {number}",
    )


# ---------------------------------------------------------------------------------------------- posting


def test_a_full_payment_lands_in_the_ledger_and_the_bill_reads_paid(business: Business) -> None:
    # Given an open bill in the business's base currency
    bill = open_bill(business)
    payment = a_payment(business, bill)
    api = business.api()

    # When its payment is posted
    payment_id = business.connector.post_payment(api, payment)

    # Then Sage holds one supplier payment with the order's facts, allocated to the bill, in one call
    [posted] = business.contact_payments()
    assert posted["id"] == payment_id
    assert posted["transaction_type"]["id"] == "VENDOR_PAYMENT"
    assert posted["contact"]["id"] == payment.vendor_id
    assert posted["bank_account"]["id"] == payment.bank_account_id
    assert posted["date"] == payment.payment_date.isoformat()
    assert posted["total_amount"] == bill.amount_due
    assert posted["currency"]["id"] == "CAD"
    assert posted["reference"] == "PO-000123"
    assert [(item["artefact"]["id"], item["amount"]) for item in posted["allocated_artefacts"]] == [
        (payment.bill_id, bill.amount_due)
    ]
    assert posted["payment_on_account"] is None
    assert api.calls.by_route == {"POST /contact_payments": 1}
    # And the bill reads Paid, nothing outstanding
    paid = business.bill(bill)
    assert paid["status"]["id"] == "PAID"
    assert paid["outstanding_amount"] == Decimal("0.00")


def test_a_partial_payment_reduces_what_the_bill_still_owes(business: Business) -> None:
    # Given an open bill
    bill = open_bill(business)

    # When part of it is paid, to the cent
    business.connector.post_payment(business.api(), a_payment(business, bill, amount=Decimal("1000.07")))

    # Then the bill reads part paid, its balance reduced by exactly that amount
    part_paid = business.bill(bill)
    assert part_paid["status"]["id"] == "PART_PAID"
    assert part_paid["outstanding_amount"] == bill.amount_due - Decimal("1000.07")
    [posted] = business.contact_payments()
    assert posted["total_amount"] == Decimal("1000.07")


def test_the_fee_lands_as_its_own_payment_from_the_bank_account_to_the_fee_account(business: Business) -> None:
    # Given a payment order's fee
    fee = a_fee(business, amount=Decimal("3.75"))
    api = business.api()

    # When it is posted
    fee_id = business.connector.post_fee(api, fee)

    # Then Sage holds an other payment out of the bank account, one line to the fee account, in one call
    [posted] = business.other_payments()
    assert posted["id"] == fee_id
    assert posted["transaction_type"]["id"] == "OTHER_PAYMENT"
    assert posted["bank_account"]["id"] == fee.bank_account_id
    assert posted["date"] == fee.payment_date.isoformat()
    assert posted["total_amount"] == Decimal("3.75")
    assert posted["reference"] == "PO-000123"
    assert [
        (line["ledger_account"]["id"], line["total_amount"], line["details"]) for line in posted["payment_lines"]
    ] == [(fee.expense_account_id, Decimal("3.75"), "Payment fee, payment order PO-000123")]
    # And it is not spend with the vendor, nor a payment of any bill
    assert posted["contact"] is None
    assert business.contact_payments() == []
    assert api.calls.by_route == {"POST /other_payments": 1}


def test_a_payment_and_its_fee_take_two_calls(business: Business) -> None:
    api = business.api()

    business.connector.post_payment(api, a_payment(business, open_bill(business)))
    business.connector.post_fee(api, a_fee(business))

    assert api.calls.total == 2
    assert (len(business.contact_payments()), len(business.other_payments())) == (1, 1)


# ---------------------------------------------------------------------------------------------- exactly once


def test_the_same_payment_posted_twice_is_one_payment_at_sage(business: Business) -> None:
    # Given a payment posted once
    bill = open_bill(business)
    payment = a_payment(business, bill, amount=Decimal("500.00"))
    first = business.connector.post_payment(business.api(), payment)

    # When it is posted again with the same key, within Sage's 7 days
    second = business.connector.post_payment(business.api(), payment)

    # Then Sage answered with the first payment: one payment, the bill paid once
    assert second == first
    assert [item["id"] for item in business.contact_payments()] == [first]
    assert business.bill(bill)["outstanding_amount"] == bill.amount_due - Decimal("500.00")


def test_the_same_fee_posted_twice_is_one_fee_at_sage(business: Business) -> None:
    fee = a_fee(business)

    first = business.connector.post_fee(business.api(), fee)
    second = business.connector.post_fee(business.api(), fee)

    assert second == first
    assert [item["id"] for item in business.other_payments()] == [first]


def test_beyond_sages_seven_days_find_payment_still_finds_the_payment(business: Business) -> None:
    # Given a payment posted, and eight days gone by: Sage no longer remembers its idempotency_id
    payment = a_payment(business, open_bill(business), amount=Decimal("250.00"))
    payment_id = business.connector.post_payment(business.api(), payment)
    business.sandbox.clock.advance(8 * 24 * 3600)
    business.sign_in_again()
    api = business.api()

    # When the write-back looks it up before posting again
    found = business.connector.find_payment(api, payment)

    # Then it finds that payment, in one call
    assert found == payment_id
    assert api.calls.by_route == {"GET /contact_payments": 1}


def test_beyond_sages_seven_days_find_fee_still_finds_the_fee(business: Business) -> None:
    fee = a_fee(business)
    fee_id = business.connector.post_fee(business.api(), fee)
    business.sandbox.clock.advance(8 * 24 * 3600)
    business.sign_in_again()
    api = business.api()

    assert business.connector.find_fee(api, fee) == fee_id
    assert api.calls.by_route == {"GET /other_payments": 1}


def test_a_dropped_answer_is_resent_safely(business: Business) -> None:
    # Given Sage commits the next payment but its answer never arrives
    business.sandbox.faults.drop_response_after_commit("create_contact_payment", count=1)
    payment = a_payment(business, open_bill(business))

    # When the payment is posted
    payment_id = business.connector.post_payment(business.api(), payment)

    # Then the resend carried the same idempotency_id: Sage answered with the payment it had made
    assert business.sandbox.requests.count("create_contact_payment") == 2
    assert [item["id"] for item in business.contact_payments()] == [payment_id]


def test_after_answers_dropped_on_every_attempt_find_payment_finds_the_payment(
    business: Business, no_backoff: None
) -> None:
    # Given Sage commits the payment and drops every answer, resends included
    business.sandbox.faults.drop_response_after_commit("create_contact_payment", count=10)
    payment = a_payment(business, open_bill(business))

    # When the payment is posted, the outcome is unknown
    with pytest.raises(ProviderUnavailable):
        business.connector.post_payment(business.api(), payment)

    # Then Sage holds the payment once, and find_payment finds it
    [posted] = business.contact_payments()
    assert business.connector.find_payment(business.api(), payment) == posted["id"]


def test_after_answers_dropped_on_every_attempt_find_fee_finds_the_fee(business: Business, no_backoff: None) -> None:
    business.sandbox.faults.drop_response_after_commit("create_other_payment", count=10)
    fee = a_fee(business)

    with pytest.raises(ProviderUnavailable):
        business.connector.post_fee(business.api(), fee)

    [posted] = business.other_payments()
    assert business.connector.find_fee(business.api(), fee) == posted["id"]


def test_find_payment_finds_nothing_when_nothing_was_posted(business: Business) -> None:
    # Given the vendor was paid in Sage itself for the same bill, the same day, under another reference
    bill = open_bill(business)
    payment = a_payment(business, bill, amount=Decimal("100.00"))
    business.sandbox.pay_bill_elsewhere(business.business_id, payment.bill_id, Decimal("100.00"))
    api = business.api()

    # When our payment is looked up, that payment is not taken for ours
    assert business.connector.find_payment(api, payment) is None
    assert api.calls.total == 1


def test_find_payment_does_not_take_our_payment_of_another_bill(business: Business) -> None:
    # Given one order number paid one bill of a vendor
    first, second = [
        bill for bill in business.ledger.bills if bill.state == "open" and bill.vendor_key == "vendor-00001"
    ][:2]
    business.connector.post_payment(business.api(), a_payment(business, first))

    # Then a payment of the vendor's other bill under that number is not found
    assert business.connector.find_payment(business.api(), a_payment(business, second)) is None


def test_find_fee_finds_nothing_for_another_payment_order(business: Business) -> None:
    business.connector.post_fee(business.api(), a_fee(business, "PO-000123"))

    assert business.connector.find_fee(business.api(), a_fee(business, "PO-000124")) is None


# ---------------------------------------------------------------------------------------------- refusals


def test_a_payment_over_what_the_bill_owes_is_rejected_in_sages_words(business: Business) -> None:
    # Given a payment of a cent more than the bill still owes
    bill = open_bill(business)
    payment = a_payment(business, bill, amount=bill.amount_due + Decimal("0.01"))

    # When it is posted, Sage refuses it and says why
    with pytest.raises(PaymentRejected) as refusal:
        business.connector.post_payment(business.api(), payment)

    assert str(refusal.value) == (
        f"allocated_artefacts.amount: The amount ({payment.amount}) exceeds the outstanding amount of artefact "
        f"{payment.bill_id} ({bill.amount_due})"
    )
    # And nothing was recorded: the bill still owes all of it
    assert business.contact_payments() == []
    assert business.bill(bill)["outstanding_amount"] == bill.amount_due


def test_a_payment_of_a_paid_bill_is_rejected_in_sages_words(business: Business) -> None:
    # Given a bill already paid in Sage
    bill = open_bill(business)
    payment = a_payment(business, bill)
    business.sandbox.pay_bill_elsewhere(business.business_id, payment.bill_id)

    with pytest.raises(PaymentRejected) as refusal:
        business.connector.post_payment(business.api(), payment)

    assert str(refusal.value) == (
        f"allocated_artefacts.artefact_id: Artefact {payment.bill_id} cannot be paid as its status is Paid"
    )
    assert len(business.contact_payments()) == 1  # only the payment made in Sage


def test_a_payment_from_a_bank_account_in_another_currency_is_rejected(business: Business) -> None:
    bill = open_bill(business, "USD")
    payment = a_payment(business, bill)
    in_euros = replace(payment, bank_account_id=business.sage_id("bank-eur"))

    with pytest.raises(PaymentRejected, match=r"bank_account_id: The bank account currency \(EUR\)"):
        business.connector.post_payment(business.api(), in_euros)


# ---------------------------------------------------------------------------------------------- fields


def test_a_foreign_currency_bill_is_paid_at_the_platforms_exchange_rate(business: Business) -> None:
    # Given a USD bill of a CAD business, paid from the USD account at 1 USD = 1.3725 CAD
    bill = open_bill(business, "USD")
    payment = a_payment(business, bill, exchange_rate=Decimal("1.3725"))

    business.connector.post_payment(business.api(), payment)

    # Then Sage holds a USD payment at its rate, USD per CAD, and the base amount the platform's rate gives
    [posted] = business.contact_payments()
    assert posted["currency"]["id"] == "USD"
    assert posted["exchange_rate"] == Decimal("0.728597")  # 1 / 1.3725 to Sage's 6 places
    in_cad = (bill.amount_due * Decimal("1.3725")).quantize(Decimal("0.01"))
    assert abs(posted["base_currency_total_amount"] - in_cad) <= Decimal("0.01")
    assert business.bill(bill)["status"]["id"] == "PAID"


def test_a_reference_longer_than_sages_25_characters_keeps_its_end(business: Business) -> None:
    # Given payment order numbers longer than Sage's reference, differing only at the end
    number = "PAYEDGE-2026-11-24-ORDER-000000123"
    bill = open_bill(business)
    payment = a_payment(business, bill, number=number, amount=Decimal("10.00"))

    business.connector.post_payment(business.api(), payment)

    # Then the reference holds the number's last 25 characters, where order numbers differ
    [posted] = business.contact_payments()
    assert posted["reference"] == "026-11-24-ORDER-000000123"
    assert len(posted["reference"]) == SAGE_REFERENCE_MAX
    # And the look-up compares the same cut: this order is found, its neighbour is not
    assert business.connector.find_payment(business.api(), payment) == posted["id"]
    neighbour = a_payment(business, bill, number="PAYEDGE-2026-11-24-ORDER-000000124", amount=Decimal("10.00"))
    assert business.connector.find_payment(business.api(), neighbour) is None


def test_a_uuid_key_is_sent_as_32_hex_characters_and_still_makes_one_payment(business: Business) -> None:
    key = uuid.uuid4()
    assert sage_payments.idempotency_id(str(key)) == key.hex
    payment = a_payment(business, open_bill(business), key=str(key))

    first = business.connector.post_payment(business.api(), payment)
    second = business.connector.post_payment(business.api(), payment)

    assert first == second
    assert len(business.contact_payments()) == 1


def test_payment_keys_become_sages_idempotency_id_form() -> None:
    ours = idempotency_key(CONNECTION_ID, "PO-000123", "payment")
    assert sage_payments.idempotency_id(ours) == ours
    other = sage_payments.idempotency_id("payment-order-PO-000123")
    assert len(other) == 32 and all(char in "0123456789abcdef" for char in other)
