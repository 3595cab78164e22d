"""Writes docs/openapi.json: the HTTP API as the four functions' resolvers describe it (from the models),
with what the shared machinery adds to every route: the problem documents (application/problem+json) of
api/requests.py and api/problems.py, the gateway's own refusals, and the JWT bearer scheme on every route
template.yaml does not open (the OAuth callback, the webhooks).

Usage: PYTHONPATH=layers/shared:. python scripts/openapi.py [--check]
--check exits 1 if docs/openapi.json differs from what the code describes now.
"""

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from payedge_connect.api.problems import PROBLEM_CONTENT_TYPE

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "docs" / "openapi.json"
TEMPLATE = ROOT / "template.yaml"
FUNCTIONS = ("connect", "callback", "sync", "writeback")
SECURITY_SCHEME = "PlatformJwt"

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem document; `errors` names each field to fix (body.x, path.x, query.x).",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
# API Gateway answers some requests itself, with {"message": ...} as application/json.
GATEWAY_MESSAGE_SCHEMA: dict[str, Any] = {
    "title": "GatewayMessage",
    "type": "object",
    "required": ["message"],
    "properties": {"message": {"type": "string"}},
}

# Answers every route may give (api/requests.py: the body; api/problems.py: validation and not found).
COMMON_ERRORS = {
    400: "Malformed request: a body that is not UTF-8, not JSON, nested too deeply, or a bad cursor",
    404: "No such resource, or one that belongs to another business",
    413: "Payload too large",
    415: "Unsupported media type: a body must be application/json in UTF-8",
}
UNAUTHORIZED = "No valid JWT (the gateway), or a JWT without the business claim"
VALIDATION = "Invalid request: each field to fix is named in `errors`"
# Answers particular to some routes, by "METHOD /path" as the resolvers spell paths.
CONFLICT = "The record is not in a state that allows this (or needs reauthorising)"
PROVIDER = {
    502: "The accounting software refused the request",
    503: "The accounting software is busy or down; Retry-After says when to try again",
}
ROUTE_ERRORS: dict[str, dict[int, str]] = {
    "POST /connections/{connection_id}/reconnect": {409: CONFLICT},
    "PUT /connections/{connection_id}/tenant": {409: CONFLICT},
    "GET /connections/{connection_id}/mapping": {409: CONFLICT, **PROVIDER},
    "PUT /connections/{connection_id}/mapping": {409: CONFLICT, **PROVIDER},
    "POST /connections/{connection_id}/sync": {409: CONFLICT},
    "GET /connections/{connection_id}/payables/{bill_id}/document": {409: CONFLICT, **PROVIDER},
    "POST /connections/{connection_id}/payments": {409: "The payment order number was sent with other details"},
    "POST /connections/{connection_id}/payments/{payment_order_number}/retry": {409: CONFLICT},
}


def resolver_of(function: str) -> APIGatewayHttpResolver:
    # Each function's module is app.py: load each under its own name.
    spec = importlib.util.spec_from_file_location(f"openapi_{function}_app", ROOT / "functions" / function / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = module.app
    assert isinstance(app, APIGatewayHttpResolver)
    return app


def open_routes() -> set[str]:
    """ "METHOD /path" of the routes template.yaml serves without the JWT authorizer."""

    class IgnoreTags(yaml.SafeLoader):
        pass

    IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)
    resources = yaml.load(TEMPLATE.read_text(), Loader=IgnoreTags)["Resources"]  # noqa: S506 - SafeLoader
    routes = set()
    for resource in resources.values():
        for event in ((resource.get("Properties") or {}).get("Events") or {}).values():
            properties = event.get("Properties") or {}
            if event["Type"] == "HttpApi" and (properties.get("Auth") or {}).get("Authorizer") == "NONE":
                routes.add(f"{properties['Method'].upper()} {_shape(properties['Path'])}")
    return routes


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def _problem(description: str, *, gateway: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    if gateway:
        content["application/json"] = {"schema": {"$ref": "#/components/schemas/GatewayMessage"}}
    return {"description": description, "content": content}


def _complete(method: str, path: str, operation: dict[str, Any], *, is_open: bool) -> None:
    """Every answer the operation can give, with its media type and schema; the security it needs."""
    responses = operation["responses"]
    takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
    del responses["422"]
    if takes_input:
        responses["422"] = _problem(VALIDATION)
    for status, description in {**COMMON_ERRORS, **ROUTE_ERRORS.get(f"{method.upper()} {path}", {})}.items():
        # The gateway's own 404 (no route matched: an identifier with a "/") is {"message": ...}.
        responses[str(status)] = _problem(description, gateway=status == 404)
    if is_open:
        operation["security"] = []
    else:
        responses["401"] = _problem(UNAUTHORIZED, gateway=True)
    for status, response in responses.items():
        if status == "302":
            response.pop("content", None)
            response["headers"] = {"Location": {"schema": {"type": "string"}, "description": "The web app"}}
    operation["responses"] = dict(sorted(responses.items()))


def _webhook(operation: dict[str, Any]) -> None:
    """Webhooks: signed over the raw body, answered 200 (empty) unless the signature or size is wrong."""
    operation["security"] = []
    operation["responses"] = {
        "200": {"description": "Received (unreadable parts and replays are recorded and ignored)"},
        "400": _problem("The body is marked base64 but is not"),
        "401": _problem("The signature does not match"),
        "404": _problem("No such resource", gateway=True),
        "413": _problem("Payload too large (refused before the signature is checked)"),
    }


def api_document() -> dict[str, Any]:
    document: dict[str, Any] = {}
    for function in FUNCTIONS:
        schema = resolver_of(function).get_openapi_schema(
            title="PayEdge Connect",
            version="1.0.0",
            description="Accounting software connections for accounts payable.",
        )
        part = json.loads(schema.model_dump_json(by_alias=True, exclude_none=True))
        if not document:
            document = part
            continue
        document["paths"].update(part.get("paths", {}))
        document.setdefault("components", {}).setdefault("schemas", {}).update(
            part.get("components", {}).get("schemas", {})
        )
    unauthenticated = open_routes()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/webhooks/"):
                _webhook(operation)
            else:
                _complete(method, path, operation, is_open=f"{method.upper()} {_shape(path)}" in unauthenticated)
    schemas = document["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update(Problem=PROBLEM_SCHEMA, GatewayMessage=GATEWAY_MESSAGE_SCHEMA)
    document["components"]["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "The platform's user JWT; its business claim says whose connections are seen.",
        }
    }
    document["security"] = [{SECURITY_SCHEME: []}]
    document["paths"] = dict(sorted(document["paths"].items()))
    document["components"]["schemas"] = dict(sorted(schemas.items()))
    return document


def main() -> int:
    text = json.dumps(api_document(), indent=2, sort_keys=False) + "\n"
    if "--check" in sys.argv:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != text:
            print(f"{DOCUMENT.relative_to(ROOT)} is out of date: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(text)
    print(f"wrote {DOCUMENT.relative_to(ROOT)} ({len(json.loads(text)['paths'])} paths)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
