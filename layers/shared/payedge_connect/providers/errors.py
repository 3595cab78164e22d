"""What a provider call can end in besides an answer (http.py raises them; callers import them from there)."""


class ProviderError(Exception):
    """The provider answered with an error (after retries where retrying made sense)."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"provider answered {status}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """No usable answer: timeouts, dropped connections, 5xx or 429 beyond what we may wait out."""


class CallBudgetSpent(ProviderUnavailable):
    """No call may be made for `retry_after` seconds: the organisation's `limit` budget is spent (the
    caller's deadline comes first). Nothing was sent to the provider."""

    def __init__(self, limit: str, retry_after: float) -> None:
        super().__init__(
            429, f"the {limit} call budget is spent; calls resume in {retry_after:.0f} s", retry_after=retry_after
        )
        self.limit = limit
