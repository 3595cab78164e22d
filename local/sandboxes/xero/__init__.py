"""Xero sandbox: a local stand-in for Xero Identity (OAuth 2.0, /connections) and Accounting API 2.0 (README.md).

Modules: `sandbox` (`XeroSandbox`: the wire plus the Python controls), `routes` (the HTTP surface as
Xero speaks it), `ledger` (an organisation's books and the rules of its writes), `limits` (rate and
concurrency limits, their headers and 429), `idempotency` (the Idempotency-Key replay), `admin` (the
`/_admin` commands), `oauth` (Xero Identity: apps, grants, tokens, connections), `query`
(where/order/If-Modified-Since/paging), `wire` (Xero's JSON), `webhooks` (signed events).
"""

from local.sandboxes.xero.limits import XeroLimits
from local.sandboxes.xero.sandbox import XeroSandbox

__all__ = ["XeroLimits", "XeroSandbox"]
