"""The Xero connector writing a paid bill back - the payment and its fee, exactly once - against the
Xero sandbox (real wire format, Idempotency-Key, summarizeErrors, lost answers)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from local.sandboxes.core import Clock
from local.sandboxes.generator import BillRecord, Ledger, generate_ledger
from local.sandboxes.xero import XeroSandbox
from payedge_connect.providers.base import FeeToPost, PaymentRejected, PaymentToPost, rebase
from payedge_connect.providers.http import CallCounter, ProviderApi, ProviderUnavailable
from payedge_connect.providers.xero import XeroConnector
from payedge_connect.providers.xero.connector import API_URL
from payedge_connect.providers.xero.payments import REFERENCE_MAX_LENGTH

CLIENT_ID, SECRET, REDIRECT = "payedge-xero", "xero-s3cret", "http://127.0.0.1:9/oauth/xero/callback"
PAID_ON = date(2026, 11, 24)
OVERPAID = "Payment amount exceeds the amount outstanding on this document"
NOT_AUTHORISED = "Payments can only be made against Authorised documents"


@dataclass
class Org:
    """A CAD organisation in a running sandbox, connected with the connector's own scopes."""

    sandbox: XeroSandbox
    tenant: str
    ledger: Ledger
    connector: XeroConnector
    token: str

    def api(self) -> ProviderApi:
        return self.connector.api(self.tenant, access_token=lambda: self.token, calls=CallCounter())

    def impatient_api(self) -> ProviderApi:
        """The connector's API without the waits between retries, for tests that make every try fail."""
        return ProviderApi(
            rebase(API_URL, self.sandbox.base_url),
            access_token=lambda: self.token,
            headers={"xero-tenant-id": self.tenant},
            calls=CallCounter(),
            sleep=lambda seconds: None,
        )

    def bill(self, state: str = "open", currency: str = "CAD", skip: int = 0) -> BillRecord:
        bills = [b for b in self.ledger.bills if b.state == state and b.currency == currency and b.amount_paid == 0]
        return bills[skip]

    def payment(self, bill: BillRecord, number: str, **changes: Any) -> PaymentToPost:
        """What the write-back service hands the connector for `bill`, paid in full from the CAD account."""
        payment = PaymentToPost(
            reference=number,
            idempotency_key=f"{number}-payment".ljust(32, "0"),
            bill_id=self.sandbox.invoice_id(self.tenant, bill.key),
            vendor_id=self.sandbox.contact_id(self.tenant, bill.vendor_key),
            vendor_name=self.ledger.vendor(bill.vendor_key).name,
            currency=bill.currency,
            amount=bill.total - bill.amount_paid,
            payment_date=PAID_ON,
            bank_account_id=self.sandbox.account_id(self.tenant, "bank-cad"),
            exchange_rate=None,
            remittance_note="Invoice settled, thank you",
            invoice_number=bill.invoice_number,
            payment_status="completed",
        )
        return replace(payment, **changes)

    def fee(self, payment: PaymentToPost, amount: str = "2.50", **changes: Any) -> FeeToPost:
        fee = FeeToPost(
            reference=payment.reference,
            idempotency_key=f"{payment.reference}-fee".ljust(32, "0"),
            vendor_id=payment.vendor_id,
            currency=payment.currency,
            amount=Decimal(amount),
            payment_date=payment.payment_date,
            bank_account_id=payment.bank_account_id,
            expense_account_id=self.sandbox.account_id(self.tenant, "exp-bank-fees"),
            description=f"Payment fee, payment order {payment.reference}",
        )
        return replace(fee, **changes)

    def invoice(self, bill_id: str) -> dict[str, Any]:
        return next(i for i in self.sandbox.invoices(self.tenant) if i["InvoiceID"] == bill_id)

    def payments_on(self, bill_id: str) -> list[dict[str, Any]]:
        return [p for p in self.sandbox.payments(self.tenant) if p["Invoice"]["InvoiceID"] == bill_id]

    def spent(self, reference: str) -> list[dict[str, Any]]:
        return [t for t in self.sandbox.bank_transactions(self.tenant) if t["Reference"] == reference]


