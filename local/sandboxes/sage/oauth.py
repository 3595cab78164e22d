"""Sage Accounting OAuth 2.0 state: registered apps, users, grants, access and refresh tokens.

Facts (docs/providers.md#sage-oauth): the grant belongs to a USER and covers every business the user can
reach; access tokens live 300 s and cannot be revoked; refresh tokens live 31 days and rotate on
every use; scopes are `readonly` or `full_access`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from local.sandboxes.core import Clock, random_token

ACCESS_TOKEN_SECONDS = 300
REFRESH_TOKEN_SECONDS = 2_678_400  # 31 days
AUTH_CODE_SECONDS = 60
SCOPES = ("readonly", "full_access")
# Sage asks integrators to reserve up to 2048 bytes per token (S-AUTH); long tokens exercise that.
ACCESS_TOKEN_BYTES = 768
REFRESH_TOKEN_BYTES = 384


@dataclass
class App:
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    name: str


@dataclass
class User:
    id: str
    name: str
    email: str
    businesses: list[str] = field(default_factory=list)  # the first one is the lead business


@dataclass
class Grant:
    """What one user allowed one app; every token pair descends from one grant."""

    id: str
    user_id: str
    client_id: str
    scope: str
    revoked: bool = False  # no more refresh (POST /revoke)
    disconnected: bool = False  # the user removed the app: access tokens stop working too


@dataclass
class AccessToken:
    value: str
    grant: Grant
    expires_at: float


@dataclass
class RefreshToken:
    value: str
    grant: Grant
    expires_at: float
    used: bool = False


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    scope: str
    user_id: str


class TokenStore:
    """Thread-safe issue, rotation, revocation and lookup of Sage tokens on the sandbox clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._grants: list[Grant] = []
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, RefreshToken] = {}

    def issue(self, *, user_id: str, client_id: str, scope: str) -> TokenPair:
        """A new grant and its first token pair (after an authorization code was redeemed)."""
        with self._lock:
            grant = Grant(id=random_token(16), user_id=user_id, client_id=client_id, scope=scope)
            self._grants.append(grant)
            return self._new_pair(grant)

    def rotate(self, refresh_token: str, client_id: str) -> TokenPair | None:
        """A new pair for a live refresh token; the old refresh token dies at once (not stated by Sage: no grace)."""
        now = self._clock.timestamp()
        with self._lock:
            current = self._refresh.get(refresh_token)
            if current is None or current.used or current.grant.revoked:
                return None
            if current.grant.client_id != client_id or now >= current.expires_at:
                return None
            current.used = True
            return self._new_pair(current.grant)

    def revoke_refresh_token(self, refresh_token: str, client_id: str) -> None:
        """POST /revoke: ends the grant behind a refresh token. Access tokens cannot be revoked (S-AUTH)."""
        with self._lock:
            current = self._refresh.get(refresh_token)
            if current is not None and current.grant.client_id == client_id:
                current.grant.revoked = True

    def revoke_grants(self, *, user_id: str | None = None, client_id: str | None = None) -> int:
        """The user disconnected the app in Sage: refresh AND access tokens stop working."""
        with self._lock:
            count = 0
            for grant in self._grants:
                if grant.revoked:
                    continue
                if user_id is not None and grant.user_id != user_id:
                    continue
                if client_id is not None and grant.client_id != client_id:
                    continue
                grant.revoked = True
                grant.disconnected = True
                count += 1
            return count

    def expire(self, *, user_id: str | None = None, include_refresh: bool = False) -> int:
        """Make access tokens (and optionally refresh tokens) expire now; returns how many."""
        now = self._clock.timestamp()
        with self._lock:
            tokens: list[AccessToken | RefreshToken] = list(self._access.values())
            if include_refresh:
                tokens.extend(self._refresh.values())
            count = 0
            for token in tokens:
                if user_id is not None and token.grant.user_id != user_id:
                    continue
                if token.expires_at > now:
                    token.expires_at = now
                    count += 1
            return count

    def authenticate(self, access_token: str) -> Grant | None:
        """The grant a live access token belongs to, or None when unknown or expired."""
        now = self._clock.timestamp()
        with self._lock:
            token = self._access.get(access_token)
            if token is None or token.grant.disconnected or now >= token.expires_at:
                return None
            return token.grant

    def _new_pair(self, grant: Grant) -> TokenPair:
        now = self._clock.timestamp()
        access = AccessToken(random_token(ACCESS_TOKEN_BYTES), grant, now + ACCESS_TOKEN_SECONDS)
        refresh = RefreshToken(random_token(REFRESH_TOKEN_BYTES), grant, now + REFRESH_TOKEN_SECONDS)
        self._access[access.value] = access
        self._refresh[refresh.value] = refresh
        return TokenPair(access.value, refresh.value, grant.scope, grant.user_id)
