"""Connect: lists the accounting packages, starts OAuth, lists, shows, reconnects and disconnects connections.

HTTP routes come through the HTTP API (JWT-authorised; the business id is the token's claim).
Console events (AWS console "Test"):
  {"action": "list_providers"}
  {"action": "show_connection", "connectionId": "..."}
  {"action": "refresh_token", "connectionId": "..."}   refreshes the access token now
"""

from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from payedge_connect.api.http import HttpApi, IdentifierPath
from payedge_connect.api.identity import business_id_of, user_id_of
from payedge_connect.connections import authorization, manage
from payedge_connect.errors import NotFoundError
from payedge_connect.models import ConnectionStatus, Provider, Record
from payedge_connect.observability import logger, metrics, tracer
from payedge_connect.providers.registry import SUPPORTED_PROVIDERS, ProviderInfo
from payedge_connect.services import Services
from payedge_connect.settings import ConnectSettings, load_settings

app = HttpApi()


@cache
def services() -> Services:
    return Services(load_settings(ConnectSettings))


def caller() -> str:
    return business_id_of(app.current_event, services().settings.business_id_claim)


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
        services(),
        business_id=caller(),
        user_id=user_id_of(app.current_event),
        provider=request.provider,
        api_base_url=load_settings(ConnectSettings).api_base_url,
    )
    return Response(status_code=201, body=_link(started), content_type="application/json")


@app.get("/connections")
def list_connections(
    limit: Annotated[int, Query(ge=1, le=100)] = 50, cursor: Annotated[str | None, Query()] = None
) -> dict[str, Any]:
    page = manage.list_connections(services(), business_id=caller(), limit=limit, cursor=cursor)
    return page.model_dump(mode="json", by_alias=True)


@app.get("/connections/<connection_id>")
def show_connection(connection_id: IdentifierPath) -> dict[str, Any]:
    shown = manage.show_connection(services(), business_id=caller(), connection_id=connection_id)
    return shown.model_dump(mode="json", by_alias=True)


@app.post("/connections/<connection_id>/reconnect")
def reconnect(connection_id: IdentifierPath) -> dict[str, Any]:
    """Authorise an existing connection again (after a revoked grant); it must be the same organisation."""
    started = authorization.start_reconnection(
        services(),
        business_id=caller(),
        user_id=user_id_of(app.current_event),
        connection_id=connection_id,
        api_base_url=load_settings(ConnectSettings).api_base_url,
    )
    return _link(started)


@app.delete("/connections/<connection_id>")
def disconnect(connection_id: IdentifierPath) -> dict[str, Any]:
    shown = manage.disconnect(services(), business_id=caller(), connection_id=connection_id)
    return shown.model_dump(mode="json", by_alias=True)


def handle_console(event: dict[str, Any]) -> dict[str, Any]:
    """Operator actions from the AWS console: no business scoping, the operator sees every connection."""
    action = event.get("action")
    if action == "list_providers":
        return list_providers()
    connection = services().store.connections.get_connection(str(event.get("connectionId")))
    if action in ("show_connection", "refresh_token") and connection is None:
        raise NotFoundError(f"no connection {event.get('connectionId')}")
    if action == "show_connection" and connection is not None:
        return manage.view(connection, services().clock()).model_dump(mode="json", by_alias=True)
    if action == "refresh_token" and connection is not None:
        services().tokens(connection).force_refresh()
        return {"connectionId": connection.connection_id, "refreshed": True}
    raise ValueError(f"unknown action {action!r}; known: list_providers, show_connection, refresh_token")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "requestContext" not in event:
        return handle_console(event)
    return app.resolve(event, context)
