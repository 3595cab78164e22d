"""The local HTTP gateway: the template's HTTP API (AWS::ApiGatewayV2::Api), served on loopback.

Routes, authorizers and integrations come from the OpenAPI body the SAM translator generated for the
`AWS::Serverless::HttpApi` from the functions' `HttpApi` events - the document API Gateway imports on
deploy. What the gateway does with a request follows API Gateway's documented behaviour for HTTP APIs:

- Route selection (http-api-develop-routes): exact route and method first, then `ANY` on the path,
  then greedy `{proxy+}` routes, then `$default`. A request no route matches - an unknown path, or a
  known path with a method it has no route for - gets 404 `{"message":"Not Found"}`. An HTTP API
  has no 405: a route is a method and a path, so a wrong method is simply no match.
- JWT authorizer (http-api-jwt-authorizer): the token is read from the identity source, bare or
  prefixed with `Bearer `; the signature must verify (RSA algorithms only) against the issuer's key
  named by `kid`; `iss` must equal the issuer; `aud` - or `client_id` when there is no `aud` - must be
  one of the audiences; `exp`, `nbf` and `iat` must hold now; a route with scopes needs one of them in
  `scope`/`scp`. Refusal is 401 `{"message":"Unauthorized"}` with a `www-authenticate` header; the
  header's layout and the audience wording are AWS's (http-api-troubleshooting-jwt), the other
  descriptions are ours. A scope refusal is 403 `{"message":"Forbidden"}` (observed, not published).
- Lambda proxy integration, payload format 2.0 (http-api-develop-integrations-lambda): the event
  carries lowercased headers with repeats comma-joined, cookies split out, comma-joined repeated
  query parameters, decoded path parameters, the verified claims (values as strings, arrays as
  "[a b]", as API Gateway passes them) and the body - base64-encoded unless its content type is
  text/*, application/json, application/xml or application/javascript (observed behaviour, not
  documented). The function's result maps back as documented: `statusCode`/`headers`/`cookies`/
  `body`/`isBase64Encoded`, or any other value as a 200 JSON body. A function error or malformed
  result is 500 `{"message":"Internal Server Error"}`.
- CORS (http-api-cors), when the API has a CORS configuration (`x-amazon-apigateway-cors` in the
  body, SAM's `CorsConfiguration`): see `CorsConfiguration` below.
"""

import base64
import binascii
import json
import logging
import re
import secrets
import string
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from local.functions import FunctionRuntime
from local.template import function_of, resolve_parameters

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_OPENAPI_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
_ANY = "ANY"
_TEXT_CONTENT_TYPES = {"application/json", "application/xml", "application/javascript"}
_RSA_ALGORITHMS = ["RS256", "RS384", "RS512"]

KeySet = Callable[[], Mapping[str, rsa.RSAPublicKey]]


# --------------------------------------------------------------------------------------------------
# The API definition, read from the translated template
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JwtAuthorizer:
    name: str
    identity_source: str  # e.g. "$request.header.Authorization"
    issuer: str
    audiences: tuple[str, ...]


@dataclass(frozen=True)
class Route:
    method: str  # "GET", ... or "ANY"
    path: str  # "/providers", "/connections/{connectionId}", "/files/{proxy+}" or "$default"
    function: str  # logical id of the integrated function
    authorizer: str | None = None  # None: the route is open (Auth: {Authorizer: NONE})
    scopes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    @property
    def segments(self) -> list[str]:
        return self.path.strip("/").split("/") if self.path != "/" else [""]

    @property
    def greedy(self) -> bool:
        return self.path.endswith("+}")


