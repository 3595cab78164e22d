"""The QuickBooks sandbox's admin commands: `POST /_admin/{name}` with JSON arguments.

Each command is a control of `QuickBooksSandbox` (sandbox.py) by the same name, for a test, a bench or
a person at `make dev` driving the sandbox over HTTP: seeding (`register_app`, `add_tenant`),
consent and limits (`auto_approve`, `set_rate_limits`, `configure_webhooks`), tokens (`revoke_grant`,
`expire_tokens`, `expire_refresh_tokens`) and changes made in QuickBooks (`pay_bill_elsewhere`,
`change_bill_amount`, `void_bill`, `delete_bill`, `edit_vendor`). Faults, the clock and the request
log are the core's commands (core.py `ProviderSandbox.admin`).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from local.sandboxes.core import AdminError, admin_arg
from local.sandboxes.generator import generate_ledger
from local.sandboxes.quickbooks.limits import CONCURRENT_LIMIT, PER_MINUTE_LIMIT
from local.sandboxes.quickbooks.webhooks import CLOUDEVENTS, WEBHOOK_ENTITIES

if TYPE_CHECKING:
    from local.sandboxes.quickbooks.sandbox import QuickBooksSandbox


def run(sandbox: QuickBooksSandbox, command: str, args: dict[str, Any]) -> dict[str, Any] | None:
    """The command's answer; None when `command` is not one of QuickBooks' (the core's, perhaps)."""
    control = COMMANDS.get(command)
    if control is None:
        return None
    try:
        return control(sandbox, args)
    except KeyError as exc:
        raise AdminError(404, str(exc)) from exc
    except ArithmeticError as exc:
        raise AdminError(400, f"not an amount: {exc}") from exc


def _register_app(sandbox: QuickBooksSandbox, args: dict[str, Any]) -> dict[str, Any]:
    redirect_uris = args.get("redirect_uris")
    if not isinstance(redirect_uris, list) or not all(isinstance(u, str) for u in redirect_uris):
        raise AdminError(400, "redirect_uris must be a list of strings")
    sandbox.register_app(admin_arg(args, "client_id", str), admin_arg(args, "client_secret", str), redirect_uris)
    return {"ok": True}


def _add_tenant(sandbox: QuickBooksSandbox, args: dict[str, Any]) -> dict[str, Any]:
    generated = generate_ledger(
        seed=admin_arg(args, "seed", int, 0),
        bills=admin_arg(args, "bills", int),
        vendors=args.get("vendors"),
        documents=args.get("documents"),
        base_currency=admin_arg(args, "base_currency", str, "CAD"),
        company_name=args.get("company_name"),
        open_bills=args.get("open_bills"),
        as_of=sandbox.clock.now(),
    )
    return {"tenant": sandbox.add_tenant(generated, name=args.get("name"))}


def _auto_approve(sandbox: QuickBooksSandbox, args: dict[str, Any]) -> dict[str, Any]:
    """Skip the consent page (or not); `tenant` names the company to approve, else the first."""
    sandbox.auto_approve = admin_arg(args, "enabled", bool, True)
    sandbox.approve_realm = args.get("tenant")
    return {"ok": True}


def _set_rate_limits(sandbox: QuickBooksSandbox, args: dict[str, Any]) -> dict[str, Any]:
    sandbox.set_rate_limits(
        per_minute=admin_arg(args, "per_minute", int, PER_MINUTE_LIMIT),
        concurrent=admin_arg(args, "concurrent", int, CONCURRENT_LIMIT),
    )
    return {"ok": True}


def _configure_webhooks(sandbox: QuickBooksSandbox, args: dict[str, Any]) -> dict[str, Any]:
    sandbox.configure_webhooks(
        admin_arg(args, "url", str),
        admin_arg(args, "verifier_token", str),
        payload_format=admin_arg(args, "format", str, CLOUDEVENTS),
        entities=tuple(args.get("entities") or WEBHOOK_ENTITIES),
    )
    return {"ok": True}


def _revoke_grant(sandbox: QuickBooksSandbox, args: dict[str, Any]) -> dict[str, Any]:
    return {"revoked": sandbox.revoke_grant(admin_arg(args, "tenant", str), args.get("client_id"))}


def _expire_tokens(sandbox: QuickBooksSandbox, args: dict[str, Any]) -> dict[str, Any]:
    return {"expired": sandbox.expire_tokens(args.get("tenant"))}


def _expire_refresh_tokens(sandbox: QuickBooksSandbox, args: dict[str, Any]) -> dict[str, Any]:
    return {"expired": sandbox.expire_refresh_tokens(args.get("tenant"))}


def _pay_bill_elsewhere(sandbox: QuickBooksSandbox, args: dict[str, Any]) -> dict[str, Any]:
    amount = args.get("amount")
    payment = sandbox.pay_bill_elsewhere(
        admin_arg(args, "tenant", str),
        admin_arg(args, "bill_id", str),
        Decimal(str(amount)) if amount is not None else None,
    )
    return {"BillPayment": payment}


def _change_bill_amount(sandbox: QuickBooksSandbox, args: dict[str, Any]) -> dict[str, Any]:
    new_total = Decimal(str(args.get("new_total")))
    bill = sandbox.change_bill_amount(admin_arg(args, "tenant", str), admin_arg(args, "bill_id", str), new_total)
    return {"Bill": bill}


def _void_bill(sandbox: QuickBooksSandbox, args: dict[str, Any]) -> dict[str, Any]:
    return {"Bill": sandbox.void_bill(admin_arg(args, "tenant", str), admin_arg(args, "bill_id", str))}


def _delete_bill(sandbox: QuickBooksSandbox, args: dict[str, Any]) -> dict[str, Any]:
    sandbox.delete_bill(admin_arg(args, "tenant", str), admin_arg(args, "bill_id", str))
    return {"ok": True}


def _edit_vendor(sandbox: QuickBooksSandbox, args: dict[str, Any]) -> dict[str, Any]:
    changes = args.get("changes")
    if not isinstance(changes, dict):
        raise AdminError(400, "changes must be an object")
    vendor = sandbox.edit_vendor(admin_arg(args, "tenant", str), admin_arg(args, "vendor_id", str), **changes)
    return {"Vendor": vendor}


COMMANDS: dict[str, Callable[[QuickBooksSandbox, dict[str, Any]], dict[str, Any]]] = {
    "register_app": _register_app,
    "add_tenant": _add_tenant,
    "auto_approve": _auto_approve,
    "set_rate_limits": _set_rate_limits,
    "configure_webhooks": _configure_webhooks,
    "revoke_grant": _revoke_grant,
    "expire_tokens": _expire_tokens,
    "expire_refresh_tokens": _expire_refresh_tokens,
    "pay_bill_elsewhere": _pay_bill_elsewhere,
    "change_bill_amount": _change_bill_amount,
    "void_bill": _void_bill,
    "delete_bill": _delete_bill,
    "edit_vendor": _edit_vendor,
}
