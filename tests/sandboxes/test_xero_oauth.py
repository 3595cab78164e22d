"""Xero Identity as the sandbox serves it: consent for several organisations, codes, PKCE, token
rotation with its 30-minute grace, revocation, /connections and the 401/403 answers of the API."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
import requests

from local.sandboxes.generator import generate_ledger
from local.sandboxes.xero import XeroSandbox

CLIENT_ID, SECRET, REDIRECT = "payedge-xero", "xero-s3cret", "http://127.0.0.1:9/oauth/xero/callback"
SCOPE = "openid profile email offline_access accounting.transactions accounting.contacts.read accounting.settings.read"
DAY = 24 * 3600


@pytest.fixture
def sandbox() -> Iterator[XeroSandbox]:
    sandbox = XeroSandbox(seed=5)
    sandbox.register_app(CLIENT_ID, SECRET, [REDIRECT], name="PayEdge Connect")
    now = sandbox.clock.now()
    sandbox.add_tenant(generate_ledger(seed=5, bills=4, as_of=now), name="Maple Books Ltd.")
    sandbox.add_tenant(generate_ledger(seed=6, bills=4, as_of=now), name="Cedar Cafe Inc.")
    sandbox.add_tenant(generate_ledger(seed=7, bills=4, as_of=now), name="Birch Bakery Ltd.")
    with sandbox:
        yield sandbox


def authorize_params(**extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": SCOPE,
        "state": "st-42",
        **extra,
    }


def redirect_query(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return {key: values[0] for key, values in parse_qs(urlparse(location).query).items()}


def auto_code(sandbox: XeroSandbox, **extra: str) -> str:
    sandbox.auto_approve = True
    response = requests.get(
        f"{sandbox.base_url}/identity/connect/authorize", params=authorize_params(**extra), allow_redirects=False
    )
    return redirect_query(response)["code"]


def token_call(sandbox: XeroSandbox, data: dict[str, str], auth: tuple[str, str] | None = (CLIENT_ID, SECRET)):
    return requests.post(f"{sandbox.base_url}/connect/token", data=data, auth=auth, timeout=10)


def exchange(sandbox: XeroSandbox, code: str, **extra: str) -> requests.Response:
    return token_call(sandbox, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **extra})


def refresh(sandbox: XeroSandbox, refresh_token: str) -> requests.Response:
    return token_call(sandbox, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def connections(sandbox: XeroSandbox, access_token: str, **params: str) -> requests.Response:
    return requests.get(
        f"{sandbox.base_url}/connections", headers={"Authorization": f"Bearer {access_token}"}, params=params
    )


def organisation(sandbox: XeroSandbox, access_token: str, tenant: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
    if tenant is not None:
        headers["xero-tenant-id"] = tenant
    return requests.get(f"{sandbox.base_url}/api.xro/2.0/Organisation", headers=headers)


class _Form(HTMLParser):
    """The consent form's hidden fields and tenant checkboxes."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: dict[str, str] = {}
        self.tenants: list[tuple[str, str]] = []  # (input type, value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "input" and values.get("type") == "hidden":
            self.hidden[values["name"]] = values["value"]
        if tag == "input" and values.get("name") == "tenant":
            self.tenants.append((values["type"], values["value"]))


def consent_form(sandbox: XeroSandbox, **extra: str) -> _Form:
    page = requests.get(f"{sandbox.base_url}/identity/connect/authorize", params=authorize_params(**extra))
    assert page.status_code == 200
    form = _Form()
    form.feed(page.text)
    return form


# ---- consent ------------------------------------------------------------------------------------


def test_consent_page_lets_the_user_tick_several_organisations(sandbox: XeroSandbox) -> None:
    # Given a user holding three organisations
    # When the app sends them to the authorization endpoint
    form = consent_form(sandbox)

    # Then every organisation is offered as a checkbox and the request rides along in hidden fields
    assert [kind for kind, _ in form.tenants] == ["checkbox"] * 3
    assert {value for _, value in form.tenants} == set(sandbox.tenant_ids())
    assert form.hidden["state"] == "st-42"
    assert form.hidden["redirect_uri"] == REDIRECT


