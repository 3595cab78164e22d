"""The QuickBooks side of write-back against the QuickBooks sandbox: a bill's payment (BillPayment) and
its fee (Purchase) posted exactly once, looked up after an uncertain outcome, refused with QuickBooks'
own words, in a foreign currency, with references cut to QuickBooks' limits."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
import requests

from local.sandboxes.generator import BillRecord, Ledger, exchange_rate, generate_ledger
from local.sandboxes.quickbooks import QuickBooksSandbox
from payedge_connect.providers.base import FeeToPost, PaymentRejected, PaymentToPost
from payedge_connect.providers.http import CallCounter, ProviderApi, ProviderUnavailable
from payedge_connect.providers.quickbooks import QuickBooksConnector

CLIENT_ID = "writeback-app"
ORDER = "PO-2026-000101"


@dataclass
class Company:
    sandbox: QuickBooksSandbox
    realm_id: str
    ledger: Ledger
    connector: QuickBooksConnector

    def api(self) -> ProviderApi:
        """The connector's API client, with a token issued as if the user had consented."""
        token = self.sandbox.issue_tokens(CLIENT_ID, self.realm_id)["access_token"]
        return self.connector.api(self.realm_id, access_token=lambda: token, calls=CallCounter())

    def api_without_pauses(self) -> ProviderApi:
        """The same API, resending at once after a dropped answer (the backoff is not under test)."""
        token = self.sandbox.issue_tokens(CLIENT_ID, self.realm_id)["access_token"]
        return ProviderApi(self.api().base_url, access_token=lambda: token, calls=CallCounter(), sleep=lambda _: None)

    def id_of(self, key: str) -> str:
        return self.sandbox.entity_id(self.realm_id, key)

    def open_bill(self, *, currency: str, state: str = "open") -> BillRecord:
        return next(bill for bill in self.ledger.unpaid_bills() if bill.currency == currency and bill.state == state)

    def bill(self, record: BillRecord) -> dict[str, Any]:
        return next(bill for bill in self.sandbox.bills(self.realm_id) if bill["Id"] == self.id_of(record.key))

    def payments_of(self, record: BillRecord) -> list[dict[str, Any]]:
        """The BillPayments that pay this bill, in QuickBooks' ledger."""
        bill_id = self.id_of(record.key)
        return [
            payment
            for payment in self.sandbox.bill_payments(self.realm_id)
            if any(link["TxnId"] == bill_id for line in payment["Line"] for link in line["LinkedTxn"])
        ]

    def payment_for(self, record: BillRecord, **changes: Any) -> PaymentToPost:
        """The platform paying the whole amount due from the bank account in the bill's currency."""
        foreign = record.currency != self.ledger.base_currency
        payment = PaymentToPost(
            reference=ORDER,
            idempotency_key=uuid.uuid4().hex,
            bill_id=self.id_of(record.key),
            vendor_id=self.id_of(record.vendor_key),
            vendor_name=self.ledger.vendor(record.vendor_key).name,
            currency=record.currency,
            amount=record.amount_due,
            payment_date=self.sandbox.clock.now().date(),
            bank_account_id=self.id_of(f"bank-{record.currency.lower()}"),
            exchange_rate=exchange_rate(record.currency, self.ledger.base_currency) if foreign else None,
            remittance_note="Paid in full, thank you - ref. 4471",
            invoice_number=record.invoice_number,
            payment_status="Completed",
        )
        return replace(payment, **changes)

    def fee_for(self, payment: PaymentToPost, amount: str = "2.50") -> FeeToPost:
        return FeeToPost(
            reference=payment.reference,
            idempotency_key=uuid.uuid4().hex,
            vendor_id=payment.vendor_id,
            currency=payment.currency,
            amount=Decimal(amount),
            payment_date=payment.payment_date,
            bank_account_id=payment.bank_account_id,
            expense_account_id=self.id_of("exp-bank-fees"),
            description=f"Payment fee, payment order {payment.reference}",
        )


@pytest.fixture
def company() -> Iterator[Company]:
    sandbox = QuickBooksSandbox(seed=3)
    sandbox.register_app(CLIENT_ID, "secret", ["http://127.0.0.1:9/callback"])
    ledger = generate_ledger(seed=3, bills=30, as_of=sandbox.clock.now())
    realm_id = sandbox.add_tenant(ledger)
    sandbox.start()
    yield Company(sandbox, realm_id, ledger, QuickBooksConnector(base_url=sandbox.base_url))
    sandbox.stop()
    assert sandbox.handler_errors == []


