"""Hostile input through the local gateway: what callers send by hand or by fuzzer, and what each gets.

Bodies are refused before parsing (400 not UTF-8 / not JSON / too deep, 413 too large, 415 not JSON) in
all four functions; identifiers outside their character set are 422 naming the field, and the status URL
of an accepted payment always resolves; payments outside the date window or with unbounded digits are
refused before anything is recorded; webhooks never answer 5xx and replays queue nothing; a throttled
provider read is 503 with Retry-After; the gateway's access log never prints OAuth codes or states.
"""

import base64
import hashlib
import hmac
import json
import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from .world import TIMEOUT, ConnectWorld

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

BUSINESS = "biz-hostile"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def connected(world: ConnectWorld) -> dict[str, str]:
    """Two connected connections of one business (Xero and QuickBooks)."""
    return {provider: world.connect(provider, BUSINESS) for provider in ("xero", "quickbooks")}


def send(world: ConnectWorld, method: str, path: str, body: bytes, content_type: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {world.token(BUSINESS)}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return requests.request(method, f"{world.stack.api_url}{path}", data=body, headers=headers, timeout=TIMEOUT)


def payment(number: str, **changes: Any) -> dict[str, Any]:
    body = {
        "paymentOrderNumber": number,
        "billId": "bill-1",
        "vendorName": "Maple Supplies",
        "currency": "CAD",
        "amount": "10.00",
        "paymentStatus": "completed",
        "paymentDate": datetime.now(UTC).date().isoformat(),
        "fundingSource": "cad-operating",
    }
    return {**body, **changes}


def fields_of(response: requests.Response) -> list[str]:
    return [error["field"] for error in response.json().get("errors", [])]


# ------------------------------------------------------------------------------------ bodies


def routes_of_every_function(connected: dict[str, str]) -> list[tuple[str, str]]:
    connection_id = connected["xero"]
    return [
        ("POST", "/connections"),  # connect
        ("PUT", f"/connections/{connection_id}/tenant"),  # callback
        ("POST", f"/connections/{connection_id}/sync"),  # sync
        ("POST", f"/connections/{connection_id}/payments"),  # write-back
    ]


BAD_BODIES = {
    "not UTF-8": (b'{"provider": "x\xff\xfe"}', "application/json", 400, "UTF-8"),
    "not JSON": (b"provider=xero", "application/json", 400, "JSON"),
    "NaN": (b'{"amount": NaN}', "application/json", 400, "JSON"),
    "too deep": (b"[" * 5000 + b"]" * 5000, "application/json", 400, "deeper"),
    "too large": (b'{"x": "' + b"a" * 70_000 + b'"}', "application/json", 413, "larger"),
    "plain text": (b'{"provider": "xero"}', "text/plain", 415, "application/json"),
    "no content type": (b'{"provider": "xero"}', None, 415, "application/json"),
    "latin-1": (b'{"provider": "xero"}', "application/json; charset=iso-8859-1", 415, "UTF-8"),
}


@pytest.mark.parametrize("kind", list(BAD_BODIES))
def test_a_body_that_cannot_be_read_is_a_problem_in_every_function_and_changes_nothing(
    world: ConnectWorld, connected: dict[str, str], kind: str
) -> None:
    body, content_type, status, words = BAD_BODIES[kind]
    before = world.scan()
    for method, path in routes_of_every_function(connected):
        response = send(world, method, path, body, content_type)
        assert response.status_code == status, (method, path, response.text[:300])
        assert response.headers["Content-Type"] == "application/problem+json"
        assert words in response.json()["detail"], response.json()
        assert fields_of(response) == ["body"]
    assert len(world.scan()) == len(before)


# ------------------------------------------------------------------------------------ identifiers


def test_an_identifier_that_would_need_encoding_is_refused_naming_the_field(
    world: ConnectWorld, connected: dict[str, str]
) -> None:
    connection_id = connected["xero"]
    for number in ("PO/1", "PO 1", "PO%2F1", "PO?1", "Ünïcode", "x" * 65, "-leading"):
        response = world.call("POST", f"/connections/{connection_id}/payments", BUSINESS, json=payment(number))
        assert response.status_code == 422, (number, response.text)
        assert fields_of(response) == ["body.paymentOrderNumber"], number
    # A path parameter percent-encoded by the caller is decoded once, then checked like any identifier
    encoded = world.call("GET", f"/connections/{connection_id}/payments/PO%2F1", BUSINESS)
    assert encoded.status_code == 422, encoded.text
    assert fields_of(encoded) == ["path.paymentOrderNumber"]
    too_long = world.call("GET", f"/connections/{'c' * 65}", BUSINESS)
    assert too_long.status_code == 422 and fields_of(too_long) == ["path.connectionId"]


def test_the_status_url_of_an_accepted_payment_resolves_even_percent_encoded(
    world: ConnectWorld, connected: dict[str, str]
) -> None:
    connection_id = connected["xero"]
    number = "PO-2026.12_a~b"
    accepted = world.call("POST", f"/connections/{connection_id}/payments", BUSINESS, json=payment(number))
    assert accepted.status_code == 202, accepted.text
    status_url = accepted.json()["statusUrl"]
    assert status_url == f"/connections/{connection_id}/payments/{number}"
    shown = world.call("GET", status_url, BUSINESS)
    assert shown.status_code == 200 and shown.json()["paymentOrderNumber"] == number
    # Percent-encoding characters that need none changes nothing: API Gateway decodes path parameters
    spelled = world.call("GET", f"/connections/{connection_id}/payments/PO%2D2026%2E12_a%7Eb", BUSINESS)
    assert spelled.status_code == 200 and spelled.json()["paymentOrderNumber"] == number


# ------------------------------------------------------------------------------------ payments


@pytest.mark.parametrize(
    ("changes", "status", "field"),
    [
        ({"paymentDate": "9999-12-31"}, 400, "body.paymentDate"),
        ({"paymentDate": "2001-01-01"}, 400, "body.paymentDate"),
        ({"exchangeRate": "1" * 100}, 422, "body.exchangeRate"),
        ({"exchangeRate": "1.12345678"}, 422, "body.exchangeRate"),
        ({"amount": "1" * 40}, 422, "body.amount"),
        ({"amount": "10.001"}, 422, "body.amount"),
        ({"billId": "bill/1"}, 422, "body.billId"),
    ],
)
def test_a_payment_outside_the_documented_bounds_is_refused_and_nothing_is_recorded(
    world: ConnectWorld, connected: dict[str, str], changes: dict[str, Any], status: int, field: str
) -> None:
    connection_id = connected["quickbooks"]
    number = "PO-bounds-" + hashlib.sha256(json.dumps(changes).encode()).hexdigest()[:8]
    response = world.call("POST", f"/connections/{connection_id}/payments", BUSINESS, json=payment(number, **changes))
    assert response.status_code == status, response.text
    assert fields_of(response) == [field]
    assert world.call("GET", f"/connections/{connection_id}/payments/{number}", BUSINESS).status_code == 404


def test_a_payment_order_number_belongs_to_one_connection_of_its_business(
    world: ConnectWorld, connected: dict[str, str]
) -> None:
    first = world.call("POST", f"/connections/{connected['xero']}/payments", BUSINESS, json=payment("PO-once"))
    assert first.status_code == 202, first.text
    again = world.call("POST", f"/connections/{connected['xero']}/payments", BUSINESS, json=payment("PO-once"))
    assert again.status_code == 202  # the same order again is the same order
    other = world.call("POST", f"/connections/{connected['quickbooks']}/payments", BUSINESS, json=payment("PO-once"))
    assert other.status_code == 409, other.text
    assert fields_of(other) == ["body.paymentOrderNumber"]
    assert world.call("GET", f"/connections/{connected['quickbooks']}/payments/PO-once", BUSINESS).status_code == 404


# ------------------------------------------------------------------------------------ webhooks


def signed_post(world: ConnectWorld, body: bytes, *, key: str | None = None) -> requests.Response:
    secret = key or world.fleet.credentials["xero"].webhook_key or ""
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return requests.post(
        f"{world.stack.api_url}/webhooks/xero",
        data=body,
        headers={"x-xero-signature": signature, "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )


def webhook_runs(world: ConnectWorld, connection_id: str) -> int:
    runs = world.call("GET", f"/connections/{connection_id}/sync-runs?limit=100", BUSINESS).json()["syncRuns"]
    return sum(1 for run in runs if run["trigger"] == "webhook")


def xero_event(tenant_id: str, resource_id: str, when: datetime) -> dict[str, Any]:
    return {
        "resourceUrl": f"https://api.xero.com/api.xro/2.0/Invoices/{resource_id}",
        "resourceId": resource_id,
        "eventDateUtc": when.strftime("%Y-%m-%dT%H:%M:%S.000"),
        "eventType": "UPDATE",
        "eventCategory": "INVOICE",
        "tenantId": tenant_id,
        "tenantType": "ORGANISATION",
    }


@pytest.mark.parametrize(
    "body",
    [
        b"[1,2]",
        b"null",
        b'"a string"',
        b"42",
        b'{"events": [1, null, "x", []]}',
        b'{"events": {}}',
        b"{not json",
        b"\xff\xfe\x00",
        b"[" * 3000 + b"]" * 3000,
        b'{"events": [{"tenantId": 7, "resourceId": {"a": 1}}]}',
    ],
    ids=[
        "array",
        "null",
        "string",
        "number",
        "events-not-objects",
        "events-object",
        "not-json",
        "not-utf8",
        "deep",
        "wrong-types",
    ],
)
def test_a_malformed_signed_webhook_is_answered_200_and_queues_nothing(
    world: ConnectWorld, connected: dict[str, str], body: bytes
) -> None:
    before = webhook_runs(world, connected["xero"])
    response = signed_post(world, body)
    assert response.status_code == 200, response.text
    assert response.text == ""
    assert webhook_runs(world, connected["xero"]) == before


def test_an_oversized_webhook_is_refused_before_its_signature_is_checked(world: ConnectWorld) -> None:
    # Unsigned, yet 413 and not 401: the size is checked before any HMAC is computed
    response = requests.post(
        f"{world.stack.api_url}/webhooks/xero",
        data=b'{"events": []' + b" " * 300_000 + b"}",
        headers={"x-xero-signature": "bm90LXNpZ25lZA==", "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 413, response.text
    assert response.headers["Content-Type"] == "application/problem+json"


def test_a_signed_webhook_replayed_25_times_queues_one_sync(world: ConnectWorld, connected: dict[str, str]) -> None:
    connection_id = connected["xero"]
    tenant_id = world.connection(connection_id).tenant_id or ""
    body = json.dumps({"events": [xero_event(tenant_id, "11111111-2222-3333-4444-555555555555", datetime.now(UTC))]})
    before = webhook_runs(world, connection_id)
    answers = [signed_post(world, body.encode()).status_code for _ in range(25)]
    assert answers == [200] * 25
    assert webhook_runs(world, connection_id) == before + 1
    # The same event inside a new delivery (another body) is still a replay
    wrapped = json.dumps({"events": json.loads(body)["events"], "firstEventSequence": 9, "lastEventSequence": 9})
    assert signed_post(world, wrapped.encode()).status_code == 200
    assert webhook_runs(world, connection_id) == before + 1


def test_an_event_older_than_the_replay_window_is_ignored(world: ConnectWorld, connected: dict[str, str]) -> None:
    connection_id = connected["xero"]
    tenant_id = world.connection(connection_id).tenant_id or ""
    old = datetime.now(UTC) - timedelta(hours=49)
    before = webhook_runs(world, connection_id)
    body = json.dumps({"events": [xero_event(tenant_id, "99999999-2222-3333-4444-555555555555", old)]})
    assert signed_post(world, body.encode()).status_code == 200
    assert webhook_runs(world, connection_id) == before


CLAIMER = """
import json, sys
from datetime import UTC, datetime, timedelta
import boto3
from payedge_connect.models import Provider
from payedge_connect.storage import RecordsStore
endpoint, table, keys = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
store = RecordsStore(table, dynamodb=boto3.resource("dynamodb", endpoint_url=endpoint, region_name="us-east-1"))
print(json.dumps(store.syncs.claim_webhook_events(Provider.XERO, keys, until=datetime.now(UTC) + timedelta(hours=1))))
"""


def test_replays_are_recognised_across_processes(world: ConnectWorld) -> None:
    # Given four OS processes (four Lambdas) handed the same twenty events at once
    keys = [hashlib.sha256(f"cross-process-{index}".encode()).hexdigest() for index in range(20)]
    environment = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "PYTHONPATH": "layers/shared"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, world.stack.endpoint_url, world.table_name, ",".join(keys)],
            cwd=REPO_ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    claimed = [json.loads(process.communicate(timeout=60)[0]) for process in processes]
    # Then each event is new to exactly one of them
    assert sorted(key for batch in claimed for key in batch) == sorted(keys)


# ------------------------------------------------------------------------------------ provider throttling


def test_a_read_the_provider_keeps_throttling_is_503_with_retry_after(
    world: ConnectWorld, connected: dict[str, str]
) -> None:
    world.fleet.xero.faults.throttle("get_accounts", count=20)
    try:
        response = world.call("GET", f"/connections/{connected['xero']}/mapping", BUSINESS)
    finally:
        world.fleet.xero.faults.clear()
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 1


# ------------------------------------------------------------------------------------ access log


def test_the_gateways_access_log_never_prints_oauth_codes_or_states(
    world: ConnectWorld, caplog: pytest.LogCaptureFixture
) -> None:
    started = world.start("quickbooks", BUSINESS)
    redirect = world.consent(started.authorization_url)
    code = dict(part.split("=", 1) for part in redirect.split("?", 1)[1].split("&"))["code"]
    with caplog.at_level(logging.INFO, logger="local.gateway"):
        requests.get(redirect, allow_redirects=False, timeout=TIMEOUT)
    lines = [record.getMessage() for record in caplog.records if record.name == "local.gateway"]
    assert any("/oauth/quickbooks/callback" in line for line in lines), lines
    assert not any(code in line or started.state in line for line in lines), lines
    assert any("code=[redacted]" in line and "state=[redacted]" in line for line in lines), lines
