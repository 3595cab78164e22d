"""Scenario `contention` (issue 9): six Lambdas, each an OS process of its own, call one organisation at
once, for each provider, with the sandbox 100 ms away at the provider's real limits and DynamoDB in the
moto server (the only thing the processes share, as in AWS).

The Lambdas:
- backfill: full syncs of a 10,000-bill organisation, one after another (scheduled: BACKGROUND);
- webhooks: webhook-triggered syncs of one to three bills every two seconds (BACKGROUND);
- payments-1, payments-2: a payment every two seconds each, processed at once (INTERACTIVE);
- documents-1, documents-2: users opening invoice documents, fetched from the provider on first
  request, one after another (INTERACTIVE).
One connection runs one sync at a time, so the work runs on two connections of the same organisation
(two businesses using one ledger): the backfill is the first connection's first sync; the second
connection, synced before the run, has the webhook syncs, the payments (its two write-back Lambdas
take turns under the connection's write-back lease, as in AWS) and the documents.

Measured: every request the sandbox received for the organisation during the run (its request log),
the busiest 60 s window of them against the sandbox's own limit, the 429s, the payments posted, how
long payments waited for the budget (in-process waits plus the delays they were re-queued with), and
the budget's own DynamoDB requests per provider call.
"""

import json
import logging
import math
import multiprocessing
import os
import random
import statistics
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import boto3

from bench.harness import (
    REAL_LIMITS,
    Target,
    invocation_time_left,
    load_template,
    measure_providers,
    print_table,
    print_targets,
    sandbox_at_real_limits,
    use_fake_aws,
    write_results,
)
from local.sandboxes.generator import exchange_rate, generate_ledger
from local.stack import MotoServer
from local.worlds import API_BASE_URL, SyncWorld, connect, consent, create_records_table
from payedge_connect.models import Connection, Payable, PaymentOrderStatus, Provider, SyncTrigger
from payedge_connect.providers.budget import Priority
from payedge_connect.providers.errors import CallBudgetSpent
from payedge_connect.services import Services
from payedge_connect.settings import SyncSettings
from payedge_connect.sync.documents import DocumentStore
from payedge_connect.sync.engine import STOP_BEFORE_DEADLINE_SECONDS, run_sync
from payedge_connect.sync.requests import request_sync
from payedge_connect.writeback.events import PaymentDetails
from payedge_connect.writeback.orders import WritebackBusy, submit_payment
from payedge_connect.writeback.service import WritebackRetryLater, process_payment

NAME = "contention"
DURATION_S = 180.0
LATENCY_S = 0.1
BILLS = 10_000
SEED = 9
BUS = "default"
SYNC_TIMEOUT_S = 900.0
WRITEBACK_TIMEOUT_S = 90.0
PAYMENT_EVERY_S = 2.0
# A payment submitted before the end is processed to its end, however long the connection stays busy
# (the queue would deliver it again for as long as it takes); this only bounds a bench that hangs.
PAYMENT_GIVE_UP_S = 600.0
WEBHOOK_EVERY_S = 2.0

COLUMNS = [
    "provider",
    "processes",
    "duration_s",
    "provider_calls",
    "max_calls_in_any_window",
    "limit",
    "sandbox_429s",
    "payments_posted",
    "writeback_p95_wait_s",
    "ddb_requests_per_provider_call",
]


@dataclass(frozen=True)
class Role:
    name: str
    kind: str  # backfill | webhooks | payments | documents
    connection_id: str
    environment: dict[str, str]
    duration_s: float
    bill_ids: tuple[str, ...] = ()  # the bills this Lambda pays, opens the document of, or names in webhooks
    base_currency: str = ""  # the organisation's: a payment of a bill in another currency names its rate


