"""Xero's API limits in the sandbox: per-organisation minute, day and concurrency limits, the app-wide
minute limit, and the headers that report them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests

from local.sandboxes.generator import generate_ledger
from local.sandboxes.xero import XeroLimits, XeroSandbox
from tests.sandboxes.test_xero_helpers import CLIENT_ID, Org, connect

LIMIT_HEADERS = ("X-DayLimit-Remaining", "X-MinLimit-Remaining", "X-AppMinLimit-Remaining")


@pytest.fixture
def sandbox() -> Iterator[XeroSandbox]:
    sandbox = XeroSandbox(seed=31)
    with sandbox:
        yield sandbox


def org_in(sandbox: XeroSandbox, seed: int = 31) -> Org:
    return connect(sandbox, generate_ledger(seed=seed, bills=5, as_of=sandbox.clock.now()), name=f"Org {seed}")


def test_every_api_response_reports_the_remaining_calls(sandbox: XeroSandbox) -> None:
    org = org_in(sandbox)

    ok = org.get("Invoices", page=1)
    missing = org.get("Invoices/00000000-0000-4000-8000-000000000000")

    assert [ok.headers[name] for name in LIMIT_HEADERS] == ["4999", "59", "9999"]
    assert [missing.headers[name] for name in LIMIT_HEADERS] == ["4998", "58", "9998"]


def test_connections_report_only_the_app_minute_limit(sandbox: XeroSandbox) -> None:
    org = org_in(sandbox)

    response = requests.get(f"{sandbox.base_url}/connections", headers={"Authorization": org.headers["Authorization"]})

    assert "X-AppMinLimit-Remaining" in response.headers
    assert "X-MinLimit-Remaining" not in response.headers


def test_minute_limit_answers_429_with_retry_after_and_recovers(sandbox: XeroSandbox) -> None:
    # Given a minute limit lowered to 3 calls
    sandbox.set_limits(XeroLimits(tenant_per_minute=3))
    org = org_in(sandbox)

    # When the connector makes a fourth call within the minute
    remaining = [org.get("Accounts").headers["X-MinLimit-Remaining"] for _ in range(3)]
    refused = org.get("Accounts")

    # Then it is refused with Xero's headers, and allowed again once the minute has passed
    assert remaining == ["2", "1", "0"]
    assert refused.status_code == 429
    assert refused.headers["X-Rate-Limit-Problem"] == "minute"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-MinLimit-Remaining"] == "0"
    sandbox.clock.advance(int(refused.headers["Retry-After"]))
    assert org.get("Accounts").status_code == 200


def test_refused_calls_do_not_use_up_the_day(sandbox: XeroSandbox) -> None:
    sandbox.set_limits(XeroLimits(tenant_per_minute=1))
    org = org_in(sandbox)

    org.get("Accounts")
    refused = [org.get("Accounts").status_code for _ in range(3)]

    assert refused == [429, 429, 429]
    assert org.get("Accounts").headers["X-DayLimit-Remaining"] == "4999"


def test_day_limit_names_the_day_problem(sandbox: XeroSandbox) -> None:
    sandbox.set_limits(XeroLimits(tenant_per_day=2))
    org = org_in(sandbox)

    statuses = [org.get("Accounts").status_code for _ in range(3)]
    refused = org.get("Accounts")

    assert statuses == [200, 200, 429]
    assert refused.headers["X-Rate-Limit-Problem"] == "day"
    assert int(refused.headers["Retry-After"]) > 23 * 3600


def test_limits_are_per_organisation(sandbox: XeroSandbox) -> None:
    sandbox.set_limits(XeroLimits(tenant_per_minute=1))
    first, second = org_in(sandbox, 31), org_in(sandbox, 32)

    assert first.get("Accounts").status_code == 200
    assert first.get("Accounts").status_code == 429
    assert second.get("Accounts").status_code == 200


def test_app_minute_limit_spans_organisations(sandbox: XeroSandbox) -> None:
    sandbox.set_limits(XeroLimits(app_per_minute=3))
    first, second = org_in(sandbox, 31), org_in(sandbox, 32)

    statuses = [
        first.get("Accounts").status_code,
        second.get("Accounts").status_code,
        first.get("Accounts").status_code,
    ]
    refused = second.get("Accounts")

    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.headers["X-Rate-Limit-Problem"] == "appminute"


def test_concurrency_limit_refuses_a_call_while_others_are_in_flight(sandbox: XeroSandbox) -> None:
    # Given one concurrent call allowed and a slow bill listing holding it
    sandbox.set_limits(XeroLimits(tenant_concurrent=1))
    org = org_in(sandbox)
    sandbox.faults.add_handler_delay(1.0, "get_invoices")
    slow: list[requests.Response] = []
    holder = threading.Thread(target=lambda: slow.append(org.get("Invoices")))
    holder.start()
    deadline = time.monotonic() + 5
    while sandbox.requests_in_flight(CLIENT_ID, org.tenant) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    # When a second call arrives meanwhile
    refused = org.get("Accounts")
    holder.join()

    # Then it gets the concurrency 429 (no Retry-After), and the slot is free again afterwards
    assert refused.status_code == 429
    assert refused.headers["X-Rate-Limit-Problem"] == "concurrent"
    assert "Retry-After" not in refused.headers
    assert slow[0].status_code == 200
    assert org.get("Accounts").status_code == 200


def test_injected_throttle_looks_like_xeros_429(sandbox: XeroSandbox) -> None:
    org = org_in(sandbox)
    sandbox.faults.throttle("get_invoices")

    response = org.get("Invoices")

    assert response.status_code == 429
    assert response.headers["X-Rate-Limit-Problem"] == "minute"
    assert response.headers["Retry-After"] == "1"
    assert org.get("Invoices").status_code == 200


def test_limits_can_be_set_over_the_admin_surface(sandbox: XeroSandbox) -> None:
    org = org_in(sandbox)

    answer = requests.post(f"{sandbox.base_url}/_admin/set_limits", json={"tenant_per_minute": 1})

    assert answer.json() == {"ok": True}
    assert [org.get("Accounts").status_code for _ in range(2)] == [200, 429]
