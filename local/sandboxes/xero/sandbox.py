"""`XeroSandbox`: the Xero sandbox tests, benches and the local stack use.

It is the wire (`routes.py`) plus the controls a test drives in Python: set-up (apps, organisations,
tokens, limits, webhooks), what a person does in Xero (pay a bill there, change, void, delete or
approve it, edit a vendor, reconcile a payment, revoke the app) and read-outs as the API's JSON.
`admin.py` serves the same controls as `POST /_admin/{name}`.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from local.sandboxes.generator import BillRecord, Ledger, VendorRecord
from local.sandboxes.xero import admin, wire
from local.sandboxes.xero.ledger import LedgerError, Organisation
from local.sandboxes.xero.limits import RateLimits, XeroLimits
from local.sandboxes.xero.routes import XeroRoutes
from local.sandboxes.xero.webhooks import Subscription, intent_to_receive
from local.sandboxes.xero.wire import JsonObject

# What an accounts-payable app asks for (broad scopes, as apps created before March 2026 have).
DEFAULT_SCOPES = (
    "openid",
    "profile",
    "email",
    "offline_access",
    "accounting.transactions",
    "accounting.contacts.read",
    "accounting.settings.read",
    "accounting.attachments.read",
)


class XeroSandbox(XeroRoutes):
    """Local stand-in for Xero: Identity, the Accounting API and the controls tests use."""

    def register_app(
        self, client_id: str, client_secret: str | None, redirect_uris: list[str], *, name: str | None = None
    ) -> None:
        """Register an app; `client_secret=None` makes it a PKCE app (no secret, code_verifier required)."""
        self.identity.register_app(client_id, client_secret, redirect_uris, name or f"Sandbox app {client_id}")

    def issue_tokens(
        self, client_id: str, *, tenants: list[str] | None = None, scopes: tuple[str, ...] = DEFAULT_SCOPES
    ) -> dict[str, Any]:
        """The token response the app would get after the user consented to `tenants` (default: all),
        for tests that do not drive the consent page."""
        app = self.identity.app(client_id)
        if app is None:
            raise LedgerError(f"no app {client_id}")
        chosen = tenants if tenants is not None else list(self._orgs)
        redirect_uri = app.redirect_uris[0]
        code = self.identity.approve(
            app,
            tenants=[(tenant, self.organisation(tenant).name) for tenant in chosen],
            scopes=scopes,
            redirect_uri=redirect_uri,
            code_challenge=None,
            code_challenge_method=None,
        )
        return self.identity.exchange_code(app, code, redirect_uri, None)

    def add_tenant(self, ledger: Ledger, *, name: str | None = None) -> str:
        """Load a generated ledger as a new organisation; returns its tenantId."""
        tenant_id = self._new_id()
        org = Organisation.from_ledger(ledger, tenant_id=tenant_id, name=name, clock=self.clock, new_id=self._new_id)
        org.listeners.append(lambda category, event, resource: self._emit(org, category, event, resource))
        with self._orgs_lock:
            self._orgs[tenant_id] = org
        return tenant_id

    def tenant_ids(self) -> list[str]:
        """The organisations' tenantIds, in the order they were added."""
        with self._orgs_lock:
            return list(self._orgs)

    def organisation(self, tenant_id: str) -> Organisation:
        org = self._orgs.get(tenant_id.lower())
        if org is None:
            raise LedgerError(f"no organisation {tenant_id}")
        return org

    def revoke_grant(self, tenant: str | None = None) -> int:
        """The user revoked the app's access (to `tenant`, or everywhere): refresh gives invalid_grant,
        API calls 401, connections are gone. Returns how many grants were revoked."""
        return self.identity.revoke_grants(tenant.lower() if tenant else None)

    def expire_tokens(self, tenant: str | None = None, *, refresh_tokens: bool = False) -> int:
        """Access tokens issued so far expire now (and refresh tokens too with `refresh_tokens`)."""
        return self.identity.expire_tokens(tenant.lower() if tenant else None, refresh_tokens=refresh_tokens)

    def pay_bill_elsewhere(self, tenant: str, bill_id: str, amount: Decimal | None = None) -> str:
        org = self.organisation(tenant)
        with org.lock:
            return org.pay_elsewhere(bill_id, amount).payment_id

    def change_bill_amount(self, tenant: str, bill_id: str, new_total: Decimal) -> None:
        org = self.organisation(tenant)
        with org.lock:
            org.change_total(bill_id, new_total)

    def void_bill(self, tenant: str, bill_id: str) -> None:
        org = self.organisation(tenant)
        with org.lock:
            org.void(bill_id)

    def delete_bill(self, tenant: str, bill_id: str) -> None:
        """Xero deletes only DRAFT or SUBMITTED bills; use `void_bill` for an AUTHORISED one."""
        org = self.organisation(tenant)
        with org.lock:
            org.delete(bill_id)

    def approve_bill(self, tenant: str, bill_id: str) -> None:
        org = self.organisation(tenant)
        with org.lock:
            org.authorise(bill_id)

    def edit_vendor(self, tenant: str, vendor_id: str, **changes: Any) -> None:
        """Change a contact's vendor fields, named as in the generator (`name`, `email`, `address`...)."""
        org = self.organisation(tenant)
        with org.lock:
            org.edit_contact(vendor_id, changes)

    def add_bill(self, tenant: str, bill: BillRecord) -> str:
        org = self.organisation(tenant)
        with org.lock:
            return org.add_bill(bill).invoice_id

    def add_vendor(self, tenant: str, vendor: VendorRecord) -> str:
        org = self.organisation(tenant)
        with org.lock:
            return org.add_vendor(vendor).contact_id

    def invoice_id(self, tenant: str, bill_key: str) -> str:
        """The InvoiceID of a generated bill."""
        return self.organisation(tenant).invoice_ids[bill_key]

    def contact_id(self, tenant: str, vendor_key: str) -> str:
        return self.organisation(tenant).contact_ids[vendor_key]

    def account_id(self, tenant: str, account_key: str) -> str:
        return self.organisation(tenant).account_ids[account_key]

    def reconcile(self, tenant: str, transaction_id: str, *, reconciled: bool = True) -> None:
        """Match a payment or bank transaction to the bank statement (it can no longer be deleted), or undo that."""
        org = self.organisation(tenant)
        with org.lock:
            org.reconcile(transaction_id.lower(), reconciled=reconciled)

    def set_limits(self, limits: XeroLimits) -> None:
        """Replace the limits (limits.py); counts start afresh."""
        self.limits = limits
        self.rate_limits = RateLimits(limits, self.clock)

    def requests_in_flight(self, client_id: str, tenant: str) -> int:
        """How many of an app's calls to an organisation hold a concurrency slot right now."""
        return self.rate_limits.in_flight(client_id, tenant.lower())

    def configure_webhook(self, client_id: str, url: str, *, key: str | None = None) -> str:
        """Subscribe an app to INVOICE and CONTACT events; returns the signing key (Xero generates one)."""
        signing_key = key or self._new_id().replace("-", "") + self._new_id().replace("-", "")
        self._webhooks[client_id] = Subscription(client_id, url, signing_key)
        return signing_key

    def intent_to_receive(self, client_id: str) -> bool:
        """Run Xero's endpoint check against the app's webhook URL; True when the endpoint passed."""
        subscription = self._webhooks.get(client_id)
        if subscription is None:
            raise LedgerError(f"no webhook configured for {client_id}")
        return intent_to_receive(subscription.url, subscription.key)

    # ---- read-outs for assertions (the JSON a GET would return) ----------------------------------------

    def invoices(self, tenant: str) -> list[JsonObject]:
        org = self.organisation(tenant)
        with org.lock:
            return [wire.invoice_json(org, invoice) for invoice in org.invoices.values()]

    def payments(self, tenant: str) -> list[JsonObject]:
        org = self.organisation(tenant)
        with org.lock:
            return [wire.payment_json(org, payment) for payment in org.payments.values()]

    def bank_transactions(self, tenant: str) -> list[JsonObject]:
        org = self.organisation(tenant)
        with org.lock:
            return [wire.bank_transaction_json(org, t) for t in org.bank_transactions.values()]

    def contacts(self, tenant: str) -> list[JsonObject]:
        org = self.organisation(tenant)
        with org.lock:
            suppliers = org.supplier_ids()
            balances = org.payable_balances(self.clock.now().date())
            return [
                wire.contact_json(
                    c, is_supplier=c.contact_id in suppliers, balance=balances.get(c.contact_id, (wire.ZERO, wire.ZERO))
                )
                for c in org.contacts.values()
            ]

    def connections(self) -> list[JsonObject]:
        return [dataclasses.asdict(connection) for connection in self.identity.all_connections()]

    def admin(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
        """The controls by name (admin.py); the base's faults, clock and request log otherwise."""
        answer = admin.run(self, command, args)
        return answer if answer is not None else super().admin(command, args)
