"""Intuit OAuth 2.0 as the QuickBooks sandbox serves it: consent, codes, rotation, expiry, revocation."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from local.sandboxes.generator import generate_ledger
from local.sandboxes.quickbooks import QuickBooksSandbox

CLIENT_ID, SECRET, REDIRECT = "payedge-test", "s3cret", "http://127.0.0.1:9/oauth/callback"
SCOPE = "com.intuit.quickbooks.accounting"
DAY = 24 * 3600
# Field names of Intuit's token response (intuit/QuickBooks-V3-DotNET-SDK success_token_response.json,
# intuit/oauth-jsclient test/HardExpiresTest.js).
INTUIT_TOKEN_FIELDS = {
    "token_type",
    "expires_in",
    "refresh_token",
    "x_refresh_token_expires_in",
    "access_token",
    "id_token",
    "x_refresh_token_hard_expires_in",
}


@pytest.fixture
def sandbox() -> Iterator[QuickBooksSandbox]:
    sandbox = QuickBooksSandbox(seed=3)
    sandbox.register_app(CLIENT_ID, SECRET, [REDIRECT])
    now = sandbox.clock.now()
    sandbox.add_tenant(generate_ledger(seed=3, bills=4, as_of=now), name="Maple Books Ltd.")
    sandbox.add_tenant(generate_ledger(seed=4, bills=4, as_of=now), name="Cedar Cafe Inc.")
    with sandbox:
        yield sandbox


def authorize_params(**extra: str) -> dict[str, str]:
    return {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "scope": SCOPE,
        "redirect_uri": REDIRECT,
        "state": "st-123",
        **extra,
    }


def redirect_query(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return {key: values[0] for key, values in parse_qs(urlparse(location).query).items()}


def get_code(sandbox: QuickBooksSandbox, **extra: str) -> dict[str, str]:
    sandbox.auto_approve = True
    response = requests.get(
        f"{sandbox.base_url}/connect/oauth2", params=authorize_params(**extra), allow_redirects=False, timeout=10
    )
    return redirect_query(response)


def exchange(sandbox: QuickBooksSandbox, code: str, **headers: str) -> requests.Response:
    return requests.post(
        f"{sandbox.base_url}/oauth2/v1/tokens/bearer",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        auth=(CLIENT_ID, SECRET),
        headers={"Accept": "application/json", **headers},
        timeout=10,
    )


def refresh(sandbox: QuickBooksSandbox, refresh_token: str, **headers: str) -> requests.Response:
    return requests.post(
        f"{sandbox.base_url}/oauth2/v1/tokens/bearer",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(CLIENT_ID, SECRET),
        headers={"Accept": "application/json", **headers},
        timeout=10,
    )


def connect(sandbox: QuickBooksSandbox) -> tuple[str, dict[str, Any]]:
    query = get_code(sandbox)
    response = exchange(sandbox, query["code"])
    assert response.status_code == 200
    return query["realmId"], response.json()


def api_query(sandbox: QuickBooksSandbox, realm_id: str, access_token: str) -> requests.Response:
    return requests.get(
        f"{sandbox.base_url}/v3/company/{realm_id}/query",
        params={"query": "select * from Vendor maxresults 1", "minorversion": "75"},
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        timeout=10,
    )


class _ConsentForm(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("input", "button"):
            self.inputs.append(dict(attrs))


# ---- consent ---------------------------------------------------------------------------------


def test_consent_page_offers_each_company_as_one_choice(sandbox: QuickBooksSandbox) -> None:
    # Given two companies the user can reach
    # When the app sends the user to the authorization endpoint
    response = requests.get(f"{sandbox.base_url}/connect/oauth2", params=authorize_params(), timeout=10)

    # Then a form offers the companies as radio buttons (one company per connection) and approve/deny
    assert response.status_code == 200
    form = _ConsentForm()
    form.feed(response.text)
    companies = [i for i in form.inputs if i.get("name") == "tenant"]
    assert {c["type"] for c in companies} == {"radio"}
    assert [c["value"] for c in companies] == sandbox.realm_ids()
    assert {b["value"] for b in form.inputs if b.get("name") == "decision"} == {"approve", "deny"}


def test_approving_redirects_with_code_state_and_the_chosen_realm(sandbox: QuickBooksSandbox) -> None:
    # Given the consent form for the second company
    second = sandbox.realm_ids()[1]
    form = {**authorize_params(), "tenant": second, "decision": "approve"}

    # When the user approves
    response = requests.post(f"{sandbox.base_url}/connect/oauth2", data=form, allow_redirects=False, timeout=10)

    # Then the redirect carries code, state and realmId of that company
    query = redirect_query(response)
    assert query["state"] == "st-123"
    assert query["realmId"] == second
    assert query["code"]


def test_denying_redirects_with_access_denied(sandbox: QuickBooksSandbox) -> None:
    # Given the consent form
    form = {**authorize_params(), "tenant": sandbox.realm_ids()[0], "decision": "deny"}

    # When the user cancels
    response = requests.post(f"{sandbox.base_url}/connect/oauth2", data=form, allow_redirects=False, timeout=10)

    # Then the app hears access_denied with its state, and no code
    assert redirect_query(response) == {"error": "access_denied", "state": "st-123"}


def test_auto_approve_picks_the_first_company_unless_told_which(sandbox: QuickBooksSandbox) -> None:
    # Given auto-approval
    first, second = sandbox.realm_ids()

    # When no company is chosen, then one is
    assert get_code(sandbox)["realmId"] == first
    sandbox.approve_realm = second
    assert get_code(sandbox)["realmId"] == second


def test_unregistered_redirect_uri_gets_an_error_page_not_a_redirect(sandbox: QuickBooksSandbox) -> None:
    # Given a redirect_uri the app did not register
    params = authorize_params(redirect_uri="https://evil.example/cb")

    # When the user is sent to the authorization endpoint
    response = requests.get(f"{sandbox.base_url}/connect/oauth2", params=params, allow_redirects=False, timeout=10)

    # Then nothing is sent to that address
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_unknown_scope_is_refused_with_invalid_scope(sandbox: QuickBooksSandbox) -> None:
    sandbox.auto_approve = True
    params = authorize_params(scope="com.intuit.quickbooks.everything")
    response = requests.get(f"{sandbox.base_url}/connect/oauth2", params=params, allow_redirects=False, timeout=10)
    assert redirect_query(response) == {"error": "invalid_scope", "state": "st-123"}


# ---- codes and client authentication ---------------------------------------------------------


def test_code_exchange_answers_with_intuits_token_fields(sandbox: QuickBooksSandbox) -> None:
    # Given an authorization code
    code = get_code(sandbox)["code"]

    # When the app exchanges it (client_secret_basic)
    response = exchange(sandbox, code)

    # Then the body has Intuit's field names and lifetimes, and no hard-expiry field unless asked
    body = response.json()
    assert response.status_code == 200
    assert set(body) <= INTUIT_TOKEN_FIELDS
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["x_refresh_token_expires_in"] == 8_726_400
    assert "x_refresh_token_hard_expires_in" not in body
    assert body["refresh_token"].startswith("RT1-")


def test_client_secret_post_is_accepted_and_a_wrong_secret_is_not(sandbox: QuickBooksSandbox) -> None:
    code = get_code(sandbox)["code"]
    url = f"{sandbox.base_url}/oauth2/v1/tokens/bearer"
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": CLIENT_ID}

    wrong = requests.post(url, data={**form, "client_secret": "nope"}, timeout=10)
    assert (wrong.status_code, wrong.json()) == (401, {"error": "invalid_client"})

    # The failed client authentication did not consume the code.
    right = requests.post(url, data={**form, "client_secret": SECRET}, timeout=10)
    assert right.status_code == 200


def test_reused_code_is_rejected(sandbox: QuickBooksSandbox) -> None:
    # Given a code already exchanged
    code = get_code(sandbox)["code"]
    assert exchange(sandbox, code).status_code == 200

    # When it is exchanged again
    again = exchange(sandbox, code)

    # Then Intuit's invalid_grant comes back
    assert (again.status_code, again.json()) == (400, {"error": "invalid_grant"})


def test_expired_code_is_rejected(sandbox: QuickBooksSandbox) -> None:
    code = get_code(sandbox)["code"]
    sandbox.clock.advance(301)
    assert exchange(sandbox, code).json() == {"error": "invalid_grant"}


def test_pkce_parameters_are_ignored_as_intuit_lists_no_pkce(sandbox: QuickBooksSandbox) -> None:
    # Given an authorization request with a PKCE challenge
    code = get_code(
        sandbox, code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", code_challenge_method="S256"
    )["code"]

    # When the code is exchanged without any verifier, it still works (the challenge was not kept)
    assert exchange(sandbox, code).status_code == 200


# ---- refresh tokens --------------------------------------------------------------------------


def test_refresh_within_a_day_returns_the_same_refresh_token(sandbox: QuickBooksSandbox) -> None:
    # Given tokens received an hour ago
    _, tokens = connect(sandbox)
    sandbox.clock.advance(3600)

    # When the app refreshes
    body = refresh(sandbox, tokens["refresh_token"]).json()

    # Then the access token is new, the refresh token value is the same, its expiry rolled forward
    assert body["access_token"] != tokens["access_token"]
    assert body["refresh_token"] == tokens["refresh_token"]
    assert body["x_refresh_token_expires_in"] == 8_726_400


def test_refresh_after_a_day_rotates_and_the_old_token_dies_at_once(sandbox: QuickBooksSandbox) -> None:
    # Given a refresh token older than 24 hours
    _, tokens = connect(sandbox)
    sandbox.clock.advance(DAY + 60)

    # When the app refreshes
    rotated = refresh(sandbox, tokens["refresh_token"]).json()

    # Then a new refresh token comes back and the previous one gets invalid_grant (no grace)
    assert rotated["refresh_token"] != tokens["refresh_token"]
    old = refresh(sandbox, tokens["refresh_token"])
    assert (old.status_code, old.json()["error"]) == (400, "invalid_grant")
    assert old.json()["error_description"] == "Incorrect or invalid refresh token"
    assert refresh(sandbox, rotated["refresh_token"]).status_code == 200


def test_unused_refresh_token_dies_after_its_rolling_expiry(sandbox: QuickBooksSandbox) -> None:
    _, tokens = connect(sandbox)
    sandbox.clock.advance(8_726_400)
    assert refresh(sandbox, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_hard_expiry_header_adds_the_five_year_cap(sandbox: QuickBooksSandbox) -> None:
    # Given tokens from a year ago, refreshed regularly since
    _, tokens = connect(sandbox)
    current = tokens["refresh_token"]
    for _ in range(4):
        sandbox.clock.advance(90 * DAY)
        current = refresh(sandbox, current).json()["refresh_token"]

    # When the app opts in with x-include-refresh-token-hard-expires-in: true
    body = refresh(sandbox, current, **{"x-include-refresh-token-hard-expires-in": "true"}).json()

    # Then the remaining time to the 5-year cap is reported: 5 years less the 360 days gone
    # (less the real seconds this test took, as the sandbox clock follows real time)
    assert 5 * 365 * DAY - 360 * DAY - 10 <= body["x_refresh_token_hard_expires_in"] <= 5 * 365 * DAY - 360 * DAY
    assert "x_refresh_token_hard_expires_in" not in refresh(sandbox, body["refresh_token"]).json()


def test_refresh_token_of_another_app_is_invalid_grant(sandbox: QuickBooksSandbox) -> None:
    _, tokens = connect(sandbox)
    sandbox.register_app("other-app", "other-secret", [REDIRECT])
    response = requests.post(
        f"{sandbox.base_url}/oauth2/v1/tokens/bearer",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=("other-app", "other-secret"),
        timeout=10,
    )
    assert response.json()["error"] == "invalid_grant"


# ---- access tokens and revocation ------------------------------------------------------------


def test_access_token_works_for_an_hour_then_gets_the_gateway_401(sandbox: QuickBooksSandbox) -> None:
    # Given a fresh access token
    realm_id, tokens = connect(sandbox)
    assert api_query(sandbox, realm_id, tokens["access_token"]).status_code == 200

    # When an hour has passed
    sandbox.clock.advance(3600)
    response = api_query(sandbox, realm_id, tokens["access_token"])

    # Then the API gateway answers 401 AuthenticationFailed (its own camelCase body)
    assert response.status_code == 401
    error = response.json()["fault"]["error"][0]
    assert error["message"] == "message=AuthenticationFailed; errorCode=003200; statusCode=401"
    assert error["code"] == "3200"
    assert "invalid_token" in response.headers["WWW-Authenticate"]


def test_token_only_reaches_its_own_realm(sandbox: QuickBooksSandbox) -> None:
    # Given a token for the first company
    realm_id, tokens = connect(sandbox)
    other = next(r for r in sandbox.realm_ids() if r != realm_id)

    # When it is used on the other company's realmId
    response = api_query(sandbox, other, tokens["access_token"])

    # Then Intuit's authentication Fault comes back
    assert response.status_code == 401
    assert response.json()["Fault"]["type"] == "AuthenticationFault"
    assert response.json()["Fault"]["Error"][0]["code"] == "100"


def test_revoking_the_refresh_token_kills_both_tokens(sandbox: QuickBooksSandbox) -> None:
    # Given a connection
    realm_id, tokens = connect(sandbox)

    # When the app revokes its refresh token (JSON body, Basic auth)
    response = requests.post(
        f"{sandbox.base_url}/v2/oauth2/tokens/revoke",
        json={"token": tokens["refresh_token"]},
        auth=(CLIENT_ID, SECRET),
        headers={"Accept": "application/json"},
        timeout=10,
    )

    # Then neither the refresh token nor the access token works any more
    assert response.status_code == 200
    assert refresh(sandbox, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert api_query(sandbox, realm_id, tokens["access_token"]).status_code == 401


def test_revoke_needs_basic_client_authentication(sandbox: QuickBooksSandbox) -> None:
    _, tokens = connect(sandbox)
    response = requests.post(
        f"{sandbox.base_url}/v2/oauth2/tokens/revoke", json={"token": tokens["refresh_token"]}, timeout=10
    )
    assert response.status_code == 401
    assert refresh(sandbox, tokens["refresh_token"]).status_code == 200


def test_user_disconnecting_in_quickbooks_is_an_admin_control(sandbox: QuickBooksSandbox) -> None:
    # Given a connection
    realm_id, tokens = connect(sandbox)

    # When the user disconnects the app in QuickBooks (admin surface)
    response = requests.post(f"{sandbox.base_url}/_admin/revoke_grant", json={"tenant": realm_id}, timeout=10)

    # Then the next refresh is invalid_grant
    assert response.json() == {"revoked": 1}
    assert refresh(sandbox, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_expire_tokens_control_forces_a_refresh(sandbox: QuickBooksSandbox) -> None:
    realm_id, tokens = connect(sandbox)
    assert sandbox.expire_tokens(realm_id) == 1
    assert api_query(sandbox, realm_id, tokens["access_token"]).status_code == 401
    fresh = refresh(sandbox, tokens["refresh_token"]).json()
    assert api_query(sandbox, realm_id, fresh["access_token"]).status_code == 200


# ---- run as a process: everything over the admin surface -------------------------------------


def test_a_sandbox_process_is_set_up_and_driven_over_the_admin_surface() -> None:
    # Given a bare sandbox, set up only through POST /_admin/{command}
    with QuickBooksSandbox(seed=8) as sandbox:

        def admin(command: str, **args: Any) -> dict[str, Any]:
            response = requests.post(f"{sandbox.base_url}/_admin/{command}", json=args, timeout=10)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        admin("register_app", client_id=CLIENT_ID, client_secret=SECRET, redirect_uris=[REDIRECT])
        admin("add_tenant", seed=8, bills=5, name="First Co")
        second = admin("add_tenant", seed=9, bills=12, name="Admin Co")["tenant"]
        admin("auto_approve", enabled=True, tenant=second)

        # When the app connects and the ledger is changed through the admin surface
        response = requests.get(
            f"{sandbox.base_url}/connect/oauth2", params=authorize_params(), allow_redirects=False, timeout=10
        )
        query = redirect_query(response)
        token = exchange(sandbox, query["code"]).json()["access_token"]
        bills = requests.get(
            f"{sandbox.base_url}/v3/company/{second}/query",
            params={"query": "select * from Bill where Balance > '0'"},
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=10,
        ).json()["QueryResponse"]["Bill"]
        voided, deleted = bills[0], bills[1]
        admin("void_bill", tenant=second, bill_id=voided["Id"])
        admin("delete_bill", tenant=second, bill_id=deleted["Id"])
        renamed = admin("edit_vendor", tenant=second, vendor_id=voided["VendorRef"]["value"], changes={"name": "New"})

        # Then the chosen company was connected and the changes show in the ledger
        assert query["realmId"] == second
        assert renamed["Vendor"]["DisplayName"] == "New"
        remaining = {bill["Id"]: bill for bill in sandbox.bills(second)}
        assert remaining[voided["Id"]]["PrivateNote"] == "Voided"
        assert deleted["Id"] not in remaining
        unknown = requests.post(
            f"{sandbox.base_url}/_admin/void_bill", json={"tenant": second, "bill_id": "0"}, timeout=10
        )
        assert unknown.status_code == 404