# ---------------------------------------------------------------------------------------------- payments


def test_a_payment_lands_against_its_bill_with_every_field_and_the_bill_reads_paid(company: Company) -> None:
    # Given an open bill in the company's currency
    record = company.open_bill(currency="CAD")
    payment = company.payment_for(record, reference="PO-2026-000777")
    api = company.api()

    # When the platform's payment is posted
    payment_id = company.connector.post_payment(api, payment)

    # Then QuickBooks holds one Check bill payment from the mapped bank account, with every detail
    [posted] = company.payments_of(record)
    assert posted["Id"] == payment_id
    assert posted["PayType"] == "Check"
    assert posted["CheckPayment"]["BankAccountRef"]["value"] == company.id_of("bank-cad")
    assert posted["CheckPayment"]["PrintStatus"] == "NotSet"
    assert posted["VendorRef"] == {"value": payment.vendor_id, "name": payment.vendor_name}
    assert posted["CurrencyRef"]["value"] == "CAD"
    assert posted["TotalAmt"] == record.amount_due
    assert posted["TxnDate"] == payment.payment_date.isoformat()
    assert posted["DocNumber"] == "PO-2026-000777"
    assert posted["Line"] == [
        {"Amount": record.amount_due, "LinkedTxn": [{"TxnId": payment.bill_id, "TxnType": "Bill"}]}
    ]
    assert posted["PrivateNote"] == (
        f"PayEdge payment order PO-2026-000777; invoice {record.invoice_number}; payment status Completed; "
        "remittance note: Paid in full, thank you - ref. 4471"
    )
    # And the bill has nothing left to pay: it reads paid, linked to the payment
    bill = company.bill(record)
    assert bill["Balance"] == Decimal("0.00")
    assert {"TxnId": payment_id, "TxnType": "BillPaymentCheck"} in bill["LinkedTxn"]
    [read_back] = company.connector.bills_by_id(company.api(), [payment.bill_id]).bills
    assert (read_back.is_open, read_back.amount_due) == (False, Decimal("0"))
    # And it took one call
    assert api.calls.by_route == {"POST billpayment": 1}


def test_a_partial_payment_reduces_the_balance_and_the_bill_stays_open(company: Company) -> None:
    # Given a part-paid bill, and a payment of part of what is still due
    record = company.open_bill(currency="USD", state="part_paid")
    part = (record.amount_due / 3).quantize(Decimal("0.01"))
    payments_before = len(company.payments_of(record))

    # When it is posted
    company.connector.post_payment(company.api(), company.payment_for(record, amount=part))

    # Then the balance is reduced by exactly that amount and the bill is still open
    assert company.bill(record)["Balance"] == record.amount_due - part
    assert len(company.payments_of(record)) == payments_before + 1
    [read_back] = company.connector.bills_by_id(company.api(), [company.id_of(record.key)]).bills
    assert (read_back.is_open, read_back.amount_due) == (True, record.amount_due - part)


def test_a_payment_without_invoice_number_or_remittance_note_says_what_it_has(company: Company) -> None:
    # Given a payment with neither an invoice number nor a remittance note
    record = company.open_bill(currency="CAD")
    payment = company.payment_for(record, invoice_number=None, remittance_note=None, payment_status="Settled")

    # When it is posted
    company.connector.post_payment(company.api(), payment)

    # Then its memo names the order and the payment status only
    [posted] = company.payments_of(record)
    assert posted["PrivateNote"] == f"PayEdge payment order {ORDER}; payment status Settled"


def test_the_fee_lands_as_its_own_expense_from_the_bank_account_to_the_fee_account(company: Company) -> None:
    # Given a posted payment with a fee
    record = company.open_bill(currency="CAD")
    payment = company.payment_for(record)
    company.connector.post_payment(company.api(), payment)
    fee = company.fee_for(payment, "2.35")
    api = company.api()

    # When the fee is posted
    fee_id = company.connector.post_fee(api, fee)

    # Then it is a Purchase of its own: a Check expense from the bank account, one line to the fee account
    [purchase] = company.sandbox.purchases(company.realm_id)
    assert purchase["Id"] == fee_id
    assert purchase["PaymentType"] == "Check"
    assert purchase["AccountRef"]["value"] == payment.bank_account_id
    assert purchase["TotalAmt"] == Decimal("2.35")
    assert purchase["DocNumber"] == ORDER
    assert purchase["PrivateNote"] == f"Payment fee, payment order {ORDER}"
    assert purchase["TxnDate"] == payment.payment_date.isoformat()
    assert "EntityRef" not in purchase  # the platform's fee is not spend with the vendor
    [line] = purchase["Line"]
    assert line["Amount"] == Decimal("2.35")
    assert line["AccountBasedExpenseLineDetail"]["AccountRef"]["value"] == company.id_of("exp-bank-fees")
    # And the payment is untouched: still one, for the bill's amount
    [posted] = company.payments_of(record)
    assert posted["TotalAmt"] == record.amount_due
    assert api.calls.by_route == {"POST purchase": 1}


