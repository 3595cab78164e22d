"""Login CSRF: an OAuth flow is completed only by the business and user that started it.

The callback (no JWT) hands the browser a completion code; the web app that browser is signed in to
redeems it with its JWT. A consent link approved in another company's browser lands on that company's
web app: the redemption is refused, the grant is revoked, and neither business's connections change.
"""

from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from local.sandboxes.fleet import ProviderName

from .test_connect_guards import assert_unchanged_and_without_tokens
from .world import BUSINESS_A, BUSINESS_B, TIMEOUT, ConnectWorld

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


def completion_code(location: str) -> str:
    return dict(parse_qsl(urlsplit(location).fragment))["completionCode"]


def revocations(world: ConnectWorld, provider: ProviderName) -> int:
    endpoint = "revocation" if provider == "xero" else "revoke"
    return world.fleet.sandboxes[provider].requests.count(endpoint)


def connections_of(world: ConnectWorld, business_id: str) -> list[str]:
    return [item["connectionId"] for item in world.call("GET", "/connections", business_id).json()["connections"]]


@pytest.mark.parametrize("provider", ["quickbooks", "xero", "sage"])
def test_a_consent_link_approved_in_another_businesss_browser_changes_nothing_and_is_revoked(
    world: ConnectWorld, provider: ProviderName
) -> None:
    # Given business A's consent link, sent to someone at business B who approves it in their own browser
    started = world.start(provider, BUSINESS_A)
    b_before = connections_of(world, BUSINESS_B)
    revoked_before = revocations(world, provider)
    callback = requests.get(world.consent(started.authorization_url), allow_redirects=False, timeout=TIMEOUT)

    # Then the callback itself connects nothing: it sends that browser to the web app with a completion code
    assert callback.status_code == 302
    assert dict(parse_qsl(urlsplit(callback.headers["Location"]).query))["outcome"] == "authorized"
    assert "completionCode" not in urlsplit(callback.headers["Location"]).query  # fragment only: no Referer
    assert_unchanged_and_without_tokens(world, started)

    # When B's web app, signed in as B, redeems it
    code = completion_code(callback.headers["Location"])
    refused = world.redeem(started.connection_id, code, BUSINESS_B)

    # Then it is refused as unknown, the grant B's consent created is revoked, and nothing changed anywhere
    assert refused.status_code == 404, refused.text
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["errors"][0]["field"] == "body.completionCode"
    assert revocations(world, provider) == revoked_before + 1
    assert_unchanged_and_without_tokens(world, started)
    assert connections_of(world, BUSINESS_B) == b_before

    # And the code is spent: A cannot take B's books with it afterwards either
    assert world.redeem(started.connection_id, code, BUSINESS_A).status_code == 404
    assert_unchanged_and_without_tokens(world, started)


def test_another_user_of_the_same_business_cannot_complete_the_flow(world: ConnectWorld) -> None:
    # Given a flow started by one user of business A
    started = world.start("quickbooks", BUSINESS_A)
    callback = requests.get(world.consent(started.authorization_url), allow_redirects=False, timeout=TIMEOUT)

    # When a browser signed in as another user of A redeems the code
    refused = world.redeem(started.connection_id, completion_code(callback.headers["Location"]), BUSINESS_A, "mallory")

    # Then nothing is connected
    assert refused.status_code == 404
    assert_unchanged_and_without_tokens(world, started)


def test_a_code_redeemed_for_another_connection_of_the_same_business_changes_neither(world: ConnectWorld) -> None:
    first, second = world.start("xero", BUSINESS_A), world.start("xero", BUSINESS_A)
    callback = requests.get(world.consent(first.authorization_url), allow_redirects=False, timeout=TIMEOUT)

    refused = world.redeem(second.connection_id, completion_code(callback.headers["Location"]), BUSINESS_A)

    assert refused.status_code == 404
    assert_unchanged_and_without_tokens(world, first)
    assert_unchanged_and_without_tokens(world, second)


def test_a_consent_never_redeemed_exchanges_no_code(world: ConnectWorld) -> None:
    # Given a consent approved in a browser that is signed in nowhere (the web app never redeems it)
    started = world.start("sage", BUSINESS_A)
    tokens_before = world.fleet.sandboxes["sage"].requests.count("token")
    requests.get(world.consent(started.authorization_url), allow_redirects=False, timeout=TIMEOUT)

    # Then no code was exchanged (no grant exists) and the connection still waits
    assert world.fleet.sandboxes["sage"].requests.count("token") == tokens_before
    assert_unchanged_and_without_tokens(world, started)


def test_a_redemption_without_a_jwt_is_refused_by_the_gateway(world: ConnectWorld) -> None:
    started = world.start("quickbooks", BUSINESS_A)
    callback = requests.get(world.consent(started.authorization_url), allow_redirects=False, timeout=TIMEOUT)
    response = requests.post(
        f"{world.stack.api_url}/connections/{started.connection_id}/authorization",
        json={"completionCode": completion_code(callback.headers["Location"])},
        timeout=TIMEOUT,
    )
    assert response.status_code == 401
    assert_unchanged_and_without_tokens(world, started)
