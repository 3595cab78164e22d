"""Contract: every field the QuickBooks sandbox emits exists on its type in Intuit's XSDs.

The XSDs (the specs' quickbooks/*.xsd, docs/providers.md#specs; from intuit/QuickBooks-V3-Java-SDK) are read with
xml.etree: complexContent extension chains are followed to their base types, element types are
followed across the four files, `ref="IntuitObject"` stands for every entity of that substitution
group, attributes and simpleContent values (`{"value", "name"}` of a ReferenceType) count as fields.
Whole response bodies are checked from `IntuitResponse` down, so envelopes (QueryResponse,
CDCResponse, BatchItemResponse, Fault, Error, time) are covered as well as the entities.
"""

from __future__ import annotations

import functools
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from local.sandboxes.generator import generate_ledger
from local.sandboxes.quickbooks import QuickBooksSandbox
from tests.sandboxes.specs import spec_dir

XS = "{http://www.w3.org/2001/XMLSchema}"
FINANCE_NS = "{http://schema.intuit.com/finance/v3}"
CLIENT_ID, SECRET, REDIRECT = "contract-app", "contract-secret", "http://127.0.0.1:9/callback"
ENTITY_TYPES = {"Bill", "Vendor", "Account", "Attachable", "BillPayment", "Purchase"}


def _local(name: str | None) -> str | None:
    return name.split(":")[-1] if name else None


class Schema:
    """Complex types, top-level elements and substitution groups of a set of XSD files."""

    def __init__(self, folder: Path) -> None:
        self.types: dict[str, ET.Element] = {}
        self.groups: dict[str, ET.Element] = {}
        self.elements: dict[str, str | None] = {}
        self.substitutes: dict[str, dict[str, str | None]] = {}
        for path in sorted(folder.glob("*.xsd")):
            root = ET.parse(path).getroot()
            for complex_type in root.findall(f"{XS}complexType"):
                self.types[str(complex_type.get("name"))] = complex_type
            for group in root.findall(f"{XS}group"):
                self.groups[str(group.get("name"))] = group
            for element in root.findall(f"{XS}element"):
                name, type_name = str(element.get("name")), element.get("type")
                self.elements[name] = type_name
                group_name = _local(element.get("substitutionGroup"))
                if group_name:
                    self.substitutes.setdefault(group_name, {})[name] = type_name

    @functools.cache  # noqa: B019 - one Schema per test session
    def fields(self, type_name: str) -> dict[str, str | None]:
        """Field name → type name (None for simple values) of a complex type, inherited ones included."""
        complex_type = self.types.get(type_name)
        if complex_type is None:
            return {}
        found: dict[str, str | None] = {}
        scope = complex_type
        for content_tag in ("complexContent", "simpleContent"):
            content = complex_type.find(f"{XS}{content_tag}")
            if content is None:
                continue
            derivation = content.find(f"{XS}extension")
            if derivation is None:
                derivation = content.find(f"{XS}restriction")
            assert derivation is not None
            base = _local(derivation.get("base"))
            if content_tag == "complexContent" and base:
                found.update(self.fields(base))
            else:
                found["value"] = None  # JSON writes simple content as "value"
            scope = derivation
        self._collect(scope, found)
        return found

    def _collect(self, node: ET.Element, found: dict[str, str | None]) -> None:
        for child in node:
            tag = child.tag.removeprefix(XS)
            if tag == "element":
                ref = _local(child.get("ref"))
                if ref is None:
                    found[str(child.get("name"))] = child.get("type")
                else:
                    # A reference to an abstract head (IntuitObject) admits it and every member of its group.
                    found[ref] = self.elements.get(ref)
                    found.update(self.substitutes.get(ref, {}))
            elif tag == "attribute":
                found[str(child.get("name"))] = None
            elif tag == "group" and child.get("ref"):
                self._collect(self.groups[str(_local(child.get("ref")))], found)
            elif tag in ("sequence", "choice", "all"):
                self._collect(child, found)


