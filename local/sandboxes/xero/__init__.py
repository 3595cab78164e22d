"""Xero sandbox: a local stand-in for Xero Identity (OAuth 2.0, /connections) and Accounting API 2.0.

Modules: `identity` (apps, grants, tokens, connections), `ledger` (an organisation's books),
`query` (where/order/If-Modified-Since/paging), `wire` (Xero's JSON), `webhooks` (signed events),
`sandbox` (the HTTP surface, limits, idempotency and test controls).
"""

from local.sandboxes.xero.sandbox import XeroLimits, XeroSandbox

__all__ = ["XeroLimits", "XeroSandbox"]
