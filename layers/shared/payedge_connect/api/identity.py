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


def user_id_of(event: APIGatewayProxyEventV2) -> str | None:
    """The signed-in user (the JWT's `sub`), which an OAuth flow is bound to; None when the token has none."""
    authorizer = event.request_context.authorizer
    value = ((authorizer.jwt_claim if authorizer else None) or {}).get("sub")
    return value if isinstance(value, str) and value else None
