"""A cold start loads no provider side: connectors, the call budget, OAuth (requests-oauthlib), the token
refresh, the sync engine and the payment run are imported the first time a provider is called, so a
function woken by an HTTP read pays for none of them (issue 12).

Each case is a fresh interpreter with the function's environment from template.yaml, as a Lambda cold
start is: the handler is imported, answers one HTTP read (401: no AWS call), and says what is loaded."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = ("callback", "connect", "sync", "writeback")

PROVIDER_SIDE = (
    "payedge_connect.providers.base",
    "payedge_connect.providers.budget",
    "payedge_connect.providers.quickbooks",
    "payedge_connect.providers.xero",
    "payedge_connect.providers.sage",
    "payedge_connect.tokens.oauth",
    "payedge_connect.tokens.refresh",
    "payedge_connect.sync.engine",
    "payedge_connect.writeback.service",
    "requests_oauthlib",
)

_PROBE = """
import json, sys, types
import app
context = types.SimpleNamespace(
    function_name="cold", function_version="$LATEST", memory_limit_in_mb=512, aws_request_id="cold",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:cold",
    get_remaining_time_in_millis=lambda: 30_000,
)
assert app.lambda_handler(json.loads(sys.argv[1]), context)["statusCode"] == 401
before = sorted(name for name in {side!r} if name in sys.modules)
from payedge_connect.models import Provider
app.function.services().connector(Provider.SAGE)
after = sorted(name for name in {side!r} if name in sys.modules)
print(json.dumps({{"read": before, "connector": after}}))
"""


# The function's environment and its cheap read, as the coldstart bench starts it: worked out in a process
# of its own (importing the bench sets Powertools' environment, which would leak into this one's tests).
_SET_UP = """
import json
from bench.coldstart import HANDLERS, _child_environment, function_environment, http_event
from bench.harness import load_template
template = load_template()
print(json.dumps({
    handler: {
        "environment": _child_environment(handler, function_environment(template, logical_id), tracing=False),
        "event": http_event(route),
    }
    for handler, (logical_id, route) in HANDLERS.items()
}))
"""


@pytest.fixture(scope="module")
def starts() -> dict[str, dict[str, Any]]:
    set_up = subprocess.run([sys.executable, "-c", _SET_UP], capture_output=True, text=True, check=True, cwd=ROOT)
    result: dict[str, dict[str, Any]] = json.loads(set_up.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("handler", HANDLERS)
def test_an_http_read_loads_no_provider_side_until_a_provider_is_called(
    handler: str, starts: dict[str, dict[str, Any]]
) -> None:
    start = starts[handler]
    probe = _PROBE.format(side=PROVIDER_SIDE)
    done = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(start["event"])],
        env=start["environment"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["read"] == []
    # Asked for, a connector brings its own provider, not the other two.
    assert "payedge_connect.providers.sage" in loaded["connector"]
    assert not {"payedge_connect.providers.quickbooks", "payedge_connect.providers.xero"} & set(loaded["connector"])
