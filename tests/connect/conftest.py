"""One local stack and one sandbox fleet per test module, wired as an operator would wire them."""

from collections.abc import Iterator

import pytest

from local.provider_apps import register_provider_apps, sandbox_parameters
from local.sandboxes.fleet import SandboxFleet
from local.stack import LocalStack

from .world import ConnectWorld


@pytest.fixture(scope="module")
def world() -> Iterator[ConnectWorld]:
    """The stack from template.yaml with the connectors pointed at the sandboxes, the provider apps'
    credentials in Secrets Manager, and sandboxes that approve consent without a page.

    Two QuickBooks companies and two Xero organisations, so reconnecting to another one can be tried.
    """
    with pytest.MonkeyPatch.context() as patch:
        # oauthlib refuses plain http; the sandboxes serve http on loopback (read by the in-process functions).
        patch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
        fleet = SandboxFleet(auto_approve=True, tenants={"quickbooks": 2, "xero": 2, "sage": 1}, bills_per_tenant=3)
        with fleet, LocalStack(parameters={**sandbox_parameters(fleet), "LogLevel": "DEBUG"}) as stack:
            register_provider_apps(stack, fleet)
            yield ConnectWorld(stack, fleet)
