"""Helpers shared by the Xero sandbox tests: an organisation connected by an app, and calls to its API.

Holds no tests; the test modules import from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from local.sandboxes.generator import Ledger
from local.sandboxes.xero import XeroSandbox

CLIENT_ID, SECRET, REDIRECT = "payedge-xero", "xero-s3cret", "http://127.0.0.1:9/oauth/xero/callback"
API = "/api.xro/2.0"


@dataclass
class Org:
    """One organisation in a running sandbox, with an app's access token and the tenant header."""

    sandbox: XeroSandbox
    tenant: str
    ledger: Ledger
    headers: dict[str, str]

    def url(self, path: str) -> str:
        return f"{self.sandbox.base_url}{API}/{path}"

    def get(self, path: str, *, headers: dict[str, str] | None = None, **params: Any) -> requests.Response:
        return requests.get(self.url(path), params=params, headers={**self.headers, **(headers or {})}, timeout=10)

    def put(self, path: str, body: Any, *, headers: dict[str, str] | None = None, **params: Any) -> requests.Response:
        return requests.put(
            self.url(path), json=body, params=params, headers={**self.headers, **(headers or {})}, timeout=10
        )

    def post(self, path: str, body: Any, *, headers: dict[str, str] | None = None, **params: Any) -> requests.Response:
        return requests.post(
            self.url(path), json=body, params=params, headers={**self.headers, **(headers or {})}, timeout=10
        )

    def records(self, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        records: list[dict[str, Any]] = response.json()[key]
        return records

    def invoice_id(self, bill_key: str) -> str:
        return self.sandbox.invoice_id(self.tenant, bill_key)

    def account_id(self, account_key: str) -> str:
        return self.sandbox.account_id(self.tenant, account_key)

    def bill_keys(self, *states: str) -> list[str]:
        return [bill.key for bill in self.ledger.bills if bill.state in states]

    def bill(self, bill_key: str) -> dict[str, Any]:
        (record,) = self.records(f"Invoices/{self.invoice_id(bill_key)}", "Invoices")
        return record


def connect(sandbox: XeroSandbox, ledger: Ledger, *, name: str = "Maple Books Ltd.") -> Org:
    """Add the ledger as an organisation and connect the PayEdge app to it (consent skipped)."""
    tenant = sandbox.add_tenant(ledger, name=name)
    sandbox.register_app(CLIENT_ID, SECRET, [REDIRECT], name="PayEdge Connect")
    token = sandbox.issue_tokens(CLIENT_ID, tenants=[tenant])["access_token"]
    headers = {"Authorization": f"Bearer {token}", "xero-tenant-id": tenant, "Accept": "application/json"}
    return Org(sandbox, tenant, ledger, headers)
