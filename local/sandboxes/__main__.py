"""`python -m local.sandboxes`: run the provider sandbox fleet until Ctrl-C or SIGTERM.

Prints each base URL, app and tenant for a person, then one line of JSON (the fleet's summary,
starting with "{") for a parent process: read lines until one starts with "{" and parse it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from local.sandboxes.fleet import (
    DEFAULT_BILLS_PER_TENANT,
    DEFAULT_SEED,
    DEFAULT_TENANTS,
    PROVIDERS,
    SandboxFleet,
    gateway_redirect_uris,
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local.sandboxes", description="Run the provider sandboxes.")
    for provider in PROVIDERS:
        parser.add_argument(f"--{provider}-port", type=int, default=0, help="0 (default): a free port")
        parser.add_argument(
            f"--{provider}-tenants", type=int, default=DEFAULT_TENANTS[provider], help="tenants to seed"
        )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the generated ledgers")
    parser.add_argument("--bills", type=int, default=DEFAULT_BILLS_PER_TENANT, help="bills per tenant")
    parser.add_argument(
        "--gateway-url",
        help="API base URL of the service; the apps accept <gateway>/oauth/<provider>/callback as redirect URI",
    )
    parser.add_argument(
        "--webhook-url",
        help='where QuickBooks and Xero send webhooks, "{provider}" replaced (e.g. http://127.0.0.1:3000/webhooks/{provider})',
    )
    parser.add_argument("--auto-approve", action="store_true", help="consent without a page (headless demo)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Both signals end the same way, so Ctrl-C and a parent's terminate() both shut down cleanly.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    fleet = SandboxFleet(
        redirect_uris=gateway_redirect_uris(args.gateway_url) if args.gateway_url else None,
        webhook_url=args.webhook_url,
        auto_approve=args.auto_approve,
        seed=args.seed,
        bills_per_tenant=args.bills,
        tenants={provider: getattr(args, f"{provider}_tenants") for provider in PROVIDERS},
        ports={provider: getattr(args, f"{provider}_port") for provider in PROVIDERS},
    )
    with fleet:
        summary = fleet.summary()
        for provider in PROVIDERS:
            app = fleet.credentials[provider]
            print(f"{provider:<10} {summary['base_urls'][provider]}")
            webhook = f" webhook_key={app.webhook_key}" if app.webhook_key else ""
            print(f"{'':<10} client_id={app.client_id} client_secret={app.client_secret}{webhook}")
            print(f"{'':<10} tenants={', '.join(fleet.tenant_ids[provider])}")
        print(f"PROVIDER_BASE_URLS='{fleet.provider_base_urls_json()}'")
        print(json.dumps(summary), flush=True)
        stop.wait()
    print("sandboxes stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
