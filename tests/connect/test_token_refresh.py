"""Tokens that never die by our hand: one refresh for many callers, revoked grants handled once."""

import threading

import pytest

from payedge_connect.models import ConnectionStatus
from payedge_connect.tokens.refresh import ConnectionTokens, ReauthorizationRequired

from .conftest import QuickBooksWorld


def a_lambda(world: QuickBooksWorld) -> ConnectionTokens:
    """What one Lambda invocation builds: its own clients, sharing only AWS and the provider."""
    return ConnectionTokens(
        world.connection.connection_id,
        oauth=world.oauth,
        vault=world.vault(),
        store=world.store(),
        clock=world.sandbox.clock.now,
    )


def run_concurrently(count: int, work) -> list[object]:
    results: list[object] = [None] * count
    barrier = threading.Barrier(count)

    def worker(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work()
        except Exception as error:  # the test inspects every outcome
            results[index] = error

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_twenty_concurrent_users_of_an_expired_token_cause_one_refresh(quickbooks: QuickBooksWorld) -> None:
    # Given a connection whose access token has expired at the provider
    quickbooks.sandbox.clock.advance(3601)
    token_calls_before = quickbooks.sandbox.requests.count("token")

    # When 20 Lambdas each read the company's accounts at the same moment
    def read_accounts() -> int:
        tokens = a_lambda(quickbooks)
        api = quickbooks.connector.api(
            quickbooks.connection.tenant_id or "",
            access_token=tokens.access_token,
            refresh_access_token=tokens.force_refresh,
        )
        return len(quickbooks.connector.accounts(api))

    results = run_concurrently(20, read_accounts)

    # Then all of them succeed and the provider saw exactly one refresh
    failures = [result for result in results if not isinstance(result, int)]
    assert not failures and all(isinstance(result, int) and result > 0 for result in results), failures
    assert quickbooks.sandbox.requests.count("token") - token_calls_before == 1
    stored = quickbooks.vault().load(quickbooks.connection.connection_id, fresh=True)
    assert stored is not None
    assert stored.access_token_expires_at > quickbooks.sandbox.clock.now()


def test_a_revoked_grant_moves_the_connection_to_reauthorization_once(quickbooks: QuickBooksWorld) -> None:
    # Given the user revoked our app in QuickBooks and the access token expired
    quickbooks.sandbox.revoke_grant(quickbooks.connection.tenant_id or "")
    quickbooks.sandbox.clock.advance(3601)
    token_calls_before = quickbooks.sandbox.requests.count("token")

    # When ten Lambdas need a token, then ten more later
    first = run_concurrently(10, lambda: a_lambda(quickbooks).access_token())
    second = run_concurrently(10, lambda: a_lambda(quickbooks).access_token())

    # Then every caller is told to reauthorise, the provider was asked once, and the connection says so
    assert all(isinstance(result, ReauthorizationRequired) for result in first + second), first + second
    assert quickbooks.sandbox.requests.count("token") - token_calls_before == 1
    connection = quickbooks.store().get_connection(quickbooks.connection.connection_id)
    assert connection is not None
    assert connection.status is ConnectionStatus.REAUTHORIZATION_REQUIRED
    assert connection.version == quickbooks.connection.version + 1  # marked once


def test_a_fresh_token_is_used_without_asking_the_provider(quickbooks: QuickBooksWorld) -> None:
    token_calls_before = quickbooks.sandbox.requests.count("token")
    assert a_lambda(quickbooks).access_token()
    assert quickbooks.sandbox.requests.count("token") == token_calls_before


@pytest.mark.parametrize("seconds_before_expiry", [30, 59])
def test_a_token_about_to_expire_is_refreshed_first(quickbooks: QuickBooksWorld, seconds_before_expiry: int) -> None:
    quickbooks.sandbox.clock.advance(3600 - seconds_before_expiry)
    token_calls_before = quickbooks.sandbox.requests.count("token")
    a_lambda(quickbooks).access_token()
    assert quickbooks.sandbox.requests.count("token") - token_calls_before == 1
