"""Sage sandbox OAuth 2.0: consent, codes, PKCE, token lifetimes, rotation, revocation, scopes."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import pytest
import requests

from local.sandboxes.sage import SageSandbox
from tests.sandboxes.test_sage_helpers import (
    CLIENT_ID,
    COMPANY,
    REDIRECT_URI,
    SageApi,
    authorize_params,
    bank_in,
    connect,
    exchange_code,
    first_invoice,
    obtain_code,
    payment_body,
    redirect_query,
    refresh,
    start_sandbox,
    token_request,
)

VERIFIER = "kP1zXn3v9Qw7Lr5Tt2Yy8Uu4Ii6Oo0Pp-Aa_Ss.Dd~Ff9Gg"


@pytest.fixture
def sandbox() -> Iterator[SageSandbox]:
    running, _ = start_sandbox()
    yield running
    running.stop()


@pytest.fixture
def consent_sandbox() -> Iterator[SageSandbox]:
    running, _ = start_sandbox(auto_approve=False)
    yield running
    running.stop()


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def test_consent_page_names_the_users_businesses_and_approval_redirects_with_code_and_country(
    consent_sandbox: SageSandbox,
) -> None:
    # Given an app that sends the user to Sage's authorization endpoint
    url = f"{consent_sandbox.base_url}/oauth2/auth/central"
    # When the user opens it
    page = requests.get(url, params=authorize_params())
    # Then a consent form shows the Sage account with its businesses and the requested scope
    assert page.status_code == 200
    assert "text/html" in page.headers["Content-Type"]
    assert COMPANY in page.text
    assert "full_access" in page.text
    # When the user approves as that account
    user_id = consent_sandbox.users()[0]
    answer = requests.post(
        url, data={**authorize_params(), "decision": "approve", "tenant": user_id}, allow_redirects=False
    )
    # Then Sage redirects to the callback with a code, the state and the business country
    query = redirect_query(answer)
    assert query["state"] == "state-123"
    assert query["country"] == "ca"
    assert exchange_code(consent_sandbox, query["code"]).status_code == 200


def test_denied_consent_redirects_with_access_denied(consent_sandbox: SageSandbox) -> None:
    # Given the consent page of an authorization request
    url = f"{consent_sandbox.base_url}/oauth2/auth/central"
    # When the user cancels
    answer = requests.post(url, data={**authorize_params(), "decision": "deny"}, allow_redirects=False)
    # Then the callback receives error=access_denied and the state, but no code
    query = redirect_query(answer)
    assert query["error"] == "access_denied"
    assert query["state"] == "state-123"
    assert "code" not in query


def test_authorization_without_the_apiv31_filter_is_refused(sandbox: SageSandbox) -> None:
    # Given an authorization request that omits filter=apiv3.1
    params = authorize_params()
    del params["filter"]
    # When the browser follows it
    answer = requests.get(f"{sandbox.base_url}/oauth2/auth/central", params=params, allow_redirects=False)
    # Then the callback gets invalid_request and no code
    query = redirect_query(answer)
    assert query["error"] == "invalid_request"
    assert "code" not in query


def test_unregistered_redirect_uri_gets_an_error_page_and_no_redirect(sandbox: SageSandbox) -> None:
    # Given a callback URL that differs from the registered one by case
    params = authorize_params(redirect_uri=REDIRECT_URI.upper())
    # When the browser follows the authorization request
    answer = requests.get(f"{sandbox.base_url}/oauth2/auth/central", params=params, allow_redirects=False)
    # Then Sage shows an error page instead of sending anything to that URL
    assert answer.status_code == 400
    assert "Location" not in answer.headers


def test_country_without_a_business_of_the_user_ends_with_sages_error(sandbox: SageSandbox) -> None:
    # Given a user whose only business is Canadian
    params = authorize_params(country="gb")
    # When the authorization request names the United Kingdom
    answer = requests.get(f"{sandbox.base_url}/oauth2/auth/central", params=params, allow_redirects=False)
    # Then Sage's documented (odd) error comes back instead of a code
    query = redirect_query(answer)
    assert query["error"] == "Invalid request"
    assert query["reason"] == "Email already in use"
    assert "code" not in query
    # And naming Canada works
    ok = requests.get(
        f"{sandbox.base_url}/oauth2/auth/central", params=authorize_params(country="CA"), allow_redirects=False
    )
    assert redirect_query(ok)["country"] == "ca"


def test_unknown_scope_is_refused(sandbox: SageSandbox) -> None:
    # Given a scope Sage does not have
    params = authorize_params(scope="accounting.transactions")
    # When the authorization request is made
    answer = requests.get(f"{sandbox.base_url}/oauth2/auth/central", params=params, allow_redirects=False)
    # Then the callback gets invalid_scope
    assert redirect_query(answer)["error"] == "invalid_scope"


def test_token_response_carries_sages_fields_and_lifetimes(sandbox: SageSandbox) -> None:
    # Given an authorization code
    code = obtain_code(sandbox)
    # When the app exchanges it, form-encoded with its credentials in the body
    response = exchange_code(sandbox, code)
    # Then the answer holds exactly Sage's fields: 5-minute access and 31-day refresh tokens
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "access_token",
        "expires_in",
        "refresh_token",
        "refresh_token_expires_in",
        "scope",
        "token_type",
        "requested_by_id",
    }
    assert body["expires_in"] == 300
    assert body["refresh_token_expires_in"] == 2678400
    assert body["token_type"] == "bearer"
    assert body["scope"] == "full_access"
    assert body["requested_by_id"] in sandbox.users()
    assert response.headers["Cache-Control"] == "no-store"


def test_reused_code_is_rejected(sandbox: SageSandbox) -> None:
    # Given a code that was already exchanged
    code = obtain_code(sandbox)
    assert exchange_code(sandbox, code).status_code == 200
    # When it is exchanged again
    again = exchange_code(sandbox, code)
    # Then Sage answers invalid_grant
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_code_is_good_for_60_seconds_only(sandbox: SageSandbox) -> None:
    # Given two codes, one used after 59 seconds and one after 61 seconds
    early, late = obtain_code(sandbox), obtain_code(sandbox)
    sandbox.clock.advance(59)
    # When each is exchanged
    early_answer = exchange_code(sandbox, early)
    sandbox.clock.advance(2)
    late_answer = exchange_code(sandbox, late)
    # Then the first works and the second is invalid_grant
    assert early_answer.status_code == 200
    assert late_answer.status_code == 400
    assert late_answer.json()["error"] == "invalid_grant"


def test_code_for_another_redirect_uri_is_rejected(sandbox: SageSandbox) -> None:
    # Given a code issued for the registered callback
    code = obtain_code(sandbox)
    # When the app exchanges it naming another callback
    answer = token_request(
        sandbox, grant_type="authorization_code", code=code, redirect_uri="https://payedge.example/other"
    )
    # Then Sage answers invalid_grant
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"


def test_pkce_s256_code_needs_the_matching_verifier(sandbox: SageSandbox) -> None:
    # Given two codes requested with an S256 challenge
    challenge = s256(VERIFIER)
    first = obtain_code(sandbox, code_challenge=challenge, code_challenge_method="S256")
    second = obtain_code(sandbox, code_challenge=challenge, code_challenge_method="S256")
    # When one is exchanged with a wrong verifier and the other with the right one
    wrong = exchange_code(sandbox, first, code_verifier=VERIFIER[::-1])
    right = exchange_code(sandbox, second, code_verifier=VERIFIER)
    # Then only the right verifier gets tokens
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert right.status_code == 200


def test_pkce_code_without_verifier_is_rejected(sandbox: SageSandbox) -> None:
    # Given a code requested with a challenge
    code = obtain_code(sandbox, code_challenge=s256(VERIFIER), code_challenge_method="S256")
    # When it is exchanged without code_verifier
    answer = exchange_code(sandbox, code)
    # Then Sage answers invalid_grant
    assert answer.status_code == 400


def test_pkce_plain_method_compares_the_verifier_itself(sandbox: SageSandbox) -> None:
    # Given a code requested with a plain challenge
    code = obtain_code(sandbox, code_challenge=VERIFIER, code_challenge_method="plain")
    # When the verifier equal to the challenge is sent
    answer = exchange_code(sandbox, code, code_verifier=VERIFIER)
    # Then tokens are issued
    assert answer.status_code == 200


def test_refresh_rotates_both_tokens_and_the_old_refresh_token_dies_at_once(sandbox: SageSandbox) -> None:
    # Given a token pair
    first = connect(sandbox)
    # When the app refreshes
    rotated = refresh(sandbox, first["refresh_token"])
    # Then it gets a new access AND refresh token
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token_expires_in"] == 2678400
    # And the refresh token it used no longer works, immediately
    reused = refresh(sandbox, first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    # And the new one works
    assert refresh(sandbox, second["refresh_token"]).status_code == 200


def test_refresh_token_expires_after_31_days(sandbox: SageSandbox) -> None:
    # Given a refresh token left unused for 31 days
    tokens = connect(sandbox)
    sandbox.clock.advance(2678400)
    # When the app refreshes
    answer = refresh(sandbox, tokens["refresh_token"])
    # Then Sage answers invalid_grant
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"


def test_access_token_expires_after_300_seconds_with_sages_401_array(sandbox: SageSandbox) -> None:
    # Given an access token that worked
    api = SageApi(sandbox, connect(sandbox)["access_token"])
    assert api.get("/businesses").status_code == 200
    # When five minutes pass
    sandbox.clock.advance(300)
    answer = api.get("/businesses")
    # Then the API answers 401 with Sage's error array
    assert answer.status_code == 401
    assert answer.json() == [
        {"$severity": "error", "$dataCode": "AuthorizationFailure", "$message": "Access denied.", "$source": ""}
    ]


def test_missing_bearer_token_is_a_401(sandbox: SageSandbox) -> None:
    # Given no Authorization header
    # When the API is called
    answer = requests.get(f"{sandbox.base_url}/v3.1/purchase_invoices")
    # Then it answers 401 AuthorizationFailure
    assert answer.status_code == 401
    assert answer.json()[0]["$dataCode"] == "AuthorizationFailure"


def test_revoke_answers_success_ok_and_ends_refreshing(sandbox: SageSandbox) -> None:
    # Given a connected app
    tokens = connect(sandbox)
    # When it revokes its refresh token
    answer = requests.post(
        f"{sandbox.base_url}/revoke",
        data={"client_id": CLIENT_ID, "client_secret": "payedge-sage-secret", "token": tokens["refresh_token"]},
    )
    # Then Sage answers {"success": "ok"} and the refresh token is dead
    assert answer.status_code == 200
    assert answer.json() == {"success": "ok"}
    assert refresh(sandbox, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    # And the access token lives on until it expires (Sage cannot revoke access tokens)
    assert SageApi(sandbox, tokens["access_token"]).get("/businesses").status_code == 200


def test_wrong_client_secret_is_invalid_client(sandbox: SageSandbox) -> None:
    # Given a code
    code = obtain_code(sandbox)
    # When the app sends a wrong secret
    answer = requests.post(
        f"{sandbox.base_url}/token",
        data={
            "client_id": CLIENT_ID,
            "client_secret": "wrong",
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
        },
    )
    # Then the token endpoint answers 401 invalid_client
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"


def test_token_request_must_be_form_encoded(sandbox: SageSandbox) -> None:
    # Given a token request sent as JSON
    code = obtain_code(sandbox)
    body = {
        "client_id": CLIENT_ID,
        "client_secret": "payedge-sage-secret",
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
    }
    # When it is posted
    answer = requests.post(f"{sandbox.base_url}/token", json=body)
    # Then Sage answers invalid_request
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


def test_unknown_grant_type_is_unsupported(sandbox: SageSandbox) -> None:
    # Given a client_credentials request, which Sage does not offer
    # When it is posted
    answer = token_request(sandbox, grant_type="client_credentials")
    # Then the answer is unsupported_grant_type
    assert answer.status_code == 400
    assert answer.json()["error"] == "unsupported_grant_type"


def test_readonly_token_reads_but_cannot_write(sandbox: SageSandbox) -> None:
    # Given a token granted the readonly scope
    api = SageApi(sandbox, connect(sandbox, scope="readonly")["access_token"])
    invoice = first_invoice(api, "UNPAID")
    bank = bank_in(api, invoice["currency"]["id"])
    # When it posts a payment
    answer = api.post("/contact_payments", payment_body(invoice, bank["id"], "10.00"))
    # Then Sage refuses with 403 and nothing is booked
    assert answer.status_code == 403
    assert answer.json()[0]["$dataCode"] == "AuthorizationFailure"
    assert api.one(f"/purchase_invoices/{invoice['id']}")["outstanding_amount"] == invoice["outstanding_amount"]


def test_revoke_grant_control_ends_access_and_refresh(sandbox: SageSandbox) -> None:
    # Given a connected app
    tokens = connect(sandbox)
    api = SageApi(sandbox, tokens["access_token"])
    # When the user removes the app in Sage (admin route, as a separate process would)
    admin = requests.post(f"{sandbox.base_url}/_admin/revoke_grant", json={})
    # Then both the access token and the refresh token stop working
    assert admin.json() == {"revoked": 1}
    assert api.get("/businesses").status_code == 401
    assert refresh(sandbox, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_expire_tokens_control_expires_access_tokens_only_unless_asked(sandbox: SageSandbox) -> None:
    # Given a connected app
    tokens = connect(sandbox)
    api = SageApi(sandbox, tokens["access_token"])
    # When access tokens are expired
    assert sandbox.expire_tokens() == 1
    # Then the API refuses the access token but a refresh still works
    assert api.get("/businesses").status_code == 401
    rotated = refresh(sandbox, tokens["refresh_token"]).json()
    # When refresh tokens are expired as well
    sandbox.expire_tokens(include_refresh=True)
    # Then the latest refresh token is refused
    assert refresh(sandbox, rotated["refresh_token"]).json()["error"] == "invalid_grant"
