"""The Xero sandbox's wire: Identity (OAuth 2.0, /connections) and the Accounting API 2.0, as Xero speaks them.

Paths are Xero's: `/identity/connect/authorize` (login.xero.com), `/connect/token` and
`/connect/revocation` (identity.xero.com), `/connections` and `/api.xro/2.0/...` (api.xero.com).
The Accounting API answers XML unless the request's Accept names application/json, as Xero does;
Identity and /connections answer JSON. What a write does to the books is `ledger.py`'s; the limits,
their headers and the 429 are `limits.py`'s; the Idempotency-Key replay is `idempotency.py`'s.
"""

from __future__ import annotations

import html
import json
import random
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from local.sandboxes.core import Clock, ProviderSandbox, json_response, render_consent_page
from local.sandboxes.xero import query, wire
from local.sandboxes.xero.idempotency import IdempotentReplies
from local.sandboxes.xero.ledger import (
    ACCOUNT_FIELDS,
    BANK_TRANSACTION_FIELDS,
    CONTACT_FIELDS,
    INVOICE_FIELDS,
    PAYMENT_FIELDS,
    Invoice,
    Organisation,
    currencies,
)
from local.sandboxes.xero.limits import LIMIT_HEADERS, RateLimits, XeroLimits, too_many, with_limit_headers
from local.sandboxes.xero.oauth import ISSUER, KNOWN_SCOPES, AccessDenied, App, Identity, Principal, TokenError
from local.sandboxes.xero.webhooks import Subscription
from local.sandboxes.xero.wire import JsonObject

API = "/api.xro/2.0"
AUTHORIZE_PATH = "/identity/connect/authorize"
TENANT_HEADER = "xero-tenant-id"
_IDENTITY_ENDPOINTS = frozenset(
    {"authorize", "authorize_decision", "token", "revocation", "openid_configuration", "jwks"}
)
_AUTHORIZE_PARAMS = (
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "response_type",
    "code_challenge",
    "code_challenge_method",
)
_CONNECTION_ENDPOINTS = frozenset({"get_connections", "delete_connection"})
_PRINCIPAL = "xero.principal"
# A write's elements applied to an organisation (`_pay`, `_spend`): (status, records), given summarizeErrors.
type _ApplyElements = Callable[[Organisation, list[Mapping[str, Any]], bool], tuple[int, list[JsonObject]]]


def _scopes(*families: str, read: bool = True) -> frozenset[str]:
    names = set(families)
    if read:
        names |= {f"{family}.read" for family in families}
    return frozenset(names)


# Broad scopes (apps before March 2026) and the granular ones that replace them both open an endpoint.
ENDPOINT_SCOPES: dict[str, frozenset[str]] = {
    "get_invoices": _scopes("accounting.transactions", "accounting.invoices"),
    "get_invoice": _scopes("accounting.transactions", "accounting.invoices"),
    "get_invoice_attachments": _scopes("accounting.attachments"),
    "get_invoice_attachment": _scopes("accounting.attachments"),
    "get_contacts": _scopes("accounting.contacts"),
    "get_contact": _scopes("accounting.contacts"),
    "get_accounts": _scopes("accounting.settings"),
    "get_currencies": _scopes("accounting.settings"),
    "get_organisation": _scopes("accounting.settings"),
    "get_payments": _scopes("accounting.transactions", "accounting.payments"),
    "create_payments": _scopes("accounting.transactions", "accounting.payments", read=False),
    "create_payment": _scopes("accounting.transactions", "accounting.payments", read=False),
    "get_bank_transactions": _scopes("accounting.transactions", "accounting.banktransactions"),
    "create_bank_transactions": _scopes("accounting.transactions", "accounting.banktransactions", read=False),
    "get_payment": _scopes("accounting.transactions", "accounting.payments"),
    "delete_payment": _scopes("accounting.transactions", "accounting.payments", read=False),
    "get_bank_transaction": _scopes("accounting.transactions", "accounting.banktransactions"),
    "update_bank_transaction": _scopes("accounting.transactions", "accounting.banktransactions", read=False),
}