def test_approving_two_organisations_connects_exactly_those(sandbox: XeroSandbox) -> None:
    # Given the consent form
    form = consent_form(sandbox)
    first, second, third = sandbox.tenant_ids()

    # When the user ticks two organisations and approves
    response = requests.post(
        f"{sandbox.base_url}/identity/connect/authorize",
        data={**form.hidden, "decision": "approve", "tenant": [first, third]},
        allow_redirects=False,
    )
    query = redirect_query(response)
    tokens = exchange(sandbox, query["code"]).json()

    # Then the redirect carries the code and state, and /connections lists the two organisations
    assert query["state"] == "st-42"
    listed = connections(sandbox, tokens["access_token"]).json()
    assert {c["tenantId"] for c in listed} == {first, third}
    assert second not in {c["tenantId"] for c in listed}


def test_denying_consent_redirects_with_access_denied(sandbox: XeroSandbox) -> None:
    form = consent_form(sandbox)

    response = requests.post(
        f"{sandbox.base_url}/identity/connect/authorize",
        data={**form.hidden, "decision": "deny"},
        allow_redirects=False,
    )

    assert redirect_query(response) == {"error": "access_denied", "state": "st-42"}


def test_auto_approve_connects_the_configured_organisations_only(sandbox: XeroSandbox) -> None:
    # Given auto-approval limited to the second organisation
    second = sandbox.tenant_ids()[1]
    sandbox.auto_approve_tenants = [second]

    # When the app runs the flow
    tokens = exchange(sandbox, auto_code(sandbox)).json()

    # Then only that organisation is connected
    assert [c["tenantId"] for c in connections(sandbox, tokens["access_token"]).json()] == [second]


def test_unknown_scope_redirects_with_invalid_scope(sandbox: XeroSandbox) -> None:
    sandbox.auto_approve = True
    response = requests.get(
        f"{sandbox.base_url}/identity/connect/authorize",
        params=authorize_params(scope="accounting.everything"),
        allow_redirects=False,
    )
    assert redirect_query(response)["error"] == "invalid_scope"


def test_unregistered_redirect_uri_is_refused_without_redirecting(sandbox: XeroSandbox) -> None:
    response = requests.get(
        f"{sandbox.base_url}/identity/connect/authorize",
        params=authorize_params(redirect_uri="https://evil.example/cb"),
        allow_redirects=False,
    )
    assert response.status_code == 400
    assert "Location" not in response.headers


# ---- token endpoint -----------------------------------------------------------------------------


def test_code_exchange_returns_xero_token_set_with_a_30_minute_jwt(sandbox: XeroSandbox) -> None:
    # When the app exchanges a fresh code with HTTP Basic client authentication
    response = exchange(sandbox, auto_code(sandbox))

    # Then it gets Xero's token set and an RS256 access token carrying Xero's claims
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"id_token", "access_token", "expires_in", "token_type", "refresh_token", "scope"}
    assert (body["expires_in"], body["token_type"]) == (1800, "Bearer")
    header = jwt.get_unverified_header(body["access_token"])
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert header["alg"] == "RS256"
    assert claims["exp"] - claims["nbf"] == 1800
    assert claims["client_id"] == CLIENT_ID
    assert {"authentication_event_id", "xero_userid", "jti", "sub", "global_session_id"} <= set(claims)
    assert claims["scope"] == SCOPE.split()


def test_access_token_signature_verifies_with_the_published_jwks(sandbox: XeroSandbox) -> None:
    token = exchange(sandbox, auto_code(sandbox)).json()["access_token"]
    keys = requests.get(f"{sandbox.base_url}/.well-known/openid-configuration/jwks").json()["keys"]

    public_key = jwt.PyJWK(keys[0]).key
    claims = jwt.decode(
        token,
        public_key,
        algorithms=["RS256"],
        audience="https://identity.xero.com/resources",
        options={"verify_exp": False},
    )
    assert claims["iss"] == "https://identity.xero.com"


def test_reused_code_is_rejected(sandbox: XeroSandbox) -> None:
    code = auto_code(sandbox)
    assert exchange(sandbox, code).status_code == 200

    second = exchange(sandbox, code)

    assert (second.status_code, second.json()) == (400, {"error": "invalid_grant"})


