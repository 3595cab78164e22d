"""Authorising a connection: the consent-page URL, the OAuth callback, its redemption, the organisation choice.

Bound to the browser and the user that started it (login CSRF): the callback, which any browser can
reach without our JWT, only checks the single-use state and hands the browser a single-use completion
code, in the fragment of its redirect to the web app. The web app redeems it with the signed-in user's
JWT (POST /connections/{id}/authorization), and only then is the provider's code exchanged. The code
must come back from the same business *and* user (JWT `sub`) that started the flow.
Attack stopped: a business sends its consent link to someone at another company who approves it; their
browser lands on *their* web app session, whose JWT is another business's, so the redemption is refused,
the grant it would have created is revoked, and neither connection changes. (A state cookie on an API
start URL would not stop this: the attacker sends the start URL instead.)

The pipeline's failures each have a name the web app shows the user: provider_error, invalid_state,
missing_code, invalid_code, tenant_mismatch, storage_error. Nothing is stored until every step before
it succeeded, and a failed reconnect changes nothing.
"""

import hashlib
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from payedge_connect.connections.access import owned_connection
from payedge_connect.errors import ConflictError, InvalidInputError, NotFoundError
from payedge_connect.models import Connection, ConnectionStatus, OAuthCompletion, OAuthState, Provider, TenantChoice
from payedge_connect.observability import logger
from payedge_connect.providers.errors import ProviderError
from payedge_connect.services import Services
from payedge_connect.tokens.errors import GrantRevoked, TokenEndpointError
from payedge_connect.tokens.vault import TokenSet

if TYPE_CHECKING:
    from payedge_connect.providers.base import Tenant

STATE_LIFETIME = timedelta(minutes=10)
# Authorization codes are short-lived at every provider; the web app redeems at once, right after the redirect.
COMPLETION_LIFETIME = timedelta(minutes=5)
AUTHORIZED = "authorized"


class CallbackFailure(StrEnum):
    PROVIDER_ERROR = "provider_error"
    INVALID_STATE = "invalid_state"
    MISSING_CODE = "missing_code"
    INVALID_CODE = "invalid_code"
    TENANT_MISMATCH = "tenant_mismatch"
    STORAGE_ERROR = "storage_error"


@dataclass(frozen=True)
class AuthorizationStarted:
    connection: Connection
    authorization_url: str


@dataclass(frozen=True)
class CallbackOutcome:
    """Where the callback ended: the new status of the connection, or the failure's name."""

    outcome: str
    connection_id: str | None = None
    # Set when the outcome is `authorized`: what the web app redeems with the user's JWT.
    completion_code: str | None = None


def hash_state(state: str) -> str:
    # Only a hash is stored: a leaked table item cannot be replayed as a state.
    return hashlib.sha256(state.encode()).hexdigest()


def redirect_uri(api_base_url: str, provider: Provider) -> str:
    return f"{api_base_url.rstrip('/')}/oauth/{provider.value}/callback"


def start_connection(
    services: Services, *, business_id: str, user_id: str | None, provider: Provider, api_base_url: str
) -> AuthorizationStarted:
    """A new connection in `authorizing`, and the provider's consent-page URL for it."""
    now = services.clock()
    connection = Connection(
        connection_id=uuid.uuid4().hex,
        business_id=business_id,
        provider=provider,
        status=ConnectionStatus.AUTHORIZING,
        created_at=now,
        updated_at=now,
    )
    services.store.connections.create_connection(connection)
    return _authorization(services, connection, user_id, api_base_url)


def start_reconnection(
    services: Services, *, business_id: str, user_id: str | None, connection_id: str, api_base_url: str
) -> AuthorizationStarted:
    """The consent-page URL to authorise an existing connection again (same organisation required)."""
    connection = owned_connection(services.store, business_id, connection_id)
    if connection.status is ConnectionStatus.DISCONNECTED:
        raise ConflictError("a disconnected connection cannot be reconnected; add a new connection")
    return _authorization(services, connection, user_id, api_base_url)


