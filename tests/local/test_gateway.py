"""The local gateway serves template.yaml's HTTP API: its routes, its JWT authorizer, AWS's refusals."""

import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from local.identity import new_signing_key
from local.stack import LocalStack

pytestmark = pytest.mark.integration

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


class _IgnoreTags(yaml.SafeLoader):
    """Reads template.yaml without resolving its !Ref/!GetAtt tags (only the route table is needed)."""


_IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)


def _template_routes() -> dict[str, str | None]:
    """'METHOD /path' -> authorizer ('NONE' or None for the default), as the HttpApi events declare."""
    resources = yaml.load(TEMPLATE.read_text(), Loader=_IgnoreTags)["Resources"]
    routes: dict[str, str | None] = {}
    for resource in resources.values():
        for event in ((resource.get("Properties") or {}).get("Events") or {}).values():
            if event["Type"] == "HttpApi":
                properties = event["Properties"]
                key = f"{properties.get('Method', 'ANY').upper()} {properties['Path']}"
                routes[key] = (properties.get("Auth") or {}).get("Authorizer")
    return routes


def _get(stack: LocalStack, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{stack.api_url}{path}", headers=headers, timeout=10, **kwargs)


def _assert_unauthorized(response: requests.Response) -> None:
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_every_route_of_the_template_is_served_with_its_authorizer(stack: LocalStack) -> None:
    # Given the HttpApi events of template.yaml
    declared = _template_routes()

    # When the gateway's route table is read
    assert stack.gateway is not None
    assert stack.gateway.api is not None
    served = {route.key: route.authorizer for route in stack.gateway.api.routes}

    # Then it has exactly those routes; the default authorizer guards all but the ones with Authorizer NONE
    assert set(served) == set(declared)
    for key, authorizer in declared.items():
        assert served[key] == (None if authorizer == "NONE" else "PlatformJwt"), key


def test_providers_are_listed_for_a_user_with_a_valid_token(stack: LocalStack) -> None:
    # Given a user token from the identity provider the API trusts
    token = stack.issue_token({"business_id": "biz-1"})

    # When the providers are listed
    response = _get(stack, "/providers", token)

    # Then the three accounting packages come back
    assert response.status_code == 200
    names = {item["provider"]: item["displayName"] for item in response.json()["providers"]}
    assert names == {"quickbooks": "QuickBooks Online", "xero": "Xero", "sage": "Sage Accounting"}
    assert response.headers["apigw-requestid"]


def test_a_token_without_the_bearer_prefix_is_accepted_too(stack: LocalStack) -> None:
    # API Gateway takes the identity source as the bare token or as "Bearer <token>".
    response = requests.get(f"{stack.api_url}/providers", headers={"Authorization": stack.issue_token()}, timeout=10)
    assert response.status_code == 200


def test_a_request_without_a_token_is_refused(stack: LocalStack) -> None:
    response = _get(stack, "/providers")

    _assert_unauthorized(response)


def test_a_token_signed_with_another_key_is_refused(stack: LocalStack) -> None:
    # Given a token with every right claim, signed by a key the issuer never published
    forged = stack.issue_token({"business_id": "biz-1"}, key=new_signing_key())

    response = _get(stack, "/providers", forged)

    _assert_unauthorized(response)
    assert "signature" in response.headers["www-authenticate"]


def test_a_token_from_another_issuer_is_refused(stack: LocalStack) -> None:
    response = _get(stack, "/providers", stack.issue_token({"iss": "https://someone-else.example"}))

    _assert_unauthorized(response)
    assert "issuer" in response.headers["www-authenticate"]


def test_a_token_for_another_audience_is_refused_with_aws_wording(stack: LocalStack) -> None:
    response = _get(stack, "/providers", stack.issue_token({"aud": "another-app"}))

    _assert_unauthorized(response)
    assert response.headers["www-authenticate"] == (
        'Bearer scope="" error="invalid_token" error_description="the token does not have a valid audience"'
    )


def test_client_id_counts_as_the_audience_only_when_the_token_has_no_aud(stack: LocalStack) -> None:
    # A Cognito access token has client_id and no aud.
    access_token = stack.issue_token({"aud": None, "client_id": stack.identity.audience})
    both = stack.issue_token({"aud": "another-app", "client_id": stack.identity.audience})

    assert _get(stack, "/providers", access_token).status_code == 200
    _assert_unauthorized(_get(stack, "/providers", both))


def test_an_expired_token_is_refused(stack: LocalStack) -> None:
    response = _get(stack, "/providers", stack.issue_token(lifetime_seconds=-60))

    _assert_unauthorized(response)
    assert "expired" in response.headers["www-authenticate"]


def test_a_token_not_valid_yet_is_refused(stack: LocalStack) -> None:
    response = _get(stack, "/providers", stack.issue_token({"nbf": int(time.time()) + 600}))

    _assert_unauthorized(response)


def test_something_that_is_not_a_jwt_is_refused(stack: LocalStack) -> None:
    _assert_unauthorized(_get(stack, "/providers", "not-a-jwt"))


def test_an_unknown_path_is_404_not_found_before_any_token_check(stack: LocalStack) -> None:
    # No route matches, so no authorizer runs: 404 even without a token.
    response = _get(stack, "/no-such-thing")

    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_a_known_path_with_a_method_it_has_no_route_for_is_404_not_405(stack: LocalStack) -> None:
    # An HTTP API route is a method and a path; "If no routes match a request, API Gateway returns
    # {"message":"Not Found"}" (Working with routes for HTTP APIs). There is no 405 and no Allow header.
    token = stack.issue_token()

    response = requests.delete(f"{stack.api_url}/providers", headers={"Authorization": token}, timeout=10)

    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}
    assert "allow" not in response.headers


def test_a_route_with_a_path_variable_reaches_its_function(stack: LocalStack) -> None:
    # Given a connection id nobody has
    response = _get(stack, "/connections/does-not-exist", stack.issue_token({"business_id": "biz-1"}))

    # Then the route matched and the function answered: its own problem document, not the gateway's 404
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
