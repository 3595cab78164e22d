"""`coldstart` (issue 12): each handler's cold import against the bare dependency set, tracing off and on,
its first invocation, and the layer's unzipped size.

Every measurement is a fresh interpreter (`python -c`), the handler's folder and the layer's source on
its path and the function's environment from template.yaml; the clock runs around the imports only (the
interpreter's own start is the same on both sides). Handler and baseline runs alternate, so a busy
machine slows both alike.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.harness import Target, load_template, print_table, print_targets, write_results
from local.stack import local_parameters
from scripts.check_layer_lean import RUNTIME_PACKAGES, unzipped_bytes

RUNS = 9
TARGET_RATIO = 1.15
LAYER = ROOT / "layers" / "shared"

# Function folder -> its logical id and the cheap route its first invocation takes: a read without the
# JWT's business claim, answered 401 after the function's settings and records store are made (no AWS
# call: every AWS endpoint points at a closed port, so one would show as a 5xx).
HANDLERS: dict[str, tuple[str, str]] = {
    "connect": ("ConnectFunction", "/connections"),
    "callback": ("CallbackFunction", "/connections/coldstart/tenants"),
    "sync": ("SyncFunction", "/connections/coldstart/payables"),
    "writeback": ("WritebackFunction", "/connections/coldstart/payments/coldstart"),
}
# What the function's first provider call loads (one connector: QuickBooks), timed after the first
# invocation: the provider side is not saved, only kept off the cold start and the reads, so its cost is
# shown where it is paid (the first authorization, sync or payment run of the process).
PROVIDER_SIDE: dict[str, tuple[str, ...]] = {
    "connect": ("payedge_connect.tokens.oauth", "payedge_connect.providers.quickbooks"),
    "callback": ("payedge_connect.tokens.refresh", "payedge_connect.providers.quickbooks"),
    "sync": ("payedge_connect.sync.engine", "payedge_connect.providers.quickbooks"),
    "writeback": ("payedge_connect.writeback.service", "payedge_connect.providers.quickbooks"),
}

# The bare dependency set: what any function of this service must import (issue 12).
BASELINE = """\
import boto3, pydantic, requests_oauthlib
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.utilities.batch import BatchProcessor
"""
XRAY = "import aws_xray_sdk.core\n"

# What the child runs: the timed imports, then (handlers) the first invocation, and one line of JSON.
_CHILD = """\
import json, sys, time
_started, _started_cpu = time.perf_counter(), time.process_time()
{imports}
_result = {{
    "import_ms": (time.perf_counter() - _started) * 1000,
    "import_cpu_ms": (time.process_time() - _started_cpu) * 1000,
}}
if len(sys.argv) > 1:
    class Context:
        function_name = "coldstart"
        function_version = "$LATEST"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:coldstart"
        memory_limit_in_mb = 512
        aws_request_id = "coldstart-request"
        log_group_name = "/aws/lambda/coldstart"
        log_stream_name = "coldstart"
        def get_remaining_time_in_millis(self): return 30_000
    _started = time.perf_counter()
    _response = app.lambda_handler(json.loads(sys.argv[1]), Context())
    _result["first_invocation_ms"] = (time.perf_counter() - _started) * 1000
    _result["status"] = _response["statusCode"]
    _result["xray_imported"] = "aws_xray_sdk" in sys.modules
    _started = time.perf_counter()
    for _module in sys.argv[2:]:
        __import__(_module)
    _result["provider_side_ms"] = (time.perf_counter() - _started) * 1000
