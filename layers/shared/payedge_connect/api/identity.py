"""Who is calling: the business id comes from the verified JWT, never from the path or body."""

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from payedge_connect.errors import UnauthorizedError


def business_id_of(event: APIGatewayProxyEventV2, claim: str) -> str:
    """The business id claim of the caller's JWT, as the HTTP API's JWT authorizer verified it."""
    authorizer = event.request_context.authorizer
    claims = authorizer.jwt_claim if authorizer else None
    value = (claims or {}).get(claim)
    if not isinstance(value, str) or not value:
        raise UnauthorizedError(f"the token carries no '{claim}' claim")
    return value
