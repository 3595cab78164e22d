"""Connect: lists the supported accounting packages (later: starts OAuth, lists and disconnects connections).

HTTP routes come through the HTTP API (JWT-authorised). A plain event from the AWS console is also
accepted: {"action": "list_providers"}.
"""

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from payedge_connect.api.problems import install_problem_handlers
from payedge_connect.observability import logger, metrics, tracer
from payedge_connect.providers.registry import SUPPORTED_PROVIDERS, ProviderInfo

app = APIGatewayHttpResolver(enable_validation=True)
install_problem_handlers(app)


class ProviderList(BaseModel):
    providers: list[ProviderInfo]


@app.get("/providers")
def list_providers() -> dict[str, Any]:
    """The accounting packages a business can connect, with the names the integrations page shows."""
    return ProviderList(providers=list(SUPPORTED_PROVIDERS)).model_dump(mode="json", by_alias=True)


def handle_console(event: dict[str, Any]) -> dict[str, Any]:
    action = event.get("action")
    if action == "list_providers":
        return list_providers()
    return {"error": "unknown_action", "detail": f"unknown action {action!r}; known: list_providers"}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "requestContext" not in event:
        return handle_console(event)
    return app.resolve(event, context)
