"""A business connected to a provider sandbox, with AWS in moto (in-process): what sync and write-back
tests and the benchmarks start from. The connection is made the way a user makes it: consent page
(auto-approved), code, organisation discovery through our connectors."""

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import requests

from local.sandboxes.core import Clock
from local.sandboxes.generator import Ledger
from local.sandboxes.quickbooks.sandbox import QuickBooksSandbox
from local.sandboxes.sage.sandbox import SageSandbox
from local.sandboxes.xero.sandbox import XeroSandbox
from payedge_connect.connections import authorization
from payedge_connect.models import AccountMapping, Connection, ConnectionStatus, Provider, SyncRun, SyncTrigger
from payedge_connect.providers.base import AccountKind
from payedge_connect.services import Services
from payedge_connect.settings import SyncSettings
from payedge_connect.sync.documents import DocumentStore
from payedge_connect.sync.engine import SyncResult, run_sync
from payedge_connect.sync.requests import request_sync

CLIENT_ID = "payedge-test"
CLIENT_SECRET = "payedge-test-secret"
WEBHOOK_KEY = "webhook-key-for-tests"
API_BASE_URL = "http://127.0.0.1:9"  # nothing listens: the redirect is read from Location, not followed
SECRET_PREFIX = "payedge-test/"
ALL_PROVIDERS = [Provider.QUICKBOOKS, Provider.XERO, Provider.SAGE]
# Any provider's sandbox: their controls differ by provider, the set-up below they share.
Sandbox = QuickBooksSandbox | XeroSandbox | SageSandbox


def create_records_table(template: Mapping[str, Any], name: str = "records") -> str:
    """The records table with the key schema and indexes template.yaml gives it (AWS mocked by the caller)."""
    properties = template["Resources"]["RecordsTable"]["Properties"]
    boto3.client("dynamodb").create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=properties["AttributeDefinitions"],
        KeySchema=properties["KeySchema"],
        GlobalSecondaryIndexes=properties["GlobalSecondaryIndexes"],
    )
    return name


def new_sandbox(provider: Provider) -> Sandbox:
    if provider is Provider.QUICKBOOKS:
        return QuickBooksSandbox(clock=Clock(), auto_approve=True)
    if provider is Provider.XERO:
        return XeroSandbox(clock=Clock(), auto_approve=True)
    return SageSandbox(clock=Clock(), auto_approve=True)


@dataclass
class SyncWorld:
    provider: Provider
    sandbox: Any  # the provider's sandbox class: its controls differ by provider
    tenant_id: str
    ledger: Ledger
    services: Services
    connection: Connection
    documents: DocumentStore
    table_name: str
    bucket: str

    def sync(self, *, full: bool = False, time_left: Callable[[], float] = lambda: 900.0) -> SyncResult:
        """What the queue and the worker do for one requested sync (continuations included by the caller)."""
        connection = self.services.store.connections.get_connection(self.connection.connection_id)
        assert connection is not None
        run, _ = request_sync(self.services, connection, SyncTrigger.ON_DEMAND, full=full)
        return self.run(run, full=full, time_left=time_left)

    def run(self, run: SyncRun, *, full: bool = False, time_left: Callable[[], float] = lambda: 900.0) -> SyncResult:
        return run_sync(self.services, run, documents=self.documents, time_left=time_left, full=full)

    def accept_mapping(self) -> AccountMapping:
        """The user accepts a mapping: funding source "<currency>-operating" to the organisation's active
        bank account in that currency, and payment fees to its first expense account named for fees."""
        connector = self.services.connector(self.provider)
        accounts = connector.accounts(self.services.api(self.connection))
        banks = {a.currency: a.account_id for a in accounts if a.kind is AccountKind.BANK and a.active and a.currency}
        fees = [a.account_id for a in accounts if a.kind is AccountKind.EXPENSE and "fee" in a.name.lower()]
        connection = self.services.store.connections.get_connection(self.connection.connection_id)
        assert connection is not None
        mapping = AccountMapping(
            funding_sources={f"{currency.lower()}-operating": account for currency, account in banks.items()},
            fee_account_id=fees[0] if fees else None,
            accepted_at=self.sandbox.clock.now(),
        )
        self.connection = self.services.store.connections.save_connection(
            connection.model_copy(update={"mapping": mapping})
        )
        return mapping

    def items(self) -> list[dict[str, Any]]:
        table = boto3.resource("dynamodb").Table(self.table_name)
        items: list[dict[str, Any]] = []
        response = table.scan()
        items.extend(response["Items"])
        while "LastEvaluatedKey" in response:
            response = table.scan(ExclusiveStartKey=response["LastEvaluatedKey"])
            items.extend(response["Items"])
        return items

    def open_payables(self) -> dict[str, Any]:
        return {
            item["billId"]: item
            for item in self.items()
            if item.get("recordType") == "payable" and item["status"] != "closed"
        }


