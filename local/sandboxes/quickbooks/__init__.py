"""QuickBooks Online sandbox: Intuit's OAuth 2.0 server and the Accounting API v3, served locally."""

from local.sandboxes.quickbooks.sandbox import QuickBooksSandbox

__all__ = ["QuickBooksSandbox"]