def test_code_for_another_redirect_uri_is_rejected(sandbox: XeroSandbox) -> None:
    code = auto_code(sandbox)
    response = token_call(
        sandbox, {"grant_type": "authorization_code", "code": code, "redirect_uri": "http://127.0.0.1:9/other"}
    )
    assert (response.status_code, response.json()) == (400, {"error": "invalid_grant"})


def test_wrong_client_secret_is_invalid_client(sandbox: XeroSandbox) -> None:
    response = token_call(
        sandbox,
        {"grant_type": "authorization_code", "code": auto_code(sandbox), "redirect_uri": REDIRECT},
        auth=(CLIENT_ID, "not-the-secret"),
    )
    assert (response.status_code, response.json()) == (400, {"error": "invalid_client"})


def test_expired_code_is_rejected(sandbox: XeroSandbox) -> None:
    code = auto_code(sandbox)
    sandbox.clock.advance(5 * 60 + 1)
    assert exchange(sandbox, code).json() == {"error": "invalid_grant"}


def test_no_refresh_token_without_offline_access(sandbox: XeroSandbox) -> None:
    code = auto_code(sandbox, scope="openid accounting.transactions")
    body = exchange(sandbox, code).json()
    assert "refresh_token" not in body
    assert "access_token" in body


def test_unsupported_grant_type_is_refused(sandbox: XeroSandbox) -> None:
    response = token_call(sandbox, {"grant_type": "client_credentials"})
    assert (response.status_code, response.json()) == (400, {"error": "unsupported_grant_type"})


# ---- PKCE ---------------------------------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    verifier = "v" * 20 + "-verifier-of-more-than-43-chars"
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def test_pkce_code_needs_the_matching_verifier(sandbox: XeroSandbox) -> None:
    verifier, challenge = pkce_pair()
    code = auto_code(sandbox, code_challenge=challenge, code_challenge_method="S256")

    wrong = exchange(sandbox, code, code_verifier="w" * 50)
    right_but_spent = exchange(sandbox, code, code_verifier=verifier)

    # A failed attempt consumes the code (single use), so even the right verifier fails afterwards.
    assert wrong.json() == {"error": "invalid_grant"}
    assert right_but_spent.json() == {"error": "invalid_grant"}
    fresh = auto_code(sandbox, code_challenge=challenge, code_challenge_method="S256")
    assert exchange(sandbox, fresh, code_verifier=verifier).status_code == 200


def test_pkce_app_without_secret_exchanges_with_client_id_and_verifier(sandbox: XeroSandbox) -> None:
    # Given a PKCE app (no client secret)
    sandbox.register_app("native-app", None, [REDIRECT])
    verifier, challenge = pkce_pair()
    code = auto_code(sandbox, client_id="native-app", code_challenge=challenge, code_challenge_method="S256")

    # When it exchanges the code with its client_id and verifier only
    response = token_call(
        sandbox,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": "native-app",
            "code_verifier": verifier,
        },
        auth=None,
    )

    # Then it gets tokens
    assert response.status_code == 200
    assert "access_token" in response.json()


def test_pkce_plain_method_is_not_accepted(sandbox: XeroSandbox) -> None:
    sandbox.auto_approve = True
    response = requests.get(
        f"{sandbox.base_url}/identity/connect/authorize",
        params=authorize_params(code_challenge="x" * 43, code_challenge_method="plain"),
        allow_redirects=False,
    )
    assert redirect_query(response)["error"] == "invalid_request"


# ---- refresh rotation ---------------------------------------------------------------------------


def test_every_refresh_rotates_the_refresh_token(sandbox: XeroSandbox) -> None:
    first = exchange(sandbox, auto_code(sandbox)).json()

    second = refresh(sandbox, first["refresh_token"]).json()
    third = refresh(sandbox, second["refresh_token"]).json()

    assert len({first["refresh_token"], second["refresh_token"], third["refresh_token"]}) == 3
    assert third["expires_in"] == 1800


