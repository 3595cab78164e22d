"""Scenario `fleet` (issue 13): 10,000 connections through a simulated day, the dispatch over 100,000
connection records, and 30 days of record lifetimes.

AWS is moto (bench/moto_index.py lets a Query read only its partition, as DynamoDB does), the clock
is the sandboxes' controllable one, and the three sandboxes hold many small organisations:

- day: 10,000 connections (a third per provider); every 15-minute tick of a day the service's own
  dispatch (`dispatch_due`) runs over all of them. A random sample of SAMPLE connections is real:
  organisations in the sandboxes whose books change at a realistic rate (PROFILES, business hours),
  QuickBooks and Xero webhooks delivered to the service's webhook handling, every sync run by the
  sync engine as the worker runs it. The other connections are records only: a stand-in worker ends
  each of their runs at once, with the engine's own schedule (`schedule.after_run`) and the store's
  own writes. Per-connection figures come from the sample; dispatch's figures from the whole fleet.
- 100,000: 90,000 more connection records, due as a steady state spreads them; one dispatch tick.
- month: MONTH_CONNECTIONS sample connections in their own table for MONTH_DAYS days (hourly ticks,
  each queued when due), expired items removed the way DynamoDB TTL removes them; stored items
  counted every few days.

The worker queue is modelled, not run: WORKER_CONCURRENCY workers (the template's
MaximumConcurrency) take the tick's syncs in arrival order, each taking PROVIDER_LATENCY_S per
provider call it made (measured) plus SYNC_OVERHEAD_S; `max_queue_age_s` is the longest wait.
"""

import heapq
import json
import math
import multiprocessing
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr

from bench.harness import (
    DYNAMODB,
    RESULTS,
    Aws,
    load_template,
    mocked_aws,
    print_table,
    use_fake_aws,
    write_results,
)
from bench.moto_index import (
    constant_time_sends,
    delete_items_directly,
    items_directly,
    partition_lookups,
    put_items_directly,
    take_messages_directly,
)
from local.sandboxes.core import Clock
from local.sandboxes.generator import generate_ledger
from local.sandboxes.quickbooks.sandbox import QuickBooksSandbox
from local.sandboxes.sage.sandbox import SageSandbox
from local.sandboxes.xero.sandbox import XeroSandbox
from local.worlds import (
    API_BASE_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    SECRET_PREFIX,
    WEBHOOK_KEY,
    consent,
    create_records_table,
)
from payedge_connect.models import (
    AccountMapping,
    Connection,
    ConnectionStatus,
    Provider,
    SyncOutcome,
    SyncSchedule,
    SyncSummary,
    SyncTrigger,
)
from payedge_connect.services import Services
from payedge_connect.settings import SyncSettings
from payedge_connect.storage import RecordsStore
from payedge_connect.storage.connections import CONNECTION_SHARDS
from payedge_connect.sweep import sweep
from payedge_connect.sync import schedule
from payedge_connect.sync.dispatch import PARALLEL_SHARDS, dispatch_due
from payedge_connect.sync.documents import DocumentStore
from payedge_connect.sync.engine import run_sync
from payedge_connect.sync.requests import SyncMessage, new_sync_run, request_sync, send_sync_messages
from payedge_connect.sync.webhooks import handle_webhook

NAME = "fleet"
SEED = 13
CONNECTIONS = 10_000
LARGE_FLEET = 100_000
SAMPLE = 500
TICK = timedelta(minutes=15)
TICKS_PER_DAY = 96
MONTH_CONNECTIONS = 3
# The day before the measured one: the sample's first syncs spread over its first hours.
WARM_UP_TICKS = 16
MONTH_DAYS = 30
PROVIDERS = (Provider.QUICKBOOKS, Provider.XERO, Provider.SAGE)
# Organisations by how often their payables change (bills paid elsewhere, part-paid, amended), per
# business day, between 08:00 and 18:00 UTC. A small business's AP: a few bills a day at most.
PROFILES = (("dormant", 0.3, 0.0), ("light", 0.5, 2.0), ("busy", 0.2, 8.0))
BUSINESS_HOURS = range(8, 18)
# Queue model. Provider latency: what a listing call costs at the real APIs (an assumption, between
# the sandboxes' 100 ms in the sync scenario and the seconds a large page can take).
PROVIDER_LATENCY_S = 0.3
SYNC_OVERHEAD_S = 0.2
FUNCTION_MEMORY_GB = 0.5
# The sweeper reads every shard of the in-flight index (sweep.py: orders and sync slots under way) and of
# the authorizing connections' status.
SWEPT_INDEXES = 2
SWEEPS_PER_DAY = 96
SWEEP_TIMEOUT_S = 300.0  # the write-back function's, which runs the sweep (template.yaml)


# ---------------------------------------------------------------------------------------------- world


