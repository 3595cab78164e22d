"""Every provider's call limits, in one place, with their sources (the shared call budget keeps to them).

QuickBooks Online (Intuit):
- 500 requests a minute per company (realm), batch requests included; 10 concurrent requests per app
  and company; a 429 beyond either. Intuit blog "IDG concurrent API use changes", 2016-08-08.
- 40 batch requests a minute per app and company (120 per company across apps); each batch item is
  metered like a call. developer.intuit.com, "Limits and throttles" (batch section).
- Intuit documents no Retry-After on its 429, and no day limit (reads are metered per month instead).
Xero:
- 60 calls a minute, 5 concurrent and 5,000 a day per organisation (1,000 a day on the Starter
  developer tier since 2026-03-02); 10,000 a minute per app across organisations. Every answer
  carries X-MinLimit-Remaining, X-DayLimit-Remaining and X-AppMinLimit-Remaining; a 429 carries
  Retry-After (seconds) and X-Rate-Limit-Problem naming the limit. developer.xero.com/faq/limits;
  developer.xero.com/faq/pricing-and-policy-updates. Every 429 counts against the day too.
Sage Accounting:
- v3.1 publishes no limit; the v3.0 page gives 200 calls per 60 seconds per business
  (developer.sage.com/accounting/V3.0_docs/making-an-api-request), a third party 100 a minute for
  v3.1 (knowledgelib.io, unverified): we keep to the lower, 100. No concurrency limit is documented
  and no rate-limit header; a 429 means throttled (developer.sage.com/accounting/guides/concepts/
  response_codes). The same third party's 2,500 a day is not confirmed anywhere, so not counted.
"""

from dataclasses import dataclass

from payedge_connect.models import Provider


@dataclass(frozen=True)
class ProviderLimits:
    """One provider's limits per organisation (and per app, where the provider has one)."""

    per_minute: int
    concurrent: int | None = None
    per_day: int | None = None
    app_per_minute: int | None = None
    batch_per_minute: int | None = None
    # Whether the answers carry remaining counts (X-MinLimit-Remaining, ...) that the budget learns from.
    reports_remaining: bool = False


# Xero's day limit depends on the app's developer tier: a stack parameter (XeroDailyCallLimit).
XERO_DAY_LIMITS = (1000, 5000)


def limits_for(provider: Provider, *, xero_daily_call_limit: int) -> ProviderLimits:
    if provider is Provider.QUICKBOOKS:
        return ProviderLimits(per_minute=500, concurrent=10, batch_per_minute=40)
    if provider is Provider.XERO:
        return ProviderLimits(
            per_minute=60,
            concurrent=5,
            per_day=xero_daily_call_limit,
            app_per_minute=10_000,
            reports_remaining=True,
        )
    return ProviderLimits(per_minute=100)