@pytest.fixture
def org() -> Iterator[Org]:
    sandbox = XeroSandbox(clock=Clock(), seed=31)
    ledger = generate_ledger(seed=31, bills=40, base_currency="CAD", as_of=sandbox.clock.now() - timedelta(minutes=1))
    with sandbox:
        tenant = sandbox.add_tenant(ledger, name="Maple Books Ltd.")
        sandbox.register_app(CLIENT_ID, SECRET, [REDIRECT], name="PayEdge Connect")
        connector = XeroConnector(base_url=sandbox.base_url)
        token = sandbox.issue_tokens(CLIENT_ID, tenants=[tenant], scopes=connector.oauth.scopes)["access_token"]
        yield Org(sandbox, tenant, ledger, connector, token)


# ---- the payment lands on the bill ------------------------------------------------------------------


def test_a_bill_paid_in_full_gets_one_payment_with_its_fields_and_reads_paid(org: Org) -> None:
    # Given an open CAD bill, paid in full by payment order PO-5001
    bill = org.bill()
    payment = org.payment(bill, "PO-5001")
    api = org.api()

    # When the connector posts the payment
    payment_id = org.connector.post_payment(api, payment)

    # Then Xero holds one payment against the bill, from the mapped bank account, on the payment date,
    # for the exact amount, with the order number then the remittance note as its Reference
    (landed,) = org.payments_on(payment.bill_id)
    assert landed["PaymentID"] == payment_id
    assert landed["Account"]["AccountID"] == payment.bank_account_id
    assert landed["Date"] == org.invoice(payment.bill_id)["FullyPaidOnDate"]
    assert landed["Amount"] == payment.amount and isinstance(landed["Amount"], Decimal)
    assert landed["Reference"] == "PO-5001 - Invoice settled, thank you"
    assert (landed["PaymentType"], landed["Status"]) == ("ACCPAYPAYMENT", "AUTHORISED")
    # And the bill reads Paid, at Xero and through the connector, for one call
    invoice = org.invoice(payment.bill_id)
    assert (invoice["Status"], invoice["AmountDue"]) == ("PAID", Decimal("0.00"))
    assert [b.is_open for b in org.connector.bills_by_id(org.api(), [payment.bill_id]).bills] == [False]
    assert api.calls.by_route == {"PUT /Payments": 1}


def test_a_partial_payment_reduces_what_the_bill_still_owes(org: Org) -> None:
    # Given an open bill and a payment of part of it
    bill = org.bill()
    payment = org.payment(bill, "PO-5002", amount=Decimal("10.01"))

    # When it is posted
    org.connector.post_payment(org.api(), payment)

    # Then the bill stays open with its balance reduced by exactly that amount
    invoice = org.invoice(payment.bill_id)
    assert invoice["Status"] == "AUTHORISED"
    assert invoice["AmountDue"] == bill.total - Decimal("10.01")
    (page_bill,) = org.connector.bills_by_id(org.api(), [payment.bill_id]).bills
    assert page_bill.is_open and page_bill.amount_due == bill.total - Decimal("10.01")


def test_a_foreign_currency_bill_is_paid_with_the_exchange_rate(org: Org) -> None:
    # Given a USD bill in the CAD organisation, paid from the CAD account at 1 USD = 1.3725 CAD
    bill = org.bill(currency="USD")
    payment = org.payment(bill, "PO-5003", exchange_rate=Decimal("1.3725"))

    # When it is posted
    org.connector.post_payment(org.api(), payment)

    # Then Xero applies the USD amount to the bill, at its own CurrencyRate (USD per CAD), and the
    # CAD account moves the amount converted at the platform's rate
    (landed,) = org.payments_on(payment.bill_id)
    assert landed["Amount"] == payment.amount
    assert landed["CurrencyRate"] == Decimal("0.728597")  # the sandbox keeps 6 places of 0.7285974499
    assert abs(landed["BankAmount"] - payment.amount * Decimal("1.3725")) <= Decimal("0.01")
    assert org.invoice(payment.bill_id)["Status"] == "PAID"


# ---- the fee --------------------------------------------------------------------------------------------


