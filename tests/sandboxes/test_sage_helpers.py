"""Helpers shared by the Sage sandbox tests: start a sandbox, connect through OAuth, call the API.

Holds no tests; the test modules import from it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from local.sandboxes.generator import Ledger, generate_ledger
from local.sandboxes.sage import SageSandbox

CLIENT_ID = "payedge-sage-client"
CLIENT_SECRET = "payedge-sage-secret"
REDIRECT_URI = "https://payedge.example/oauth/sage/callback"
COMPANY = "Maple Leaf Trading"


def small_ledger(*, seed: int = 7, bills: int = 30, documents: int = 6, base_currency: str = "CAD") -> Ledger:
    return generate_ledger(seed=seed, bills=bills, documents=documents, base_currency=base_currency)


def start_sandbox(
    *, ledger: Ledger | None = None, auto_approve: bool = True, **options: Any
) -> tuple[SageSandbox, str]:
    """A running sandbox with the app registered and one business; returns it and the business id."""
    sandbox = SageSandbox(auto_approve=auto_approve, **options)
    sandbox.register_app(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    business_id = sandbox.add_tenant(ledger or small_ledger(), name=COMPANY)
    sandbox.start()
    return sandbox, business_id


def authorize_params(**overrides: str) -> dict[str, str]:
    params = {
        "filter": "apiv3.1",
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "full_access",
        "state": "state-123",
    }
    params.update(overrides)
    return params


def redirect_query(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI)
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def obtain_code(sandbox: SageSandbox, **overrides: str) -> str:
    """Run the authorization request (the sandbox auto-approves) and return the code."""
    response = requests.get(
        f"{sandbox.base_url}/oauth2/auth/central", params=authorize_params(**overrides), allow_redirects=False
    )
    return redirect_query(response)["code"]


def token_request(sandbox: SageSandbox, **form: str) -> requests.Response:
    body = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **form}
    return requests.post(f"{sandbox.base_url}/token", data=body, headers={"Accept": "application/json"})


def exchange_code(sandbox: SageSandbox, code: str, **extra: str) -> requests.Response:
    return token_request(sandbox, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI, **extra)


def refresh(sandbox: SageSandbox, refresh_token: str) -> requests.Response:
    return token_request(sandbox, grant_type="refresh_token", refresh_token=refresh_token)


def connect(sandbox: SageSandbox, scope: str = "full_access") -> dict[str, Any]:
    """The token response of a complete authorization-code flow."""
    response = exchange_code(sandbox, obtain_code(sandbox, scope=scope))
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


class SageApi:
    """A minimal Sage API client: bearer token, optional X-Business."""

    def __init__(self, sandbox: SageSandbox, access_token: str, business_id: str | None = None) -> None:
        self.base = f"{sandbox.base_url}/v3.1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {access_token}"
        self.session.headers["Accept"] = "application/json"
        if business_id is not None:
            self.session.headers["X-Business"] = business_id

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(f"{self.base}{path}", params=params)

    def post(self, path: str, body: Any) -> requests.Response:
        return self.session.post(f"{self.base}{path}", json=body)

    def items(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a list endpoint, following `$next` (a path relative to /v3.1)."""
        response = self.get(path, **params)
        collected: list[dict[str, Any]] = []
        while True:
            assert response.status_code == 200, response.text
            page = response.json()
            collected.extend(page["$items"])
            if page["$next"] is None:
                return collected
            response = self.session.get(f"{self.base}{page['$next']}")

    def one(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def api_for(sandbox: SageSandbox, business_id: str | None = None, scope: str = "full_access") -> SageApi:
    return SageApi(sandbox, connect(sandbox, scope)["access_token"], business_id)


def first_invoice(api: SageApi, status_id: str, **filters: Any) -> dict[str, Any]:
    page = api.one("/purchase_invoices", status_id=status_id, attributes="all", items_per_page=200, **filters)
    assert page["$items"], f"the ledger has no {status_id} invoice"
    item: dict[str, Any] = page["$items"][0]
    return item


def bank_in(api: SageApi, currency: str, *, active: bool = True) -> dict[str, Any]:
    for bank in api.items("/bank_accounts", attributes="all"):
        if bank["currency"]["id"] == currency and bank["is_active"] is active:
            return bank
    raise AssertionError(f"no {'active' if active else 'inactive'} {currency} bank account")


def payment_body(invoice: dict[str, Any], bank_id: str, amount: str, **overrides: Any) -> dict[str, dict[str, Any]]:
    fields: dict[str, Any] = {
        "transaction_type_id": "VENDOR_PAYMENT",
        "contact_id": invoice["contact"]["id"],
        "bank_account_id": bank_id,
        "payment_method_id": "BANK_TRANSFER",
        "date": "2026-11-20",
        "total_amount": float(amount),
        "reference": "ACH-20261120-01",
        "allocated_artefacts": [{"artefact_id": invoice["id"], "amount": float(amount)}],
    }
    fields.update(overrides)
    return {"contact_payment": fields}
