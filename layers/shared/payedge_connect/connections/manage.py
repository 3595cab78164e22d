"""What the integrations page and the dashboard show, and disconnecting."""

from datetime import datetime, timedelta

from payedge_connect.connections.access import owned_connection
from payedge_connect.models import AccountMapping, Connection, ConnectionStatus, Provider, Record, SyncSummary
from payedge_connect.observability import logger
from payedge_connect.providers.registry import SUPPORTED_PROVIDERS
from payedge_connect.services import Services
from payedge_connect.tokens.oauth import TokenEndpointError

# Warn this long before the provider's hard limit on an authorisation (QuickBooks' 5-year cap).
AUTHORIZATION_EXPIRY_WARNING = timedelta(days=30)


class ConnectionView(Record):
    connection_id: str
    provider: Provider
    accounting_software: str
    organisation_name: str | None
    status: ConnectionStatus
    mapping: AccountMapping | None
    last_sync: SyncSummary | None
    attention: list[str]
    created_at: datetime
    updated_at: datetime


class ConnectionList(Record):
    connections: list[ConnectionView]
    next_cursor: str | None = None


def view(connection: Connection, now: datetime) -> ConnectionView:
    attention = list(connection.attention)
    if connection.status is ConnectionStatus.MAPPING_REQUIRED:
        attention.append("Accept the account mapping to start syncing.")
    if connection.status is ConnectionStatus.CHOOSING_TENANT:
        attention.append("Choose the organisation to connect.")
    expires = connection.authorization_expires_at
    if expires and connection.status is ConnectionStatus.CONNECTED and expires - now <= AUTHORIZATION_EXPIRY_WARNING:
        attention.append(f"The authorisation expires on {expires.date().isoformat()}: reconnect before then.")
    return ConnectionView(
        connection_id=connection.connection_id,
        provider=connection.provider,
        accounting_software=next(p.display_name for p in SUPPORTED_PROVIDERS if p.provider is connection.provider),
        organisation_name=connection.tenant_name,
        status=connection.status,
        mapping=connection.mapping,
        last_sync=connection.last_sync,
        attention=attention,
        created_at=connection.created_at,
        updated_at=connection.updated_at,
    )


def list_connections(services: Services, *, business_id: str, limit: int, cursor: str | None) -> ConnectionList:
    page = services.store.list_connections(business_id, limit=limit, cursor=cursor)
    now = services.clock()
    return ConnectionList(connections=[view(c, now) for c in page.items], next_cursor=page.next_cursor)


def show_connection(services: Services, *, business_id: str, connection_id: str) -> ConnectionView:
    return view(owned_connection(services.store, business_id, connection_id), services.clock())


def disconnect(services: Services, *, business_id: str, connection_id: str) -> ConnectionView:
    """Revoke at the provider, schedule the secret's deletion, keep the records read-only."""
    connection = owned_connection(services.store, business_id, connection_id)
    if connection.status is ConnectionStatus.DISCONNECTED:
        return view(connection, services.clock())
    attention: list[str] = []
    tokens = services.vault.load(connection_id, fresh=True)
    if tokens is not None and not tokens.grant_revoked:
        try:
            services.oauth(connection.provider).revoke(tokens.refresh_token.get_secret_value())
        except TokenEndpointError as error:
            # Our copy of the tokens is deleted all the same; the user can remove the app there too.
            logger.warning("Revocation failed", extra={"connection_id": connection_id, "reason": str(error)})
            attention.append("The accounting software did not confirm the revocation; remove the app there.")
    services.vault.schedule_deletion(connection_id)
    saved = services.store.save_connection(
        connection.model_copy(
            update={"status": ConnectionStatus.DISCONNECTED, "attention": attention, "updated_at": services.clock()}
        )
    )
    return view(saved, services.clock())