@dataclass(frozen=True)
class CorsConfiguration:
    """An HTTP API's CORS configuration and what API Gateway does with it.

    Documented (http-api-cors): API Gateway answers preflight OPTIONS requests itself, even without an
    OPTIONS route; a preflight is an OPTIONS request with `Origin` and `Access-Control-Request-Method`;
    an OPTIONS request a route matches (an OPTIONS, ANY or `$default` route) goes to that route instead;
    the configured headers are added to the responses of CORS requests, and CORS headers returned by
    the integration are ignored. Observed, not published: the preflight answer is 204 with no body;
    for an origin, method or request header the configuration does not allow it carries no
    `access-control-*` header at all, so the browser refuses the call; allowed lists are returned as
    configured, comma-joined; gateway-made answers (401, 404) carry the CORS headers too.
    """

    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False

    @classmethod
    def from_extension(cls, config: Mapping[str, Any]) -> "CorsConfiguration":
        def strings(name: str) -> tuple[str, ...]:
            # A list, or a CommaDelimitedList parameter the SAM translator substituted as its string.
            value = config.get(name) or []
            items = value.split(",") if isinstance(value, str) else value
            return tuple(str(item).strip() for item in items)

        cors = cls(
            allow_origins=strings("allowOrigins"),
            allow_methods=tuple(method.upper() for method in strings("allowMethods")),
            allow_headers=tuple(header.lower() for header in strings("allowHeaders")),
            expose_headers=tuple(header.lower() for header in strings("exposeHeaders")),
            max_age=int(config["maxAge"]) if config.get("maxAge") is not None else None,
            allow_credentials=bool(config.get("allowCredentials", False)),
        )
        if cors.allow_credentials and "*" in cors.allow_origins:
            # API Gateway (and SAM's translator before it) refuses this combination.
            raise ValueError("CORS allowCredentials cannot be true with the wildcard origin '*'")
        return cors

    @staticmethod
    def is_preflight(request: Request) -> bool:
        return (
            request.method == "OPTIONS"
            and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers
        )

    def _allowed_origin(self, origin: str | None) -> str | None:
        """The access-control-allow-origin value for `origin`, or None when it is not allowed."""
        if origin is None:
            return None
        if "*" in self.allow_origins:
            return "*"
        return origin if origin in self.allow_origins else None

    def preflight(self, request: Request) -> Response:
        response = Response(status=204)
        del response.headers["Content-Type"]
        origin = self._allowed_origin(request.headers.get("Origin"))
        method = request.headers.get("Access-Control-Request-Method", "").strip().upper()
        requested = [
            name.strip().lower()
            for name in request.headers.get("Access-Control-Request-Headers", "").split(",")
            if name.strip()
        ]
        method_allowed = "*" in self.allow_methods or method in self.allow_methods
        headers_allowed = "*" in self.allow_headers or all(name in self.allow_headers for name in requested)
        if origin is None or not method_allowed or not headers_allowed:
            return response
        response.headers["access-control-allow-origin"] = origin
        if self.allow_credentials:
            response.headers["access-control-allow-credentials"] = "true"
        if self.allow_methods:
            response.headers["access-control-allow-methods"] = ",".join(self.allow_methods)
        if self.allow_headers:
            response.headers["access-control-allow-headers"] = ",".join(self.allow_headers)
        if self.max_age is not None:
            response.headers["access-control-max-age"] = str(self.max_age)
        return response

    def apply(self, request: Request, response: Response) -> Response:
        """The configured CORS headers on an actual response, replacing any the integration set."""
        for name in {name for name, _ in response.headers.items() if name.lower().startswith("access-control-")}:
            del response.headers[name]
        origin = self._allowed_origin(request.headers.get("Origin"))
        if origin is not None:
            response.headers["access-control-allow-origin"] = origin
            if self.allow_credentials:
                response.headers["access-control-allow-credentials"] = "true"
            if self.expose_headers:
                response.headers["access-control-expose-headers"] = ",".join(self.expose_headers)
        return response


@dataclass(frozen=True)
class HttpApiDefinition:
    logical_id: str
    routes: tuple[Route, ...]
    authorizers: Mapping[str, JwtAuthorizer]
    cors: CorsConfiguration | None = None

    @classmethod
    def from_template(
        cls, logical_id: str, resource: Mapping[str, Any], parameters: Mapping[str, Any]
    ) -> "HttpApiDefinition":
        """Read an `AWS::ApiGatewayV2::Api` whose `Body` is the translator's OpenAPI document."""
        body = resource.get("Properties", {}).get("Body")
        if not isinstance(body, dict):
            raise ValueError(f"{logical_id} has no OpenAPI Body; only SAM-generated HTTP APIs are served")
        schemes = body.get("components", {}).get("securitySchemes", {})
        authorizers: dict[str, JwtAuthorizer] = {}
        for name, scheme in schemes.items():
            config = scheme.get("x-amazon-apigateway-authorizer", {})
            if config.get("type") != "jwt":
                raise ValueError(f"authorizer {name} of {logical_id} is not a JWT authorizer")
            jwt_config = resolve_parameters(config.get("jwtConfiguration", {}), parameters)
            audience = jwt_config.get("audience", [])
            authorizers[name] = JwtAuthorizer(
                name=name,
                identity_source=str(config.get("identitySource", "$request.header.Authorization")),
                issuer=str(jwt_config.get("issuer", "")),
                audiences=tuple([audience] if isinstance(audience, str) else audience),
            )
        default_security = body.get("security")
        routes: list[Route] = []
        for path, operations in body.get("paths", {}).items():
            for method_key, operation in operations.items():
                if method_key == "x-amazon-apigateway-any-method":
                    method = _ANY
                elif method_key in _OPENAPI_METHODS:
                    method = method_key.upper()
                else:
                    continue
                integration = operation.get("x-amazon-apigateway-integration", {})
                function = function_of(integration.get("uri"))
                if function is None or integration.get("payloadFormatVersion", "2.0") != "2.0":
                    raise ValueError(f"{method} {path}: only Lambda proxy integrations (payload 2.0) run")
                authorizer, scopes = _route_security(operation.get("security", default_security))
                routes.append(Route(method, path, function, authorizer, scopes))
        cors_extension = resolve_parameters(body.get("x-amazon-apigateway-cors"), parameters)
        cors = CorsConfiguration.from_extension(cors_extension) if cors_extension else None
        return cls(logical_id=logical_id, routes=tuple(routes), authorizers=authorizers, cors=cors)


