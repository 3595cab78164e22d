"""What guards a connection: the single-use OAuth state on the callback (which carries no JWT), and the
business id of the caller's JWT on every other route."""

import hashlib
import secrets
import time

import pytest
import requests

from local.sandboxes.fleet import ProviderName

from .world import BUSINESS_A, BUSINESS_B, ConnectWorld, Started, with_query

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


def token_calls(world: ConnectWorld, provider: ProviderName) -> int:
    return world.fleet.sandboxes[provider].requests.count("token")


def assert_unchanged_and_without_tokens(world: ConnectWorld, started: Started) -> None:
    """The connection is still waiting for its authorisation, with no organisation and no secret."""
    connection = world.connection(started.connection_id)
    assert (connection.status.value, connection.tenant_id, connection.version) == ("authorizing", None, 0)
    assert world.stored_tokens(started.connection_id) is None
    shown = world.call("GET", f"/connections/{started.connection_id}").json()
    assert (shown["status"], shown["organisationName"]) == ("authorizing", None)


def state_key(state: str) -> dict[str, dict[str, str]]:
    return {"PK": {"S": f"OAUTH_STATE#{hashlib.sha256(state.encode()).hexdigest()}"}, "SK": {"S": "OAUTH_STATE"}}


# ------------------------------------------------------------------------------------- the OAuth state


def test_a_pending_state_is_stored_as_a_hash_with_a_ttl_the_table_expires(world: ConnectWorld) -> None:
    # Given a connection just started
    started = world.start("xero")

    # Then the table holds a hash of the state (never the state), with a TTL in epoch seconds ten minutes out
    item = world.stack.client("dynamodb").get_item(TableName=world.table_name, Key=state_key(started.state))["Item"]
    assert started.state not in str(item)
    assert "N" in item["expiresAt"], item["expiresAt"]  # DynamoDB's TTL ignores anything but a Number
    assert 590 <= int(item["expiresAt"]["N"]) - time.time() <= 600


def test_a_forged_state_changes_nothing_and_is_named(world: ConnectWorld) -> None:
    # Given a connection waiting for its authorisation, and a redirect whose state we never issued
    started = world.start("quickbooks")
    redirect = world.consent(started.authorization_url)
    calls = token_calls(world, "quickbooks")

    # When the browser arrives with the forged state, or with none
    forged = world.callback(with_query(redirect, state=secrets.token_urlsafe(32)))
    missing = world.callback(with_query(redirect, state=None))

    # Then the web app is told invalid_state (and no connection), the code was never exchanged
    for result in (forged, missing):
        assert result.status == 302
        assert (result.outcome, result.connection_id) == ("invalid_state", None)
    assert token_calls(world, "quickbooks") == calls
    assert_unchanged_and_without_tokens(world, started)
    # And the real state still works once
    assert world.callback(redirect).outcome == "mapping_required"


def test_a_replayed_callback_changes_nothing(world: ConnectWorld) -> None:
    # Given a connection authorised through the callback
    started = world.start("sage")
    redirect = world.consent(started.authorization_url)
    assert world.callback(redirect).outcome == "mapping_required"
    before = world.connection(started.connection_id)
    tokens_before = world.stored_tokens(started.connection_id)
    calls = token_calls(world, "sage")

    # When the same redirect is replayed
    replayed = world.callback(redirect)

    # Then it is refused as invalid_state, the code is not exchanged again, and nothing changed
    assert (replayed.outcome, replayed.connection_id) == ("invalid_state", None)
    assert token_calls(world, "sage") == calls
    assert world.connection(started.connection_id) == before
    assert world.stored_tokens(started.connection_id) == tokens_before


def test_an_expired_state_changes_nothing(world: ConnectWorld) -> None:
    # Given a consent the user finished more than ten minutes after starting it
    started = world.start("xero")
    redirect = world.consent(started.authorization_url)
    world.stack.client("dynamodb").update_item(
        TableName=world.table_name,
        Key=state_key(started.state),
        UpdateExpression="SET expiresAt = :issued_eleven_minutes_ago_expired_one_ago",
        ExpressionAttributeValues={":issued_eleven_minutes_ago_expired_one_ago": {"N": str(int(time.time()) - 60)}},
    )
    calls = token_calls(world, "xero")

    # When the browser comes back
    result = world.callback(redirect)

    # Then the state is refused, the code never exchanged, and the connection still waits
    assert (result.outcome, result.connection_id) == ("invalid_state", None)
    assert token_calls(world, "xero") == calls
    assert_unchanged_and_without_tokens(world, started)


def test_a_state_issued_for_another_provider_is_refused(world: ConnectWorld) -> None:
    # Given a Xero authorisation
    started = world.start("xero")
    redirect = world.consent(started.authorization_url)

    # When its redirect is sent to the Sage callback
    result = world.callback(redirect.replace("/oauth/xero/callback", "/oauth/sage/callback"))

    # Then it is refused and, being single use, cannot be used at Xero's callback afterwards either
    assert (result.outcome, result.connection_id) == ("invalid_state", None)
    assert world.callback(redirect).outcome == "invalid_state"
    assert_unchanged_and_without_tokens(world, started)


