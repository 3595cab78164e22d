"""The accounting packages the service connects to, as the integrations page lists them."""

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from payedge_connect.models import Provider

if TYPE_CHECKING:
    from payedge_connect.providers.base import AccountingConnector


class ProviderInfo(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    provider: Provider
    display_name: str
    # Whether the provider pushes change notifications (else we rely on schedules and on-demand sync).
    webhooks: bool


SUPPORTED_PROVIDERS: tuple[ProviderInfo, ...] = (
    ProviderInfo(provider=Provider.QUICKBOOKS, display_name="QuickBooks Online", webhooks=True),
    ProviderInfo(provider=Provider.XERO, display_name="Xero", webhooks=True),
    ProviderInfo(provider=Provider.SAGE, display_name="Sage Accounting", webhooks=False),
)


def connector_for(provider: Provider, *, base_url: str | None, xero_scope_set: str) -> "AccountingConnector":
    """The connector of `provider`, against the real service or (base_url) its sandbox.

    Each connector is imported the first time it is asked for: a function pays at cold start for none
    of them, and a warm one only for the providers its connections use.
    """
    match provider:
        case Provider.QUICKBOOKS:
            from payedge_connect.providers.quickbooks import QuickBooksConnector  # noqa: PLC0415

            return QuickBooksConnector(base_url=base_url)
        case Provider.XERO:
            from payedge_connect.providers.xero import XeroConnector  # noqa: PLC0415

            return XeroConnector(base_url=base_url, scope_set=xero_scope_set)
        case Provider.SAGE:
            from payedge_connect.providers.sage import SageConnector  # noqa: PLC0415

            return SageConnector(base_url=base_url)
