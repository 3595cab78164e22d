"""The QuickBooks sandbox's wire: Intuit's OAuth 2.0 server and the QBO Accounting API v3, as Intuit speaks them.

Wire formats follow docs/providers.md#quickbooks-online and the XSDs in its #specs (JSON field names
are the XSD element names). Routes:

- OAuth: `GET|POST /connect/oauth2` (consent: the user picks ONE company), `POST
  /oauth2/v1/tokens/bearer` (authorization_code, refresh_token; client_secret_basic or _post),
  `POST /v2/oauth2/tokens/revoke` (JSON `{"token"}`, Basic auth).
- API, tenant = realmId in the path: `GET|POST /v3/company/{realmId}/query`, `GET .../cdc`,
  `GET .../{bill|vendor|account|attachable|billpayment|purchase}/{id}`, `GET .../download/{id}`
  (a plain-text temporary URL, valid 15 minutes, served under `/_files/`), `POST .../billpayment`,
  `POST .../purchase`, `POST .../batch`.

What a write does to the company is `ledger.py`'s; the limits and their 429 are `limits.py`'s; the
requestid replay is `idempotency.py`'s. Choices where the sources are silent (each also noted at its
line): PKCE parameters are ignored, as Intuit advertises no code_challenge_methods; a bad or expired
token gets the gateway's 401 body.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import random
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from local.sandboxes.core import (
    AuthorizationCodes,
    Clock,
    ProviderSandbox,
    json_response,
    random_token,
    render_consent_page,
)
from local.sandboxes.quickbooks import ledger as qbo
from local.sandboxes.quickbooks.idempotency import IdempotentReplies
from local.sandboxes.quickbooks.ledger import QboError, Realm
from local.sandboxes.quickbooks.limits import (
    API_ENDPOINTS,
    BATCH_MAX_ITEMS,
    METERED,
    UNMETERED,
    Meter,
    RateLimits,
    throttled,
)
from local.sandboxes.quickbooks.oauth import (
    ACCESS_TOKEN_SECONDS,
    ACCOUNTING_SCOPE,
    CODE_SECONDS,
    KNOWN_SCOPES,
    AccessToken,
    App,
    TokenSet,
    TokenStore,
)
from local.sandboxes.quickbooks.query import QueryError, check_fields, parse_query, select
from local.sandboxes.quickbooks.webhooks import ChangeEvent, WebhookConfig, build_delivery

CDC_MAX_DAYS = 30
CDC_MAX_OBJECTS = 1000
FILE_LINK_SECONDS = 15 * 60
HARD_EXPIRY_HEADER = "x-include-refresh-token-hard-expires-in"
OAUTH_ENDPOINTS = frozenset({"authorize", "consent", "token", "revoke"})
# URL segment → entity type for reads by Id.
ENTITY_PATHS = {
    "account": "Account",
    "attachable": "Attachable",
    "bill": "Bill",
    "billpayment": "BillPayment",
    "purchase": "Purchase",
    "vendor": "Vendor",
}
_REALM_PATH = re.compile(r"^/v3/company/([^/]+)/")
# Properties a WHERE/ORDERBY may name, per entity (the top-level elements the sandbox emits).
QUERYABLE = {
    "Account": ("Id", "MetaData", "Name", "Active", "AccountType", "AccountSubType", "Classification",
                "CurrencyRef", "FullyQualifiedName", "AcctNum", "SubAccount", "CurrentBalance"),
    "Attachable": ("Id", "MetaData", "AttachableRef", "FileName", "ContentType", "Size", "Note", "Category"),
    "Bill": ("Id", "MetaData", "DocNumber", "TxnDate", "DueDate", "CurrencyRef", "VendorRef", "APAccountRef",
             "TotalAmt", "Balance", "PrivateNote", "SyncToken"),
    "BillPayment": ("Id", "MetaData", "DocNumber", "TxnDate", "CurrencyRef", "VendorRef", "PayType",
                    "TotalAmt", "PrivateNote", "SyncToken"),
    "Purchase": ("Id", "MetaData", "DocNumber", "TxnDate", "CurrencyRef", "AccountRef", "PaymentType",
                 "EntityRef", "TotalAmt", "PrivateNote", "SyncToken"),
    "Vendor": ("Id", "MetaData", "DisplayName", "CompanyName", "GivenName", "FamilyName", "PrintOnCheckName",
               "Active", "PrimaryEmailAddr", "Balance", "CurrencyRef", "Vendor1099", "SyncToken"),
}  # fmt: skip
# Name lists (Vendor, Account) return active objects only unless the query filters on Active.
NAME_LISTS = frozenset({"Vendor", "Account"})
NGINX_REASONS = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}
# The API gateway's own 401/403 bodies: (name, errorCode, fault type).
GATEWAY_FAULTS = {
    401: ("AuthenticationFailed", "003200", "AUTHENTICATION"),
    403: ("AuthorizationFailed", "003100", "SERVICE"),
}
_NGINX_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class _FileLink:
    realm_id: str
    attachable_id: str
    expires_at: float


def _error_dict(error: QboError | QueryError) -> dict[str, str]:
    element = error.element if isinstance(error, QboError) else ""
    return {"Message": error.message, "Detail": error.detail, "code": error.code, "element": element}


def _parse_decimal_json(raw: bytes) -> Any:
    return json.loads(raw.decode("utf-8"), parse_float=Decimal)


class QuickBooksRoutes(ProviderSandbox):
    """The wire: Intuit's OAuth server and the QuickBooks Online Accounting API, over the companies
    and tokens it holds. `QuickBooksSandbox` adds the controls tests use."""

    def __init__(self, *, clock: Clock | None = None, auto_approve: bool = False, seed: int = 0) -> None:
        super().__init__(clock=clock, auto_approve=auto_approve, seed=seed)
        self.tokens = TokenStore(self.clock)
        self.codes = AuthorizationCodes(self.clock, CODE_SECONDS)
        self.approve_realm: str | None = None  # company auto_approve picks; None: the first one
        self._apps: dict[str, App] = {}
        self._realms: dict[str, Realm] = {}
        self._realm_rng = random.Random(seed)
        self._ledger_lock = threading.RLock()
        self.replies = IdempotentReplies()
        self._file_links: dict[str, _FileLink] = {}
        self._webhook: WebhookConfig | None = None
        self.meter = Meter()
        self.rate_limits = RateLimits(self.clock)

    # ==== ProviderSandbox hooks ================================================================

    def routes(self) -> list[Rule]:
        entity_names = ",".join(ENTITY_PATHS)
        company = "/v3/company/<realm_id>"
        return [
            Rule("/connect/oauth2", methods=["GET"], endpoint="authorize"),
            Rule("/connect/oauth2", methods=["POST"], endpoint="consent"),
            Rule("/oauth2/v1/tokens/bearer", methods=["POST"], endpoint="token"),
            Rule("/v2/oauth2/tokens/revoke", methods=["POST"], endpoint="revoke"),
            Rule(f"{company}/query", methods=["GET", "POST"], endpoint="query"),
            Rule(f"{company}/cdc", methods=["GET"], endpoint="cdc"),
            Rule(f"{company}/batch", methods=["POST"], endpoint="batch"),
            Rule(f"{company}/billpayment", methods=["POST"], endpoint="create_billpayment"),
            Rule(f"{company}/purchase", methods=["POST"], endpoint="create_purchase"),
            Rule(f"{company}/download/<attachable_id>", methods=["GET"], endpoint="download"),
            Rule(f"{company}/companyinfo/<company_id>", methods=["GET"], endpoint="company_info"),
            Rule(f"{company}/preferences", methods=["GET"], endpoint="preferences"),
            Rule(f"{company}/<any({entity_names}):entity>/<entity_id>", methods=["GET"], endpoint="read_entity"),
            Rule("/_files/<token>", methods=["GET"], endpoint="download_file"),
        ]

    def tenant_of(self, request: Request) -> str | None:
        match = _REALM_PATH.match(request.path)
        return match.group(1) if match else None

    def check_rate_limit(self, request: Request, endpoint: str) -> Response | None:
        realm_id = self.tenant_of(request)
        if endpoint not in API_ENDPOINTS or realm_id is None:
            return None
        access = self.tokens.access(_bearer(request) or "")
        rate_limits = self.rate_limits
        slot = rate_limits.admit(endpoint, access.grant.client_id if access else None, realm_id)
        if slot is None:
            return self.throttled_response(request)
        self.on_request_finished(request, lambda: rate_limits.release(slot))
        return None

    def throttled_response(self, request: Request) -> Response:
        return throttled(self._time(), self._tid())

    def error_response(self, request: Request, status: int, message: str) -> Response:
        if status == 429:
            return self.throttled_response(request)
        if status in NGINX_REASONS:
            # Intuit's edge answers these with nginx's HTML page, not a Fault.
            page = _NGINX_PAGE.format(status=status, reason=NGINX_REASONS[status])
            return Response(page, status=status, content_type="text/html", headers=self._tid())
        if request.path in ("/oauth2/v1/tokens/bearer", "/v2/oauth2/tokens/revoke"):
            error = {400: "invalid_request", 401: "invalid_client"}.get(status, "server_error")
            return json_response({"error": error}, status, self._tid())
        if status in (401, 403):
            name, code, fault_type = GATEWAY_FAULTS[status]
            return self._gateway_fault(name, code, status, fault_type, message)
        return self._fault(_status_error(request, status, message))

    # ==== responses ============================================================================

    def _time(self) -> str:
        return qbo.qbo_time(self.clock.now(), timespec="milliseconds")

    @staticmethod
    def _tid() -> dict[str, str]:
        return {"intuit_tid": f"1-{random_token(12)}"}

    def _fault(self, *errors: QboError | QueryError, status: int | None = None) -> Response:
        first = errors[0]
        fault_type = first.fault_type if isinstance(first, QboError) else "ValidationFault"
        http_status = status if status is not None else (first.status if isinstance(first, QboError) else 400)
        payload = {
            "Fault": {"Error": [_error_dict(e) for e in errors], "type": fault_type},
            "time": self._time(),
        }
        return json_response(payload, http_status, self._tid())

    def _gateway_fault(self, name: str, code: str, status: int, fault_type: str, detail: str | None) -> Response:
        """The API gateway's own error body: the IntuitResponse bean with camelCase names."""
        payload: dict[str, Any] = {
            "warnings": None,
            "intuitObject": None,
            "fault": {
                "error": [
                    {
                        "message": f"message={name}; errorCode={code}; statusCode={status}",
                        "detail": detail,
                        "code": code.lstrip("0"),
                        "element": None,
                    }
                ],
                "type": fault_type,
            },
            "report": None,
            "queryResponse": None,
            "batchItemResponse": [],
            "attachableResponse": [],
            "syncErrorResponse": None,
            "requestId": None,
            "time": int(self.clock.timestamp() * 1000),
            "status": None,
            "cdcresponse": [],
        }
        headers = self._tid()
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="Intuit", error="invalid_token"'
        return json_response(payload, status, headers)

    def _ok(self, payload: dict[str, Any]) -> Response:
        payload["time"] = self._time()
        return json_response(payload, 200, self._tid())

    def _present(self, request: Request, realm: Realm, entity_type: str, entity: dict[str, Any]) -> dict[str, Any]:
        """An entity as the API returns it; an Attachable gets a fresh TempDownloadUri."""
        if entity_type != "Attachable" or entity.get("status") == "Deleted":
            return entity
        shown = dict(entity)
        shown["TempDownloadUri"] = self._file_link(request, realm, entity["Id"])
        return shown

    def _file_link(self, request: Request, realm: Realm, attachable_id: str) -> str:
        token = random_token(24)
        self._file_links[token] = _FileLink(realm.realm_id, attachable_id, self.clock.timestamp() + FILE_LINK_SECONDS)
        return f"{request.host_url.rstrip('/')}/_files/{token}?X-Amz-Expires={FILE_LINK_SECONDS}"

    def _realm(self, realm_id: str) -> Realm:
        realm = self._realms.get(realm_id)
        if realm is None:
            raise KeyError(f"no company with realmId {realm_id}")
        return realm

    # ==== OAuth ================================================================================

    def _oauth_page(self, status: int, text: str) -> Response:
        body = f"<!DOCTYPE html><html><body><h1>Something went wrong</h1><p>{text}</p></body></html>"
        return Response(body, status=status, content_type="text/html")

    @staticmethod
    def _redirect(redirect_uri: str, params: Mapping[str, str]) -> Response:
        separator = "&" if "?" in redirect_uri else "?"
        location = f"{redirect_uri}{separator}{urlencode(params)}"
        return Response("", status=302, headers={"Location": location})

    def _check_client(self, form: Mapping[str, str]) -> App | Response:
        app = self._apps.get(form.get("client_id", ""))
        if app is None:
            return self._oauth_page(400, "invalid_client: the client_id is not registered")
        if form.get("redirect_uri", "") not in app.redirect_uris:
            return self._oauth_page(400, "invalid_request: the redirect_uri is not registered for this app")
        return app

    def authorize(self, request: Request) -> Response:
        params = request.args
        checked = self._check_client(params)
        if isinstance(checked, Response):
            return checked
        redirect_uri, state = params["redirect_uri"], params.get("state", "")
        if params.get("response_type") != "code":
            return self._redirect(redirect_uri, {"error": "unsupported_response_type", "state": state})
        scopes = _known_scopes(params)
        if scopes is None:
            return self._redirect(redirect_uri, {"error": "invalid_scope", "state": state})
        # Choice: code_challenge/code_challenge_method are ignored (Intuit advertises no PKCE methods).
        companies = [(realm.realm_id, realm.company_name) for realm in self._realms.values()]
        if self.auto_approve and companies:
            chosen = self.approve_realm or companies[0][0]
            return self._approve(checked, redirect_uri, state, scopes, chosen)
        page = render_consent_page(
            provider="QuickBooks",
            app_name=checked.client_id,
            scopes=scopes,
            tenants=companies,
            multi_select=False,
            hidden={
                "client_id": checked.client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(scopes),
                "state": state,
                "response_type": "code",
            },
            action="/connect/oauth2",
        )
        return Response(page, status=200, content_type="text/html; charset=utf-8")

    def consent(self, request: Request) -> Response:
        form = request.form
        checked = self._check_client(form)
        if isinstance(checked, Response):
            return checked
        redirect_uri, state = form["redirect_uri"], form.get("state", "")
        if form.get("decision") != "approve":
            return self._redirect(redirect_uri, {"error": "access_denied", "state": state})
        scopes = _known_scopes(form)
        if scopes is None:
            return self._redirect(redirect_uri, {"error": "invalid_scope", "state": state})
        realm_id = form.get("tenant", "")
        if realm_id not in self._realms:
            return self._oauth_page(400, "Choose one company to connect.")
        return self._approve(checked, redirect_uri, state, scopes, realm_id)

    def _approve(self, app: App, redirect_uri: str, state: str, scopes: list[str], realm_id: str) -> Response:
        code = self.codes.issue(
            client_id=app.client_id,
            redirect_uri=redirect_uri,
            tenants=[realm_id],
            scopes=scopes,
            subject=f"user-of-{realm_id}",
        )
        return self._redirect(redirect_uri, {"code": code, "state": state, "realmId": realm_id})

    def _client_credentials(self, request: Request) -> App | None:
        """client_secret_basic (Authorization header) or client_secret_post (form fields)."""
        client_id, secret = request.form.get("client_id"), request.form.get("client_secret")
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            client_id, _, secret = decoded.partition(":")
        app = self._apps.get(client_id or "")
        if app is None or secret != app.client_secret:
            return None
        return app

    def _oauth_error(self, status: int, body: dict[str, str]) -> Response:
        headers = self._tid()
        headers.update({"Cache-Control": "no-cache, no-store", "Pragma": "no-cache"})
        return json_response(body, status, headers)

    def token(self, request: Request) -> Response:
        app = self._client_credentials(request)
        if app is None:
            return self._oauth_error(401, {"error": "invalid_client"})
        grant_type = request.form.get("grant_type")
        if grant_type == "authorization_code":
            issued = self._exchange_code(request, app)
        elif grant_type == "refresh_token":
            issued = self._refresh(request, app)
        else:
            issued = self._oauth_error(400, {"error": "unsupported_grant_type"})
        if isinstance(issued, Response):
            return issued
        body = token_body(issued)
        if request.headers.get(HARD_EXPIRY_HEADER, "").lower() == "true":
            body["x_refresh_token_hard_expires_in"] = issued.hard_expires_in
        headers = self._tid()
        headers.update({"Cache-Control": "no-cache, no-store", "Pragma": "no-cache"})
        return json_response(body, 200, headers)

    def _exchange_code(self, request: Request, app: App) -> TokenSet | Response:
        code, redirect_uri = request.form.get("code"), request.form.get("redirect_uri")
        if not code or not redirect_uri:
            return self._oauth_error(400, {"error": "invalid_request"})
        # Choice: code_verifier is ignored, as Intuit does not support PKCE.
        grant = self.codes.redeem(code, app.client_id, redirect_uri, None)
        if grant is None:
            return self._oauth_error(400, {"error": "invalid_grant"})
        return self.tokens.issue(app.client_id, grant.tenants[0], grant.scopes)

    def _refresh(self, request: Request, app: App) -> TokenSet | Response:
        refresh_token = request.form.get("refresh_token")
        if not refresh_token:
            return self._oauth_error(400, {"error": "invalid_request"})
        issued = self.tokens.refresh(app.client_id, refresh_token)
        if issued is None:
            return self._oauth_error(
                400, {"error_description": "Incorrect or invalid refresh token", "error": "invalid_grant"}
            )
        return issued

    def revoke(self, request: Request) -> Response:
        if not request.headers.get("Authorization", "").startswith("Basic "):
            return self._oauth_error(401, {"error": "invalid_client"})
        app = self._client_credentials(request)
        if app is None:
            return self._oauth_error(401, {"error": "invalid_client"})
        try:
            body = json.loads(request.get_data(as_text=True) or "null")
        except json.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("token"), str):
            return self._oauth_error(400, {"error": "invalid_request"})
        # Choice: an unknown token also gets 200, as RFC 7009 §2.2 asks.
        self.tokens.revoke(app.client_id, body["token"])
        return Response("", status=200, headers=self._tid())

    # ==== API: authentication ==================================================================

    def _authenticate(self, request: Request, realm_id: str) -> tuple[Realm, AccessToken] | Response:
        token = _bearer(request)
        if token is None or len(token) < 20:
            return self._gateway_fault(
                "AuthenticationFailed",
                "003200",
                401,
                "AUTHENTICATION",
                "Malformed bearer token: too short or too long",
            )
        access = self.tokens.access(token)
        if access is None:
            return self._gateway_fault("AuthenticationFailed", "003200", 401, "AUTHENTICATION", None)
        if self.tokens.is_expired(access):
            return self._gateway_fault("AuthenticationFailed", "003200", 401, "AUTHENTICATION", "Token expired")
        realm = self._realms.get(realm_id)
        if realm is None or access.grant.realm_id != realm_id:
            # What Intuit answers for a token used on another company's realmId (oauth-jsclient#91).
            return self._fault(
                QboError(
                    "100",
                    "General Authentication Error",
                    "AuthenticationErrorGeneral: SRV-110-Authentication Failure , statusCode: 401",
                    status=401,
                    fault_type="AuthenticationFault",
                )
            )
        if ACCOUNTING_SCOPE not in access.grant.scopes:
            return self._gateway_fault("AuthorizationFailed", "003100", 403, "SERVICE", None)
        return realm, access

    # ==== API: reads ===========================================================================

    def query(self, request: Request, realm_id: str) -> Response:
        authenticated = self._authenticate(request, realm_id)
        if isinstance(authenticated, Response):
            return authenticated
        realm, _ = authenticated
        text = request.args.get("query") if request.method == "GET" else request.get_data(as_text=True)
        self.meter.count(realm.realm_id, METERED)
        with self._ledger_lock:
            try:
                result = self._run_query(request, realm, text or "")
            except QueryError as exc:
                return self._fault(exc)
            return self._ok({"QueryResponse": result})

    def _run_query(self, request: Request, realm: Realm, text: str) -> dict[str, Any]:
        parsed = parse_query(text)
        entity_type = next((name for name in qbo.ENTITY_TYPES if name.lower() == parsed.entity.lower()), None)
        if entity_type is None:
            if parsed.entity in qbo.OTHER_QBO_ENTITIES:
                return {"totalCount": 0} if parsed.count_only else {}
            raise QueryError("4001", "Invalid query", f"QueryValidationError: Unknown entity: {parsed.entity}")
        check_fields(parsed, QUERYABLE[entity_type])
        candidates = realm.all(entity_type)
        if entity_type in NAME_LISTS and not any(c.path[0].lower() == "active" for c in parsed.conditions):
            candidates = [e for e in candidates if e.get("Active") is True]
        page, total = select(candidates, parsed)
        if parsed.count_only:
            return {"totalCount": total}
        if not page:
            return {}
        return {
            entity_type: [self._present(request, realm, entity_type, dict(e)) for e in page],
            "startPosition": parsed.start_position,
            "maxResults": len(page),
        }

    def read_entity(self, request: Request, realm_id: str, entity: str, entity_id: str) -> Response:
        authenticated = self._authenticate(request, realm_id)
        if isinstance(authenticated, Response):
            return authenticated
        realm, _ = authenticated
        entity_type = ENTITY_PATHS[entity]
        self.meter.count(realm.realm_id, METERED)
        with self._ledger_lock:
            found = realm.get(entity_type, entity_id)
            if found is None:
                return self._fault(qbo.object_not_found(qbo.INACTIVE_DETAIL))
            return self._ok({entity_type: self._present(request, realm, entity_type, found)})

    def company_info(self, request: Request, realm_id: str, company_id: str) -> Response:
        """`GET companyinfo/{realmId}`: the company's name, as an app shows which company it is connected to."""
        authenticated = self._authenticate(request, realm_id)
        if isinstance(authenticated, Response):
            return authenticated
        realm, _ = authenticated
        if company_id != realm_id:
            return self._fault(qbo.object_not_found(qbo.INACTIVE_DETAIL))
        return self._ok(
            {
                "CompanyInfo": {
                    "Id": "1",
                    "SyncToken": "0",
                    "CompanyName": realm.company_name,
                    "LegalName": realm.company_name,
                }
            }
        )

    def preferences(self, request: Request, realm_id: str) -> Response:
        """`GET preferences`: the company's settings; CurrencyPrefs names the home currency [I-XSD]."""
        authenticated = self._authenticate(request, realm_id)
        if isinstance(authenticated, Response):
            return authenticated
        realm, _ = authenticated
        currency = {"MultiCurrencyEnabled": True, "HomeCurrency": {"value": realm.home_currency}}
        return self._ok({"Preferences": {"Id": "1", "SyncToken": "0", "CurrencyPrefs": currency}})

    def cdc(self, request: Request, realm_id: str) -> Response:
        authenticated = self._authenticate(request, realm_id)
        if isinstance(authenticated, Response):
            return authenticated
        realm, _ = authenticated
        self.meter.count(realm.realm_id, METERED)
        try:
            wanted, since = self._cdc_arguments(request)
        except QboError as exc:
            return self._fault(exc)
        with self._ledger_lock:
            changed = [
                (entity_type, entity)
                for entity_type in dict.fromkeys(t for t in wanted if t is not None)
                for entity in realm.changed_since(entity_type, since)
            ]
            # Choice: past 1,000 objects, the oldest changes are kept, so a caller can move changedSince on.
            changed.sort(key=lambda pair: qbo.parse_qbo_time(pair[1]["MetaData"]["LastUpdatedTime"]))
            kept = changed[:CDC_MAX_OBJECTS]
            responses: list[dict[str, Any]] = []
            for entity_type in wanted:
                items = [self._present(request, realm, t, dict(e)) for t, e in kept if t == entity_type]
                if not items or entity_type is None:
                    responses.append({})
                    continue
                count = len(items)
                responses.append({entity_type: items, "startPosition": 1, "maxResults": count, "totalCount": count})
            return self._ok({"CDCResponse": [{"QueryResponse": responses}]})

    def _cdc_arguments(self, request: Request) -> tuple[list[str | None], datetime]:
        """Entity types asked for (None: a QBO entity this sandbox has none of) and changedSince."""
        names = [n.strip() for n in request.args.get("entities", "").split(",") if n.strip()]
        if not names:
            raise qbo.missing_param("entities")
        raw_since = request.args.get("changedSince")
        if not raw_since:
            raise qbo.missing_param("changedSince")
        since = _parse_changed_since(raw_since)
        if since is None:
            raise QboError("2040", "Invalid Date", f"Invalid Date : {raw_since}", element="changedSince")
        if since < self.clock.now() - timedelta(days=CDC_MAX_DAYS):
            raise QboError(
                "500",
                "Unsupported Operation",
                f"Operation cdc with changedSince date {raw_since} which is older than fixed days is not supported.",
            )
        wanted: list[str | None] = []
        for name in names:
            entity_type = next((t for t in qbo.ENTITY_TYPES if t.lower() == name.lower()), None)
            if entity_type is None and name not in qbo.OTHER_QBO_ENTITIES:
                raise QboError("500", "Unsupported Operation", f"Operation cdc for entity {name} is not supported.")
            wanted.append(entity_type)
        return wanted, since

    def download(self, request: Request, realm_id: str, attachable_id: str) -> Response:
        authenticated = self._authenticate(request, realm_id)
        if isinstance(authenticated, Response):
            return authenticated
        realm, _ = authenticated
        self.meter.count(realm.realm_id, METERED)
        with self._ledger_lock:
            if realm.get("Attachable", attachable_id) is None or attachable_id not in realm.files:
                return self._fault(qbo.object_not_found(qbo.INACTIVE_DETAIL))
            link = self._file_link(request, realm, attachable_id)
        return Response(link, status=200, content_type="text/plain", headers=self._tid())

    def download_file(self, request: Request, token: str) -> Response:
        link = self._file_links.get(token)
        if link is None or self.clock.timestamp() >= link.expires_at:
            # The temporary link is a presigned object-store URL: an expired one is S3's 403.
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
            )
            return Response(body, status=403, content_type="application/xml")
        with self._ledger_lock:
            stored = self._realm(link.realm_id).files.get(link.attachable_id)
        if stored is None:
            return Response("", status=404)
        return Response(
            stored.content,
            status=200,
            content_type=stored.content_type,
            headers={"Content-Disposition": f'attachment; filename="{stored.file_name}"'},
        )

    # ==== API: writes ==========================================================================

    def create_billpayment(self, request: Request, realm_id: str) -> Response:
        return self._create(request, realm_id, "BillPayment")

    def create_purchase(self, request: Request, realm_id: str) -> Response:
        return self._create(request, realm_id, "Purchase")

    def _change(self, realm: Realm, entity_type: str, request: Request) -> Response:
        operation, include = request.args.get("operation"), request.args.get("include")
        include = "void" if include is not None and "void" in include.split(",") else None
        change = _CHANGES.get((entity_type, operation or "", include))
        if change is None:
            return self._fault(QboError("500", "Unsupported Operation", f"Operation {operation} is not supported."))
        try:
            body = _parse_decimal_json(request.get_data())
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return self._fault(qbo.missing_param(entity_type))
        now = self.clock.now()
        try:
            if change == "void":
                return self._ok({entity_type: realm.void_bill_payment(body, now)})
            return self._ok({entity_type: realm.delete_purchase(body, now)})
        except QboError as exc:
            return self._fault(exc)

    def _create(self, request: Request, realm_id: str, entity_type: str) -> Response:
        authenticated = self._authenticate(request, realm_id)
        if isinstance(authenticated, Response):
            return authenticated
        realm, _ = authenticated
        self.meter.count(realm.realm_id, UNMETERED)
        with self._ledger_lock:
            if "operation" in request.args:
                return self._idempotent(request, realm, lambda: self._change(realm, entity_type, request))
            return self._idempotent(request, realm, lambda: self._create_entity(realm, entity_type, request))

    def _create_entity(self, realm: Realm, entity_type: str, request: Request) -> Response:
        try:
            body = _parse_decimal_json(request.get_data())
        except (ValueError, UnicodeDecodeError) as exc:
            return self._fault(
                QboError(
                    "2010",
                    "Request has invalid or unsupported property",
                    f"Property Name:Can not parse the request body: {exc} specified is unsupported or invalid",
                )
            )
        if not isinstance(body, dict):
            return self._fault(qbo.missing_param(entity_type))
        try:
            created = self._write(realm, entity_type, body)
        except QboError as exc:
            return self._fault(exc)
        return self._ok({entity_type: created})

    def _write(self, realm: Realm, entity_type: str, body: Mapping[str, Any]) -> dict[str, Any]:
        now = self.clock.now()
        if entity_type == "BillPayment":
            return realm.create_bill_payment(body, now)
        return realm.create_purchase(body, now)

    def _idempotent(self, request: Request, realm: Realm, run: Callable[[], Response]) -> Response:
        return self.replies.answer(request, realm.realm_id, run, refuse=self._fault, headers=self._tid)

    def batch(self, request: Request, realm_id: str) -> Response:
        authenticated = self._authenticate(request, realm_id)
        if isinstance(authenticated, Response):
            return authenticated
        realm, _ = authenticated
        with self._ledger_lock:
            return self._idempotent(request, realm, lambda: self._run_batch(request, realm))

    def _run_batch(self, request: Request, realm: Realm) -> Response:
        try:
            body = _parse_decimal_json(request.get_data())
        except (ValueError, UnicodeDecodeError):
            body = None
        items = body.get("BatchItemRequest") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return self._fault(qbo.missing_param("BatchItemRequest"))
        if len(items) > BATCH_MAX_ITEMS:
            return self._fault(
                QboError(
                    "1040",
                    "Batch size exceeds allowed limit",
                    f"Batch size ({len(items)}) exceeds the allowed limit of {BATCH_MAX_ITEMS}",
                )
            )
        # Every item gets its own answer; a failed item is a Fault inside an HTTP 200 (I-ERR, I-BATCH).
        return self._ok({"BatchItemResponse": [self._batch_item(request, realm, item) for item in items]})

    def _batch_item(self, request: Request, realm: Realm, item: object) -> dict[str, Any]:
        if not isinstance(item, dict):
            return {"Fault": {"Error": [_error_dict(qbo.missing_param("bId"))], "type": "ValidationFault"}}
        answer: dict[str, Any] = {"bId": str(item.get("bId", ""))}
        try:
            if "Query" in item:
                self.meter.count(realm.realm_id, METERED)
                answer["QueryResponse"] = self._run_query(request, realm, str(item["Query"]))
                return answer
            entity_type = next((t for t in ("BillPayment", "Purchase") if t in item), None)
            if item.get("operation") != "create" or entity_type is None or not isinstance(item[entity_type], dict):
                raise QboError("500", "Unsupported Operation", f"Operation {item.get('operation')} is not supported.")
            self.meter.count(realm.realm_id, UNMETERED)
            answer[entity_type] = self._write(realm, entity_type, item[entity_type])
        except (QboError, QueryError) as exc:
            answer["Fault"] = {"Error": [_error_dict(exc)], "type": "ValidationFault"}
        return answer

    # ==== webhooks =============================================================================

    def _on_change(self, realm: Realm, entity_type: str, entity_id: str, operation: str) -> None:
        config = self._webhook
        if config is None or entity_type not in config.entities:
            return
        entity = realm.get(entity_type, entity_id)
        event = ChangeEvent(
            realm_id=realm.realm_id,
            entity_type=entity_type,
            entity_id=entity_id,
            operation=operation,
            at=self.clock.now(),
            data=copy.deepcopy(entity) if entity is not None else None,
        )
        body, headers = build_delivery(config, [event])
        self.post_webhook(config.url, body, headers)


