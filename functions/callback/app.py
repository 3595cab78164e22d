"""Callback: the OAuth redirect target, organisation choice and account mapping.

Its routes arrive with the connect issue; until then every request gets a 404 problem document.
"""

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from payedge_connect.api.problems import install_problem_handlers
from payedge_connect.observability import logger, metrics, tracer

app = APIGatewayHttpResolver(enable_validation=True)
install_problem_handlers(app)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
