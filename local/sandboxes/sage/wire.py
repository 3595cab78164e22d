"""Sage Accounting v3.1 JSON shapes of the ledger entities (Swagger definitions in
docs/providers.md#specs), the `attributes` projection and the `$items` page envelope.

Every renderer returns the full representation (what `attributes=all` exposes); `project` cuts it
down to what a request asked for.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from local.sandboxes.sage.ledger import (
    ARTEFACT_STATUSES,
    CURRENCY_NAMES,
    PAYMENT_METHODS,
    TRANSACTION_TYPES,
    UNPAID,
    ZERO,
    Attachment,
    BankAccount,
    Business,
    Contact,
    ContactPayment,
    LedgerAccount,
    OtherPayment,
    PurchaseInvoice,
    sage_exchange_rate,
    to_base,
)

BASE_ATTRIBUTES = ("id", "displayed_as", "$path")


LEDGER_ACCOUNT_TYPES = {
    "BANK": "Bank",
    "OVERHEADS": "Overheads",
    "CURRENT_LIABILITY": "Current Liabilities",
}
COUNTRY_NAMES = {"CA": "Canada", "US": "United States", "DE": "Germany", "GB": "United Kingdom"}
ATTACHMENT_CONTEXT_TYPES = {"PURCHASE_INVOICE": "Purchase Invoice"}


def timestamp(moment: datetime | None) -> str | None:
    """Sage's timestamp form, e.g. 2021-08-10T15:57:42Z."""
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def ref(collection: str, key: str, displayed_as: str) -> dict[str, Any]:
    """A nested link: Sage's `Base` shape."""
    return {"id": key, "displayed_as": displayed_as, "$path": f"/{collection}/{key}"}


def currency_ref(code: str) -> dict[str, Any]:
    return ref("currencies", code, f"{CURRENCY_NAMES.get(code, code)} ({code})")


def status_ref(status_id: str) -> dict[str, Any]:
    return ref("artefact_statuses", status_id, ARTEFACT_STATUSES[status_id])


def transaction_type_ref(type_id: str) -> dict[str, Any]:
    return ref("transaction_types", type_id, TRANSACTION_TYPES[type_id])


def payment_method_ref(method_id: str) -> dict[str, Any]:
    return ref("payment_methods", method_id, PAYMENT_METHODS[method_id])


def tax_rate_ref(business: Business) -> dict[str, Any]:
    # Lines are held without tax; Sage's zero rate carries the region in its id (e.g. GB_ZERO).
    code = f"{business.country.upper()}_ZERO"
    return ref("tax_rates", code, "Zero 0.00%")


def project(full: Mapping[str, Any], attributes: str | None, *, listing: bool) -> dict[str, Any]:
    """What Sage exposes: lists show only id/displayed_as/$path unless `attributes` asks for more
    (`all` or a comma-separated list); a single resource shows everything unless `attributes` narrows it.
    """
    if attributes is None or attributes.strip() == "":
        if listing:
            return {name: full[name] for name in BASE_ATTRIBUTES if name in full}
        return dict(full)
    wanted = {name.strip() for name in attributes.split(",") if name.strip()}
    if "all" in wanted:
        return dict(full)
    return {name: value for name, value in full.items() if name in BASE_ATTRIBUTES or name in wanted}


# --------------------------------------------------------------------------------------------------
# Entities
# --------------------------------------------------------------------------------------------------


def business_json(business: Business) -> dict[str, Any]:
    # The accounting Swagger has no Business definition; the documented /businesses items carry
    # only the base attributes (developer.sage.com multi_business guide).
    return ref("businesses", business.id, business.name)


