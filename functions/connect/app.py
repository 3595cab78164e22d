"""Connect: lists the accounting packages, starts OAuth, lists, shows, reconnects and disconnects connections.

HTTP routes come through the HTTP API (JWT-authorised; the business id is the token's claim).
Console events (AWS console "Test"):
  {"action": "list_providers"}
  {"action": "show_connection", "connectionId": "..."}
  {"action": "refresh_token", "connectionId": "..."}   refreshes the access token now
"""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from payedge_connect.api.http import IdentifierPath
from payedge_connect.connections import authorization, manage
from payedge_connect.errors import NotFoundError
from payedge_connect.function import Function
from payedge_connect.models import ConnectionStatus, Provider, Record
from payedge_connect.providers.registry import SUPPORTED_PROVIDERS, ProviderInfo
from payedge_connect.settings import ConnectSettings

function = Function(ConnectSettings)
app = function.app


class ProviderList(BaseModel):
    providers: list[ProviderInfo]


class NewConnection(Record):
    provider: Provider


class AuthorizationLink(Record):
    connection_id: str
    status: ConnectionStatus
    authorization_url: str


def _link(started: authorization.AuthorizationStarted) -> dict[str, Any]:
    return AuthorizationLink(
        connection_id=started.connection.connection_id,
        status=started.connection.status,
        authorization_url=started.authorization_url,
    ).model_dump(mode="json", by_alias=True)


@app.get("/providers")
def list_providers() -> dict[str, Any]:
    """The accounting packages a business can connect, with the names the integrations page shows."""
    return ProviderList(providers=list(SUPPORTED_PROVIDERS)).model_dump(mode="json", by_alias=True)


@app.post("/connections", status_code=201)
def create_connection(request: NewConnection) -> Response[dict[str, Any]]:
    """Add a connection: returns its id and the provider's consent page to send the browser to."""
    started = authorization.start_connection(
        function.services(),
        business_id=function.caller(),
        user_id=function.user(),
        provider=request.provider,
        api_base_url=function.settings().api_base_url,
    )
    return Response(status_code=201, body=_link(started), content_type="application/json")


@app.get("/connections")
def list_connections(
    limit: Annotated[int, Query(ge=1, le=100)] = 50, cursor: Annotated[str | None, Query()] = None
) -> dict[str, Any]:
    page = manage.list_connections(function.services(), business_id=function.caller(), limit=limit, cursor=cursor)
    return page.model_dump(mode="json", by_alias=True)


@app.get("/connections/<connection_id>")
def show_connection(connection_id: IdentifierPath) -> dict[str, Any]:
    shown = manage.show_connection(function.services(), business_id=function.caller(), connection_id=connection_id)
    return shown.model_dump(mode="json", by_alias=True)


@app.post("/connections/<connection_id>/reconnect")
def reconnect(connection_id: IdentifierPath) -> dict[str, Any]:
    """Authorise an existing connection again (after a revoked grant); it must be the same organisation."""
    started = authorization.start_reconnection(
        function.services(),
        business_id=function.caller(),
        user_id=function.user(),
        connection_id=connection_id,
        api_base_url=function.settings().api_base_url,
    )
    return _link(started)


@app.delete("/connections/<connection_id>")
def disconnect(connection_id: IdentifierPath) -> dict[str, Any]:
    shown = manage.disconnect(function.services(), business_id=function.caller(), connection_id=connection_id)
    return shown.model_dump(mode="json", by_alias=True)


def handle_console(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Operator actions from the AWS console: no business scoping, the operator sees every connection."""
    action = event.get("action")
    if action == "list_providers":
        return list_providers()
    connection = function.services().store.connections.get_connection(str(event.get("connectionId")))
    if action in ("show_connection", "refresh_token") and connection is None:
        raise NotFoundError(f"no connection {event.get('connectionId')}")
    if action == "show_connection" and connection is not None:
        return manage.view(connection, function.services().clock()).model_dump(mode="json", by_alias=True)
    if action == "refresh_token" and connection is not None:
        function.services().tokens(connection).force_refresh()
        return {"connectionId": connection.connection_id, "refreshed": True}
    raise ValueError(f"unknown action {action!r}; known: list_providers, show_connection, refresh_token")


lambda_handler = function.handler(console=handle_console)
