"""The Sage sandbox's wire: Sage Business Cloud Accounting API v3.1 and its OAuth server, as Sage speaks them.

One server plays both hosts: the OAuth paths (`/oauth2/auth/central`, `/token`, `/revoke`) and the
API under `/v3.1/`, the business named by `X-Business` (absent: the user's lead business). Sage has
no webhooks (docs/providers.md#sage-webhooks), so this sandbox sends none. What a payment does to the
books is `ledger.py`'s; the limit and its 429 are `limits.py`'s; the idempotency_id replay is
`idempotency.py`'s.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from werkzeug.routing import Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from local.sandboxes.core import AuthorizationCodes, Clock, ProviderSandbox, json_response, render_consent_page
from local.sandboxes.sage import wire
from local.sandboxes.sage.idempotency import IdempotentReplies
from local.sandboxes.sage.ledger import (
    ARTEFACT_STATUSES,
    PAYMENT_METHODS,
    TRANSACTION_TYPES,
    ZERO,
    Business,
    IdFactory,
    SageError,
    SageValidationError,
)
from local.sandboxes.sage.limits import DEFAULT_RATE_LIMIT_PER_MINUTE, RateLimits, throttled
from local.sandboxes.sage.oauth import (
    ACCESS_TOKEN_SECONDS,
    AUTH_CODE_SECONDS,
    REFRESH_TOKEN_SECONDS,
    SCOPES,
    App,
    Grant,
    TokenStore,
    User,
)

API_PREFIX = "/v3.1"
AUTHORIZE_PATH = "/oauth2/auth/central"
MAX_ITEMS_PER_PAGE = 200  # S-PAG
DEFAULT_ITEMS_PER_PAGE = 20
_CONTEXT = "sage.api_context"

_ERROR_CODES = {
    400: "BadRequest",
    401: "AuthorizationFailure",
    403: "AuthorizationFailure",
    404: "RecordNotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    415: "UnsupportedMediaType",
    422: "RecordInvalid",
    429: "TooManyRequests",
    500: "UnexpectedError",
    503: "ServiceUnavailable",
}
_OAUTH_ERRORS = {400: "invalid_request", 401: "invalid_client", 429: "temporarily_unavailable"}


@dataclass(frozen=True)
class ApiContext:
    """Who is calling the API and for which business."""

    grant: Grant
    user: User
    business: Business


class ApiError(Exception):
    def __init__(self, status: int, errors: list[SageError]) -> None:
        super().__init__(errors[0].message if errors else str(status))
        self.status = status
        self.errors = errors


class _Timestamped(Protocol):
    @property
    def updated_at(self) -> datetime: ...


class _Deletable(Protocol):
    @property
    def deleted_at(self) -> datetime | None: ...


class SageRoutes(ProviderSandbox):
    """The wire: Sage's OAuth (a per-user grant over all the user's businesses) and Accounting v3.1
    with X-Business routing, over the users and businesses it holds. `SageSandbox` adds the controls."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        auto_approve: bool = False,
        seed: int = 0,
        rate_limit_per_minute: int = DEFAULT_RATE_LIMIT_PER_MINUTE,
    ) -> None:
        super().__init__(clock=clock, auto_approve=auto_approve, seed=seed)
        self._state = threading.RLock()
        self._ids = IdFactory(seed)
        self._apps: dict[str, App] = {}
        self._users: dict[str, User] = {}
        self._businesses: dict[str, Business] = {}
        self.tokens = TokenStore(self.clock)
        self.codes = AuthorizationCodes(self.clock, AUTH_CODE_SECONDS)
        self.rate_limits = RateLimits(self.clock, rate_limit_per_minute)
        self.replies = IdempotentReplies(self.clock)
        self.auto_approve_user: str | None = None  # None: the first user

    # ==============================================================================================
    # ProviderSandbox hooks
    # ==============================================================================================

    def routes(self) -> list[Rule]:
        api = API_PREFIX
        return [
            Rule(AUTHORIZE_PATH, methods=["GET"], endpoint="authorize"),
            Rule(AUTHORIZE_PATH, methods=["POST"], endpoint="authorize_decision"),
            Rule("/token", methods=["POST"], endpoint="token"),
            Rule("/revoke", methods=["POST"], endpoint="revoke"),
            Rule(f"{api}/businesses", methods=["GET"], endpoint="list_businesses"),
            Rule(f"{api}/businesses/lead", methods=["GET"], endpoint="get_lead_business"),
            Rule(f"{api}/businesses/<key>", methods=["GET"], endpoint="get_business"),
            Rule(f"{api}/purchase_invoices", methods=["GET"], endpoint="list_purchase_invoices"),
            Rule(f"{api}/purchase_invoices/<key>", methods=["GET"], endpoint="get_purchase_invoice"),
            Rule(f"{api}/contacts", methods=["GET"], endpoint="list_contacts"),
            Rule(f"{api}/contacts/<key>", methods=["GET"], endpoint="get_contact"),
            Rule(f"{api}/bank_accounts", methods=["GET"], endpoint="list_bank_accounts"),
            Rule(f"{api}/financial_settings", methods=["GET"], endpoint="get_financial_settings"),
            Rule(f"{api}/bank_accounts/<key>", methods=["GET"], endpoint="get_bank_account"),
            Rule(f"{api}/ledger_accounts", methods=["GET"], endpoint="list_ledger_accounts"),
            Rule(f"{api}/ledger_accounts/<key>", methods=["GET"], endpoint="get_ledger_account"),
            Rule(f"{api}/artefact_statuses", methods=["GET"], endpoint="list_artefact_statuses"),
            Rule(f"{api}/artefact_statuses/<key>", methods=["GET"], endpoint="get_artefact_status"),
            Rule(f"{api}/payment_methods", methods=["GET"], endpoint="list_payment_methods"),
            Rule(f"{api}/payment_methods/<key>", methods=["GET"], endpoint="get_payment_method"),
            Rule(f"{api}/transaction_types", methods=["GET"], endpoint="list_transaction_types"),
            Rule(f"{api}/transaction_types/<key>", methods=["GET"], endpoint="get_transaction_type"),
            Rule(f"{api}/attachments", methods=["GET"], endpoint="list_attachments"),
            Rule(f"{api}/attachments/<key>", methods=["GET"], endpoint="get_attachment"),
            Rule(f"{api}/attachments/<key>/file", methods=["GET"], endpoint="get_attachment_file"),
            Rule(f"{api}/contact_payments", methods=["GET"], endpoint="list_contact_payments"),
            Rule(f"{api}/contact_payments", methods=["POST"], endpoint="create_contact_payment"),
            Rule(f"{api}/contact_payments/<key>", methods=["GET"], endpoint="get_contact_payment"),
            Rule(f"{api}/contact_payments/<key>", methods=["DELETE"], endpoint="delete_contact_payment"),
            Rule(f"{api}/other_payments", methods=["GET"], endpoint="list_other_payments"),
            Rule(f"{api}/other_payments", methods=["POST"], endpoint="create_other_payment"),
            Rule(f"{api}/other_payments/<key>", methods=["GET"], endpoint="get_other_payment"),
            Rule(f"{api}/other_payments/<key>", methods=["DELETE"], endpoint="delete_other_payment"),
        ]

    def error_response(self, request: Request, status: int, message: str) -> Response:
        if request.path in ("/token", "/revoke"):
            error = _OAUTH_ERRORS.get(status, "server_error")
            return json_response({"error": error, "error_description": message}, status)
        if request.path.startswith("/oauth2/"):
            return _page(status, message)
        return self._errors(status, [SageError(_ERROR_CODES.get(status, "Error"), message)])

    def throttled_response(self, request: Request) -> Response:
        return throttled(api=request.path.startswith(API_PREFIX))

    def tenant_of(self, request: Request) -> str | None:
        context = self._context(request) if request.path.startswith(API_PREFIX) else None
        return context.business.id if isinstance(context, ApiContext) else None

    def check_rate_limit(self, request: Request, endpoint: str) -> Response | None:
        if not request.path.startswith(API_PREFIX):
            return None
        context = self._context(request)
        if not isinstance(context, ApiContext):
            return None  # the handler answers 401; unauthenticated calls do not reach a business
        return self.rate_limits.check(context.business.id)

    # ==============================================================================================
    # OAuth (www.sageone.com / oauth.accounting.sage.com)
    # ==============================================================================================

    def authorize(self, request: Request) -> Response:
        params = {key: value for key, value in request.args.items()}
        return self._authorization_request(params, decision=None, user_id=None)

    def authorize_decision(self, request: Request) -> Response:
        params = {key: value for key, value in request.form.items() if key not in ("decision", "tenant")}
        decision = request.form.get("decision", "deny")
        return self._authorization_request(params, decision=decision, user_id=request.form.get("tenant"))

    def _authorization_request(
        self, params: Mapping[str, str], *, decision: str | None, user_id: str | None
    ) -> Response:
        with self._state:
            app = self._apps.get(params.get("client_id", ""))
            redirect_uri = params.get("redirect_uri", "")
            # Without a known client and registered callback there is nowhere safe to send an error.
            if app is None:
                return _page(400, "Unknown client_id.")
            if redirect_uri not in app.redirect_uris:
                return _page(400, "The redirect_uri does not match a callback URL registered for this app.")
            state = params.get("state")
            problem = _authorization_problem(params)
            if problem is not None:
                return _redirect(redirect_uri, {"error": problem[0], "error_description": problem[1]}, state)
            if decision is None and not self.auto_approve:
                return self._consent_page(app, params)
            if decision not in (None, "approve"):
                return _redirect(redirect_uri, {"error": "access_denied"}, state)
            chosen = user_id if decision == "approve" else self.auto_approve_user or next(iter(self._users), None)
            return self._issue_code(app, params, self._users.get(chosen or ""))

    def _issue_code(self, app: App, params: Mapping[str, str], user: User | None) -> Response:
        if user is None or not user.businesses:
            return _page(400, "Sign in with a Sage user who has access to a business.")
        redirect_uri = params["redirect_uri"]
        countries = [self._businesses[business_id].country for business_id in user.businesses]
        country = params.get("country", "").lower() or countries[0]
        if country not in countries:
            # S-FRE: signing in for a country where the user has no business ends with this odd error.
            failure = {"error": "Invalid request", "reason": "Email already in use"}
            return _redirect(redirect_uri, failure, params.get("state"))
        code = self.codes.issue(
            client_id=app.client_id,
            redirect_uri=redirect_uri,
            tenants=user.businesses,
            scopes=[_requested_scope(params)],
            subject=user.id,
            code_challenge=params.get("code_challenge") or None,
            code_challenge_method=params.get("code_challenge_method") or None,
        )
        # Sage sends the country back with the code (S-AUTH example callback).
        return _redirect(redirect_uri, {"code": code, "country": country}, params.get("state"))

    def _consent_page(self, app: App, params: Mapping[str, str]) -> Response:
        # Sage's grant covers every business of the user who signs in; the choice is that user.
        accounts = [
            (
                user.id,
                f"{user.name} <{user.email}> - "
                + ", ".join(self._businesses[business_id].name for business_id in user.businesses),
            )
            for user in self._users.values()
            if user.businesses
        ]
        page = render_consent_page(
            provider="Sage Accounting",
            app_name=app.name,
            scopes=[_requested_scope(params)],
            tenants=accounts,
            multi_select=False,
            hidden=dict(params),
            action=AUTHORIZE_PATH,
        )
        return Response(page, 200, content_type="text/html; charset=utf-8")

    def token(self, request: Request) -> Response:
        if request.mimetype != "application/x-www-form-urlencoded":
            return _oauth_error(400, "invalid_request", "Send the token request form-encoded")
        form = request.form
        app = self._client(form.get("client_id", ""), form.get("client_secret", ""))
        if app is None:
            return _oauth_error(401, "invalid_client", "Client authentication failed")
        grant_type = form.get("grant_type", "")
        if grant_type == "authorization_code":
            issued = self.codes.redeem(
                form.get("code", ""), app.client_id, form.get("redirect_uri", ""), form.get("code_verifier")
            )
            with self._state:
                user = self._users.get(issued.subject) if issued is not None else None
            if issued is None or user is None:
                return _oauth_error(400, "invalid_grant")
            pair = self.tokens.issue(user_id=user.id, client_id=app.client_id, scope=issued.scopes[0])
        elif grant_type == "refresh_token":
            rotated = self.tokens.rotate(form.get("refresh_token", ""), app.client_id)
            if rotated is None:
                return _oauth_error(400, "invalid_grant")
            pair = rotated
        else:
            return _oauth_error(400, "unsupported_grant_type")
        body = {
            "access_token": pair.access_token,
            "expires_in": ACCESS_TOKEN_SECONDS,
            "token_type": "bearer",
            "refresh_token": pair.refresh_token,
            "refresh_token_expires_in": REFRESH_TOKEN_SECONDS,
            "scope": pair.scope,
            "requested_by_id": pair.user_id,
        }
        return json_response(body, 200, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def revoke(self, request: Request) -> Response:
        form = request.form
        app = self._client(form.get("client_id", ""), form.get("client_secret", ""))
        if app is None:
            return _oauth_error(401, "invalid_client", "Client authentication failed")
        token = form.get("token", "")
        if not token:
            return _oauth_error(400, "invalid_request", "token is required")
        self.tokens.revoke_refresh_token(token, app.client_id)
        return json_response({"success": "ok"})

    def _client(self, client_id: str, client_secret: str) -> App | None:
        with self._state:
            app = self._apps.get(client_id)
        return app if app is not None and app.client_secret == client_secret else None

    # ==============================================================================================
    # API: authentication, business routing, plumbing
    # ==============================================================================================

    def _context(self, request: Request) -> ApiContext | Response:
        cached = request.environ.get(_CONTEXT)
        if cached is not None:
            return cached
        resolved = self._resolve_context(request)
        request.environ[_CONTEXT] = resolved
        return resolved

    def _resolve_context(self, request: Request) -> ApiContext | Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        grant = self.tokens.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if grant is None:
            return self._errors(401, [SageError("AuthorizationFailure", "Access denied.")])
        with self._state:
            user = self._users[grant.user_id]
            wanted = request.headers.get("X-Business", "").strip()
            if not wanted:
                # No X-Business: Sage serves the user's lead business (S-AUTH, S-BP).
                if not user.businesses:
                    return self._errors(401, [SageError("AuthorizationFailure", "No business found.")])
                wanted = user.businesses[0]
            elif wanted not in user.businesses:
                # Sage's answer here is not documented; 401 AuthorizationFailure, as for other access problems.
                return self._errors(
                    401, [SageError("AuthorizationFailure", "Access denied for the requested business.")]
                )
            return ApiContext(grant, user, self._businesses[wanted])

    def _serve(self, request: Request, action: Callable[[ApiContext], Response], *, write: bool = False) -> Response:
        context = self._context(request)
        if isinstance(context, Response):
            return context
        if write and context.grant.scope != "full_access":
            # 403 as the brief asks; S-RC lists no 403, so Sage's exact status for this is unconfirmed.
            response = self._errors(403, [SageError("AuthorizationFailure", "The readonly scope cannot write.")])
        else:
            try:
                with self._state:
                    response = action(context)
            except ApiError as exc:
                response = self._errors(exc.status, exc.errors)
        # Sage names the business it answered for in the response (multi_business guide).
        response.headers["X-Business"] = context.business.id
        return response

    @staticmethod
    def _errors(status: int, errors: Sequence[SageError], headers: Mapping[str, str] | None = None) -> Response:
        return json_response([error.wire() for error in errors], status, headers)

    def _listing[T](
        self,
        request: Request,
        collection: str,
        entities: Sequence[T],
        render: Callable[[T], dict[str, Any]],
    ) -> Response:
        per_page = _int_arg(request, "items_per_page", DEFAULT_ITEMS_PER_PAGE)
        # Sage documents 200 as the maximum (S-PAG) but not a rejection: larger values get 200 a page.
        per_page = max(1, min(per_page, MAX_ITEMS_PER_PAGE))
        last_page = max(1, -(-len(entities) // per_page))
        # "If the value for page is greater than the actual number of pages, the last page will be
        # returned automatically" (S-PAG).
        page = max(1, min(_int_arg(request, "page", 1), last_page))
        chunk = entities[(page - 1) * per_page : page * per_page]
        attributes = request.args.get("attributes")
        items = [wire.project(render(entity), attributes, listing=True) for entity in chunk]
        envelope = wire.page_envelope(
            items,
            total=len(entities),
            page=page,
            items_per_page=per_page,
            next_path=_page_path(request, collection, page + 1, per_page) if page < last_page else None,
            back_path=_page_path(request, collection, page - 1, per_page) if page > 1 else None,
        )
        return json_response(envelope)

    @staticmethod
    def _single(request: Request, full: dict[str, Any]) -> Response:
        return json_response(wire.project(full, request.args.get("attributes"), listing=False))

    # ==============================================================================================
    # API: businesses and look-up lists
    # ==============================================================================================

    def list_businesses(self, request: Request) -> Response:
        def action(context: ApiContext) -> Response:
            items = [wire.business_json(self._businesses[key]) for key in context.user.businesses]
            # /businesses is not paged: the documented response says "$items_per_page": 2147483647.
            body = {
                "$total": len(items),
                "$page": 1,
                "$next": None,
                "$back": None,
                "$items_per_page": 2147483647,
                "$items": items,
            }
            return json_response(body)

        return self._serve(request, action)

    def get_lead_business(self, request: Request) -> Response:
        return self._serve(
            request,
            lambda context: json_response(wire.business_json(self._businesses[context.user.businesses[0]])),
        )

    def get_business(self, request: Request, key: str) -> Response:
        def action(context: ApiContext) -> Response:
            if key not in context.user.businesses:
                raise _not_found()
            return json_response(wire.business_json(self._businesses[key]))

        return self._serve(request, action)

    def list_artefact_statuses(self, request: Request) -> Response:
        return self._catalogue(request, "artefact_statuses", ARTEFACT_STATUSES, None)

    def get_artefact_status(self, request: Request, key: str) -> Response:
        return self._catalogue(request, "artefact_statuses", ARTEFACT_STATUSES, key)

    def list_payment_methods(self, request: Request) -> Response:
        return self._catalogue(request, "payment_methods", PAYMENT_METHODS, None)

    def get_payment_method(self, request: Request, key: str) -> Response:
        return self._catalogue(request, "payment_methods", PAYMENT_METHODS, key)

    def list_transaction_types(self, request: Request) -> Response:
        return self._catalogue(request, "transaction_types", TRANSACTION_TYPES, None)

    def get_transaction_type(self, request: Request, key: str) -> Response:
        return self._catalogue(request, "transaction_types", TRANSACTION_TYPES, key)

    def _catalogue(self, request: Request, collection: str, entries: Mapping[str, str], key: str | None) -> Response:
        def action(context: ApiContext) -> Response:
            items = wire.catalogue_json(collection, entries)
            if key is None:
                return self._listing(request, collection, items, lambda item: item)
            if key not in entries:
                raise _not_found()
            return self._single(request, wire.ref(collection, key, entries[key]))

        return self._serve(request, action)

    # ==============================================================================================
    # API: purchase invoices, contacts, accounts, attachments
    # ==============================================================================================

    def list_purchase_invoices(self, request: Request) -> Response:
        def action(context: ApiContext) -> Response:
            business = context.business
            invoices = _changed(request, list(business.purchase_invoices.values()))
            status_id = request.args.get("status_id")
            if status_id:
                # One status id per call (S-SW); "UNPAID,PART_PAID" matches nothing, as in Sage.
                invoices = [item for item in invoices if item.status_id == status_id]
            contact_id = request.args.get("contact_id")
            if contact_id:
                invoices = [item for item in invoices if item.contact_id == contact_id]
            has_attachments = _bool_arg(request, "has_attachments")
            if has_attachments is not None:
                invoices = [item for item in invoices if bool(item.attachment_ids) == has_attachments]
            from_date, to_date = _date_arg(request, "from_date"), _date_arg(request, "to_date")
            if from_date is not None:
                invoices = [item for item in invoices if item.date >= from_date]
            if to_date is not None:
                invoices = [item for item in invoices if item.date <= to_date]
            search = (request.args.get("search") or "").casefold()
            if search:
                invoices = [
                    item
                    for item in invoices
                    if search in (item.vendor_reference or "").casefold()
                    or search in (item.reference or "").casefold()
                    or search in item.contact_name.casefold()
                ]
            invoices = _sorted(request, invoices, ("created_at", "updated_at", "date", "due_date"))
            show = _bool_arg(request, "show_payments_allocations") is True
            return self._listing(
                request,
                "purchase_invoices",
                invoices,
                lambda item: wire.purchase_invoice_json(business, item, show_payments_allocations=show),
            )

        return self._serve(request, action)

    def get_purchase_invoice(self, request: Request, key: str) -> Response:
        def action(context: ApiContext) -> Response:
            invoice = context.business.live_invoice(key)
            if invoice is None:
                raise _not_found()
            show = _bool_arg(request, "show_payments_allocations") is True
            return self._single(
                request, wire.purchase_invoice_json(context.business, invoice, show_payments_allocations=show)
            )

        return self._serve(request, action)

    def list_contacts(self, request: Request) -> Response:
        def action(context: ApiContext) -> Response:
            business = context.business
            contacts = _changed(request, list(business.contacts.values()))
            # Swagger: `contact_type_id`; its description also names the values as `contact_types`.
            type_id = request.args.get("contact_type_id") or request.args.get("contact_types")
            if type_id:
                contacts = [item for item in contacts if item.contact_type == type_id]
            if _bool_arg(request, "filter_inactive_contacts") is True:
                contacts = [item for item in contacts if item.is_active]
            email = (request.args.get("email") or "").casefold()
            if email:
                contacts = [item for item in contacts if (item.email or "").casefold() == email]
            search = (request.args.get("search") or "").casefold()
            if search:
                contacts = [
                    item for item in contacts if search in item.name.casefold() or search in item.reference.casefold()
                ]
            balances = business.contact_balances()
            return self._listing(
                request, "contacts", contacts, lambda item: wire.contact_json(item, balances.get(item.id, ZERO))
            )

        return self._serve(request, action)

    def get_contact(self, request: Request, key: str) -> Response:
        def action(context: ApiContext) -> Response:
            contact = context.business.live_contact(key)
            if contact is None:
                raise _not_found()
            balance = context.business.contact_balances().get(contact.id, ZERO)
            return self._single(request, wire.contact_json(contact, balance))

        return self._serve(request, action)

    def get_financial_settings(self, request: Request) -> Response:
        """`GET /financial_settings`: the business's base currency among them [S-SW FinancialSettings]."""

        def action(context: ApiContext) -> Response:
            currency = context.business.base_currency
            return self._single(request, {"base_currency": {"id": currency, "displayed_as": currency}})

        return self._serve(request, action)

    def list_bank_accounts(self, request: Request) -> Response:
        def action(context: ApiContext) -> Response:
            business = context.business
            banks = _changed(request, list(business.bank_accounts.values()))
            if _bool_arg(request, "filter_inactive_bank_accounts") is True:
                banks = [item for item in banks if item.is_active]
            return self._listing(request, "bank_accounts", banks, lambda item: wire.bank_account_json(business, item))

        return self._serve(request, action)

    def get_bank_account(self, request: Request, key: str) -> Response:
        def action(context: ApiContext) -> Response:
            bank = _live(context.business.bank_accounts, key)
            return self._single(request, wire.bank_account_json(context.business, bank))

        return self._serve(request, action)

    def list_ledger_accounts(self, request: Request) -> Response:
        areas = {
            "banking": "visible_in_banking",
            "expenses": "visible_in_expenses",
            "other_payments": "visible_in_other_payments",
            "journals": "included_in_chart",
            "reporting": "included_in_chart",
        }

        def action(context: ApiContext) -> Response:
            accounts = _changed(request, list(context.business.ledger_accounts.values()))
            for parameter, wanted in (("visible_in", True), ("not_visible_in", False)):
                area = request.args.get(parameter)
                if area:
                    flag = areas.get(area)
                    accounts = [item for item in accounts if (flag is not None and getattr(item, flag)) is wanted]
            type_id = request.args.get("ledger_account_type_id")
            if type_id:
                accounts = [item for item in accounts if item.type_id == type_id]
            control = _bool_arg(request, "show_control_accounts")
            if control is not None:
                accounts = [item for item in accounts if item.is_control_account == control]
            return self._listing(request, "ledger_accounts", accounts, wire.ledger_account_json)

        return self._serve(request, action)

    def get_ledger_account(self, request: Request, key: str) -> Response:
        def action(context: ApiContext) -> Response:
            account = context.business.ledger_accounts.get(key)
            if account is None:
                raise _not_found()
            return self._single(request, wire.ledger_account_json(account))

        return self._serve(request, action)

    def list_attachments(self, request: Request) -> Response:
        def action(context: ApiContext) -> Response:
            business = context.business
            attachments = _changed(request, list(business.attachments.values()))
            context_type = request.args.get("attachment_context_type_id")
            context_id = request.args.get("attachment_context_id")
            if bool(context_type) != bool(context_id):
                # Swagger: each of the two filters "requires filtering by" the other as well.
                raise ApiError(
                    422,
                    [
                        SageError(
                            "RecordInvalid",
                            "attachment_context_type_id and attachment_context_id must be given together",
                            "attachment_context_id" if context_type else "attachment_context_type_id",
                        )
                    ],
                )
            if context_type and context_id:
                attachments = [
                    item for item in attachments if item.context_type == context_type and item.context_id == context_id
                ]
            return self._listing(request, "attachments", attachments, lambda item: wire.attachment_json(business, item))

        return self._serve(request, action)

    def get_attachment(self, request: Request, key: str) -> Response:
        def action(context: ApiContext) -> Response:
            attachment = _live(context.business.attachments, key)
            return self._single(request, wire.attachment_json(context.business, attachment))

        return self._serve(request, action)

    def get_attachment_file(self, request: Request, key: str) -> Response:
        def action(context: ApiContext) -> Response:
            attachment = _live(context.business.attachments, key)
            # The Swagger makes `Accept: application/octet-stream` mandatory here; this sandbox answers
            # the raw bytes to it and 406 to anything else (whether Sage falls back to JSON is unverified).
            if "application/octet-stream" not in request.accept_mimetypes.values():
                raise ApiError(
                    406,
                    [SageError("NotAcceptable", "Set the Accept header to application/octet-stream", "Accept")],
                )
            disposition = f"attachment; filename*=UTF-8''{quote(attachment.file_name)}"
            return Response(
                attachment.content,
                200,
                content_type="application/octet-stream",
                headers={"Content-Disposition": disposition},
            )

        return self._serve(request, action)

    # ==============================================================================================
    # API: payments
    # ==============================================================================================

    def list_contact_payments(self, request: Request) -> Response:
        def action(context: ApiContext) -> Response:
            business = context.business
            payments = _filtered_payments(request, list(business.contact_payments.values()))
            return self._listing(
                request, "contact_payments", payments, lambda item: wire.contact_payment_json(business, item)
            )

        return self._serve(request, action)

    def get_contact_payment(self, request: Request, key: str) -> Response:
        def action(context: ApiContext) -> Response:
            payment = _live(context.business.contact_payments, key)
            return self._single(request, wire.contact_payment_json(context.business, payment))

        return self._serve(request, action)

    def delete_contact_payment(self, request: Request, key: str) -> Response:
        """`deleteContactPaymentsKey`: 204 and no body; a payment already deleted is not found (404)."""

        def action(context: ApiContext) -> Response:
            _live(context.business.contact_payments, key)
            try:
                context.business.delete_contact_payment(key, self.clock.now())
            except SageValidationError as exc:
                raise ApiError(422, exc.errors) from None
            return Response(status=204)

        return self._serve(request, action, write=True)

    def delete_other_payment(self, request: Request, key: str) -> Response:
        """`deleteOtherPaymentsKey`: 204 and no body; a payment already deleted is not found (404)."""

        def action(context: ApiContext) -> Response:
            _live(context.business.other_payments, key)
            try:
                context.business.delete_other_payment(key, self.clock.now())
            except SageValidationError as exc:
                raise ApiError(422, exc.errors) from None
            return Response(status=204)

        return self._serve(request, action, write=True)

    def create_contact_payment(self, request: Request) -> Response:
        def action(context: ApiContext) -> Response:
            business = context.business
            return self._create(
                request,
                business,
                "contact_payment",
                lambda fields: wire.contact_payment_json(
                    business, business.post_contact_payment(fields, self.clock.now())
                ),
            )

        return self._serve(request, action, write=True)

    def list_other_payments(self, request: Request) -> Response:
        def action(context: ApiContext) -> Response:
            business = context.business
            payments = _filtered_payments(request, list(business.other_payments.values()))
            return self._listing(
                request, "other_payments", payments, lambda item: wire.other_payment_json(business, item)
            )

        return self._serve(request, action)

    def get_other_payment(self, request: Request, key: str) -> Response:
        def action(context: ApiContext) -> Response:
            payment = _live(context.business.other_payments, key)
            return self._single(request, wire.other_payment_json(context.business, payment))

        return self._serve(request, action)

    def create_other_payment(self, request: Request) -> Response:
        def action(context: ApiContext) -> Response:
            business = context.business
            return self._create(
                request,
                business,
                "other_payment",
                lambda fields: wire.other_payment_json(business, business.post_other_payment(fields, self.clock.now())),
            )

        return self._serve(request, action, write=True)

    def _create(
        self,
        request: Request,
        business: Business,
        resource: str,
        commit: Callable[[Mapping[str, Any]], dict[str, Any]],
    ) -> Response:
        """A POST, answered once per `idempotency_id` (idempotency.py)."""
        fields = _resource_fields(request, resource)
        try:
            return self.replies.answer(business.id, resource, fields, commit)
        except SageValidationError as exc:
            raise ApiError(422, exc.errors) from exc


# ==================================================================================================
# Request helpers
# ==================================================================================================


def _not_found() -> ApiError:
    return ApiError(404, [SageError("RecordNotFound", "Record not found")])


def _live[D: _Deletable](records: Mapping[str, D], key: str) -> D:
    """The record under `key`; a deleted one is not found, as if it had never existed."""
    record = records.get(key)
    if record is None or record.deleted_at is not None:
        raise _not_found()
    return record


def _invalid_parameter(name: str, message: str) -> ApiError:
    return ApiError(422, [SageError("InvalidParameter", message, name)])


def _int_arg(request: Request, name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise _invalid_parameter(name, f"{name} must be an integer") from None


def _bool_arg(request: Request, name: str) -> bool | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise _invalid_parameter(name, f"{name} must be true or false")


def _moment_arg(request: Request, name: str) -> datetime | None:
    """A date or date-time query value; a date means its start, a value without offset means UTC."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(0, 0), tzinfo=UTC)
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _invalid_parameter(name, f"{name} must be a date or an ISO 8601 date-time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _date_arg(request: Request, name: str) -> date | None:
    moment = _moment_arg(request, name)
    return None if moment is None else moment.date()


def _changed[E: _Timestamped](request: Request, entities: list[E]) -> list[E]:
    """Apply `updated_or_created_since` (inclusive) and `deleted_since` (exclusive).

    Without `deleted_since` deleted records are hidden. With it, the answer holds only the records
    deleted after that moment, each showing its `deleted_at` - this sandbox's reading of the
    Swagger, which describes the parameter but not how deleted records appear.
    """
    since = _moment_arg(request, "updated_or_created_since")
    deleted_since = _moment_arg(request, "deleted_since")
    result = []
    for entity in entities:
        deleted_at: datetime | None = getattr(entity, "deleted_at", None)
        if deleted_since is None and deleted_at is not None:
            continue
        if deleted_since is not None and (deleted_at is None or deleted_at <= deleted_since):
            continue
        if since is not None and entity.updated_at < since:
            continue
        result.append(entity)
    return result


def _filtered_payments[P: _Timestamped](request: Request, payments: list[P]) -> list[P]:
    """The query of GET /contact_payments and GET /other_payments: the Swagger gives both lists the same
    filters and sort keys."""
    payments = _changed(request, payments)
    for parameter in ("contact_id", "bank_account_id", "transaction_type_id"):
        wanted = request.args.get(parameter)
        if wanted:
            payments = [item for item in payments if getattr(item, parameter) == wanted]
    payments = _between(request, payments)
    return _sorted(request, payments, ("created_at", "updated_at", "date"))


def _between[P](request: Request, payments: list[P]) -> list[P]:
    from_date, to_date = _date_arg(request, "from_date"), _date_arg(request, "to_date")
    if from_date is not None:
        payments = [item for item in payments if getattr(item, "date") >= from_date]  # noqa: B009
    if to_date is not None:
        payments = [item for item in payments if getattr(item, "date") <= to_date]  # noqa: B009
    return payments


def _sorted[S](request: Request, entities: list[S], allowed: Sequence[str]) -> list[S]:
    raw = request.args.get("sort")
    if not raw:
        return entities
    attribute, _, direction = raw.partition(":")
    if attribute not in allowed or direction not in ("", "asc", "desc"):
        raise _invalid_parameter("sort", f"sort must be one of {', '.join(allowed)} with :asc or :desc")

    def key(entity: S) -> tuple[bool, Any]:
        value = getattr(entity, attribute)
        return (value is None, value if value is not None else 0)

    return sorted(entities, key=key, reverse=direction == "desc")


def _page_path(request: Request, collection: str, page: int, per_page: int) -> str:
    """`$next`/`$back`: the same query on another page, relative to /v3.1 as in Sage's example."""
    kept = [(key, value) for key, value in request.args.items(multi=True) if key not in ("page", "items_per_page")]
    query = urlencode([("page", str(page)), ("items_per_page", str(per_page)), *kept])
    return f"/{collection}?{query}"


def _resource_fields(request: Request, resource: str) -> Mapping[str, Any]:
    if request.mimetype != "application/json":
        raise ApiError(415, [SageError("UnsupportedMediaType", "Content-Type must be application/json")])
    try:
        payload = json.loads(request.get_data(as_text=True) or "null", parse_float=Decimal)
    except ValueError:
        raise ApiError(400, [SageError("BadRequest", "The request body is not valid JSON")]) from None
    fields = payload.get(resource) if isinstance(payload, dict) else None
    if not isinstance(fields, dict):
        raise ApiError(
            422, [SageError("RecordInvalid", f"param is missing or the value is empty: {resource}", resource)]
        )
    return fields


# ==================================================================================================
# OAuth helpers
# ==================================================================================================


def _requested_scope(params: Mapping[str, str]) -> str:
    # Sage's example URL says `scope`, its parameter table `scopes`; absent, this sandbox grants the
    # least: readonly (Sage's default is not documented).
    return params.get("scope") or params.get("scopes") or "readonly"


def _authorization_problem(params: Mapping[str, str]) -> tuple[str, str] | None:
    if params.get("response_type") != "code":
        return ("unsupported_response_type", "response_type must be code")
    if params.get("filter") != "apiv3.1":
        # S-AUTH: "You should always set this filter to apiv3.1"; other flows are not served here.
        return ("invalid_request", "filter=apiv3.1 is required for Accounting API v3.1")
    if _requested_scope(params) not in SCOPES:
        return ("invalid_scope", "scope must be readonly or full_access")
    method = params.get("code_challenge_method")
    if method and method not in ("S256", "plain"):
        return ("invalid_request", "code_challenge_method must be S256 or plain")
    if method and not params.get("code_challenge"):
        return ("invalid_request", "code_challenge is required with code_challenge_method")
    return None


def _redirect(uri: str, params: Mapping[str, str], state: str | None) -> Response:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    if state is not None:
        query.append(("state", state))
    return redirect(urlunsplit(parts._replace(query=urlencode(query))), 302)


def _oauth_error(status: int, error: str, description: str | None = None) -> Response:
    body = {"error": error} if description is None else {"error": error, "error_description": description}
    return json_response(body, status, {"Cache-Control": "no-store"})


def _page(status: int, message: str) -> Response:
    text = f"<!DOCTYPE html>\n<html><body><h1>Sage Accounting</h1><p>{html.escape(message)}</p></body></html>\n"
    return Response(text, status, content_type="text/html; charset=utf-8")