def test_the_fee_lands_as_its_own_spend_from_the_bank_account_to_the_fee_account(org: Org) -> None:
    # Given a posted payment and its 2.50 fee
    payment = org.payment(org.bill(), "PO-5004")
    org.connector.post_payment(org.api(), payment)
    fee = org.fee(payment)
    api = org.api()

    # When the connector posts the fee
    fee_id = org.connector.post_fee(api, fee)

    # Then Xero holds one SPEND transaction from the payment's bank account to the Bank fees account
    # (code 6900), for the vendor, for exactly the fee, with no tax added - two calls
    (spend,) = org.spent("PO-5004")
    assert spend["BankTransactionID"] == fee_id
    assert (spend["Type"], spend["Status"]) == ("SPEND", "AUTHORISED")
    assert spend["BankAccount"]["AccountID"] == fee.bank_account_id
    assert spend["Contact"]["ContactID"] == payment.vendor_id
    assert spend["Date"] == org.invoice(payment.bill_id)["FullyPaidOnDate"]
    assert (spend["Total"], spend["LineAmountTypes"]) == (Decimal("2.50"), "NoTax")
    (line,) = spend["LineItems"]
    assert (line["AccountCode"], line["Description"]) == ("6900", "Payment fee, payment order PO-5004")
    assert api.calls.by_route == {"GET /Accounts": 1, "PUT /BankTransactions": 1}
    # And the payment is unchanged by it
    assert len(org.payments_on(payment.bill_id)) == 1


def test_a_fee_in_another_currency_than_the_bank_account_is_refused_and_nothing_is_booked(org: Org) -> None:
    # Given a USD payment's fee, to be paid from the CAD account
    payment = org.payment(org.bill(currency="USD"), "PO-5005", exchange_rate=Decimal("1.3725"))

    # When the fee is posted, Then it is refused with the reason and no transaction is written
    with pytest.raises(PaymentRejected, match="The fee is in USD but the bank account pays in CAD"):
        org.connector.post_fee(org.api(), org.fee(payment))
    assert org.spent("PO-5005") == []


def test_a_fee_whose_answer_was_lost_is_found_by_its_reference(org: Org) -> None:
    # Given Xero books the fee but every answer to it is lost
    payment = org.payment(org.bill(), "PO-5006")
    fee = org.fee(payment)
    org.sandbox.faults.drop_response_after_commit("create_bank_transactions", count=5)
    api = org.impatient_api()
    with pytest.raises(ProviderUnavailable):
        org.connector.post_fee(api, fee)

    # When the write-back looks it up before trying again
    found = org.connector.find_fee(org.api(), fee)

    # Then it finds the one transaction booked (the retries with the same key were replayed)
    (spend,) = org.spent("PO-5006")
    assert found == spend["BankTransactionID"]
    assert api.calls.by_route["PUT /BankTransactions"] == 5


# ---- exactly once ---------------------------------------------------------------------------------------


def test_the_same_payment_posted_twice_with_its_key_is_one_payment_at_xero(org: Org) -> None:
    # Given a payment posted once
    payment = org.payment(org.bill(), "PO-5007", amount=Decimal("5.00"))
    first = org.connector.post_payment(org.api(), payment)

    # When it is posted again with the same key within Xero's 6 minutes
    org.sandbox.clock.advance(5 * 60)
    second = org.connector.post_payment(org.api(), payment)

    # Then Xero replays the first answer: one payment
    assert second == first
    assert [p["PaymentID"] for p in org.payments_on(payment.bill_id)] == [first]


def test_beyond_xeros_six_minutes_find_payment_is_what_finds_the_earlier_payment(org: Org) -> None:
    # Given a payment posted, and Xero's idempotency window gone by
    payment = org.payment(org.bill(), "PO-5008", amount=Decimal("5.00"))
    posted = org.connector.post_payment(org.api(), payment)
    org.sandbox.clock.advance(6 * 60 + 1)
    api = org.api()

    # When the write-back looks the payment up before another attempt
    found = org.connector.find_payment(api, payment)

    # Then it is found, for one call - whereas Xero, past its window, would take the key again
    assert found == posted
    assert api.calls.by_route == {"GET /Payments": 1}
    assert org.connector.post_payment(org.api(), payment) != posted
    assert len(org.payments_on(payment.bill_id)) == 2


def test_a_payment_committed_whose_answer_was_lost_is_found(org: Org) -> None:
    # Given Xero commits the payment but every answer to it is lost
    payment = org.payment(org.bill(), "PO-5009")
    org.sandbox.faults.drop_response_after_commit("create_payments", count=5)
    api = org.impatient_api()
    with pytest.raises(ProviderUnavailable):
        org.connector.post_payment(api, payment)

    # When the write-back looks it up
    found = org.connector.find_payment(org.api(), payment)

    # Then the one committed payment is found (every retry carried the key, so none paid twice)
    (landed,) = org.payments_on(payment.bill_id)
    assert found == landed["PaymentID"]
    assert api.calls.by_route["PUT /Payments"] == 5
    assert org.invoice(payment.bill_id)["Status"] == "PAID"