def contact_json(contact: Contact, balance: Decimal) -> dict[str, Any]:
    """`balance`: what the business owes the contact (Business.contact_balances)."""
    type_name = "Supplier" if contact.contact_type == "VENDOR" else "Customer"
    address = contact.address
    main_address = None
    if address is not None:
        country = address.country.upper()
        lines = [address.line1, address.line2, address.city, address.region, address.postal_code]
        main_address = {
            **ref("addresses", contact.address_id, ", ".join(part for part in lines if part)),
            "address_line_1": (address.line1 or "")[:50] or None,
            "address_line_2": (address.line2 or "")[:50] or None,
            "city": (address.city or "")[:50] or None,
            "region": (address.region or "")[:50] or None,
            "postal_code": (address.postal_code or "")[:10] or None,
            "country": ref("countries", country, COUNTRY_NAMES.get(country, country)),
            "address_type": ref(
                "address_types",
                "ACCOUNTS" if contact.contact_type == "VENDOR" else "DELIVERY",
                "Accounts" if contact.contact_type == "VENDOR" else "Delivery",
            ),
            "is_main_address": True,
            "name": None,
            "created_at": timestamp(contact.created_at),
            "updated_at": timestamp(contact.updated_at),
            "deleted_at": None,
        }
    person = None
    if contact.contact_person is not None or contact.telephone is not None or contact.mobile is not None:
        person = {
            **ref("contact_persons", contact.person_id, contact.contact_person or contact.name[:50]),
            "contact_person_types": [ref("contact_person_types", "ACCOUNTS", "Accounts")],
            "name": contact.contact_person,
            "job_title": None,
            "telephone": contact.telephone,
            "mobile": contact.mobile,
            "email": contact.email,
            "fax": None,
            "is_main_contact": True,
            "is_preferred_contact": False,
            "created_at": timestamp(contact.created_at),
            "updated_at": timestamp(contact.updated_at),
            "deleted_at": None,
        }
    bank_details = None
    if contact.bank_account_number is not None or contact.iban is not None:
        bank_details = {
            "account_name": contact.name,
            "account_number": contact.bank_account_number,
            "sort_code": contact.sort_code,
            "bic": None,
            "iban": contact.iban,
        }
    return {
        **ref("contacts", contact.id, f"{contact.name} ({contact.reference})"),
        "created_at": timestamp(contact.created_at),
        "updated_at": timestamp(contact.updated_at),
        "deleted_at": timestamp(contact.deleted_at),
        "links": [],
        "contact_types": [ref("contact_types", contact.contact_type, type_name)],
        "name": contact.name,
        "reference": contact.reference,
        "default_purchase_ledger_account": None,
        "tax_number": contact.tax_number,
        "notes": contact.notes,
        "locale": "en",
        "main_address": main_address,
        "delivery_address": None,
        "main_contact_person": person,
        "bank_account_details": bank_details,
        "credit_limit": ZERO,
        "credit_days": None,
        "currency": currency_ref(contact.currency),
        "balance": balance,
        "email": contact.email,
        "is_active": contact.is_active,
        "system": False,
        "deletable": False,
        "gdpr_obfuscated": False,
        "has_unfinished_recurring_invoices": False,
        "aux_reference": None,
        "registered_number": None,
    }


