"""The schedule's job: queue a sync of every connected connection, ten messages a batch.

A connection whose sync is still queued or running is skipped (its sync slot is taken).
"""

from payedge_connect.models import ConnectionStatus, SyncTrigger
from payedge_connect.observability import logger
from payedge_connect.services import Services
from payedge_connect.sync.requests import SyncMessage, request_sync, send_sync_messages


def dispatch_connected(services: Services, queue_url: str) -> int:
    """Queue a scheduled sync for every connected connection; returns how many were queued."""
    queued = 0
    skipped = 0
    cursor: str | None = None
    while True:
        page = services.store.list_connections_in_status(ConnectionStatus.CONNECTED, cursor=cursor)
        messages: list[SyncMessage] = []
        for connection in page.items:
            _, message = request_sync(services, connection, SyncTrigger.SCHEDULE)
            if message is None:
                skipped += 1
            else:
                messages.append(message)
        send_sync_messages(queue_url, messages)
        queued += len(messages)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    logger.info("Dispatched scheduled syncs", extra={"queued": queued, "already_running": skipped})
    return queued
