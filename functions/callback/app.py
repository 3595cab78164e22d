"""Callback: the OAuth redirect target, the organisation choice and the account mapping.

Routes:
  GET /oauth/{provider}/callback      (no JWT: guarded by the single-use state) -> 302 to the web app
  POST /connections/{id}/authorization   the web app redeems the callback's completion code with its JWT
  GET /connections/{id}/tenants       organisations to choose from
  PUT /connections/{id}/tenant        the user's choice
  GET /connections/{id}/mapping       proposed account mapping from the provider's live accounts
  PUT /connections/{id}/mapping       accept it (validated against the provider) -> connected
Console event: {"action": "show_mapping", "connectionId": "...", "businessId": "..."}
"""

from typing import Any
from urllib.parse import urlencode

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from payedge_connect.api.http import IdentifierPath
from payedge_connect.connections import authorization, mapping
from payedge_connect.function import Function
from payedge_connect.models import Identifier, Provider, Record, TenantChoice
from payedge_connect.observability import logger
from payedge_connect.settings import CallbackSettings
from payedge_connect.writeback.queue import resume_after_reconnect

function = Function(CallbackSettings)
app = function.app


class TenantList(Record):
    connection_id: str
    tenants: list[TenantChoice]


class TenantSelection(Record):
    tenant_id: Identifier


class AuthorizationRedemption(Record):
    completion_code: str = Field(min_length=1, max_length=128)


class AuthorizationResult(Record):
    """The connection's new status (mapping_required, choosing_tenant, connected) or the failure's name."""

    connection_id: str
    outcome: str


@app.get("/oauth/<provider>/callback", status_code=302)
def oauth_callback(provider: Provider) -> Response[str]:
    """Where the provider sends the browser back; ends with a redirect to the web app, success or not.

    Nothing is connected here (any browser can arrive): an approved consent gives the web app a
    completion code, in the redirect's fragment (never sent to a server or in a Referer), to redeem
    with its user's JWT.
    """
    params = app.current_event.query_string_parameters or {}
    outcome = authorization.receive_callback(function.services(), provider, params)
    logger.info("OAuth callback", extra={"provider": provider.value, "outcome": outcome.outcome})
    query = {"outcome": outcome.outcome, **({"connectionId": outcome.connection_id} if outcome.connection_id else {})}
    fragment = f"#{urlencode({'completionCode': outcome.completion_code})}" if outcome.completion_code else ""
    target = f"{function.settings().web_app_url}?{urlencode(query)}{fragment}"
    return Response(status_code=302, headers={"Location": target, "Cache-Control": "no-store"}, body="")


@app.post("/connections/<connection_id>/authorization")
def redeem_authorization(connection_id: IdentifierPath, redemption: AuthorizationRedemption) -> AuthorizationResult:
    """The web app completes the consent its user approved: 404 unless this business and user started it."""
    outcome = authorization.complete_authorization(
        function.services(),
        business_id=function.caller(),
        user_id=function.user(),
        connection_id=connection_id,
        completion_code=redemption.completion_code,
    )
    logger.info("OAuth completed", extra={"outcome": outcome.outcome})
    # A reconnect: payments held while the connection needed reauthorising go out now.
    resume_after_reconnect(
        function.services().store, connection_id, outcome.outcome, function.settings().writeback_queue_url
    )
    return AuthorizationResult(connection_id=connection_id, outcome=outcome.outcome)


@app.get("/connections/<connection_id>/tenants")
def list_tenants(connection_id: IdentifierPath) -> dict[str, Any]:
    connection = function.owned_connection(connection_id)
    return TenantList(connection_id=connection_id, tenants=connection.tenant_choices).model_dump(
        mode="json", by_alias=True
    )


@app.put("/connections/<connection_id>/tenant")
def choose_tenant(connection_id: IdentifierPath, selection: TenantSelection) -> dict[str, Any]:
    connection = authorization.choose_tenant(
        function.services(), business_id=function.caller(), connection_id=connection_id, tenant_id=selection.tenant_id
    )
    return {"connectionId": connection.connection_id, "status": connection.status.value}


@app.get("/connections/<connection_id>/mapping")
def propose_mapping(connection_id: IdentifierPath) -> dict[str, Any]:
    proposal = mapping.propose_mapping(
        function.services(),
        business_id=function.caller(),
        connection_id=connection_id,
        funding_sources=function.services().settings.funding_sources,
    )
    return proposal.model_dump(mode="json", by_alias=True)


@app.put("/connections/<connection_id>/mapping")
def accept_mapping(connection_id: IdentifierPath, acceptance: mapping.MappingAcceptance) -> dict[str, Any]:
    connection = mapping.accept_mapping(
        function.services(),
        business_id=function.caller(),
        connection_id=connection_id,
        acceptance=acceptance,
        funding_sources=function.services().settings.funding_sources,
    )
    return {
        "connectionId": connection.connection_id,
        "status": connection.status.value,
        "mapping": connection.mapping.model_dump(mode="json", by_alias=True) if connection.mapping else None,
    }


def handle_console(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") == "show_mapping":
        proposal = mapping.propose_mapping(
            function.services(),
            business_id=str(event.get("businessId")),
            connection_id=str(event.get("connectionId")),
            funding_sources=function.services().settings.funding_sources,
        )
        return proposal.model_dump(mode="json", by_alias=True)
    raise ValueError(f"unknown action {event.get('action')!r}; known: show_mapping")


lambda_handler = function.handler(console=handle_console)