def _authorization(
    services: Services, connection: Connection, user_id: str | None, api_base_url: str
) -> AuthorizationStarted:
    state = secrets.token_urlsafe(32)
    uri = redirect_uri(api_base_url, connection.provider)
    request = services.oauth(connection.provider).authorization_request(state=state, redirect_uri=uri)
    now = services.clock()
    services.store.connections.put_oauth_state(
        OAuthState(
            state_hash=hash_state(state),
            business_id=connection.business_id,
            user_id=user_id,
            provider=connection.provider,
            connection_id=connection.connection_id,
            redirect_uri=uri,
            code_verifier=request.code_verifier,
            created_at=now,
            expires_at=now + STATE_LIFETIME,
        )
    )
    return AuthorizationStarted(connection=connection, authorization_url=request.url)


def receive_callback(services: Services, provider: Provider, params: Mapping[str, str]) -> CallbackOutcome:
    """The OAuth callback, in whichever browser: consume the state, keep the code for the redemption."""
    # 1. The state: single use (consumed whatever happens next), unexpired, for this provider.
    state_value = params.get("state")
    pending = services.store.connections.consume_oauth_state(hash_state(state_value)) if state_value else None
    if pending is None or pending.provider is not provider or pending.expires_at <= services.clock():
        return CallbackOutcome(CallbackFailure.INVALID_STATE)
    connection_id = pending.connection_id

    # 2. The provider's answer: refused consent, or a code.
    if params.get("error"):
        logger.info("Consent refused at the provider", extra={"error": params["error"][:100]})
        return CallbackOutcome(CallbackFailure.PROVIDER_ERROR, connection_id)
    if not params.get("code"):
        return CallbackOutcome(CallbackFailure.MISSING_CODE, connection_id)

    # 3. Kept for the browser's web app to redeem with its user's JWT.
    completion_code = secrets.token_urlsafe(32)
    now = services.clock()
    services.store.connections.put_oauth_completion(
        OAuthCompletion(
            completion_hash=hash_state(completion_code),
            business_id=pending.business_id,
            user_id=pending.user_id,
            provider=provider,
            connection_id=connection_id,
            redirect_uri=pending.redirect_uri,
            code_verifier=pending.code_verifier,
            callback_params={name: value for name, value in params.items() if name != "state"},
            created_at=now,
            expires_at=now + COMPLETION_LIFETIME,
        )
    )
    return CallbackOutcome(AUTHORIZED, connection_id, completion_code)


