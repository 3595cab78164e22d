"""What a provider's failed answer means for the work that met it, decided in one place for sync,
write-back and the read APIs."""

from enum import StrEnum

from payedge_connect.providers.errors import ProviderError, ProviderUnavailable
from payedge_connect.tokens.refresh import ReauthorizationRequired, TokenRefreshUnavailable


class Verdict(StrEnum):
    # No answer, throttled, the provider's own trouble, a refresh that could not finish: try again later,
    # for a bounded total wait.
    RETRY_LATER = "retry_later"
    # The grant is gone: the user connects again.
    REAUTHORIZE = "reauthorize"
    # A steady 4xx (Xero's 403 for an organisation disconnected from the app, a 400): asking again gets
    # the same answer, so the work fails with the provider's words.
    REFUSED = "refused"


def classify(error: Exception) -> Verdict | None:
    """The verdict on `error`, or None when it is not an answer from the provider (a bug of ours)."""
    if isinstance(error, ReauthorizationRequired):
        return Verdict.REAUTHORIZE
    if isinstance(error, TokenRefreshUnavailable | ProviderUnavailable):
        return Verdict.RETRY_LATER
    if isinstance(error, ProviderError):
        if error.status == 429 or error.status >= 500:
            return Verdict.RETRY_LATER
        return Verdict.REFUSED
    return None


def provider_words(error: Exception) -> str:
    """The provider's own answer, short enough for a record and a user's screen."""
    if isinstance(error, ProviderError):
        return f"{error.status}: {error.message[:300]}"
    return str(error)[:300]