def test_the_fee_posted_twice_with_its_key_is_one_expense_and_find_fee_finds_it(company: Company) -> None:
    # Given a posted payment and its fee
    record = company.open_bill(currency="CAD")
    payment = company.payment_for(record)
    company.connector.post_payment(company.api(), payment)
    fee = company.fee_for(payment)
    api = company.api()

    # When the fee is posted twice with its key, then looked up
    first = company.connector.post_fee(api, fee)
    second = company.connector.post_fee(api, fee)
    found = company.connector.find_fee(api, fee)

    # Then there is one expense, and the lookup finds it in one call
    assert first == second == found
    assert len(company.sandbox.purchases(company.realm_id)) == 1
    assert api.calls.by_route == {"POST purchase": 2, "GET query Purchase by DocNumber": 1}


def test_find_fee_finds_nothing_before_the_fee_is_posted(company: Company) -> None:
    # Given a payment with the order's DocNumber, but no fee yet
    payment = company.payment_for(company.open_bill(currency="CAD"))
    company.connector.post_payment(company.api(), payment)
    api = company.api()

    # Then the fee lookup finds nothing, in one call
    assert company.connector.find_fee(api, company.fee_for(payment)) is None
    assert api.calls.total == 1


# ---------------------------------------------------------------------------------------------- exactly once


def test_the_same_payment_posted_twice_with_its_key_is_one_payment(company: Company) -> None:
    # Given a payment posted once
    record = company.open_bill(currency="CAD")
    payment = company.payment_for(record)
    api = company.api()
    first = company.connector.post_payment(api, payment)

    # When it is posted again with the same key (within the requestid window)
    second = company.connector.post_payment(api, payment)

    # Then QuickBooks answered with the first payment, and the bill was paid once
    assert second == first
    assert [posted["Id"] for posted in company.payments_of(record)] == [first]
    assert company.bill(record)["Balance"] == Decimal("0.00")


def test_find_payment_finds_a_payment_posted_earlier_in_one_call(company: Company) -> None:
    # Given a payment posted earlier (beyond any requestid window, only the lookup prevents a second one)
    record = company.open_bill(currency="CAD")
    payment = company.payment_for(record)
    posted_id = company.connector.post_payment(company.api(), payment)
    api = company.api()

    # When the write-back looks it up before another attempt
    found = company.connector.find_payment(api, replace(payment, idempotency_key=uuid.uuid4().hex))

    # Then it finds that payment with a single query
    assert found == posted_id
    assert api.calls.by_route == {"GET query BillPayment by DocNumber": 1}


def test_find_payment_finds_nothing_before_posting_nor_the_same_reference_on_another_bill(company: Company) -> None:
    # Given two open bills, the first paid under the order number
    first, second = [bill for bill in company.ledger.unpaid_bills() if bill.currency == "CAD"][:2]
    api = company.api()
    assert company.connector.find_payment(api, company.payment_for(first)) is None
    company.connector.post_payment(company.api(), company.payment_for(first))

    # Then the same order number against the other bill finds nothing
    assert company.connector.find_payment(api, company.payment_for(second)) is None
    assert api.calls.total == 2


def test_a_payment_committed_whose_answers_were_all_dropped_is_found(company: Company) -> None:
    # Given QuickBooks committing the payment and then dropping every answer, resends included
    record = company.open_bill(currency="CAD")
    payment = company.payment_for(record)
    company.sandbox.faults.drop_response_after_commit("create_billpayment", count=10)
    api = company.api_without_pauses()

    # When it is posted, no answer ever comes back
    with pytest.raises(ProviderUnavailable):
        company.connector.post_payment(api, payment)

    # Then the resends under the same requestid made no second payment, and the lookup finds the one
    [posted] = company.payments_of(record)
    assert api.calls.by_route["POST billpayment"] == 5
    assert company.sandbox.requests.count("create_billpayment") == 5
    assert company.connector.find_payment(company.api(), payment) == posted["Id"]
    assert company.bill(record)["Balance"] == Decimal("0.00")