def _route_security(security: Sequence[Mapping[str, Sequence[str]]] | None) -> tuple[str | None, tuple[str, ...]]:
    # SAM writes [{"<authorizer>": [scopes]}], or [{"NONE": []}] for Auth: {Authorizer: NONE}.
    if not security:
        return None, ()
    (name, scopes), *_ = security[0].items()
    if name == "NONE":
        return None, ()
    return name, tuple(scopes)


# --------------------------------------------------------------------------------------------------
# Route selection
# --------------------------------------------------------------------------------------------------


def _match_path(route: Route, path: str) -> dict[str, str] | None:
    requested = path.strip("/").split("/") if path != "/" else [""]
    parameters: dict[str, str] = {}
    for index, segment in enumerate(route.segments):
        if segment.startswith("{") and segment.endswith("+}"):
            rest = requested[index:]
            if not rest or rest == [""]:
                return None
            parameters[segment[1:-2]] = unquote("/".join(rest))
            return parameters
        if index >= len(requested):
            return None
        if segment.startswith("{") and segment.endswith("}"):
            if not requested[index]:
                return None
            parameters[segment[1:-1]] = unquote(requested[index])
        elif segment != requested[index]:
            return None
    return parameters if len(requested) == len(route.segments) else None


def select_route(routes: Sequence[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route API Gateway would pick for `method path`, with the path parameters it binds."""
    candidates: list[tuple[tuple[int, ...], Route, dict[str, str]]] = []
    for route in routes:
        if route.path == "$default" or route.method not in (method, _ANY):
            continue
        parameters = _match_path(route, path)
        if parameters is None:
            continue
        # Most specific first: no greedy variable, literal segments before variables, a method of its
        # own before ANY.
        literal_ranks = tuple(0 if not segment.startswith("{") else 1 for segment in route.segments)
        rank = (int(route.greedy), *literal_ranks, int(route.method == _ANY))
        candidates.append((rank, route, parameters))
    if candidates:
        _, route, parameters = min(candidates, key=lambda candidate: candidate[0])
        return route, parameters
    for route in routes:
        if route.path == "$default":
            return route, {}
    return None


# --------------------------------------------------------------------------------------------------
# JWT authorizer
# --------------------------------------------------------------------------------------------------


class Refusal(Exception):
    """The gateway answers the request itself (401/403/404) without invoking a function."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def _unauthorized(description: str | None) -> Refusal:
    challenge = "Bearer"
    if description is not None:
        challenge = f'Bearer scope="" error="invalid_token" error_description="{description}"'
    return Refusal(401, "Unauthorized", {"www-authenticate": challenge})


def _identity(request: Request, identity_source: str) -> str | None:
    source = identity_source.split(",", maxsplit=1)[0].strip()
    if source.startswith("$request.header."):
        return request.headers.get(source.removeprefix("$request.header."))
    if source.startswith("$request.querystring."):
        return request.args.get(source.removeprefix("$request.querystring."))
    raise ValueError(f"unsupported identity source {identity_source!r}")


def verify_jwt(token: str, authorizer: JwtAuthorizer, keys: Mapping[str, rsa.RSAPublicKey]) -> dict[str, Any]:
    """The token's claims if the authorizer accepts it; raises Refusal otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _unauthorized("the token is not a valid JWT") from None
    key = keys.get(str(header.get("kid")))
    if key is None:
        raise _unauthorized("the token was not signed by a key of the issuer")
    if header.get("alg") not in _RSA_ALGORITHMS:
        raise _unauthorized("the token is not signed with an RSA algorithm")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=_RSA_ALGORITHMS,
            issuer=authorizer.issuer,
            options={"verify_aud": False, "require": ["exp", "iss"]},
        )
    except jwt.InvalidSignatureError:
        raise _unauthorized("the token signature is invalid") from None
    except jwt.ExpiredSignatureError:
        raise _unauthorized("the token has expired") from None
    except jwt.ImmatureSignatureError:
        raise _unauthorized("the token is not valid yet") from None
    except jwt.InvalidIssuerError:
        raise _unauthorized("the token does not have a valid issuer") from None
    except jwt.MissingRequiredClaimError as error:
        raise _unauthorized(f"the token has no {error.claim} claim") from None
    except jwt.PyJWTError:
        raise _unauthorized("the token is not a valid JWT") from None
    # `client_id` counts only when there is no `aud` (Cognito access tokens carry client_id).
    audience = claims["aud"] if "aud" in claims else claims.get("client_id")
    presented = audience if isinstance(audience, list) else [audience]
    if not any(item in authorizer.audiences for item in presented):
        raise _unauthorized("the token does not have a valid audience")
    return claims


def token_scopes(claims: Mapping[str, Any]) -> list[str]:
    value = claims.get("scope", claims.get("scp", []))
    return value.split() if isinstance(value, str) else [str(item) for item in value]


def claim_strings(claims: Mapping[str, Any]) -> dict[str, str]:
    """Claims as API Gateway hands them to the integration: every value a string, arrays as "[a b]"."""

    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list):
            return "[" + " ".join(text(item) for item in value) + "]"
        if isinstance(value, dict):
            return json.dumps(value, separators=(",", ":"))
        return str(value)

    return {name: text(value) for name, value in claims.items()}


# --------------------------------------------------------------------------------------------------
# Payload format 2.0: request -> event, result -> response
# --------------------------------------------------------------------------------------------------


def _is_text(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";")[0].strip().lower()
    return media_type.startswith("text/") or media_type in _TEXT_CONTENT_TYPES


def build_event(
    request: Request,
    route: Route,
    path_parameters: Mapping[str, str],
    *,
    api_id: str,
    account_id: str,
    authorizer_context: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The API Gateway HTTP API (payload format 2.0) event for `request` on `route`."""
    raw_uri = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.full_path
    raw_path, _, raw_query = str(raw_uri).partition("?")
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers.items():
        lowered = name.lower()
        if lowered == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        headers[lowered] = f"{headers[lowered]},{value}" if lowered in headers else value
    source_ip = request.remote_addr or LOOPBACK
    headers.setdefault("x-forwarded-for", source_ip)
    headers.setdefault("x-forwarded-proto", request.scheme)
    headers.setdefault("x-forwarded-port", str(request.server[1]) if request.server else "")
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    now = datetime.now(UTC)
    host = headers.get("host", "")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": account_id,
            "apiId": api_id,
            "domainName": host,
            "domainPrefix": host.split(".")[0].split(":")[0],
            "http": {
                "method": request.method,
                "path": raw_path,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "sourceIp": source_ip,
                "userAgent": request.headers.get("User-Agent", ""),
            },
            "requestId": _request_id(),
            "routeKey": route.key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if authorizer_context is not None:
        event["requestContext"]["authorizer"] = dict(authorizer_context)
    body = request.get_data()
    if body:
        if _is_text(request.content_type):
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
        else:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    return event


def _request_id() -> str:
    # Shaped like API Gateway's: 14 characters and a trailing "=".
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(14)) + "="


def response_from_result(result: Any) -> Response:
    """The HTTP response API Gateway makes of a function's payload 2.0 result."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # No statusCode: the whole result is the body of a 200 JSON response.
        text = result if isinstance(result, str) else json.dumps(result)
        return Response(text, status=200, content_type="application/json")
    status = result["statusCode"]
    headers = result.get("headers") or {}
    cookies = result.get("cookies") or []
    body = result.get("body")
    if (
        not isinstance(status, int)
        or not 100 <= status <= 599
        or not isinstance(headers, dict)
        or not isinstance(cookies, list)
        or not (body is None or isinstance(body, str))
    ):
        raise ValueError("malformed Lambda proxy response")
    if result.get("isBase64Encoded") and body is not None:
        try:
            payload = base64.b64decode(body, validate=True)
        except binascii.Error:
            raise ValueError("isBase64Encoded body is not base64") from None
    else:
        payload = (body or "").encode("utf-8")
    response = Response(payload, status=status)
    del response.headers["Content-Type"]  # only what the function set
    for name, value in headers.items():
        response.headers[str(name)] = str(value)
    for cookie in cookies:
        response.headers.add("set-cookie", str(cookie))
    return response


def _gateway_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    response = Response(json.dumps({"message": message}), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


# Query parameters whose values are credentials: OAuth's code and state reach the callback in the URL.
_SECRET_QUERY_PARAMETERS = frozenset({"code", "state"})
_QUERY_VALUE = re.compile(r"(?P<sep>[?&])(?P<name>[^=&\s]+)=(?P<value>[^&\s\"]*)")


def redacted(request_line: str) -> str:
    """The access log's request line with the values of credential-bearing query parameters hidden."""

    def hide(match: re.Match[str]) -> str:
        if unquote(match["name"]).lower() not in _SECRET_QUERY_PARAMETERS:
            return match[0]
        return f"{match['sep']}{match['name']}=[redacted]"

    return _QUERY_VALUE.sub(hide, request_line)


class _AccessLogHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), redacted(message % args))


