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