def complete_authorization(
    services: Services, *, business_id: str, user_id: str | None, connection_id: str, completion_code: str
) -> CallbackOutcome:
    """The web app's redemption: the same business and user as the start, then code, organisation, tokens."""
    completion = services.store.connections.consume_oauth_completion(hash_state(completion_code))
    if completion is None or completion.expires_at <= services.clock():
        raise NotFoundError("no authorization is waiting under that completion code", field="body.completionCode")
    provider = completion.provider
    params = completion.callback_params
    oauth = services.oauth(provider)

    # 4. Only the business and user that started the flow complete it; anyone else's consent is given back.
    if (completion.business_id, completion.user_id, completion.connection_id) != (business_id, user_id, connection_id):
        logger.warning("Authorization redeemed by someone other than its starter", extra={"provider": provider.value})
        try:
            tokens = oauth.exchange_code(
                code=params.get("code", ""),
                redirect_uri=completion.redirect_uri,
                code_verifier=completion.code_verifier,
            )
        except (GrantRevoked, TokenEndpointError):
            tokens = None
        if tokens is not None:
            _revoke_quietly(services, provider, tokens)
        raise NotFoundError("no authorization is waiting under that completion code", field="body.completionCode")

    # 5. The code for tokens.
    try:
        tokens = oauth.exchange_code(
            code=params.get("code", ""), redirect_uri=completion.redirect_uri, code_verifier=completion.code_verifier
        )
    except (GrantRevoked, TokenEndpointError) as error:
        logger.info("Code exchange failed", extra={"reason": str(error)})
        return CallbackOutcome(CallbackFailure.INVALID_CODE, connection_id)

    # 6. The organisations this grant reaches.
    try:
        tenants = services.connector(provider).tenants(tokens.access_token.get_secret_value(), params)
    except ProviderError as error:
        logger.warning("Organisation discovery failed", extra={"status": error.status})
        return CallbackOutcome(CallbackFailure.PROVIDER_ERROR, connection_id)
    connection = services.store.connections.get_connection(connection_id)
    if connection is None or connection.business_id != business_id or not tenants:
        return CallbackOutcome(CallbackFailure.PROVIDER_ERROR, connection_id)

    # 7. A reconnect must land on the same organisation, or nothing changes.
    if connection.tenant_id is not None and connection.tenant_id not in {t.tenant_id for t in tenants}:
        _revoke_quietly(services, provider, tokens)
        return CallbackOutcome(CallbackFailure.TENANT_MISMATCH, connection_id)

    # 8. Store the tokens, then the connection's new state.
    try:
        services.vault.store(connection_id, tokens)
        saved = services.store.connections.save_connection(_authorised(connection, tenants, tokens, services))
    except (ClientError, BotoCoreError, ConflictError) as error:
        logger.exception("Storing the authorisation failed", extra={"reason": type(error).__name__})
        return CallbackOutcome(CallbackFailure.STORAGE_ERROR, connection_id)
    return CallbackOutcome(saved.status.value, connection_id)


def _authorised(connection: Connection, tenants: "list[Tenant]", tokens: TokenSet, services: Services) -> Connection:
    changes: dict[str, object] = {
        "updated_at": services.clock(),
        "attention": [],
        "authorization_expires_at": tokens.refresh_token_hard_expires_at,
    }
    if connection.tenant_id is not None:
        # Reconnect: same organisation; back to work (or to the mapping if it was never accepted).
        accepted = connection.mapping is not None and connection.mapping.accepted_at is not None
        changes["status"] = ConnectionStatus.CONNECTED if accepted else ConnectionStatus.MAPPING_REQUIRED
    elif len(tenants) == 1:
        changes.update(
            status=ConnectionStatus.MAPPING_REQUIRED, tenant_id=tenants[0].tenant_id, tenant_name=tenants[0].name
        )
    else:
        # Several organisations: the user chooses; we never pick the first one silently.
        changes.update(
            status=ConnectionStatus.CHOOSING_TENANT,
            tenant_choices=[TenantChoice(tenant_id=t.tenant_id, name=t.name) for t in tenants],
        )
    return connection.model_copy(update=changes)


def _revoke_quietly(services: Services, provider: Provider, tokens: TokenSet) -> None:
    """Give back a grant we will not use (best effort: the user may also remove it at the provider)."""
    try:
        services.oauth(provider).revoke(tokens.refresh_token.get_secret_value())
    except TokenEndpointError:
        logger.warning("Could not revoke an unused grant", extra={"provider": provider.value})


def choose_tenant(services: Services, *, business_id: str, connection_id: str, tenant_id: str) -> Connection:
    """The user's choice among the organisations a grant reaches."""
    connection = owned_connection(services.store, business_id, connection_id)
    if connection.status is not ConnectionStatus.CHOOSING_TENANT:
        raise ConflictError(f"connection is {connection.status.value}, not choosing an organisation")
    chosen = next((choice for choice in connection.tenant_choices if choice.tenant_id == tenant_id), None)
    if chosen is None:
        raise InvalidInputError("not one of the organisations this authorisation reaches", field="body.tenantId")
    return services.store.connections.save_connection(
        connection.model_copy(
            update={
                "status": ConnectionStatus.MAPPING_REQUIRED,
                "tenant_id": chosen.tenant_id,
                "tenant_name": chosen.name,
                "tenant_choices": [],
                "updated_at": services.clock(),
            }
        )
    )
