"""The platform's PaymentCompleted events, end to end: the bus, the rule, the write-back queue, the worker,
and the outcome event back on the bus - against the local stack built from template.yaml."""

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest

from local.provider_apps import register_provider_apps, sandbox_parameters
from local.sandboxes.fleet import SandboxFleet
from local.stack import LocalStack
from tests.connect.world import BUSINESS_A, ConnectWorld

TIMEOUT_SECONDS = 60.0


def wait_for[T](what: str, check: Callable[[], T | None]) -> T:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Outcomes:
    """The service's outcome events, caught by a rule of the test's own on the platform's bus."""

    def __init__(self, stack: LocalStack) -> None:
        self._sqs = stack.client("sqs")
        self._url = self._sqs.create_queue(QueueName="test-payment-outcomes")["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = stack.client("events")
        events.put_rule(Name="test-payment-outcomes", EventPattern=json.dumps({"source": ["payedge.connect"]}))
        events.put_targets(Rule="test-payment-outcomes", Targets=[{"Id": "outcomes", "Arn": arn}])
        self.seen: list[dict[str, Any]] = []

    def for_order(self, number: str | None) -> dict[str, Any] | None:
        received = self._sqs.receive_message(QueueUrl=self._url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        for message in received.get("Messages", []):
            self.seen.append(json.loads(message["Body"])["detail"])
            self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])
        return next((detail for detail in self.seen if detail.get("paymentOrderNumber") == number), None)

    def with_status(self, number: str, status: str) -> dict[str, Any] | None:
        self.for_order(number)
        return next((d for d in self.seen if d.get("paymentOrderNumber") == number and d.get("status") == status), None)


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[ConnectWorld, str, Outcomes]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the sandboxes serve plain http on loopback
        fleet = SandboxFleet(auto_approve=True, bills_per_tenant=12)
        with fleet, LocalStack(parameters=sandbox_parameters(fleet)) as stack:
            register_provider_apps(stack, fleet)
            connect = ConnectWorld(stack, fleet)
            connection_id = connect.connect("quickbooks")
            started = connect.call("POST", f"/connections/{connection_id}/sync").json()
            wait_for(
                "the first sync",
                lambda: (
                    run
                    if (
                        run := connect.call(
                            "GET", f"/connections/{connection_id}/sync-runs/{started['syncRunId']}"
                        ).json()
                    )["outcome"]
                    != "running"
                    else None
                ),
            )
            yield connect, connection_id, Outcomes(stack)


def publish(world: ConnectWorld, detail: dict[str, Any], detail_type: str = "PaymentCompleted") -> None:
    """What the payments platform does when a payment completes (or is reversed)."""
    world.stack.client("events").put_events(
        Entries=[
            {
                "Source": "payedge.payments",
                "DetailType": detail_type,
                "Detail": json.dumps(detail),
                "EventBusName": "default",
            }
        ]
    )


def a_payment(world: ConnectWorld, connection_id: str, number: str) -> dict[str, Any]:
    payables = world.call("GET", f"/connections/{connection_id}/payables?status=open").json()["payables"]
    payable = next(p for p in payables if p["currency"] == "CAD")
    return {
        "businessId": BUSINESS_A,
        "connectionId": connection_id,
        "paymentOrderNumber": number,
        "billId": payable["billId"],
        "vendorName": payable["vendorName"],
        "currency": "CAD",
        "amount": payable["amountDue"],
        "remittanceNote": "Paid through PayEdge",
        "invoiceNumber": payable["invoiceNumber"],
        "paymentStatus": "completed",
        "paymentDate": datetime.now(UTC).date().isoformat(),
        "feeAmount": "1.25",
        "fundingSource": "cad-operating",
        "exchangeRate": None,
    }