def test_previous_refresh_token_works_during_the_30_minute_grace(sandbox: XeroSandbox) -> None:
    # Given a refresh whose response the app lost
    old = exchange(sandbox, auto_code(sandbox)).json()["refresh_token"]
    lost = refresh(sandbox, old).json()
    sandbox.clock.advance(29 * 60)

    # When it retries with the old refresh token inside the grace
    retried = refresh(sandbox, old)

    # Then it gets the same rotated refresh token (no fork) and a usable access token
    assert retried.status_code == 200
    assert retried.json()["refresh_token"] == lost["refresh_token"]
    assert connections(sandbox, retried.json()["access_token"]).status_code == 200


def test_previous_refresh_token_is_invalid_grant_after_the_grace(sandbox: XeroSandbox) -> None:
    old = exchange(sandbox, auto_code(sandbox)).json()["refresh_token"]
    newest = refresh(sandbox, old).json()["refresh_token"]
    sandbox.clock.advance(30 * 60 + 1)

    stale = refresh(sandbox, old)

    assert (stale.status_code, stale.json()) == (400, {"error": "invalid_grant"})
    assert refresh(sandbox, newest).status_code == 200


def test_refresh_token_expires_after_60_days_unused(sandbox: XeroSandbox) -> None:
    tokens = exchange(sandbox, auto_code(sandbox)).json()
    sandbox.clock.advance(60 * DAY)
    assert refresh(sandbox, tokens["refresh_token"]).json() == {"error": "invalid_grant"}


def test_refresh_token_used_within_60_days_keeps_the_connection_alive(sandbox: XeroSandbox) -> None:
    token = exchange(sandbox, auto_code(sandbox)).json()["refresh_token"]
    for _ in range(3):
        sandbox.clock.advance(50 * DAY)
        token = refresh(sandbox, token).json()["refresh_token"]
    assert refresh(sandbox, token).status_code == 200


# ---- access tokens at the API -----------------------------------------------------------------------


def test_expired_access_token_gets_xeros_401(sandbox: XeroSandbox) -> None:
    tokens = exchange(sandbox, auto_code(sandbox)).json()
    tenant = sandbox.tenant_ids()[0]
    sandbox.clock.advance(1800)

    response = organisation(sandbox, tokens["access_token"], tenant)

    body = response.json()
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (body["Title"], body["Status"]) == ("Unauthorized", 401)
    assert body["Detail"].startswith("TokenExpired: token expired at ")


def test_expire_tokens_control_forces_a_refresh(sandbox: XeroSandbox) -> None:
    # Given a working access token
    tokens = exchange(sandbox, auto_code(sandbox)).json()
    tenant = sandbox.tenant_ids()[0]
    assert organisation(sandbox, tokens["access_token"], tenant).status_code == 200

    # When the sandbox expires the tokens issued so far
    sandbox.expire_tokens(tenant)

    # Then the old access token is refused but a refreshed one works at once
    assert organisation(sandbox, tokens["access_token"], tenant).status_code == 401
    fresh = refresh(sandbox, tokens["refresh_token"]).json()["access_token"]
    assert organisation(sandbox, fresh, tenant).status_code == 200


def test_expire_tokens_with_refresh_tokens_needs_reauthorisation(sandbox: XeroSandbox) -> None:
    tokens = exchange(sandbox, auto_code(sandbox)).json()
    sandbox.expire_tokens(refresh_tokens=True)
    assert refresh(sandbox, tokens["refresh_token"]).json() == {"error": "invalid_grant"}


def test_missing_tenant_header_is_forbidden(sandbox: XeroSandbox) -> None:
    token = exchange(sandbox, auto_code(sandbox)).json()["access_token"]

    response = organisation(sandbox, token, None)

    body = response.json()
    assert response.status_code == 403
    assert (body["Title"], body["Status"], body["Detail"]) == ("Forbidden", 403, "AuthenticationUnsuccessful")


def test_tenant_not_connected_by_this_app_is_forbidden(sandbox: XeroSandbox) -> None:
    first, second, _ = sandbox.tenant_ids()
    sandbox.auto_approve_tenants = [first]
    token = exchange(sandbox, auto_code(sandbox)).json()["access_token"]

    assert organisation(sandbox, token, first).status_code == 200
    assert organisation(sandbox, token, second).status_code == 403


