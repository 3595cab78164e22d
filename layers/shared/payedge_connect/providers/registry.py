"""The accounting packages the service connects to, as the integrations page lists them."""

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from payedge_connect.models import Provider


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