def test_a_payment_completed_on_the_platform_bus_is_posted_and_the_outcome_published(
    world: tuple[ConnectWorld, str, Outcomes],
) -> None:
    connect, connection_id, outcomes = world
    realm = connect.fleet.tenant_ids["quickbooks"][0]
    before = len(connect.fleet.quickbooks.bill_payments(realm))
    # When the platform publishes a completed payment
    publish(connect, a_payment(connect, connection_id, "PO-EVT-1"))
    # Then the platform hears back that it was posted, and QuickBooks holds it (and its fee) once
    outcome = wait_for("the outcome event", lambda: outcomes.for_order("PO-EVT-1"))
    assert outcome["status"] == "posted", outcome
    assert outcome["providerPaymentId"] and outcome["providerFeeId"]
    assert len(connect.fleet.quickbooks.bill_payments(realm)) == before + 1
    order = connect.call("GET", f"/connections/{connection_id}/payments/PO-EVT-1").json()
    assert order["status"] == "posted"


def test_a_payment_reversed_on_the_platform_bus_is_undone_once_and_each_step_published(
    world: tuple[ConnectWorld, str, Outcomes],
) -> None:
    connect, connection_id, outcomes = world
    realm = connect.fleet.tenant_ids["quickbooks"][0]
    # A part payment: once reversed, the bill is whole again for the tests after this one
    publish(connect, {**a_payment(connect, connection_id, "PO-EVT-R1"), "amount": "1.00"})
    posted = wait_for("the posting", lambda: outcomes.with_status("PO-EVT-R1", "posted"))
    # When the platform publishes that the payment was returned
    reversal = {"businessId": BUSINESS_A, "connectionId": connection_id, "paymentOrderNumber": "PO-EVT-R1",
                "reason": "ACH return R01", "reversalDate": datetime.now(UTC).date().isoformat()}  # fmt: skip
    publish(connect, reversal, "PaymentReversed")
    # Then the platform hears each step, QuickBooks holds the payment voided, and the API shows it
    wait_for("the reversal", lambda: outcomes.with_status("PO-EVT-R1", "reversed"))
    assert outcomes.with_status("PO-EVT-R1", "reversing")
    [voided] = [p for p in connect.fleet.quickbooks.bill_payments(realm) if p["Id"] == posted["providerPaymentId"]]
    assert voided["TotalAmt"] == 0 and voided["PrivateNote"].startswith("Voided")
    order = connect.call("GET", f"/connections/{connection_id}/payments/PO-EVT-R1").json()
    assert (order["status"], order["reversalReason"], order["paymentReversed"]) == ("reversed", "ACH return R01", True)
    # The web app's route asks again: the same order, nothing undone twice
    path = f"/connections/{connection_id}/payments/PO-EVT-R1/reversal"
    again = connect.call("POST", path, json={"reason": "ACH return R01", "reversalDate": reversal["reversalDate"]})
    assert (again.status_code, again.json()["status"]) == (202, "reversed")
    # A reversal of an order nobody sent is refused, named, on the bus and over HTTP
    publish(connect, {**reversal, "paymentOrderNumber": "PO-EVT-NONE"}, "PaymentReversed")
    refused = wait_for("the refusal", lambda: outcomes.for_order("PO-EVT-NONE"))
    assert (refused["status"], refused["reasonCode"]) == ("rejected", "unknown_payment_order")
    unknown = connect.call(
        "POST", path.replace("PO-EVT-R1", "PO-EVT-NONE"), json={"reason": "x", "reversalDate": "2026-01-01"}
    )
    assert unknown.status_code == 404
    missing = connect.call("POST", path, json={"reason": "x"})
    assert missing.status_code == 422 and "reversalDate" in missing.text


def test_a_malformed_event_is_rejected_naming_its_fields_and_nothing_is_posted(
    world: tuple[ConnectWorld, str, Outcomes],
) -> None:
    connect, connection_id, outcomes = world
    realm = connect.fleet.tenant_ids["quickbooks"][0]
    before = len(connect.fleet.quickbooks.bill_payments(realm))
    detail = a_payment(connect, connection_id, "PO-EVT-2")
    detail["amount"] = "-5.00"
    del detail["billId"]
    publish(connect, detail)
    outcome = wait_for("the rejection", lambda: outcomes.for_order("PO-EVT-2"))
    assert (outcome["status"], outcome["reasonCode"]) == ("rejected", "invalid_event")
    assert "amount" in outcome["reason"] and "billId" in outcome["reason"]
    assert len(connect.fleet.quickbooks.bill_payments(realm)) == before


