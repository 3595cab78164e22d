"""Xero (Accounting API 2.0): OAuth, organisations, accounts.

Facts: ../../../../shared/PROVIDERS.md section 2 (endpoints, scopes, tenants, limits).
"""

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

from payedge_connect.models import Provider
from payedge_connect.providers.base import (
    AccountKind,
    LedgerAccount,
    OAuthSpec,
    Tenant,
    rebase,
)
from payedge_connect.providers.http import CallCounter, ProviderApi

AUTHORIZE_URL = "https://login.xero.com/identity/connect/authorize"
TOKEN_URL = "https://identity.xero.com/connect/token"
REVOKE_URL = "https://identity.xero.com/connect/revocation"
IDENTITY_API_URL = "https://api.xero.com"  # GET /connections lives beside api.xro
API_URL = "https://api.xero.com/api.xro/2.0"

# Apps created from 2 March 2026 only get granular scopes; older apps keep the broad ones until 2027.
GRANULAR_SCOPES = (
    "offline_access",
    "accounting.invoices.read",
    "accounting.payments",
    "accounting.banktransactions",
    "accounting.contacts.read",
    "accounting.settings.read",
    "accounting.attachments.read",
)
BROAD_SCOPES = (
    "offline_access",
    "accounting.transactions",
    "accounting.contacts.read",
    "accounting.settings.read",
    "accounting.attachments.read",
)
# Account types a payment fee can be booked to.
_EXPENSE_TYPES = {"EXPENSE", "OVERHEADS", "DIRECTCOSTS"}


def authentication_event_id(access_token: str) -> str | None:
    """The `authentication_event_id` claim of Xero's JWT access token (read, not verified: we just got
    it from Xero's token endpoint over TLS)."""
    try:
        payload = access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    value = claims.get("authentication_event_id")
    return value if isinstance(value, str) else None


class XeroConnector:
    provider = Provider.XERO

    def __init__(self, *, base_url: str | None = None, scope_set: str = "granular") -> None:
        self._base_url = base_url
        self._scopes = GRANULAR_SCOPES if scope_set == "granular" else BROAD_SCOPES

    @property
    def oauth(self) -> OAuthSpec:
        return OAuthSpec(
            authorize_url=rebase(AUTHORIZE_URL, self._base_url),
            token_url=rebase(TOKEN_URL, self._base_url),
            revoke_url=rebase(REVOKE_URL, self._base_url),
            scopes=self._scopes,
            pkce=True,
            client_auth="basic",
            revocation_body="form",
        )

    def api(
        self,
        tenant_id: str,
        *,
        access_token: Callable[[], str],
        refresh_access_token: Callable[[], str] | None = None,
        calls: CallCounter | None = None,
    ) -> ProviderApi:
        return ProviderApi(
            rebase(API_URL, self._base_url),
            access_token=access_token,
            refresh_access_token=refresh_access_token,
            headers={"xero-tenant-id": tenant_id},
            calls=calls,
        )

    def tenants(self, access_token: str, callback_params: Mapping[str, str]) -> list[Tenant]:
        # Only the organisations connected in THIS authorisation: a user's earlier grants to our
        # app show up in /connections too, and must not be picked by mistake.
        params: dict[str, str] = {}
        event_id = authentication_event_id(access_token)
        if event_id:
            params["authEventId"] = event_id
        identity = ProviderApi(rebase(IDENTITY_API_URL, self._base_url), access_token=lambda: access_token)
        connections: list[dict[str, Any]] = identity.get("connections", params=params).json()
        return [
            Tenant(tenant_id=item["tenantId"], name=item.get("tenantName") or item["tenantId"])
            for item in connections
            if item.get("tenantType", "ORGANISATION") == "ORGANISATION"
        ]

    def accounts(self, api: ProviderApi) -> list[LedgerAccount]:
        response = api.get("Accounts", route="GET /Accounts").json()
        accounts: list[LedgerAccount] = []
        for item in response.get("Accounts", []):
            if item.get("Type") == "BANK":
                kind = AccountKind.BANK
            elif item.get("Type") in _EXPENSE_TYPES:
                kind = AccountKind.EXPENSE
            else:
                continue
            accounts.append(
                LedgerAccount(
                    account_id=item["AccountID"],
                    name=item.get("Name", ""),
                    code=item.get("Code"),
                    kind=kind,
                    currency=item.get("CurrencyCode") if kind is AccountKind.BANK else None,
                    active=item.get("Status", "ACTIVE") == "ACTIVE",
                )
            )
        return accounts
