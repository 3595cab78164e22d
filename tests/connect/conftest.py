"""Connections against the provider sandboxes, with AWS in moto (in-process)."""

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from local.sandboxes.core import Clock
from local.sandboxes.generator import generate_ledger
from local.sandboxes.quickbooks.sandbox import QuickBooksSandbox
from payedge_connect.models import Connection, ConnectionStatus, Provider
from payedge_connect.providers.quickbooks import QuickBooksConnector
from payedge_connect.storage.records import RecordsStore
from payedge_connect.tokens.oauth import AppCredentials, OAuthClient
from payedge_connect.tokens.vault import TokenVault

REDIRECT_URI = "http://127.0.0.1:9/oauth/quickbooks/callback"
APP = AppCredentials(client_id="payedge-test", client_secret="payedge-test-secret")


@pytest.fixture(autouse=True)
def loopback_oauth(monkeypatch: pytest.MonkeyPatch) -> None:
    # oauthlib refuses plain http; the sandboxes listen on loopback without TLS.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def authorize_headlessly(oauth: OAuthClient, redirect_uri: str) -> dict[str, str]:
    """Follow an auto-approving consent page; returns the callback's query parameters."""
    request = oauth.authorization_request(state="state-1", redirect_uri=redirect_uri)
    response = requests.get(request.url, allow_redirects=False, timeout=5)
    assert response.status_code in (302, 303), response.text[:200]
    params = dict(parse_qsl(urlsplit(response.headers["Location"]).query))
    params["_code_verifier"] = request.code_verifier or ""
    return params


@dataclass
class QuickBooksWorld:
    sandbox: QuickBooksSandbox
    connector: QuickBooksConnector
    oauth: OAuthClient
    connection: Connection
    table: str
    kms_key_arn: str

    def store(self) -> RecordsStore:
        return RecordsStore(self.table)

    def vault(self) -> TokenVault:
        return TokenVault("payedge-test/", self.kms_key_arn)


@pytest.fixture
def quickbooks(records_table: str, kms_key_arn: str) -> Iterator[QuickBooksWorld]:
    """A connected QuickBooks company: tokens in the vault, the connection record in the table."""
    sandbox = QuickBooksSandbox(clock=Clock(), auto_approve=True)
    sandbox.register_app(APP.client_id, APP.client_secret, [REDIRECT_URI])
    realm_id = sandbox.add_tenant(generate_ledger(seed=7, bills=12), name="Maple Supplies Ltd")
    base_url = sandbox.start()
    try:
        connector = QuickBooksConnector(base_url=base_url)
        oauth = OAuthClient(connector.oauth, APP, clock=sandbox.clock.now)
        params = authorize_headlessly(oauth, REDIRECT_URI)
        tokens = oauth.exchange_code(code=params["code"], redirect_uri=REDIRECT_URI, code_verifier=None)
        now = sandbox.clock.now()
        connection = Connection(
            connection_id="conn-qbo",
            business_id="biz-1",
            provider=Provider.QUICKBOOKS,
            status=ConnectionStatus.CONNECTED,
            tenant_id=realm_id,
            tenant_name="Maple Supplies Ltd",
            created_at=now,
            updated_at=now,
        )
        RecordsStore(records_table).create_connection(connection)
        TokenVault("payedge-test/", kms_key_arn).store(connection.connection_id, tokens)
        yield QuickBooksWorld(sandbox, connector, oauth, connection, records_table, kms_key_arn)
    finally:
        sandbox.stop()
