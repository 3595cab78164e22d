"""Intuit OAuth 2.0 grants: access tokens, rolling and rotating refresh tokens, revocation.

Facts (docs/providers.md#quickbooks-oauth): access token 3600 s; refresh token 100-day rolling expiry, extended on
each use; its VALUE changes about once a day — a refresh within 24 h of the last rotation returns the
same refresh token, a later one returns a new value and the previous one dies at once (sources disagree: no
grace); a 5-year hard cap, reported as `x_refresh_token_hard_expires_in` only when the client sends
`x-include-refresh-token-hard-expires-in: true`. Revoking either token of a grant revokes the grant.
"""

from __future__ import annotations

import base64
import secrets
import string
import threading
from dataclasses import dataclass, field

from local.sandboxes.core import Clock

ACCESS_TOKEN_SECONDS = 3600
# Intuit's token responses say 8726400 (101 days) for the "100-day" refresh token.
REFRESH_TOKEN_SECONDS = 8_726_400
ROTATION_SECONDS = 24 * 3600
HARD_CAP_SECONDS = 5 * 365 * 24 * 3600
# Choice: Intuit does not state the code lifetime in the sources read; 5 minutes is the strict reading.
CODE_SECONDS = 300
ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"
KNOWN_SCOPES = frozenset(
    {
        ACCOUNTING_SCOPE,
        "com.intuit.quickbooks.payment",
        "openid",
        "profile",
        "email",
        "phone",
        "address",
    }
)
# The protected header Intuit's access tokens start with (a JWE with alg "dir", enc A128CBC-HS256).
_JWE_HEADER = "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0"


@dataclass(frozen=True)
class App:
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]


@dataclass
class Grant:
    """What one consent gave one app for one company, and its current refresh token."""

    client_id: str
    realm_id: str
    scopes: tuple[str, ...]
    refresh_token: str
    rotated_at: float
    refresh_expires_at: float
    hard_expires_at: float
    revoked: bool = False
    access_tokens: list[str] = field(default_factory=list)


@dataclass
class AccessToken:
    token: str
    grant: Grant
    expires_at: float


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str
    refresh_expires_in: int
    hard_expires_in: int


def _b64(nbytes: int) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).rstrip(b"=").decode("ascii")


def new_access_token() -> str:
    # Looks like Intuit's: a compact JWE with an empty key part ("..").
    return f"{_JWE_HEADER}..{_b64(16)}.{_b64(640)}.{_b64(16)}"


def new_refresh_token(expires_at: float) -> str:
    # Looks like Intuit's "RT1-39-H3-1785429816rcysb9dns1ofreknypnm": the digits are the expiry time.
    tail = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(20))
    return f"RT1-{secrets.randbelow(90) + 10}-H0-{int(expires_at)}{tail}"


class TokenStore:
    """Thread-safe grants and tokens of one sandbox, timed on the sandbox clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._grants_by_refresh: dict[str, Grant] = {}
        self._access: dict[str, AccessToken] = {}

    def _token_set(self, grant: Grant, now: float) -> TokenSet:
        access = AccessToken(new_access_token(), grant, now + ACCESS_TOKEN_SECONDS)
        self._access[access.token] = access
        grant.access_tokens.append(access.token)
        return TokenSet(
            access_token=access.token,
            refresh_token=grant.refresh_token,
            refresh_expires_in=int(grant.refresh_expires_at - now),
            hard_expires_in=int(grant.hard_expires_at - now),
        )

    def issue(self, client_id: str, realm_id: str, scopes: tuple[str, ...]) -> TokenSet:
        """A new grant (after the user approved), with its first access and refresh tokens."""
        now = self._clock.timestamp()
        hard = now + HARD_CAP_SECONDS
        expires = min(now + REFRESH_TOKEN_SECONDS, hard)
        grant = Grant(
            client_id=client_id,
            realm_id=realm_id,
            scopes=scopes,
            refresh_token=new_refresh_token(expires),
            rotated_at=now,
            refresh_expires_at=expires,
            hard_expires_at=hard,
        )
        with self._lock:
            self._grants_by_refresh[grant.refresh_token] = grant
            return self._token_set(grant, now)

    def refresh(self, client_id: str, refresh_token: str) -> TokenSet | None:
        """New tokens for a live refresh token of this client; None means invalid_grant."""
        now = self._clock.timestamp()
        with self._lock:
            grant = self._grants_by_refresh.get(refresh_token)
            if grant is None or grant.client_id != client_id or grant.revoked:
                return None
            if now >= grant.refresh_expires_at:
                return None
            if now - grant.rotated_at >= ROTATION_SECONDS:
                # The value rotates about daily; the previous value dies at once (no grace).
                del self._grants_by_refresh[refresh_token]
                grant.rotated_at = now
                grant.refresh_expires_at = min(now + REFRESH_TOKEN_SECONDS, grant.hard_expires_at)
                grant.refresh_token = new_refresh_token(grant.refresh_expires_at)
                self._grants_by_refresh[grant.refresh_token] = grant
            else:
                grant.refresh_expires_at = min(now + REFRESH_TOKEN_SECONDS, grant.hard_expires_at)
            return self._token_set(grant, now)

    def access(self, token: str) -> AccessToken | None:
        """The access token record, expired or not; None when unknown or its grant was revoked."""
        with self._lock:
            access = self._access.get(token)
            if access is None or access.grant.revoked:
                return None
            return access

    def is_expired(self, access: AccessToken) -> bool:
        return self._clock.timestamp() >= access.expires_at

    def revoke(self, client_id: str, token: str) -> bool:
        """Revoke the grant behind a refresh or access token of this client; False if none."""
        with self._lock:
            grant = self._grants_by_refresh.get(token)
            if grant is None and token in self._access:
                grant = self._access[token].grant
            if grant is None or grant.client_id != client_id:
                return False
            self._revoke(grant)
            return True

    def _revoke(self, grant: Grant) -> None:
        grant.revoked = True
        self._grants_by_refresh.pop(grant.refresh_token, None)

    def revoke_realm(self, realm_id: str, client_id: str | None = None) -> int:
        """Revoke every grant to a company (the user disconnected the app); returns how many."""
        with self._lock:
            grants = [
                g
                for g in self._grants_by_refresh.values()
                if g.realm_id == realm_id and (client_id is None or g.client_id == client_id)
            ]
            for grant in grants:
                self._revoke(grant)
            return len(grants)

    def expire_access_tokens(self, realm_id: str | None = None) -> int:
        now = self._clock.timestamp()
        with self._lock:
            expired = 0
            for access in self._access.values():
                if (realm_id is None or access.grant.realm_id == realm_id) and access.expires_at > now:
                    access.expires_at = now
                    expired += 1
            return expired

    def expire_refresh_tokens(self, realm_id: str | None = None) -> int:
        now = self._clock.timestamp()
        with self._lock:
            expired = 0
            for grant in self._grants_by_refresh.values():
                if realm_id is None or grant.realm_id == realm_id:
                    grant.refresh_expires_at = now
                    expired += 1
            return expired

    def grants(self) -> list[Grant]:
        with self._lock:
            return list(self._grants_by_refresh.values())
