"""A business only ever sees or acts on its own connections."""

from payedge_connect.errors import NotFoundError
from payedge_connect.models import Connection
from payedge_connect.storage import RecordsStore


def owned_connection(store: RecordsStore, business_id: str, connection_id: str) -> Connection:
    """The connection if it belongs to `business_id`; otherwise 404 (we do not reveal that it exists)."""
    connection = store.connections.get_connection(connection_id)
    if connection is None or connection.business_id != business_id:
        raise NotFoundError(f"no connection {connection_id}")
    return connection
