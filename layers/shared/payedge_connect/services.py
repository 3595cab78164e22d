"""The clients a function uses, built from its settings on first use (nothing connects at import).

The provider side - connectors, call budgets, OAuth and the token vault - is imported the first time a
provider is called: most HTTP routes only read records, and a cold start pays for none of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3

from payedge_connect.models import Provider, now_utc
from payedge_connect.storage import RecordsStore, Retention

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from payedge_connect.models import Connection
    from payedge_connect.providers.base import AccountingConnector
    from payedge_connect.providers.budget import CallBudget, Priority
    from payedge_connect.providers.http import CallCounter, ProviderApi
    from payedge_connect.settings import ProviderSettings
    from payedge_connect.storage.budgets import BudgetStore
    from payedge_connect.tokens.oauth import AppCredentials, OAuthClient
    from payedge_connect.tokens.refresh import ConnectionTokens
    from payedge_connect.tokens.vault import TokenVault

_APP_CREDENTIALS_CACHE_SECONDS = 300


class Services:
    def __init__(
        self,
        settings: ProviderSettings,
        *,
        clock: Callable[[], datetime] = now_utc,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        # This process's view of each organisation's (and app's) fleet-wide call budget, kept while the
        # process lives: a warm Lambda spends what is left of its block on the next payment or page.
        self._budgets: dict[tuple[Provider, str], CallBudget] = {}

    @cached_property
    def store(self) -> RecordsStore:
        retention = Retention(
            sync_runs=timedelta(days=self.settings.sync_run_retention_days),
            closed_payables=timedelta(days=self.settings.closed_payable_retention_days),
        )
        return RecordsStore(self.settings.records_table_name, retention=retention)

    @cached_property
    def budget_store(self) -> BudgetStore:
        from payedge_connect.storage.budgets import BudgetStore  # noqa: PLC0415

        return BudgetStore(self.settings.records_table_name)

    @cached_property
    def vault(self) -> TokenVault:
        from payedge_connect.tokens.vault import TokenVault  # noqa: PLC0415

        return TokenVault(self.settings.secret_name_prefix, self.settings.stack_kms_key_arn)

    def connector(self, provider: Provider) -> AccountingConnector:
        from payedge_connect.providers.registry import connector_for  # noqa: PLC0415

        return connector_for(
            provider,
            base_url=self.settings.provider_base_urls.get(provider),
            xero_scope_set=self.settings.xero_scope_set,
        )

    @cached_property
    def secrets(self) -> SecretsProvider:
        # Our own provider and client, not Powertools' module-wide default: its client would outlive the
        # AWS endpoint it was made for. Imported here: only provider calls read the app's credentials.
        from aws_lambda_powertools.utilities.parameters import SecretsProvider  # noqa: PLC0415

        return SecretsProvider(boto3_client=boto3.client("secretsmanager"))

    def app_credentials(self, provider: Provider) -> AppCredentials:
        """The provider app's client id and secret, which the operator stores at <prefix>apps/<provider>."""
        from payedge_connect.tokens.oauth import AppCredentials  # noqa: PLC0415

        document: Any = self.secrets.get(
            f"{self.settings.secret_name_prefix}apps/{provider.value}",
            transform="json",
            max_age=_APP_CREDENTIALS_CACHE_SECONDS,
        )
        return AppCredentials(
            client_id=document["clientId"],
            client_secret=document["clientSecret"],
            webhook_key=document.get("webhookKey"),
        )

    def oauth(self, provider: Provider) -> OAuthClient:
        from payedge_connect.tokens.oauth import OAuthClient  # noqa: PLC0415

        return OAuthClient(self.connector(provider).oauth, self.app_credentials(provider), clock=self.clock)

    def tokens(self, connection: Connection) -> ConnectionTokens:
        from payedge_connect.tokens.refresh import ConnectionTokens  # noqa: PLC0415

        return ConnectionTokens(
            connection.connection_id,
            oauth=self.oauth(connection.provider),
            vault=self.vault,
            store=self.store,
            clock=self.clock,
        )

    def call_budget(self, provider: Provider, tenant_id: str) -> CallBudget:
        """The organisation's fleet-wide call budget (with its provider app's, where there is one)."""
        from payedge_connect.providers.budget import CallBudget  # noqa: PLC0415
        from payedge_connect.providers.limits import limits_for  # noqa: PLC0415
        from payedge_connect.storage.budgets import APP_SCOPE  # noqa: PLC0415

        key = (provider, tenant_id)
        if key not in self._budgets:
            limits = limits_for(provider, xero_daily_call_limit=self.settings.xero_daily_call_limit)
            app = None
            if limits.app_per_minute:
                app = self._budgets.get((provider, APP_SCOPE))
                if app is None:
                    app = self._budgets[(provider, APP_SCOPE)] = CallBudget(
                        self.budget_store,
                        provider,
                        APP_SCOPE,
                        replace(limits, per_day=None, concurrent=None, per_minute=limits.app_per_minute),
                        clock=self._epoch,
                        sleep=self.sleep,
                    )
            self._budgets[key] = CallBudget(
                self.budget_store, provider, tenant_id, limits, clock=self._epoch, sleep=self.sleep, app=app
            )
        return self._budgets[key]

    def _epoch(self) -> float:
        return self.clock().timestamp()

    def api(
        self,
        connection: Connection,
        *,
        calls: CallCounter | None = None,
        priority: Priority | None = None,
        time_left: Callable[[], float] | None = None,
    ) -> ProviderApi:
        """The connected organisation's API, with the connection's self-refreshing access token; every
        call takes from the organisation's call budget at `priority` (None: interactive), waiting no longer
        than `time_left` allows (seconds left in the invocation; None: a short wait, as for an HTTP request)."""
        from payedge_connect.providers.budget import CallerBudget, Priority  # noqa: PLC0415

        if connection.tenant_id is None:
            raise ValueError(f"connection {connection.connection_id} has no organisation yet")
        tokens = self.tokens(connection)
        budget = CallerBudget(
            self.call_budget(connection.provider, connection.tenant_id), priority or Priority.INTERACTIVE, time_left
        )
        return self.connector(connection.provider).api(
            connection.tenant_id,
            access_token=tokens.access_token,
            refresh_access_token=tokens.force_refresh,
            calls=calls,
            budget=budget,
            sleep=self.sleep,
        )
