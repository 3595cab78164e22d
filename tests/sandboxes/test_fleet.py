"""The sandbox fleet: three providers on loopback, ready for the service's OAuth and webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from local.sandboxes.fleet import PROVIDERS, ProviderName, SandboxFleet, gateway_redirect_uris

GATEWAY = "http://127.0.0.1:3000"
CALLBACKS = gateway_redirect_uris(GATEWAY)
# Nothing listens on the discard port, so webhook deliveries fail fast and are still recorded.
UNREACHABLE_WEBHOOKS = "http://127.0.0.1:9/webhooks/{provider}"
REPO_ROOT = Path(__file__).resolve().parents[2]
# What the service asks each provider for (payedge_connect.providers.*).
AUTHORIZE: dict[ProviderName, tuple[str, dict[str, str]]] = {
    "quickbooks": ("/connect/oauth2", {"scope": "com.intuit.quickbooks.accounting"}),
    "xero": ("/identity/connect/authorize", {"scope": "openid profile email offline_access accounting.transactions"}),
    "sage": ("/oauth2/auth/central", {"scope": "full_access", "filter": "apiv3.1"}),
}


@pytest.fixture
def fleet() -> Iterator[SandboxFleet]:
    with SandboxFleet(redirect_uris=CALLBACKS, webhook_url=UNREACHABLE_WEBHOOKS) as started:
        yield started


@pytest.fixture
def approving_fleet() -> Iterator[SandboxFleet]:
    with SandboxFleet(redirect_uris=CALLBACKS, auto_approve=True) as started:
        yield started


def authorize(fleet: SandboxFleet, provider: ProviderName, state: str = "state-123") -> requests.Response:
    """The browser's first request: the provider's authorization endpoint, redirects not followed."""
    path, extra = AUTHORIZE[provider]
    params = {
        "client_id": fleet.credentials[provider].client_id,
        "redirect_uri": CALLBACKS[provider][0],
        "response_type": "code",
        "state": state,
        **extra,
    }
    return requests.get(f"{fleet.base_urls[provider]}{path}", params=params, allow_redirects=False, timeout=5)


def callback_params(response: requests.Response) -> dict[str, str]:
    """The query of the redirect to the service's callback, read from Location, never requested."""
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.split("?")[0] == CALLBACKS[_provider_of(location)][0]
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def _provider_of(callback_url: str) -> ProviderName:
    return next(provider for provider in PROVIDERS if f"/oauth/{provider}/" in callback_url)


def exchange_code(fleet: SandboxFleet, provider: ProviderName, code: str) -> requests.Response:
    """The service's code exchange, with each provider's own client authentication."""
    app = fleet.credentials[provider]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACKS[provider][0]}
    base = fleet.base_urls[provider]
    if provider == "quickbooks":
        url, auth = f"{base}/oauth2/v1/tokens/bearer", (app.client_id, app.client_secret)
    elif provider == "xero":
        url, auth = f"{base}/connect/token", (app.client_id, app.client_secret)
    else:
        # Sage takes the client credentials in the form, not in a Basic header.
        url, auth = f"{base}/token", None
        form |= {"client_id": app.client_id, "client_secret": app.client_secret}
    return requests.post(url, data=form, auth=auth, headers={"Accept": "application/json"}, timeout=5)


def authorise_xero(fleet: SandboxFleet) -> list[str]:
    """Run Xero's consent and code exchange; the organisations this one consent connected."""
    code = callback_params(authorize(fleet, "xero"))["code"]
    access_token = exchange_code(fleet, "xero", code).json()["access_token"]
    # The access token's authentication_event_id picks this consent's connections out of all of them.
    claims = json.loads(base64.urlsafe_b64decode(access_token.split(".")[1] + "=="))
    connections = requests.get(
        f"{fleet.base_urls['xero']}/connections",
        params={"authEventId": claims["authentication_event_id"]},
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=5,
    )
    assert connections.status_code == 200, connections.text
    return [connection["tenantId"] for connection in connections.json()]


# ---- in-process fleet ------------------------------------------------------------------------------


def test_fleet_serves_each_provider_on_loopback_and_gives_the_service_its_base_urls(fleet: SandboxFleet) -> None:
    # Given a started fleet
    # When the service reads its PROVIDER_BASE_URLS setting from the fleet
    setting = json.loads(fleet.provider_base_urls_json())

    # Then there is one loopback URL per provider, each a different server
    assert setting == fleet.base_urls
    assert list(setting) == ["quickbooks", "xero", "sage"]
    assert all(url.startswith("http://127.0.0.1:") for url in setting.values())
    assert len(set(setting.values())) == 3
    assert fleet.credentials["quickbooks"].client_id == "payedge-local-quickbooks"