class XeroRoutes(ProviderSandbox):
    """The wire: Xero Identity and the Accounting API over the organisations and grants it holds.
    `XeroSandbox` adds the controls tests use."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        auto_approve: bool = False,
        seed: int = 0,
        auto_approve_tenants: list[str] | None = None,
        limits: XeroLimits | None = None,
    ) -> None:
        super().__init__(clock=clock, auto_approve=auto_approve, seed=seed)
        self._ids = random.Random(seed)
        self._ids_lock = threading.Lock()
        self.identity = Identity(self.clock, user_id=self._new_id())
        # Organisations ticked when auto-approving; None ticks every organisation.
        self.auto_approve_tenants = auto_approve_tenants
        self._orgs: dict[str, Organisation] = {}
        self._orgs_lock = threading.Lock()
        self.limits = limits or XeroLimits()
        self.rate_limits = RateLimits(self.limits, self.clock)
        self.replies = IdempotentReplies(self.clock)
        self._webhooks: dict[str, Subscription] = {}

    def _new_id(self) -> str:
        with self._ids_lock:
            return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    # ==== routes ====================================================================================

    def routes(self) -> list[Rule]:
        return [
            Rule(AUTHORIZE_PATH, methods=["GET"], endpoint="authorize"),
            Rule(AUTHORIZE_PATH, methods=["POST"], endpoint="authorize_decision"),
            Rule("/connect/token", methods=["POST"], endpoint="token"),
            Rule("/connect/revocation", methods=["POST"], endpoint="revocation"),
            Rule("/.well-known/openid-configuration", methods=["GET"], endpoint="openid_configuration"),
            Rule("/.well-known/openid-configuration/jwks", methods=["GET"], endpoint="jwks"),
            Rule("/connections", methods=["GET"], endpoint="get_connections"),
            Rule("/Connections", methods=["GET"], endpoint="get_connections"),
            Rule("/connections/<connection_id>", methods=["DELETE"], endpoint="delete_connection"),
            Rule("/Connections/<connection_id>", methods=["DELETE"], endpoint="delete_connection"),
            Rule(f"{API}/Organisation", methods=["GET"], endpoint="get_organisation"),
            Rule(f"{API}/Invoices", methods=["GET"], endpoint="get_invoices"),
            Rule(f"{API}/Invoices/<invoice_id>", methods=["GET"], endpoint="get_invoice"),
            Rule(f"{API}/Invoices/<invoice_id>/Attachments", methods=["GET"], endpoint="get_invoice_attachments"),
            Rule(
                f"{API}/Invoices/<invoice_id>/Attachments/<path:attachment>",
                methods=["GET"],
                endpoint="get_invoice_attachment",
            ),
            Rule(f"{API}/Contacts", methods=["GET"], endpoint="get_contacts"),
            Rule(f"{API}/Contacts/<contact_id>", methods=["GET"], endpoint="get_contact"),
            Rule(f"{API}/Accounts", methods=["GET"], endpoint="get_accounts"),
            Rule(f"{API}/Currencies", methods=["GET"], endpoint="get_currencies"),
            Rule(f"{API}/Payments", methods=["GET"], endpoint="get_payments"),
            Rule(f"{API}/Payments", methods=["PUT"], endpoint="create_payments"),
            Rule(f"{API}/Payments", methods=["POST"], endpoint="create_payment"),
            Rule(f"{API}/BankTransactions", methods=["GET"], endpoint="get_bank_transactions"),
            Rule(f"{API}/BankTransactions", methods=["PUT"], endpoint="create_bank_transactions"),
            Rule(f"{API}/Payments/<record_id>", methods=["GET"], endpoint="get_payment"),
            Rule(f"{API}/Payments/<record_id>", methods=["POST"], endpoint="delete_payment"),
            Rule(f"{API}/BankTransactions/<record_id>", methods=["GET"], endpoint="get_bank_transaction"),
            Rule(f"{API}/BankTransactions/<record_id>", methods=["POST"], endpoint="update_bank_transaction"),
        ]

    def tenant_of(self, request: Request) -> str | None:
        value = request.headers.get(TENANT_HEADER)
        return value.strip().lower() if value else None

    # ==== errors ====================================================================================

    def error_response(self, request: Request, status: int, message: str) -> Response:
        if request.path.startswith(("/connect/", "/identity/")):
            return json_response({"error": "invalid_request" if status < 500 else "server_error"}, status)
        if status == 400:
            return json_response(wire.validation_exception([{"ValidationErrors": [{"Message": message}]}]), 400)
        if status == 401:
            return self._unauthorized("AuthenticationUnsuccessful")
        if status == 404:
            return _not_found()
        if status == 429:
            return self.throttled_response(request)
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Error"
        return json_response(wire.problem(status, title, message), status)

    def throttled_response(self, request: Request) -> Response:
        # Xero documents only the headers of a 429; a short Retry-After keeps injected throttles cheap.
        return too_many(request, "minute", retry_after=1)

    @staticmethod
    def _unauthorized(detail: str) -> Response:
        # Xero's 401 body; the challenge header follows RFC 6750 (Xero's exact value is not documented).
        return json_response(
            wire.problem(401, "Unauthorized", detail),
            401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )

    @staticmethod
    def _forbidden() -> Response:
        return json_response(wire.problem(403, "Forbidden", "AuthenticationUnsuccessful"), 403)

    # ==== rate limits (limits.py) ======================================================================

    def check_rate_limit(self, request: Request, endpoint: str) -> Response | None:
        if endpoint in _IDENTITY_ENDPOINTS:
            return None
        principal = self._principal(request)
        if not isinstance(principal, Principal):
            return None  # the handler answers 401
        rate_limits = self.rate_limits
        if endpoint in _CONNECTION_ENDPOINTS:
            verdict = rate_limits.app_call(principal.client_id)  # /connections has no tenant
        else:
            tenant = self.tenant_of(request)
            if tenant is None or tenant not in self._orgs:
                return None  # the handler answers 403
            verdict = rate_limits.tenant_call(principal.client_id, tenant)
        request.environ[LIMIT_HEADERS] = verdict.headers
        if verdict.problem is not None:
            return too_many(request, verdict.problem, verdict.retry_after)
        slot = verdict.slot
        if slot is not None:
            self.on_request_finished(request, lambda: rate_limits.release(slot))
        return None

    def _principal(self, request: Request) -> Principal | AccessDenied:
        if _PRINCIPAL not in request.environ:
            try:
                request.environ[_PRINCIPAL] = self.identity.verify_access_token(request.headers.get("Authorization"))
            except AccessDenied as denied:
                request.environ[_PRINCIPAL] = denied
        found: Principal | AccessDenied = request.environ[_PRINCIPAL]
        return found

    # ==== identity: authorize, token, revocation ========================================================

    def authorize(self, request: Request) -> Response:
        params = request.args
        checked = self._check_authorization_request(params)
        if isinstance(checked, Response):
            return checked
        app, redirect_uri, scopes = checked
        if self.auto_approve:
            chosen = self.auto_approve_tenants if self.auto_approve_tenants is not None else list(self._orgs)
            return self._approve(app, params, redirect_uri, scopes, chosen)
        return self._consent_page(app, scopes, params)

    def authorize_decision(self, request: Request) -> Response:
        form = request.form
        checked = self._check_authorization_request(form)
        if isinstance(checked, Response):
            return checked
        app, redirect_uri, scopes = checked
        if form.get("decision") != "approve":
            return _redirect(redirect_uri, {"error": "access_denied", "state": form.get("state")})
        chosen = [tenant for tenant in form.getlist("tenant") if tenant in self._orgs]
        if not chosen:
            return self._consent_page(app, scopes, form, status=400)  # approving needs an organisation
        return self._approve(app, form, redirect_uri, scopes, chosen)

    def _consent_page(
        self, app: App, scopes: tuple[str, ...], params: Mapping[str, str], *, status: int = 200
    ) -> Response:
        """Xero's consent screen: the user ticks one or more of their organisations."""
        with self._orgs_lock:
            tenants = [(tenant_id, org.name) for tenant_id, org in self._orgs.items()]
        page = render_consent_page(
            provider="Xero",
            app_name=app.name,
            scopes=list(scopes),
            tenants=tenants,
            multi_select=True,
            hidden={name: params[name] for name in _AUTHORIZE_PARAMS if name in params},
            action=AUTHORIZE_PATH,
        )
        return Response(page, status=status, content_type="text/html; charset=utf-8")

    def _check_authorization_request(self, params: Mapping[str, str]) -> tuple[App, str, tuple[str, ...]] | Response:
        app = self.identity.app(params.get("client_id", ""))
        redirect_uri = params.get("redirect_uri", "")
        if app is None:
            return _error_page("unauthorized_client", "Unknown client_id")
        if redirect_uri not in app.redirect_uris:
            return _error_page("invalid_request", "redirect_uri is not registered for this app")
        state = params.get("state")
        if params.get("response_type") != "code":
            return _redirect(redirect_uri, {"error": "unsupported_response_type", "state": state})
        scopes = tuple(params.get("scope", "").split())
        if not scopes or not set(scopes) <= KNOWN_SCOPES:
            return _redirect(redirect_uri, {"error": "invalid_scope", "state": state})
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        # Xero documents PKCE with S256 only; an app without a secret must use it.
        if (challenge and method != "S256") or (app.client_secret is None and not challenge):
            return _redirect(redirect_uri, {"error": "invalid_request", "state": state})
        return app, redirect_uri, scopes

    def _approve(
        self, app: App, params: Mapping[str, str], redirect_uri: str, scopes: tuple[str, ...], tenant_ids: list[str]
    ) -> Response:
        with self._orgs_lock:
            tenants = [(tenant_id, self._orgs[tenant_id].name) for tenant_id in tenant_ids if tenant_id in self._orgs]
        code = self.identity.approve(
            app,
            tenants=tenants,
            scopes=scopes,
            redirect_uri=redirect_uri,
            code_challenge=params.get("code_challenge"),
            code_challenge_method=params.get("code_challenge_method"),
        )
        return _redirect(
            redirect_uri,
            {"code": code, "scope": " ".join(scopes), "state": params.get("state"), "session_state": uuid.uuid4().hex},
        )

    def token(self, request: Request) -> Response:
        form = request.form
        try:
            app = self.identity.authenticate_client(request.headers.get("Authorization"), form)
            grant_type = form.get("grant_type")
            if grant_type == "authorization_code":
                result = self.identity.exchange_code(
                    app, form.get("code", ""), form.get("redirect_uri", ""), form.get("code_verifier")
                )
            elif grant_type == "refresh_token":
                result = self.identity.refresh(app, form.get("refresh_token", ""))
            else:
                raise TokenError("unsupported_grant_type")
        except TokenError as error:
            return json_response({"error": error.error}, 400)
        return json_response(result, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def revocation(self, request: Request) -> Response:
        try:
            app = self.identity.authenticate_client(request.headers.get("Authorization"), request.form)
        except TokenError as error:
            return json_response({"error": error.error}, 400)
        self.identity.revoke(app, request.form.get("token", ""))
        return Response(b"", status=200)

    def openid_configuration(self, request: Request) -> Response:
        base = request.host_url.rstrip("/")
        return json_response(
            {
                "issuer": ISSUER,
                "authorization_endpoint": f"{base}{AUTHORIZE_PATH}",
                "token_endpoint": f"{base}/connect/token",
                "revocation_endpoint": f"{base}/connect/revocation",
                "jwks_uri": f"{base}/.well-known/openid-configuration/jwks",
                "scopes_supported": sorted(KNOWN_SCOPES),
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            }
        )

    def jwks(self, request: Request) -> Response:
        return json_response(self.identity.jwks())

    # ==== identity: connections =============================================================================

    def get_connections(self, request: Request) -> Response:
        principal = self._principal(request)
        if not isinstance(principal, Principal):
            return self._unauthorized(principal.detail)
        connections = self.identity.connections(principal, request.args.get("authEventId"))
        return with_limit_headers(request, json_response([wire.connection_json(c) for c in connections]))

    def delete_connection(self, request: Request, connection_id: str) -> Response:
        principal = self._principal(request)
        if not isinstance(principal, Principal):
            return self._unauthorized(principal.detail)
        deleted = self.identity.delete_connection(principal, connection_id)
        return with_limit_headers(request, Response(b"", status=204 if deleted else 404))

    # ==== accounting: common ====================================================================================

    def _accounting(
        self, request: Request, endpoint: str, work: Callable[[Organisation, Principal], Response]
    ) -> Response:
        """Authenticate, check scopes and tenant, run `work`, and add the limit headers."""
        principal = self._principal(request)
        if not isinstance(principal, Principal):
            return self._unauthorized(principal.detail)
        if not principal.scopes & ENDPOINT_SCOPES[endpoint]:
            return with_limit_headers(request, self._unauthorized("AuthorizationUnsuccessful"))
        tenant = self.tenant_of(request)
        org = self._orgs.get(tenant or "")
        if org is None or not self.identity.is_connected(principal, org.tenant_id):
            return with_limit_headers(request, self._forbidden())
        try:
            response = work(org, principal)
        except query.QueryParseError as error:
            response = json_response(wire.query_parse_exception(error.message), 400)
        return with_limit_headers(request, _as_requested(request, response))

    def _envelope(
        self, principal: Principal, key: str, records: list[JsonObject], pagination: dict[str, int] | None = None
    ) -> Response:
        app = self.identity.app(principal.client_id)
        name = app.name if app else principal.client_id
        return json_response(wire.envelope(name, self.clock.now(), key, records, pagination))

    @staticmethod
    def _paged[T](request: Request, records: list[T], *, force: bool = False) -> tuple[list[T], dict[str, int] | None]:
        """The page asked for with Xero's pagination object, or everything when no page is asked for."""
        page = query.parse_paging(request.args.get("page"), request.args.get("pageSize"), force=force)
        return query.page_slice(records, page) if page else (records, None)

    def _select[T](
        self,
        request: Request,
        records: list[T],
        *,
        fields_of: Callable[[T], Mapping[str, query.FieldValue]],
        fields: Mapping[str, query.FieldKind],
        type_name: str,
        default_order: list[query.SortKey],
        keep: Callable[[T, query.Expression | None], bool] = lambda record, where: True,
    ) -> list[T]:
        """Filter by If-Modified-Since and `where`, then order. Raises QueryParseError (400)."""
        where_text = request.args.get("where")
        where = query.parse_where(where_text, fields, type_name) if where_text else None
        order_text = request.args.get("order")
        order = query.parse_order(order_text, fields, type_name) if order_text else default_order
        since = query.parse_if_modified_since(request.headers.get("If-Modified-Since"))
        values = {id(record): fields_of(record) for record in records}
        selected = []
        for record in records:
            record_fields = values[id(record)]
            updated = record_fields.get("UpdatedDateUTC")
            # "Created or modified since": a record updated at the very instant counts (never hides a change).
            if since is not None and isinstance(updated, datetime) and updated < since:
                continue
            if where is not None and not query.matches(where, record_fields):
                continue
            if keep(record, where):
                selected.append(record)
        return query.sort_records(selected, order, lambda record: values[id(record)])

    # ==== accounting: organisation, bills, attachments ==============================================================

    def get_organisation(self, request: Request) -> Response:
        return self._accounting(
            request,
            "get_organisation",
            lambda org, principal: self._envelope(principal, "Organisations", [wire.organisation_json(org)]),
        )

    def get_invoices(self, request: Request) -> Response:
        return self._accounting(request, "get_invoices", lambda org, p: self._list_invoices(request, org, p))

    def _list_invoices(self, request: Request, org: Organisation, principal: Principal) -> Response:
        args = request.args
        ids = _csv(args.get("IDs"), lower=True)
        contact_ids = _csv(args.get("ContactIDs"), lower=True)
        statuses = {s.upper() for s in _csv(args.get("Statuses"))}
        numbers = _csv(args.get("InvoiceNumbers"))
        summary_only = _flag(args.get("summaryOnly"))

        def keep(invoice: Invoice, where: query.Expression | None) -> bool:
            if ids and invoice.invoice_id not in ids:
                return False
            if contact_ids and invoice.contact_id not in contact_ids:
                return False
            if numbers and invoice.invoice_number not in numbers:
                return False
            if statuses:
                return invoice.status in statuses
            # Unconfirmed whether Xero lists DELETED bills by default; the safer reading hides them
            # unless the request names bills by ID or asks about Status.
            named = bool(ids) or (where is not None and query.references(where, "Status"))
            return invoice.status != "DELETED" or named

        with org.lock:
            invoices = self._select(
                request,
                list(org.invoices.values()),
                fields_of=org.invoice_fields,
                fields=INVOICE_FIELDS,
                type_name="Invoice",
                default_order=[query.SortKey("UpdatedDateUTC", False), query.SortKey("InvoiceID", False)],
                keep=keep,
            )
            shown, pagination = self._paged(request, invoices, force=summary_only)
            detail: wire.InvoiceDetail = "summary" if summary_only else "full" if pagination else "unpaged"
            records = [wire.invoice_json(org, invoice, detail) for invoice in shown]
        return self._envelope(principal, "Invoices", records, pagination)

    def get_invoice(self, request: Request, invoice_id: str) -> Response:
        def work(org: Organisation, principal: Principal) -> Response:
            with org.lock:
                invoice = _find_invoice(org, invoice_id)
                if invoice is None:
                    return _not_found()
                return self._envelope(principal, "Invoices", [wire.invoice_json(org, invoice)])

        return self._accounting(request, "get_invoice", work)

    def get_invoice_attachments(self, request: Request, invoice_id: str) -> Response:
        def work(org: Organisation, principal: Principal) -> Response:
            with org.lock:
                invoice = _find_invoice(org, invoice_id)
                if invoice is None:
                    return _not_found()
                attachments = [invoice.attachment] if invoice.attachment else []
                records = [wire.attachment_json(self._public_base(), invoice, a) for a in attachments]
            return self._envelope(principal, "Attachments", records)

        return self._accounting(request, "get_invoice_attachments", work)

    def get_invoice_attachment(self, request: Request, invoice_id: str, attachment: str) -> Response:
        def work(org: Organisation, principal: Principal) -> Response:
            with org.lock:
                invoice = _find_invoice(org, invoice_id)
                found = invoice.attachment if invoice else None
            if found is None or (attachment.lower() != found.attachment_id and attachment != found.file_name):
                return _not_found()
            return Response(
                found.content,
                content_type=found.mime_type,
                headers={"Content-Disposition": f'attachment; filename="{found.file_name}"'},
            )

        return self._accounting(request, "get_invoice_attachment", work)

    # ==== accounting: contacts, accounts ========================================================================

    def get_contacts(self, request: Request) -> Response:
        def work(org: Organisation, principal: Principal) -> Response:
            args = request.args
            ids = _csv(args.get("IDs"), lower=True)
            include_archived = _flag(args.get("includeArchived"))
            summary_only = _flag(args.get("summaryOnly"))
            with org.lock:
                suppliers = org.supplier_ids()
                contacts = self._select(
                    request,
                    list(org.contacts.values()),
                    fields_of=lambda contact: org.contact_fields(contact, suppliers),
                    fields=CONTACT_FIELDS,
                    type_name="Contact",
                    default_order=[query.SortKey("UpdatedDateUTC", False), query.SortKey("ContactID", False)],
                    keep=lambda contact, where: (
                        (not ids or contact.contact_id in ids)
                        and (include_archived or bool(ids) or contact.status != "ARCHIVED")
                    ),
                )
                shown, pagination = self._paged(request, contacts, force=summary_only)
                balances = org.payable_balances(self.clock.now().date())
                zero = (wire.ZERO, wire.ZERO)
                records = [
                    wire.contact_json(
                        c,
                        is_supplier=c.contact_id in suppliers,
                        balance=balances.get(c.contact_id, zero),
                        summary=summary_only,
                    )
                    for c in shown
                ]
            return self._envelope(principal, "Contacts", records, pagination)

        return self._accounting(request, "get_contacts", work)

    def get_contact(self, request: Request, contact_id: str) -> Response:
        def work(org: Organisation, principal: Principal) -> Response:
            with org.lock:
                contact = org.contacts.get(contact_id.lower())
                if contact is None:
                    return _not_found()
                balance = org.payable_balances(self.clock.now().date()).get(contact.contact_id)
                record = wire.contact_json(
                    contact,
                    is_supplier=org.is_supplier(contact.contact_id),
                    balance=balance or (wire.ZERO, wire.ZERO),
                )
            return self._envelope(principal, "Contacts", [record])

        return self._accounting(request, "get_contact", work)

    def get_accounts(self, request: Request) -> Response:
        def work(org: Organisation, principal: Principal) -> Response:
            with org.lock:
                accounts = self._select(
                    request,
                    list(org.accounts.values()),
                    fields_of=org.account_fields,
                    fields=ACCOUNT_FIELDS,
                    type_name="Account",
                    default_order=[query.SortKey("Code", False)],
                )
                records = [wire.account_json(account) for account in accounts]
            return self._envelope(principal, "Accounts", records)

        return self._accounting(request, "get_accounts", work)

    # ==== accounting: payments, bank transactions =====================================================

    def get_currencies(self, request: Request) -> Response:
        """`GET /Currencies`: the organisation's currencies (clients call it to check their access)."""

        def work(org: Organisation, principal: Principal) -> Response:
            with org.lock:
                records = [wire.currency_json(code) for code in currencies(org)]
            return self._envelope(principal, "Currencies", records)

        return self._accounting(request, "get_currencies", work)

    def get_payments(self, request: Request) -> Response:
        def work(org: Organisation, principal: Principal) -> Response:
            with org.lock:
                payments = self._select(
                    request,
                    list(org.payments.values()),
                    fields_of=org.payment_fields,
                    fields=PAYMENT_FIELDS,
                    type_name="Payment",
                    default_order=[query.SortKey("UpdatedDateUTC", False), query.SortKey("PaymentID", False)],
                )
                shown, pagination = self._paged(request, payments)
                records = [wire.payment_json(org, payment) for payment in shown]
            return self._envelope(principal, "Payments", records, pagination)

        return self._accounting(request, "get_payments", work)

    def create_payments(self, request: Request) -> Response:
        summarize = _summarize_errors(request)
        return self._accounting(
            request,
            "create_payments",
            lambda org, principal: self._write(
                request, org, principal, key="Payments", apply=self._pay, summarize=summarize
            ),
        )

    def create_payment(self, request: Request) -> Response:
        return self._accounting(
            request,
            "create_payment",
            lambda org, principal: self._write(
                request, org, principal, key="Payments", apply=self._pay, summarize=True
            ),
        )

    def get_bank_transactions(self, request: Request) -> Response:
        def work(org: Organisation, principal: Principal) -> Response:
            with org.lock:
                transactions = self._select(
                    request,
                    list(org.bank_transactions.values()),
                    fields_of=org.bank_transaction_fields,
                    fields=BANK_TRANSACTION_FIELDS,
                    type_name="BankTransaction",
                    default_order=[query.SortKey("UpdatedDateUTC", False), query.SortKey("BankTransactionID", False)],
                )
                shown, pagination = self._paged(request, transactions)
                records = [wire.bank_transaction_json(org, t) for t in shown]
            return self._envelope(principal, "BankTransactions", records, pagination)

        return self._accounting(request, "get_bank_transactions", work)

    def create_bank_transactions(self, request: Request) -> Response:
        summarize = _summarize_errors(request)
        return self._accounting(
            request,
            "create_bank_transactions",
            lambda org, principal: self._write(
                request, org, principal, key="BankTransactions", apply=self._spend, summarize=summarize
            ),
        )

    # ---- one payment or bank transaction: read, and delete (Status DELETED) -------------------------

    def get_payment(self, request: Request, record_id: str) -> Response:
        def work(org: Organisation, principal: Principal) -> Response:
            with org.lock:
                payment = org.payments.get(record_id.lower())
                if payment is None:
                    return _not_found()
                return self._envelope(principal, "Payments", [wire.payment_json(org, payment)])

        return self._accounting(request, "get_payment", work)

    def delete_payment(self, request: Request, record_id: str) -> Response:
        """Xero's `deletePayment`: `POST /Payments/{PaymentID}` with `{"Payments": [{"Status": "DELETED"}]}`."""

        def work(org: Organisation, principal: Principal) -> Response:
            payment_id = record_id.lower()
            if payment_id not in org.payments:
                return _not_found()

            def apply(org: Organisation, elements: list[Mapping[str, Any]], _: bool) -> tuple[int, list[JsonObject]]:
                outcome = org.delete_payment(payment_id, elements[0])
                if isinstance(outcome, list):
                    return 400, [_payment_echo({**elements[0], "PaymentID": payment_id}, outcome)]
                return 200, [wire.payment_json(org, outcome, with_invoice_detail=True)]

            return self._write(request, org, principal, key="Payments", apply=apply, summarize=True)

        return self._accounting(request, "delete_payment", work)

    def get_bank_transaction(self, request: Request, record_id: str) -> Response:
        def work(org: Organisation, principal: Principal) -> Response:
            with org.lock:
                transaction = org.bank_transactions.get(record_id.lower())
                if transaction is None:
                    return _not_found()
                return self._envelope(principal, "BankTransactions", [wire.bank_transaction_json(org, transaction)])

        return self._accounting(request, "get_bank_transaction", work)

    def update_bank_transaction(self, request: Request, record_id: str) -> Response:
        """Xero's `updateBankTransaction`, as far as deleting one: `{"BankTransactions": [{"Status": "DELETED"}]}`."""

        def work(org: Organisation, principal: Principal) -> Response:
            transaction_id = record_id.lower()
            if transaction_id not in org.bank_transactions:
                return _not_found()

            def apply(org: Organisation, elements: list[Mapping[str, Any]], _: bool) -> tuple[int, list[JsonObject]]:
                outcome = org.delete_bank_transaction(transaction_id, elements[0])
                if isinstance(outcome, list):
                    return 400, [_bank_transaction_echo(elements[0], outcome)]
                return 200, [wire.bank_transaction_json(org, outcome)]

            return self._write(request, org, principal, key="BankTransactions", apply=apply, summarize=True)

        return self._accounting(request, "update_bank_transaction", work)

    # ---- writes: elements, summarizeErrors (idempotency.py replays) ---------------------------------

    def _write(
        self,
        request: Request,
        org: Organisation,
        principal: Principal,
        *,
        key: str,
        apply: _ApplyElements,
        summarize: bool,
    ) -> Response:
        """A PUT/POST, replayed or refused by the `Idempotency-Key` rule (idempotency.py)."""
        with org.lock:
            return self.replies.answer(
                request,
                org.tenant_id,
                principal.client_id,
                lambda: self._apply(request, org, principal, key=key, apply=apply, summarize=summarize),
            )

    def _apply(
        self,
        request: Request,
        org: Organisation,
        principal: Principal,
        *,
        key: str,
        apply: _ApplyElements,
        summarize: bool,
    ) -> Response:
        elements = _elements(request.get_data(), key)
        if isinstance(elements, Response):
            return elements
        status, records = apply(org, elements, summarize)
        if status == 400:
            return json_response(wire.validation_exception(records), 400)
        return self._envelope(principal, key, records)

    @staticmethod
    def _pay(org: Organisation, elements: list[Mapping[str, Any]], summarize: bool) -> tuple[int, list[JsonObject]]:
        return _write_elements(
            elements,
            summarize,
            plan=org.plan_payment,
            commit=lambda plan: wire.payment_json(org, org.record_payment(plan), with_invoice_detail=True),
            echo=_payment_echo,
        )

    @staticmethod
    def _spend(org: Organisation, elements: list[Mapping[str, Any]], summarize: bool) -> tuple[int, list[JsonObject]]:
        return _write_elements(
            elements,
            summarize,
            plan=lambda raw, planned: org.plan_bank_transaction(raw),
            commit=lambda plan: wire.bank_transaction_json(org, org.record_bank_transaction(plan)),
            echo=_bank_transaction_echo,
        )

    # ==== webhooks ===========================================================================================

    def _emit(self, org: Organisation, category: str, event_type: str, resource_id: str) -> None:
        collection = "Invoices" if category == "INVOICE" else "Contacts"
        for client_id in self.identity.connected_apps(org.tenant_id):
            subscription = self._webhooks.get(client_id)
            if subscription is None or category not in subscription.categories:
                continue
            body = subscription.event_body(
                resource_url=f"{self._public_base()}{API}/{collection}/{resource_id}",
                resource_id=resource_id,
                category=category,
                event_type=event_type,
                tenant_id=org.tenant_id,
                at=self.clock.now(),
            )
            self.post_webhook(subscription.url, body, subscription.headers(body))

    def _public_base(self) -> str:
        return self._base_url or "https://api.xero.com"


# ==== helpers ====================================================================================================


def _not_found() -> Response:
    return Response(wire.NOT_FOUND_TEXT, status=404, content_type="text/plain; charset=utf-8")


def _error_page(error: str, description: str) -> Response:
    page = (
        "<!DOCTYPE html><html><body>"
        f"<h1>Error: {html.escape(error)}</h1><p>{html.escape(description)}</p>"
        "</body></html>"
    )
    return Response(page, status=400, content_type="text/html; charset=utf-8")


def _redirect(redirect_uri: str, params: Mapping[str, str | None]) -> Response:
    query_string = urlencode({name: value for name, value in params.items() if value is not None})
    separator = "&" if "?" in redirect_uri else "?"
    return Response(b"", status=302, headers={"Location": f"{redirect_uri}{separator}{query_string}"})


def _csv(value: str | None, *, lower: bool = False) -> set[str]:
    """A comma-separated parameter; items may come quoted (`IDs="a","b"`)."""
    if not value:
        return set()
    items = {item.strip().strip('"').strip() for item in value.split(",")}
    return {item.lower() if lower else item for item in items if item}


def _as_requested(request: Request, response: Response) -> Response:
    """The answer in JSON when the request's Accept names it, else in XML, Xero's default."""
    if response.mimetype != "application/json" or "application/json" in request.headers.get("Accept", ""):
        return response
    body = json.loads(response.get_data(), parse_float=Decimal)
    converted = Response(wire.to_xml(body), status=response.status_code, content_type="text/xml; charset=utf-8")
    for name, value in response.headers.items():
        if name.lower() not in ("content-type", "content-length"):
            converted.headers[name] = value
    return converted


def _summarize_errors(request: Request) -> bool:
    # The spec gives summarizeErrors a default of false, but Xero summarises unless sent false.
    return request.args.get("summarizeErrors", "true").lower() != "false"


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() == "true"


def _find_invoice(org: Organisation, invoice_id: str) -> Invoice | None:
    """By InvoiceID, or by InvoiceNumber as Xero also accepts in that path segment."""
    return org.invoices.get(invoice_id.lower()) or org.find_invoice({"InvoiceNumber": invoice_id})


def _elements(raw: bytes, key: str) -> list[Mapping[str, Any]] | Response:
    """The elements of a write body: `{"<Key>": [...]}` or a single object."""
    try:
        data = json.loads(raw, parse_float=Decimal) if raw else None
    except ValueError as error:
        message = f"JSON request body could not be read, Error: {error}"
        return json_response(wire.post_data_invalid(message), 400)
    if isinstance(data, dict) and isinstance(data.get(key), list):
        elements = data[key]
    elif isinstance(data, dict) and key not in data:
        elements = [data]
    else:
        return json_response(wire.post_data_invalid(f'The request body must be an object or {{"{key}": [...]}}'), 400)
    if not elements or not all(isinstance(element, dict) for element in elements):
        return json_response(wire.validation_exception([], f"No {key} were supplied"), 400)
    return elements


def _write_elements[P](
    elements: list[Mapping[str, Any]],
    summarize: bool,
    *,
    plan: Callable[[Mapping[str, Any], list[P]], P | list[str]],
    commit: Callable[[P], JsonObject],
    echo: Callable[[Mapping[str, Any], list[str]], JsonObject],
) -> tuple[int, list[JsonObject]]:
    """Plan every element first (each seeing the ones before it), then commit.

    With summarizeErrors (Xero's default) one invalid element fails the whole call with 400 and
    nothing is written; with summarizeErrors=false the valid ones are written and each element says
    OK or ERROR.
    """
    outcomes: list[P | list[str]] = []
    for raw in elements:
        outcomes.append(plan(raw, [outcome for outcome in outcomes if not isinstance(outcome, list)]))
    if summarize and any(isinstance(outcome, list) for outcome in outcomes):
        return 400, [
            echo(raw, outcome if isinstance(outcome, list) else [])
            for raw, outcome in zip(elements, outcomes, strict=True)
        ]
    records: list[JsonObject] = []
    for raw, outcome in zip(elements, outcomes, strict=True):
        if isinstance(outcome, list):
            records.append({**echo(raw, outcome), "StatusAttributeString": "ERROR"})
            continue
        record = commit(outcome)
        if not summarize:
            record["StatusAttributeString"] = "OK"
        records.append(record)
    return 200, records


def _reference(raw: object, *names: str) -> JsonObject:
    if not isinstance(raw, Mapping):
        return {}
    return {name: str(raw[name]) for name in names if raw.get(name) is not None}


def _money_or_none(value: object) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None and not isinstance(value, bool) else None
    except ArithmeticError:
        return None


def _payment_echo(raw: Mapping[str, Any], errors: list[str]) -> JsonObject:
    """A rejected payment element as Xero returns it: what was sent, plus its ValidationErrors."""
    echo: JsonObject = {
        "Invoice": _reference(raw.get("Invoice"), "InvoiceID", "InvoiceNumber"),
        "Account": _reference(raw.get("Account"), "AccountID", "Code"),
    }
    amount = _money_or_none(raw.get("Amount"))
    if amount is not None:
        echo["Amount"] = amount
    if raw.get("Reference") is not None:
        echo["Reference"] = str(raw["Reference"])
    echo["HasAccount"] = bool(echo["Account"])
    echo["HasValidationErrors"] = bool(errors)
    echo["ValidationErrors"] = [{"Message": message} for message in errors]
    return echo


def _bank_transaction_echo(raw: Mapping[str, Any], errors: list[str]) -> JsonObject:
    echo: JsonObject = {
        "BankAccount": _reference(raw.get("BankAccount"), "AccountID", "Code"),
        "Contact": _reference(raw.get("Contact"), "ContactID"),
    }
    if raw.get("Type") in ("SPEND", "RECEIVE"):
        echo["Type"] = raw["Type"]
    if raw.get("Reference") is not None:
        echo["Reference"] = str(raw["Reference"])
    echo["ValidationErrors"] = [{"Message": message} for message in errors]
    return echo
