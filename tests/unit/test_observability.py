"""Tracing costs nothing when it is off: a function started with POWERTOOLS_TRACE_DISABLED never imports
the X-Ray SDK; on, Powertools' Tracer traces the handler and patches only botocore and requests.

Each case is a fresh interpreter, as a Lambda cold start is (the SDK, once imported, stays imported)."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from payedge_connect.observability import flush_provider_calls, metrics
from payedge_connect.providers.http import ProviderApi

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json, sys
import app  # noqa: F401 - the handler's cold start is what is probed
from payedge_connect.observability import tracer
loaded = "aws_xray_sdk" in sys.modules
patched = sorted(__import__("aws_xray_sdk.core.patcher", fromlist=["_"])._PATCHED_MODULES) if loaded else []
print(json.dumps({"xray": loaded, "traced": tracer.tracer is not None, "patched": patched}))
"""


def started(handler: str, **environment: str) -> dict[str, object]:
    env = {
        "PATH": "",
        "PYTHONPATH": f"{ROOT / 'functions' / handler}:{ROOT / 'layers' / 'shared'}",
        "POWERTOOLS_SERVICE_NAME": handler,
        "LAMBDA_TASK_ROOT": str(ROOT / "functions" / handler),
        "AWS_DEFAULT_REGION": "us-east-1",
        **environment,
    }
    done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_with_tracing_disabled_the_x_ray_sdk_is_never_imported() -> None:
    result = started("writeback", POWERTOOLS_TRACE_DISABLED="true")
    assert result == {"xray": False, "traced": False, "patched": []}


def test_outside_lambda_tracing_is_off_as_powertools_decides() -> None:
    result = started("connect", LAMBDA_TASK_ROOT="")
    assert result["xray"] is False and result["traced"] is False


def test_in_lambda_the_handler_is_traced_with_botocore_and_requests_patched() -> None:
    result = started("sync")
    assert result == {"xray": True, "traced": True, "patched": ["botocore", "requests"]}


class _Ok(requests.adapters.BaseAdapter):
    """Answers every request 200 with an empty JSON object."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code, response._content = 200, b"{}"
        return response

    def close(self) -> None:
        pass


def test_provider_calls_are_counted_per_provider_one_line_each_per_invocation(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(metrics, "namespace", "PayEdgeConnect")
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    flush_provider_calls()  # what other tests of this process called outside a handler: not this invocation's
    capsys.readouterr()
    session = requests.Session()
    session.mount("https://", _Ok())
    xero = ProviderApi("https://xero.test", provider="xero", access_token=lambda: "token", http=session)
    sage = ProviderApi("https://sage.test", provider="sage", access_token=lambda: "token", http=session)
    for path in ("Invoices", "Contacts", "Payments"):
        xero.get(path)
    sage.get("purchase_invoices")
    flush_provider_calls()
    flush_provider_calls()  # nothing more was called: nothing more is counted
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    counted = {(line["provider"], *line["ProviderCalls"]) for line in lines}  # EMF: the values as a list
    assert len(lines) == 2 and counted == {("xero", 3), ("sage", 1)}
    assert {line["_aws"]["CloudWatchMetrics"][0]["Namespace"] for line in lines} == {"PayEdgeConnect"}