def run(providers: Sequence[Provider], *, duration_s: float = DURATION_S) -> None:
    rows = measure_providers(_measure, providers, duration_s=duration_s)
    print_table(f"contention: six Lambdas, one organisation, {duration_s:.0f} s", COLUMNS, rows)
    for row in rows:
        print_targets(
            row["provider"],
            [
                Target("sandbox_429s = 0", row["sandbox_429s"] == 0, str(row["sandbox_429s"])),
                Target(
                    f"max_calls_in_any_window <= {row['limit']}",
                    row["max_calls_in_any_window"] <= row["limit"],
                    str(row["max_calls_in_any_window"]),
                ),
                Target(
                    "ddb_requests_per_provider_call <= 0.5",
                    (row["ddb_requests_per_provider_call"] or 0) <= 0.5,
                    str(row["ddb_requests_per_provider_call"]),
                ),
                Target(
                    "payments_posted = payments", row["payments_posted"] == row["payments"], str(row["payments_posted"])
                ),
            ],
        )
    path = write_results(NAME, rows)
    print(f"results: {path.relative_to(path.parents[2])}")


# ---------------------------------------------------------------------------------------------- set-up


def _measure(provider: Provider, *, duration_s: float) -> dict[str, Any]:
    use_fake_aws()
    # DynamoDB and the rest of AWS in a process of their own, as in AWS: the Lambdas' processes and this
    # one (which serves the provider's sandbox) share nothing else.
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    aws = context.Process(target=serve_moto, args=(ports,), name="moto-server", daemon=True)
    aws.start()
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{ports.get(timeout=120)}"
    boto3.setup_default_session()
    try:
        return _with_aws(provider, duration_s)
    finally:
        os.environ.pop("AWS_ENDPOINT_URL", None)
        boto3.setup_default_session()
        aws.terminate()
        aws.join(timeout=30)


def serve_moto(ports: Any) -> None:
    """The moto server (DynamoDB requests one at a time, as DynamoDB applies conditional writes), until
    terminated; its port goes on `ports`."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # its request lines
    server = MotoServer("127.0.0.1", 0)
    server.start()
    ports.put(server.get_host_and_port()[1])
    threading.Event().wait()


def _with_aws(provider: Provider, duration_s: float) -> dict[str, Any]:
    template = load_template()
    run_id = uuid.uuid4().hex[:8]
    table = create_records_table(template, name=f"records-{run_id}")
    kms_key_arn = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    bucket = f"documents-{run_id}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    ledger = generate_ledger(seed=SEED, bills=BILLS + BILLS // 5, vendors=2000, documents=2000)
    sandbox = sandbox_at_real_limits(provider, latency_s=LATENCY_S)
    with connect(provider, ledger, table=table, kms_key_arn=kms_key_arn, bucket=bucket, sandbox=sandbox) as world:
        world.accept_mapping()
        second = _second_connection(world)
        started = time.perf_counter()
        _sync_to_the_end(world.services, world.documents, second, SyncTrigger.ON_DEMAND, ends_at=math.inf)
        print(f"  {provider.value}: second connection synced in {time.perf_counter() - started:.0f} s", flush=True)
        environment = _environment(world, bucket)
        payables = _open_payables(world.services, second)
        unpaid = [p.bill_id for p in payables]
        documents = [p.bill_id for p in payables if p.document and not p.document.object_key]
        first, other = world.connection.connection_id, second.connection_id
        roles = [
            Role("backfill", "backfill", first, environment, duration_s),
            Role("webhooks", "webhooks", other, environment, duration_s, tuple(unpaid)),
            Role("payments-1", "payments", other, environment, duration_s, tuple(unpaid[0::4]), ledger.base_currency),
            Role("payments-2", "payments", other, environment, duration_s, tuple(unpaid[2::4]), ledger.base_currency),
            Role("documents-1", "documents", other, environment, duration_s, tuple(documents[0::2])),
            Role("documents-2", "documents", other, environment, duration_s, tuple(documents[1::2])),
        ]
        print(f"  {provider.value}: {len(roles)} Lambdas for {duration_s:.0f} s", flush=True)
        first_entry = sandbox.requests.total()
        reports, started_at, ended_at = _run_lambdas(roles)
        entries = [entry for entry in sandbox.requests.entries()[first_entry:] if entry.tenant]
    return _row(provider, roles, reports, entries, started_at, ended_at)


def _second_connection(world: SyncWorld) -> Connection:
    """Another business connects the same organisation (its own grant, through the consent page)."""
    services, provider = world.services, world.provider
    redirect_uri = f"{API_BASE_URL}/oauth/{provider.value}/callback"
    oauth = services.oauth(provider)
    request = oauth.authorization_request(state="second", redirect_uri=redirect_uri)
    params = consent(request.url)
    tokens = oauth.exchange_code(code=params["code"], redirect_uri=redirect_uri, code_verifier=request.code_verifier)
    connection = world.connection.model_copy(
        update={"connection_id": f"{world.connection.connection_id}-2", "business_id": "biz-2", "version": 0}
    )
    services.store.connections.create_connection(connection)
    services.vault.store(connection.connection_id, tokens)
    stored = services.store.connections.get_connection(connection.connection_id)
    assert stored is not None
    return stored


def _environment(world: SyncWorld, bucket: str) -> dict[str, str]:
    """What the functions' environment holds (template.yaml), pointed at the moto server and the sandbox."""
    settings = world.services.settings
    assert isinstance(settings, SyncSettings)
    queues = boto3.client("sqs")
    return {
        "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
        "RECORDS_TABLE_NAME": settings.records_table_name,
        "SECRET_NAME_PREFIX": settings.secret_name_prefix,
        "STACK_KMS_KEY_ARN": settings.stack_kms_key_arn,
        "BUSINESS_ID_CLAIM": settings.business_id_claim,
        "PROVIDER_BASE_URLS": json.dumps({world.provider.value: settings.provider_base_urls[world.provider]}),
        "XERO_SCOPE_SET": settings.xero_scope_set,
        "XERO_DAILY_CALL_LIMIT": str(settings.xero_daily_call_limit),
        "FUNDING_SOURCES": "[]",
        "SYNC_QUEUE_URL": settings.sync_queue_url,
        "DOCUMENTS_BUCKET_NAME": bucket,
        "WRITEBACK_QUEUE_URL": queues.create_queue(QueueName="writeback")["QueueUrl"],
        "WRITEBACK_DEAD_LETTER_QUEUE_URL": queues.create_queue(QueueName="writeback-dlq")["QueueUrl"],
        "PLATFORM_EVENT_BUS_NAME": BUS,
    }


