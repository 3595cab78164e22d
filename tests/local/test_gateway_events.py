"""What a function behind the local gateway receives and how its result reaches the client (echo stack).

The echo function answers with the payload 2.0 event it got, so these tests read the event itself.
"""

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from local.stack import LocalStack

pytestmark = pytest.mark.integration


def _auth(stack: LocalStack, claims: dict[str, Any] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.issue_token(claims)}"}


def _event(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    event: dict[str, Any] = response.json()["event"]
    return event


def test_the_event_has_the_payload_2_0_shape_api_gateway_sends(echo_stack: LocalStack) -> None:
    # Given a user with a token carrying custom claims
    headers = {
        **_auth(echo_stack, {"business_id": "biz-7", "groups": ["admin", "ap"], "verified": True}),
        "Cookie": "session=abc; theme=dark",
        "X-Request-Note": "Hello",
        "User-Agent": "tests/1.0",
    }

    # When they call a route with a path variable and a query string with a repeated parameter
    event = _event(
        requests.get(f"{echo_stack.api_url}/echo/ana%20maria?tag=a&tag=b&empty=", headers=headers, timeout=10)
    )

    # Then the event is API Gateway's payload format 2.0
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /echo/{name}"
    assert event["rawPath"] == "/echo/ana%20maria"
    assert event["rawQueryString"] == "tag=a&tag=b&empty="
    assert event["queryStringParameters"] == {"tag": "a,b", "empty": ""}
    assert event["pathParameters"] == {"name": "ana maria"}
    assert event["cookies"] == ["session=abc", "theme=dark"]
    assert event["headers"]["x-request-note"] == "Hello"
    assert "cookie" not in event["headers"]
    assert all(name == name.lower() for name in event["headers"])
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    context = event["requestContext"]
    assert context["stage"] == "$default"
    assert context["routeKey"] == "GET /echo/{name}"
    assert context["http"] == {
        "method": "GET",
        "path": "/echo/ana%20maria",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "tests/1.0",
    }
    assert context["accountId"] == "123456789012"
    assert context["requestId"] and context["apiId"] and context["time"] and context["timeEpoch"] > 0
    # And the verified claims arrive as API Gateway passes them: every value a string
    claims = context["authorizer"]["jwt"]["claims"]
    assert claims["business_id"] == "biz-7"
    assert claims["groups"] == "[admin ap]"
    assert claims["verified"] == "true"
    assert claims["exp"].isdigit()
    assert context["authorizer"]["jwt"]["scopes"] is None


def test_repeated_request_headers_are_joined_with_commas(echo_stack: LocalStack) -> None:
    # Given a request that repeats a header (requests cannot send that; http.client can)
    url = urlsplit(echo_stack.api_url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    connection.putrequest("GET", "/echo/bob")
    connection.putheader("Authorization", _auth(echo_stack)["Authorization"])
    connection.putheader("X-Forwarded-Client", "one")
    connection.putheader("X-Forwarded-Client", "two")
    connection.endheaders()

    # When the function receives it
    response = connection.getresponse()
    event = json.loads(response.read())["event"]
    connection.close()

    # Then both values are in one lowercased header
    assert event["headers"]["x-forwarded-client"] == "one,two"


def test_a_literal_route_wins_over_a_path_variable(echo_stack: LocalStack) -> None:
    event = _event(requests.get(f"{echo_stack.api_url}/echo/everyone", headers=_auth(echo_stack), timeout=10))

    assert event["routeKey"] == "GET /echo/everyone"
    assert "pathParameters" not in event


def test_a_greedy_route_takes_any_method_and_the_rest_of_the_path(echo_stack: LocalStack) -> None:
    response = requests.delete(
        f"{echo_stack.api_url}/files/2026/bills/inv%201.pdf", headers=_auth(echo_stack), timeout=10
    )

    event = _event(response)
    assert event["routeKey"] == "ANY /files/{proxy+}"
    assert event["requestContext"]["http"]["method"] == "DELETE"
    assert event["pathParameters"] == {"proxy": "2026/bills/inv 1.pdf"}


def test_a_greedy_route_needs_at_least_one_segment(echo_stack: LocalStack) -> None:
    response = requests.get(f"{echo_stack.api_url}/files", headers=_auth(echo_stack), timeout=10)

    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_an_open_route_is_reached_without_a_token_and_carries_no_authorizer(echo_stack: LocalStack) -> None:
    # Given a route declared with Auth: {Authorizer: NONE}
    event = _event(requests.get(f"{echo_stack.api_url}/public", timeout=10))

    assert event["routeKey"] == "GET /public"
    assert "authorizer" not in event["requestContext"]


def test_a_route_with_scopes_needs_a_token_with_one_of_them(echo_stack: LocalStack) -> None:
    url = f"{echo_stack.api_url}/payments"
    without_scope = requests.post(url, headers=_auth(echo_stack, {"scope": "payments/read"}), timeout=10)
    with_scope = requests.post(url, headers=_auth(echo_stack, {"scope": "openid payments/write"}), timeout=10)

    assert without_scope.status_code == 403
    assert without_scope.json() == {"message": "Forbidden"}
    assert _event(with_scope)["requestContext"]["authorizer"]["jwt"]["scopes"] == ["openid", "payments/write"]


def test_a_json_body_arrives_as_text_and_a_binary_body_base64_encoded(echo_stack: LocalStack) -> None:
    url = f"{echo_stack.api_url}/echo"
    as_json = _event(requests.post(url, json={"amount": "12.50"}, headers=_auth(echo_stack), timeout=10))
    as_bytes = _event(
        requests.post(
            url,
            data=b"\x00\x01binary",
            headers={**_auth(echo_stack), "Content-Type": "application/octet-stream"},
            timeout=10,
        )
    )

    assert as_json["body"] == '{"amount": "12.50"}'
    assert as_json["isBase64Encoded"] is False
    assert as_bytes["body"] == "AAFiaW5hcnk="
    assert as_bytes["isBase64Encoded"] is True


def test_a_result_without_status_code_is_a_200_json_body(echo_stack: LocalStack) -> None:
    response = requests.get(f"{echo_stack.api_url}/echo/plain", headers=_auth(echo_stack), timeout=10)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"hello": "world"}


def test_a_string_result_is_the_body(echo_stack: LocalStack) -> None:
    response = requests.get(f"{echo_stack.api_url}/echo/text", headers=_auth(echo_stack), timeout=10)

    assert response.status_code == 200
    assert response.text == "just text"


def test_status_headers_and_cookies_of_the_result_reach_the_client(echo_stack: LocalStack) -> None:
    response = requests.get(f"{echo_stack.api_url}/echo/cookies", headers=_auth(echo_stack), timeout=10)

    assert response.status_code == 201
    assert response.headers["x-echo"] == "yes"
    assert response.raw.headers.getlist("set-cookie") == ["a=1; Path=/", "b=2"]
    assert response.text == "made"


def test_a_base64_encoded_result_is_decoded_for_the_client(echo_stack: LocalStack) -> None:
    response = requests.get(f"{echo_stack.api_url}/echo/binary", headers=_auth(echo_stack), timeout=10)

    assert response.headers["content-type"] == "image/png"
    assert response.content == b"\x89PNG binary"


def test_a_function_error_is_a_500_internal_server_error(echo_stack: LocalStack) -> None:
    response = requests.get(f"{echo_stack.api_url}/echo/boom", headers=_auth(echo_stack), timeout=10)

    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}


def test_a_malformed_result_is_a_500_internal_server_error(echo_stack: LocalStack) -> None:
    response = requests.get(f"{echo_stack.api_url}/echo/malformed", headers=_auth(echo_stack), timeout=10)

    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
