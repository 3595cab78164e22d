"""Sync against the provider sandboxes: a connected organisation, AWS in moto (in-process)."""

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
import requests
from aws_lambda_powertools.utilities import parameters

from local.sandboxes.core import Clock, ProviderSandbox
from local.sandboxes.generator import Ledger, generate_ledger
from local.sandboxes.quickbooks.sandbox import QuickBooksSandbox
from local.sandboxes.sage.sandbox import SageSandbox
from local.sandboxes.xero.sandbox import XeroSandbox
from payedge_connect.models import AccountMapping, Connection, ConnectionStatus, Provider, SyncRun, SyncTrigger
from payedge_connect.services import Services
from payedge_connect.settings import SyncSettings
from payedge_connect.sync.documents import DocumentStore
from payedge_connect.sync.engine import SyncResult, run_sync
from payedge_connect.sync.requests import request_sync

CLIENT_ID = "payedge-test"
CLIENT_SECRET = "payedge-test-secret"
WEBHOOK_KEY = "webhook-key-for-tests"
REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"
SECRET_PREFIX = "payedge-test/"
ALL_PROVIDERS = [Provider.QUICKBOOKS, Provider.XERO, Provider.SAGE]


@pytest.fixture(autouse=True)
def loopback_oauth(monkeypatch: pytest.MonkeyPatch) -> None:
    # oauthlib refuses plain http; the sandboxes listen on loopback without TLS.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def new_sandbox(provider: Provider) -> ProviderSandbox:
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
        connection = self.services.store.get_connection(self.connection.connection_id)
        assert connection is not None
        run, _ = request_sync(self.services, connection, SyncTrigger.ON_DEMAND, full=full)
        return self.run(run, full=full, time_left=time_left)

    def run(self, run: SyncRun, *, full: bool = False, time_left: Callable[[], float] = lambda: 900.0) -> SyncResult:
        return run_sync(self.services, run, documents=self.documents, time_left=time_left, full=full)

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


@contextmanager
def connect(provider: Provider, ledger: Ledger, *, table: str, kms_key_arn: str, bucket: str) -> Iterator[SyncWorld]:
    sandbox = new_sandbox(provider)
    sandbox.register_app(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
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
                "FUNDING_SOURCES": json.dumps([{"id": "cad-operating", "name": "CAD operating", "currency": "CAD"}]),
                "SYNC_QUEUE_URL": queue_url,
                "DOCUMENTS_BUCKET_NAME": bucket,
            }
        )
        services = Services(settings, clock=sandbox.clock.now)
        # Connect the way a user does: the consent page (auto-approved), the code, the organisation.
        oauth = services.oauth(provider)
        request = oauth.authorization_request(state="s", redirect_uri=REDIRECT_URI)
        redirect = requests.get(request.url, allow_redirects=False, timeout=5)
        params = dict(parse_qsl(urlsplit(redirect.headers["Location"]).query))
        tokens = oauth.exchange_code(
            code=params["code"], redirect_uri=REDIRECT_URI, code_verifier=request.code_verifier
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
        services.store.create_connection(connection)
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


@pytest.fixture
def documents_bucket(aws: None) -> str:
    boto3.client("s3").create_bucket(Bucket="documents")
    return "documents"


@pytest.fixture(params=ALL_PROVIDERS, ids=lambda provider: provider.value)
def world(
    request: pytest.FixtureRequest, records_table: str, kms_key_arn: str, documents_bucket: str
) -> Iterator[SyncWorld]:
    """A connected organisation of each provider with a small ledger (every bill state, a few documents)."""
    parameters.clear_caches()
    ledger = generate_ledger(seed=11, bills=40, vendors=12, documents=4)
    with connect(request.param, ledger, table=records_table, kms_key_arn=kms_key_arn, bucket=documents_bucket) as world:
        yield world
