"""`QuickBooksSandbox`: the QuickBooks Online sandbox tests, benches and the local stack use.

It is the wire (`routes.py`) plus the controls a test drives in Python: set-up (apps, companies,
tokens, limits, webhooks), what a person does in QuickBooks (pay a bill there, change, void or delete
it, edit a vendor, close the books) and read-outs of the company's entities. `admin.py` serves the
same controls as `POST /_admin/{name}`.
"""

from __future__ import annotations

import copy
from datetime import date
from decimal import Decimal
from typing import Any

from local.sandboxes.generator import Ledger
from local.sandboxes.quickbooks import admin
from local.sandboxes.quickbooks.ledger import QboError, load_realm
from local.sandboxes.quickbooks.limits import BATCH_PER_MINUTE_LIMIT, METERED, RateLimits
from local.sandboxes.quickbooks.oauth import ACCOUNTING_SCOPE, App
from local.sandboxes.quickbooks.routes import QuickBooksRoutes, token_body
from local.sandboxes.quickbooks.webhooks import CLOUDEVENTS, LEGACY, WEBHOOK_ENTITIES, WebhookConfig


class QuickBooksSandbox(QuickBooksRoutes):
    """Intuit's OAuth server and QuickBooks Online Accounting API, for tests and local runs."""

    def register_app(self, client_id: str, client_secret: str, redirect_uris: list[str]) -> None:
        self._apps[client_id] = App(client_id, client_secret, tuple(redirect_uris))

    def add_tenant(self, ledger: Ledger, *, name: str | None = None) -> str:
        """Load a company from a generated ledger; returns its realmId."""
        with self._ledger_lock:
            realm_id = "9341" + "".join(str(self._realm_rng.randrange(10)) for _ in range(12))
            realm = load_realm(realm_id, ledger, name or ledger.company_name)
            realm.on_change = self._on_change
            self._realms[realm_id] = realm
            return realm_id

    def issue_tokens(
        self, client_id: str, realm_id: str, scopes: tuple[str, ...] = (ACCOUNTING_SCOPE,)
    ) -> dict[str, Any]:
        """Tokens as if the user had approved (like Intuit's OAuth Playground), for tests that are
        not about the consent flow. Same body as the token endpoint's."""
        if client_id not in self._apps:
            raise KeyError(f"no app {client_id}")
        self._realm(realm_id)
        return token_body(self.tokens.issue(client_id, realm_id, scopes))

    def set_rate_limits(
        self, *, per_minute: int, concurrent: int, batches_per_minute: int = BATCH_PER_MINUTE_LIMIT
    ) -> None:
        """Replace the limits (limits.py); counts start afresh."""
        self.rate_limits = RateLimits(
            self.clock, per_minute=per_minute, concurrent=concurrent, batches_per_minute=batches_per_minute
        )

    def metered(self, realm_id: str, kind: str = METERED) -> int:
        """Calls of a company metered as `kind` so far: CorePlus (reads) or Core (writes), batch items one each."""
        return self.meter.metered(realm_id, kind)

    def configure_webhooks(
        self,
        url: str,
        verifier_token: str,
        *,
        payload_format: str = CLOUDEVENTS,
        entities: tuple[str, ...] = WEBHOOK_ENTITIES,
    ) -> None:
        if payload_format not in (CLOUDEVENTS, LEGACY):
            raise ValueError(f"payload_format must be {CLOUDEVENTS!r} or {LEGACY!r}")
        self._webhook = WebhookConfig(url, verifier_token, payload_format, frozenset(entities))

    def revoke_grant(self, realm_id: str, client_id: str | None = None) -> int:
        """The user disconnects the app from the company: every grant to it dies."""
        return self.tokens.revoke_realm(realm_id, client_id)

    def expire_tokens(self, realm_id: str | None = None) -> int:
        """Access tokens (of one company, or all) expire now; refresh tokens still work."""
        return self.tokens.expire_access_tokens(realm_id)

    def expire_refresh_tokens(self, realm_id: str | None = None) -> int:
        return self.tokens.expire_refresh_tokens(realm_id)

    def pay_bill_elsewhere(self, realm_id: str, bill_id: str, amount: Decimal | None = None) -> dict[str, Any]:
        """Someone pays the bill in QuickBooks (a Check BillPayment); the whole balance by default."""
        with self._ledger_lock:
            try:
                return copy.deepcopy(self._realm(realm_id).pay_elsewhere(bill_id, amount, self.clock.now()))
            except QboError as exc:
                raise ValueError(exc.detail) from exc

    def change_bill_amount(self, realm_id: str, bill_id: str, new_total: Decimal) -> dict[str, Any]:
        with self._ledger_lock:
            return copy.deepcopy(self._realm(realm_id).change_bill_amount(bill_id, new_total, self.clock.now()))

    def void_bill(self, realm_id: str, bill_id: str) -> dict[str, Any]:
        with self._ledger_lock:
            return copy.deepcopy(self._realm(realm_id).void_bill(bill_id, self.clock.now()))

    def delete_bill(self, realm_id: str, bill_id: str) -> None:
        with self._ledger_lock:
            self._realm(realm_id).delete_bill(bill_id, self.clock.now())

    def close_books(self, realm_id: str, through: date | None) -> None:
        """Set the company's closing date: transactions dated on or before it can no longer be voided."""
        with self._ledger_lock:
            self._realm(realm_id).books_closed_on = through

    def edit_vendor(self, realm_id: str, vendor_id: str, **changes: Any) -> dict[str, Any]:
        """Change a vendor: generic keys name/email/active/phone/notes/tax_id, or Intuit field names."""
        with self._ledger_lock:
            return copy.deepcopy(self._realm(realm_id).edit_vendor(vendor_id, changes, self.clock.now()))

    # ---- read-outs for assertions ------------------------------------------------------------

    def realm_ids(self) -> list[str]:
        return list(self._realms)

    def entity_id(self, realm_id: str, key: str) -> str:
        """The QuickBooks Id of a generator record (vendor, bill or account key); drafts have none."""
        with self._ledger_lock:
            return self._realm(realm_id).ids_by_key[key]

    def _read_out(self, realm_id: str, entity_type: str) -> list[dict[str, Any]]:
        with self._ledger_lock:
            return copy.deepcopy(self._realm(realm_id).all(entity_type))

    def bills(self, realm_id: str) -> list[dict[str, Any]]:
        return self._read_out(realm_id, "Bill")

    def bill_payments(self, realm_id: str) -> list[dict[str, Any]]:
        return self._read_out(realm_id, "BillPayment")

    def purchases(self, realm_id: str) -> list[dict[str, Any]]:
        return self._read_out(realm_id, "Purchase")

    def vendors(self, realm_id: str) -> list[dict[str, Any]]:
        return self._read_out(realm_id, "Vendor")

    def accounts(self, realm_id: str) -> list[dict[str, Any]]:
        return self._read_out(realm_id, "Account")

    def attachables(self, realm_id: str) -> list[dict[str, Any]]:
        return self._read_out(realm_id, "Attachable")

    def admin(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
        """The controls by name (admin.py); the base's faults, clock and request log otherwise."""
        answer = admin.run(self, command, args)
        return answer if answer is not None else super().admin(command, args)
