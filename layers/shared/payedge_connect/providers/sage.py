"""Sage Business Cloud Accounting (API v3.1): OAuth, businesses, bank and expense ledger accounts.

Facts: ../../../../shared/PROVIDERS.md section 3 (endpoints, full_access scope, X-Business, paging).
"""

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from payedge_connect.models import Provider
from payedge_connect.providers.base import AccountKind, LedgerAccount, OAuthSpec, Tenant, rebase
from payedge_connect.providers.http import CallCounter, ProviderApi

AUTHORIZE_URL = "https://www.sageone.com/oauth2/auth/central"
TOKEN_URL = "https://oauth.accounting.sage.com/token"
REVOKE_URL = "https://oauth.accounting.sage.com/revoke"
API_URL = "https://api.accounting.sage.com/v3.1"
# Sage has only readonly and full_access; writing payments needs full_access.
SCOPES = ("full_access",)
MAX_PAGE_SIZE = 200


def pages(api: ProviderApi, path: str, params: Mapping[str, Any], route: str) -> Iterator[dict[str, Any]]:
    """Every item of a Sage list, following `$next` until it is null."""
    response = api.get(path, params={**params, "items_per_page": MAX_PAGE_SIZE}, route=route).json()
    while True:
        yield from response.get("$items", [])
        next_path = response.get("$next")
        if not next_path:
            return
        # $next is a path relative to the API root, query included.
        response = api.get(next_path.lstrip("/"), route=route).json()


class SageConnector:
    provider = Provider.SAGE

    def __init__(self, *, base_url: str | None = None) -> None:
        self._base_url = base_url

    @property
    def oauth(self) -> OAuthSpec:
        return OAuthSpec(
            authorize_url=rebase(AUTHORIZE_URL, self._base_url),
            token_url=rebase(TOKEN_URL, self._base_url),
            revoke_url=rebase(REVOKE_URL, self._base_url),
            scopes=SCOPES,
            pkce=True,
            client_auth="body",
            revocation_body="form",
            extra_authorize_params={"filter": "apiv3.1"},
        )

    def api(
        self,
        tenant_id: str,
        *,
        access_token: Callable[[], str],
        refresh_access_token: Callable[[], str] | None = None,
        calls: CallCounter | None = None,
    ) -> ProviderApi:
        # Without X-Business Sage silently uses the user's lead business: always name it.
        return ProviderApi(
            rebase(API_URL, self._base_url),
            access_token=access_token,
            refresh_access_token=refresh_access_token,
            headers={"X-Business": tenant_id},
            calls=calls,
        )

    def tenants(self, access_token: str, callback_params: Mapping[str, str]) -> list[Tenant]:
        # A Sage grant belongs to a user and reaches every business the user has.
        api = ProviderApi(rebase(API_URL, self._base_url), access_token=lambda: access_token)
        body = api.get("businesses", route="GET /businesses").json()
        items: list[dict[str, Any]] = body if isinstance(body, list) else body.get("$items", [])
        return [Tenant(tenant_id=item["id"], name=item.get("name") or item["displayed_as"]) for item in items]

    def accounts(self, api: ProviderApi) -> list[LedgerAccount]:
        accounts = [
            LedgerAccount(
                account_id=item["id"],
                name=(item.get("bank_account_details") or {}).get("account_name") or item["displayed_as"],
                code=item.get("nominal_code"),
                kind=AccountKind.BANK,
                currency=(item.get("currency") or {}).get("id"),
                active=bool(item.get("is_active", True)),
            )
            for item in pages(api, "bank_accounts", {"attributes": "all"}, "GET /bank_accounts")
        ]
        # Fees are booked with other_payments, so the expense accounts are those visible there.
        expense_filter = {"visible_in": "other_payments", "attributes": "all"}
        for item in pages(api, "ledger_accounts", expense_filter, "GET /ledger_accounts"):
            account_type = (item.get("ledger_account_type") or {}).get("id", "")
            if "EXPENSE" not in account_type and "OVERHEAD" not in account_type:
                continue
            accounts.append(
                LedgerAccount(
                    account_id=item["id"],
                    name=item.get("name") or item.get("displayed_as", ""),
                    code=item.get("nominal_code"),
                    kind=AccountKind.EXPENSE,
                    currency=None,
                    active=item.get("visible_in_other_payments", True) is not False,
                )
            )
        return accounts
