"""Writes docs/openapi.json: the HTTP API as the four functions' resolvers describe it (from the models).

Usage: PYTHONPATH=layers/shared:. python scripts/openapi.py [--check]
--check exits 1 if docs/openapi.json differs from what the code describes now.
"""

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "docs" / "openapi.json"
FUNCTIONS = ("connect", "callback", "sync", "writeback")


def resolver_of(function: str) -> APIGatewayHttpResolver:
    # Each function's module is app.py: load each under its own name.
    spec = importlib.util.spec_from_file_location(f"openapi_{function}_app", ROOT / "functions" / function / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = module.app
    assert isinstance(app, APIGatewayHttpResolver)
    return app


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
    document["paths"] = dict(sorted(document["paths"].items()))
    document["components"]["schemas"] = dict(sorted(document["components"]["schemas"].items()))
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
