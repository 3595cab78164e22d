"""The HTTP API as deployed (template.yaml) and as coded (the functions' resolvers) are the same API."""

import json
import re
from typing import Any

from scripts.openapi import DOCUMENT, FUNCTIONS, api_document, resolver_of

FUNCTION_RESOURCES = {
    "connect": "ConnectFunction",
    "callback": "CallbackFunction",
    "sync": "SyncFunction",
    "writeback": "WritebackFunction",
}


def normalised(path: str) -> str:
    # The template says {connectionId}, the resolvers {connection_id}: only the shape matters.
    return re.sub(r"\{[^}]+\}", "{}", path)


def template_routes(template: dict[str, Any], function: str) -> set[tuple[str, str]]:
    events = template["Resources"][FUNCTION_RESOURCES[function]]["Properties"].get("Events", {})
    return {
        (event["Properties"]["Method"].upper(), normalised(event["Properties"]["Path"]))
        for event in events.values()
        if event["Type"] == "HttpApi"
    }


def coded_routes(function: str) -> set[tuple[str, str]]:
    schema = json.loads(resolver_of(function).get_openapi_schema().model_dump_json(by_alias=True, exclude_none=True))
    return {(method.upper(), normalised(path)) for path, operations in schema["paths"].items() for method in operations}


def test_every_route_in_the_template_reaches_a_handler_and_every_handler_has_a_route(template: dict[str, Any]) -> None:
    for function in FUNCTIONS:
        assert template_routes(template, function) == coded_routes(function), function


def test_the_published_openapi_document_is_what_the_code_describes() -> None:
    assert json.loads(DOCUMENT.read_text()) == api_document(), "docs/openapi.json is stale: run `make openapi`"


def test_every_error_is_a_problem_document_and_every_route_but_the_open_ones_needs_the_jwt() -> None:
    document = api_document()
    assert document["security"] == [{"PlatformJwt": []}]
    assert document["components"]["securitySchemes"]["PlatformJwt"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The platform's user JWT; its business claim says whose connections are seen.",
    }
    open_paths = {"/oauth/{provider}/callback", "/webhooks/quickbooks", "/webhooks/xero"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert ("security" in operation) == (path in open_paths), (method, path)
            assert ("401" in responses) == (path not in {"/oauth/{provider}/callback"}), (method, path)
            for status, response in responses.items():
                if int(status) >= 400:
                    assert "application/problem+json" in response["content"], (method, path, status)
    statuses = {
        status for operations in document["paths"].values() for op in operations.values() for status in op["responses"]
    }
    assert statuses == {"200", "201", "202", "302", "400", "401", "404", "409", "413", "415", "422", "502", "503"}
