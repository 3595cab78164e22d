"""Every HTTP error leaves as a problem document that names what to fix."""

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from pydantic import BaseModel, Field

from payedge_connect.api.identity import business_id_of
from payedge_connect.api.problems import DEFAULT_RETRY_AFTER_SECONDS, HTTP_SERVER_ERROR_METRIC, install_problem_handlers
from payedge_connect.errors import NotFoundError
from payedge_connect.observability import metrics
from payedge_connect.tokens.refresh import TokenRefreshUnavailable


class NewThing(BaseModel):
    provider: str = Field(pattern="^(quickbooks|xero|sage)$")
    amount: int = Field(gt=0)


def an_app() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)
    install_problem_handlers(app)

    @app.post("/things")
    def create(thing: NewThing) -> dict[str, Any]:
        return {"caller": business_id_of(app.current_event, "business_id"), **thing.model_dump()}

    @app.get("/things/<thing_id>")
    def read(thing_id: str) -> dict[str, Any]:
        raise NotFoundError(f"no thing {thing_id}")

    return app


def http_event(method: str, path: str, body: object = None, claims: dict[str, str] | None = None) -> dict:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "authorizer": {"jwt": {"claims": claims or {"business_id": "biz-1"}, "scopes": []}},
            "requestId": "r-1",
            "stage": "$default",
        },
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


def problem(response: dict) -> dict:
    assert response["headers"]["Content-Type"] == "application/problem+json"
    return json.loads(response["body"])


def test_a_bad_body_gets_a_problem_document_naming_each_field() -> None:
    response = an_app().resolve(http_event("POST", "/things", {"provider": "wave", "amount": -1}), {})
    document = problem(response)
    assert response["statusCode"] == 422
    assert {error["field"] for error in document["errors"]} == {"body.provider", "body.amount"}
    assert document["status"] == 422 and document["title"] == "Invalid request"


def test_a_domain_error_keeps_its_status_and_detail() -> None:
    response = an_app().resolve(http_event("GET", "/things/t-9"), {})
    assert response["statusCode"] == 404
    assert problem(response)["detail"] == "no thing t-9"


def test_an_unknown_route_is_a_404_problem() -> None:
    response = an_app().resolve(http_event("GET", "/nowhere"), {})
    assert response["statusCode"] == 404
    assert problem(response)["title"] == "Not found"


def test_a_token_without_the_business_claim_is_unauthorized() -> None:
    response = an_app().resolve(
        http_event("POST", "/things", {"provider": "xero", "amount": 1}, claims={"sub": "u-1"}), {}
    )
    assert response["statusCode"] == 401
    assert "business_id" in problem(response)["detail"]


def test_the_caller_is_the_business_in_the_token() -> None:
    response = an_app().resolve(http_event("POST", "/things", {"provider": "xero", "amount": 3}), {})
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"caller": "biz-1", "provider": "xero", "amount": 3}


def test_a_routes_failure_is_a_500_problem_counted_for_the_alarm_and_a_stuck_refresh_a_503_with_retry_after() -> None:
    app = APIGatewayHttpResolver(enable_validation=True)
    install_problem_handlers(app)

    @app.get("/broken")
    def broken() -> dict[str, Any]:
        raise RuntimeError("a bug")

    @app.get("/refreshing")
    def refreshing() -> dict[str, Any]:
        raise TokenRefreshUnavailable("the token endpoint did not answer; the connection is intact")

    before = len(metrics.metric_set.get(HTTP_SERVER_ERROR_METRIC, {}).get("Value", []))
    failed = app.resolve(http_event("GET", "/broken"), {})
    assert failed["statusCode"] == 500 and json.loads(failed["body"])["title"] == "Internal error"
    unavailable = app.resolve(http_event("GET", "/refreshing"), {})
    assert unavailable["statusCode"] == 503
    assert unavailable["headers"]["Retry-After"] == str(DEFAULT_RETRY_AFTER_SECONDS)
    # Both are counted: Lambda's Errors metric never sees an HTTP route's failure
    assert len(metrics.metric_set[HTTP_SERVER_ERROR_METRIC]["Value"]) == before + 2
