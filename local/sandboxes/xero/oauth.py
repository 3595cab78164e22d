"""Xero Identity: registered apps, consent grants, tokens and tenant connections.

What Xero documents and this follows:
- access tokens are RS256 JWTs living 30 minutes, carrying `authentication_event_id` and `xero_userid`;
- a refresh token is issued only with `offline_access`, rotates on every refresh, and dies after
  60 days unused; after a rotation the previous one still works for a 30-minute grace "in case the
  response is lost". Xero does not say what that retry returns: here it returns the SAME rotated
  refresh token (no fork in the chain) with a freshly minted access token;
- a failed code or refresh exchange answers 400 `{"error":"invalid_grant"}`;
- a connection links a user's app authorisation to one organisation; `/connections` lists them
  (filter `authEventId`), revoking a refresh token removes that grant: its connections and tokens.

The sandbox has one Xero user, who may connect any organisation it holds.
"""

from __future__ import annotations

import base64
import secrets
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from local.sandboxes.core import AuthorizationCodes, Clock, random_token

ISSUER = "https://identity.xero.com"
AUDIENCE = "https://identity.xero.com/resources"
ACCESS_TOKEN_SECONDS = 30 * 60
REFRESH_TOKEN_IDLE_SECONDS = 60 * 24 * 3600
REFRESH_GRACE_SECONDS = 30 * 60
# IdentityServer's default code lifetime; Xero does not publish its own.
CODE_SECONDS = 5 * 60

KNOWN_SCOPES = frozenset(
    {
        "openid",
        "profile",
        "email",
        "offline_access",
        "accounting.transactions",
        "accounting.transactions.read",
        "accounting.invoices",
        "accounting.invoices.read",
        "accounting.payments",
        "accounting.payments.read",
        "accounting.banktransactions",
        "accounting.banktransactions.read",
        "accounting.manualjournals",
        "accounting.manualjournals.read",
        "accounting.contacts",
        "accounting.contacts.read",
        "accounting.settings",
        "accounting.settings.read",
        "accounting.attachments",
        "accounting.attachments.read",
        "accounting.reports.read",
        "accounting.journals.read",
    }
)


class TokenError(Exception):
    """An OAuth error from the token or revocation endpoint: 400 `{"error": <code>}`."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class AccessDenied(Exception):
    """A bearer token the API refuses (401); `detail` is what Xero puts in the body."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass
class App:
    client_id: str
    client_secret: str | None  # None: a PKCE app without a secret
    redirect_uris: list[str]
    name: str


@dataclass
class Grant:
    """One consent ("authentication event") by the user for an app."""

    auth_event_id: str
    client_id: str
    user_id: str
    scopes: tuple[str, ...]
    auth_time: int
    revoked: bool = False
    live_access_tokens: set[str] = field(default_factory=set)  # jti of tokens issued
    expired_access_tokens: dict[str, float] = field(default_factory=dict)  # jti -> when expired early


@dataclass
class Connection:
    id: str
    tenant_id: str
    tenant_name: str
    auth_event_id: str
    client_id: str
    user_id: str
    created_at: datetime
    updated_at: datetime


@dataclass
class RefreshToken:
    value: str
    auth_event_id: str
    issued_at: float
    rotated_at: float | None = None
    successor: str | None = None
    expired: bool = False


@dataclass(frozen=True)
class Principal:
    """Who a valid access token speaks for."""

    client_id: str
    user_id: str
    auth_event_id: str
    scopes: frozenset[str]


@dataclass
class _User:
    user_id: str
    email: str
    given_name: str
    family_name: str
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)


