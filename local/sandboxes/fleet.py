"""The three provider sandboxes started together, seeded and registered, ready for the service.

One place that tests (in-process), `make demo`/`make dev` and the benchmarks use to get QuickBooks,
Xero and Sage on loopback, each with one OAuth app, seeded ledgers and webhooks:

    with SandboxFleet(redirect_uris=gateway_redirect_uris(gateway_url), auto_approve=True) as fleet:
        environ["PROVIDER_BASE_URLS"] = fleet.provider_base_urls_json()
        fleet.credentials["xero"].client_id  # what the operator stores at <prefix>apps/xero
        fleet.xero.faults.fail("get_invoices", 503)  # the sandbox objects, for faults and ledger changes

`python -m local.sandboxes` runs the same fleet as a process.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Self

from local.sandboxes.core import Clock, ProviderSandbox
from local.sandboxes.generator import generate_ledger
from local.sandboxes.quickbooks import QuickBooksSandbox
from local.sandboxes.sage import SageSandbox
from local.sandboxes.xero import XeroSandbox

ProviderName = Literal["quickbooks", "xero", "sage"]
PROVIDERS: Final[tuple[ProviderName, ...]] = ("quickbooks", "xero", "sage")
# Loopback only: the sandboxes hand out tokens to whoever asks, so they never listen on a network.
LOOPBACK: Final = "127.0.0.1"
DEFAULT_SEED: Final = 1
DEFAULT_BILLS_PER_TENANT: Final = 12
# Xero gets two organisations so the service's organisation choice is exercised by default.
DEFAULT_TENANTS: Final[Mapping[ProviderName, int]] = {"quickbooks": 1, "xero": 2, "sage": 1}
APP_NAME: Final = "PayEdge Connect (local)"
SAGE_OWNER_NAME: Final = "PayEdge Local Owner"
SAGE_OWNER_EMAIL: Final = "owner@payedge-local.example"


@dataclass(frozen=True)
class AppCredentials:
    """The OAuth app registered at one sandbox, as the operator would copy it from the developer portal.

    `webhook_key` signs the provider's webhooks: Intuit's verifier token, Xero's webhook key;
    None for Sage, which has no webhooks.
    """

    client_id: str
    client_secret: str
    webhook_key: str | None


def default_credentials(provider: ProviderName) -> AppCredentials:
    """Deterministic credentials, so a local stack configured once keeps working across restarts."""
    webhook_keys: dict[ProviderName, str | None] = {
        "quickbooks": "payedge-local-quickbooks-verifier-token",
        "xero": "payedge-local-xero-webhook-key",
        "sage": None,
    }
    return AppCredentials(
        client_id=f"payedge-local-{provider}",
        client_secret=f"payedge-local-{provider}-secret",
        webhook_key=webhook_keys[provider],
    )


def gateway_redirect_uris(gateway_url: str) -> dict[ProviderName, list[str]]:
    """The service's OAuth callback per provider: <API base URL>/oauth/<provider>/callback."""
    base = gateway_url.rstrip("/")
    return {provider: [f"{base}/oauth/{provider}/callback"] for provider in PROVIDERS}


def _sandbox_seed(seed: int, provider: ProviderName) -> int:
    # crc32 rather than hash(): str hashes are salted per process, and runs must repeat.
    return zlib.crc32(f"{seed}/{provider}".encode())


def _tenant_seed(seed: int, provider: ProviderName, index: int) -> int:
    # Each tenant gets its own books.
    return zlib.crc32(f"{seed}/{provider}/{index}".encode())