def purchase_invoice_json(
    business: Business, invoice: PurchaseInvoice, *, show_payments_allocations: bool = False
) -> dict[str, Any]:
    rate = invoice.base_rate
    discount = sum((item.discount for item in invoice.allocations), ZERO)
    paid_amount = sum((item.amount for item in invoice.allocations), ZERO)
    displayed = invoice.vendor_reference or invoice.reference or invoice.contact_name
    result: dict[str, Any] = {
        **ref("purchase_invoices", invoice.id, displayed),
        "created_at": timestamp(invoice.created_at),
        "updated_at": timestamp(invoice.updated_at),
        "deleted_at": timestamp(invoice.deleted_at),
        "links": [],
        "editable": invoice.total_paid == 0 and invoice.status_id != "VOID",
        "transaction": {
            **ref("transactions", invoice.transaction_id, displayed),
            "number_of_attachments": str(len(invoice.attachment_ids)),
        },
        "transaction_type": transaction_type_ref("PURCHASE_INVOICE"),
        "contact": ref("contacts", invoice.contact_id, f"{invoice.contact_name} ({invoice.contact_reference})"),
        "contact_name": invoice.contact_name,
        "contact_reference": invoice.contact_reference,
        "date": day(invoice.date),
        "due_date": day(invoice.due_date),
        "reference": invoice.reference,
        "vendor_reference": invoice.vendor_reference,
        "notes": invoice.notes,
        "total_quantity": Decimal(len(invoice.lines)),
        "net_amount": invoice.net_amount,
        "tax_amount": invoice.tax_amount,
        "total_amount": invoice.total_amount,
        "payments_allocations_total_amount": paid_amount,
        "payments_allocations_total_discount": discount,
        "total_paid": invoice.total_paid,
        "outstanding_amount": invoice.outstanding_amount,
        "currency": currency_ref(invoice.currency),
        "exchange_rate": sage_exchange_rate(rate),
        "inverse_exchange_rate": rate,
        "base_currency_net_amount": to_base(invoice.net_amount, rate),
        "base_currency_tax_amount": to_base(invoice.tax_amount, rate),
        "base_currency_total_amount": to_base(invoice.total_amount, rate),
        "base_currency_outstanding_amount": to_base(invoice.outstanding_amount, rate),
        "status": status_ref(invoice.status_id),
        "void_reason": invoice.void_reason,
        "invoice_lines": [
            {
                "id": line.id,
                "displayed_as": line.description,
                "description": line.description,
                "ledger_account": _ledger_ref(business, line.ledger_account_id),
                "quantity": Decimal("1.00"),
                "unit_price": line.net_amount,
                "net_amount": line.net_amount,
                "tax_rate": tax_rate_ref(business),
                "tax_amount": line.tax_amount,
                "total_amount": line.total_amount,
                "base_currency_unit_price": to_base(line.net_amount, rate),
                "unit_price_includes_tax": False,
                "base_currency_net_amount": to_base(line.net_amount, rate),
                "base_currency_tax_amount": to_base(line.tax_amount, rate),
                "base_currency_total_amount": to_base(line.total_amount, rate),
            }
            for line in invoice.lines
        ],
        "last_paid": day(invoice.last_paid),
        "tax_reconciled": False,
        "migrated": False,
    }
    if show_payments_allocations:
        result["payments_allocations"] = [
            {
                "links": [],
                "date": day(item.date),
                "type": "Supplier Payment",
                "reference": item.reference,
                "amount": item.amount,
                "discount": item.discount,
                "contact_payment": ref("contact_payments", item.payment_id, item.reference or ""),
                "displayed_as": item.reference or "",
            }
            for item in invoice.allocations
        ]
    return result


def bank_account_json(business: Business, bank: BankAccount) -> dict[str, Any]:
    return {
        **ref("bank_accounts", bank.id, f"{bank.name} ({bank.nominal_code})"),
        "created_at": timestamp(bank.created_at),
        "updated_at": timestamp(bank.updated_at),
        "deleted_at": timestamp(bank.deleted_at),
        "bank_account_details": {
            "account_name": bank.name,
            "account_number": bank.account_number,
            "sort_code": None,
            "bic": None,
            "iban": None,
        },
        "ledger_account": _ledger_ref(business, bank.ledger_account_id),
        "bank_account_type": ref("bank_account_types", "CHECKING", "Current"),
        "balance": bank.balance,
        "main_address": None,
        "main_contact_person": None,
        "nominal_code": bank.nominal_code,
        "editable": True,
        "deletable": False,
        "default_payment_method": payment_method_ref("BANK_TRANSFER"),
        "is_active": bank.is_active,
        "currency": currency_ref(bank.currency),
    }


