"""OAuth 2.0 with one provider app (requests-oauthlib): authorization URL, code exchange, refresh, revoke.

Every token response becomes a `TokenSet` with absolute expiry times, whatever the provider calls
its fields (QuickBooks `x_refresh_token_expires_in`, Sage `refresh_token_expires_in`, Xero none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import requests
from oauthlib.oauth2 import WebApplicationClient
from oauthlib.oauth2.rfc6749.errors import InvalidGrantError, OAuth2Error
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from payedge_connect.models import now_utc
from payedge_connect.tokens.errors import GrantRevoked, TokenEndpointError
from payedge_connect.tokens.vault import TokenSet

if TYPE_CHECKING:
    from payedge_connect.providers.base import OAuthSpec

_TIMEOUT_SECONDS = 15


@dataclass(frozen=True)
class AppCredentials:
    """The provider app the operator registered (client id and secret, from Secrets Manager)."""

    client_id: str
    client_secret: str
    # Key that signs the provider's webhooks (QuickBooks verifier token, Xero webhook key); None for Sage.
    webhook_key: str | None = None


@dataclass(frozen=True)
class AuthorizationRequest:
    url: str
    code_verifier: str | None


class OAuthClient:
    def __init__(
        self,
        spec: OAuthSpec,
        app: AppCredentials,
        *,
        http: requests.Session | None = None,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self.spec = spec
        self._app = app
        self._http = http
        self._clock = clock

    def authorization_request(self, *, state: str, redirect_uri: str) -> AuthorizationRequest:
        """The provider's consent page URL for this state (with a PKCE challenge where supported)."""
        session = OAuth2Session(self._app.client_id, redirect_uri=redirect_uri, scope=list(self.spec.scopes))
        extra: dict[str, str] = dict(self.spec.extra_authorize_params)
        verifier: str | None = None
        if self.spec.pkce:
            client = WebApplicationClient(self._app.client_id)
            verifier = client.create_code_verifier(64)
            extra["code_challenge"] = client.create_code_challenge(verifier, "S256")
            extra["code_challenge_method"] = "S256"
        url, _ = session.authorization_url(self.spec.authorize_url, state=state, **extra)
        return AuthorizationRequest(url=url, code_verifier=verifier)

    def exchange_code(self, *, code: str, redirect_uri: str, code_verifier: str | None) -> TokenSet:
        """Trade the callback's code for tokens; GrantRevoked if the code is invalid, used or expired."""
        session = self._session(redirect_uri=redirect_uri)
        extra: dict[str, Any] = {"code_verifier": code_verifier} if code_verifier else {}
        response = self._call(
            lambda: session.fetch_token(
                self.spec.token_url,
                code=code,
                timeout=_TIMEOUT_SECONDS,
                headers=self._token_headers(),
                **self._client_auth(),
                **extra,
            )
        )
        return self._token_set(response)

    def refresh(self, refresh_token: str) -> TokenSet:
        session = self._session()
        response = self._call(
            lambda: session.refresh_token(
                self.spec.token_url,
                refresh_token=refresh_token,
                timeout=_TIMEOUT_SECONDS,
                headers=self._token_headers(),
                **self._client_auth(),
            )
        )
        return self._token_set(response)

    def revoke(self, refresh_token: str) -> None:
        """Revoke the grant at the provider. A token the provider no longer knows counts as revoked."""
        http = self._http or requests.Session()
        body: dict[str, str] = {"token": refresh_token}
        auth: HTTPBasicAuth | None = None
        if self.spec.client_auth == "basic":
            auth = HTTPBasicAuth(self._app.client_id, self._app.client_secret)
        else:
            body.update(client_id=self._app.client_id, client_secret=self._app.client_secret)
        try:
            response = http.post(
                self.spec.revoke_url,
                json=body if self.spec.revocation_body == "json" else None,
                data=body if self.spec.revocation_body == "form" else None,
                auth=auth,
                headers={"Accept": "application/json"},
                timeout=_TIMEOUT_SECONDS,
            )
        except (requests.ConnectionError, requests.Timeout) as error:
            reason = f"no answer from the revocation endpoint ({type(error).__name__})"
            raise TokenEndpointError(reason) from None
        # 400 is how the providers answer a token that is already invalid: nothing left to revoke.
        if response.status_code > 400:
            raise TokenEndpointError(f"revocation failed with HTTP {response.status_code}")

    # ------------------------------------------------------------------ internals

    def _session(self, redirect_uri: str | None = None) -> OAuth2Session:
        # No scope on the session: providers echo scopes in their own order and oauthlib would
        # otherwise reject a reordered list as "scope has changed".
        session = OAuth2Session(self._app.client_id, redirect_uri=redirect_uri)
        if self._http is not None:
            session.mount("http://", self._http.get_adapter("http://"))
            session.mount("https://", self._http.get_adapter("https://"))
        return session

    def _client_auth(self) -> dict[str, Any]:
        if self.spec.client_auth == "basic":
            return {"auth": HTTPBasicAuth(self._app.client_id, self._app.client_secret)}
        # client_id explicitly: requests-oauthlib adds it to a code exchange by itself, never to a refresh.
        return {"include_client_id": True, "client_id": self._app.client_id, "client_secret": self._app.client_secret}

    def _token_headers(self) -> dict[str, str]:
        return {"Accept": "application/json", **self.spec.token_request_headers}

    @staticmethod
    def _call(fetch: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return fetch()
        except InvalidGrantError:
            raise GrantRevoked("the provider answered invalid_grant") from None
        except OAuth2Error as error:
            raise TokenEndpointError(f"token endpoint error: {error.error}") from None
        except (requests.ConnectionError, requests.Timeout) as error:
            raise TokenEndpointError(f"no answer from the token endpoint ({type(error).__name__})") from None

    def _token_set(self, response: dict[str, Any]) -> TokenSet:
        now = self._clock()

        def after(seconds: Any) -> datetime | None:
            return now + timedelta(seconds=int(seconds)) if seconds not in (None, "") else None

        access_expires = after(response.get("expires_in")) or now + timedelta(minutes=5)
        refresh_expires = after(response.get("x_refresh_token_expires_in") or response.get("refresh_token_expires_in"))
        scope = response.get("scope") or []
        return TokenSet(
            access_token=response["access_token"],
            refresh_token=response["refresh_token"],
            access_token_expires_at=access_expires,
            refresh_token_expires_at=refresh_expires,
            refresh_token_hard_expires_at=after(response.get("x_refresh_token_hard_expires_in")),
            scope=scope.split() if isinstance(scope, str) else list(scope),
        )