def test_a_lost_answer_is_retried_with_the_key_and_xero_replays_it(org: Org) -> None:
    # Given the first answer to a payment is lost after Xero committed it
    payment = org.payment(org.bill(), "PO-5010")
    org.sandbox.faults.drop_response_after_commit("create_payments")

    # When the connector posts it
    payment_id = org.connector.post_payment(org.impatient_api(), payment)

    # Then the retry got the first answer back: one payment, the one returned
    assert [p["PaymentID"] for p in org.payments_on(payment.bill_id)] == [payment_id]
    assert [e.status for e in org.sandbox.requests.entries() if e.endpoint == "create_payments"] == [0, 200]


def test_find_payment_ignores_other_payments_on_the_bill(org: Org) -> None:
    # Given a bill part-paid at Xero directly and by another payment order
    bill = org.bill()
    ours = org.payment(bill, "PO-5011", amount=Decimal("1.00"))
    org.sandbox.pay_bill_elsewhere(org.tenant, ours.bill_id, Decimal("1.00"))
    org.connector.post_payment(org.api(), org.payment(bill, "PO-50111", amount=Decimal("1.00")))

    # When our payment order is looked up, Then it is not there
    assert org.connector.find_payment(org.api(), ours) is None
    assert org.connector.find_fee(org.api(), org.fee(ours)) is None


# ---- refusals -------------------------------------------------------------------------------------------


def test_an_overpayment_is_rejected_with_xeros_message_and_nothing_is_written(org: Org) -> None:
    bill = org.bill()
    payment = org.payment(bill, "PO-5012", amount=bill.total + Decimal("0.01"))

    with pytest.raises(PaymentRejected) as refused:
        org.connector.post_payment(org.api(), payment)

    assert str(refused.value) == OVERPAID
    assert org.payments_on(payment.bill_id) == []
    assert org.invoice(payment.bill_id)["AmountDue"] == bill.total


@pytest.mark.parametrize("state", ["paid", "voided"])
def test_a_closed_bill_is_rejected_with_xeros_message(org: Org, state: str) -> None:
    bill = next(b for b in org.ledger.bills if b.state == state and b.currency == "CAD")
    payment = org.payment(bill, "PO-5013", amount=Decimal("1.00"))

    with pytest.raises(PaymentRejected) as refused:
        org.connector.post_payment(org.api(), payment)

    assert str(refused.value) == NOT_AUTHORISED
    assert [p["Reference"] for p in org.payments_on(payment.bill_id) if p["Reference"].startswith("PO-")] == []


def test_a_key_reused_for_another_payment_is_refused_with_xeros_message(org: Org) -> None:
    # Given a payment posted under a key
    first = org.payment(org.bill(), "PO-5014", amount=Decimal("1.00"))
    org.connector.post_payment(org.api(), first)

    # When another body comes with the same key (Xero answers 400 ValidationException)
    with pytest.raises(PaymentRejected, match="is used with a different request"):
        org.connector.post_payment(org.api(), replace(first, amount=Decimal("2.00")))

    # Then only the first was written
    assert [p["Amount"] for p in org.payments_on(first.bill_id)] == [Decimal("1.00")]


# ---- references -----------------------------------------------------------------------------------------


def test_a_reference_longer_than_xeros_limit_is_cut_to_255_and_still_found(org: Org) -> None:
    # Given a remittance note that takes the Reference past 255 characters, spread over lines
    note = "Settles March and April deliveries;\n" + "pallet returns credited " * 20
    payment = org.payment(org.bill(), "PO-5015", remittance_note=note)

    # When it is posted
    posted = org.connector.post_payment(org.api(), payment)

    # Then the Reference is the order number and the note on one line, cut to 255 characters
    (landed,) = org.payments_on(payment.bill_id)
    expected = ("PO-5015 - " + " ".join(note.split()))[:REFERENCE_MAX_LENGTH].strip()
    assert landed["Reference"] == expected and len(expected) == REFERENCE_MAX_LENGTH
    # And the lookup compares with what Xero kept
    assert org.connector.find_payment(org.api(), payment) == posted


def test_a_remittance_note_with_quotes_is_sent_and_found_as_written(org: Org) -> None:
    payment = org.payment(org.bill(), "PO-5016", remittance_note='Re: "Spring" order, 50% deposit & balance')

    posted = org.connector.post_payment(org.api(), payment)

    (landed,) = org.payments_on(payment.bill_id)
    assert landed["Reference"] == 'PO-5016 - Re: "Spring" order, 50% deposit & balance'
    assert org.connector.find_payment(org.api(), payment) == posted
