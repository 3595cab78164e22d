"""CORS on the HTTP API: the web app's origin (WebAppOrigins) may call every route from a browser, and
the local gateway answers preflights as API Gateway does; any other origin is refused."""

import re
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from local.functions import FunctionRuntime
from local.gateway import CorsConfiguration, HttpApiDefinition, JwtAuthorizer, LocalGateway, Route
from local.stack import LocalStack
from tests.local.test_gateway import _template_routes

pytestmark = pytest.mark.integration

OTHER_ORIGIN = "http://127.0.0.1:9999"


def _web_app_origin(stack: LocalStack) -> str:
    return stack.parameters["WebAppOrigins"].split(",")[0]


def _concrete(path: str) -> str:
    """A request path for a route: each {variable} filled with a sample value."""
    return re.sub(r"\{[^}]+\}", "sample-1", path)


def _preflight(stack: LocalStack, method: str, path: str, origin: str, headers: str) -> requests.Response:
    return requests.options(
        f"{stack.api_url}{path}",
        headers={"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers},
        timeout=10,
    )


def _cors_headers(response: requests.Response) -> dict[str, str]:
    return {name.lower(): value for name, value in response.headers.items() if name.lower().startswith("access-")}


def test_a_preflight_from_the_web_app_to_every_route_is_answered_by_the_gateway(stack: LocalStack) -> None:
    # Given every route the template declares, and the web app's origin from WebAppOrigins
    routes = [key.split(" ", 1) for key in _template_routes()]
    origin = _web_app_origin(stack)

    for method, path in routes:
        # When the browser preflights the call it is about to make with the user's JWT and a JSON body
        response = _preflight(stack, method, _concrete(path), origin, "authorization,content-type")

        # Then API Gateway answers it itself, before any authorizer: 204, no body, the origin allowed,
        # with the route's method and the Authorization header
        assert response.status_code == 204, f"{method} {path}: {response.status_code} {response.text}"
        assert response.content == b""
        headers = _cors_headers(response)
        assert headers["access-control-allow-origin"] == origin, f"{method} {path}"
        assert method in headers["access-control-allow-methods"].split(","), f"{method} {path}"
        assert {"authorization", "content-type"} <= set(headers["access-control-allow-headers"].split(","))
        assert headers["access-control-max-age"] == "600"
        # No credentials mode: the token is a header, not a cookie
        assert "access-control-allow-credentials" not in headers


def test_a_preflight_from_another_origin_gets_no_cors_headers_so_the_browser_refuses(stack: LocalStack) -> None:
    for method, path in [key.split(" ", 1) for key in _template_routes()]:
        response = _preflight(stack, method, _concrete(path), OTHER_ORIGIN, "authorization")
        assert response.status_code == 204
        assert _cors_headers(response) == {}, f"{method} {path}"


def test_a_preflight_asking_for_a_method_or_header_not_allowed_gets_no_cors_headers(stack: LocalStack) -> None:
    origin = _web_app_origin(stack)
    assert _cors_headers(_preflight(stack, "PATCH", "/connections/sample-1", origin, "authorization")) == {}
    assert _cors_headers(_preflight(stack, "GET", "/providers", origin, "authorization,x-debug")) == {}


def test_an_options_request_that_is_no_preflight_is_routed_and_finds_no_route(stack: LocalStack) -> None:
    response = requests.options(f"{stack.api_url}/providers", headers={"Origin": _web_app_origin(stack)}, timeout=10)
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_responses_to_the_web_app_carry_its_origin_and_other_origins_get_none(stack: LocalStack) -> None:
    origin = _web_app_origin(stack)
    token = stack.issue_token({"business_id": "biz-cors"})
    # The function's answer, the authorizer's 401 and the gateway's 404 alike
    calls = [
        ("/providers", {"Authorization": f"Bearer {token}"}, 200),
        ("/providers", {}, 401),
        ("/no-such-route", {}, 404),
    ]
    for path, headers, status in calls:
        allowed = requests.get(f"{stack.api_url}{path}", headers={**headers, "Origin": origin}, timeout=10)
        assert allowed.status_code == status
        assert _cors_headers(allowed) == {"access-control-allow-origin": origin}, path
        refused = requests.get(f"{stack.api_url}{path}", headers={**headers, "Origin": OTHER_ORIGIN}, timeout=10)
        assert refused.status_code == status
        assert _cors_headers(refused) == {}, path


def test_the_oauth_callback_still_redirects_the_browser_to_the_web_app(stack: LocalStack) -> None:
    # A browser arriving from the provider's consent page (a navigation: no preflight, no JWT)
    response = requests.get(
        f"{stack.api_url}/oauth/xero/callback?code=abc&state=unknown", allow_redirects=False, timeout=10
    )
    assert response.status_code == 302
    target = urlsplit(response.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == stack.parameters["WebAppUrl"]
    assert dict(parse_qsl(target.query))["outcome"] == "invalid_state"


def test_the_wildcard_origin_with_credentials_is_refused_as_api_gateway_refuses_it() -> None:
    with pytest.raises(ValueError, match="allowCredentials"):
        CorsConfiguration.from_extension({"allowOrigins": ["*"], "allowCredentials": True})


def test_a_comma_delimited_origin_list_substituted_as_one_string_is_read_as_its_origins() -> None:
    # SAM's translator substitutes a CommaDelimitedList parameter's value as its string
    cors = CorsConfiguration.from_extension({"allowOrigins": "http://127.0.0.1:8080,http://localhost:8080"})
    assert cors.allow_origins == ("http://127.0.0.1:8080", "http://localhost:8080")


def test_an_options_request_a_route_matches_goes_to_that_route_not_to_the_automatic_preflight() -> None:
    # An ANY route behind the JWT authorizer catches OPTIONS too (http-api-cors): the authorizer refuses
    # the browser's preflight, which carries no token - the documented trap of ANY and $default routes.
    api = HttpApiDefinition(
        logical_id="Api",
        routes=(Route("ANY", "/items", "ItemsFunction", authorizer="Jwt"),),
        authorizers={"Jwt": JwtAuthorizer("Jwt", "$request.header.Authorization", "https://issuer", ("aud",))},
        cors=CorsConfiguration.from_extension({"allowOrigins": ["http://app"], "allowMethods": ["GET"]}),
    )
    gateway = LocalGateway(runtime=FunctionRuntime({}, region="us-east-1"), keys=dict, account_id="1", api=api)
    preflight = {"Origin": "http://app", "Access-Control-Request-Method": "GET"}

    caught = gateway.handle(Request(EnvironBuilder(path="/items", method="OPTIONS", headers=preflight).get_environ()))
    assert caught.status_code == 401

    answered = gateway.handle(Request(EnvironBuilder(path="/other", method="OPTIONS", headers=preflight).get_environ()))
    assert answered.status_code == 204
    assert answered.headers["access-control-allow-origin"] == "http://app"