print("\\ncoldstart-result " + json.dumps(_result), flush=True)
"""

# A sampled trace as Lambda hands one to a traced function (the segments go to a daemon that is not
# there, over UDP, as the X-Ray SDK always sends them).
_TRACE_ID = "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1"


def _resolve(value: Any, parameters: Mapping[str, str]) -> str:
    """A template value as the function would see it: parameters by default (or local) value, other
    resources by a placeholder name."""
    if isinstance(value, str | int | float):
        return str(value)
    if "Ref" in value:
        return parameters.get(value["Ref"], f"coldstart-{value['Ref']}")
    if "Fn::GetAtt" in value:
        return f"arn:aws:coldstart:us-east-1:123456789012:{value['Fn::GetAtt'][0]}"
    if "Fn::Sub" in value:
        return re.sub(r"\$\{[^}]+\}", "coldstart", str(value["Fn::Sub"]))
    raise ValueError(f"cannot resolve {value!r}")


def function_environment(template: Mapping[str, Any], logical_id: str) -> dict[str, str]:
    """The Globals' and the function's variables (POWERTOOLS_* included), resolved with placeholders."""
    declared = template.get("Parameters", {})
    parameters = {name: str(spec["Default"]) for name, spec in declared.items() if "Default" in spec}
    parameters.update(local_parameters("https://api.coldstart.invalid"))
    variables = {
        **template["Globals"]["Function"]["Environment"]["Variables"],
        **template["Resources"][logical_id]["Properties"]["Environment"]["Variables"],
    }
    return {name: _resolve(value, parameters) for name, value in variables.items()}


def http_event(path: str) -> dict[str, Any]:
    """An HTTP API (payload 2.0) GET of `path` that passed no JWT authorizer."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "api.coldstart.invalid", "accept": "application/json"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "coldstart",
            "domainName": "api.coldstart.invalid",
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1"},
            "requestId": "coldstart",
            "routeKey": "$default",
            "stage": "$default",
            "time": "02/Dec/2026:17:00:00 +0000",
            "timeEpoch": 1796230800000,
        },
        "isBase64Encoded": False,
    }


def _child_environment(handler: str, function_env: Mapping[str, str], *, tracing: bool) -> dict[str, str]:
    handler_dir = ROOT / "functions" / handler
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(handler_dir), str(LAYER)]),
        **function_env,
        # What the Lambda runtime sets: tracing is on only in Lambda, as Powertools decides.
        "LAMBDA_TASK_ROOT": str(handler_dir),
        "AWS_LAMBDA_FUNCTION_NAME": handler,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "coldstart",
        "AWS_SECRET_ACCESS_KEY": "coldstart",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    }
    if tracing:
        environment["_X_AMZN_TRACE_ID"] = _TRACE_ID
    else:
        environment["POWERTOOLS_TRACE_DISABLED"] = "true"
    return environment


