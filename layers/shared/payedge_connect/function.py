"""What every function's handler sets up the same way (functions/<name>/app.py keeps only its routes,
console actions and views).

A `Function` holds one function's settings and services, read and built on first use and kept while the
process lives (a warm Lambda reuses them); its HTTP API and who is calling it; and the entry point Lambda
calls, with the logger, tracer and metrics around it. Nothing is read or built at import.
"""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from payedge_connect.api.http import HttpApi
from payedge_connect.api.identity import business_id_of, user_id_of
from payedge_connect.connections.access import owned_connection
from payedge_connect.models import Connection
from payedge_connect.observability import flush_provider_calls, logger, metrics, tracer
from payedge_connect.services import Services
from payedge_connect.settings import ProviderSettings, load_settings

type EventHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def time_left(context: LambdaContext) -> Callable[[], float]:
    """Seconds left in this invocation, asked anew each time (long work stops and continues in time)."""
    return lambda: context.get_remaining_time_in_millis() / 1000


class Function[SettingsT: ProviderSettings]:
    """One Lambda function of the stack, configured by its settings model (settings.py)."""

    def __init__(self, settings: type[SettingsT]) -> None:
        self._settings = settings
        self._services: Services | None = None
        self.app = HttpApi()

    def settings(self) -> SettingsT:
        return load_settings(self._settings)

    def services(self) -> Services:
        if self._services is None:
            self._services = Services(self.settings())
        return self._services

    def caller(self) -> str:
        """The calling business: its JWT's business claim, never the path or body (401 without it)."""
        return business_id_of(self.app.current_event, self.settings().business_id_claim)

    def owned_connection(self, connection_id: str) -> Connection:
        """The calling business's connection; 404 for any other (we do not reveal that it exists)."""
        return owned_connection(self.services().store, self.caller(), connection_id)

    def user(self) -> str | None:
        """The signed-in user of the calling JWT, which an OAuth flow is bound to."""
        return user_id_of(self.app.current_event)

    def handler(self, *, console: EventHandler, queue: EventHandler | None = None) -> EventHandler:
        """The entry point: HTTP API events to the routes, SQS batches to `queue`, any other event (a
        schedule's, the AWS console's "Test") to `console`."""

        @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
        @tracer.capture_lambda_handler
        @metrics.log_metrics
        def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
            try:
                if "requestContext" in event:
                    return self.app.resolve(event, context)
                if queue is not None and event.get("Records"):
                    return queue(event, context)
                return console(event, context)
            finally:
                flush_provider_calls()

        return lambda_handler
