"""What every accounting package offers the service, and the shapes connectors return.

Each provider module (quickbooks.py, xero.py, sage.py) builds one `AccountingConnector`.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from payedge_connect.models import Provider
from payedge_connect.providers.http import CallCounter, ProviderApi


@dataclass(frozen=True)
class OAuthSpec:
    """How a provider does OAuth 2.0 (authorization-code grant, refresh, revocation)."""

    authorize_url: str
    token_url: str
    revoke_url: str
    scopes: tuple[str, ...]
    # PKCE only where the provider documents it (QuickBooks does not).
    pkce: bool
    # "basic": HTTP Basic client authentication; "body": client_id/client_secret in the form.
    client_auth: Literal["basic", "body"]
    # How the revocation request carries the token: a JSON body or a form.
    revocation_body: Literal["json", "form"]
    extra_authorize_params: Mapping[str, str] = field(default_factory=dict)
    token_request_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Tenant:
    """An organisation (QuickBooks company, Xero organisation, Sage business) a grant reaches."""

    tenant_id: str
    name: str


class AccountKind(StrEnum):
    BANK = "bank"
    EXPENSE = "expense"


@dataclass(frozen=True)
class LedgerAccount:
    """A provider account a payment or a fee can be booked to."""

    account_id: str
    name: str
    # Xero books fee lines by account code; the others by id.
    code: str | None
    kind: AccountKind
    currency: str | None
    active: bool


class AccountingConnector(Protocol):
    """One accounting package, as the connect, sync and write-back logic sees it.

    A connector is built with the provider's base URL override (None: the real service), so its
    endpoints point at a sandbox when the stack runs locally.
    """

    provider: Provider

    @property
    def oauth(self) -> OAuthSpec:
        """The OAuth endpoints, scopes and client-authentication style."""
        ...

    def api(
        self,
        tenant_id: str,
        *,
        access_token: Callable[[], str],
        refresh_access_token: Callable[[], str] | None = None,
        calls: CallCounter | None = None,
    ) -> ProviderApi:
        """The accounting API of one organisation, called with a connection's access token."""
        ...

    def tenants(self, access_token: str, callback_params: Mapping[str, str]) -> list[Tenant]:
        """The organisations a fresh grant reaches (QuickBooks names its realm in the callback)."""
        ...

    def accounts(self, api: ProviderApi) -> list[LedgerAccount]:
        """Bank accounts (funding sources) and expense accounts (fees) of the organisation."""
        ...


def rebase(url: str, base_url: str | None) -> str:
    """The same path on another host: how a provider's endpoints point at its sandbox."""
    if not base_url:
        return url
    target = urlsplit(base_url)
    original = urlsplit(url)
    return urlunsplit((target.scheme, target.netloc, original.path, original.query, original.fragment))