def ledger_account_json(account: LedgerAccount) -> dict[str, Any]:
    scopes = [
        scope
        for scope, visible in (
            ("bank", account.visible_in_banking),
            ("purchasing", account.visible_in_expenses),
            ("other_payment", account.visible_in_other_payments),
            ("journals", account.included_in_chart),
            ("reporting", account.included_in_chart),
        )
        if visible
    ]
    return {
        **ref("ledger_accounts", account.id, f"{account.name} ({account.nominal_code})"),
        "created_at": timestamp(account.created_at),
        "updated_at": timestamp(account.updated_at),
        "name": account.name,
        "display_name": account.name,
        "visible_scopes": scopes,
        "included_in_chart": account.included_in_chart,
        "nominal_code": account.nominal_code,
        "ledger_account_type": ref("ledger_account_types", account.type_id, LEDGER_ACCOUNT_TYPES[account.type_id]),
        "ledger_account_classification": None,
        "tax_rate": None,
        "fixed_tax_rate": False,
        "visible_in_banking": account.visible_in_banking,
        "visible_in_expenses": account.visible_in_expenses,
        "visible_in_journals": account.included_in_chart,
        "visible_in_other_payments": account.visible_in_other_payments,
        "visible_in_other_receipts": False,
        "visible_in_reporting": account.included_in_chart,
        "visible_in_sales": False,
        "is_control_account": account.is_control_account,
        "control_name": account.control_name,
        "display_formatted": f"{account.nominal_code} - {account.name}",
    }


def attachment_json(business: Business, attachment: Attachment) -> dict[str, Any]:
    invoice = business.purchase_invoices.get(attachment.context_id)
    context_name = invoice.vendor_reference or invoice.contact_name if invoice is not None else ""
    transaction = ref("transactions", invoice.transaction_id, context_name) if invoice is not None else None
    return {
        **ref("attachments", attachment.id, attachment.file_name),
        "deleted_at": timestamp(attachment.deleted_at),
        "file": base64.b64encode(attachment.content).decode("ascii"),
        "mime_type": attachment.mime_type,
        "description": None,
        "file_extension": attachment.file_extension,
        "transaction": transaction,
        "file_size": len(attachment.content),
        "file_name": attachment.file_name,
        "$file_path": f"/attachments/{attachment.id}/file",
        "attachment_context_type": ref(
            "attachment_context_types",
            attachment.context_type,
            ATTACHMENT_CONTEXT_TYPES[attachment.context_type],
        ),
        "attachment_context": ref("purchase_invoices", attachment.context_id, context_name),
        "is_public": False,
        "created_at": timestamp(attachment.created_at),
        "updated_at": timestamp(attachment.updated_at),
    }


def contact_payment_json(business: Business, payment: ContactPayment) -> dict[str, Any]:
    rate = payment.base_rate
    contact = business.contacts[payment.contact_id]
    bank = business.bank_accounts[payment.bank_account_id]
    displayed = payment.reference or f"{contact.name} {payment.date.isoformat()}"
    on_account = None
    if payment.on_account_id is not None:
        on_account = {
            **ref("payments_on_account", payment.on_account_id, displayed),
            "created_at": timestamp(payment.created_at),
            "updated_at": timestamp(payment.updated_at),
            "contact_name": contact.name,
            "contact_reference": contact.reference,
            "contact": ref("contacts", contact.id, f"{contact.name} ({contact.reference})"),
            "date": day(payment.date),
            "reference": payment.reference,
            "net_amount": payment.on_account_amount,
            "tax_amount": ZERO,
            "total_amount": payment.on_account_amount,
            "outstanding_amount": payment.on_account_amount,
            "currency": currency_ref(payment.currency),
            "exchange_rate": sage_exchange_rate(rate),
            "base_currency_net_amount": to_base(payment.on_account_amount, rate),
            "base_currency_tax_amount": ZERO,
            "base_currency_total_amount": to_base(payment.on_account_amount, rate),
            "base_currency_outstanding_amount": to_base(payment.on_account_amount, rate),
            "status": status_ref(UNPAID),
        }
    return {
        **ref("contact_payments", payment.id, displayed),
        "created_at": timestamp(payment.created_at),
        "updated_at": timestamp(payment.updated_at),
        "deleted_at": timestamp(payment.deleted_at),
        "links": [],
        "transaction": ref("transactions", payment.transaction_id, displayed),
        "transaction_type": transaction_type_ref(payment.transaction_type_id),
        "payment_method": payment_method_ref(payment.payment_method_id),
        "contact": ref("contacts", contact.id, f"{contact.name} ({contact.reference})"),
        "bank_account": ref("bank_accounts", bank.id, f"{bank.name} ({bank.nominal_code})"),
        "date": day(payment.date),
        "net_amount": payment.total_amount,
        "tax_amount": ZERO,
        "total_amount": payment.total_amount,
        "currency": currency_ref(payment.currency),
        "exchange_rate": sage_exchange_rate(rate),
        "base_currency_net_amount": to_base(payment.total_amount, rate),
        "base_currency_tax_amount": ZERO,
        "base_currency_total_amount": to_base(payment.total_amount, rate),
        "base_currency_currency_charge": ZERO,
        "reference": payment.reference,
        "allocated_artefacts": [
            {
                "id": allocation.id,
                "artefact": _invoice_generic(business, allocation.invoice_id),
                "amount": allocation.amount,
                "discount": allocation.discount,
            }
            for allocation in payment.allocations
        ],
        "tax_rate": None,
        "payment_on_account": on_account,
        "editable": True,
    }