def _sync_to_the_end(
    services: Services,
    documents: DocumentStore,
    connection: Connection,
    trigger: SyncTrigger,
    *,
    ends_at: float,
    full: bool = False,
    bill_ids: Sequence[str] = (),
) -> None:
    """One sync, continued as the queue would (after the delay it asks for), until it is done or the run
    is over (its invocations are told the run's end as their deadline, so they stop at a checkpoint)."""
    current = services.store.connections.get_connection(connection.connection_id) or connection
    run, _ = request_sync(services, current, trigger, full=full)
    while time.monotonic() < ends_at:
        # The engine stops STOP_BEFORE_DEADLINE_SECONDS before its deadline: that moment is the run's end.
        until_end = ends_at - time.monotonic() + STOP_BEFORE_DEADLINE_SECONDS
        time_left = invocation_time_left(min(SYNC_TIMEOUT_S, until_end))
        result = run_sync(services, run, documents=documents, time_left=time_left, full=full, bill_ids=bill_ids)
        if result.continue_after_seconds is None:
            return
        time.sleep(min(result.continue_after_seconds, 30, max(0.0, ends_at - time.monotonic())))
        run = result.run


# ---------------------------------------------------------------------------------------------- the Lambdas


def _run_lambdas(roles: list[Role]) -> tuple[dict[str, dict[str, Any]], float, float]:
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(len(roles) + 1), context.Queue()
    processes = [context.Process(target=run_role, args=(role, ready, results), name=role.name) for role in roles]
    for process in processes:
        process.start()
    ready.wait()
    started_at = time.time()
    reports = [results.get(timeout=max(role.duration_s for role in roles) + 900) for _ in processes]
    ended_at = time.time()
    for process in processes:
        process.join(timeout=60)
    return {report["name"]: report for report in reports}, started_at, ended_at


