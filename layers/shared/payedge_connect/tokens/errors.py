"""What a token endpoint can answer besides tokens (oauth.py raises them; callers catch them from here,
without loading OAuth itself)."""


class GrantRevoked(Exception):
    """The provider answered invalid_grant: the user must authorise again. Retrying never helps."""


class TokenEndpointError(Exception):
    """The token endpoint failed for another reason (it may work on a later try)."""
