"""Each function's configuration: one validated model per function, read once from the environment.

A missing or empty variable fails at start with its name, never with a silent default.
"""

import os
from functools import cache

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class SettingsError(RuntimeError):
    """The function's environment is incomplete; the message names every missing variable."""


class FunctionSettings(BaseModel):
    """What every function reads: the records table, the token secrets and the caller's identity claim."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    records_table_name: str = Field(alias="RECORDS_TABLE_NAME", min_length=1)
    secret_name_prefix: str = Field(alias="SECRET_NAME_PREFIX", min_length=1)
    stack_kms_key_arn: str = Field(alias="STACK_KMS_KEY_ARN", min_length=1)
    business_id_claim: str = Field(alias="BUSINESS_ID_CLAIM", min_length=1)


class ConnectSettings(FunctionSettings):
    """Settings of functions/connect."""


class CallbackSettings(FunctionSettings):
    """Settings of functions/callback."""


class SyncSettings(FunctionSettings):
    """Settings of functions/sync."""

    sync_queue_url: str = Field(alias="SYNC_QUEUE_URL", min_length=1)
    documents_bucket_name: str = Field(alias="DOCUMENTS_BUCKET_NAME", min_length=1)


class WritebackSettings(FunctionSettings):
    """Settings of functions/writeback."""

    platform_event_bus_name: str = Field(alias="PLATFORM_EVENT_BUS_NAME", min_length=1)


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
