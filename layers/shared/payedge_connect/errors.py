"""Domain errors. The HTTP API turns each into a problem document (api/problems.py) in one place."""


class PayEdgeError(Exception):
    """Base of the errors a caller can act on; `title` is a stable, human-readable summary."""

    status = 500
    title = "Internal error"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidInputError(PayEdgeError):
    """The request carries a value we cannot accept; `field` names it."""

    status = 400
    title = "Invalid request"


class NotFoundError(PayEdgeError):
    """The record does not exist, or belongs to another business (we do not say which)."""

    status = 404
    title = "Not found"


class ConflictError(PayEdgeError):
    """The record changed since it was read, or already exists."""

    status = 409
    title = "Conflict"


class UnauthorizedError(PayEdgeError):
    """The caller carries no usable identity."""

    status = 401
    title = "Unauthorized"