def _run(
    imports: str, environment: Mapping[str, str], event: Mapping[str, Any] | None, provider_side: Sequence[str] = ()
) -> dict[str, Any]:
    command = [sys.executable, "-c", _CHILD.format(imports=imports)]
    if event is not None:
        command += [json.dumps(event), *provider_side]
    done = subprocess.run(command, env=dict(environment), capture_output=True, text=True, check=False, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("coldstart-result ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{imports.strip()!r} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("coldstart-result "))
    return result


def _median(runs: list[dict[str, Any]], field: str) -> float:
    return statistics.median(run[field] for run in runs)


def _paired_ratio(handler_runs: list[dict[str, Any]], baseline_runs: list[dict[str, Any]], field: str) -> float:
    """The median of each handler run over the baseline run right after it: a machine whose load changes
    during the scenario shifts both sides of a pair alike."""
    pairs = zip(handler_runs, baseline_runs, strict=True)
    return statistics.median(handler[field] / baseline[field] for handler, baseline in pairs)


def measure(handler: str, template: Mapping[str, Any], *, tracing: bool, runs: int = RUNS) -> dict[str, Any]:
    logical_id, route = HANDLERS[handler]
    environment = _child_environment(handler, function_environment(template, logical_id), tracing=tracing)
    baseline_imports = BASELINE + (XRAY if tracing else "")
    handler_runs: list[dict[str, Any]] = []
    baseline_runs: list[dict[str, Any]] = []
    for _ in range(runs):
        handler_runs.append(_run("import app", environment, http_event(route), PROVIDER_SIDE[handler]))
        baseline_runs.append(_run(baseline_imports, environment, None))
    return {
        "import_ms": round(_median(handler_runs, "import_ms"), 1),
        "baseline_ms": round(_median(baseline_runs, "import_ms"), 1),
        "ratio": round(_paired_ratio(handler_runs, baseline_runs, "import_ms"), 3),
        "import_cpu_ms": round(_median(handler_runs, "import_cpu_ms"), 1),
        "baseline_cpu_ms": round(_median(baseline_runs, "import_cpu_ms"), 1),
        "cpu_ratio": round(_paired_ratio(handler_runs, baseline_runs, "import_cpu_ms"), 3),
        "first_invocation_ms": round(_median(handler_runs, "first_invocation_ms"), 1),
        "first_invocation_status": sorted({run["status"] for run in handler_runs}),
        "provider_side_ms": round(_median(handler_runs, "provider_side_ms"), 1),
        # Not a target: the cold start with the provider side loaded at once, as before issue 12.
        "with_provider_side_ratio": round(
            statistics.median(
                (handler["import_ms"] + handler["provider_side_ms"]) / baseline["import_ms"]
                for handler, baseline in zip(handler_runs, baseline_runs, strict=True)
            ),
            3,
        ),
        "xray_imported": sorted({run["xray_imported"] for run in handler_runs}),
    }


def build_layer() -> dict[str, Any]:
    """Build the layer as `sam build` does (layers/shared/Makefile) into a temporary folder and weigh it."""
    with tempfile.TemporaryDirectory(prefix="coldstart-layer-") as artifacts:
        environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        subprocess.run(
            ["make", "--no-print-directory", "-C", str(LAYER), "build-SharedLayer", f"ARTIFACTS_DIR={artifacts}"],
            env=environment,
            check=True,
        )
        python = Path(artifacts) / "python"
        bundled = sorted(path.name for path in python.iterdir() if path.name.split("-")[0] in RUNTIME_PACKAGES)
        return {"layer_unzipped_mb": round(unzipped_bytes(Path(artifacts)) / 1e6, 1), "layer_bundles": bundled}


def run(runs: int = RUNS) -> None:
    template = load_template()
    layer = build_layer()
    rows: list[dict[str, Any]] = []
    for handler in HANDLERS:
        off = measure(handler, template, tracing=False, runs=runs)
        on = measure(handler, template, tracing=True, runs=runs)
        rows.append(
            {
                "handler": handler,
                "runs": runs,
                "route": f"GET {HANDLERS[handler][1]}",
                **{f"off_{name}": value for name, value in off.items()},
                **{f"on_{name}": value for name, value in on.items()},
                **layer,
            }
        )
        print(f"  {handler}: off {off['ratio']:.3f}, on {on['ratio']:.3f}", flush=True)
    print_table(
        f"coldstart: median of {runs} interleaved runs, ms (layer {layer['layer_unzipped_mb']} MB unzipped)",
        [
            "handler",
            "off_import_ms",
            "off_baseline_ms",
            "off_ratio",
            "off_cpu_ratio",
            "off_first_invocation_ms",
            "off_provider_side_ms",
            "off_with_provider_side_ratio",
            "on_import_ms",
            "on_baseline_ms",
            "on_ratio",
            "on_cpu_ratio",
            "on_first_invocation_ms",
            "on_provider_side_ms",
        ],
        rows,
    )
    print(
        "provider_side_ms: what the process's first provider call imports (connectors, call budget, OAuth, the "
        "sync engine or payment run); with_provider_side_ratio: the cold import with it, for comparison"
    )
    print()
    for row in rows:
        print_targets(
            row["handler"],
            [
                Target(
                    "tracing off: import <= 1.15 x bare set", row["off_ratio"] <= TARGET_RATIO, f"{row['off_ratio']}"
                ),
                Target(
                    "tracing on: import <= 1.15 x bare set + X-Ray SDK",
                    row["on_ratio"] <= TARGET_RATIO,
                    f"{row['on_ratio']}",
                ),
                Target(
                    "CPU time, tracing off / on: <= 1.15 x the same",
                    max(row["off_cpu_ratio"], row["on_cpu_ratio"]) <= TARGET_RATIO,
                    f"{row['off_cpu_ratio']} / {row['on_cpu_ratio']}",
                ),
                Target(
                    "tracing off: X-Ray SDK not imported",
                    row["off_xray_imported"] == [False],
                    f"{row['off_xray_imported']}",
                ),
                Target(
                    "tracing on: the X-Ray SDK is loaded at import",
                    row["on_xray_imported"] == [True],
                    f"{row['on_xray_imported']}",
                ),
                Target(
                    "first invocation answers 401 (no AWS)",
                    row["off_first_invocation_status"] == [401] and row["on_first_invocation_status"] == [401],
                    f"{row['off_first_invocation_status']} {row['on_first_invocation_status']}",
                ),
            ],
        )
    print_targets(
        "layer",
        [
            Target(
                "no boto3, botocore, s3transfer",
                not layer["layer_bundles"],
                f"{layer['layer_unzipped_mb']} MB unzipped",
            )
        ],
    )
    print(f"\nresults: {write_results('coldstart', rows)}")