@pytest.mark.parametrize("provider", ["xero", "sage"])
def test_another_businesss_code_under_our_state_is_refused_by_pkce(world: ConnectWorld, provider: ProviderName) -> None:
    # Given business A and business B both adding a connection, and B's browser coming back with B's code
    # under A's state (a link someone crafted)
    ours = world.start(provider, BUSINESS_A)
    theirs = world.start(provider, BUSINESS_B)
    their_redirect = world.consent(theirs.authorization_url)

    # When that redirect arrives
    result = world.callback(with_query(their_redirect, state=ours.state))

    # Then A's PKCE verifier does not match B's code: named, and A's connection is untouched
    assert (result.outcome, result.connection_id) == ("invalid_code", ours.connection_id)
    assert_unchanged_and_without_tokens(world, ours)
    assert world.connection(theirs.connection_id).status.value == "authorizing"


# ------------------------------------------------------------------------------------- the provider's answer


@pytest.mark.parametrize(
    ("change", "outcome"),
    [
        ({"error": "access_denied", "code": None}, "provider_error"),
        ({"code": None}, "missing_code"),
        ({"code": "not-a-code-the-provider-issued"}, "invalid_code"),
    ],
    ids=["consent refused", "no code", "unknown code"],
)
def test_a_callback_without_a_usable_code_is_named_and_changes_nothing(
    world: ConnectWorld, change: dict[str, str | None], outcome: str
) -> None:
    started = world.start("quickbooks")
    redirect = world.consent(started.authorization_url)

    result = world.callback(with_query(redirect, **change))

    assert (result.outcome, result.connection_id) == (outcome, started.connection_id)
    assert_unchanged_and_without_tokens(world, started)


# ------------------------------------------------------------------------------------- one business, its own


@pytest.fixture(scope="module")
def connected_of_a(world: ConnectWorld) -> str:
    return world.connect("xero", BUSINESS_A)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/connections/{id}", None),
        ("GET", "/connections/{id}/mapping", None),
        ("PUT", "/connections/{id}/mapping", {"accepted": True, "fundingSources": {"cad-operating": "x"}}),
        ("GET", "/connections/{id}/tenants", None),
        ("PUT", "/connections/{id}/tenant", {"tenantId": "x"}),
        ("POST", "/connections/{id}/reconnect", None),
        ("POST", "/connections/{id}/sync", None),
        ("GET", "/connections/{id}/sync-runs", None),
        ("DELETE", "/connections/{id}", None),
    ],
)
def test_another_business_cannot_read_map_sync_or_delete_a_connection(
    world: ConnectWorld, connected_of_a: str, method: str, path: str, body: object
) -> None:
    # Given business A's connected Xero organisation
    before = world.connection(connected_of_a)
    revocations = world.fleet.xero.requests.count("revocation")

    # When business B calls a route of it
    response = world.call(method, path.format(id=connected_of_a), BUSINESS_B, json=body)

    # Then B gets the answer a connection that never existed gets, and nothing changed for A or at Xero
    assert response.status_code == 404, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    never_existed = world.call(method, path.format(id="0" * 32), BUSINESS_B, json=body)
    assert response.text.replace(connected_of_a, "0" * 32) == never_existed.text
    assert world.connection(connected_of_a) == before
    assert world.stored_tokens(connected_of_a) is not None
    assert world.fleet.xero.requests.count("revocation") == revocations
    assert world.call("GET", f"/connections/{connected_of_a}", BUSINESS_A).json()["status"] == "connected"


def test_a_business_lists_only_its_own_connections(world: ConnectWorld, connected_of_a: str) -> None:
    theirs = world.start("sage", BUSINESS_B)
    listed_a = {item["connectionId"] for item in world.call("GET", "/connections", BUSINESS_A).json()["connections"]}
    listed_b = {item["connectionId"] for item in world.call("GET", "/connections", BUSINESS_B).json()["connections"]}
    assert connected_of_a in listed_a and connected_of_a not in listed_b
    assert theirs.connection_id in listed_b and theirs.connection_id not in listed_a


def test_the_api_refuses_callers_without_a_business(world: ConnectWorld) -> None:
    without_token = world.stack.api_url + "/connections"
    assert requests.get(without_token, timeout=10).status_code == 401
    no_claim = world.stack.issue_token({})
    response = requests.get(without_token, headers={"Authorization": f"Bearer {no_claim}"}, timeout=10)
    assert response.status_code == 401
    assert response.json()["title"] == "Unauthorized"


def test_disconnecting_revokes_at_the_provider_and_keeps_the_record_read_only(world: ConnectWorld) -> None:
    # Given a connected QuickBooks company
    connection_id = world.connect("quickbooks", "biz-leaving")
    revocations = world.fleet.quickbooks.requests.count("revoke")

    # When the business disconnects it
    response = world.call("DELETE", f"/connections/{connection_id}", "biz-leaving")

    # Then QuickBooks was asked to revoke the grant, the tokens are gone, and the record says disconnected
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "disconnected"
    assert world.fleet.quickbooks.requests.count("revoke") == revocations + 1
    assert world.stored_tokens(connection_id) is None
    assert world.call("GET", f"/connections/{connection_id}", "biz-leaving").json()["status"] == "disconnected"
    # And it can neither be mapped nor reconnected any more
    assert world.call("GET", f"/connections/{connection_id}/mapping", "biz-leaving").status_code == 409
    assert world.call("POST", f"/connections/{connection_id}/reconnect", "biz-leaving").status_code == 409
