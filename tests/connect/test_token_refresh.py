"""Tokens that never die by our hand: one refresh for many Lambdas, a lost refresh answer survived, a
revoked grant handled once - for QuickBooks, Xero and Sage, against the local stack's AWS (the moto
server) and the provider sandboxes."""

import pytest

from local.sandboxes.fleet import PROVIDERS, ProviderName
from payedge_connect.models import ConnectionStatus
from payedge_connect.tokens.refresh import ReauthorizationRequired

from .world import ConnectWorld, run_concurrently

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

# Longer than every provider's access-token lifetime (QuickBooks 60 min, Xero 30 min, Sage 5 min).
ALL_ACCESS_TOKENS_EXPIRED = 3601


def token_calls(world: ConnectWorld, provider: ProviderName) -> int:
    """Requests the provider's token endpoint received (code exchanges and refreshes)."""
    return world.fleet.sandboxes[provider].requests.count("token")


def revoke_at_provider(world: ConnectWorld, provider: ProviderName, tenant_id: str) -> None:
    """The user removes our app in the accounting software."""
    if provider == "quickbooks":
        world.fleet.quickbooks.revoke_grant(tenant_id)
    elif provider == "xero":
        world.fleet.xero.revoke_grant(tenant_id)
    else:
        world.fleet.sage.revoke_grant(client_id=world.fleet.credentials["sage"].client_id)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_twenty_concurrent_users_of_an_expired_token_cause_one_refresh(
    world: ConnectWorld, provider: ProviderName
) -> None:
    # Given a connected organisation whose access token has expired
    connection_id = world.connect(provider, f"biz-concurrent-{provider}")
    tenant_id = world.connection(connection_id).tenant_id or ""
    clock = world.service_clock()
    world.fleet.clock.advance(ALL_ACCESS_TOKENS_EXPIRED)
    before = token_calls(world, provider)
    lambdas = [world.a_lambda(connection_id, provider, clock) for _ in range(20)]

    # When 20 Lambdas each read the organisation's accounts at the same moment
    def read_accounts(index: int) -> int:
        tokens = lambdas[index]
        api = world.connector(provider).api(
            tenant_id, access_token=tokens.access_token, refresh_access_token=tokens.force_refresh
        )
        return len(world.connector(provider).accounts(api))

    results = run_concurrently(20, read_accounts)

    # Then all of them succeed and the provider saw exactly one refresh
    failures = [result for result in results if not isinstance(result, int)]
    assert not failures, failures
    assert all(isinstance(result, int) and result > 0 for result in results)
    assert token_calls(world, provider) - before == 1
    # And the stored tokens are the new ones, good for a while
    stored = world.stored_tokens(connection_id)
    assert stored is not None
    assert stored.access_token_expires_at > clock()
    assert world.connection(connection_id).status is ConnectionStatus.CONNECTED


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_fresh_token_is_used_without_asking_the_provider(world: ConnectWorld, provider: ProviderName) -> None:
    connection_id = world.connect(provider, f"biz-fresh-{provider}")
    before = token_calls(world, provider)

    token = world.a_lambda(connection_id, provider, world.service_clock()).access_token()

    stored = world.stored_tokens(connection_id)
    assert stored is not None and token == stored.access_token.get_secret_value()
    assert token_calls(world, provider) == before


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("seconds_before_expiry", [30, 59])
def test_a_token_about_to_expire_is_refreshed_first(
    world: ConnectWorld, provider: ProviderName, seconds_before_expiry: int
) -> None:
    # Given a token that expires within the refresh margin (60 s)
    connection_id = world.connect(provider, f"biz-expiring-{provider}")
    clock = world.service_clock()
    stored = world.stored_tokens(connection_id)
    assert stored is not None
    world.fleet.clock.advance((stored.access_token_expires_at - clock()).total_seconds() - seconds_before_expiry)
    before = token_calls(world, provider)

    # When a Lambda needs it
    token = world.a_lambda(connection_id, provider, clock).access_token()

    # Then it was refreshed before use
    assert token_calls(world, provider) - before == 1
    assert token != stored.access_token.get_secret_value()


