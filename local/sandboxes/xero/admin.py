"""The Xero sandbox's admin commands: `POST /_admin/{name}` with JSON arguments.

Each command is a control of `XeroSandbox` (sandbox.py) by the same name, for a test, a bench or a
person at `make dev` driving the sandbox over HTTP: seeding (`register_app`, `add_tenant`), consent
and limits (`auto_approve`, `set_limits`, `configure_webhook`, `intent_to_receive`), grants
(`revoke_grant`, `expire_tokens`), changes made in Xero (`pay_bill_elsewhere`, `change_bill_amount`,
`void_bill`, `delete_bill`, `approve_bill`, `edit_vendor`) and read-outs (`invoices`, `payments`,
`bank_transactions`, `contacts`). Faults, the clock and the request log are the core's commands
(core.py `ProviderSandbox.admin`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from local.sandboxes.core import AdminError, admin_arg
from local.sandboxes.generator import generate_ledger
from local.sandboxes.xero.ledger import LedgerError

if TYPE_CHECKING:
    from local.sandboxes.xero.sandbox import XeroSandbox


def run(sandbox: XeroSandbox, command: str, args: dict[str, Any]) -> dict[str, Any] | None:
    """The command's answer; None when `command` is not one of Xero's (the core's, perhaps)."""
    actions: dict[str, Callable[[dict[str, Any]], object]] = {
        "register_app": lambda a: sandbox.register_app(
            admin_arg(a, "client_id", str),
            a.get("client_secret"),
            admin_arg(a, "redirect_uris", list),
            name=a.get("name"),
        ),
        "auto_approve": lambda a: _auto_approve(sandbox, a),
        "set_limits": lambda a: sandbox.set_limits(dataclasses.replace(sandbox.limits, **a)),
        "change_bill_amount": lambda a: sandbox.change_bill_amount(
            _tenant(a), _bill(a), Decimal(str(admin_arg(a, "new_total", object)))
        ),
        "void_bill": lambda a: sandbox.void_bill(_tenant(a), _bill(a)),
        "delete_bill": lambda a: sandbox.delete_bill(_tenant(a), _bill(a)),
        "approve_bill": lambda a: sandbox.approve_bill(_tenant(a), _bill(a)),
        "edit_vendor": lambda a: sandbox.edit_vendor(
            _tenant(a),
            admin_arg(a, "vendor_id", str),
            **{k: v for k, v in a.items() if k not in ("tenant", "vendor_id")},
        ),
    }
    queries: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "add_tenant": lambda a: _add_tenant(sandbox, a),
        "revoke_grant": lambda a: {"revoked": sandbox.revoke_grant(a.get("tenant"))},
        "expire_tokens": lambda a: {
            "grants": sandbox.expire_tokens(a.get("tenant"), refresh_tokens=admin_arg(a, "refresh_tokens", bool, False))
        },
        "pay_bill_elsewhere": lambda a: {
            "payment_id": sandbox.pay_bill_elsewhere(
                _tenant(a), _bill(a), None if a.get("amount") is None else Decimal(str(a["amount"]))
            )
        },
        "configure_webhook": lambda a: {
            "key": sandbox.configure_webhook(admin_arg(a, "client_id", str), admin_arg(a, "url", str), key=a.get("key"))
        },
        "intent_to_receive": lambda a: {"passed": sandbox.intent_to_receive(admin_arg(a, "client_id", str))},
        "invoices": lambda a: {"invoices": sandbox.invoices(_tenant(a))},
        "payments": lambda a: {"payments": sandbox.payments(_tenant(a))},
        "bank_transactions": lambda a: {"bank_transactions": sandbox.bank_transactions(_tenant(a))},
        "contacts": lambda a: {"contacts": sandbox.contacts(_tenant(a))},
    }
    try:
        if command in actions:
            actions[command](args)
            return {"ok": True}
        if command in queries:
            return queries[command](args)
    except LedgerError as error:
        raise AdminError(400, str(error)) from error
    except KeyError as error:
        raise AdminError(404, f"unknown id {error}") from error
    return None


def _add_tenant(sandbox: XeroSandbox, args: dict[str, Any]) -> dict[str, Any]:
    ledger = generate_ledger(
        as_of=sandbox.clock.now(),
        seed=admin_arg(args, "seed", int, sandbox.seed),
        bills=admin_arg(args, "bills", int, 25),
        vendors=args.get("vendors"),
        documents=args.get("documents"),
        base_currency=admin_arg(args, "base_currency", str, "CAD"),
        company_name=args.get("company_name"),
    )
    return {"tenant": sandbox.add_tenant(ledger, name=args.get("name"))}


def _auto_approve(sandbox: XeroSandbox, args: dict[str, Any]) -> None:
    sandbox.auto_approve = admin_arg(args, "enabled", bool, True)
    sandbox.auto_approve_tenants = args.get("tenants")


def _tenant(args: Mapping[str, Any]) -> str:
    return admin_arg(args, "tenant", str)


def _bill(args: Mapping[str, Any]) -> str:
    return admin_arg(args, "bill_id", str)
