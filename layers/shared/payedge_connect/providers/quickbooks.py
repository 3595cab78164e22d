"""QuickBooks Online (Intuit Accounting API v3): OAuth, the company (realm), accounts.

Facts: ../../../../shared/PROVIDERS.md section 1 (endpoints, scopes, realmId, query language).
"""

from collections.abc import Callable, Mapping
from typing import Any

from payedge_connect.models import Provider
from payedge_connect.providers.base import AccountKind, LedgerAccount, OAuthSpec, Tenant, rebase
from payedge_connect.providers.http import CallCounter, ProviderApi

AUTHORIZE_URL = "https://appcenter.intuit.com/connect/oauth2"
TOKEN_URL = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
REVOKE_URL = "https://developer.api.intuit.com/v2/oauth2/tokens/revoke"
API_URL = "https://quickbooks.api.intuit.com"
SCOPES = ("com.intuit.quickbooks.accounting",)
# Intuit only reports the 5-year refresh-token cap (x_refresh_token_hard_expires_in) when asked.
HARD_EXPIRY_HEADER = {"x-include-refresh-token-hard-expires-in": "true"}
_ACCOUNTS_QUERY = "select * from Account where AccountType in ('Bank', 'Expense') maxresults 1000"


class QuickBooksConnector:
    provider = Provider.QUICKBOOKS

    def __init__(self, *, base_url: str | None = None) -> None:
        self._base_url = base_url

    @property
    def oauth(self) -> OAuthSpec:
        return OAuthSpec(
            authorize_url=rebase(AUTHORIZE_URL, self._base_url),
            token_url=rebase(TOKEN_URL, self._base_url),
            revoke_url=rebase(REVOKE_URL, self._base_url),
            scopes=SCOPES,
            pkce=False,  # Intuit's discovery document lists no code_challenge_methods
            client_auth="basic",
            revocation_body="json",
            token_request_headers=HARD_EXPIRY_HEADER,
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
            f"{rebase(API_URL, self._base_url)}/v3/company/{tenant_id}",
            access_token=access_token,
            refresh_access_token=refresh_access_token,
            calls=calls,
        )

    def tenants(self, access_token: str, callback_params: Mapping[str, str]) -> list[Tenant]:
        # One grant is one company: the redirect names it (realmId); its name comes from CompanyInfo.
        realm_id = callback_params.get("realmId")
        if not realm_id:
            return []
        api = self.api(realm_id, access_token=lambda: access_token)
        info = api.get(f"companyinfo/{realm_id}", route="GET companyinfo").json().get("CompanyInfo", {})
        return [Tenant(tenant_id=realm_id, name=info.get("CompanyName") or f"QuickBooks company {realm_id}")]

    def accounts(self, api: ProviderApi) -> list[LedgerAccount]:
        response = api.get("query", params={"query": _ACCOUNTS_QUERY}, route="GET query Account").json()
        items: list[dict[str, Any]] = response.get("QueryResponse", {}).get("Account", [])
        return [
            LedgerAccount(
                account_id=item["Id"],
                name=item.get("Name", ""),
                code=item.get("AcctNum"),
                kind=AccountKind.BANK if item.get("AccountType") == "Bank" else AccountKind.EXPENSE,
                currency=(item.get("CurrencyRef") or {}).get("value"),
                active=bool(item.get("Active", True)),
            )
            for item in items
        ]