def test_a_lost_refresh_answer_does_not_kill_a_xero_connection(world: ConnectWorld) -> None:
    # Given a Xero connection whose access token expired, and a token endpoint that rotates the refresh
    # token and then drops the connection before answering
    connection_id = world.connect("xero", "biz-dropped-refresh")
    clock = world.service_clock()
    world.fleet.clock.advance(ALL_ACCESS_TOKENS_EXPIRED)
    world.fleet.xero.faults.drop_response_after_commit("token")
    before = token_calls(world, "xero")

    # When a Lambda needs a token
    token = world.a_lambda(connection_id, "xero", clock).access_token()

    # Then it retried with the refresh token it holds, which Xero honours within its 30-minute grace
    assert token
    assert token_calls(world, "xero") - before == 2
    assert world.connection(connection_id).status is ConnectionStatus.CONNECTED

    # And what was stored is Xero's live refresh token: long after the grace it still refreshes
    world.fleet.clock.advance(ALL_ACCESS_TOKENS_EXPIRED)
    before = token_calls(world, "xero")
    assert world.a_lambda(connection_id, "xero", clock).access_token() != token
    assert token_calls(world, "xero") - before == 1
    assert world.connection(connection_id).status is ConnectionStatus.CONNECTED


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_revoked_grant_moves_the_connection_to_reauthorization_once(
    world: ConnectWorld, provider: ProviderName
) -> None:
    # Given the user removed our app in the accounting software, and the access token expired
    connection_id = world.connect(provider, f"biz-revoked-{provider}")
    connection = world.connection(connection_id)
    clock = world.service_clock()
    revoke_at_provider(world, provider, connection.tenant_id or "")
    world.fleet.clock.advance(ALL_ACCESS_TOKENS_EXPIRED)
    before = token_calls(world, provider)

    # When ten Lambdas need a token, then ten more later
    lambdas = [world.a_lambda(connection_id, provider, clock) for _ in range(20)]
    first = run_concurrently(10, lambda index: lambdas[index].access_token())
    second = run_concurrently(10, lambda index: lambdas[10 + index].access_token())

    # Then every caller is told to reauthorise, the provider was asked once, and the connection says so
    assert all(isinstance(result, ReauthorizationRequired) for result in first + second), first + second
    assert token_calls(world, provider) - before == 1
    after = world.connection(connection_id)
    assert after.status is ConnectionStatus.REAUTHORIZATION_REQUIRED
    assert after.version == connection.version + 1  # marked once
    shown = world.call("GET", f"/connections/{connection_id}", f"biz-revoked-{provider}").json()
    assert shown["status"] == "reauthorization_required"
    assert shown["attention"] == ["The accounting software refused our authorisation: reconnect."]


def test_a_lost_sage_refresh_answer_ends_in_reauthorization_since_sage_keeps_no_previous_token(
    world: ConnectWorld,
) -> None:
    # Given a Sage connection whose access token expired, and a refresh answer lost after Sage rotated
    connection_id = world.connect("sage", "biz-dropped-sage-refresh")
    clock = world.service_clock()
    world.fleet.clock.advance(ALL_ACCESS_TOKENS_EXPIRED)
    world.fleet.sage.faults.drop_response_after_commit("token")
    before = token_calls(world, "sage")

    # When a Lambda needs a token
    with pytest.raises(ReauthorizationRequired):
        world.a_lambda(connection_id, "sage", clock).access_token()

    # Then the one retry met invalid_grant (the old refresh token died with the rotation), and the
    # connection asks the user to reconnect instead of failing on every call
    assert token_calls(world, "sage") - before == 2
    assert world.connection(connection_id).status is ConnectionStatus.REAUTHORIZATION_REQUIRED