def test_token_without_the_endpoints_scope_is_unauthorised(sandbox: XeroSandbox) -> None:
    # Given a token with contacts access only
    token = exchange(sandbox, auto_code(sandbox, scope="offline_access accounting.contacts.read")).json()
    tenant = sandbox.tenant_ids()[0]

    # When it reads bills
    response = requests.get(
        f"{sandbox.base_url}/api.xro/2.0/Invoices",
        headers={"Authorization": f"Bearer {token['access_token']}", "xero-tenant-id": tenant},
    )

    # Then Xero refuses it for missing authorisation
    assert response.status_code == 401
    assert response.json()["Detail"] == "AuthorizationUnsuccessful"


# ---- connections and revocation -------------------------------------------------------------------


def test_connections_filter_by_the_tokens_auth_event(sandbox: XeroSandbox) -> None:
    # Given two separate authorisations, each connecting a different organisation
    first, second, _ = sandbox.tenant_ids()
    sandbox.auto_approve_tenants = [first]
    earlier = exchange(sandbox, auto_code(sandbox)).json()["access_token"]
    sandbox.auto_approve_tenants = [second]
    later = exchange(sandbox, auto_code(sandbox)).json()["access_token"]
    event = jwt.decode(later, options={"verify_signature": False})["authentication_event_id"]

    # When the app lists connections, unfiltered and filtered by the latest event
    everything = connections(sandbox, later).json()
    this_flow = connections(sandbox, later, authEventId=event).json()

    # Then the user's connections include both, and the filter keeps the one just made
    assert {c["tenantId"] for c in everything} == {first, second}
    assert [c["tenantId"] for c in this_flow] == [second]
    assert this_flow[0]["authEventId"] == event
    assert organisation(sandbox, earlier, first).status_code == 200


def test_deleting_a_connection_disconnects_that_organisation_only(sandbox: XeroSandbox) -> None:
    first, second, _ = sandbox.tenant_ids()
    sandbox.auto_approve_tenants = [first, second]
    token = exchange(sandbox, auto_code(sandbox)).json()["access_token"]
    listed = {c["tenantId"]: c["id"] for c in connections(sandbox, token).json()}

    deleted = requests.delete(
        f"{sandbox.base_url}/connections/{listed[first]}", headers={"Authorization": f"Bearer {token}"}
    )

    assert deleted.status_code == 204
    assert organisation(sandbox, token, first).status_code == 403
    assert organisation(sandbox, token, second).status_code == 200


def test_revoking_the_refresh_token_removes_the_grant(sandbox: XeroSandbox) -> None:
    # Given a connected app
    tokens = exchange(sandbox, auto_code(sandbox)).json()
    tenant = sandbox.tenant_ids()[0]

    # When it revokes its refresh token
    response = requests.post(
        f"{sandbox.base_url}/connect/revocation", data={"token": tokens["refresh_token"]}, auth=(CLIENT_ID, SECRET)
    )

    # Then the connections are gone, the access token is dead and refreshing is invalid_grant
    assert response.status_code == 200
    assert refresh(sandbox, tokens["refresh_token"]).json() == {"error": "invalid_grant"}
    assert organisation(sandbox, tokens["access_token"], tenant).status_code == 401
    assert sandbox.connections() == []


def test_revoke_grant_control_is_seen_as_invalid_grant_and_401(sandbox: XeroSandbox) -> None:
    tokens = exchange(sandbox, auto_code(sandbox)).json()
    tenant = sandbox.tenant_ids()[0]

    revoked = sandbox.revoke_grant(tenant)

    assert revoked == 1
    assert organisation(sandbox, tokens["access_token"], tenant).status_code == 401
    assert refresh(sandbox, tokens["refresh_token"]).json() == {"error": "invalid_grant"}


def test_admin_surface_revokes_and_reports_over_http(sandbox: XeroSandbox) -> None:
    tokens = exchange(sandbox, auto_code(sandbox)).json()

    answer: dict[str, Any] = requests.post(f"{sandbox.base_url}/_admin/revoke_grant", json={}).json()

    assert answer == {"revoked": 1}
    assert refresh(sandbox, tokens["refresh_token"]).json() == {"error": "invalid_grant"}
