"""The HTTP API resolver of every function: bodies checked once, path parameters decoded, errors as problems.

Path parameters: Powertools matches routes on the event's path and hands the matched text to the route.
API Gateway gives the path as the caller encoded it (`rawPath`), so a parameter is percent-decoded here,
once, exactly as API Gateway decodes `pathParameters`. Identifiers are limited to characters that never
need encoding (IDENTIFIER_PATTERN), so a status URL built from them always resolves.
"""

from re import Match
from typing import Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.api_gateway import ResponseBuilder
from aws_lambda_powertools.event_handler.openapi.params import Path

from payedge_connect.api.problems import install_problem_handlers
from payedge_connect.api.requests import MAX_WEBHOOK_BYTES, BodyRefused, body_bytes, read_request_body
from payedge_connect.models import IDENTIFIER_MAX_LENGTH, IDENTIFIER_PATTERN

# A path parameter that is one of our identifiers (connection, bill, vendor, sync run, payment order).
IdentifierPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=IDENTIFIER_MAX_LENGTH,
        pattern=IDENTIFIER_PATTERN,
        description="Letters, digits and . _ ~ - (never needs percent-encoding), at most 64 characters",
    ),
]

WEBHOOK_PREFIX = "/webhooks/"


class HttpApi(APIGatewayHttpResolver):
    """APIGatewayHttpResolver with the checks every function's HTTP routes share."""

    def __init__(self) -> None:
        super().__init__(enable_validation=True)
        install_problem_handlers(self)

    def _resolve(self) -> ResponseBuilder:
        event = self.current_event.raw_event
        try:
            if self.current_event.path.startswith(WEBHOOK_PREFIX):
                # Signed over the raw bytes: only the size before the signature; the webhook parses after it.
                body_bytes(event, MAX_WEBHOOK_BYTES)
            else:
                read_request_body(event)
        except BodyRefused as refused:
            return ResponseBuilder(refused.problem(), serializer=self._serializer)
        return super()._resolve()

    def _convert_matches_into_route_keys(self, match: Match) -> dict[str, str]:
        return {name: unquote(value) for name, value in match.groupdict().items()}
