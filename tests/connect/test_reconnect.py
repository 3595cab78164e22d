"""A revoked grant, as the user meets it: the connection says it needs reauthorising, reconnecting through
the consent page brings back the same organisation, and another organisation is refused."""

from collections.abc import Iterator
from contextlib import AbstractContextManager

import pytest

from local.sandboxes.fleet import PROVIDERS, ProviderName
from local.sandboxes.generator import generate_ledger

from .world import ConnectWorld

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

OTHER_SAGE_BUSINESS = "Other Books Ltd"


def revoke_at_provider(world: ConnectWorld, provider: ProviderName, tenant_id: str) -> None:
    """The user removes our app in the accounting software."""
    if provider == "quickbooks":
        world.fleet.quickbooks.revoke_grant(tenant_id)
    elif provider == "xero":
        world.fleet.xero.revoke_grant(tenant_id)
    else:
        world.fleet.sage.revoke_grant(client_id=world.fleet.credentials["sage"].client_id)


def revocations(world: ConnectWorld, provider: ProviderName) -> int:
    endpoint = {"quickbooks": "revoke", "xero": "revocation", "sage": "revoke"}[provider]
    return world.fleet.sandboxes[provider].requests.count(endpoint)


@pytest.fixture(scope="module")
def other_sage_user(world: ConnectWorld) -> Iterator[str]:
    """A second Sage user, whose only business is not the one our connections use."""
    user_id = world.fleet.sage.add_user("Other Owner", "other.owner@example.com")
    world.fleet.sage.add_tenant(generate_ledger(seed=99, bills=2), name=OTHER_SAGE_BUSINESS, user_id=user_id)
    yield user_id


def consenting_to_another_organisation(
    world: ConnectWorld, provider: ProviderName, ours: str, other_sage_user: str
) -> AbstractContextManager[None]:
    """The user, at the consent page, picks (or signs in for) an organisation other than ours."""
    if provider == "sage":
        return world.signed_in_at_sage_as(other_sage_user)
    other = next(tenant for tenant in world.fleet.tenant_ids[provider] if tenant != ours)
    return world.consent_to(provider, [other])


def revoked_connection(world: ConnectWorld, provider: ProviderName, business_id: str) -> str:
    """A connected organisation whose grant the user revoked, noticed when the web app used it."""
    connection_id = world.connect(provider, business_id, tenant_id=world.fleet.tenant_ids[provider][0])
    revoke_at_provider(world, provider, world.connection(connection_id).tenant_id or "")
    noticed = world.call("GET", f"/connections/{connection_id}/mapping", business_id)
    assert noticed.status_code == 409, noticed.text
    assert noticed.headers["Content-Type"] == "application/problem+json"
    assert "reconnect" in noticed.json()["detail"]
    return connection_id


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_revoked_grant_is_shown_and_reconnecting_resumes_the_same_organisation(
    world: ConnectWorld, provider: ProviderName
) -> None:
    business = f"biz-reconnect-{provider}"
    # Given a connection whose grant the user revoked at the provider
    connection_id = revoked_connection(world, provider, business)
    before = world.connection(connection_id)

    # Then the integrations page shows it needs reauthorising, with its organisation and mapping kept
    shown = world.call("GET", f"/connections/{connection_id}", business).json()
    assert shown["status"] == "reauthorization_required"
    assert shown["attention"] == ["The accounting software refused our authorisation: reconnect."]
    assert shown["organisationName"] == before.tenant_name
    assert shown["mapping"]["acceptedAt"] is not None

    # When the user reconnects through the consent page
    started = world.reconnect(connection_id, business)
    assert started.connection_id == connection_id
    result = world.authorize(started)

    # Then the callback reports the same connection connected again, on the same organisation
    assert (result.outcome, result.connection_id) == ("connected", connection_id)
    after = world.connection(connection_id)
    assert (after.status.value, after.tenant_id, after.mapping) == ("connected", before.tenant_id, before.mapping)
    shown = world.call("GET", f"/connections/{connection_id}", business).json()
    assert (shown["status"], shown["attention"]) == ("connected", [])
    # And the new grant works: the mapping is read from the provider again
    assert world.call("GET", f"/connections/{connection_id}/mapping", business).status_code == 200
    stored = world.stored_tokens(connection_id)
    assert stored is not None and not stored.grant_revoked


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reconnecting_to_another_organisation_is_refused_and_changes_nothing(
    world: ConnectWorld, provider: ProviderName, other_sage_user: str
) -> None:
    business = f"biz-mismatch-{provider}"
    # Given a connection whose grant the user revoked
    connection_id = revoked_connection(world, provider, business)
    before = world.connection(connection_id)
    tokens_before = world.stored_tokens(connection_id)
    revoked_before = revocations(world, provider)

    # When the user reconnects but consents for another organisation
    started = world.reconnect(connection_id, business)
    with consenting_to_another_organisation(world, provider, before.tenant_id or "", other_sage_user):
        result = world.authorize(started)

    # Then the web app is told tenant_mismatch, and the connection, its organisation and its tokens are as they were
    assert (result.outcome, result.connection_id) == ("tenant_mismatch", connection_id)
    assert world.connection(connection_id) == before
    assert world.stored_tokens(connection_id) == tokens_before
    assert world.call("GET", f"/connections/{connection_id}", business).json()["status"] == "reauthorization_required"
    # And the grant we will not use was given back to the provider
    assert revocations(world, provider) == revoked_before + 1

    # And reconnecting to the right organisation still works afterwards
    assert world.authorize(world.reconnect(connection_id, business)).outcome == "connected"


def test_reconnecting_a_connection_that_still_works_keeps_it_connected(world: ConnectWorld) -> None:
    # Given a connected Xero organisation (two organisations ticked again at the consent page)
    connection_id = world.connect("xero", "biz-refresh-consent")
    before = world.connection(connection_id)

    # When the user reconnects it anyway
    result = world.authorize(world.reconnect(connection_id, "biz-refresh-consent"))

    # Then it stays connected on its organisation, without asking to choose again
    assert (result.outcome, result.connection_id) == ("connected", connection_id)
    after = world.connection(connection_id)
    assert (after.status.value, after.tenant_id, after.tenant_choices) == ("connected", before.tenant_id, [])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_revoked_grant_is_recognised_after_another_lambda_refreshed_the_token(
    world: ConnectWorld, provider: ProviderName
) -> None:
    business = f"biz-warm-{provider}"
    # Given a connection the web app just used (the callback function has read its token)
    connection_id = world.connect(provider, business)
    assert world.call("GET", f"/connections/{connection_id}/mapping", business).status_code == 200
    # And another Lambda that refreshed the token since (the provider had refused the one it held)
    world.a_lambda(connection_id, provider, world.service_clock()).force_refresh()
    # And then the user revoked our app at the provider
    revoke_at_provider(world, provider, world.connection(connection_id).tenant_id or "")

    # When the web app uses the connection again
    response = world.call("GET", f"/connections/{connection_id}/mapping", business)

    # Then it is told to reconnect, and the connection says so
    assert response.status_code == 409, response.text
    assert world.call("GET", f"/connections/{connection_id}", business).json()["status"] == "reauthorization_required"