class Identity:
    """Thread-safe identity state of one Xero sandbox."""

    def __init__(self, clock: Clock, *, user_id: str) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._user = _User(user_id=user_id, email="ap.clerk@example.com", given_name="Sandbox", family_name="User")
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = secrets.token_hex(16)
        self._apps: dict[str, App] = {}
        self._grants: dict[str, Grant] = {}
        self._connections: dict[str, Connection] = {}
        self._refresh_tokens: dict[str, RefreshToken] = {}
        self.codes = AuthorizationCodes(clock, CODE_SECONDS)

    # ---- apps ---------------------------------------------------------------------------------

    def register_app(self, client_id: str, client_secret: str | None, redirect_uris: list[str], name: str) -> None:
        with self._lock:
            self._apps[client_id] = App(client_id, client_secret, list(redirect_uris), name)

    def app(self, client_id: str) -> App | None:
        with self._lock:
            return self._apps.get(client_id)

    def authenticate_client(self, authorization: str | None, form: Mapping[str, str]) -> App:
        """The app calling the token endpoint: HTTP Basic, or `client_id` alone for a PKCE app."""
        client_id, secret = _basic_credentials(authorization)
        if client_id is None:
            client_id = form.get("client_id")
        app = self.app(client_id or "")
        if app is None:
            raise TokenError("invalid_client")
        if app.client_secret is None:
            return app
        if secret is None or not secrets.compare_digest(secret.encode(), app.client_secret.encode()):
            raise TokenError("invalid_client")
        return app

    # ---- consent and codes ----------------------------------------------------------------------

    def approve(
        self,
        app: App,
        *,
        tenants: Iterable[tuple[str, str]],
        scopes: tuple[str, ...],
        redirect_uri: str,
        code_challenge: str | None,
        code_challenge_method: str | None,
    ) -> str:
        """The user approved: record the grant, connect the chosen organisations, issue a code."""
        now = self._clock.now()
        auth_event_id = str(uuid.uuid4())
        with self._lock:
            self._grants[auth_event_id] = Grant(
                auth_event_id, app.client_id, self._user.user_id, scopes, int(now.timestamp())
            )
            chosen = list(tenants)
            for tenant_id, tenant_name in chosen:
                self._connect(app.client_id, tenant_id, tenant_name, auth_event_id, now)
        return self.codes.issue(
            client_id=app.client_id,
            redirect_uri=redirect_uri,
            tenants=[tenant_id for tenant_id, _ in chosen],
            scopes=scopes,
            subject=auth_event_id,
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
        )

    def _connect(self, client_id: str, tenant_id: str, tenant_name: str, auth_event_id: str, now: datetime) -> None:
        for connection in self._connections.values():
            if (connection.client_id, connection.tenant_id, connection.user_id) == (
                client_id,
                tenant_id,
                self._user.user_id,
            ):
                # Reconnecting an organisation keeps the connection and moves it to the new event.
                connection.auth_event_id = auth_event_id
                connection.updated_at = now
                return
        connection_id = str(uuid.uuid4())
        self._connections[connection_id] = Connection(
            connection_id, tenant_id, tenant_name, auth_event_id, client_id, self._user.user_id, now, now
        )

    # ---- token endpoint -------------------------------------------------------------------------

    def exchange_code(self, app: App, code: str, redirect_uri: str, code_verifier: str | None) -> dict[str, Any]:
        issued = self.codes.redeem(code, app.client_id, redirect_uri, code_verifier)
        if issued is None:
            raise TokenError("invalid_grant")
        with self._lock:
            grant = self._grants.get(issued.subject)
            if grant is None or grant.revoked:
                raise TokenError("invalid_grant")
            refresh = self._new_refresh_token(grant) if "offline_access" in grant.scopes else None
            return self._token_response(grant, refresh)

    def refresh(self, app: App, value: str) -> dict[str, Any]:
        now = self._clock.timestamp()
        with self._lock:
            record = self._refresh_tokens.get(value)
            grant = self._grants.get(record.auth_event_id) if record else None
            if record is None or grant is None or grant.revoked or grant.client_id != app.client_id:
                raise TokenError("invalid_grant")
            if record.expired or now >= record.issued_at + REFRESH_TOKEN_IDLE_SECONDS:
                raise TokenError("invalid_grant")
            if record.rotated_at is None:
                successor = self._new_refresh_token(grant)
                record.rotated_at = now
                record.successor = successor
                return self._token_response(grant, successor)
            if now < record.rotated_at + REFRESH_GRACE_SECONDS and record.successor is not None:
                return self._token_response(grant, record.successor)
            raise TokenError("invalid_grant")

    def revoke(self, app: App, value: str) -> None:
        """Revoke the grant a refresh token belongs to: its connections go, its tokens die."""
        with self._lock:
            record = self._refresh_tokens.get(value)
            grant = self._grants.get(record.auth_event_id) if record else None
            if grant is None or grant.client_id != app.client_id:
                return  # RFC 7009: an unknown token is not an error
            self._revoke_grant(grant)

    def _revoke_grant(self, grant: Grant) -> None:
        grant.revoked = True
        for connection_id in [c.id for c in self._connections.values() if c.auth_event_id == grant.auth_event_id]:
            del self._connections[connection_id]

    def _new_refresh_token(self, grant: Grant) -> str:
        value = random_token(32)
        self._refresh_tokens[value] = RefreshToken(value, grant.auth_event_id, self._clock.timestamp())
        return value

    def _token_response(self, grant: Grant, refresh_token: str | None) -> dict[str, Any]:
        now = int(self._clock.timestamp())
        jti = secrets.token_hex(16)
        grant.live_access_tokens.add(jti)
        claims = {
            "nbf": now,
            "exp": now + ACCESS_TOKEN_SECONDS,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "client_id": grant.client_id,
            "sub": uuid.UUID(grant.user_id).hex,
            "auth_time": grant.auth_time,
            "xero_userid": grant.user_id,
            "global_session_id": self._user.session_id,
            "jti": jti,
            "authentication_event_id": grant.auth_event_id,
            "scope": list(grant.scopes),
            "amr": ["pwd"],
        }
        response: dict[str, Any] = {}
        if "openid" in grant.scopes:
            response["id_token"] = self._id_token(grant, now)
        response["access_token"] = self._sign(claims)
        response["expires_in"] = ACCESS_TOKEN_SECONDS
        response["token_type"] = "Bearer"
        if refresh_token is not None:
            response["refresh_token"] = refresh_token
        response["scope"] = " ".join(grant.scopes)
        return response

    def _id_token(self, grant: Grant, now: int) -> str:
        user = self._user
        claims: dict[str, Any] = {
            "nbf": now,
            "exp": now + 300,
            "iss": ISSUER,
            "aud": grant.client_id,
            "iat": now,
            "sub": uuid.UUID(user.user_id).hex,
            "auth_time": grant.auth_time,
            "xero_userid": user.user_id,
            "global_session_id": user.session_id,
            "sid": user.session_id,
            "preferred_username": user.email,
        }
        if "email" in grant.scopes:
            claims["email"] = user.email
        if "profile" in grant.scopes:
            claims.update(
                given_name=user.given_name,
                family_name=user.family_name,
                name=f"{user.given_name} {user.family_name}",
            )
        return self._sign(claims)

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid, "typ": "JWT"})

    def jwks(self) -> dict[str, Any]:
        key = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        key.update(kid=self._kid, use="sig", alg="RS256")
        return {"keys": [key]}

    # ---- resource side --------------------------------------------------------------------------

    def verify_access_token(self, authorization: str | None) -> Principal:
        """The principal of an `Authorization: Bearer <jwt>` header, or AccessDenied."""
        if not authorization or not authorization.startswith("Bearer "):
            raise AccessDenied("AuthenticationUnsuccessful")
        try:
            claims = jwt.decode(
                authorization[len("Bearer ") :].strip(),
                self._key.public_key(),
                algorithms=["RS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                # Expiry is judged on the sandbox clock below, not on wall time.
                options={"verify_exp": False, "verify_nbf": False, "require": ["exp", "nbf"]},
            )
        except jwt.InvalidTokenError as exc:
            raise AccessDenied("AuthenticationUnsuccessful") from exc
        with self._lock:
            grant = self._grants.get(str(claims.get("authentication_event_id")))
            if grant is None or grant.revoked:
                raise AccessDenied("AuthenticationUnsuccessful")
            expired_at = grant.expired_access_tokens.get(str(claims.get("jti")))
        expires = float(claims["exp"]) if expired_at is None else expired_at
        if self._clock.timestamp() >= expires:
            stamp = datetime.fromtimestamp(expires, tz=UTC).strftime("%m/%d/%Y %H:%M:%S")
            raise AccessDenied(f"TokenExpired: token expired at {stamp}")
        return Principal(grant.client_id, grant.user_id, grant.auth_event_id, frozenset(grant.scopes))

    def connections(self, principal: Principal, auth_event_id: str | None = None) -> list[Connection]:
        with self._lock:
            found = [
                c
                for c in self._connections.values()
                if c.client_id == principal.client_id and c.user_id == principal.user_id
            ]
        if auth_event_id is not None:
            found = [c for c in found if c.auth_event_id.lower() == auth_event_id.lower()]
        return sorted(found, key=lambda c: c.created_at)

    def is_connected(self, principal: Principal, tenant_id: str) -> bool:
        return any(c.tenant_id == tenant_id for c in self.connections(principal))

    def delete_connection(self, principal: Principal, connection_id: str) -> bool:
        with self._lock:
            connection = self._connections.get(connection_id.lower())
            if connection is None or (connection.client_id, connection.user_id) != (
                principal.client_id,
                principal.user_id,
            ):
                return False
            del self._connections[connection.id]
            return True

    def connected_apps(self, tenant_id: str) -> set[str]:
        """Client ids of the apps connected to an organisation."""
        with self._lock:
            return {c.client_id for c in self._connections.values() if c.tenant_id == tenant_id}

    # ---- test controls --------------------------------------------------------------------------

    def revoke_grants(self, tenant_id: str | None = None) -> int:
        """Revoke every grant connected to `tenant_id` (all grants when None); returns how many."""
        with self._lock:
            grants = self._grants_for(tenant_id)
            for grant in grants:
                self._revoke_grant(grant)
            return len(grants)

    def expire_tokens(self, tenant_id: str | None = None, *, refresh_tokens: bool = False) -> int:
        """Make the access tokens (and with `refresh_tokens`, the refresh tokens) issued so far expire."""
        now = self._clock.timestamp()
        with self._lock:
            grants = self._grants_for(tenant_id)
            for grant in grants:
                grant.expired_access_tokens.update(dict.fromkeys(grant.live_access_tokens, now))
                grant.live_access_tokens.clear()
                if refresh_tokens:
                    for record in self._refresh_tokens.values():
                        if record.auth_event_id == grant.auth_event_id:
                            record.expired = True
            return len(grants)

    def _grants_for(self, tenant_id: str | None) -> list[Grant]:
        live = [g for g in self._grants.values() if not g.revoked]
        if tenant_id is None:
            return live
        events = {c.auth_event_id for c in self._connections.values() if c.tenant_id == tenant_id}
        return [g for g in live if g.auth_event_id in events]

    def all_connections(self) -> list[Connection]:
        with self._lock:
            return list(self._connections.values())


def _basic_credentials(authorization: str | None) -> tuple[str | None, str | None]:
    if not authorization or not authorization.startswith("Basic "):
        return None, None
    try:
        decoded = base64.b64decode(authorization[len("Basic ") :].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None, None
    client_id, separator, secret = decoded.partition(":")
    return (client_id, secret) if separator else (None, None)