def run_role(role: Role, ready: Any, results: Any) -> None:
    """One Lambda's life for the run (in its own process): its settings from the environment, as AWS
    gives them; its work until the run's time is up; then what it saw."""
    os.environ.update(role.environment)
    use_fake_aws()
    os.environ["AWS_ENDPOINT_URL"] = role.environment["AWS_ENDPOINT_URL"]
    report: dict[str, Any] = {"name": role.name, "error": None, "payments": [], "documents": 0, "syncs": 0}
    services = Services(SyncSettings.model_validate(dict(os.environ)))
    connection = services.store.connections.get_connection(role.connection_id)
    assert connection is not None and connection.tenant_id is not None
    budget = services.call_budget(connection.provider, connection.tenant_id)
    ready.wait()
    ends_at = time.monotonic() + role.duration_s
    try:
        work = {"backfill": _backfill, "webhooks": _webhooks, "payments": _payments, "documents": _documents}
        work[role.kind](services, role, connection, ends_at, report)
    except Exception:
        report["error"] = traceback.format_exc(limit=5)
    report["budget_requests"] = services.budget_store.requests
    report["budget_bookings_lost"] = services.budget_store.lost
    report["budget_calls"] = budget.granted
    report["budget_waits"] = budget.waits
    report["budget_waited_s"] = round(budget.waited_seconds, 2)
    results.put(report)


def _documents_of(services: Services, role: Role) -> DocumentStore:
    return DocumentStore(role.environment["DOCUMENTS_BUCKET_NAME"], services.store)


def _backfill(services: Services, role: Role, connection: Connection, ends_at: float, report: dict[str, Any]) -> None:
    documents = _documents_of(services, role)
    while time.monotonic() < ends_at:
        _sync_to_the_end(services, documents, connection, SyncTrigger.SCHEDULE, ends_at=ends_at, full=True)
        report["syncs"] += 1


def _webhooks(services: Services, role: Role, connection: Connection, ends_at: float, report: dict[str, Any]) -> None:
    documents = _documents_of(services, role)
    chooser = random.Random(SEED)  # which bills a webhook names
    while time.monotonic() < ends_at:
        named = chooser.sample(role.bill_ids, chooser.randint(1, 3))
        _sync_to_the_end(services, documents, connection, SyncTrigger.WEBHOOK, ends_at=ends_at, bill_ids=named)
        report["syncs"] += 1
        time.sleep(WEBHOOK_EVERY_S)


def _payments(services: Services, role: Role, connection: Connection, ends_at: float, report: dict[str, Any]) -> None:
    budget = services.call_budget(connection.provider, connection.tenant_id or "")
    for number, bill_id in enumerate(role.bill_ids):
        if time.monotonic() >= ends_at:
            return
        payable = services.store.payables.get_payable(connection.connection_id, bill_id)
        if payable is None or payable.status.value == "closed":
            continue
        waited_before, requeued = budget.waited_seconds, 0.0
        order = submit_payment(
            services,
            _details(payable, f"PO-{role.name}-{number:05d}", role.base_currency),
            business_id=connection.business_id,
            connection_id=connection.connection_id,
        )
        give_up_at = time.monotonic() + PAYMENT_GIVE_UP_S
        while time.monotonic() < give_up_at:
            try:
                order = process_payment(services, order.connection_id, order.payment_order_number, bus_name=BUS)
                break
            except (WritebackBusy, WritebackRetryLater, CallBudgetSpent) as later:
                delay = float(getattr(later, "delay_seconds", None) or 5)
                if isinstance(later, WritebackRetryLater) and later.delay_seconds:
                    requeued += delay  # the budget named the wait: the queue would deliver it again then
                time.sleep(min(delay, 30))
        report["payments"].append(
            {
                "status": order.status.value,
                "reason": order.reason_code,
                "words": order.reason,
                "waited_s": round(budget.waited_seconds - waited_before + requeued, 2),
            }
        )
        time.sleep(PAYMENT_EVERY_S)


def _documents(services: Services, role: Role, connection: Connection, ends_at: float, report: dict[str, Any]) -> None:
    documents = _documents_of(services, role)
    connector = services.connector(connection.provider)
    for bill_id in role.bill_ids:
        if time.monotonic() >= ends_at:
            return
        payable = services.store.payables.get_payable(connection.connection_id, bill_id)
        if payable is None or payable.document is None or payable.document.object_key:
            continue
        try:
            documents.fetch_into_bucket(connector, services.api(connection, priority=Priority.INTERACTIVE), payable)
        except CallBudgetSpent as spent:
            time.sleep(min(spent.retry_after or 1, 10))  # the user is told to try again shortly
            continue
        report["documents"] += 1


