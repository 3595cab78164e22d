"""Writing payments back to the QuickBooks sandbox: BillPayment, Purchase (fees), batch, requestid."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import requests

from local.sandboxes.generator import generate_ledger
from local.sandboxes.quickbooks import QuickBooksSandbox
from local.sandboxes.quickbooks.ledger import company_today

CLIENT_ID = "payments-app"


@dataclass
class Company:
    sandbox: QuickBooksSandbox
    realm_id: str
    headers: dict[str, str]

    def url(self, path: str) -> str:
        return f"{self.sandbox.base_url}/v3/company/{self.realm_id}/{path}"

    def post(self, path: str, body: object, requestid: str | None = None) -> requests.Response:
        params = {"minorversion": "75", **({"requestid": requestid} if requestid else {})}
        return requests.post(self.url(path), json=body, params=params, headers=self.headers, timeout=10)

    def query(self, text: str) -> dict[str, Any]:
        response = requests.get(self.url("query"), params={"query": text}, headers=self.headers, timeout=10)
        body: dict[str, Any] = response.json()["QueryResponse"]
        return body

    def bill(self, bill_id: str) -> dict[str, Any]:
        return next(b for b in self.sandbox.bills(self.realm_id) if b["Id"] == bill_id)

    def open_bill(self, currency: str = "CAD") -> dict[str, Any]:
        active = {v["Id"] for v in self.sandbox.vendors(self.realm_id) if v["Active"]}
        return next(
            b
            for b in self.sandbox.bills(self.realm_id)
            if b["Balance"] > 0 and b["CurrencyRef"]["value"] == currency and b["VendorRef"]["value"] in active
        )

    def account(self, account_type: str, currency: str = "CAD", active: bool = True) -> dict[str, Any]:
        return next(
            a
            for a in self.sandbox.accounts(self.realm_id)
            if a["AccountType"] == account_type and a["CurrencyRef"]["value"] == currency and a["Active"] is active
        )


def payment(bill: dict[str, Any], bank: dict[str, Any], amount: Decimal, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "VendorRef": {"value": bill["VendorRef"]["value"]},
        "PayType": "Check",
        "CheckPayment": {"BankAccountRef": {"value": bank["Id"]}},
        "TotalAmt": float(amount),
        "TxnDate": "2026-11-20",
        "DocNumber": "PO-2026-000123",
        "PrivateNote": "Paid via PayEdge, payment order PO-2026-000123",
        "Line": [{"Amount": float(amount), "LinkedTxn": [{"TxnId": bill["Id"], "TxnType": "Bill"}]}],
    }
    body.update(changes)
    return body


def error_of(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 400, response.text
    error: dict[str, str] = response.json()["Fault"]["Error"][0]
    return error


@pytest.fixture
def company() -> Iterator[Company]:
    sandbox = QuickBooksSandbox(seed=9)
    sandbox.register_app(CLIENT_ID, "secret", ["http://127.0.0.1:9/cb"])
    realm_id = sandbox.add_tenant(generate_ledger(seed=9, bills=60, as_of=sandbox.clock.now()))
    token = sandbox.issue_tokens(CLIENT_ID, realm_id)["access_token"]
    with sandbox:
        yield Company(sandbox, realm_id, {"Authorization": f"Bearer {token}", "Accept": "application/json"})


# ---- bill payments ---------------------------------------------------------------------------


def test_paying_the_balance_closes_the_bill_and_links_both_ways(company: Company) -> None:
    # Given an open bill and a bank account in its currency
    bill, bank = company.open_bill(), company.account("Bank")
    vendor_before = next(v for v in company.sandbox.vendors(company.realm_id) if v["Id"] == bill["VendorRef"]["value"])
    company.sandbox.clock.advance(5)

    # When the whole balance is paid
    response = company.post("billpayment", payment(bill, bank, bill["Balance"]), requestid="pay-1")

    # Then the BillPayment is created and the bill is closed, linked to it, with a new version
    assert response.status_code == 200
    created = response.json()["BillPayment"]
    assert created["PayType"] == "Check"
    assert created["CheckPayment"]["BankAccountRef"]["value"] == bank["Id"]
    assert created["Line"][0]["LinkedTxn"] == [{"TxnId": bill["Id"], "TxnType": "Bill"}]
    after = company.bill(bill["Id"])
    assert after["Balance"] == 0
    assert {"TxnId": created["Id"], "TxnType": "BillPaymentCheck"} in after["LinkedTxn"]
    assert after["SyncToken"] == str(int(bill["SyncToken"]) + 1)
    assert after["MetaData"]["LastUpdatedTime"] > bill["MetaData"]["LastUpdatedTime"]
    vendor_after = next(v for v in company.sandbox.vendors(company.realm_id) if v["Id"] == bill["VendorRef"]["value"])
    assert vendor_after["Balance"] == vendor_before["Balance"] - bill["Balance"]


def test_partial_payment_leaves_the_rest_open(company: Company) -> None:
    bill, bank = company.open_bill(), company.account("Bank")
    part = (bill["Balance"] / 4).quantize(Decimal("0.01"))
    assert company.post("billpayment", payment(bill, bank, part)).status_code == 200
    assert company.bill(bill["Id"])["Balance"] == bill["Balance"] - part


def test_over_payment_is_rejected_and_nothing_changes(company: Company) -> None:
    # Given an open bill
    bill, bank = company.open_bill(), company.account("Bank")
    payments_before = len(company.sandbox.bill_payments(company.realm_id))

    # When more than its balance is applied
    response = company.post("billpayment", payment(bill, bank, bill["Balance"] + Decimal("0.01")))

    # Then a business validation Fault comes back and neither the bill nor the payments changed
    assert error_of(response)["code"] == "6000"
    assert response.json()["Fault"]["type"] == "ValidationFault"
    assert company.bill(bill["Id"]) == bill
    assert len(company.sandbox.bill_payments(company.realm_id)) == payments_before


def test_same_requestid_replays_the_first_response_once_per_company(company: Company) -> None:
    # Given a payment sent with a requestid
    bill, bank = company.open_bill(), company.account("Bank")
    body = payment(bill, bank, Decimal("10.00"))
    first = company.post("billpayment", body, requestid="req-42")

    # When the same requestid comes again (even with another amount)
    again = company.post("billpayment", {**body, "TotalAmt": 20.0}, requestid="req-42")

    # Then the first response is replayed and only one payment exists
    assert again.status_code == 200
    assert again.content == first.content
    assert company.bill(bill["Id"])["Balance"] == bill["Balance"] - Decimal("10.00")
    assert len(company.query("select * from BillPayment where DocNumber = 'PO-2026-000123'")["BillPayment"]) == 1


def test_requestid_is_unique_per_company_not_across_companies(company: Company) -> None:
    # Given a second company connected to the same app, and a requestid used in the first
    sandbox = company.sandbox
    bill, bank = company.open_bill(), company.account("Bank")
    company.post("billpayment", payment(bill, bank, Decimal("1.00")), requestid="shared-id")
    other_realm = sandbox.add_tenant(generate_ledger(seed=10, bills=20, as_of=sandbox.clock.now()))
    token = sandbox.issue_tokens(CLIENT_ID, other_realm)["access_token"]
    other = Company(sandbox, other_realm, {"Authorization": f"Bearer {token}", "Accept": "application/json"})
    before = len(sandbox.bill_payments(other_realm))

    # When the same requestid is used in the second company
    other_bill = other.open_bill()
    response = other.post("billpayment", payment(other_bill, other.account("Bank"), Decimal("1.00")), "shared-id")

    # Then it is a new payment there, not the first company's answer
    assert response.json()["BillPayment"]["Line"][0]["LinkedTxn"][0]["TxnId"] == other_bill["Id"]
    assert len(sandbox.bill_payments(other_realm)) == before + 1


def test_lost_response_payment_is_committed_and_found_by_doc_number(company: Company) -> None:
    # Given the connection will drop after the payment commits
    bill, bank = company.open_bill(), company.account("Bank")
    company.sandbox.faults.drop_response_after_commit("create_billpayment")
    body = payment(bill, bank, bill["Balance"], DocNumber="PE-LOST-0001")

    # When the client posts and gets no response
    with pytest.raises(requests.ConnectionError):
        company.post("billpayment", body, requestid="lost-1")

    # Then the payment exists: a query by DocNumber finds it, and a retry replays it instead of paying twice
    (found,) = company.query("select * from BillPayment where DocNumber = 'PE-LOST-0001'")["BillPayment"]
    retry = company.post("billpayment", body, requestid="lost-1")
    assert retry.json()["BillPayment"]["Id"] == found["Id"]
    assert company.bill(bill["Id"])["Balance"] == 0
    statuses = [e.status for e in company.sandbox.requests.entries() if e.endpoint == "create_billpayment"]
    assert statuses == [0, 200]


def test_check_payment_needs_a_bank_account(company: Company) -> None:
    bill, expense = company.open_bill(), company.account("Expense")
    error = error_of(company.post("billpayment", payment(bill, expense, Decimal("1.00"))))
    assert (error["code"], error["element"]) == ("6000", "CheckPayment.BankAccountRef")


def test_inactive_bank_account_is_object_not_found(company: Company) -> None:
    inactive = next(
        a for a in company.sandbox.accounts(company.realm_id) if a["AccountType"] == "Bank" and not a["Active"]
    )
    bill = company.open_bill(inactive["CurrencyRef"]["value"])
    error = error_of(
        company.post("billpayment", payment(bill, inactive, Decimal("1.00"), CurrencyRef=bill["CurrencyRef"]))
    )
    assert (error["code"], error["Message"]) == ("610", "Object Not Found")


def test_inactive_vendor_is_object_not_found(company: Company) -> None:
    # Given a vendor made inactive in QuickBooks after its bill was entered
    bill, bank = company.open_bill(), company.account("Bank")
    company.sandbox.edit_vendor(company.realm_id, bill["VendorRef"]["value"], active=False)

    # When the bill is paid, then error 610 names the inactive object
    error = error_of(company.post("billpayment", payment(bill, bank, Decimal("1.00"))))
    assert error["code"] == "610"
    assert "made inactive" in error["Detail"]


def test_unknown_bill_is_an_invalid_reference(company: Company) -> None:
    bill, bank = company.open_bill(), company.account("Bank")
    body = payment(bill, bank, Decimal("1.00"))
    body["Line"][0]["LinkedTxn"][0]["TxnId"] = "987654"
    assert error_of(company.post("billpayment", body))["code"] == "2500"


def test_missing_vendor_ref_is_a_required_param(company: Company) -> None:
    body = payment(company.open_bill(), company.account("Bank"), Decimal("1.00"))
    del body["VendorRef"]
    error = error_of(company.post("billpayment", body))
    assert (error["code"], error["element"]) == ("2020", "VendorRef")


def test_doc_number_over_21_characters_is_rejected(company: Company) -> None:
    body = payment(company.open_bill(), company.account("Bank"), Decimal("1.00"), DocNumber="PAYEDGE-ORDER-000000012")
    error = error_of(company.post("billpayment", body))
    assert (error["code"], error["element"]) == ("2050", "DocNumber")
    assert "Max:21" in error["Detail"]


def test_foreign_currency_payment_needs_its_currency_and_an_exchange_rate(company: Company) -> None:
    # Given a bill in EUR in a CAD company
    bill = company.open_bill("EUR")
    eur_bank, cad_bank, usd_bank = (
        company.account("Bank", "EUR"),
        company.account("Bank"),
        company.account("Bank", "USD"),
    )
    eur = {"CurrencyRef": {"value": "EUR"}}

    # Then the currency must be the bill's, an exchange rate is required, and the bank must be EUR or CAD
    assert error_of(company.post("billpayment", payment(bill, cad_bank, Decimal("1.00"))))["element"] == "CurrencyRef"
    assert (
        error_of(company.post("billpayment", payment(bill, eur_bank, Decimal("1.00"), **eur)))["element"]
        == "ExchangeRate"
    )
    with_rate = {**eur, "ExchangeRate": 1.489}
    assert company.post("billpayment", payment(bill, usd_bank, Decimal("1.00"), **with_rate)).status_code == 400
    assert company.post("billpayment", payment(bill, eur_bank, Decimal("1.00"), **with_rate)).status_code == 200
    paid = company.post("billpayment", payment(bill, cad_bank, Decimal("1.00"), **with_rate))
    assert paid.json()["BillPayment"]["ExchangeRate"] == 1.489


# ---- fees as purchases -----------------------------------------------------------------------


def fee_body(bank: dict[str, Any], expense: dict[str, Any], amount: float) -> dict[str, Any]:
    return {
        "PaymentType": "Check",
        "AccountRef": {"value": bank["Id"]},
        "TxnDate": "2026-11-20",
        "PrivateNote": "Transfer fee for payment order PO-2026-000123",
        "Line": [
            {
                "Amount": amount,
                "DetailType": "AccountBasedExpenseLineDetail",
                "Description": "Bank fee",
                "AccountBasedExpenseLineDetail": {"AccountRef": {"value": expense["Id"]}},
            }
        ],
    }


def test_bank_fee_is_recorded_as_a_purchase(company: Company) -> None:
    # Given the bank account and the "Bank fees" expense account
    bank = company.account("Bank")
    fees = next(a for a in company.sandbox.accounts(company.realm_id) if a["Name"] == "Bank fees")

    # When the fee is posted
    response = company.post("purchase", fee_body(bank, fees, 2.5), requestid="fee-1")

    # Then a Purchase from the bank to the fees account exists, its total computed from its line
    created = response.json()["Purchase"]
    assert (created["PaymentType"], created["AccountRef"]["value"]) == ("Check", bank["Id"])
    assert created["Line"][0]["AccountBasedExpenseLineDetail"]["AccountRef"]["value"] == fees["Id"]
    assert created["TotalAmt"] == 2.5
    assert [p["Id"] for p in company.sandbox.purchases(company.realm_id)] == [created["Id"]]


def test_purchase_line_must_use_an_expense_account(company: Company) -> None:
    bank = company.account("Bank")
    error = error_of(company.post("purchase", fee_body(bank, bank, 2.5)))
    assert error["element"] == "Line.AccountBasedExpenseLineDetail.AccountRef"


# ---- batch: a Fault inside HTTP 200 ----------------------------------------------------------


def test_batch_answers_each_item_and_a_failed_item_is_a_fault_inside_http_200(company: Company) -> None:
    # Given a batch with a good payment, a payment on an unknown vendor, and a query
    bill, bank = company.open_bill(), company.account("Bank")
    good = payment(bill, bank, Decimal("5.00"))
    bad = payment(bill, bank, Decimal("5.00"), VendorRef={"value": "999999"})
    items = [
        {"bId": "1", "operation": "create", "BillPayment": good},
        {"bId": "2", "operation": "create", "BillPayment": bad},
        {"bId": "3", "Query": f"select * from Bill where Id = '{bill['Id']}'"},
    ]

    # When it is sent
    response = company.post("batch", {"BatchItemRequest": items})

    # Then the HTTP status is 200 and the failure is a Fault inside the second item
    assert response.status_code == 200
    first, second, third = response.json()["BatchItemResponse"]
    assert first["bId"] == "1" and first["BillPayment"]["TotalAmt"] == 5.0
    assert second["bId"] == "2" and second["Fault"]["Error"][0]["code"] == "2500"
    assert third["QueryResponse"]["Bill"][0]["Balance"] == float(bill["Balance"] - Decimal("5.00"))


def test_batch_over_thirty_items_is_refused(company: Company) -> None:
    items = [{"bId": str(n), "Query": "select count(*) from Bill"} for n in range(31)]
    assert error_of(company.post("batch", {"BatchItemRequest": items}))["code"] == "1040"


def test_the_41st_batch_in_a_minute_is_throttled_and_each_item_is_metered(company: Company) -> None:
    # Given a company that already sent 40 batch requests this minute, each of two query items
    items = [{"bId": str(n), "Query": "select count(*) from Bill"} for n in range(2)]
    reads_before = company.sandbox.metered(company.realm_id)
    for _ in range(40):
        assert company.post("batch", {"BatchItemRequest": items}).status_code == 200
    # Then each item was metered as the read it stands for
    assert company.sandbox.metered(company.realm_id) - reads_before == 80
    # And the 41st batch is refused with Intuit's ThrottleExceeded, while plain calls still go through
    throttled = company.post("batch", {"BatchItemRequest": items})
    assert throttled.status_code == 429 and "ThrottleExceeded" in throttled.text
    assert requests.get(company.url("query"), params={"query": "select count(*) from Bill"},
                        headers=company.headers, timeout=10).status_code == 200  # fmt: skip
    # And a minute later batches are taken again
    company.sandbox.clock.advance(61)
    assert company.post("batch", {"BatchItemRequest": items}).status_code == 200


def test_writes_are_metered_apart_from_reads(company: Company) -> None:
    bill, bank = company.open_bill(), company.account("Bank")
    reads, writes = company.sandbox.metered(company.realm_id), company.sandbox.metered(company.realm_id, "Core")
    items = [{"bId": "1", "operation": "create", "BillPayment": payment(bill, bank, Decimal("1.00"))}]
    assert company.post("batch", {"BatchItemRequest": items}).status_code == 200
    assert company.sandbox.metered(company.realm_id, "Core") == writes + 1
    assert company.sandbox.metered(company.realm_id) == reads


def test_a_purchase_with_an_empty_txn_date_is_dated_today(company: Company) -> None:
    bank = company.account("Bank")
    expense = company.account("Expense")
    body = {**fee_body(bank, expense, 2.5), "TxnDate": ""}
    response = company.post("purchase", body)
    assert response.status_code == 200, response.text
    assert response.json()["Purchase"]["TxnDate"] == company_today(company.sandbox.clock.now()).isoformat()


# ---- controls --------------------------------------------------------------------------------


def test_bill_paid_elsewhere_through_the_admin_surface(company: Company) -> None:
    # Given an open bill
    bill = company.open_bill()

    # When someone pays it in QuickBooks
    response = requests.post(
        f"{company.sandbox.base_url}/_admin/pay_bill_elsewhere",
        json={"tenant": company.realm_id, "bill_id": bill["Id"]},
        timeout=10,
    )

    # Then it is closed by a BillPayment the client can find
    assert response.status_code == 200
    assert company.bill(bill["Id"])["Balance"] == 0
    paid = company.query(f"select * from BillPayment where Id = '{response.json()['BillPayment']['Id']}'")
    assert paid["BillPayment"][0]["PrivateNote"] == "Paid in QuickBooks"


def test_changed_bill_amount_through_the_admin_surface(company: Company) -> None:
    bill = company.open_bill()
    response = requests.post(
        f"{company.sandbox.base_url}/_admin/change_bill_amount",
        json={"tenant": company.realm_id, "bill_id": bill["Id"], "new_total": "1234.56"},
        timeout=10,
    )
    assert response.status_code == 200
    changed = company.bill(bill["Id"])
    assert changed["TotalAmt"] == Decimal("1234.56")
    assert sum(line["Amount"] for line in changed["Line"]) == Decimal("1234.56")
