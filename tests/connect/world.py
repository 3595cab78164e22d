"""The connect feature as a user and the providers see it: the local stack, the sandbox fleet, a browser.

`ConnectWorld` drives the HTTP API through the local gateway with a business's JWT, follows consent
pages headlessly (the sandboxes auto-approve) and the provider's redirect back to the callback route,
and reads what the service stored (DynamoDB, Secrets Manager) to check what changed and what did not.
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import boto3
import requests

from local.sandboxes.fleet import ProviderName, SandboxFleet
from local.stack import LocalStack
from payedge_connect.models import Connection, Provider
from payedge_connect.providers.registry import connector_for
from payedge_connect.storage import RecordsStore
from payedge_connect.tokens.oauth import AppCredentials, OAuthClient
from payedge_connect.tokens.refresh import ConnectionTokens
from payedge_connect.tokens.vault import TokenSet, TokenVault

TIMEOUT = 10
BUSINESS_A = "biz-maple"
BUSINESS_B = "biz-birch"


@dataclass(frozen=True)
class Started:
    connection_id: str
    authorization_url: str
    business_id: str = BUSINESS_A

    @property
    def state(self) -> str:
        return dict(parse_qsl(urlsplit(self.authorization_url).query))["state"]


@dataclass(frozen=True)
class CallbackResult:
    """Where the callback sent the browser: the web app, with the outcome and the connection id."""

    status: int
    location: str
    outcome: str | None
    connection_id: str | None


def with_query(url: str, **changes: str | None) -> str:
    """`url` with query parameters replaced (None removes one): how a tampered redirect is made."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = value
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


