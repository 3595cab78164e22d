"""Contract: every body the Sage sandbox serves validates against the Sage Accounting v3.1 Swagger.

Schemas come from the specs' sage/sage-accounting-v3.1.swagger.json (docs/providers.md#specs; `#/definitions/...`),
checked with jsonschema's Draft4Validator (Swagger 2.0 schemas are a Draft 4 dialect) and format
checks for date and date-time. Two readings of the Swagger are made explicit here:

* Swagger 2.0 cannot say "nullable" and this file carries no `x-nullable` either, while Sage sends
  null for empty attributes; so every property also accepts null, and the nulls are counted.
* Definitions do not forbid other properties; this test does (`additionalProperties: false`), so a
  field the sandbox invents fails.

The Swagger describes list responses as bare arrays; Sage wraps them in `$items` with paging fields
(S-PAG), so the items are checked against the array's item schema and the envelope separately.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from jsonschema import Draft4Validator, FormatChecker

from local.sandboxes.generator import generate_ledger
from local.sandboxes.sage import SageSandbox
from tests.sandboxes.specs import spec_dir
from tests.sandboxes.test_sage_helpers import (
    SageApi,
    api_for,
    bank_in,
    first_invoice,
    payment_body,
    start_sandbox,
)

SWAGGER_FILE = "sage-accounting-v3.1.swagger.json"
SAMPLE_PER_COLLECTION = 25

ENVELOPE = {
    "type": "object",
    "required": ["$total", "$page", "$next", "$back", "$itemsPerPage", "$items"],
    "additionalProperties": False,
    "properties": {
        "$total": {"type": "integer", "minimum": 0},
        "$page": {"type": "integer", "minimum": 1},
        "$next": {"type": ["string", "null"], "pattern": "^/"},
        "$back": {"type": ["string", "null"], "pattern": "^/"},
        "$itemsPerPage": {"type": "integer", "minimum": 1, "maximum": 200},
        "$items": {"type": "array"},
    },
}
# S-IDEM example and 3P clients: a JSON array of these four keys.
ERROR_ARRAY = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["$severity", "$dataCode", "$message", "$source"],
        "additionalProperties": False,
        "properties": {
            "$severity": {"enum": ["error", "warning", "info"]},
            "$dataCode": {"type": "string", "minLength": 1},
            "$message": {"type": "string", "minLength": 1},
            "$source": {"type": "string"},
        },
    },
}


def strict_and_nullable(schema: Any) -> Any:
    """The schema with null allowed for every property and unknown properties forbidden."""
    if not isinstance(schema, dict):
        return schema
    result = dict(schema)
    if "properties" in result:
        result["additionalProperties"] = False
        result["properties"] = {
            name: _nullable(strict_and_nullable(prop)) for name, prop in result["properties"].items()
        }
    if "items" in result:
        result["items"] = strict_and_nullable(result["items"])
    return result


def _nullable(prop: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in prop:
        return {"anyOf": [{"$ref": prop["$ref"]}, {"type": "null"}]}
    if "type" in prop:
        widened = dict(prop)
        widened["type"] = [prop["type"], "null"]
        if "enum" in widened:
            widened["enum"] = [*widened["enum"], None]
        return widened
    return prop


@dataclass
class Contract:
    """Validates bodies against Swagger operations and keeps the tally."""

    spec: dict[str, Any]
    definitions: dict[str, Any]
    operations: set[str] = field(default_factory=set)
    bodies: int = 0
    fields: int = 0
    nulls: int = 0
    definitions_used: set[str] = field(default_factory=set)
    error_bodies: int = 0

    @classmethod
    def load(cls) -> Contract:
        spec = json.loads((spec_dir("sage") / SWAGGER_FILE).read_text(encoding="utf-8"))
        definitions = {name: strict_and_nullable(schema) for name, schema in spec["definitions"].items()}
        return cls(spec=spec, definitions=definitions)

    def response_schema(self, method: str, path: str, status: int) -> dict[str, Any]:
        operation = self.spec["paths"][path][method.lower()]
        return copy.deepcopy(operation["responses"][str(status)]["schema"])

    def check(self, method: str, path: str, status: int, body: Any, *, listing: bool = False) -> None:
        """`body` must fit the operation's response schema (for a listing: its items, plus the envelope)."""
        schema = self.response_schema(method, path, status)
        self.operations.add(f"{method} {path}")
        if listing:
            assert schema["type"] == "array", f"{method} {path} is not a list operation in the Swagger"
            self._validate(body, ENVELOPE, f"{method} {path} envelope")
            for item in body["$items"]:
                self._validate(item, schema["items"], f"{method} {path} item")
        else:
            self._validate(body, schema, f"{method} {path}")

    def check_against(self, label: str, definition: str, body: Any) -> None:
        """For operations outside this Swagger (the User Accounts API's /businesses)."""
        self.operations.add(label)
        self._validate(body, {"$ref": f"#/definitions/{definition}"}, label)

    def check_error(self, body: Any) -> None:
        self.error_bodies += 1
        errors = sorted(Draft4Validator(ERROR_ARRAY).iter_errors(body), key=str)
        assert not errors, f"error body {body} does not fit Sage's error array: {errors[0].message}"

    def _validate(self, body: Any, schema: dict[str, Any], label: str) -> None:
        root = {**schema, "definitions": self.definitions}
        validator = Draft4Validator(root, format_checker=FormatChecker())
        problems = sorted(validator.iter_errors(body), key=lambda error: list(error.absolute_path))
        assert not problems, (
            f"{label}: {len(problems)} problem(s); first at {list(problems[0].absolute_path)}: {problems[0].message}"
        )
        self.bodies += 1
        self._tally(body)
        self.definitions_used.update(_refs(schema, self.definitions))

    def _tally(self, value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                self.fields += 1
                self.nulls += item is None
                self._tally(item)
        elif isinstance(value, list):
            for item in value:
                self._tally(item)


def _refs(schema: Any, definitions: dict[str, Any], seen: set[str] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            name = ref.rsplit("/", 1)[1]
            if name not in seen:
                seen.add(name)
                _refs(definitions[name], definitions, seen)
        for value in schema.values():
            _refs(value, definitions, seen)
    elif isinstance(schema, list):
        for value in schema:
            _refs(value, definitions, seen)
    return seen


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[SageSandbox, str, SageApi]]:
    """A business with every kind of record: foreign currencies, part-paid, void and deleted invoices,
    attachments, a payment with an amount on account, and a bank fee with a contact."""
    ledger = generate_ledger(seed=21, bills=80, documents=16)
    running, business_id = start_sandbox(ledger=ledger)
    running.add_tenant(generate_ledger(seed=22, bills=5, documents=1, base_currency="GBP"), name="Thames Office Ltd")
    api = api_for(running)
    invoice = first_invoice(api, "UNPAID")
    bank = bank_in(api, invoice["currency"]["id"])
    body = payment_body(invoice, bank["id"], "10.00", total_amount=15.0)
    assert api.post("/contact_payments", body).status_code == 201
    yield running, business_id, api
    running.stop()


def test_every_sage_response_body_fits_the_swagger(
    world: tuple[SageSandbox, str, SageApi], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the Swagger definitions and a sandbox business holding every kind of record
    running, _, api = world
    contract = Contract.load()

    # When every route of the sandbox is called and its bodies are checked against their operation
    for item in api.one("/businesses")["$items"]:
        contract.check_against("GET /businesses", "Base", item)
    contract.check_against("GET /businesses/lead", "Base", api.one("/businesses/lead"))

    collections = {
        "/purchase_invoices": {"show_payments_allocations": "true"},
        "/contacts": {},
        "/bank_accounts": {},
        "/ledger_accounts": {},
        "/artefact_statuses": {},
        "/payment_methods": {},
        "/transaction_types": {},
        "/attachments": {},
        "/contact_payments": {},
        "/other_payments": {},
    }
    _post_fee(api)
    for path, extra in collections.items():
        page = api.one(path, attributes="all", items_per_page=200, **extra)
        contract.check("GET", path, 200, page, listing=True)
        for item in api.items(path, attributes="all", items_per_page=200, **extra)[:SAMPLE_PER_COLLECTION]:
            single = api.one(f"{path}/{item['id']}", **extra)
            contract.check("GET", f"{path}/{{key}}", 200, single)
    # Lists as most callers read them: base attributes only, and a named selection
    contract.check("GET", "/purchase_invoices", 200, api.one("/purchase_invoices", status_id="UNPAID"), listing=True)
    named = api.one("/purchase_invoices", attributes="outstanding_amount,contact,due_date,vendor_reference")
    contract.check("GET", "/purchase_invoices", 200, named, listing=True)
    deleted = api.one("/purchase_invoices", deleted_since="2000-01-01T00:00:00Z", attributes="all")
    assert deleted["$total"] > 0
    contract.check("GET", "/purchase_invoices", 200, deleted, listing=True)

    # POST bodies
    invoice = first_invoice(api, "UNPAID")
    bank = bank_in(api, invoice["currency"]["id"])
    created = api.post("/contact_payments", payment_body(invoice, bank["id"], "1.00"))
    assert created.status_code == 201
    contract.check("POST", "/contact_payments", 201, created.json())
    fee = _post_fee(api)
    contract.check("POST", "/other_payments", 201, fee)
    # A payment reversed: both deleted (204, no body, as the Swagger declares); then they are not found
    for path, key in (("/contact_payments", created.json()["id"]), ("/other_payments", fee["id"])):
        assert "204" in contract.spec["paths"][f"{path}/{{key}}"]["delete"]["responses"]
        deleted_answer = api.session.delete(f"{api.base}{path}/{key}")
        assert (deleted_answer.status_code, deleted_answer.content) == (204, b"")
        contract.operations.add(f"DELETE {path}/{{key}}")
        assert api.get(f"{path}/{key}").status_code == 404

    # The file download is bytes (Accept: application/octet-stream); its declared JSON schema does not apply
    attachment = api.items("/attachments")[0]
    download = api.session.get(
        f"{api.base}/attachments/{attachment['id']}/file", headers={"Accept": "application/octet-stream"}
    )
    assert download.status_code == 200
    assert len(download.content) == api.one(f"/attachments/{attachment['id']}")["file_size"]
    contract.operations.add("GET /attachments/{key}/file (binary)")

    # Then every body fit, and error bodies fit Sage's error array
    for answer in (
        api.get("/purchase_invoices/0123456789abcdef0123456789abcdef"),
        api.post("/contact_payments", {"contact_payment": {"transaction_type_id": "VENDOR_PAYMENT"}}),
        api.get("/attachments", attachment_context_id=attachment["id"]),
        api.session.delete(f"{api.base}/contact_payments/{created.json()['id']}"),
        SageApi(running, "not-a-token").get("/contacts"),
        api.session.get(f"{api.base}/attachments/{attachment['id']}/file"),
    ):
        assert answer.status_code >= 400
        contract.check_error(answer.json())

    swagger_operations = sum(
        1 for op in contract.operations if not op.startswith("GET /businesses") and "binary" not in op
    )
    assert swagger_operations >= 24
    with capsys.disabled():
        print(
            f"\nSage contract: {len(contract.operations)} operations ({swagger_operations} from the Swagger), "
            f"{contract.bodies} bodies, {contract.fields} fields validated against the "
            f"{len(contract.definitions_used)} definitions they reach; {contract.nulls} fields were null "
            f"(allowed: Swagger 2.0 has no nullable); {contract.error_bodies} error bodies fit the error array"
        )


def test_the_contract_check_catches_a_field_the_swagger_does_not_define(
    world: tuple[SageSandbox, str, SageApi],
) -> None:
    # Given a valid purchase invoice body with one invented field and one wrong type
    _, _, api = world
    contract = Contract.load()
    key = api.one("/purchase_invoices", items_per_page=1)["$items"][0]["id"]
    invoice = api.one(f"/purchase_invoices/{key}")
    invented = {**invoice, "amount_due": invoice["outstanding_amount"]}
    mistyped = {**invoice, "total_amount": str(invoice["total_amount"])}
    too_long = {**invoice, "vendor_reference": "X" * 32}
    # When each is checked
    # Then each is refused, so a passing contract test means something
    for body in (invented, mistyped, too_long):
        with pytest.raises(AssertionError):
            contract.check("GET", "/purchase_invoices/{key}", 200, body)
    contract.check("GET", "/purchase_invoices/{key}", 200, invoice)


def _post_fee(api: SageApi) -> dict[str, Any]:
    bank = bank_in(api, "CAD")
    fees = next(
        item
        for item in api.items("/ledger_accounts", visible_in="other_payments")
        if "Bank fees" in item["displayed_as"]
    )
    vendor = api.items("/contacts", contact_type_id="VENDOR")[0]
    body = {
        "other_payment": {
            "transaction_type_id": "OTHER_PAYMENT",
            "date": "2026-11-21",
            "bank_account_id": bank["id"],
            "contact_id": vendor["id"],
            "total_amount": 4.25,
            "reference": "Wire fee",
            "payment_lines": [{"ledger_account_id": fees["id"], "total_amount": 4.25, "details": "Wire fee"}],
        }
    }
    answer = api.post("/other_payments", body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created
