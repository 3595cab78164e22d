"""What the scenarios share: AWS in moto, provider sandboxes at the providers' real rate limits, the
sandboxes' request logs and the service's DynamoDB writes counted, the sync worker's continuation
loop, and the table and JSON file each scenario reports."""

import json
import multiprocessing
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws
from werkzeug.wrappers import Request, Response

from bench import ROOT
from local.sandboxes.core import Clock
from local.sandboxes.quickbooks.query import QueryError, parse_query
from local.sandboxes.quickbooks.sandbox import QuickBooksSandbox
from local.sandboxes.sage.sandbox import SageSandbox
from local.sandboxes.xero.limits import XeroLimits
from local.sandboxes.xero.sandbox import XeroSandbox
from local.template import load_sam_template
from local.worlds import Sandbox, SyncWorld, create_records_table
from payedge_connect.models import Provider
from payedge_connect.sync.engine import SyncResult

TEMPLATE = ROOT / "template.yaml"
RESULTS = ROOT / "bench" / "results"
PROVIDERS = (Provider.QUICKBOOKS, Provider.XERO, Provider.SAGE)

# The providers' published limits per organisation (docs/providers.md), which the sandboxes enforce here.
REAL_LIMITS: dict[Provider, dict[str, int]] = {
    Provider.QUICKBOOKS: {"per_minute": 500, "concurrent": 10},
    Provider.XERO: {"per_minute": 60, "concurrent": 5, "per_day": 5000},
    Provider.SAGE: {"per_minute": 200},
}


def describe_limits(provider: Provider) -> str:
    return ", ".join(f"{value:,} {name.replace('_', ' ')}" for name, value in REAL_LIMITS[provider].items())


# ---------------------------------------------------------------------------------------------- DynamoDB writes


def record_kind(sort_key: str) -> str:
    """The kind of records-table item a sort key names (key design: storage/__init__.py)."""
    if sort_key.startswith("PAYABLE#"):
        return "payable"
    if sort_key.startswith("VENDOR#"):
        return "vendor"
    if sort_key.startswith("SYNCRUN#"):
        return "seen_bills" if "#SEEN#" in sort_key else "sync_run"
    if sort_key.startswith("LEASE#"):
        return "lease"
    if sort_key == "SYNC#ACTIVE":
        return "sync_slot"
    if sort_key == "SYNC#STATE":
        return "sync_state"
    if sort_key.startswith("PAYMENT#"):
        return "payment_order"
    if sort_key == "CONNECTION":
        return "connection"
    return "other"


# What a payable or vendor write means: data the business sees. The rest is the sync's bookkeeping.
DATA_KINDS = frozenset({"payable", "vendor"})


def _sort_key(key: Mapping[str, Any]) -> str:
    value = key["SK"]
    # The resource layer's serializer may already have typed the value ({"S": "..."}).
    return str(value["S"] if isinstance(value, Mapping) else value)


def _written_sort_keys(operation: str, params: Mapping[str, Any]) -> list[str]:
    if operation == "PutItem":
        return [_sort_key(params["Item"])]
    if operation in ("UpdateItem", "DeleteItem"):
        return [_sort_key(params["Key"])]
    if operation == "BatchWriteItem":
        keys = []
        for requests in params.get("RequestItems", {}).values():
            for request in requests:
                if "PutRequest" in request:
                    keys.append(_sort_key(request["PutRequest"]["Item"]))
                else:
                    keys.append(_sort_key(request["DeleteRequest"]["Key"]))
        return keys
    if operation == "TransactWriteItems":
        keys = []
        for item in params.get("TransactItems", []):
            if "Put" in item:
                keys.append(_sort_key(item["Put"]["Item"]))
            elif "Update" in item or "Delete" in item:
                keys.append(_sort_key((item.get("Update") or item["Delete"])["Key"]))
        return keys
    return []