# The operations Intuit's references give these entities besides create: a BillPayment is voided by a
# sparse update `?operation=update&include=void`; a Purchase is deleted (`?operation=delete`). Any other is
# the Fault Intuit answers ("Operation void is not supported.").
_CHANGES = {("BillPayment", "update", "void"): "void", ("Purchase", "delete", None): "delete"}


def _known_scopes(params: Mapping[str, str]) -> list[str] | None:
    """The space-separated `scope` of an authorization request; None (invalid_scope) when it is empty
    or names a scope Intuit does not know. The consent form posts it back and is checked again."""
    scopes = params.get("scope", "").split()
    if not scopes or any(scope not in KNOWN_SCOPES for scope in scopes):
        return None
    return scopes


def token_body(issued: TokenSet) -> dict[str, Any]:
    """The token endpoint's JSON in Intuit's key order; `issue_tokens` hands tests the same body."""
    return {
        "token_type": "bearer",
        "expires_in": ACCESS_TOKEN_SECONDS,
        "refresh_token": issued.refresh_token,
        "x_refresh_token_expires_in": issued.refresh_expires_in,
        "access_token": issued.access_token,
    }


def _status_error(request: Request, status: int, message: str) -> QboError:
    """Intuit's Fault for an HTTP error status the handlers do not produce themselves."""
    if status >= 500:
        return QboError(
            "10000",
            "An application error has occurred while processing your request",
            f"System Failure Error: {message}",
            status=status,
            fault_type="SystemFault",
        )
    if status in (404, 405):
        # QBO answers an unknown resource with 400 "Unsupported Operation".
        return QboError(
            "500",
            "Unsupported Operation",
            f"Operation {request.path} is not supported.",
            status=400 if status == 404 else status,
        )
    return QboError("2010", "Request has invalid or unsupported property", message, status=status)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    return header[7:].strip() or None


def _parse_changed_since(raw: str) -> datetime | None:
    """A CDC changedSince: a date (start of day) or a datetime; without an offset it is read as UTC."""
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), datetime.min.time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
