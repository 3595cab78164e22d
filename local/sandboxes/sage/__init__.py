"""Sage Business Cloud Accounting API v3.1 sandbox (`SageSandbox`); the modules are listed in README.md."""

from local.sandboxes.sage.sandbox import SageSandbox

__all__ = ["SageSandbox"]
