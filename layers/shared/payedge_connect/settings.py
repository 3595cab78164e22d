"""Each function's configuration: one validated model per function, read once from the environment.

A missing or empty variable fails at start with its name, never with a silent default.
"""

import os
from functools import cache

from pydantic import BaseModel, ConfigDict, Field, Json, ValidationError

from payedge_connect.models import Provider


class SettingsError(RuntimeError):
    """The function's environment is incomplete; the message names every missing variable."""


class FunctionSettings(BaseModel):
    """What every function reads: the records table, the token secrets and the caller's identity claim."""

    # defer_build: only the function's own settings are ever validated (built then, not at import).
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, defer_build=True)

    records_table_name: str = Field(alias="RECORDS_TABLE_NAME", min_length=1)
    secret_name_prefix: str = Field(alias="SECRET_NAME_PREFIX", min_length=1)
    stack_kms_key_arn: str = Field(alias="STACK_KMS_KEY_ARN", min_length=1)
    business_id_claim: str = Field(alias="BUSINESS_ID_CLAIM", min_length=1)
    # Stack parameters SyncRunRetentionDays and ClosedPayableRetentionDays (README "Records and their
    # lifetime"); the defaults are the parameters' defaults, so tests and tools need not set them.
    # At least 2 days: a sync run is needed until it ends (a stale one is abandoned after 2 hours).
    sync_run_retention_days: int = Field(alias="SYNC_RUN_RETENTION_DAYS", default=14, ge=2)
    # At least 30 days: longer than a payment event can be redelivered (the write-back queue and its
    # dead-letter queue keep messages 14 days each).
    closed_payable_retention_days: int = Field(alias="CLOSED_PAYABLE_RETENTION_DAYS", default=30, ge=30)


class FundingSource(BaseModel):
    """A platform account payments are made from (configuration, e.g. the CAD operating account)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class ProviderSettings(FunctionSettings):
    """What every function that talks to the accounting software reads."""

    # Where the provider apps' credentials are: <prefix>apps/<provider> in Secrets Manager.
    # Endpoint overrides per provider ({} in production; sandbox base URLs locally).
    provider_base_urls: Json[dict[Provider, str]] = Field(alias="PROVIDER_BASE_URLS")
    # "granular" for Xero apps created from March 2026, "broad" for apps still on the old scopes.
    xero_scope_set: str = Field(alias="XERO_SCOPE_SET", pattern="^(granular|broad)$")
    funding_sources: Json[list[FundingSource]] = Field(alias="FUNDING_SOURCES")
    # Xero's calls a day per organisation for the app's developer tier: 1,000 (Starter) or 5,000.
    xero_daily_call_limit: int = Field(alias="XERO_DAILY_CALL_LIMIT", ge=1)


class ConnectSettings(ProviderSettings):
    """Settings of functions/connect."""

    # Public base URL of the HTTP API: the OAuth redirect URI is <api>/oauth/<provider>/callback.
    api_base_url: str = Field(alias="API_BASE_URL", pattern="^https?://")


class CallbackSettings(ProviderSettings):
    """Settings of functions/callback."""

    api_base_url: str = Field(alias="API_BASE_URL", pattern="^https?://")
    # Where the browser goes when the callback is done (the web app's integrations page).
    web_app_url: str = Field(alias="WEB_APP_URL", pattern="^https?://")
    # Payments held while the connection needed reauthorising are queued here after a reconnect.
    writeback_queue_url: str = Field(alias="WRITEBACK_QUEUE_URL", min_length=1)


class SyncSettings(ProviderSettings):
    """Settings of functions/sync."""

    sync_queue_url: str = Field(alias="SYNC_QUEUE_URL", min_length=1)
    documents_bucket_name: str = Field(alias="DOCUMENTS_BUCKET_NAME", min_length=1)


class WritebackSettings(ProviderSettings):
    """Settings of functions/writeback."""

    platform_event_bus_name: str = Field(alias="PLATFORM_EVENT_BUS_NAME", min_length=1)
    writeback_queue_url: str = Field(alias="WRITEBACK_QUEUE_URL", min_length=1)
    writeback_dead_letter_queue_url: str = Field(alias="WRITEBACK_DEAD_LETTER_QUEUE_URL", min_length=1)


@cache
def load_settings[SettingsT: FunctionSettings](model: type[SettingsT]) -> SettingsT:
    """Validate the environment into `model` once per process (Lambda reuses it across invocations)."""
    try:
        return model.model_validate(dict(os.environ))
    except ValidationError as error:
        problems = []
        for item in error.errors():
            variable = ".".join(str(part) for part in item["loc"])
            reason = "is not set" if item["type"] == "missing" else item["msg"].lower()
            problems.append(f"{variable} {reason}")
        raise SettingsError(f"{model.__name__}: " + "; ".join(problems)) from None