@dataclass
class ConnectWorld:
    stack: LocalStack
    fleet: SandboxFleet

    # ------------------------------------------------------------------ the web app, with a JWT

    def token(self, business_id: str) -> str:
        return self.stack.issue_token({self.stack.parameters["BusinessIdClaim"]: business_id})

    def call(
        self, method: str, path: str, business_id: str = BUSINESS_A, *, json: Any = None, data: str | None = None
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(business_id)}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        return requests.request(
            method, f"{self.stack.api_url}{path}", json=json, data=data, headers=headers, timeout=TIMEOUT
        )

    def start(self, provider: ProviderName, business_id: str = BUSINESS_A) -> Started:
        response = self.call("POST", "/connections", business_id, json={"provider": provider})
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "authorizing"
        return Started(body["connectionId"], body["authorizationUrl"], business_id)

    def reconnect(self, connection_id: str, business_id: str = BUSINESS_A) -> Started:
        response = self.call("POST", f"/connections/{connection_id}/reconnect", business_id)
        assert response.status_code == 200, response.text
        return Started(response.json()["connectionId"], response.json()["authorizationUrl"], business_id)

    # ------------------------------------------------------------------ the browser

    def consent(self, authorization_url: str) -> str:
        """Open the provider's consent page (it auto-approves); returns where the provider redirects."""
        response = requests.get(authorization_url, allow_redirects=False, timeout=TIMEOUT)
        assert response.status_code in (302, 303), response.text[:300]
        location = response.headers["Location"]
        assert location.startswith(f"{self.stack.api_url}/oauth/"), location
        return location

    def callback(self, redirect_url: str, business_id: str = BUSINESS_A, user: str | None = None) -> CallbackResult:
        """Follow the provider's redirect to the gateway's callback route, without a JWT; then, as the web app
        the browser lands on (signed in as `business_id`), redeem the completion code it was given."""
        response = requests.get(redirect_url, allow_redirects=False, timeout=TIMEOUT)
        location = response.headers.get("Location", "")
        query = dict(parse_qsl(urlsplit(location).query))
        result = CallbackResult(response.status_code, location, query.get("outcome"), query.get("connectionId"))
        code = dict(parse_qsl(urlsplit(location).fragment)).get("completionCode")
        if code is None:
            return result
        assert result.outcome == "authorized", location
        redeemed = self.redeem(str(result.connection_id), code, business_id, user)
        assert redeemed.status_code == 200, redeemed.text
        return CallbackResult(result.status, location, redeemed.json()["outcome"], redeemed.json()["connectionId"])

    def redeem(
        self, connection_id: str, completion_code: str, business_id: str = BUSINESS_A, user: str | None = None
    ) -> requests.Response:
        """The web app's redemption of a completion code, with the signed-in user's JWT."""
        claims = {self.stack.parameters["BusinessIdClaim"]: business_id, **({"sub": user} if user else {})}
        token = self.stack.issue_token(claims)
        return requests.post(
            f"{self.stack.api_url}/connections/{connection_id}/authorization",
            json={"completionCode": completion_code},
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT,
        )

    def authorize(self, started: Started) -> CallbackResult:
        return self.callback(self.consent(started.authorization_url), started.business_id)

    # ------------------------------------------------------------------ whole flows

    def accept_proposed_mapping(self, connection_id: str, business_id: str = BUSINESS_A) -> dict[str, Any]:
        proposal = self.call("GET", f"/connections/{connection_id}/mapping", business_id)
        assert proposal.status_code == 200, proposal.text
        body = proposal.json()
        acceptance = {
            "accepted": True,
            "fundingSources": {
                source["fundingSource"]: source["proposedAccountId"]
                for source in body["fundingSources"]
                if source["proposedAccountId"]
            },
            "feeAccountId": body["feeAccount"]["proposedAccountId"],
        }
        accepted = self.call("PUT", f"/connections/{connection_id}/mapping", business_id, json=acceptance)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["status"] == "connected"
        return acceptance

    def connect(self, provider: ProviderName, business_id: str = BUSINESS_A, *, tenant_id: str | None = None) -> str:
        """The whole flow to `connected`; with several organisations, `tenant_id` (default: the first
        the fleet seeded) is chosen explicitly."""
        started = self.start(provider, business_id)
        result = self.authorize(started)
        assert result.outcome in ("mapping_required", "choosing_tenant"), result
        if result.outcome == "choosing_tenant":
            chosen = tenant_id or self.fleet.tenant_ids[provider][0]
            response = self.call(
                "PUT", f"/connections/{started.connection_id}/tenant", business_id, json={"tenantId": chosen}
            )
            assert response.status_code == 200, response.text
        self.accept_proposed_mapping(started.connection_id, business_id)
        return started.connection_id

    # ------------------------------------------------------------------ what the service stored

    @property
    def table_name(self) -> str:
        return self.stack.outputs["RecordsTableName"]

    @property
    def secret_prefix(self) -> str:
        return f"{self.stack.stack_name}/"

    def store(self) -> RecordsStore:
        return RecordsStore(self.table_name, dynamodb=self.stack.resource("dynamodb"))

    def vault(self) -> TokenVault:
        return TokenVault(
            self.secret_prefix, self.stack.outputs["StackKeyArn"], client=self.stack.client("secretsmanager")
        )

    def connection(self, connection_id: str) -> Connection:
        connection = self.store().connections.get_connection(connection_id)
        assert connection is not None
        return connection

    def stored_tokens(self, connection_id: str) -> TokenSet | None:
        return self.vault().load(connection_id, fresh=True)

    def scan(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        arguments: dict[str, Any] = {"TableName": self.table_name}
        client = self.stack.client("dynamodb")
        while True:
            page = client.scan(**arguments)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # ------------------------------------------------------------------ Lambdas, as many as we like

    def service_clock(self) -> Callable[[], datetime]:
        """The service's clock for Lambdas started by a test: real time now (the functions behind the
        gateway stored the connection's token expiry by real time), moving with the sandboxes' clock
        from now on - so advancing the sandboxes' clock moves the provider and the service together."""
        skew = self.fleet.clock.now() - datetime.now(UTC)
        return lambda: self.fleet.clock.now() - skew

    def a_lambda(self, connection_id: str, provider: ProviderName, clock: Callable[[], datetime]) -> ConnectionTokens:
        """What one Lambda invocation builds: its own AWS clients, OAuth client and lease holder id,
        sharing only AWS and the provider with the others."""
        session = self._session
        endpoint = self.stack.endpoint_url
        app = self.fleet.credentials[provider]
        connector = self.connector(provider)
        return ConnectionTokens(
            connection_id,
            oauth=OAuthClient(
                connector.oauth,
                AppCredentials(app.client_id, app.client_secret, app.webhook_key),
                clock=clock,
            ),
            vault=TokenVault(
                self.secret_prefix,
                self.stack.outputs["StackKeyArn"],
                client=session.client("secretsmanager", endpoint_url=endpoint),
            ),
            store=RecordsStore(self.table_name, dynamodb=session.resource("dynamodb", endpoint_url=endpoint)),
            clock=clock,
        )

    @cached_property
    def _session(self) -> boto3.session.Session:
        # One session for every Lambda's clients: building a session loads the service models again
        # (75 ms each), and clients do not share state. Clients are made on one thread, as botocore needs.
        return boto3.session.Session(region_name=self.stack.region)

    def connector(self, provider: ProviderName) -> Any:
        return connector_for(
            Provider(provider), base_url=self.fleet.base_urls[provider], xero_scope_set=self.xero_scope_set
        )

    @property
    def xero_scope_set(self) -> str:
        return self.stack.parameters["XeroScopeSet"]

    # ------------------------------------------------------------------ sandbox set-ups, undone after

    @contextmanager
    def consent_to(self, provider: ProviderName, tenant_ids: list[str]) -> Iterator[None]:
        """The user ticks these organisations on the consent page (until the block ends)."""
        self.fleet.approve_tenants(provider, tenant_ids)
        try:
            yield
        finally:
            self.fleet.quickbooks.approve_realm = None
            self.fleet.xero.auto_approve_tenants = None

    @contextmanager
    def signed_in_at_sage_as(self, user_id: str) -> Iterator[None]:
        self.fleet.sage.auto_approve_user = user_id
        try:
            yield
        finally:
            self.fleet.sage.auto_approve_user = None


def run_concurrently[T](count: int, work: Callable[[int], T]) -> list[T | BaseException]:
    """`work(i)` in `count` threads released at the same moment; every outcome, errors included."""
    results: list[T | BaseException] = [RuntimeError("did not finish")] * count
    barrier = threading.Barrier(count)

    def worker(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as error:  # the test inspects every outcome
            results[index] = error

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results
