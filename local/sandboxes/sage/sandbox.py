"""`SageSandbox`: the Sage Accounting sandbox tests, benches and the local stack use.

It is the wire (`routes.py`) plus the controls a test drives in Python: set-up (apps, users,
businesses, tokens, the limit), what a person does in Sage (pay a bill there, change, void or delete
it, edit a vendor, reconcile a payment, remove the app) and read-outs as full Sage representations.
`admin.py` serves the same controls as `POST /_admin/{name}`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from local.sandboxes.generator import Ledger
from local.sandboxes.sage import admin, wire
from local.sandboxes.sage.ledger import ZERO, Business, IdFactory
from local.sandboxes.sage.limits import RateLimits
from local.sandboxes.sage.oauth import App, User
from local.sandboxes.sage.routes import SageRoutes


class SageSandbox(SageRoutes):
    """Sage Accounting v3.1 and its OAuth server, with the controls tests use."""

    def register_app(
        self, client_id: str, client_secret: str, redirect_uris: list[str], name: str = "PayEdge Connect"
    ) -> None:
        with self._state:
            self._apps[client_id] = App(client_id, client_secret, list(redirect_uris), name)

    def add_user(self, name: str, email: str) -> str:
        """A Sage user account; returns its id (the token response's `requested_by_id`)."""
        with self._state:
            user = User(id=self._ids.new(), name=name, email=email)
            self._users[user.id] = user
            return user.id

    def add_tenant(self, ledger: Ledger, *, name: str | None = None, user_id: str | None = None) -> str:
        """Load `ledger` as a new business of `user_id` (default: the first user, created if needed).

        The first business a user gets is their lead business. Returns the business id.
        """
        with self._state:
            if user_id is None:
                user_id = next(iter(self._users), None) or self.add_user("Sandbox Owner", "owner@example.com")
            user = self._users[user_id]
            business_id = self._ids.new()
            business = Business.from_ledger(
                ledger,
                business_id=business_id,
                name=name or ledger.company_name,
                ids=IdFactory(self.seed * 7919 + len(self._businesses) + 1),
                now=self.clock.now(),
            )
            self._businesses[business_id] = business
            user.businesses.append(business_id)
            return business_id

    def grant_access(self, user_id: str, business_id: str) -> None:
        """Invite an existing user to another business (it does not become their lead business)."""
        with self._state:
            user = self._users[user_id]
            if business_id not in self._businesses:
                raise KeyError(f"no business {business_id}")
            if business_id not in user.businesses:
                user.businesses.append(business_id)

    def business(self, business_id: str) -> Business:
        with self._state:
            return self._businesses[business_id]

    def entity_id(self, business_id: str, generator_key: str) -> str:
        """The Sage id of a generator record: vendor -> contact, bill -> purchase invoice, bank account
        -> bank account, expense/payable account -> ledger account, attachment -> attachment."""
        with self._state:
            return self.business(business_id).ids_by_key[generator_key]

    def business_ids(self) -> list[str]:
        with self._state:
            return list(self._businesses)

    def users(self) -> list[str]:
        """Ids of the Sage user accounts, in the order they were added."""
        with self._state:
            return list(self._users)

    def businesses_of(self, user_id: str) -> list[str]:
        with self._state:
            return list(self._users[user_id].businesses)

    def revoke_grant(self, user_id: str | None = None, client_id: str | None = None) -> int:
        """The user removes the app in Sage: every token of the matching grants stops working."""
        return self.tokens.revoke_grants(user_id=user_id, client_id=client_id)

    def expire_tokens(self, user_id: str | None = None, include_refresh: bool = False) -> int:
        return self.tokens.expire(user_id=user_id, include_refresh=include_refresh)

    def set_rate_limit(self, per_minute: int) -> None:
        """Replace the limit (limits.py); counts start afresh."""
        self.rate_limits = RateLimits(self.clock, per_minute)

    def pay_bill_elsewhere(self, business_id: str, bill_id: str, amount: Decimal | None = None) -> str:
        """Someone pays the purchase invoice in Sage itself; returns the new contact payment's id."""
        with self._state:
            return self.business(business_id).pay_elsewhere(bill_id, amount, self.clock.now()).id

    def change_bill_amount(self, business_id: str, bill_id: str, new_total: Decimal) -> None:
        with self._state:
            self.business(business_id).change_invoice_total(bill_id, new_total, self.clock.now())

    def void_bill(self, business_id: str, bill_id: str) -> None:
        with self._state:
            self.business(business_id).void_invoice(bill_id, self.clock.now())

    def delete_bill(self, business_id: str, bill_id: str) -> None:
        with self._state:
            self.business(business_id).delete_invoice(bill_id, self.clock.now())

    def edit_vendor(self, business_id: str, vendor_id: str, **changes: Any) -> None:
        with self._state:
            self.business(business_id).edit_contact(vendor_id, changes, self.clock.now())

    def reconcile(self, business_id: str, payment_id: str) -> None:
        """Match a contact or other payment to the bank statement (it can no longer be deleted)."""
        with self._state:
            self.business(business_id).reconcile(payment_id)

    # ---- read-outs for assertions (full Sage representations) ------------------------------------

    def purchase_invoices(self, business_id: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self._state:
            business = self.business(business_id)
            return [
                wire.purchase_invoice_json(business, invoice, show_payments_allocations=True)
                for invoice in business.purchase_invoices.values()
                if include_deleted or invoice.deleted_at is None
            ]

    def contact_payments(self, business_id: str) -> list[dict[str, Any]]:
        with self._state:
            business = self.business(business_id)
            return [wire.contact_payment_json(business, item) for item in business.contact_payments.values()]

    def other_payments(self, business_id: str) -> list[dict[str, Any]]:
        with self._state:
            business = self.business(business_id)
            return [wire.other_payment_json(business, item) for item in business.other_payments.values()]

    def contacts(self, business_id: str) -> list[dict[str, Any]]:
        with self._state:
            business = self.business(business_id)
            balances = business.contact_balances()
            return [wire.contact_json(item, balances.get(item.id, ZERO)) for item in business.contacts.values()]

    def bank_accounts(self, business_id: str) -> list[dict[str, Any]]:
        with self._state:
            business = self.business(business_id)
            return [wire.bank_account_json(business, item) for item in business.bank_accounts.values()]

    def ledger_accounts(self, business_id: str) -> list[dict[str, Any]]:
        with self._state:
            business = self.business(business_id)
            return [wire.ledger_account_json(item) for item in business.ledger_accounts.values()]

    def admin(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
        """The controls by name (admin.py); the base's faults, clock and request log otherwise."""
        answer = admin.run(self, command, args)
        return answer if answer is not None else super().admin(command, args)
