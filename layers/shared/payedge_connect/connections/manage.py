"""What the integrations page and the dashboard show, and disconnecting."""

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from payedge_connect.connections.access import owned_connection
from payedge_connect.models import AccountMapping, Connection, ConnectionStatus, Provider, Record, SyncSummary
from payedge_connect.observability import logger
from payedge_connect.providers.registry import SUPPORTED_PROVIDERS
from payedge_connect.services import Services
from payedge_connect.tokens.errors import TokenEndpointError

if TYPE_CHECKING:
    from payedge_connect.providers.budget import Hold

# Warn this long before the provider's hard limit on an authorisation (QuickBooks' 5-year cap).
AUTHORIZATION_EXPIRY_WARNING = timedelta(days=30)


class CallBudgetHold(Record):
    """The organisation's call budget at the provider is spent: syncs and payments wait until then."""

    limit: str  # day, minute, concurrent, ... (the provider's limit that is spent)
    resumes_at: datetime


class ConnectionView(Record):
    connection_id: str
    provider: Provider
    accounting_software: str
    organisation_name: str | None
    status: ConnectionStatus
    mapping: AccountMapping | None
    last_sync: SyncSummary | None
    attention: list[str]
    call_budget: CallBudgetHold | None = None
    created_at: datetime
    updated_at: datetime


class ConnectionList(Record):
    connections: list[ConnectionView]
    next_cursor: str | None = None


# A hold shorter than this is the budget's ordinary pacing, not news for the user.
_HOLD_WORTH_SHOWING = timedelta(minutes=2)


def view(connection: Connection, now: datetime, hold: "Hold | None" = None) -> ConnectionView:
    attention = list(connection.attention)
    if connection.status is ConnectionStatus.MAPPING_REQUIRED:
        attention.append("Accept the account mapping to start syncing.")
    if connection.status is ConnectionStatus.CHOOSING_TENANT:
        attention.append("Choose the organisation to connect.")
    expires = connection.authorization_expires_at
    if expires and connection.status is ConnectionStatus.CONNECTED and expires - now <= AUTHORIZATION_EXPIRY_WARNING:
        attention.append(f"The authorisation expires on {expires.date().isoformat()}: reconnect before then.")
    budget = None
    if hold is not None and datetime.fromtimestamp(hold.until, tz=UTC) - now >= _HOLD_WORTH_SHOWING:
        budget = CallBudgetHold(limit=hold.limit, resumes_at=datetime.fromtimestamp(hold.until, tz=UTC))
        attention.append(
            f"The accounting software's {hold.limit} call limit for this organisation is used up; syncs and "
            f"payments resume by themselves at {budget.resumes_at.isoformat(timespec='minutes')}."
        )
    return ConnectionView(
        connection_id=connection.connection_id,
        provider=connection.provider,
        accounting_software=next(p.display_name for p in SUPPORTED_PROVIDERS if p.provider is connection.provider),
        organisation_name=connection.tenant_name,
        status=connection.status,
        mapping=connection.mapping,
        last_sync=connection.last_sync,
        attention=attention,
        call_budget=budget,
        created_at=connection.created_at,
        updated_at=connection.updated_at,
    )


def list_connections(services: Services, *, business_id: str, limit: int, cursor: str | None) -> ConnectionList:
    page = services.store.connections.list_connections(business_id, limit=limit, cursor=cursor)
    now = services.clock()
    return ConnectionList(
        connections=[view(c, now, _budget_hold(services, c)) for c in page.items], next_cursor=page.next_cursor
    )


def show_connection(services: Services, *, business_id: str, connection_id: str) -> ConnectionView:
    connection = owned_connection(services.store, business_id, connection_id)
    return view(connection, services.clock(), _budget_hold(services, connection))


def _budget_hold(services: Services, connection: Connection) -> "Hold | None":
    """What holds a payment of this connection back at its provider now (one read of the budget item)."""
    if connection.status is not ConnectionStatus.CONNECTED or connection.tenant_id is None:
        return None
    return services.call_budget(connection.provider, connection.tenant_id).hold()


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
    saved = services.store.connections.save_connection(
        connection.model_copy(
            update={"status": ConnectionStatus.DISCONNECTED, "attention": attention, "updated_at": services.clock()}
        )
    )
    return view(saved, services.clock())