@dataclass
class LocalGateway:
    """The HTTP API on 127.0.0.1:`port` (0 picks a free port); `start()`/`stop()` or a with-block."""

    runtime: FunctionRuntime
    keys: KeySet
    account_id: str
    port: int = 0
    api: HttpApiDefinition | None = None  # set before start(); bind() only needs the port
    api_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    _server: BaseWSGIServer | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def bind(self) -> None:
        """Open the listening socket (so the URL is known before the stack's functions are resolved)."""
        if self._server is None:
            self._server = make_server(
                LOOPBACK, self.port, self._wsgi, threaded=True, request_handler=_AccessLogHandler
            )

    def start(self) -> "LocalGateway":
        if self.api is None:
            raise RuntimeError("the gateway has no API to serve")
        self.bind()
        assert self._server is not None
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-gateway", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(timeout=10)
            self._server.server_close()
        self._server, self._thread = None, None

    def __enter__(self) -> "LocalGateway":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the gateway is not bound yet")
        return f"http://{LOOPBACK}:{self._server.server_port}"

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        response = self.handle(Request(environ))
        response.headers["apigw-requestid"] = _request_id()
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        raw_uri = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.path
        path = str(raw_uri).partition("?")[0]
        if self.api is None:
            return _gateway_response(503, "Service Unavailable")
        cors = self.api.cors
        selected = select_route(self.api.routes, request.method, path)
        if cors is None:
            return self._route(request, selected)
        if selected is None and cors.is_preflight(request):
            return cors.preflight(request)
        return cors.apply(request, self._route(request, selected))

    def _route(self, request: Request, selected: tuple[Route, dict[str, str]] | None) -> Response:
        if selected is None:
            return _gateway_response(404, "Not Found")
        route, path_parameters = selected
        try:
            authorizer_context = self._authorize(route, request)
        except Refusal as refusal:
            return _gateway_response(refusal.status, refusal.message, refusal.headers)
        event = build_event(
            request,
            route,
            path_parameters,
            api_id=self.api_id,
            account_id=self.account_id,
            authorizer_context=authorizer_context,
        )
        try:
            result = self.runtime.invoke(route.function, event)
            return response_from_result(result)
        except Exception:
            logger.exception("%s failed on %s", route.function, route.key)
            return _gateway_response(500, "Internal Server Error")

    def _authorize(self, route: Route, request: Request) -> dict[str, Any] | None:
        if route.authorizer is None:
            return None
        assert self.api is not None
        authorizer = self.api.authorizers[route.authorizer]
        value = _identity(request, authorizer.identity_source)
        if not value:
            raise _unauthorized(None)
        token = value.removeprefix("Bearer ")
        claims = verify_jwt(token, authorizer, self.keys())
        scopes = token_scopes(claims)
        if route.scopes and not set(route.scopes) & set(scopes):
            raise Refusal(
                403,
                "Forbidden",
                {
                    "www-authenticate": f'Bearer scope="{" ".join(route.scopes)}" error="insufficient_scope" '
                    'error_description="the token does not have a scope the route requires"'
                },
            )
        return {"jwt": {"claims": claim_strings(claims), "scopes": scopes or None}}
