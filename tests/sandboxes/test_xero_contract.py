"""Contract: every body the Xero sandbox serves validates against Xero's own OpenAPI documents.

Sources: the specs' xero/xero_accounting.yaml (docs/providers.md#specs; Accounting API 16.1.0), xero-identity.yaml
(/connections) and xero-webhooks.yaml (event payloads), from XeroAPI/Xero-OpenAPI. Each body is
checked against the matching operation's response schema ($refs resolved in the document) with
openapi-schema-validator's OAS30Validator (OAS31Validator for the 3.1 webhooks document) and its
format checker. Readings made explicit here:

* Xero's schemas do not forbid other properties; this test does (`additionalProperties: false`), so a
  field the sandbox invents fails. The only fields allowed beyond the schemas are those the spec's
  own response examples show Xero sending (the envelope's Id/Status/ProviderName/DateTimeUTC,
  DateString/DueDateString, a line item's ValidationErrors); the test checks they appear there.
* Fields marked `x-is-msdate` / `x-is-msdate-time` must hold MS-JSON dates (`/Date(1573755038314+0000)/`).
* Identity and webhook timestamps are `format: date-time`, but Xero's examples carry no offset
  (`2019-12-07T18:46:19.5165400`); that form is accepted as UTC, any other malformed value is not.
* Operations without a declared 400 (getInvoices) are checked against `#/components/schemas/Error`,
  the schema the document gives every other 400; a 400 element is checked against Element merged with
  the resource it echoes (Payment, BankTransaction), as the spec's examples show.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
import requests
import yaml
from jsonschema import FormatChecker
from jsonschema.exceptions import ValidationError
from jsonschema.validators import extend
from openapi_schema_validator import OAS30Validator, OAS31Validator, oas30_format_checker, oas31_format_checker

from local.sandboxes.generator import generate_ledger
from local.sandboxes.xero import XeroLimits, XeroSandbox
from tests.sandboxes.specs import spec_dir
from tests.sandboxes.test_xero_helpers import CLIENT_ID, Org, connect
from tests.sandboxes.test_xero_webhooks import Receiver

MS_DATE = re.compile(r"^/Date\(-?\d+([+-]\d{4})?\)/$")
OFFSETLESS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?$")
ENVELOPE_FIELDS = {"Id", "Status", "ProviderName", "DateTimeUTC"}
# Fields Xero sends that its schemas omit; each must appear in the spec's response examples.
EXAMPLE_ONLY_FIELDS = {
    "Invoice": {"DateString", "DueDateString"},
    "BankTransaction": {"DateString"},
    "LineItem": {"ValidationErrors"},
}
EXPECTED_OPERATIONS = {
    "getInvoices",
    "getInvoice",
    "getInvoiceAttachments",
    "getInvoiceAttachmentById",
    "getContacts",
    "getContact",
    "getAccounts",
    "getOrganisations",
    "getPayments",
    "createPayments",
    "createPayment",
    "getBankTransactions",
    "createBankTransactions",
    "getPayment",
    "deletePayment",
    "getBankTransaction",
    "updateBankTransaction",
    "getConnections",
    "publishInvoiceEvent",
    "publishContactEvent",
}


def _load(name: str) -> dict[str, Any]:
    with (spec_dir("xero") / name).open(encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.load(handle, Loader=yaml.CSafeLoader)
    return document


def _date_time(value: object) -> bool:
    """RFC 3339 date-time, or Xero's offset-less UTC form."""
    if not isinstance(value, str):
        return True
    if OFFSETLESS.match(value):
        return True
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value and (value.endswith("Z") or re.search(r"[+-]\d{2}:\d{2}$", value) is not None)


def _xero_formats(base: FormatChecker) -> FormatChecker:
    checker = copy.deepcopy(base)
    checker.checks("date-time")(_date_time)
    return checker


def _strict(schema: Any, allowed: dict[str, set[str]], name: str | None = None) -> Any:
    """Forbid properties the schema does not declare (plus the allowed ones), all the way down."""
    if isinstance(schema, list):
        return [_strict(item, allowed) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: _strict(value, allowed) for key, value in schema.items() if key != "properties"}
    if "properties" in schema:
        properties = {key: _strict(value, allowed) for key, value in schema["properties"].items()}
        for extra in allowed.get(name or "", set()):
            properties.setdefault(extra, {})
        result["properties"] = properties
        result.setdefault("additionalProperties", False)
    return result


