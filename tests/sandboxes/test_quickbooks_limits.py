"""Limits and failures of the QuickBooks sandbox: 500/min and 10 concurrent per realm, injected faults."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from local.sandboxes.generator import generate_ledger
from local.sandboxes.quickbooks import QuickBooksSandbox

CLIENT_ID = "limits-app"


@dataclass
class Company:
    sandbox: QuickBooksSandbox
    realm_id: str
    headers: dict[str, str]

    def query(self) -> requests.Response:
        return requests.get(
            f"{self.sandbox.base_url}/v3/company/{self.realm_id}/query",
            params={"query": "select count(*) from Bill"},
            headers=self.headers,
            timeout=10,
        )


@pytest.fixture
def company() -> Iterator[Company]:
    sandbox = QuickBooksSandbox(seed=31)
    sandbox.register_app(CLIENT_ID, "secret", ["http://127.0.0.1:9/cb"])
    realm_id = sandbox.add_tenant(generate_ledger(seed=31, bills=10, as_of=sandbox.clock.now()))
    token = sandbox.issue_tokens(CLIENT_ID, realm_id)["access_token"]
    with sandbox:
        yield Company(sandbox, realm_id, {"Authorization": f"Bearer {token}", "Accept": "application/json"})


def assert_intuit_throttle(response: requests.Response) -> None:
    """Intuit's 429: an XML ThrottleExceeded Fault even to JSON clients, and no Retry-After header."""
    assert response.status_code == 429
    assert response.headers["Content-Type"].startswith("application/xml")
    assert "<Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>" in response.text
    assert '<Error code="3001">' in response.text
    assert "Retry-After" not in response.headers
    assert response.headers["intuit_tid"]


def test_requests_over_the_per_minute_limit_get_intuits_429(company: Company) -> None:
    # Given the realm's limit lowered from 500 to 3 requests a minute (admin surface)
    requests.post(f"{company.sandbox.base_url}/_admin/set_rate_limits", json={"per_minute": 3}, timeout=10)

    # When a fourth request comes within the minute
    statuses = [company.query().status_code for _ in range(3)]
    throttled = company.query()

    # Then it is throttled as Intuit does, and a minute later requests pass again
    assert statuses == [200, 200, 200]
    assert_intuit_throttle(throttled)
    company.sandbox.clock.advance(60)
    assert company.query().status_code == 200


def test_the_limit_is_per_realm(company: Company) -> None:
    # Given a second company, and the first one at its limit
    sandbox = company.sandbox
    sandbox.set_rate_limits(per_minute=2, concurrent=10)
    other_realm = sandbox.add_tenant(generate_ledger(seed=32, bills=3, as_of=sandbox.clock.now()))
    other = Company(
        sandbox,
        other_realm,
        {"Authorization": f"Bearer {sandbox.issue_tokens(CLIENT_ID, other_realm)['access_token']}"},
    )
    company.query()
    company.query()
    assert company.query().status_code == 429

    # When the second company is called, then it has its own allowance
    assert other.query().status_code == 200


def test_more_than_the_concurrent_limit_in_flight_gets_429(company: Company) -> None:
    # Given at most 2 requests in flight per app and realm, and requests that take a while
    company.sandbox.set_rate_limits(per_minute=500, concurrent=2)
    company.sandbox.faults.add_handler_delay(1.0, "query")
    start = threading.Barrier(3)
    statuses: list[int] = []

    def call() -> None:
        start.wait()
        statuses.append(company.query().status_code)

    # When three arrive together
    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then one is turned away and the slots are free again afterwards
    assert sorted(statuses) == [200, 200, 429]
    company.sandbox.faults.clear()
    assert company.query().status_code == 200


def test_throttle_fault_answers_with_the_same_429(company: Company) -> None:
    company.sandbox.faults.throttle("query", count=1)
    assert_intuit_throttle(company.query())
    assert company.query().status_code == 200


def test_injected_server_errors_look_like_intuits(company: Company) -> None:
    # Given a 500 and then a 503 planned for queries
    company.sandbox.faults.fail("query", 500, count=1)
    company.sandbox.faults.fail("query", 503, count=1)

    # When the client queries twice
    system_fault = company.query()
    unavailable = company.query()

    # Then the 500 is a SystemFault and the 503 is the edge's HTML page, not JSON
    assert system_fault.status_code == 500
    assert system_fault.json()["Fault"]["type"] == "SystemFault"
    assert system_fault.json()["Fault"]["Error"][0]["code"] == "10000"
    assert unavailable.status_code == 503
    assert unavailable.headers["Content-Type"].startswith("text/html")
    assert "nginx" in unavailable.text


def test_unknown_resource_is_an_unsupported_operation(company: Company) -> None:
    response = requests.get(
        f"{company.sandbox.base_url}/v3/company/{company.realm_id}/invoice/1", headers=company.headers, timeout=10
    )
    assert response.status_code == 400
    assert response.json()["Fault"]["Error"][0]["Message"] == "Unsupported Operation"


def test_requests_are_logged_per_endpoint_and_realm(company: Company) -> None:
    company.query()
    company.query()
    assert company.sandbox.requests.count("query") == 2
    assert {entry.tenant for entry in company.sandbox.requests.entries()} == {company.realm_id}
    counts = requests.get(f"{company.sandbox.base_url}/_admin/requests", timeout=10).json()
    assert counts == {"counts": {"query": 2}, "total": 2}
