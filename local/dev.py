"""`make dev`: run the local stack until Ctrl-C (or SIGTERM), on fixed loopback ports.

Ports: --gateway-port / PAYEDGE_GATEWAY_PORT (default 3000) and --moto-port / PAYEDGE_MOTO_PORT
(default 5050). The dispatch schedule fires on its rate, queues are polled, and a ready-to-use user token
is printed.
"""

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from local.stack import LocalStack

DEFAULT_GATEWAY_PORT = 3000
DEFAULT_MOTO_PORT = 5050
TOKEN_LIFETIME_SECONDS = 12 * 3600


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local.dev", description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--gateway-port", type=int, default=int(os.environ.get("PAYEDGE_GATEWAY_PORT", DEFAULT_GATEWAY_PORT))
    )
    parser.add_argument("--moto-port", type=int, default=int(os.environ.get("PAYEDGE_MOTO_PORT", DEFAULT_MOTO_PORT)))
    parser.add_argument("--no-schedules", action="store_true", help="fire schedules only on demand")
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

    parameters: dict[str, str] = {}
    # ---- Provider sandboxes ------------------------------------------------------------------------
    # The QuickBooks, Xero and Sage sandboxes (local/sandboxes/) are started here, before the stack, and
    # their base URLs passed to it as the ProviderBaseUrls parameter; they are not wired in yet.
    # -------------------------------------------------------------------------------------------------
    with LocalStack(
        parameters=parameters,
        moto_port=arguments.moto_port,
        gateway_port=arguments.gateway_port,
        run_schedules=not arguments.no_schedules,
    ) as stack:
        claim = stack.parameters.get("BusinessIdClaim", "business_id")
        token = stack.issue_token({claim: "biz-local"}, lifetime_seconds=TOKEN_LIFETIME_SECONDS)
        print(
            f"""
PayEdge Connect local stack is running (Ctrl-C to stop).

  HTTP API (local gateway)  {stack.api_url}
  AWS services (moto)       {stack.endpoint_url}   region {stack.region}, any credentials
  User token (12 h, {claim}=biz-local), for example:
    export TOKEN={token}
    curl -H "Authorization: Bearer $TOKEN" {stack.api_url}/providers

  AWS CLI against the stack:
    aws --endpoint-url {stack.endpoint_url} dynamodb scan --table-name {stack.outputs.get("RecordsTableName", "")}
""",
            flush=True,
        )
        stopping.wait()
    print("Local stack stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
