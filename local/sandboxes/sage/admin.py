"""The Sage sandbox's admin commands: `POST /_admin/{name}` with JSON arguments.

Each command is a control of `SageSandbox` (sandbox.py) by the same name, for a test, a bench or a
person at `make dev` driving the sandbox over HTTP: seeding (`register_app`, `add_user`,
`add_business`), grants and the limit (`revoke_grant`, `expire_tokens`, `set_rate_limit`), changes
made in Sage (`pay_bill_elsewhere`, `change_bill_amount`, `void_bill`, `delete_bill`, `edit_vendor`)
and read-outs (`purchase_invoices`, `contact_payments`, `other_payments`). Faults, the clock and the
request log are the core's commands (core.py `ProviderSandbox.admin`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from local.sandboxes.core import AdminError, admin_arg
from local.sandboxes.generator import generate_ledger

if TYPE_CHECKING:
    from local.sandboxes.sage.sandbox import SageSandbox


def run(sandbox: SageSandbox, command: str, args: dict[str, Any]) -> dict[str, Any] | None:
    """The command's answer; None when `command` is not one of Sage's (the core's, perhaps)."""
    handler = _commands(sandbox).get(command)
    if handler is None:
        return None
    try:
        return handler(args)
    except (KeyError, ValueError) as exc:
        raise AdminError(400, str(exc)) from exc


def _commands(sandbox: SageSandbox) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    ok: dict[str, Any] = {"ok": True}

    def business_id(args: Mapping[str, Any]) -> str:
        return admin_arg(args, "business_id", str)

    def bill_id(args: Mapping[str, Any]) -> str:
        return admin_arg(args, "bill_id", str)

    def optional_str(args: Mapping[str, Any], name: str) -> str | None:
        return admin_arg(args, name, str) if args.get(name) is not None else None

    def optional_int(args: Mapping[str, Any], name: str) -> int | None:
        return admin_arg(args, name, int) if args.get(name) is not None else None

    def register_app(args: dict[str, Any]) -> dict[str, Any]:
        uris = [str(uri) for uri in admin_arg(args, "redirect_uris", list)]
        name = admin_arg(args, "name", str, "PayEdge Connect")
        sandbox.register_app(admin_arg(args, "client_id", str), admin_arg(args, "client_secret", str), uris, name)
        return ok

    def add_business(args: dict[str, Any]) -> dict[str, Any]:
        ledger = generate_ledger(
            seed=admin_arg(args, "seed", int, 0),
            bills=admin_arg(args, "bills", int),
            vendors=optional_int(args, "vendors"),
            documents=optional_int(args, "documents"),
            base_currency=admin_arg(args, "base_currency", str, "CAD"),
        )
        new_id = sandbox.add_tenant(ledger, name=optional_str(args, "name"), user_id=optional_str(args, "user_id"))
        return {"business_id": new_id}

    def pay_bill_elsewhere(args: dict[str, Any]) -> dict[str, Any]:
        amount = _decimal_arg(args, "amount") if args.get("amount") is not None else None
        return {"contact_payment_id": sandbox.pay_bill_elsewhere(business_id(args), bill_id(args), amount)}

    def edit_vendor(args: dict[str, Any]) -> dict[str, Any]:
        changes = admin_arg(args, "changes", dict)
        sandbox.edit_vendor(business_id(args), admin_arg(args, "vendor_id", str), **changes)
        return ok

    def change_bill_amount(args: dict[str, Any]) -> dict[str, Any]:
        sandbox.change_bill_amount(business_id(args), bill_id(args), _decimal_arg(args, "new_total"))
        return ok

    def void_bill(args: dict[str, Any]) -> dict[str, Any]:
        sandbox.void_bill(business_id(args), bill_id(args))
        return ok

    def delete_bill(args: dict[str, Any]) -> dict[str, Any]:
        sandbox.delete_bill(business_id(args), bill_id(args))
        return ok

    def set_rate_limit(args: dict[str, Any]) -> dict[str, Any]:
        sandbox.set_rate_limit(admin_arg(args, "per_minute", int))
        return ok

    return {
        "register_app": register_app,
        "add_user": lambda args: {
            "user_id": sandbox.add_user(admin_arg(args, "name", str), admin_arg(args, "email", str))
        },
        "add_business": add_business,
        "revoke_grant": lambda args: {
            "revoked": sandbox.revoke_grant(optional_str(args, "user_id"), optional_str(args, "client_id"))
        },
        "expire_tokens": lambda args: {
            "expired": sandbox.expire_tokens(
                optional_str(args, "user_id"), admin_arg(args, "include_refresh", bool, False)
            )
        },
        "set_rate_limit": set_rate_limit,
        "pay_bill_elsewhere": pay_bill_elsewhere,
        "change_bill_amount": change_bill_amount,
        "void_bill": void_bill,
        "delete_bill": delete_bill,
        "edit_vendor": edit_vendor,
        "purchase_invoices": lambda args: {"items": sandbox.purchase_invoices(business_id(args))},
        "contact_payments": lambda args: {"items": sandbox.contact_payments(business_id(args))},
        "other_payments": lambda args: {"items": sandbox.other_payments(business_id(args))},
    }


def _decimal_arg(args: Mapping[str, Any], name: str) -> Decimal:
    value = args.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise AdminError(400, f"argument {name!r} must be a number")
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise AdminError(400, f"argument {name!r} must be a number") from None