def consent(authorization_url: str) -> dict[str, str]:
    """The user approves on the provider's consent page (auto-approved): the callback's query parameters."""
    redirect = requests.get(authorization_url, allow_redirects=False, timeout=5)
    assert redirect.status_code in (302, 303), redirect.text[:300]
    return dict(parse_qsl(urlsplit(redirect.headers["Location"]).query))


def reconnect(world: "SyncWorld") -> None:
    """The user reconnects: consent again, and the callback pipeline stores the new tokens."""
    connection_id = world.connection.connection_id
    started = authorization.start_reconnection(
        world.services, business_id="biz-1", user_id="user-1", connection_id=connection_id, api_base_url=API_BASE_URL
    )
    received = authorization.receive_callback(world.services, world.provider, consent(started.authorization_url))
    assert received.completion_code is not None, received
    outcome = authorization.complete_authorization(
        world.services,
        business_id="biz-1",
        user_id="user-1",
        connection_id=connection_id,
        completion_code=received.completion_code,
    )
    assert outcome.outcome == ConnectionStatus.CONNECTED.value, outcome


@contextmanager
def connect(
    provider: Provider,
    ledger: Ledger,
    *,
    table: str,
    kms_key_arn: str,
    bucket: str,
    sandbox: Sandbox | None = None,
    xero_daily_call_limit: int = 5000,
    simulated_waits: bool = False,
) -> Iterator[SyncWorld]:
    """Connect a business to `sandbox` (default: a new sandbox of `provider`), started here, stopped after.

    `simulated_waits`: the service's waits for its call budget move the sandbox clock instead of sleeping."""
    if sandbox is None:
        sandbox = new_sandbox(provider)
    redirect_uri = f"{API_BASE_URL}/oauth/{provider.value}/callback"
    sandbox.register_app(CLIENT_ID, CLIENT_SECRET, [redirect_uri])
    tenant_id = sandbox.add_tenant(ledger, name=ledger.company_name)
    base_url = sandbox.start()
    try:
        boto3.client("secretsmanager").create_secret(
            Name=f"{SECRET_PREFIX}apps/{provider.value}",
            SecretString=json.dumps({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "webhookKey": WEBHOOK_KEY}),
        )
        queue_url = boto3.client("sqs").create_queue(QueueName="sync")["QueueUrl"]
        settings = SyncSettings.model_validate(
            {
                "RECORDS_TABLE_NAME": table,
                "SECRET_NAME_PREFIX": SECRET_PREFIX,
                "STACK_KMS_KEY_ARN": kms_key_arn,
                "BUSINESS_ID_CLAIM": "business_id",
                "PROVIDER_BASE_URLS": json.dumps({provider.value: base_url}),
                "XERO_SCOPE_SET": "granular",
                "XERO_DAILY_CALL_LIMIT": str(xero_daily_call_limit),
                "FUNDING_SOURCES": json.dumps([{"id": "cad-operating", "name": "CAD operating", "currency": "CAD"}]),
                "SYNC_QUEUE_URL": queue_url,
                "DOCUMENTS_BUCKET_NAME": bucket,
            }
        )
        services = Services(
            settings, clock=sandbox.clock.now, sleep=sandbox.clock.advance if simulated_waits else time.sleep
        )
        # Connect the way a user does: the consent page (auto-approved), the code, the organisation.
        oauth = services.oauth(provider)
        request = oauth.authorization_request(state="s", redirect_uri=redirect_uri)
        params = consent(request.url)
        tokens = oauth.exchange_code(
            code=params["code"], redirect_uri=redirect_uri, code_verifier=request.code_verifier
        )
        tenants = services.connector(provider).tenants(tokens.access_token.get_secret_value(), params)
        assert tenant_id in {tenant.tenant_id for tenant in tenants}
        now = sandbox.clock.now()
        connection = Connection(
            connection_id=f"conn-{provider.value}",
            business_id="biz-1",
            provider=provider,
            status=ConnectionStatus.CONNECTED,
            tenant_id=tenant_id,
            tenant_name=ledger.company_name,
            mapping=AccountMapping(funding_sources={}, accepted_at=now),
            created_at=now,
            updated_at=now,
        )
        services.store.connections.create_connection(connection)
        services.vault.store(connection.connection_id, tokens)
        yield SyncWorld(
            provider=provider,
            sandbox=sandbox,
            tenant_id=tenant_id,
            ledger=ledger,
            services=services,
            connection=connection,
            documents=DocumentStore(bucket, services.store),
            table_name=table,
            bucket=bucket,
        )
    finally:
        sandbox.stop()