def _open_payables(services: Services, connection: Connection) -> list[Payable]:
    payables: list[Payable] = []
    cursor = None
    while True:
        page = services.store.payables.list_payables(connection.connection_id, status=None, limit=100, cursor=cursor)
        payables.extend(p for p in page.items if p.status.value != "closed")
        cursor = page.next_cursor
        if cursor is None:
            return sorted(payables, key=lambda p: p.bill_id)


def _details(payable: Payable, number: str, base_currency: str) -> PaymentDetails:
    """As the platform reports a payment: in the bill's currency, with the rate it paid at when that is
    not the organisation's (QuickBooks refuses a foreign-currency payment without one)."""
    foreign = payable.currency != base_currency
    return PaymentDetails.model_validate(
        {
            "payment_order_number": number,
            "bill_id": payable.bill_id,
            "vendor_name": payable.vendor_name,
            "currency": payable.currency,
            "amount": str(payable.amount_due),
            "remittance_note": "Paid by PayEdge",
            "invoice_number": payable.invoice_number,
            "payment_status": "completed",
            "payment_date": date(2026, 11, 24).isoformat(),
            "funding_source": f"{payable.currency.lower()}-operating",
            "exchange_rate": str(exchange_rate(payable.currency, base_currency)) if foreign else None,
        }
    )


# ---------------------------------------------------------------------------------------------- figures


def _busiest_window(moments: list[float], seconds: float = 60.0) -> int:
    moments.sort()
    busiest, first = 0, 0
    for last, moment in enumerate(moments):
        while moment - moments[first] >= seconds:
            first += 1
        busiest = max(busiest, last - first + 1)
    return busiest


def _row(
    provider: Provider,
    roles: list[Role],
    reports: dict[str, dict[str, Any]],
    entries: list[Any],
    started_at: float,
    ended_at: float,
) -> dict[str, Any]:
    payments = [payment for report in reports.values() for payment in report["payments"]]
    waits = sorted(payment["waited_s"] for payment in payments)
    p95 = waits[min(len(waits) - 1, int(len(waits) * 0.95))] if waits else None
    calls = len(entries)
    budget_requests = sum(report.get("budget_requests", 0) for report in reports.values())
    errors = {name: report["error"] for name, report in reports.items() if report["error"]}
    for name, error in errors.items():
        print(f"  {provider.value} {name} stopped: {error}", flush=True)
    return {
        "provider": provider.value,
        "processes": len(roles),
        "duration_s": round(ended_at - started_at, 1),
        "provider_calls": calls,
        "max_calls_in_any_window": _busiest_window([entry.at.timestamp() for entry in entries]),
        "limit": REAL_LIMITS[provider]["per_minute"],
        "sandbox_429s": sum(1 for entry in entries if entry.status == 429),
        "payments_posted": sum(1 for p in payments if p["status"] == PaymentOrderStatus.POSTED.value),
        "payments": len(payments),
        "not_posted_because": sorted({p["words"] for p in payments if p["status"] != "posted" and p["words"]})[:5],
        "payment_statuses": dict(
            sorted(Counter(f"{p['status']} {p['reason'] or ''}".strip() for p in payments).items())
        ),
        "writeback_p95_wait_s": p95,
        "writeback_median_wait_s": statistics.median(waits) if waits else None,
        "ddb_requests_per_provider_call": round(budget_requests / calls, 3) if calls else None,
        "calls_by_lambda": {
            name: {
                "syncs": report["syncs"],
                "documents": report["documents"],
                "payments": len(report["payments"]),
                "budget_requests": report.get("budget_requests"),
                "budget_bookings_lost": report.get("budget_bookings_lost"),
                "budget_calls": report.get("budget_calls"),
                "budget_waits": report.get("budget_waits"),
                "budget_waited_s": report.get("budget_waited_s"),
            }
            for name, report in sorted(reports.items())
        },
        "calls_by_endpoint": dict(sorted(_by_endpoint(entries).items())),
        "errors": errors,
    }


def _by_endpoint(entries: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.endpoint] = counts.get(entry.endpoint, 0) + 1
    return counts