def test_xero_has_two_organisations_and_the_others_one_tenant_each(fleet: SandboxFleet) -> None:
    # Given a fleet with the default tenants
    # Then Xero offers two organisations (so the service's organisation choice is exercised)
    assert len(fleet.tenant_ids["xero"]) == 2
    assert fleet.xero.tenant_ids() == fleet.tenant_ids["xero"]
    names = {fleet.xero.organisation(tenant).name for tenant in fleet.tenant_ids["xero"]}
    assert len(names) == 2
    # And QuickBooks and Sage one tenant each
    assert fleet.quickbooks.realm_ids() == fleet.tenant_ids["quickbooks"]
    assert len(fleet.tenant_ids["quickbooks"]) == 1
    assert len(fleet.tenant_ids["sage"]) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_without_auto_approve_the_authorization_endpoint_shows_a_consent_page(
    fleet: SandboxFleet, provider: ProviderName
) -> None:
    # Given a fleet that waits for the user's consent
    # When the browser opens the provider's authorization endpoint with the registered app
    response = authorize(fleet, provider)

    # Then the provider shows its consent page naming the app's tenants to choose from
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/html")
    assert 'name="decision" value="approve"' in response.text
    assert 'name="tenant"' in response.text
    if provider == "xero":
        for tenant in fleet.tenant_ids["xero"]:
            assert f'type="checkbox" name="tenant" value="{tenant}"' in response.text


@pytest.mark.parametrize("provider", PROVIDERS)
def test_with_auto_approve_the_redirect_carries_a_code_the_app_credentials_exchange_for_tokens(
    approving_fleet: SandboxFleet, provider: ProviderName
) -> None:
    # Given a fleet that approves without a page
    # When the browser opens the authorization endpoint
    params = callback_params(authorize(approving_fleet, provider, state="state-xyz"))

    # Then it is sent to the service's callback with a code and the same state
    assert params["state"] == "state-xyz"
    assert params["code"]
    if provider == "quickbooks":
        assert params["realmId"] == approving_fleet.tenant_ids["quickbooks"][0]

    # And the fleet's app credentials exchange that code for tokens at the token endpoint
    tokens = exchange_code(approving_fleet, provider, params["code"])
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["access_token"]
    assert body["refresh_token"]


def test_xero_auto_approve_connects_both_organisations_unless_the_test_chooses(approving_fleet: SandboxFleet) -> None:
    first, second = approving_fleet.tenant_ids["xero"]

    # Given the default choice, When the app is authorised, Then both organisations are connected
    assert sorted(authorise_xero(approving_fleet)) == sorted([first, second])

    # Given the test chooses the second organisation only
    approving_fleet.approve_tenants("xero", [second])
    # When the app is authorised again, Then this consent connected only the second organisation
    assert authorise_xero(approving_fleet) == [second]


def test_choosing_a_tenant_the_provider_does_not_have_is_refused(fleet: SandboxFleet) -> None:
    # Given a fleet, When a test asks QuickBooks to approve an unknown company or two companies
    # Then it is told at once rather than seeing a confusing OAuth failure later
    with pytest.raises(ValueError, match="quickbooks tenants"):
        fleet.approve_tenants("quickbooks", ["123"])
    with pytest.raises(ValueError, match="exactly one"):
        fleet.approve_tenants("quickbooks", fleet.tenant_ids["quickbooks"] * 2)


def test_apps_registered_after_start_accept_the_gateway_callbacks() -> None:
    # Given a fleet started before the gateway's URL was known (no redirect URIs yet)
    with SandboxFleet(auto_approve=True) as fleet:
        path, extra = AUTHORIZE["sage"]
        refused = requests.get(
            f"{fleet.base_urls['sage']}{path}",
            params={"client_id": "payedge-local-sage", "redirect_uri": CALLBACKS["sage"][0], "response_type": "code"}
            | extra,
            allow_redirects=False,
            timeout=5,
        )
        assert refused.status_code == 400

        # When the apps are registered with the gateway's callbacks
        fleet.register_apps(CALLBACKS)

        # Then authorisation redirects to them
        assert callback_params(authorize(fleet, "sage"))["code"]
        assert fleet.summary()["redirect_uris"]["sage"] == CALLBACKS["sage"]