class _InProcessWebhooks:
    """A sandbox that hands its signed webhook deliveries to a callback instead of POSTing them."""

    deliver: Callable[[bytes, dict[str, str]], None] | None = None

    def post_webhook(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        if self.deliver is not None:
            self.deliver(body, headers)


class QuickBooks(_InProcessWebhooks, QuickBooksSandbox):
    pass


class Xero(_InProcessWebhooks, XeroSandbox):
    pass


@dataclass
class Member:
    """A sample connection: a real organisation at a sandbox."""

    connection_id: str
    provider: Provider
    tenant_id: str
    changes_per_day: float
    syncs: int = 0
    webhook_syncs: int = 0
    ddb_read: int = 0
    ddb_written: int = 0
    service_times: list[float] = field(default_factory=list)


@dataclass
class Other:
    """A records-only connection: its stored record (only the stand-in worker changes it), how often its
    books change, and when its last run ended."""

    connection: Connection
    changes_per_day: float
    last_run: datetime


@dataclass
class Fleet:
    clock: Clock
    sandboxes: dict[Provider, Any]
    services: Services
    documents: DocumentStore
    queue_url: str
    members: dict[str, Member] = field(default_factory=dict)
    # The records-only connections, as the stand-in worker last left them.
    others: dict[str, "Other"] = field(default_factory=dict)
    webhook_arrivals: list[tuple[float, str]] = field(default_factory=list)
    tick_start: float = 0.0
    # Items the sample's syncs and webhooks wrote, by kind of record (leases: the heartbeat's).
    sample_written: Counter[str] = field(default_factory=Counter)


def _services(aws: Aws, table: str, base_urls: dict[Provider, str], queue_url: str, clock: Clock) -> Services:
    settings = SyncSettings.model_validate(
        {
            "RECORDS_TABLE_NAME": table,
            "SECRET_NAME_PREFIX": SECRET_PREFIX,
            "STACK_KMS_KEY_ARN": aws.kms_key_arn,
            "BUSINESS_ID_CLAIM": "business_id",
            "PROVIDER_BASE_URLS": json.dumps({p.value: url for p, url in base_urls.items()}),
            "XERO_SCOPE_SET": "granular",
            "XERO_DAILY_CALL_LIMIT": "5000",
            "FUNDING_SOURCES": json.dumps([{"id": "cad-operating", "name": "CAD operating", "currency": "CAD"}]),
            "SYNC_QUEUE_URL": queue_url,
            "DOCUMENTS_BUCKET_NAME": aws.bucket,
        }
    )
    return Services(settings, clock=clock.now)


def _start_sandboxes(clock: Clock) -> dict[Provider, Any]:
    sandboxes: dict[Provider, Any] = {
        Provider.QUICKBOOKS: QuickBooks(clock=clock, auto_approve=True),
        Provider.XERO: Xero(clock=clock, auto_approve=True),
        Provider.SAGE: SageSandbox(clock=clock, auto_approve=True),
    }
    for provider, sandbox in sandboxes.items():
        sandbox.register_app(CLIENT_ID, CLIENT_SECRET, [f"{API_BASE_URL}/oauth/{provider.value}/callback"])
        sandbox.start()
    sandboxes[Provider.QUICKBOOKS].configure_webhooks(f"{API_BASE_URL}/webhooks/quickbooks", WEBHOOK_KEY)
    sandboxes[Provider.XERO].configure_webhook(CLIENT_ID, f"{API_BASE_URL}/webhooks/xero", key=WEBHOOK_KEY)
    return sandboxes


def _register_app_secrets() -> None:
    for provider in PROVIDERS:
        boto3.client("secretsmanager").create_secret(
            Name=f"{SECRET_PREFIX}apps/{provider.value}",
            SecretString=json.dumps({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "webhookKey": WEBHOOK_KEY}),
        )


def _connection(connection_id: str, provider: Provider, tenant_id: str, now: datetime, **extra: Any) -> Connection:
    return Connection(
        connection_id=connection_id,
        business_id=f"biz-{connection_id}",
        provider=provider,
        status=ConnectionStatus.CONNECTED,
        tenant_id=tenant_id,
        tenant_name=f"Organisation {connection_id}",
        mapping=AccountMapping(funding_sources={}, accepted_at=now),
        created_at=now,
        updated_at=now,
        **extra,
    )


def _connect_member(fleet: Fleet, member: Member, bills: int, seed: int) -> None:
    """A business connects its organisation the way a user does: consent (auto-approved), the code."""
    sandbox = fleet.sandboxes[member.provider]
    ledger = generate_ledger(seed=seed, bills=bills, vendors=max(4, bills // 4), documents=0)
    member.tenant_id = sandbox.add_tenant(ledger, name=f"{ledger.company_name} {member.connection_id}")
    if member.provider is Provider.QUICKBOOKS:
        sandbox.approve_realm = member.tenant_id
    elif member.provider is Provider.XERO:
        sandbox.auto_approve_tenants = [member.tenant_id]
    redirect_uri = f"{API_BASE_URL}/oauth/{member.provider.value}/callback"
    oauth = fleet.services.oauth(member.provider)
    request = oauth.authorization_request(state="s", redirect_uri=redirect_uri)
    params = consent(request.url)
    tokens = oauth.exchange_code(code=params["code"], redirect_uri=redirect_uri, code_verifier=request.code_verifier)
    now = fleet.clock.now()
    fleet.services.store.connections.create_connection(
        _connection(member.connection_id, member.provider, member.tenant_id, now)
    )
    fleet.services.vault.store(member.connection_id, tokens)


def _steady_schedule(rng: random.Random, provider: Provider, now: datetime) -> SyncSchedule:
    """A records-only connection's schedule as a steady state would leave it: due somewhere within its
    current interval, with an idle streak from 0 to 4."""
    idle = rng.randrange(5)
    policy = schedule.POLL_POLICIES[provider]
    interval = min(policy.interval * 2**idle, policy.longest_idle_interval)
    return SyncSchedule(next_due_at=now + interval * rng.random(), idle_runs=idle)


def _put_records_only(store: RecordsStore, connections: Sequence[Connection], *, lookups: bool = True) -> None:
    """The items create_connection writes (the connection and its tenant look-up), straight into moto's
    table: set-up, not what the scenario measures."""
    items = [store.connections._connection_item(connection) for connection in connections]
    if lookups:
        items += [
            {
                "PK": f"TENANT#{connection.provider.value}#{connection.tenant_id}",
                "SK": f"CONNECTION#{connection.connection_id}",
                "recordType": "tenantLookup",
            }
            for connection in connections
        ]
    put_items_directly(store.table.name, items)


def _profile(rng: random.Random) -> float:
    draw, total = rng.random(), 0.0
    for _, share, rate in PROFILES:
        total += share
        if draw < total:
            return rate
    return PROFILES[-1][2]


# ---------------------------------------------------------------------------------------------- running


def _change_books(fleet: Fleet, rng: random.Random, members: Sequence[Member], ticks_per_hour: int) -> None:
    """Business-hours changes at the providers: a bill paid elsewhere, part-paid, or amended."""
    if fleet.clock.now().hour not in BUSINESS_HOURS:
        return
    for member in members:
        if rng.random() >= member.changes_per_day / (len(BUSINESS_HOURS) * ticks_per_hour):
            continue
        store = fleet.services.store
        open_ids = sorted(store.payables.open_payable_states(member.connection_id))
        if not open_ids:
            continue
        payable = store.payables.get_payable(member.connection_id, rng.choice(open_ids))
        if payable is None:
            continue
        sandbox = fleet.sandboxes[member.provider]
        action = rng.random()
        try:
            if action < 0.5:
                sandbox.pay_bill_elsewhere(member.tenant_id, payable.bill_id)
            elif action < 0.7:
                half = (payable.amount_due / 2).quantize(Decimal("0.01"))
                sandbox.pay_bill_elsewhere(member.tenant_id, payable.bill_id, half)
            else:
                sandbox.change_bill_amount(member.tenant_id, payable.bill_id, payable.total_amount + Decimal("10.00"))
        except Exception:  # a bill the sandbox will not change (closed meanwhile): no change
            continue


def _deliver_webhooks(fleet: Fleet, provider: Provider) -> Callable[[bytes, dict[str, str]], None]:
    header = "intuit-signature" if provider is Provider.QUICKBOOKS else "x-xero-signature"

    def deliver(body: bytes, headers: dict[str, str]) -> None:
        signature = next((value for name, value in headers.items() if name.lower() == header), None)
        before = DYNAMODB.snapshot()
        messages = handle_webhook(fleet.services, provider, body, signature).messages
        send_sync_messages(fleet.queue_url, messages)
        spent = DYNAMODB.snapshot() - before
        fleet.sample_written.update(spent.written)
        for message in messages:
            member = fleet.members.get(message.connection_id)
            if member is not None:
                member.ddb_read += sum(spent.read.values()) // max(1, len(messages))
                member.ddb_written += sum(spent.written.values()) // max(1, len(messages))
                fleet.webhook_arrivals.append((fleet.clock.timestamp() - fleet.tick_start, provider.value))

    return deliver


def _drain_queue(fleet: Fleet, now: datetime) -> list[tuple[SyncTrigger, float]]:
    """Run every queued sync (taken from moto's queue directly: the worker's receives are not measured):
    the sample's through the engine, the rest by the stand-in worker. Returns (trigger, modelled service
    seconds) per sync run."""
    ran: list[tuple[SyncTrigger, float]] = []
    others: list[SyncMessage] = []
    while bodies := take_messages_directly(fleet.queue_url):
        for body in bodies:
            message = SyncMessage.model_validate_json(body)
            member = fleet.members.get(message.connection_id)
            if member is None:
                others.append(message)
            else:
                ran.append((message.trigger, _run_member_sync(fleet, member, message)))
    ran.extend(_stand_in_worker(fleet, others, now))
    return ran


def _run_member_sync(fleet: Fleet, member: Member, message: SyncMessage) -> float:
    """What the sync worker does with one message, continuations included; the modelled service time."""
    store = fleet.services.store
    before = DYNAMODB.snapshot()
    run = store.syncs.get_sync_run(message.connection_id, message.sync_run_id)
    calls = 0
    for _ in range(10):
        if run is None:
            break
        result = run_sync(
            fleet.services,
            run,
            documents=fleet.documents,
            time_left=lambda: 900.0,
            full=message.full,
            bill_ids=message.bill_ids,
            vendor_ids=message.vendor_ids,
        )
        calls = result.run.provider_calls
        if result.continue_after_seconds is None:
            break
        run = result.run
    spent = DYNAMODB.snapshot() - before
    fleet.sample_written.update(spent.written)
    member.syncs += 1
    member.webhook_syncs += message.trigger is SyncTrigger.WEBHOOK
    member.ddb_read += sum(spent.read.values())
    member.ddb_written += sum(spent.written.values())
    service = calls * PROVIDER_LATENCY_S + SYNC_OVERHEAD_S
    member.service_times.append(service)
    return service


def _stand_in_worker(fleet: Fleet, messages: Sequence[SyncMessage], now: datetime) -> list[tuple[SyncTrigger, float]]:
    """End the records-only connections' runs at once, leaving what the engine's _finish leaves: the run
    finished, the slot released, the summary and the next due time (`schedule.after_run`) on the
    connection. Written straight into moto's table: these writes stand in for workers the scenario
    does not measure (the sample's are), and through boto3 they cost moto milliseconds each."""
    store = fleet.services.store
    rng = random.Random(f"{SEED}/{now.isoformat()}")
    service_times: dict[str, list[float]] = defaultdict(list)
    for member in fleet.members.values():
        service_times[member.provider.value].extend(member.service_times[-50:])
    ran: list[tuple[SyncTrigger, float]] = []
    written: list[dict[str, Any]] = []
    released: list[tuple[str, str]] = []
    for message in messages:
        other = fleet.others[message.connection_id]
        connection, provider = other.connection, other.connection.provider
        run = new_sync_run(message.connection_id, SyncTrigger.SCHEDULE, now)
        run.sync_run_id = message.sync_run_id
        # Webhook providers' polls find what webhooks already brought; Sage's what changed since.
        hours = (now - other.last_run).total_seconds() / 3600
        webhooks = provider is not Provider.SAGE
        changed = not webhooks and rng.random() < 1 - math.exp(-other.changes_per_day * hours / 24)
        run.outcome, run.finished_at = SyncOutcome.SUCCEEDED, now
        next_schedule = schedule.after_run(
            provider, message.connection_id, connection.sync_schedule, outcome=run.outcome, changed=changed, now=now
        )
        connection = connection.model_copy(
            update={
                "last_sync": SyncSummary(sync_run_id=run.sync_run_id, outcome=run.outcome.value, finished_at=now),
                "sync_schedule": next_schedule,
                "version": connection.version + 1,
            }
        )
        fleet.others[message.connection_id] = Other(connection, other.changes_per_day, now)
        written += [_run_item(store, run), store.connections._connection_item(connection)]
        released.append((f"CONNECTION#{message.connection_id}", "SYNC#ACTIVE"))
        times = service_times[provider.value] or [SYNC_OVERHEAD_S + PROVIDER_LATENCY_S]
        ran.append((SyncTrigger.SCHEDULE, rng.choice(times)))
    put_items_directly(store.table.name, written)
    delete_items_directly(store.table.name, released)
    return ran


def _run_item(store: RecordsStore, run: Any) -> dict[str, Any]:
    return {
        "PK": f"CONNECTION#{run.connection_id}",
        "SK": f"SYNCRUN#{run.sync_run_id}",
        "recordType": "syncRun",
        **run.model_dump(mode="json", by_alias=True),
        "expiresAt": int((run.started_at + store.retention.sync_runs).timestamp()),
    }


def _queue_ages(dispatched: Sequence[float], webhooks: Sequence[float], workers: int) -> float:
    """Longest wait in the modelled worker queue: dispatched syncs arrive at the tick's start, webhook
    syncs when their webhook came; `workers` take them in arrival order."""
    arrivals = sorted([(0.0, service) for service in dispatched] + [(at, SYNC_OVERHEAD_S * 2) for at in webhooks])
    free = [0.0] * workers
    longest = 0.0
    for arrival, service in arrivals:
        start = max(arrival, heapq.heappop(free))
        longest = max(longest, start - arrival)
        heapq.heappush(free, start + service)
    return longest


def _sweep_expired(table_name: str, now: datetime) -> int:
    """What DynamoDB TTL does (lazily, within days; here at once): delete items whose expiresAt passed."""
    table = boto3.resource("dynamodb").Table(table_name)
    expired: list[dict[str, Any]] = []
    arguments: dict[str, Any] = {"FilterExpression": Attr("expiresAt").lte(int(now.timestamp()))}
    while True:
        response = table.scan(ProjectionExpression="PK, SK", **arguments)
        expired.extend(response.get("Items", []))
        if "LastEvaluatedKey" not in response:
            break
        arguments["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    with table.batch_writer() as batch:
        for key in expired:
            batch.delete_item(Key={"PK": key["PK"], "SK": key["SK"]})
    return len(expired)


def _scan(table_name: str, projection: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table(table_name)
    items: list[dict[str, Any]] = []
    arguments: dict[str, Any] = {"ProjectionExpression": projection}
    while True:
        response = table.scan(**arguments)
        items.extend(response.get("Items", []))
        if "LastEvaluatedKey" not in response:
            return items
        arguments["ExclusiveStartKey"] = response["LastEvaluatedKey"]


@dataclass(frozen=True)
class Tick:
    """One dispatch: its wall seconds, connections due and queued, and its own DynamoDB and SQS work."""

    wall_s: float
    due: int
    queued: int
    items_read: int
    items_written: int
    ddb_requests: dict[str, int]
    sqs_requests: int


def _dispatch(fleet: Fleet) -> Tick:
    """One tick's dispatch, the service's own (`dispatch_due`), measured."""
    before, sqs_before = DYNAMODB.snapshot(), SQS_SENT.total()
    started = time.perf_counter()
    report = dispatch_due(fleet.services, fleet.queue_url)
    wall = time.perf_counter() - started
    spent = DYNAMODB.snapshot() - before
    return Tick(
        wall_s=wall,
        due=report.due,
        queued=report.queued,
        items_read=sum(spent.read.values()),
        items_written=sum(spent.written.values()),
        ddb_requests=dict(spent.requests),
        sqs_requests=SQS_SENT.total() - sqs_before,
    )


class _SqsRequests:
    """SQS requests sent through boto3's default session (every client made after `install`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def install(self) -> None:
        session = boto3.DEFAULT_SESSION
        assert session is not None
        session.events.register("after-call.sqs", self._after_call)

    def total(self) -> int:
        with self._lock:
            return self._count

    def _after_call(self, **_: Any) -> None:
        with self._lock:
            self._count += 1


SQS_SENT = _SqsRequests()


# ---------------------------------------------------------------------------------------------- phases


def _day(
    aws: Aws, clock: Clock, sandboxes: dict[Provider, Any], rng: random.Random, *, connections: int, sample: int
) -> dict[str, Any]:
    table = aws.table
    queue_url = boto3.client("sqs").create_queue(QueueName="sync")["QueueUrl"]
    base_urls = {provider: sandbox.base_url for provider, sandbox in sandboxes.items()}
    services = _services(aws, table, base_urls, queue_url, clock)
    fleet = Fleet(clock, sandboxes, services, DocumentStore(aws.bucket, services.store), queue_url)
    ids = [f"conn-{index:06d}" for index in range(connections)]
    chosen = set(rng.sample(ids, sample))
    print(f"fleet: {connections:,} connections, {sample} of them organisations in the sandboxes ...", flush=True)
    for index, connection_id in enumerate(ids):
        if connection_id in chosen:
            member = Member(connection_id, PROVIDERS[index % 3], "", _profile(rng))
            _connect_member(fleet, member, bills=40, seed=SEED * 100_000 + index)
            fleet.members[connection_id] = member
    members = sorted(fleet.members.values(), key=lambda _: rng.random())
    _hook_webhooks(fleet)
    # Before the measured day: the sample's first syncs (full) spread over WARM_UP_TICKS, with the
    # schedule running, so the day starts from a running fleet (idle streaks, full reconciliations due).
    print("fleet: the day before (first syncs, the sample's schedule) ...", flush=True)
    for warm_up in range(WARM_UP_TICKS):
        for member in members[warm_up::WARM_UP_TICKS]:
            _first_sync(fleet, member)
        _change_books(fleet, rng, members, ticks_per_hour=4)
        dispatch_due(services, queue_url)
        _drain_queue(fleet, clock.now())
        clock.advance(TICK.total_seconds())
    for member in members:
        member.syncs = member.webhook_syncs = member.ddb_read = member.ddb_written = 0
        member.service_times.clear()
    fleet.sample_written.clear()
    now = clock.now()
    records_only: list[Connection] = []
    for index, connection_id in enumerate(ids):
        if connection_id not in chosen:
            provider = PROVIDERS[index % 3]
            planned = _steady_schedule(rng, provider, now)
            connection = _connection(connection_id, provider, f"t-{connection_id}", now, sync_schedule=planned)
            fleet.others[connection_id] = Other(connection, _profile(rng), now)
            records_only.append(connection)
    _put_records_only(services.store, records_only)

    print(f"fleet: the measured day, {TICKS_PER_DAY} ticks over {connections:,} connections ...", flush=True)
    requests_at_start = {provider: sandbox.requests.total() for provider, sandbox in sandboxes.items()}
    ticks: list[dict[str, Any]] = []
    dispatch_read = dispatch_written = 0
    day_started = time.perf_counter()
    for index in range(TICKS_PER_DAY):
        fleet.tick_start = clock.timestamp()
        fleet.webhook_arrivals = []
        _change_books(fleet, rng, members, ticks_per_hour=4)
        tick = _dispatch(fleet)
        dispatch_read += tick.items_read
        dispatch_written += tick.items_written
        ran = _drain_queue(fleet, clock.now())
        scale = round(connections / sample)  # the sample's webhooks stand for the fleet's
        webhook_times = [at for at, _ in fleet.webhook_arrivals for _ in range(scale)]
        dispatched = [service for trigger, service in ran if trigger is SyncTrigger.SCHEDULE]
        ticks.append(
            {
                "dispatch_wall_s": round(tick.wall_s, 3),
                "due": tick.due,
                "queued": tick.queued,
                "dispatch_items_read": tick.items_read,
                "dispatch_items_written": tick.items_written,
                "dispatch_ddb_requests": sum(tick.ddb_requests.values()),
                "dispatch_sqs_requests": tick.sqs_requests,
                "modelled_dispatch_wall_s": _modelled_dispatch_s(tick),
                "webhook_syncs": len(fleet.webhook_arrivals),
                "max_queue_age_s": round(_queue_ages(dispatched, webhook_times, WORKER_CONCURRENCY), 1),
            }
        )
        if index % 8 == 7:
            elapsed = time.perf_counter() - day_started
            print(
                f"fleet:   tick {index + 1}: dispatch {tick.wall_s:.2f} s, {tick.due} due, {tick.queued} queued "
                f"({elapsed:.0f} s)",
                flush=True,
            )
        clock.advance(TICK.total_seconds())

    # Provider calls per sample organisation over the day, from the sandboxes' request logs by tenant.
    calls: dict[str, Counter[str]] = defaultdict(Counter)
    tenants = {member.tenant_id: member for member in members}
    for provider, sandbox in sandboxes.items():
        for entry in sandbox.requests.entries()[requests_at_start[provider] :]:
            caller = tenants.get(entry.tenant or "")
            if caller is not None:
                calls[provider.value][caller.connection_id] += 1
    items = list(items_directly(table, ("GSI2PK",)))
    status_partitions = Counter(
        str(item["GSI2PK"]) for item in items if str(item.get("GSI2PK", "")).startswith("CONNECTIONS#")
    )
    index_partitions = Counter(str(item["GSI2PK"]) for item in items if "GSI2PK" in item)
    per_provider = {p: [m for m in members if m.provider is p] for p in PROVIDERS}
    return {
        "fleet": fleet,
        "ticks": ticks,
        "syncs_per_connection_per_day": {
            p.value: round(sum(m.syncs for m in ms) / len(ms), 2) for p, ms in per_provider.items()
        },
        "webhook_syncs_per_connection_per_day": {
            p.value: round(sum(m.webhook_syncs for m in ms) / len(ms), 2) for p, ms in per_provider.items()
        },
        "provider_calls_per_connection_per_day": {
            p.value: round(sum(calls[p.value].values()) / len(ms), 2) for p, ms in per_provider.items()
        },
        "ddb_items_read_per_connection_per_day": round(
            sum(m.ddb_read for m in members) / len(members) + dispatch_read / connections, 1
        ),
        "dispatch_items_read_per_connection_per_day": round(dispatch_read / connections, 2),
        "ddb_items_written_per_connection_per_day": round(
            sum(m.ddb_written for m in members) / len(members) + dispatch_written / connections, 1
        ),
        "dispatch_items_written_per_connection_per_day": round(dispatch_written / connections, 2),
        "sample_items_written_by_kind_per_connection_per_day": {
            kind: round(count / len(members), 2) for kind, count in sorted(fleet.sample_written.items())
        },
        "connection_index_partitions": len(status_partitions),
        "connection_index_largest_partition_share": round(
            max(status_partitions.values()) / sum(status_partitions.values()), 4
        ),
        "index_largest_partition_share": round(max(index_partitions.values()) / sum(index_partitions.values()), 4),
    }


def _hook_webhooks(fleet: Fleet) -> None:
    for provider in (Provider.QUICKBOOKS, Provider.XERO):
        fleet.sandboxes[provider].deliver = _deliver_webhooks(fleet, provider)


def _first_sync(fleet: Fleet, member: Member) -> None:
    connection = fleet.services.store.connections.get_connection(member.connection_id)
    assert connection is not None
    _, message = request_sync(fleet.services, connection, SyncTrigger.ON_DEMAND)
    if message is not None:
        send_sync_messages(fleet.queue_url, [message])


def _queue_due(fleet: Fleet, members: Sequence[Member]) -> None:
    """Dispatch's work for a handful of connections: queue a scheduled sync of each one due (reading
    them by key instead of 32 shard queries an hour for three connections)."""
    now = fleet.clock.now()
    for member in members:
        connection = fleet.services.store.connections.get_connection(member.connection_id)
        assert connection is not None
        if connection.sync_schedule is None or connection.sync_schedule.next_due_at <= now:
            _, message = request_sync(fleet.services, connection, SyncTrigger.SCHEDULE)
            if message is not None:
                send_sync_messages(fleet.queue_url, [message])


def _large_fleet(fleet: Fleet, rng: random.Random, *, first: int, large: int) -> dict[str, Any]:
    """Connection records from `first` up to `large`, then the service's dispatch over all of them.

    After the day, each new record copies a records-only connection as the day left it (provider, due
    time, idle streak): the large fleet is the day's steady state repeated, and dispatch meets a steady
    tick's share of due connections (about large / connections times the day's next tick). Without a
    day, due times are spread as a steady state would spread them, one tick ahead."""
    print(f"fleet: {large:,} connection records ...", flush=True)
    now = fleet.clock.now()
    others = [other.connection for other in fleet.others.values()]
    more = []
    for index in range(first, large):
        connection_id = f"conn-{index:06d}"
        if others:
            like = others[(index - first) % len(others)]
            provider, planned = like.provider, like.sync_schedule
        else:
            provider = PROVIDERS[index % 3]
            planned = _steady_schedule(rng, provider, now)
        more.append(_connection(connection_id, provider, f"t-{connection_id}", now, sync_schedule=planned))
    _put_records_only(fleet.services.store, more, lookups=False)
    if not others:
        fleet.clock.advance(TICK.total_seconds())
    tick = _dispatch(fleet)
    print(
        f"fleet: dispatch over {large:,}: {tick.wall_s:.1f} s, {tick.due:,} due, {tick.queued:,} queued, "
        f"{tick.items_read:,} items read, {tick.items_written:,} written"
    )
    return {
        "connections": large,
        "dispatch_wall_s": round(tick.wall_s, 2),
        "due": tick.due,
        "queued": tick.queued,
        "dispatch_items_read": tick.items_read,
        "dispatch_items_written": tick.items_written,
        "dispatch_ddb_requests": tick.ddb_requests,
        "dispatch_sqs_requests": tick.sqs_requests,
        "modelled_dispatch_wall_s": _modelled_dispatch_s(tick),
    }


# Modelled dispatch time at AWS (not measured: moto answers slower than DynamoDB). In-region request
# latencies, typical: a DynamoDB request ~5 ms (single-digit milliseconds), an SQS batch send ~15 ms; PARALLEL_SHARDS
# shards run at once; plus ~1 ms of the function's own work per due connection (validation, JSON).
MODEL_DDB_REQUEST_S = 0.005
MODEL_SQS_REQUEST_S = 0.015
MODEL_CPU_PER_DUE_S = 0.001


def _modelled_dispatch_s(tick: Tick) -> float:
    waits = sum(tick.ddb_requests.values()) * MODEL_DDB_REQUEST_S + tick.sqs_requests * MODEL_SQS_REQUEST_S
    return round(waits / PARALLEL_SHARDS + tick.due * MODEL_CPU_PER_DUE_S, 2)


def _month(aws: Aws, clock: Clock, sandboxes: dict[Provider, Any], rng: random.Random, *, days: int) -> dict[str, Any]:
    """MONTH_CONNECTIONS organisations for MONTH_DAYS days in their own table, hourly ticks, TTL swept daily."""
    print(f"fleet: {MONTH_CONNECTIONS} connections through {days} days ...", flush=True)
    table = create_records_table(load_template(), "records-month")
    queue_url = boto3.client("sqs").create_queue(QueueName="sync-month")["QueueUrl"]
    base_urls = {provider: sandbox.base_url for provider, sandbox in sandboxes.items()}
    services = _services(aws, table, base_urls, queue_url, clock)
    fleet = Fleet(clock, sandboxes, services, DocumentStore(aws.bucket, services.store), queue_url)
    rates = [rate for _, _, rate in PROFILES if rate]  # light and busy: the books that grow
    for index in range(MONTH_CONNECTIONS):
        provider = PROVIDERS[index % 3]
        member = Member(f"month-{index:02d}", provider, "", rates[(index // 3) % len(rates)])
        _connect_member(fleet, member, bills=160, seed=SEED * 1_000 + index)
        fleet.members[member.connection_id] = member
    members = list(fleet.members.values())
    _hook_webhooks(fleet)
    stored: dict[int, float] = {}
    writeback_queue = boto3.client("sqs").create_queue(QueueName="writeback-month")["QueueUrl"]
    sweeps: list[Any] = []
    for day in range(1, days + 1):
        for _ in range(24):
            _change_books(fleet, rng, members, ticks_per_hour=1)
            _queue_due(fleet, members)
            _drain_queue(fleet, clock.now())
            # The sweeper (every 15 minutes in the stack; here once a tick): its own reads and writes.
            before = DYNAMODB.snapshot()
            sweep(services, writeback_queue_url=writeback_queue)
            sweeps.append(DYNAMODB.snapshot() - before)
            clock.advance(3600)
        _sweep_expired(table, clock.now())
        if day in (1, 5, 10, 15, 20, 25, 30) or day == days:
            items = _scan(table, "PK")
            stored[day] = round(sum(1 for i in items if str(i["PK"]).startswith("CONNECTION#")) / len(members), 1)
            print(f"fleet:   day {day}: {stored[day]} items per connection")
    # Per sweep: a query of each shard it reads (fixed, whatever the fleet's size), and what it finds
    # (work unmoved too long, abandoned connections), per connection of the month.
    requests = Counter[str]()
    for spent in sweeps:
        requests.update(spent.requests)
    shard_queries = CONNECTION_SHARDS * SWEPT_INDEXES
    per_connection = (sum(requests.values()) / len(sweeps) - shard_queries) / len(members)
    return {
        "stored_items_per_connection_by_day": stored,
        "sweep": {
            "sweeps": len(sweeps),
            "ddb_requests_per_sweep_by_operation": {
                op: round(n / len(sweeps), 2) for op, n in sorted(requests.items())
            },
            "shard_queries_per_sweep": shard_queries,
            "ddb_requests_per_connection_per_sweep": round(per_connection, 2),
            "items_read_per_connection_per_sweep": round(
                sum(sum(spent.read.values()) for spent in sweeps) / len(sweeps) / len(members), 2
            ),
            "items_written_per_connection_per_sweep": round(
                sum(sum(spent.written.values()) for spent in sweeps) / len(sweeps) / len(members), 2
            ),
        },
    }


# ---------------------------------------------------------------------------------------------- cost

# us-east-1 list prices (README "Cost model" cites each).
LAMBDA_GB_SECOND = 0.0000133334  # arm64
LAMBDA_REQUEST = 0.20 / 1e6
DDB_WRITE_REQUEST_UNIT = 0.625 / 1e6
DDB_READ_REQUEST_UNIT = 0.125 / 1e6
DDB_STORAGE_GB_MONTH = 0.25
SQS_REQUEST = 0.40 / 1e6
SCHEDULER_INVOCATION = 1.00 / 1e6
SECRET_MONTH = 0.40
SECRETS_API_CALL = 0.05 / 10_000
DAYS_PER_MONTH = 30
# An item written costs about 2 write units (items under 1 KB, plus the GSI2 copy most items have);
# an item read about 1 read unit (strongly consistent, under 4 KB). Stored items ~1 KB.
WRITE_UNITS_PER_ITEM = 2
READ_UNITS_PER_ITEM = 1
# A request that finds nothing still costs a read unit (the sweeper's look-ups mostly find nothing).
READ_UNITS_PER_EMPTY_REQUEST = 1
# Write-backs (not run in this scenario): payments a connection writes back a day, each alone (the
# writeback scenario's trickle), under a heartbeat lease: taken, renewed every 3 s, freed - the lease
# writes per payment come from bench/results/writeback.json when it is there.
PAYMENTS_PER_CONNECTION_PER_DAY = 2
WRITEBACK_LEASE_WRITES_PER_PAYMENT = 3.0


def _writeback_lease_writes_per_payment() -> tuple[float, str]:
    """Lease writes per single payment as the writeback scenario measured them (its trickle), else the model."""
    path = RESULTS / "writeback.json"
    if path.exists():
        rows = json.loads(path.read_text())
        measured = [row.get("trickle_ddb_written_by_kind_per_payment", {}).get("lease") for row in rows]
        if all(value is not None for value in measured) and measured:
            return round(sum(measured) / len(measured), 2), "measured (writeback.json, trickle)"
    return WRITEBACK_LEASE_WRITES_PER_PAYMENT, "modelled (taken, one beat, freed)"


def _cost(result: dict[str, Any], stored_items: float, connections: int) -> dict[str, float]:
    syncs = sum(result["syncs_per_connection_per_day"].values()) / 3
    sync_s = result["modelled_sync_seconds_mean"]
    sweeper = result["sweeper"]
    # Lambda: the syncs, dispatch's ticks and the sweeps (modelled seconds), per connection.
    dispatch_s = TICKS_PER_DAY * result["modelled_dispatch_wall_s_mean"] / connections
    sweep_s = SWEEPS_PER_DAY * sweeper["modelled_wall_s_at_fleet"] / connections
    lambda_gb_s = (syncs * sync_s + dispatch_s + sweep_s) * FUNCTION_MEMORY_GB * DAYS_PER_MONTH
    lambda_requests = (syncs + (TICKS_PER_DAY + SWEEPS_PER_DAY) / connections) * DAYS_PER_MONTH
    reads = result["ddb_items_read_per_connection_per_day"] * READ_UNITS_PER_ITEM * DAYS_PER_MONTH
    writes = result["ddb_items_written_per_connection_per_day"] * WRITE_UNITS_PER_ITEM * DAYS_PER_MONTH
    sweep_reads = sweeper["read_units_per_connection_per_day"] * DAYS_PER_MONTH
    writeback_leases = result["writeback_lease_writes_per_connection_per_day"] * WRITE_UNITS_PER_ITEM * DAYS_PER_MONTH
    # SQS: send, receive and delete per sync (and a continuation now and then).
    sqs = syncs * 3 * DAYS_PER_MONTH
    # The schedules fire 96 times a day each (dispatch, sweep) for the whole fleet.
    scheduler = (TICKS_PER_DAY + SWEEPS_PER_DAY) * DAYS_PER_MONTH / connections
    # Tokens: read per sync, written per refresh (about one refresh per sync at 30-60 minute lifetimes).
    secrets_calls = syncs * 2 * DAYS_PER_MONTH
    costs = {
        "lambda": lambda_gb_s * LAMBDA_GB_SECOND + lambda_requests * LAMBDA_REQUEST,
        "dynamodb_requests": reads * DDB_READ_REQUEST_UNIT + writes * DDB_WRITE_REQUEST_UNIT,
        "dynamodb_sweeper": sweep_reads * DDB_READ_REQUEST_UNIT,
        "dynamodb_writeback_leases": writeback_leases * DDB_WRITE_REQUEST_UNIT,
        "dynamodb_storage": stored_items * 1e3 / 1e9 * DDB_STORAGE_GB_MONTH,
        "sqs": sqs * SQS_REQUEST,
        "scheduler": scheduler * SCHEDULER_INVOCATION,
        "secrets_manager": SECRET_MONTH + secrets_calls * SECRETS_API_CALL,
    }
    costs["total"] = sum(costs.values())
    return {name: round(value, 6) for name, value in costs.items()}


def _sweeper(measured: dict[str, Any], connections: int) -> dict[str, Any]:
    """The sweeper at `connections`, from the month's measured sweeps: its fixed shard queries, shared by the
    fleet, and what it found per connection (modelled at MODEL_DDB_REQUEST_S a request, one after another)."""
    per_connection = measured["ddb_requests_per_connection_per_sweep"]
    shard_queries = measured["shard_queries_per_sweep"]
    requests = shard_queries + per_connection * connections
    read_units = (shard_queries / connections + per_connection) * READ_UNITS_PER_EMPTY_REQUEST + measured[
        "items_read_per_connection_per_sweep"
    ]
    return {
        **measured,
        "sweeps_per_day": SWEEPS_PER_DAY,
        "ddb_requests_per_connection_per_day": round(requests / connections * SWEEPS_PER_DAY, 2),
        "read_units_per_connection_per_day": round(read_units * SWEEPS_PER_DAY, 1),
        "modelled_wall_s_at_fleet": round(requests * MODEL_DDB_REQUEST_S, 1),
        "modelled_wall_s_at_100000": round(
            (measured["shard_queries_per_sweep"] + per_connection * LARGE_FLEET) * MODEL_DDB_REQUEST_S, 1
        ),
        "function_timeout_s": SWEEP_TIMEOUT_S,
    }


# ---------------------------------------------------------------------------------------------- scenario

WORKER_CONCURRENCY = 0  # read from template.yaml in run()


PHASES = ("day", "scale", "month")


def run(
    *,
    connections: int = CONNECTIONS,
    sample: int = SAMPLE,
    large: int = LARGE_FLEET,
    days: int = MONTH_DAYS,
    phases: Sequence[str] = PHASES,
) -> dict[str, Any] | None:
    """Run the phases (each writes bench/results/fleet-<phase>.json), then assemble fleet.json from the
    three files: the phases are independent, so a long one can be run apart (`--phases`). The month
    shares nothing with the others: it runs at the same time, in an OS process of its own."""
    month_apart = None
    if "month" in phases and len(phases) > 1:
        month_apart = multiprocessing.get_context("spawn").Process(
            target=_month_apart, args=(days,), name="fleet-month"
        )
        month_apart.start()
        phases = [phase for phase in phases if phase != "month"]
    try:
        _run_phases(connections=connections, sample=sample, large=large, days=days, phases=phases)
    finally:
        if month_apart is not None:
            month_apart.join()
    if month_apart is not None and month_apart.exitcode != 0:
        raise RuntimeError("the month phase ended without its results (its traceback is above)")
    return assemble()


def _month_apart(days: int) -> None:
    use_fake_aws()
    _run_phases(connections=CONNECTIONS, sample=SAMPLE, large=LARGE_FLEET, days=days, phases=["month"])


def _run_phases(*, connections: int, sample: int, large: int, days: int, phases: Sequence[str]) -> None:
    global WORKER_CONCURRENCY  # noqa: PLW0603 - one figure from the template for the whole scenario
    template = load_template()
    worker = template["Resources"]["SyncFunction"]["Properties"]["Events"]["SyncWorker"]["Properties"]
    concurrency = worker["ScalingConfig"]["MaximumConcurrency"]
    if isinstance(concurrency, dict):  # !Ref SyncWorkerMaxConcurrency: its default
        concurrency = template["Parameters"][concurrency["Ref"]]["Default"]
    WORKER_CONCURRENCY = int(concurrency)
    rng = random.Random(SEED)
    with mocked_aws(template) as aws, partition_lookups(), constant_time_sends():
        SQS_SENT.install()
        clock = Clock()
        # Start at the next midnight UTC, so the measured day has its business hours in order.
        now = clock.now()
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
        clock.advance((midnight - now).total_seconds())
        _register_app_secrets()
        sandboxes = _start_sandboxes(clock)
        try:
            fleet = None
            if "day" in phases:
                started = time.perf_counter()
                day = _day(aws, clock, sandboxes, rng, connections=connections, sample=sample)
                fleet = day.pop("fleet")
                times = [t for m in fleet.members.values() for t in m.service_times]
                day["modelled_sync_seconds_mean"] = round(sum(times) / len(times), 3) if times else None
                day["connections"], day["sample"], day["wall_s"] = connections, sample, time.perf_counter() - started
                write_results(f"{NAME}-day", [day])
            if "scale" in phases:
                if fleet is None:
                    fleet = _records_only_fleet(aws, clock, sandboxes)
                    first = 0
                else:
                    first = connections
                write_results(f"{NAME}-scale", [_large_fleet(fleet, rng, first=first, large=large)])
            if "month" in phases:
                write_results(f"{NAME}-month", [_month(aws, clock, sandboxes, rng, days=days)])
        finally:
            for sandbox in sandboxes.values():
                sandbox.stop()


def _records_only_fleet(aws: Aws, clock: Clock, sandboxes: dict[Provider, Any]) -> Fleet:
    queue_url = boto3.client("sqs").create_queue(QueueName="sync")["QueueUrl"]
    base_urls = {provider: sandbox.base_url for provider, sandbox in sandboxes.items()}
    services = _services(aws, aws.table, base_urls, queue_url, clock)
    return Fleet(clock, sandboxes, services, DocumentStore(aws.bucket, services.store), queue_url)


def assemble() -> dict[str, Any] | None:
    """fleet.json from the three phases' files (None, and nothing written, while one is missing)."""
    parts: dict[str, dict[str, Any]] = {}
    for phase in PHASES:
        path = RESULTS / f"{NAME}-{phase}.json"
        if not path.exists():
            print(f"fleet: {path.name} missing; run that phase to assemble {NAME}.json")
            return None
        parts[phase] = json.loads(path.read_text())[0]
    day, scaled, month = parts["day"], parts["scale"], parts["month"]
    ticks = day.pop("ticks")
    # (a day file from before these were kept holds the defaults' figures)
    connections, sample = day.pop("connections", CONNECTIONS), day.pop("sample", SAMPLE)
    walls = [tick["dispatch_wall_s"] for tick in ticks]
    mean_service = day.get("modelled_sync_seconds_mean")
    if mean_service is None:  # written by a run before this figure was kept: from calls per sync
        calls = sum(day["provider_calls_per_connection_per_day"].values())
        syncs = sum(day["syncs_per_connection_per_day"].values())
        mean_service = round(calls / syncs * PROVIDER_LATENCY_S + SYNC_OVERHEAD_S, 3)
    by_day = {int(k): v for k, v in month["stored_items_per_connection_by_day"].items()}
    last = max(by_day)
    result: dict[str, Any] = {
        "connections": connections,
        "sample": sample,
        "ticks": len(ticks),
        "dispatch_wall_s": {
            f"at_{connections}_per_tick_max": max(walls),
            f"at_{connections}_per_tick_mean": round(sum(walls) / len(walls), 3),
            f"at_{scaled['connections']}_one_tick": scaled["dispatch_wall_s"],
        },
        "modelled_dispatch_wall_s": {
            f"at_{connections}_per_tick_max": max((t.get("modelled_dispatch_wall_s", 0.0) for t in ticks), default=0.0),
            f"at_{scaled['connections']}_one_tick": scaled.get("modelled_dispatch_wall_s"),
        },
        "dispatch_due_per_tick": {
            "max": max(t["due"] for t in ticks),
            "mean": round(sum(t["due"] for t in ticks) / len(ticks), 1),
        },
        f"dispatch_at_{scaled['connections']}": scaled,
        **{k: v for k, v in day.items() if k not in ("modelled_sync_seconds_mean", "wall_s")},
        f"stored_items_after_{last}_days_per_connection": by_day[last],
        "stored_items_per_connection_by_day": by_day,
        "max_queue_age_s": max(tick["max_queue_age_s"] for tick in ticks),
        "worker_concurrency": WORKER_CONCURRENCY or 20,
        "modelled_sync_seconds_mean": mean_service,
        "ticks_detail": ticks,
    }
    modelled = [tick["modelled_dispatch_wall_s"] for tick in ticks if "modelled_dispatch_wall_s" in tick]
    result["modelled_dispatch_wall_s_mean"] = round(sum(modelled) / len(modelled), 3) if modelled else 0.0
    result["sweeper"] = _sweeper(month["sweep"], connections)
    lease_writes, source = _writeback_lease_writes_per_payment()
    result["writeback_lease_writes_per_payment"] = {"value": lease_writes, "source": source}
    result["writeback_lease_writes_per_connection_per_day"] = round(lease_writes * PAYMENTS_PER_CONNECTION_PER_DAY, 2)
    result["cost_per_connection_per_month_usd"] = _cost(result, by_day[last], connections)
    path = write_results(NAME, [result])
    rows = [
        {"figure": name, "value": json.dumps(value) if isinstance(value, dict) else value}
        for name, value in result.items()
        if name != "ticks_detail"
    ]
    print_table(f"Scenario fleet ({path.relative_to(path.parents[2])})", ["figure", "value"], rows)
    return result