class SandboxFleet:
    """QuickBooks, Xero and Sage sandboxes on loopback, one OAuth app each, seeded ledgers.

    The sandboxes and their tenants exist from construction (so tenant ids are known before
    starting); `start()` puts them on the network. Apps can be re-registered and webhooks
    re-pointed after start, because the local gateway often needs the fleet's base URLs before
    its own URL (the redirect URIs' host) is known.
    """

    def __init__(
        self,
        *,
        redirect_uris: Mapping[ProviderName, Sequence[str]] | None = None,
        webhook_url: str | None = None,
        auto_approve: bool = False,
        seed: int = DEFAULT_SEED,
        bills_per_tenant: int = DEFAULT_BILLS_PER_TENANT,
        tenants: Mapping[ProviderName, int] | None = None,
        ports: Mapping[ProviderName, int] | None = None,
        credentials: Mapping[ProviderName, AppCredentials] | None = None,
    ) -> None:
        """`redirect_uris`: the app's allowed callbacks per provider (see `gateway_redirect_uris`);
        `webhook_url`: where webhooks go, "{provider}" replaced by the provider's name, None for none;
        `tenants`: how many companies/organisations/businesses per provider; `ports`: 0 = a free port.
        """
        tenant_counts = {**DEFAULT_TENANTS, **(tenants or {})}
        if any(count < 1 for count in tenant_counts.values()):
            raise ValueError(f"each provider needs at least one tenant, got {tenant_counts}")
        self.clock = Clock()  # shared, so advancing time moves every provider at once
        # A seed per sandbox: with one seed, Xero and Sage would mint the same ids from the same random
        # bits, and a service mixing up providers' tenants could go unnoticed.
        self.quickbooks = QuickBooksSandbox(
            clock=self.clock, auto_approve=auto_approve, seed=_sandbox_seed(seed, "quickbooks")
        )
        self.xero = XeroSandbox(clock=self.clock, auto_approve=auto_approve, seed=_sandbox_seed(seed, "xero"))
        self.sage = SageSandbox(clock=self.clock, auto_approve=auto_approve, seed=_sandbox_seed(seed, "sage"))
        self.sandboxes: dict[ProviderName, ProviderSandbox] = {
            "quickbooks": self.quickbooks,
            "xero": self.xero,
            "sage": self.sage,
        }
        self.credentials: dict[ProviderName, AppCredentials] = {
            provider: (credentials or {}).get(provider) or default_credentials(provider) for provider in PROVIDERS
        }
        self._ports: dict[ProviderName, int] = {provider: (ports or {}).get(provider, 0) for provider in PROVIDERS}
        self._sage_owner = self.sage.add_user(SAGE_OWNER_NAME, SAGE_OWNER_EMAIL)
        self.tenant_ids: dict[ProviderName, list[str]] = {
            provider: self._load_tenants(provider, tenant_counts[provider], seed, bills_per_tenant)
            for provider in PROVIDERS
        }
        self.redirect_uris: dict[ProviderName, list[str]] = {}
        self.register_apps(redirect_uris or {})
        self.webhook_url: str | None = None
        if webhook_url is not None:
            self.configure_webhooks(webhook_url)
        self._base_urls: dict[ProviderName, str] | None = None

    # ---- set-up ------------------------------------------------------------------------------

    def _load_tenants(self, provider: ProviderName, count: int, seed: int, bills: int) -> list[str]:
        ids: list[str] = []
        names: set[str] = set()
        for index in range(count):
            ledger = generate_ledger(seed=_tenant_seed(seed, provider, index), bills=bills)
            name = ledger.company_name
            # Generated company names can repeat; a consent page listing two identical names is useless.
            if name in names:
                name = f"{name} ({index + 1})"
            names.add(name)
            if provider == "quickbooks":
                ids.append(self.quickbooks.add_tenant(ledger, name=name))
            elif provider == "xero":
                ids.append(self.xero.add_tenant(ledger, name=name))
            else:
                ids.append(self.sage.add_tenant(ledger, name=name, user_id=self._sage_owner))
        return ids

    def register_apps(self, redirect_uris: Mapping[ProviderName, Sequence[str]]) -> None:
        """(Re-)register each provider's app with these callbacks; a provider left out keeps its own."""
        for provider in PROVIDERS:
            if provider in redirect_uris or provider not in self.redirect_uris:
                self.redirect_uris[provider] = list(redirect_uris.get(provider, ()))
        qbo, xero, sage = (self.credentials[provider] for provider in PROVIDERS)
        self.quickbooks.register_app(qbo.client_id, qbo.client_secret, self.redirect_uris["quickbooks"])
        self.xero.register_app(xero.client_id, xero.client_secret, self.redirect_uris["xero"], name=APP_NAME)
        self.sage.register_app(sage.client_id, sage.client_secret, self.redirect_uris["sage"], APP_NAME)

    def configure_webhooks(self, webhook_url: str) -> None:
        """Send QuickBooks and Xero webhooks to `webhook_url` ("{provider}" replaced); Sage has none."""
        self.webhook_url = webhook_url
        qbo_key, xero_key = self.credentials["quickbooks"].webhook_key, self.credentials["xero"].webhook_key
        if qbo_key is not None:
            self.quickbooks.configure_webhooks(webhook_url.replace("{provider}", "quickbooks"), qbo_key)
        if xero_key is not None:
            self.xero.configure_webhook(
                self.credentials["xero"].client_id, webhook_url.replace("{provider}", "xero"), key=xero_key
            )

    def approve_tenants(self, provider: ProviderName, tenant_ids: Sequence[str]) -> None:
        """Which tenants auto-approve consents to, like the user ticking them on the consent page.

        QuickBooks connects one company per consent; Xero any set of organisations; a Sage grant
        always covers every business of the user who signs in, so only all of them can be chosen.
        """
        unknown = set(tenant_ids) - set(self.tenant_ids[provider])
        if unknown or not tenant_ids:
            raise ValueError(f"choose among the {provider} tenants {self.tenant_ids[provider]}, got {tenant_ids}")
        if provider == "quickbooks":
            if len(tenant_ids) != 1:
                raise ValueError("QuickBooks connects exactly one company per consent")
            self.quickbooks.approve_realm = tenant_ids[0]
        elif provider == "xero":
            self.xero.auto_approve_tenants = list(tenant_ids)
        elif set(tenant_ids) != set(self.tenant_ids["sage"]):
            raise ValueError("a Sage grant covers every business of the user; choose all of them")

    # ---- running -----------------------------------------------------------------------------

    def start(self) -> None:
        """Serve every sandbox on loopback; if one cannot start, the others are stopped again."""
        if self._base_urls is not None:
            raise RuntimeError("fleet already started")
        base_urls: dict[ProviderName, str] = {}
        try:
            for provider in PROVIDERS:
                base_urls[provider] = self.sandboxes[provider].start(LOOPBACK, self._ports[provider])
        except BaseException:
            self.stop()
            raise
        self._base_urls = base_urls

    def stop(self) -> None:
        """Stop every sandbox; safe to call twice or on a fleet that never started."""
        for sandbox in self.sandboxes.values():
            sandbox.stop()
        self._base_urls = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- what the service needs ----------------------------------------------------------------

    @property
    def base_urls(self) -> dict[ProviderName, str]:
        """Base URL per provider, e.g. {"quickbooks": "http://127.0.0.1:54321", ...}."""
        if self._base_urls is None:
            raise RuntimeError("fleet not started")
        return dict(self._base_urls)

    def provider_base_urls_json(self) -> str:
        """The value of the service's PROVIDER_BASE_URLS setting."""
        return json.dumps(self.base_urls)

    def summary(self) -> dict[str, Any]:
        """Everything a client of the fleet needs, as JSON-ready data (what `python -m` prints)."""
        return {
            "base_urls": self.base_urls,
            "apps": {
                provider: {
                    "client_id": app.client_id,
                    "client_secret": app.client_secret,
                    "webhook_key": app.webhook_key,
                }
                for provider, app in self.credentials.items()
            },
            "tenants": self.tenant_ids,
            "redirect_uris": self.redirect_uris,
            "webhook_url": self.webhook_url,
        }