@dataclass
class Contract:
    """Validates bodies against operations and keeps the tally."""

    accounting: dict[str, Any]
    identity: dict[str, Any]
    webhooks: dict[str, Any]
    operations: set[str] = field(default_factory=set)
    bodies: int = 0
    values: int = 0
    paths: set[str] = field(default_factory=set)
    ms_dates: int = 0

    def __post_init__(self) -> None:
        allowed = dict(EXAMPLE_ONLY_FIELDS)
        schemas = self.accounting["components"]["schemas"]
        for name, schema in schemas.items():
            if "x-objectArrayKey" in schema:
                allowed[name] = ENVELOPE_FIELDS
        self._accounting_components = {
            "schemas": {name: _strict(schema, allowed, name) for name, schema in schemas.items()}
        }
        self._identity_components = {"schemas": _strict(self.identity["components"]["schemas"], {})}
        self._webhook_components = {"schemas": _strict(self.webhooks["components"]["schemas"], {})}
        validator = extend(OAS30Validator, {"x-is-msdate": self._ms_date, "x-is-msdate-time": self._ms_date})
        self._accounting_validator = validator
        self._oas30_formats = _xero_formats(oas30_format_checker)
        self._oas31_formats = _xero_formats(oas31_format_checker)

    def _ms_date(self, validator: Any, marked: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if marked and isinstance(instance, str):
            self.ms_dates += 1
            if not MS_DATE.match(instance):
                yield ValidationError(f"{instance!r} is not an MS-JSON date")

    def operation(self, path: str, method: str) -> dict[str, Any]:
        found: dict[str, Any] = self.accounting["paths"][path][method]
        return found

    def response_schema(self, path: str, method: str, status: int) -> dict[str, Any]:
        responses = self.operation(path, method)["responses"]
        declared = responses.get(str(status), {})
        if "$ref" in declared:
            declared = self.accounting["components"]["responses"][declared["$ref"].rsplit("/", 1)[1]]
        content = declared.get("content", {}).get("application/json")
        if content is not None:
            schema: dict[str, Any] = content["schema"]
            return schema
        assert status == 400, f"{method.upper()} {path} declares no JSON body for {status}"
        return {"$ref": "#/components/schemas/Error"}

    def check(self, path: str, method: str, response: requests.Response, *, echoes: str | None = None) -> None:
        """Validate an Accounting API response body against its operation."""
        schema = self.response_schema(path, method, response.status_code)
        if echoes is not None and response.status_code == 400:
            schema = self._error_echoing(echoes)
        body = response.json()
        root = {**schema, "components": self._accounting_components}
        self._accounting_validator(root, format_checker=self._oas30_formats).validate(body)
        self._tally(self.operation(path, method)["operationId"], body)

    def check_binary(self, path: str, response: requests.Response, expected: bytes) -> None:
        operation = self.operation(path, "get")
        assert "application/octet-stream" in operation["responses"]["200"]["content"]
        assert response.content == expected
        self.operations.add(operation["operationId"])
        self.bodies += 1

    def check_connections(self, response: requests.Response) -> None:
        operation = self.identity["paths"]["/Connections"]["get"]
        schema = operation["responses"][str(response.status_code)]["content"]["application/json"]["schema"]
        root = {**schema, "components": self._identity_components}
        body = response.json()
        OAS30Validator(root, format_checker=self._oas30_formats).validate(body)
        self._tally(operation["operationId"], body)

    def check_webhook(self, body: bytes) -> None:
        payload = json.loads(body)
        categories = {event["eventCategory"] for event in payload["events"]}
        assert len(categories) == 1
        hook = {"INVOICE": "invoices", "CONTACT": "contacts"}[categories.pop()]
        operation = self.webhooks["webhooks"][hook]["post"]
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        root = {**schema, "components": self._webhook_components}
        OAS31Validator(root, format_checker=self._oas31_formats).validate(payload)
        self._tally(operation["operationId"], payload)

    def _error_echoing(self, resource: str) -> dict[str, Any]:
        schemas = self._accounting_components["schemas"]
        element = {
            "type": "object",
            "additionalProperties": False,
            "properties": {**schemas[resource]["properties"], **schemas["Element"]["properties"]},
        }
        error = copy.deepcopy(schemas["Error"])
        error["properties"]["Elements"] = {"type": "array", "items": element}
        return error

    def _tally(self, operation_id: str, body: Any) -> None:
        self.operations.add(operation_id)
        self.bodies += 1
        self._walk(f"{operation_id}:", body)

    def _walk(self, path: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                self.values += 1
                self.paths.add(f"{path}.{key}")
                self._walk(f"{path}.{key}", item)
        elif isinstance(value, list):
            for item in value:
                self._walk(f"{path}[]", item)


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract(_load("xero_accounting.yaml"), _load("xero-identity.yaml"), _load("xero-webhooks.yaml"))


@pytest.fixture
def org() -> Iterator[Org]:
    # The walk makes a few hundred calls; the minute limit is raised so it answers them all.
    sandbox = XeroSandbox(seed=51, limits=XeroLimits(tenant_per_minute=10_000))
    ledger = generate_ledger(seed=51, bills=80, documents=8, as_of=sandbox.clock.now())
    with sandbox:
        yield connect(sandbox, ledger)


def _payment(org: Org, bill_key: str, amount: str, account: str = "bank-cad") -> dict[str, Any]:
    return {
        "Invoice": {"InvoiceID": org.invoice_id(bill_key)},
        "Account": {"AccountID": org.account_id(account)},
        "Date": "2026-11-20",
        "Amount": amount,
        "Reference": "PO-2001",
    }


def _fee(org: Org, code: str = "6900") -> dict[str, Any]:
    return {
        "Type": "SPEND",
        "Contact": {"ContactID": org.sandbox.contact_id(org.tenant, org.ledger.vendors[0].key)},
        "BankAccount": {"AccountID": org.account_id("bank-cad")},
        "Reference": "PO-2001 fee",
        "LineItems": [{"Description": "Wire fee", "UnitAmount": "12.50", "AccountCode": code}],
    }


def _exercise(org: Org, contract: Contract) -> None:
    """Call every route the sandbox serves and check each body."""
    invoices, contacts = "/Invoices", "/Contacts"
    open_keys = [b.key for b in org.ledger.bills if b.state in ("open", "part_paid") and b.currency == "CAD"]
    with_document = next(b for b in org.ledger.bills if b.attachment is not None)

    contract.check(invoices, "get", org.get("Invoices", where='Type=="ACCPAY" AND Status=="AUTHORISED"', page=1))
    contract.check(invoices, "get", org.get("Invoices", Statuses="PAID,VOIDED,DRAFT,DELETED", page=1))
    contract.check(invoices, "get", org.get("Invoices"))
    contract.check(invoices, "get", org.get("Invoices", summaryOnly="true"))
    contract.check(invoices, "get", org.get("Invoices", where='Contact.ContactID=="not-a-guid"'))
    for bill in org.ledger.bills:
        contract.check("/Invoices/{InvoiceID}", "get", org.get(f"Invoices/{org.invoice_id(bill.key)}"))

    attachments = org.get(f"Invoices/{org.invoice_id(with_document.key)}/Attachments")
    contract.check("/Invoices/{InvoiceID}/Attachments", "get", attachments)
    assert with_document.attachment is not None
    listed = attachments.json()["Attachments"][0]
    download = org.get(f"Invoices/{org.invoice_id(with_document.key)}/Attachments/{listed['AttachmentID']}")
    contract.check_binary(
        "/Invoices/{InvoiceID}/Attachments/{AttachmentID}", download, with_document.attachment.content
    )

    contract.check(contacts, "get", org.get("Contacts", page=1, includeArchived="true"))
    contract.check(contacts, "get", org.get("Contacts", summaryOnly="true"))
    for vendor in org.ledger.vendors:
        contact_id = org.sandbox.contact_id(org.tenant, vendor.key)
        contract.check("/Contacts/{ContactID}", "get", org.get(f"Contacts/{contact_id}"))
    contract.check("/Accounts", "get", org.get("Accounts"))
    contract.check("/Organisation", "get", org.get("Organisation"))

    payments = "/Payments"
    first = org.put("Payments", {"Payments": [_payment(org, open_keys[0], "10.00")]})
    contract.check(payments, "put", first)
    # A payment reversed: read, deleted (Status DELETED); a reconciled one is refused.
    payment_id = first.json()["Payments"][0]["PaymentID"]
    one = "/Payments/{PaymentID}"
    contract.check(one, "get", org.get(f"Payments/{payment_id}"))
    contract.check(one, "post", org.post(f"Payments/{payment_id}", {"Payments": [{"Status": "DELETED"}]}))
    contract.check(one, "post", org.post(f"Payments/{payment_id}", {"Amount": "1.00"}), echoes="Payment")
    second = org.put("Payments", {"Payments": [_payment(org, open_keys[0], "1.00")]}).json()["Payments"][0]
    org.sandbox.reconcile(org.tenant, second["PaymentID"])
    refused_delete = org.post(f"Payments/{second['PaymentID']}", {"Payments": [{"Status": "DELETED"}]})
    assert refused_delete.status_code == 400
    contract.check(one, "post", refused_delete, echoes="Payment")
    eur = next(b.key for b in org.ledger.bills if b.state == "open" and b.currency == "EUR")
    contract.check(payments, "put", org.put("Payments", {"Payments": [_payment(org, eur, "5.00")]}))
    contract.check(payments, "post", org.post("Payments", _payment(org, open_keys[1], "1.00")))
    too_much = _payment(org, open_keys[2], "999999.00")
    wrong_account = _payment(org, open_keys[2], "1.00", account="exp-bank-fees")
    contract.check(payments, "put", org.put("Payments", {"Payments": [too_much, wrong_account]}), echoes="Payment")
    mixed = {"Payments": [_payment(org, open_keys[3], "2.00"), too_much]}
    contract.check(payments, "put", org.put("Payments", mixed, summarizeErrors="false"))
    reused = org.put("Payments", {"Payments": [_payment(org, open_keys[4], "3.00")]}, headers={"Idempotency-Key": "k1"})
    contract.check(payments, "put", reused)
    refused = org.put(
        "Payments", {"Payments": [_payment(org, open_keys[4], "4.00")]}, headers={"Idempotency-Key": "k1"}
    )
    contract.check(payments, "put", refused)
    unreadable = requests.put(
        org.url("Payments"), data=b"{", headers={**org.headers, "Content-Type": "application/json"}, timeout=10
    )
    contract.check(payments, "put", unreadable)
    org.sandbox.pay_bill_elsewhere(org.tenant, org.invoice_id(open_keys[5]))
    contract.check(payments, "get", org.get("Payments"))
    contract.check(payments, "get", org.get("Payments", where='Reference=="PO-2001"', page=1))

    transactions = "/BankTransactions"
    spent = org.put("BankTransactions", {"BankTransactions": [_fee(org)]})
    contract.check(transactions, "put", spent)
    transaction_id = spent.json()["BankTransactions"][0]["BankTransactionID"]
    one = "/BankTransactions/{BankTransactionID}"
    contract.check(one, "get", org.get(f"BankTransactions/{transaction_id}"))
    deleted = {"BankTransactions": [{"Status": "DELETED"}]}
    contract.check(one, "post", org.post(f"BankTransactions/{transaction_id}", deleted))
    bad_fee = {"BankTransactions": [_fee(org, code="477")]}
    contract.check(transactions, "put", org.put("BankTransactions", bad_fee), echoes="BankTransaction")
    contract.check(transactions, "get", org.get("BankTransactions", page=1))

    contract.check_connections(
        requests.get(f"{org.sandbox.base_url}/connections", headers={"Authorization": org.headers["Authorization"]})
    )


def test_every_response_body_fits_xeros_openapi(
    org: Org, contract: Contract, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a webhook receiver, so event payloads are checked too
    with Receiver(lambda body, signature: 200) as receiver:
        org.sandbox.configure_webhook(CLIENT_ID, receiver.url)

        # When every route is exercised, reads and writes, successes and errors
        _exercise(org, contract)
        contact = org.sandbox.contact_id(org.tenant, org.ledger.vendors[1].key)
        org.sandbox.edit_vendor(org.tenant, contact, email="changed@vendor.example")
        org.sandbox.wait_for_webhooks()

    # Then each body validated against its operation (validate raises otherwise)...
    for body, _ in receiver.deliveries:
        contract.check_webhook(body)

    # ...and every operation the sandbox serves was covered
    assert contract.operations == EXPECTED_OPERATIONS
    with capsys.disabled():
        print(
            f"\nXero contract: {len(contract.operations)} operations, {contract.bodies} bodies, "
            f"{contract.values} field values ({len(contract.paths)} distinct field paths), "
            f"{contract.ms_dates} MS-JSON dates checked"
        )


def test_fields_allowed_beyond_the_schemas_appear_in_the_specs_examples(contract: Contract) -> None:
    text = (spec_dir("xero") / "xero_accounting.yaml").read_text(encoding="utf-8")
    for name in set().union(*EXAMPLE_ONLY_FIELDS.values(), ENVELOPE_FIELDS):
        assert re.search(rf"^\s+{name}:", text, re.MULTILINE), name


def test_an_invented_field_would_fail_the_contract(org: Org, contract: Contract) -> None:
    # Given a real body with one field Xero does not have
    response = org.get("Accounts")
    tampered = response.json()
    tampered["Accounts"][0]["Colour"] = "red"
    fake = requests.Response()
    fake.status_code = 200
    fake._content = json.dumps(tampered).encode()

    # Then the strict contract rejects it
    with pytest.raises(ValidationError):
        contract.check("/Accounts", "get", fake)


def test_a_plain_iso_date_where_xero_uses_ms_json_would_fail(contract: Contract) -> None:
    invoice = {"Invoices": [{"InvoiceID": "d4956132-ed94-4dd7-9eaa-aa22dfdf06f2", "Date": "2026-11-20"}]}
    fake = requests.Response()
    fake.status_code = 200
    fake._content = json.dumps(invoice).encode()

    with pytest.raises(ValidationError, match="MS-JSON"):
        contract.check("/Invoices", "get", fake)
