"""Sync: the schedule's dispatch of due connections (the sync worker and read APIs come with the sync issue).

Events:
- EventBridge Scheduler (and the console): {"action": "dispatch"} -> one sync message per connected
  connection on the sync queue.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from payedge_connect.observability import logger, metrics, tracer
from payedge_connect.settings import SyncSettings, load_settings
from payedge_connect.storage.records import RecordsStore
from payedge_connect.sync.dispatch import dispatch_connected


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = load_settings(SyncSettings)
    action = event.get("action")
    if action == "dispatch":
        queued = dispatch_connected(RecordsStore(settings.records_table_name), settings.sync_queue_url)
        return {"action": "dispatch", "queued": queued}
    raise ValueError(f"unknown action {action!r}; known: dispatch")