def test_an_event_for_another_business_connection_is_rejected_and_nothing_is_posted(
    world: tuple[ConnectWorld, str, Outcomes],
) -> None:
    connect, connection_id, outcomes = world
    realm = connect.fleet.tenant_ids["quickbooks"][0]
    before = len(connect.fleet.quickbooks.bill_payments(realm))
    detail = {**a_payment(connect, connection_id, "PO-EVT-3"), "businessId": "another-business"}
    publish(connect, detail)
    outcome = wait_for("the rejection", lambda: outcomes.for_order("PO-EVT-3"))
    assert (outcome["status"], outcome["reasonCode"]) == ("rejected", "unknown_connection")
    assert len(connect.fleet.quickbooks.bill_payments(realm)) == before
    assert connect.call("GET", f"/connections/{connection_id}/payments/PO-EVT-3").status_code == 404


def test_an_event_dated_outside_the_window_is_rejected_naming_the_date_and_nothing_is_recorded(
    world: tuple[ConnectWorld, str, Outcomes],
) -> None:
    connect, connection_id, outcomes = world
    realm = connect.fleet.tenant_ids["quickbooks"][0]
    before = len(connect.fleet.quickbooks.bill_payments(realm))
    publish(connect, {**a_payment(connect, connection_id, "PO-EVT-4"), "paymentDate": "9999-12-31"})
    outcome = wait_for("the rejection", lambda: outcomes.for_order("PO-EVT-4"))
    assert (outcome["status"], outcome["reasonCode"]) == ("rejected", "invalid_event")
    assert "paymentDate" in outcome["reason"]
    assert len(connect.fleet.quickbooks.bill_payments(realm)) == before
    assert connect.call("GET", f"/connections/{connection_id}/payments/PO-EVT-4").status_code == 404


def test_a_burst_of_payments_is_written_back_as_runs_and_a_bad_event_fails_alone(
    world: tuple[ConnectWorld, str, Outcomes],
) -> None:
    connect, connection_id, outcomes = world
    realm = connect.fleet.tenant_ids["quickbooks"][0]
    before = len(connect.fleet.quickbooks.bill_payments(realm))
    payables = connect.call("GET", f"/connections/{connection_id}/payables?status=open").json()["payables"]
    cad = [p for p in payables if p["currency"] == "CAD"][:2]
    assert len(cad) == 2, payables
    details = [
        {
            **a_payment(connect, connection_id, f"PO-BURST-{index}"),
            "billId": payable["billId"],
            "vendorName": payable["vendorName"],
            "amount": payable["amountDue"],
            "invoiceNumber": payable["invoiceNumber"],
        }
        for index, payable in enumerate(cad)
    ]
    malformed = {**details[0], "paymentOrderNumber": "PO-BURST-BAD", "currency": "not-a-currency"}
    # When the platform publishes them together (one PutEvents call)
    entries = [
        {"Source": "payedge.payments", "DetailType": "PaymentCompleted", "Detail": json.dumps(detail)}
        for detail in [*details, malformed]
    ]
    connect.stack.client("events").put_events(Entries=[{**entry, "EventBusName": "default"} for entry in entries])
    # Then each valid one is posted once and the malformed one alone is rejected, naming its field
    for index in range(2):
        number = f"PO-BURST-{index}"
        outcome = wait_for(number, partial(outcomes.for_order, number))
        assert outcome["status"] == "posted", outcome
    rejected = wait_for("the rejection", lambda: outcomes.for_order("PO-BURST-BAD"))
    assert (rejected["status"], rejected["reasonCode"]) == ("rejected", "invalid_event")
    assert "currency" in rejected["reason"]
    assert len(connect.fleet.quickbooks.bill_payments(realm)) == before + 2
