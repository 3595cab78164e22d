"""`make dev`: run the local stack and the provider sandboxes until Ctrl-C (or SIGTERM), on fixed loopback ports.

Ports: --gateway-port / PAYEDGE_GATEWAY_PORT (default 3000), --moto-port / PAYEDGE_MOTO_PORT (default 5050),
and the sandboxes on 4001 (QuickBooks), 4002 (Xero), 4003 (Sage) (--<provider>-port). The dispatch schedule
fires on its rate, queues are polled, and a ready-to-use user token is printed. The sandboxes' consent
pages are real pages: POST /connections from a browser session, open the authorization URL, approve.
The reference web app (webapp/) is served on its own origin, http://127.0.0.1:8080 (--web-app-port /
PAYEDGE_WEB_APP_PORT): the stack's WebAppOrigins allows it and WebAppUrl brings the OAuth callback back to it.
"""

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from local.provider_apps import allow_plain_http_oauth, register_provider_apps, sandbox_parameters
from local.sandboxes.fleet import PROVIDERS, SandboxFleet
from local.stack import LocalStack
from local.web_app import WebAppServer

DEFAULT_GATEWAY_PORT = 3000
DEFAULT_MOTO_PORT = 5050
DEFAULT_SANDBOX_PORTS = {"quickbooks": 4001, "xero": 4002, "sage": 4003}
DEFAULT_WEB_APP_PORT = 8080
TOKEN_LIFETIME_SECONDS = 12 * 3600
LOCAL_BUSINESS = "biz-local"


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local.dev", description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--gateway-port", type=int, default=int(os.environ.get("PAYEDGE_GATEWAY_PORT", DEFAULT_GATEWAY_PORT))
    )
    parser.add_argument("--moto-port", type=int, default=int(os.environ.get("PAYEDGE_MOTO_PORT", DEFAULT_MOTO_PORT)))
    parser.add_argument(
        "--web-app-port", type=int, default=int(os.environ.get("PAYEDGE_WEB_APP_PORT", DEFAULT_WEB_APP_PORT))
    )
    parser.add_argument("--no-schedules", action="store_true", help="fire schedules only on demand")
    for provider, port in DEFAULT_SANDBOX_PORTS.items():
        parser.add_argument(f"--{provider}-port", type=int, default=port, help=f"the {provider} sandbox's port")
    parser.add_argument("--auto-approve", action="store_true", help="sandbox consent pages approve without asking")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _arguments(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("local").setLevel(logging.INFO)  # the gateway's access log, pollers, schedules
    stopping = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        print(f"\n{signal.Signals(signum).name} received, stopping...")
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    ports = {provider: getattr(arguments, f"{provider}_port") for provider in PROVIDERS}
    allow_plain_http_oauth()
    web_app = WebAppServer(issue_token=lambda: user_token(stack), port=arguments.web_app_port)
    web_app.bind()
    try:
        with (
            SandboxFleet(ports=ports, auto_approve=arguments.auto_approve) as fleet,
            LocalStack(
                parameters={**sandbox_parameters(fleet), **web_app_parameters(web_app)},
                moto_port=arguments.moto_port,
                gateway_port=arguments.gateway_port,
                run_schedules=not arguments.no_schedules,
            ) as stack,
        ):
            register_provider_apps(stack, fleet)
            fleet.configure_webhooks(f"{stack.api_url}/webhooks/{{provider}}")
            web_app.api_url = stack.api_url
            web_app.start()
            claim = stack.parameters.get("BusinessIdClaim", "business_id")
            token = user_token(stack)
            sandboxes = "\n".join(
                f"  {provider:<11} {url}   organisations: {', '.join(fleet.tenant_ids[provider])}"
                for provider, url in fleet.base_urls.items()
            )
            print(
                f"""
PayEdge Connect local stack is running (Ctrl-C to stop).

  Web app                   {web_app.url}   (Sign in as the local user; its origin is in WebAppOrigins)
  HTTP API (local gateway)  {stack.api_url}
  AWS services (moto)       {stack.endpoint_url}   region {stack.region}, any credentials
  Provider sandboxes (consent pages {"auto-approve" if arguments.auto_approve else "ask"}):
{sandboxes}
  User token (12 h, {claim}={LOCAL_BUSINESS}), for example:
    export TOKEN={token}
    curl -H "Authorization: Bearer $TOKEN" {stack.api_url}/providers
    curl -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
      -d '{{"provider": "xero"}}' {stack.api_url}/connections
      -> open the authorizationUrl in a browser and approve; the callback sends the browser to the web
         app with #completionCode=... in the URL; redeem it with the same token:
    curl -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
      -d '{{"completionCode": "..."}}' {stack.api_url}/connections/<connectionId>/authorization

  AWS CLI against the stack:
    aws --endpoint-url {stack.endpoint_url} dynamodb scan --table-name {stack.outputs.get("RecordsTableName", "")}
""",
                flush=True,
            )
            stopping.wait()
    finally:
        web_app.stop()
    print("Local stack and sandboxes stopped.")
    return 0


def web_app_parameters(web_app: WebAppServer) -> dict[str, str]:
    """The stack parameters that make the web app's origin a CORS origin of the API and its integrations
    page the callback's destination (the server must be bound)."""
    origins = [web_app.origin, web_app.origin.replace("127.0.0.1", "localhost")]
    return {"WebAppUrl": web_app.url, "WebAppOrigins": ",".join(origins)}


def user_token(stack: LocalStack, business_id: str = LOCAL_BUSINESS) -> str:
    """A user JWT of the local identity provider for `business_id` (what the platform's sign-in gives)."""
    claim = stack.parameters.get("BusinessIdClaim", "business_id")
    return stack.issue_token({claim: business_id}, lifetime_seconds=TOKEN_LIFETIME_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