def test_webhooks_go_to_the_configured_url_signed_with_each_app_key(fleet: SandboxFleet) -> None:
    # Given QuickBooks and Xero webhooks pointed at the service, and the app connected to Xero
    realm = fleet.tenant_ids["quickbooks"][0]
    organisation = fleet.tenant_ids["xero"][0]
    fleet.xero.issue_tokens(fleet.credentials["xero"].client_id)

    # When an unpaid bill is voided in each
    qbo_bill = next(bill for bill in fleet.quickbooks.bills(realm) if bill["Balance"] == bill["TotalAmt"] != 0)
    fleet.quickbooks.void_bill(realm, qbo_bill["Id"])
    xero_bill = next(
        invoice
        for invoice in fleet.xero.invoices(organisation)
        if invoice["Status"] == "AUTHORISED" and invoice["AmountPaid"] == 0
    )
    fleet.xero.void_bill(organisation, xero_bill["InvoiceID"])
    fleet.quickbooks.wait_for_webhooks()
    fleet.xero.wait_for_webhooks()

    # Then each provider posted to its own URL, signed with the key in the fleet's app credentials
    signature_headers: dict[ProviderName, str] = {"quickbooks": "intuit-signature", "xero": "x-xero-signature"}
    for provider, header in signature_headers.items():
        deliveries = fleet.sandboxes[provider].webhook_deliveries()
        assert deliveries, provider
        key = fleet.credentials[provider].webhook_key
        assert key is not None
        for delivery in deliveries:
            assert delivery.url == UNREACHABLE_WEBHOOKS.format(provider=provider)
            expected = base64.b64encode(hmac.new(key.encode(), delivery.body, hashlib.sha256).digest()).decode()
            assert delivery.headers[header] == expected
    assert fleet.credentials["sage"].webhook_key is None  # Sage has no webhooks


def test_the_same_seed_gives_the_same_tenants_and_another_seed_other_ones() -> None:
    # Given two fleets built with the same seed and one with another (not started: seeding needs no server)
    first, again, other = SandboxFleet(seed=5), SandboxFleet(seed=5), SandboxFleet(seed=6)

    # Then the same seed repeats tenants and books, another seed does not
    assert first.tenant_ids == again.tenant_ids
    assert first.quickbooks.bills(first.tenant_ids["quickbooks"][0]) == again.quickbooks.bills(
        again.tenant_ids["quickbooks"][0]
    )
    assert first.tenant_ids != other.tenant_ids


def test_ledger_size_and_tenant_counts_follow_the_settings() -> None:
    # Given a fleet asked for 3 bills per tenant and three QuickBooks companies
    fleet = SandboxFleet(bills_per_tenant=3, tenants={"quickbooks": 3})

    # Then each company holds 3 bills and Xero keeps its default two organisations
    assert [len(fleet.quickbooks.bills(realm)) for realm in fleet.tenant_ids["quickbooks"]] == [3, 3, 3]
    assert len(fleet.tenant_ids["xero"]) == 2


# ---- as a process ------------------------------------------------------------------------------


def _read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def test_the_process_prints_its_json_line_serves_and_stops_on_sigterm() -> None:
    # Given the fleet started as a process, as `make dev` does
    process = subprocess.Popen(
        [sys.executable, "-m", "local.sandboxes", "--auto-approve", "--gateway-url", GATEWAY, "--bills", "4"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True)
    reader.start()
    try:
        # When its JSON line is read
        line = ""
        while not line.startswith("{"):
            line = lines.get(timeout=10)
        summary = json.loads(line)

        # Then it names every provider's base URL, app and tenants, and the URLs answer
        assert set(summary["base_urls"]) == set(PROVIDERS)
        assert summary["apps"]["xero"]["client_id"] == "payedge-local-xero"
        assert len(summary["tenants"]["xero"]) == 2
        path, extra = AUTHORIZE["quickbooks"]
        response = requests.get(
            f"{summary['base_urls']['quickbooks']}{path}",
            params={
                "client_id": summary["apps"]["quickbooks"]["client_id"],
                "redirect_uri": summary["redirect_uris"]["quickbooks"][0],
                "response_type": "code",
                "state": "s",
            }
            | extra,
            allow_redirects=False,
            timeout=5,
        )
        assert response.status_code == 302
        assert "code=" in response.headers["Location"]

        # And on SIGTERM it stops cleanly
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        reader.join(timeout=5)  # the last lines may still be on their way through the pipe
        rest = []
        while not lines.empty():
            rest.append(lines.get())
        assert "sandboxes stopped\n" in rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