@dataclass
class Report:
    checked: set[tuple[str, str]] = field(default_factory=set)
    values: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def types(self) -> set[str]:
        return {type_name for type_name, _ in self.checked}


def check(schema: Schema, value: Any, type_name: str, where: str, report: Report, ignore_case: bool = False) -> None:
    """Record every key of `value` (JSON) as a field of `type_name`; note those the XSD lacks."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            check(schema, item, type_name, f"{where}[{index}]", report, ignore_case)
        return
    if not isinstance(value, dict):
        return
    fields = schema.fields(type_name)
    by_name = {name.lower(): name for name in fields} if ignore_case else {name: name for name in fields}
    for key, item in value.items():
        name = by_name.get(key.lower() if ignore_case else key)
        if name is None:
            report.problems.append(f"{where}.{key}: no field {key!r} on XSD type {type_name}")
            continue
        report.checked.add((type_name, name))
        report.values += 1
        child_type = fields[name]
        if child_type is None or child_type.startswith("xs"):
            if isinstance(item, dict) or (isinstance(item, list) and any(isinstance(i, dict) for i in item)):
                report.problems.append(f"{where}.{key}: an object where XSD type {type_name} has a simple value")
            continue
        check(schema, item, child_type, f"{where}.{key}", report, ignore_case)


def check_xml(schema: Schema, element: ET.Element, type_name: str, where: str, report: Report) -> None:
    fields = schema.fields(type_name)
    for attribute in element.attrib:
        if attribute in fields:
            report.checked.add((type_name, attribute))
            report.values += 1
        else:
            report.problems.append(f"{where}@{attribute}: no attribute on XSD type {type_name}")
    for child in element:
        name = child.tag.removeprefix(FINANCE_NS)
        if name not in fields:
            report.problems.append(f"{where}/{name}: no field on XSD type {type_name}")
            continue
        report.checked.add((type_name, name))
        report.values += 1
        child_type = fields[name]
        if child_type is not None and not child_type.startswith("xs"):
            check_xml(schema, child, child_type, f"{where}/{name}", report)


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema(spec_dir("quickbooks"))


@pytest.fixture(scope="module")
def emitted() -> Iterator[dict[str, Any]]:
    """Bodies the sandbox sent while a client read, paid, failed and got notified."""
    sandbox = QuickBooksSandbox(seed=11)
    sandbox.register_app(CLIENT_ID, SECRET, [REDIRECT])
    realm = sandbox.add_tenant(generate_ledger(seed=11, bills=60, documents=8, as_of=sandbox.clock.now()))
    # Deliveries to a closed port fail fast; their bodies are still recorded.
    sandbox.configure_webhooks("http://127.0.0.1:9/hooks", "verifier")
    with sandbox:
        base = f"{sandbox.base_url}/v3/company/{realm}"
        token = sandbox.issue_tokens(CLIENT_ID, realm)["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        json_bodies: list[dict[str, Any]] = []

        def get(path: str, **params: str) -> dict[str, Any]:
            body = requests.get(f"{base}/{path}", params=params, headers=headers, timeout=10).json()
            json_bodies.append(body)
            return body

        def post(path: str, payload: object, **params: str) -> dict[str, Any]:
            body = requests.post(f"{base}/{path}", json=payload, params=params, headers=headers, timeout=10).json()
            json_bodies.append(body)
            return body

        for entity in ("Bill", "BillPayment", "Attachable"):
            get("query", query=f"select * from {entity} maxresults 1000")
        for entity in ("Vendor", "Account"):
            get("query", query=f"select * from {entity} where Active in (true, false) maxresults 1000")
        get("query", query="select count(*) from Bill where Balance > '0'")
        bills = sandbox.bills(realm)
        open_bill = next(b for b in bills if b["Balance"] > 0 and b["CurrencyRef"]["value"] == "CAD")
        bank = next(a for a in sandbox.accounts(realm) if a["AccountType"] == "Bank" and a["Active"])
        fees = next(a for a in sandbox.accounts(realm) if a["Name"] == "Bank fees")
        get(f"bill/{open_bill['Id']}")
        get(f"vendor/{open_bill['VendorRef']['value']}")
        attachable = sandbox.attachables(realm)[0]
        get(f"attachable/{attachable['Id']}")
        payment: dict[str, Any] = {
            "VendorRef": {"value": open_bill["VendorRef"]["value"]},
            "PayType": "Check",
            "CheckPayment": {"BankAccountRef": {"value": bank["Id"]}},
            "TotalAmt": 1.00,
            "DocNumber": "PAY-0001",
            "PrivateNote": "Paid via PayEdge",
            "Line": [{"Amount": 1.00, "LinkedTxn": [{"TxnId": open_bill["Id"], "TxnType": "Bill"}]}],
        }
        paid = post("billpayment", payment, requestid="contract-1")["BillPayment"]
        fee = {
            "PaymentType": "Check",
            "AccountRef": {"value": bank["Id"]},
            "Line": [
                {
                    "Amount": 2.50,
                    "DetailType": "AccountBasedExpenseLineDetail",
                    "AccountBasedExpenseLineDetail": {"AccountRef": {"value": fees["Id"]}},
                }
            ],
        }
        spent = post("purchase", fee, requestid="contract-2")["Purchase"]
        get("query", query="select * from Purchase")
        # A payment reversed: the BillPayment voided (a sparse update), its fee's Purchase deleted.
        post("billpayment", {"Id": paid["Id"], "SyncToken": paid["SyncToken"]}, operation="void")
        void = {"Id": paid["Id"], "SyncToken": paid["SyncToken"], "sparse": True}
        post("billpayment", void, operation="update", include="void")
        post("billpayment", void, operation="update", include="void")  # stale SyncToken
        get(f"billpayment/{paid['Id']}")
        post("purchase", {"Id": spent["Id"], "SyncToken": spent["SyncToken"]}, operation="delete")
        get(f"purchase/{spent['Id']}")
        post("billpayment", {**payment, "TotalAmt": 999999.00, "Line": [{**payment["Line"][0], "Amount": 999999.00}]})
        get("query", query="select * from Bill maxresults 1001")
        get("query", query="select * from Bill where Balance > '0' or Id = '1'")
        get("bill/999999")
        post("batch", {"BatchItemRequest": [
            {"bId": "1", "operation": "create", "BillPayment": {**payment, "TotalAmt": 0.50,
                                                                 "Line": [{**payment["Line"][0], "Amount": 0.50}]}},
            {"bId": "2", "operation": "create", "BillPayment": {**payment, "VendorRef": {"value": "999999"}}},
            {"bId": "3", "Query": "select * from Vendor maxresults 2"},
        ]})  # fmt: skip
        other_bill = next(b for b in bills if b["Balance"] > 0 and b["Id"] != open_bill["Id"])
        sandbox.void_bill(realm, other_bill["Id"])
        spared = {open_bill["Id"], other_bill["Id"]}
        sandbox.delete_bill(realm, next(b["Id"] for b in bills if b["Balance"] > 0 and b["Id"] not in spared))
        sandbox.edit_vendor(realm, open_bill["VendorRef"]["value"], email="new@example.com")
        since = (sandbox.clock.now().replace(microsecond=0)).isoformat().replace("+00:00", "Z")
        sandbox.clock.advance(1)
        sandbox.pay_bill_elsewhere(realm, open_bill["Id"], Decimal("1.00"))
        get("cdc", entities="Bill,Vendor,BillPayment,Purchase,Attachable,Account,Invoice", changedSince=since)
        get("cdc", entities="Bill,Vendor", changedSince="2020-01-01")

        other_realm = sandbox.add_tenant(generate_ledger(seed=12, bills=3, as_of=sandbox.clock.now()))
        wrong_realm = requests.get(
            f"{sandbox.base_url}/v3/company/{other_realm}/query", params={"query": "select * from Bill"},
            headers=headers, timeout=10,
        ).json()  # fmt: skip
        json_bodies.append(wrong_realm)
        gateway = requests.get(
            f"{base}/query", params={"query": "select * from Bill"},
            headers={"Authorization": "Bearer not-a-token-but-long-enough", "Accept": "application/json"}, timeout=10,
        ).json()  # fmt: skip
        sandbox.faults.throttle("query")
        throttled = requests.get(f"{base}/query", params={"query": "select * from Bill"}, headers=headers, timeout=10)
        sandbox.wait_for_webhooks()
        events = [event for delivery in sandbox.webhook_deliveries() for event in json.loads(delivery.body)]
        yield {"json": json_bodies, "gateway": gateway, "xml": throttled.text, "events": events}


def test_every_emitted_field_exists_in_intuits_xsds(schema: Schema, emitted: dict[str, Any]) -> None:
    # Given the bodies a client saw while reading, paying, failing and being notified
    report = Report()

    # When each is checked against the XSD types, from IntuitResponse down
    for index, body in enumerate(emitted["json"]):
        check(schema, body, "IntuitResponse", f"response[{index}]", report)
    # The gateway's 401 is the IntuitResponse bean serialized with camelCase names.
    check(schema, emitted["gateway"], "IntuitResponse", "gateway-401", report, ignore_case=True)
    check_xml(schema, ET.fromstring(emitted["xml"].encode()), "IntuitResponse", "throttled-429", report)
    for index, event in enumerate(emitted["events"]):
        entity_type = event["type"].split(".")[1]
        type_name = next(name for name in ENTITY_TYPES if name.lower() == entity_type)
        check(schema, event["data"], type_name, f"webhook[{index}].data", report)

    # Then nothing the sandbox sent is unknown to Intuit's schema, and the check covered every entity
    entity_types = sorted(report.types & ENTITY_TYPES)
    print(
        f"\nQuickBooks contract: {len(report.types)} XSD types ({len(entity_types)} entity types: "
        f"{', '.join(entity_types)}), {len(report.checked)} distinct fields, {report.values} values checked"
    )
    assert report.problems == []
    nested = {"ModificationMetaData", "ReferenceType", "LinkedTxn", "Line", "PhysicalAddress", "EmailAddress",
              "TelephoneNumber", "AccountBasedExpenseLineDetail", "BillPaymentCheck", "AttachableRef",
              "QueryResponse", "CDCResponse", "BatchItemResponse", "Fault", "Error", "IntuitResponse"}  # fmt: skip
    assert set(entity_types) == ENTITY_TYPES
    assert nested <= report.types


def test_the_checker_rejects_a_field_intuit_does_not_have(schema: Schema) -> None:
    # Given a bill with a Status field (QBO bills have none) and an object where a string belongs
    body = {"Bill": [{"Id": "1", "Status": "Open", "DocNumber": {"value": "x"}}], "time": "2026-01-01T00:00:00Z"}
    report = Report()

    # When it is checked
    check(schema, {"QueryResponse": body}, "IntuitResponse", "made-up", report)

    # Then both are reported, and the genuine fields are not
    assert report.problems == [
        "made-up.QueryResponse.Bill[0].Status: no field 'Status' on XSD type Bill",
        "made-up.QueryResponse.Bill[0].DocNumber: an object where XSD type Bill has a simple value",
        "made-up.QueryResponse.time: no field 'time' on XSD type QueryResponse",
    ]
    assert ("Bill", "Id") in report.checked


def test_inherited_and_cross_file_fields_are_found(schema: Schema) -> None:
    # Given Bill (Finance.xsd) extends PurchaseByVendor → Transaction → IntuitEntity (IntuitBaseTypes.xsd)
    # When its fields are read
    bill = schema.fields("Bill")

    # Then fields of every level are there, with their types
    assert bill["Balance"] == "xs:decimal"
    assert bill["MetaData"] == "ModificationMetaData"
    assert bill["VendorRef"] == "ReferenceType"
    assert "status" in bill and "Id" in bill
    assert set(schema.fields("ReferenceType")) == {"value", "name", "type"}
    assert "Bill" in schema.fields("QueryResponse")