def _items_read(operation: str, parsed: Mapping[str, Any]) -> int:
    if operation in ("Query", "Scan"):
        # What DynamoDB read to answer (and bills), filtered or counted-only answers included.
        return int(parsed.get("ScannedCount", parsed.get("Count", len(parsed.get("Items", [])))))
    if operation == "GetItem":
        return 1 if "Item" in parsed else 0
    if operation == "BatchGetItem":
        return sum(len(items) for items in parsed.get("Responses", {}).values())
    if operation == "TransactGetItems":
        return len(parsed.get("Responses", []))
    return 0


@dataclass(frozen=True)
class DynamoCounts:
    written: Counter[str]  # items written, by kind of record
    read: Counter[str]  # items read, by operation
    requests: Counter[str] = field(default_factory=Counter)  # requests answered (refused ones too), by operation

    def __sub__(self, earlier: "DynamoCounts") -> "DynamoCounts":
        return DynamoCounts(self.written - earlier.written, self.read - earlier.read, self.requests - earlier.requests)


class DynamoItems:
    """Items the service writes to DynamoDB (by kind of record) and reads (by operation).

    Counted from the requests boto3 sends: handlers on boto3's default session (every client made after
    `install` inherits them) note the items of each PutItem, UpdateItem, DeleteItem, BatchWriteItem and
    TransactWriteItems before it is sent, and count them once DynamoDB (moto) answered 200, less any
    UnprocessedItems. A conditional write DynamoDB refused is not counted; a delete counts as a write.
    Reads: the items a Query or Scan examined (ScannedCount), and those GetItem, BatchGetItem and
    TransactGetItems returned. Requests: every one answered, by operation (a refused conditional write
    costs DynamoDB a write too).
    """

    _CONTEXT_KEY = "bench.dynamodb_writes"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._written: Counter[str] = Counter()
        self._read: Counter[str] = Counter()
        self._requests: Counter[str] = Counter()

    def install(self) -> None:
        """Count the items of the clients made from now on by boto3's default session."""
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        session = boto3.DEFAULT_SESSION
        assert session is not None
        session.events.register("before-parameter-build.dynamodb", self._before_call)
        session.events.register("after-call.dynamodb", self._after_call)

    def snapshot(self) -> DynamoCounts:
        with self._lock:
            return DynamoCounts(Counter(self._written), Counter(self._read), Counter(self._requests))

    def _before_call(self, params: Mapping[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        keys = _written_sort_keys(model.name, params)
        if keys:
            context[self._CONTEXT_KEY] = keys

    def _after_call(
        self, http_response: Any, parsed: Mapping[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        keys = context.pop(self._CONTEXT_KEY, None)
        with self._lock:
            self._requests[model.name] += 1
        if http_response.status_code != 200:
            return
        written = Counter(record_kind(key) for key in keys or [])
        if model.name == "BatchWriteItem":
            unprocessed = {"RequestItems": parsed.get("UnprocessedItems") or {}}
            written.subtract(record_kind(key) for key in _written_sort_keys("BatchWriteItem", unprocessed))
        read = _items_read(model.name, parsed)
        with self._lock:
            self._written.update(written)
            if read:
                self._read[model.name] += read


DYNAMODB = DynamoItems()


def data_items(writes: Counter[str]) -> int:
    return sum(count for kind, count in writes.items() if kind in DATA_KINDS)


# ---------------------------------------------------------------------------------------------- AWS


def use_fake_aws() -> None:
    """Fake credentials for this process, so no real AWS call can escape moto; loopback OAuth allowed."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    # oauthlib refuses plain http; the sandboxes listen on loopback without TLS.
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"


def load_template() -> dict[str, Any]:
    return load_sam_template(TEMPLATE)


def function_timeout(template: Mapping[str, Any], logical_id: str) -> float:
    """A function's Timeout in template.yaml (its own, else the Globals')."""
    own = template["Resources"][logical_id]["Properties"].get("Timeout")
    return float(own if own is not None else template["Globals"]["Function"]["Timeout"])


@dataclass(frozen=True)
class Aws:
    table: str
    kms_key_arn: str
    bucket: str


@contextmanager
def mocked_aws(template: Mapping[str, Any]) -> Iterator[Aws]:
    """A fresh moto account holding the records table (as template.yaml shapes it), a KMS key and a bucket."""
    with mock_aws():  # which starts boto3 without a default session: the counter installs on the new one
        DYNAMODB.install()
        parameters.clear_caches()  # Powertools caches the provider app secrets across moto accounts
        table = create_records_table(template)
        key_arn = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
        boto3.client("s3").create_bucket(Bucket="documents")
        yield Aws(table=table, kms_key_arn=key_arn, bucket="documents")


# ---------------------------------------------------------------------------------------------- sandboxes


class QuickBooksWithQueryTally(QuickBooksSandbox):
    """The QuickBooks sandbox, also counting the `query` requests it answers by the entity queried: its
    request log names endpoints, and Bill, Vendor and Attachable queries all use the one `query` endpoint.
    (A query refused by the rate limit never reaches the handler: the log has it, this tally does not.)"""

    def __init__(self, *, clock: Clock) -> None:
        super().__init__(clock=clock, auto_approve=True)
        self._tally_lock = threading.Lock()
        self.queries: Counter[str] = Counter()

    def query(self, request: Request, realm_id: str) -> Response:
        text = request.args.get("query") if request.method == "GET" else request.get_data(as_text=True)
        try:
            entity = parse_query(text or "").entity.lower()
        except QueryError:
            entity = "unparsable"
        with self._tally_lock:
            self.queries[entity] += 1
        return super().query(request, realm_id)


def sandbox_at_real_limits(provider: Provider, *, latency_s: float) -> Sandbox:
    """A new sandbox of `provider` that answers every call `latency_s` late, at the provider's real limits."""
    limits = REAL_LIMITS[provider]
    sandbox: Sandbox
    if provider is Provider.QUICKBOOKS:
        sandbox = QuickBooksWithQueryTally(clock=Clock())
        sandbox.set_rate_limits(per_minute=limits["per_minute"], concurrent=limits["concurrent"])
    elif provider is Provider.XERO:
        xero_limits = XeroLimits(
            tenant_per_minute=limits["per_minute"],
            tenant_concurrent=limits["concurrent"],
            tenant_per_day=limits["per_day"],
        )
        sandbox = XeroSandbox(clock=Clock(), auto_approve=True, limits=xero_limits)
    else:
        sandbox = SageSandbox(clock=Clock(), auto_approve=True, rate_limit_per_minute=limits["per_minute"])
    sandbox.faults.add_latency(latency_s)
    return sandbox


@dataclass(frozen=True)
class Calls:
    """Requests a sandbox received during a window, by endpoint name, from its request log. QuickBooks'
    `query` endpoint is split by entity ("query:bill", "query:vendor", "query:attachable", ...)."""

    by_endpoint: Counter[str]
    throttled: int  # answered 429

    @property
    def total(self) -> int:
        return sum(self.by_endpoint.values())

    def of(self, endpoints: frozenset[str]) -> int:
        return sum(count for endpoint, count in self.by_endpoint.items() if endpoint in endpoints)


class RequestWindow:
    """Counts what a sandbox receives from now on (or from its start: `from_start=True`)."""

    def __init__(self, sandbox: Sandbox, *, from_start: bool = False) -> None:
        self._sandbox = sandbox
        self._start = 0 if from_start else sandbox.requests.total()
        self._queries = Counter() if from_start else Counter(_query_tally(sandbox))

    def calls(self) -> Calls:
        entries = self._sandbox.requests.entries()[self._start :]
        by_endpoint = Counter(entry.endpoint for entry in entries)
        queries = _query_tally(self._sandbox) - self._queries
        if queries:
            by_endpoint["query"] -= sum(queries.values())
            by_endpoint.update({f"query:{entity}": count for entity, count in queries.items()})
            by_endpoint = +by_endpoint  # drop "query" when every query was tallied
        return Calls(by_endpoint=by_endpoint, throttled=sum(1 for entry in entries if entry.status == 429))


def _query_tally(sandbox: Sandbox) -> Counter[str]:
    return Counter(sandbox.queries) if isinstance(sandbox, QuickBooksWithQueryTally) else Counter()


# ---------------------------------------------------------------------------------------------- sync worker


def invocation_time_left(timeout_s: float) -> Callable[[], float]:
    """What Lambda's context tells a function: the time left of this invocation."""
    deadline = time.monotonic() + timeout_s
    return lambda: deadline - time.monotonic()


@dataclass
class DrivenSync:
    result: SyncResult
    invocations: int = 1
    # Pauses that followed 429 answers: slept as asked (the queue's delay), and a failure of our budget.
    throttled_pauses: int = 0
    throttled_sleep_s: float = 0.0
    # Other pauses (lease busy, time limit near, provider trouble): continued at once.
    other_pauses: int = 0
    pause_details: list[str] = field(default_factory=list)


def sync_until_done(world: SyncWorld, *, function_timeout_s: float, max_invocations: int = 100) -> DrivenSync:
    """What the sync queue and worker do for one requested sync: run it, and while it asks to continue,
    run the same sync again. Each invocation gets the function's full timeout."""
    window = RequestWindow(world.sandbox)
    driven = DrivenSync(world.sync(time_left=invocation_time_left(function_timeout_s)))
    while driven.result.continue_after_seconds is not None:
        if driven.invocations >= max_invocations:
            raise RuntimeError(f"the sync still asked to continue after {max_invocations} invocations")
        driven.pause_details.append(driven.result.run.detail or "")
        if window.calls().throttled:
            driven.throttled_pauses += 1
            driven.throttled_sleep_s += driven.result.continue_after_seconds
            time.sleep(driven.result.continue_after_seconds)
        else:
            driven.other_pauses += 1
        window = RequestWindow(world.sandbox)
        driven.result = world.run(driven.result.run, time_left=invocation_time_left(function_timeout_s))
        driven.invocations += 1
    return driven


# ---------------------------------------------------------------------------------------------- providers at once


def measure_providers(
    measure: Callable[..., dict[str, Any]], providers: Sequence[Provider], **options: Any
) -> list[dict[str, Any]]:
    """A row per provider from `measure(provider, **options)`, in the order given. Two or more run at
    once, each in an OS process of its own: their sandboxes, organisations and moto accounts share
    nothing, so the scenario takes as long as its slowest provider (they share the machine's cores)."""
    if len(providers) == 1:
        return [measure(providers[0], **options)]
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        paths = [Path(folder) / f"{provider.value}.json" for provider in providers]
        processes = [
            context.Process(
                target=_measure_to_file, args=(measure, provider, options, path), name=f"bench-{provider.value}"
            )
            for provider, path in zip(providers, paths, strict=True)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        failed = [p.name for p, path in zip(processes, paths, strict=True) if p.exitcode != 0 or not path.exists()]
        if failed:
            raise RuntimeError(f"{', '.join(failed)} ended without a result (its traceback is above)")
        return [json.loads(path.read_text()) for path in paths]


def _measure_to_file(
    measure: Callable[..., dict[str, Any]], provider: Provider, options: dict[str, Any], path: Path
) -> None:
    use_fake_aws()
    row = measure(provider, **options)
    path.write_text(json.dumps(row, default=str))


# ---------------------------------------------------------------------------------------------- reporting


@dataclass(frozen=True)
class Target:
    name: str
    passed: bool
    measured: str


def print_targets(provider: str, targets: Sequence[Target]) -> None:
    for target in targets:
        print(f"  {'PASS' if target.passed else 'FAIL'}  {provider:<10}  {target.name:<62}  {target.measured}")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[index]) for line in cells)) for index, column in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(column.rjust(width) for column, width in zip(columns, widths, strict=True)))
    print("  ".join("-" * width for width in widths))
    for line in cells:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def write_results(scenario: str, rows: Sequence[Mapping[str, Any]]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{scenario}.json"
    path.write_text(json.dumps(list(rows), indent=2, default=str) + "\n")
    return path