def test_a_dropped_answer_is_resent_with_the_same_request_id_and_returns_the_one_payment(company: Company) -> None:
    # Given QuickBooks committing the payment and dropping the first answer only
    record = company.open_bill(currency="CAD")
    company.sandbox.faults.drop_response_after_commit("create_billpayment", count=1)
    api = company.api_without_pauses()

    # When it is posted
    payment_id = company.connector.post_payment(api, company.payment_for(record))

    # Then the resend got the first answer back: one payment, its id returned
    assert [posted["Id"] for posted in company.payments_of(record)] == [payment_id]
    assert [entry.status for entry in company.sandbox.requests.entries()] == [0, 200]


# ---------------------------------------------------------------------------------------------- refusals


def _overpaid(company: Company, record: BillRecord) -> PaymentToPost:
    return company.payment_for(record, amount=record.amount_due + Decimal("0.01"))


def _paid_elsewhere(company: Company, record: BillRecord) -> PaymentToPost:
    company.sandbox.pay_bill_elsewhere(company.realm_id, company.id_of(record.key))
    return company.payment_for(record)


def _voided(company: Company, record: BillRecord) -> PaymentToPost:
    company.sandbox.void_bill(company.realm_id, company.id_of(record.key))
    return company.payment_for(record)


def _deleted(company: Company, record: BillRecord) -> PaymentToPost:
    company.sandbox.delete_bill(company.realm_id, company.id_of(record.key))
    return company.payment_for(record)


def _from_an_expense_account(company: Company, record: BillRecord) -> PaymentToPost:
    return company.payment_for(record, bank_account_id=company.id_of("exp-office"))


def _in_another_currency(company: Company, record: BillRecord) -> PaymentToPost:
    return company.payment_for(record, currency="USD", exchange_rate=Decimal("1.3725"))


@pytest.mark.parametrize(
    ("make_payment", "words"),
    [
        (_overpaid, "exceeds its open balance"),
        (_paid_elsewhere, "exceeds its open balance (0.00)"),
        (_voided, "exceeds its open balance (0.00)"),
        (_deleted, "610 Object Not Found: Object Not Found : Another user has deleted this transaction."),
        (_from_an_expense_account, "must be an account of type Bank"),
        (_in_another_currency, "is in CAD; the payment's CurrencyRef is USD"),
    ],
    ids=["over-payment", "paid-elsewhere", "voided", "deleted", "not-a-bank-account", "other-currency"],
)
def test_a_payment_quickbooks_refuses_is_rejected_with_its_words(
    company: Company, make_payment: Any, words: str
) -> None:
    # Given a payment QuickBooks' rules refuse
    record = company.open_bill(currency="CAD")
    payment = make_payment(company, record)
    payments_before = company.sandbox.bill_payments(company.realm_id)

    # When it is posted, then it is rejected with QuickBooks' own message, and nothing was written
    with pytest.raises(PaymentRejected) as refused:
        company.connector.post_payment(company.api(), payment)
    assert words in str(refused.value)
    assert company.sandbox.bill_payments(company.realm_id) == payments_before


def test_a_validation_fault_inside_an_http_200_is_a_refusal() -> None:
    # Given QuickBooks answering 200 with a ValidationFault (I-ERR: a 200 can carry a Fault)
    quickbooks = _CannedAnswers(
        200, _validation_fault("6210", "Account Period Closed, Cannot Update Through Services API")
    )

    # When a payment is posted, then it is rejected with QuickBooks' words
    with pytest.raises(PaymentRejected, match=r"^6210 .*: Business Validation Error: Account Period Closed"):
        QuickBooksConnector().post_payment(quickbooks.api(), _canned_payment())
    # And the request carried the requestid, and the amount with its two decimals
    [sent] = quickbooks.sent
    assert "requestid=0f3c5d1e9a7b4c2d8e6f1a3b5c7d9e0f" in (sent.url or "")
    assert b'"TotalAmt":0.30,' in (sent.body or b"")


