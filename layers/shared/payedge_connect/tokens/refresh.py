"""A connection's access token, refreshed before it expires - once, however many Lambdas ask.

What happens when:
- the access token is about to expire: whoever asks first takes the connection's `token-refresh`
  lease (DynamoDB, with a fencing token), re-reads the secret (someone may just have refreshed),
  refreshes at the provider, stores the rotated tokens, and only then uses the new access token.
  Everybody else waits for the lease and reads what was stored: one refresh at the provider.
- the refresh response is lost (timeout, dropped connection): the stored refresh token is still the
  one we sent, so we send it again. Xero honours the previous refresh token for 30 minutes for exactly
  this case; QuickBooks keeps refresh tokens valid for about a day after rotation. Only an answer of
  invalid_grant ends the connection.
- the provider answers invalid_grant (refresh token revoked or expired): the connection moves to
  reauthorization_required once, the secret is marked so no Lambda asks the provider again (no retry
  storm), and callers get `ReauthorizationRequired`. Reconnecting stores fresh tokens.
"""

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from payedge_connect.errors import PayEdgeError
from payedge_connect.models import now_utc
from payedge_connect.observability import logger
from payedge_connect.storage import RecordsStore
from payedge_connect.tokens.errors import GrantRevoked, TokenEndpointError
from payedge_connect.tokens.oauth import OAuthClient
from payedge_connect.tokens.vault import TokenSet, TokenVault

# Refresh this long before expiry, so a token never expires in the middle of a page of calls.
# Sage access tokens live 5 minutes, so the margin stays well under that.
REFRESH_MARGIN = timedelta(seconds=60)
_LEASE_NAME = "token-refresh"
_LEASE_SECONDS = 30.0
_WAIT_FOR_OTHER_REFRESH_SECONDS = 25.0
_POLL_SECONDS = 0.2
_REFRESH_ATTEMPTS = 3


class ReauthorizationRequired(PayEdgeError):
    """The user must connect again: the grant was revoked or expired. An API caller gets a 409 saying so."""

    status = 409
    title = "Reauthorization required"


class TokenRefreshUnavailable(PayEdgeError):
    """The refresh could not be completed now (provider down, another refresh stuck); try later (503)."""

    status = 503
    title = "Accounting software unavailable"


class ConnectionTokens:
    def __init__(
        self,
        connection_id: str,
        *,
        oauth: OAuthClient,
        vault: TokenVault,
        store: RecordsStore,
        clock: Callable[[], datetime] = now_utc,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.connection_id = connection_id
        self._oauth = oauth
        self._vault = vault
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._holder = uuid.uuid4().hex
        self._current: TokenSet | None = None

    def access_token(self) -> str:
        """A usable access token, refreshed first if it expires within the margin."""
        # Read fresh, not from the short secret cache: a cached token may be one another Lambda has since
        # replaced, and when the provider refuses it, force_refresh hands back the replacement untried -
        # after a revocation that replacement is refused too, and the caller got a 401 error instead of
        # ReauthorizationRequired. One read per ConnectionTokens; the token is kept in memory after it.
        tokens = self._current or self._load(fresh=True)
        if self._needs_refresh(tokens):
            tokens = self._refresh(seen=tokens)
        self._current = tokens
        return tokens.access_token.get_secret_value()

    def force_refresh(self) -> str:
        """Refresh now (the provider refused the access token we hold)."""
        seen = self._current or self._load(fresh=True)
        self._current = self._refresh(seen=seen, even_if_fresh=True)
        return self._current.access_token.get_secret_value()

    # ------------------------------------------------------------------ internals

    def _load(self, *, fresh: bool) -> TokenSet:
        tokens = self._vault.load(self.connection_id, fresh=fresh)
        if tokens is None or tokens.grant_revoked:
            raise ReauthorizationRequired(f"connection {self.connection_id} must be authorised again: reconnect it")
        return tokens

    def _needs_refresh(self, tokens: TokenSet) -> bool:
        return tokens.access_token_expires_at - self._clock() <= REFRESH_MARGIN

    def _refresh(self, *, seen: TokenSet, even_if_fresh: bool = False) -> TokenSet:
        lease = self._store.leases.acquire_lease(
            self.connection_id, _LEASE_NAME, self._holder, now=self._clock(), seconds=_LEASE_SECONDS
        )
        waited = 0.0
        while lease is None:
            # Someone else is refreshing: use their result as soon as it is stored.
            self._sleep(_POLL_SECONDS)
            waited += _POLL_SECONDS
            stored = self._load(fresh=True)
            if stored.access_token != seen.access_token and not self._needs_refresh(stored):
                return stored
            if waited >= _WAIT_FOR_OTHER_REFRESH_SECONDS:
                raise TokenRefreshUnavailable("another refresh of this connection did not finish")
            lease = self._store.leases.acquire_lease(
                self.connection_id, _LEASE_NAME, self._holder, now=self._clock(), seconds=_LEASE_SECONDS
            )
        try:
            stored = self._load(fresh=True)
            already_refreshed = stored.access_token != seen.access_token
            if already_refreshed and not self._needs_refresh(stored):
                return stored
            if not even_if_fresh and not self._needs_refresh(stored):
                return stored
            refreshed = self._refresh_at_provider(stored)
            if not self._store.leases.holds_lease(lease, now=self._clock()):
                # Our lease ran out mid-refresh and another holder may have stored newer tokens.
                raise TokenRefreshUnavailable("the refresh lease expired before the tokens were saved")
            # Persist the rotated refresh token before anyone uses the new access token: a rotated
            # token that is not saved would kill the connection.
            self._vault.store(self.connection_id, refreshed)
            logger.info("Access token refreshed", extra={"connection_id": self.connection_id})
            return refreshed
        finally:
            self._store.leases.release_lease(lease)

    def _refresh_at_provider(self, stored: TokenSet) -> TokenSet:
        for attempt in range(1, _REFRESH_ATTEMPTS + 1):
            try:
                return self._oauth.refresh(stored.refresh_token.get_secret_value())
            except GrantRevoked:
                self._give_up(stored)
                reason = f"connection {self.connection_id} must be authorised again: reconnect it"
                raise ReauthorizationRequired(reason) from None
            except TokenEndpointError as error:
                # A lost response: the refresh token we hold is still the one the provider knows
                # (or its previous one, within the grace period), so the same request is safe.
                logger.warning(
                    "Token refresh failed, retrying",
                    extra={"connection_id": self.connection_id, "attempt": attempt, "reason": str(error)},
                )
                if attempt < _REFRESH_ATTEMPTS:
                    self._sleep(0.5 * 2**attempt)
        raise TokenRefreshUnavailable("the token endpoint did not answer; the connection is intact")

    def _give_up(self, stored: TokenSet) -> None:
        self._vault.store(self.connection_id, stored.model_copy(update={"grant_revoked": True}))
        if self._store.connections.mark_reauthorization_required(
            self.connection_id, "The accounting software refused our authorisation: reconnect.", self._clock()
        ):
            logger.warning("Grant revoked: reconnect needed", extra={"connection_id": self.connection_id})
