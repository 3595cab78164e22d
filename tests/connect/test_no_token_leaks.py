"""No access or refresh token appears in a log line, a response, a DynamoDB item or an error message.

One test runs everything the connect feature does with tokens - three providers connected (the Xero
organisation choice included), mappings, refreshes, refused requests, a revoked grant, a reconnect to the
wrong and then the right organisation, a disconnect - while every token endpoint answer is tapped on the
wire, every formatted log line and everything printed is kept, and every response body and header is
kept; then the table is scanned and every token is searched for everywhere.
"""

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from local.sandboxes.fleet import PROVIDERS

from .world import ConnectWorld

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

# The end of a token: a log line that truncated a token would still carry a distinctive piece of it.
TAIL = 24


@dataclass
class Capture:
    tokens: set[str] = field(default_factory=set)
    responses: list[str] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch, world: ConnectWorld) -> Iterator[Capture]:
    captured = Capture()
    original_send = HTTPAdapter.send
    original_emit = logging.StreamHandler.emit

    def send(adapter: HTTPAdapter, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = original_send(adapter, request, **kwargs)
        body = response.content.decode(errors="replace")  # read once; requests keeps it for the caller
        issued = _issued_tokens(body)
        if issued:
            # A token endpoint's answer: the tokens to search for (this answer itself is the provider's).
            captured.tokens.update(issued)
        elif str(request.url).startswith(world.stack.api_url):
            # Everything the service answered: status line, headers (Location!) and body.
            captured.responses.append(f"{response.status_code} {dict(response.headers)} {body}")
        return response

    def emit(handler: logging.StreamHandler[Any], record: logging.LogRecord) -> None:
        captured.log_lines.append(handler.format(record))
        original_emit(handler, record)

    monkeypatch.setattr(HTTPAdapter, "send", send)
    monkeypatch.setattr(logging.StreamHandler, "emit", emit)
    yield captured


def _issued_tokens(body: str) -> set[str]:
    try:
        document = json.loads(body)
    except ValueError:
        return set()
    if not isinstance(document, dict):
        return set()
    return {str(document[key]) for key in ("access_token", "refresh_token") if document.get(key)}


def every_flow_that_handles_tokens(world: ConnectWorld) -> list[str]:
    business = "biz-secrets"
    ids = {provider: world.connect(provider, business) for provider in PROVIDERS}  # Xero: choice made
    for connection_id in ids.values():
        world.call("GET", f"/connections/{connection_id}", business)
        world.call("GET", f"/connections/{connection_id}/mapping", business)
    world.call("GET", "/connections", business)

    # Refreshes: by the service's clock (Lambdas) and after the provider refused an expired token (gateway)
    clock = world.service_clock()
    world.fleet.clock.advance(3601)
    for provider, connection_id in ids.items():
        world.a_lambda(connection_id, provider, clock).access_token()
    world.fleet.clock.advance(3601)
    for connection_id in ids.values():
        assert world.call("GET", f"/connections/{connection_id}/mapping", business).status_code == 200

    # Refused requests and failed callbacks
    world.call("POST", "/connections", business, json={"provider": "freshbooks"})
    world.call("PUT", f"/connections/{ids['sage']}/mapping", business, json={"accepted": True, "fundingSources": {}})
    started = world.start("quickbooks", business)
    world.callback(world.consent(started.authorization_url).replace("code=", "code=x"), business)

    # A revoked grant, a reconnect to the wrong organisation, then to the right one
    xero_tenant = world.connection(ids["xero"]).tenant_id or ""
    world.fleet.xero.revoke_grant(xero_tenant)
    assert world.call("GET", f"/connections/{ids['xero']}/mapping", business).status_code == 409
    other = next(tenant for tenant in world.fleet.tenant_ids["xero"] if tenant != xero_tenant)
    with world.consent_to("xero", [other]):
        assert world.authorize(world.reconnect(ids["xero"], business)).outcome == "tenant_mismatch"
    assert world.authorize(world.reconnect(ids["xero"], business)).outcome == "connected"

    # A disconnect (the tokens are revoked at the provider)
    world.call("DELETE", f"/connections/{ids['quickbooks']}", business)
    return list(ids.values())


def test_no_token_appears_in_logs_responses_records_or_errors(
    world: ConnectWorld, capture: Capture, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given every log line at DEBUG (the stack runs with LogLevel DEBUG)
    caplog.set_level(logging.DEBUG)

    # When every flow that handles tokens runs
    connection_ids = every_flow_that_handles_tokens(world)
    printed = capsys.readouterr()
    items = world.scan()

    # Then the tap saw the tokens the providers issued - the ones stored now among them
    stored = [world.stored_tokens(connection_id) for connection_id in connection_ids]
    current = {t.access_token.get_secret_value() for t in stored if t} | {
        t.refresh_token.get_secret_value() for t in stored if t
    }
    assert len(current) == 4  # Xero and Sage still connected (QuickBooks disconnected)
    assert current <= capture.tokens
    assert len(capture.tokens) >= 20
    # And there was plenty to search: the functions' log lines, every response, every item
    assert any('"message":"OAuth callback"' in line for line in capture.log_lines)
    assert len(capture.responses) >= 30
    assert len(items) >= 5

    # And no token, nor the end of one, appears anywhere
    haystacks = {
        "log lines": "\n".join(capture.log_lines),
        "captured log records": "\n".join(record.getMessage() + str(record.__dict__) for record in caplog.records),
        "printed output": printed.out + printed.err,
        "responses": "\n".join(capture.responses),
        "DynamoDB items": json.dumps(items),
    }
    for token in capture.tokens:
        for name, haystack in haystacks.items():
            assert token not in haystack, f"a token appears in the {name}"
            assert token[-TAIL:] not in haystack, f"the end of a token appears in the {name}"