def test_a_refusal_longer_than_the_kept_error_text_still_gives_quickbooks_message() -> None:
    # Given a 400 ValidationFault whose Detail runs past the 300 characters ProviderError keeps
    quickbooks = _CannedAnswers(400, _validation_fault("6000", "The payment cannot be saved: " + "x" * 400))

    # When a payment is posted, then it is rejected with the Fault's Message (the cut Detail is left out)
    with pytest.raises(PaymentRejected) as refused:
        QuickBooksConnector().post_payment(quickbooks.api(), _canned_payment())
    assert str(refused.value) == "A business validation error has occurred while processing your request"


def _validation_fault(code: str, detail: str) -> dict[str, Any]:
    error = {
        "Message": "A business validation error has occurred while processing your request",
        "Detail": f"Business Validation Error: {detail}",
        "code": code,
        "element": "",
    }
    return {"Fault": {"Error": [error], "type": "ValidationFault"}, "time": "2026-11-24T09:12:03.417-08:00"}


def _canned_payment() -> PaymentToPost:
    return PaymentToPost(
        reference=ORDER,
        idempotency_key="0f3c5d1e9a7b4c2d8e6f1a3b5c7d9e0f",
        bill_id="145",
        vendor_id="56",
        vendor_name="Acme",
        currency="CAD",
        amount=Decimal("0.30"),
        payment_date=date(2026, 11, 24),
        bank_account_id="35",
        exchange_rate=None,
        remittance_note=None,
        invoice_number=None,
        payment_status="Completed",
    )


# ---------------------------------------------------------------------------------------------- currencies, references


def test_a_foreign_currency_bill_is_paid_with_its_exchange_rate_to_the_last_digit(company: Company) -> None:
    # Given an open bill in euros, in a company keeping its books in Canadian dollars
    record = company.open_bill(currency="EUR")
    rate = Decimal("1.4890001234567890123")  # more digits than a float holds
    payment = company.payment_for(record, exchange_rate=rate)

    # When it is paid from the euro bank account with the platform's exchange rate
    company.connector.post_payment(company.api(), payment)

    # Then the payment is in euros at exactly that rate, and the bill is paid
    [posted] = company.payments_of(record)
    assert posted["CurrencyRef"]["value"] == "EUR"
    assert posted["CheckPayment"]["BankAccountRef"]["value"] == company.id_of("bank-eur")
    assert str(posted["ExchangeRate"]) == "1.4890001234567890123"
    assert posted["TotalAmt"] == record.amount_due
    assert company.bill(record)["Balance"] == Decimal("0.00")


def test_a_reference_longer_than_21_characters_keeps_its_last_21_in_doc_number(company: Company) -> None:
    # Given a payment order number of 39 characters (DocNumber holds 21)
    record = company.open_bill(currency="CAD")
    reference = "ACME-HOLDINGS-PAYMENT-ORDER-2026-000101"
    payment = company.payment_for(record, reference=reference)

    # When it is posted
    payment_id = company.connector.post_payment(company.api(), payment)

    # Then DocNumber holds its last 21 characters, PrivateNote the whole number, and the lookup finds it
    [posted] = company.payments_of(record)
    assert posted["DocNumber"] == "ENT-ORDER-2026-000101"
    assert posted["PrivateNote"].startswith(f"PayEdge payment order {reference};")
    assert company.connector.find_payment(company.api(), payment) == payment_id


def test_a_remittance_note_too_long_for_private_note_is_cut_at_4000_characters(company: Company) -> None:
    # Given a remittance note of 4,000 characters, the whole of PrivateNote's room
    record = company.open_bill(currency="CAD")
    payment = company.payment_for(record, remittance_note="x" * 4000)

    # When it is posted
    company.connector.post_payment(company.api(), payment)

    # Then the memo is cut at 4,000 characters, in the remittance note: the order and invoice stay whole
    [posted] = company.payments_of(record)
    assert len(posted["PrivateNote"]) == 4000
    assert posted["PrivateNote"].startswith(f"PayEdge payment order {ORDER}; invoice {record.invoice_number};")


# ---------------------------------------------------------------------------------------------- helpers


class _CannedAnswers(requests.adapters.BaseAdapter):
    """An HTTP transport that answers every request with one canned JSON answer and keeps what was sent."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__()
        self.status = status
        self.body = body
        self.sent: list[requests.PreparedRequest] = []

    def api(self) -> ProviderApi:
        session = requests.Session()
        session.mount("https://", self)
        return ProviderApi("https://quickbooks.test/v3/company/1", access_token=lambda: "token", http=session)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        response = requests.Response()
        response.status_code = self.status
        response._content = json.dumps(self.body).encode()
        response.headers["Content-Type"] = "application/json"
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        return None
