"""Problem documents (RFC 7807 style) for every HTTP error, installed on a resolver in one call.

Body: {"type", "title", "status", "detail", "errors": [{"field", "message"}]} with
Content-Type application/problem+json. `field` is a dotted path into the request
("body.provider", "query.limit", "path.connectionId") so the caller knows what to fix.
"""

import json
import math
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic.alias_generators import to_camel

from payedge_connect.errors import PayEdgeError
from payedge_connect.observability import logger, metrics
from payedge_connect.providers.errors import ProviderError, ProviderUnavailable

PROBLEM_CONTENT_TYPE = "application/problem+json"
# When a throttled provider named no wait of its own.
DEFAULT_RETRY_AFTER_SECONDS = 30
# Counted for every 5xx answer: an HTTP route's failure becomes a response, so Lambda's Errors metric
# never sees it; template.yaml alarms on this metric instead.
HTTP_SERVER_ERROR_METRIC = "HttpServerError"
_TYPE_BASE = "https://payedge.dev/problems/"


def problem_response(status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None) -> Response[str]:
    body: dict[str, Any] = {
        "type": _TYPE_BASE + title.lower().replace(" ", "-"),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    if status >= 500:
        metrics.add_metric(name=HTTP_SERVER_ERROR_METRIC, unit="Count", value=1)
    return Response(status_code=status, content_type=PROBLEM_CONTENT_TYPE, body=json.dumps(body))


def _field_of(error: Any) -> str:
    # Powertools locations read ("body", "provider") or ("query", "limit"); a body that is not an
    # object at all is reported as "body".
    if error.get("type") == "json_invalid":
        # Its location is ("body", <character offset>): the offset is no field the caller can fix.
        return "body"
    location = [str(part) for part in error["loc"]]
    if len(location) == 2 and location[0] in ("path", "query"):
        # Powertools names path and query parameters by their Python names; the caller knows them in camelCase.
        location[1] = to_camel(location[1])
    return ".".join(location) or "body"


def install_problem_handlers(app: APIGatewayHttpResolver) -> None:
    """Make every error leaving `app` a problem document."""

    @app.exception_handler(RequestValidationError)
    def invalid_request(error: RequestValidationError) -> Response[str]:
        errors = [{"field": _field_of(item), "message": item["msg"]} for item in error.errors()]
        fields = ", ".join(item["field"] for item in errors)
        return problem_response(422, "Invalid request", f"Invalid value for {fields}", errors)

    @app.exception_handler(PayEdgeError)
    def domain_error(error: PayEdgeError) -> Response[str]:
        errors = [{"field": error.field, "message": error.detail}] if error.field else None
        response = problem_response(error.status, error.title, error.detail, errors)
        if error.status == 503:  # a token refresh that could not finish now: the caller retries
            response.headers["Retry-After"] = str(DEFAULT_RETRY_AFTER_SECONDS)
        return response

    @app.exception_handler(ProviderError)
    def provider_trouble(error: ProviderError) -> Response[str]:
        if isinstance(error, ProviderUnavailable) or error.status == 429:
            # Throttled (or down) beyond what a request may wait: the caller retries after the provider's wait.
            wait = max(1, math.ceil(error.retry_after)) if error.retry_after else DEFAULT_RETRY_AFTER_SECONDS
            response = problem_response(
                503, "Accounting software unavailable", f"the accounting software is busy; retry in {wait} s"
            )
            response.headers["Retry-After"] = str(wait)
            return response
        logger.warning("Provider refused a read", extra={"status": error.status})
        return problem_response(502, "Accounting software error", f"the accounting software answered {error.status}")

    @app.not_found
    def no_such_route(_: Exception) -> Response[str]:
        return problem_response(404, "Not found", "No such resource")

    @app.exception_handler(Exception)
    def unexpected(error: Exception) -> Response[str]:
        # Logged with its traceback for the operator; the caller gets no internals.
        logger.exception("Unhandled error")
        return problem_response(500, "Internal error", "Something went wrong; it has been logged")
