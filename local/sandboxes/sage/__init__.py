"""Sage Business Cloud Accounting API v3.1 sandbox (`SageSandbox`)."""

from local.sandboxes.sage.sandbox import SageSandbox

__all__ = ["SageSandbox"]
