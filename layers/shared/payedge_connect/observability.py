"""Logger, tracer and metrics for every function, in one place.

The service name comes from POWERTOOLS_SERVICE_NAME (set per function in template.yaml).
"""

import logging
import os
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

logger = Logger()
metrics = Metrics()

# Provider calls made in this invocation, by provider (providers/http.py counts every attempt sent).
_provider_calls: Counter[str] = Counter()

# These libraries log whole requests and responses at DEBUG - Secrets Manager bodies and token
# endpoint replies included - so they never go below INFO, whatever LOG_LEVEL the stack runs at.
for _wire_logger in ("botocore", "boto3", "urllib3", "requests_oauthlib", "oauthlib"):
    logging.getLogger(_wire_logger).setLevel(logging.INFO)

# What the functions call out to: AWS through botocore, the providers through requests (patching
# everything the X-Ray SDK knows would import a dozen libraries we never use, and httplib would trace
# every provider call twice).
_TRACED_LIBRARIES = ("botocore", "requests")


class HandlerTracer:
    """Powertools' Tracer around each Lambda handler when tracing is on. When it is off, the handler is
    left as it is: a disabled Tracer still imports the X-Ray SDK (a third of a cold start) and opens a
    no-op subsegment per invocation.

    Off, as Powertools decides it: POWERTOOLS_TRACE_DISABLED is true, or the code is not running in
    Lambda (no LAMBDA_TASK_ROOT: tests, the local stack, benchmarks) or runs in SAM local.
    """

    def __init__(self) -> None:
        disabled = resolve_truthy_env_var_choice(env=os.getenv("POWERTOOLS_TRACE_DISABLED", "false"))
        in_lambda = bool(os.getenv("LAMBDA_TASK_ROOT")) and not os.getenv("AWS_SAM_LOCAL")
        self.tracer = Tracer(patch_modules=_TRACED_LIBRARIES) if in_lambda and not disabled else None

    def capture_lambda_handler[Handler: Callable[..., Any]](self, handler: Handler) -> Handler:
        if self.tracer is None:
            return handler
        return cast(Handler, self.tracer.capture_lambda_handler(handler))


tracer = HandlerTracer()


def count_by_provider(name: str, provider: str, value: int = 1) -> None:
    """A count with the provider as its dimension, written at once (the function's own metrics carry only
    the service's). Outside a function (no metrics namespace) or with metrics disabled there is nowhere
    to send it."""
    if metrics.namespace is None or is_metrics_disabled():
        return
    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=metrics.namespace) as metric:
        metric.add_dimension(name="provider", value=provider)


def count_provider_call(provider: str | None) -> None:
    if provider is not None:  # None: an API built without its provider's name (tests' own)
        _provider_calls[provider] += 1


def flush_provider_calls() -> None:
    """`ProviderCalls` per provider called in this invocation: one line each, not one per call."""
    for provider, calls in sorted(_provider_calls.items()):
        count_by_provider("ProviderCalls", provider, calls)
    _provider_calls.clear()