def other_payment_json(business: Business, payment: OtherPayment) -> dict[str, Any]:
    bank = business.bank_accounts[payment.bank_account_id]
    contact = business.contacts.get(payment.contact_id) if payment.contact_id is not None else None
    displayed = payment.reference or f"{TRANSACTION_TYPES[payment.transaction_type_id]} {payment.date}"
    return {
        **ref("other_payments", payment.id, displayed),
        "created_at": timestamp(payment.created_at),
        "updated_at": timestamp(payment.updated_at),
        "deleted_at": timestamp(payment.deleted_at),
        "transaction": ref("transactions", payment.transaction_id, displayed),
        "transaction_type": transaction_type_ref(payment.transaction_type_id),
        "payment_method": payment_method_ref(payment.payment_method_id),
        "contact": (
            ref("contacts", contact.id, f"{contact.name} ({contact.reference})") if contact is not None else None
        ),
        "bank_account": ref("bank_accounts", bank.id, f"{bank.name} ({bank.nominal_code})"),
        "tax_address_region": None,
        "date": day(payment.date),
        "net_amount": payment.total_amount,
        "tax_amount": ZERO,
        "total_amount": payment.total_amount,
        "reference": payment.reference,
        "payment_lines": [
            {
                "id": line.id,
                "displayed_as": line.details or business.ledger_accounts[line.ledger_account_id].name,
                "ledger_account": _ledger_ref(business, line.ledger_account_id),
                "details": line.details,
                "tax_rate": tax_rate_ref(business),
                "net_amount": line.total_amount,
                "tax_amount": ZERO,
                "total_amount": line.total_amount,
            }
            for line in payment.lines
        ],
        "editable": True,
        "deletable": True,
    }


def catalogue_json(collection: str, entries: Mapping[str, str]) -> list[dict[str, Any]]:
    """Fixed look-up lists (artefact statuses, payment methods, ...): `Base` items."""
    return [ref(collection, key, name) for key, name in entries.items()]


def _ledger_ref(business: Business, ledger_account_id: str) -> dict[str, Any]:
    account = business.ledger_accounts[ledger_account_id]
    return ref("ledger_accounts", account.id, f"{account.name} ({account.nominal_code})")


def _invoice_generic(business: Business, invoice_id: str) -> dict[str, Any]:
    invoice = business.purchase_invoices[invoice_id]
    displayed = invoice.vendor_reference or invoice.reference or invoice.contact_name
    return {**ref("purchase_invoices", invoice.id, displayed), "links": []}


# --------------------------------------------------------------------------------------------------
# Errors and pages
# --------------------------------------------------------------------------------------------------


def page_envelope(
    items: Iterable[dict[str, Any]],
    *,
    total: int,
    page: int,
    items_per_page: int,
    next_path: str | None,
    back_path: str | None,
) -> dict[str, Any]:
    """Sage's list envelope (S-PAG): `$next`/`$back` are paths relative to the API version root."""
    return {
        "$total": total,
        "$page": page,
        "$next": next_path,
        "$back": back_path,
        "$itemsPerPage": items_per_page,
        "$items": list(items),
    }
