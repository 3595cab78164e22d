"""Scenario `writeback` (issues 6 and 10): a payment run written back to each provider - 1,000 payments
arriving as one burst of queue messages, then a trickle of 20 single payments - against a sandbox
100 ms away at the provider's real rate limits.

The organisation is synced first (not measured), the user accepts a mapping (a bank account per
currency, a fee account). Then every payment of the run is recorded and queued at once, and the
write-back worker is driven as Lambda drives it: each invocation takes up to the template's BatchSize
messages, groups them per connection and runs `process_payments` with the function's Timeout; what it
hands back (busy, retry later, not reached) is queued again. The trickle follows: one payment at a time,
each one invocation of its own after the template's batching window. The mix: every 4th payment has a
fee, every 5th pays half the bill, and bills in a currency other than the organisation's are paid with
the generator's exchange rate.

Duplicates are counted at the provider: its payments grouped by the payment order number they carry
(found anywhere in the provider's record); more than one payment for a number is a duplicate.
"""

import re
import statistics
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

from bench.harness import (
    DYNAMODB,
    REAL_LIMITS,
    Aws,
    Calls,
    RequestWindow,
    Target,
    describe_limits,
    function_timeout,
    invocation_time_left,
    load_template,
    measure_providers,
    mocked_aws,
    print_table,
    print_targets,
    sandbox_at_real_limits,
    sync_until_done,
    write_results,
)
from local.sandboxes.generator import exchange_rate, generate_ledger
from local.sandboxes.quickbooks.limits import BATCH_PER_MINUTE_LIMIT
from local.worlds import SyncWorld, connect
from payedge_connect.models import Payable, PayableStatus, PaymentOrder, PaymentOrderStatus, Provider
from payedge_connect.writeback.events import PaymentDetails
from payedge_connect.writeback.orders import submit_payment
from payedge_connect.writeback.service import process_payments

NAME = "writeback"
PAYMENTS = 1_000
TRICKLE = 20
SEED = 7
LATENCY_S = 0.1
FEE = Decimal("2.50")
FEE_EVERY = 4
PARTIAL_EVERY = 5
BUS = "default"
# Deliveries of one payment before the benchmark gives up on it (the queue would send it to the DLQ).
MAX_DELIVERIES = 10
ORDER_NUMBER = "PO-BENCH-{:06d}"
_ORDER_NUMBER_FOUND = re.compile(r"PO-BENCH-\d{6}(?!\d)")
_CENT = Decimal("0.01")
# Targets of issue 10: HTTP requests per payment of the run.
REQUESTS_PER_PAYMENT_TARGET = {Provider.QUICKBOOKS: 0.15, Provider.XERO: 0.15, Provider.SAGE: 1.3}

COLUMNS = [
    "provider",
    "payments",
    "posted",
    "duplicates_at_provider",
    "http_requests_per_payment",
    "metered_reads_per_payment",
    "run_wall_s",
    "floor_wall_s",
    "trickle_p50_s",
    "sandbox_429s",
]


def run(providers: Sequence[Provider], *, payments: int) -> list[dict[str, Any]]:
    template = load_template()
    worker = Worker.from_template(template)
    print(
        f"writeback: a run of {payments:,} payments per provider as one burst, then {TRICKLE} single payments; "
        f"sandbox latency {LATENCY_S * 1000:.0f} ms per call; up to {worker.batch_size} messages an invocation "
        "(--payments N runs fewer); providers at once, a process each."
    )
    rows = measure_providers(measure, providers, payments=payments)
    targets = {provider: _targets(provider, row) for provider, row in zip(providers, rows, strict=True)}
    path = write_results(NAME, rows)
    print_table(f"Scenario writeback ({path.relative_to(path.parents[2])})", COLUMNS, rows)
    print("\nTargets")
    for provider in providers:
        print_targets(provider.value, targets[provider])
    return rows


def measure(provider: Provider, *, payments: int) -> dict[str, Any]:
    """One provider's row, in an AWS (moto) of its own."""
    template = load_template()
    print(f"writeback: {provider.value} (sandbox limits: {describe_limits(provider)}) ...", flush=True)
    with mocked_aws(template) as aws:
        row = _measure(provider, payments, aws, Worker.from_template(template))
    row["targets"] = {target.name: "PASS" if target.passed else "FAIL" for target in _targets(provider, row)}
    print(f"writeback: {provider.value} done: run {row['run_wall_s']:.1f} s (floor {row['floor_wall_s']:.1f} s)")
    return row


@dataclass(frozen=True)
class Worker:
    """The write-back function as template.yaml configures it: messages an invocation, its timeout, and
    how long a lone message waits for others (the batching window)."""

    batch_size: int
    timeout_s: float
    batching_window_s: float

    @classmethod
    def from_template(cls, template: dict[str, Any]) -> "Worker":
        source = template["Resources"]["WritebackFunction"]["Properties"]["Events"]["PaymentEvents"]["Properties"]
        return cls(
            batch_size=int(source.get("BatchSize", 10)),
            timeout_s=function_timeout(template, "WritebackFunction"),
            batching_window_s=float(source.get("MaximumBatchingWindowInSeconds", 0)),
        )


@dataclass
class Queue:
    """The write-back queue as the worker sees it: messages in, up to BatchSize out per invocation."""

    messages: deque[str] = field(default_factory=deque)
    deliveries: Counter[str] = field(default_factory=Counter)
    invocations: int = 0
    busy: int = 0
    retried_later: int = 0
    not_reached: int = 0
    worker_errors: Counter[str] = field(default_factory=Counter)

    def drain(self, world: SyncWorld, worker: Worker) -> None:
        """Invoke the worker until the queue is empty (a message past MAX_DELIVERIES is dropped, as the
        dead-letter queue would take it)."""
        connection_id = world.connection.connection_id
        while self.messages:
            taken = [self.messages.popleft() for _ in range(min(worker.batch_size, len(self.messages)))]
            taken = [number for number in taken if self.deliveries[number] < MAX_DELIVERIES]
            self.deliveries.update(taken)
            self.invocations += 1
            try:
                outcome = process_payments(
                    world.services, connection_id, taken, bus_name=BUS, time_left=invocation_time_left(worker.timeout_s)
                )
            except Exception as error:  # the Lambda fails these records and SQS delivers them again
                self.worker_errors[f"{type(error).__name__}: {error}"[:300]] += 1
                self.messages.extend(taken)
                continue
            if outcome.busy:
                self.busy += 1
                self.messages.extend(taken)
                continue
            # Delays are not slept: at the real limits the budget keeps the provider from refusing.
            self.retried_later += len(outcome.retry_later)
            self.not_reached += len(outcome.not_reached)
            self.messages.extend([*outcome.retry_later, *outcome.not_reached])


def payment_details(index: int, payable: Payable, *, base_currency: str, world: SyncWorld) -> PaymentDetails:
    partial = index % PARTIAL_EVERY == 2
    half = (payable.amount_due / 2).quantize(_CENT, rounding=ROUND_DOWN)
    foreign = payable.currency != base_currency
    return PaymentDetails(
        payment_order_number=ORDER_NUMBER.format(index + 1),
        bill_id=payable.bill_id,
        vendor_name=payable.vendor_name,
        currency=payable.currency,
        amount=half if partial and half > 0 else payable.amount_due,
        remittance_note=f"Paid by PayEdge, invoice {payable.invoice_number or payable.bill_id}",
        invoice_number=payable.invoice_number,
        payment_status="completed",
        payment_date=world.sandbox.clock.now().date(),
        fee_amount=FEE if index % FEE_EVERY == 1 else None,
        funding_source=f"{payable.currency.lower()}-operating",
        exchange_rate=exchange_rate(payable.currency, base_currency) if foreign else None,
    )


def provider_payments(world: SyncWorld) -> list[dict[str, Any]]:
    if world.provider is Provider.QUICKBOOKS:
        return list(world.sandbox.bill_payments(world.tenant_id))
    if world.provider is Provider.XERO:
        return list(world.sandbox.payments(world.tenant_id))
    return list(world.sandbox.contact_payments(world.tenant_id))


def provider_fees(world: SyncWorld) -> list[dict[str, Any]]:
    if world.provider is Provider.QUICKBOOKS:
        return list(world.sandbox.purchases(world.tenant_id))
    if world.provider is Provider.XERO:
        return list(world.sandbox.bank_transactions(world.tenant_id))
    return list(world.sandbox.other_payments(world.tenant_id))


@dataclass(frozen=True)
class AtProvider:
    """The provider's records that carry one of the benchmark's payment order numbers."""

    created: int  # records now minus records before the payments
    with_order_number: int
    duplicates: int  # records beyond the first for the same order number

    @classmethod
    def count(cls, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> "AtProvider":
        numbers: Counter[str] = Counter()
        carrying = 0
        for record in after:
            found = set(_ORDER_NUMBER_FOUND.findall(repr(record)))
            numbers.update(found)
            carrying += bool(found)
        duplicates = sum(count - 1 for count in numbers.values() if count > 1)
        return cls(created=len(after) - len(before), with_order_number=carrying, duplicates=duplicates)


def _measure(provider: Provider, payments: int, aws: Aws, worker: Worker) -> dict[str, Any]:
    ledger = generate_ledger(
        seed=SEED,
        bills=payments + TRICKLE + payments // 4 + 20,
        vendors=max(20, payments // 5),
        documents=0,
        open_bills=payments + TRICKLE + payments // 10 + 10,
    )
    sandbox = sandbox_at_real_limits(provider, latency_s=LATENCY_S)
    with connect(
        provider, ledger, table=aws.table, kms_key_arn=aws.kms_key_arn, bucket=aws.bucket, sandbox=sandbox
    ) as world:
        setup = RequestWindow(sandbox, from_start=True)
        synced = sync_until_done(world, function_timeout_s=function_timeout(load_template(), "SyncFunction"))
        mapping = world.accept_mapping()
        setup_calls = setup.calls()

        stored = world.services.store.payables.get_payables(
            world.connection.connection_id, sorted(world.open_payables())
        )
        payables = [stored[bill_id] for bill_id in sorted(stored) if stored[bill_id].status is not PayableStatus.CLOSED]
        if len(payables) < payments + TRICKLE:
            raise RuntimeError(f"{len(payables)} open bills synced from {provider.value}; {payments + TRICKLE} needed")
        chosen = [
            payment_details(index, payable, base_currency=ledger.base_currency, world=world)
            for index, payable in enumerate(payables[: payments + TRICKLE])
        ]
        burst, trickle = chosen[:payments], chosen[payments:]
        payments_before, fees_before = provider_payments(world), provider_fees(world)

        # The burst: every payment recorded and queued at once, then the worker drains the queue.
        window = RequestWindow(sandbox)
        reads_before = metered_reads(world)
        ddb_before = DYNAMODB.snapshot()
        wall = time.perf_counter()
        queue = Queue()
        for details in burst:
            queue.messages.append(_submit(world, details).payment_order_number)
        queue.drain(world, worker)
        run_wall = time.perf_counter() - wall
        run_calls = window.calls()
        run_reads = metered_reads(world) - reads_before
        run_ddb = DYNAMODB.snapshot() - ddb_before

        # The trickle: one payment at a time, each an invocation of its own after the batching window.
        trickle_window = RequestWindow(sandbox)
        trickle_ddb_before = DYNAMODB.snapshot()
        trickle_s: list[float] = []
        trickle_queue = Queue()
        for details in trickle:
            started = time.perf_counter()
            trickle_queue.messages.append(_submit(world, details).payment_order_number)
            trickle_queue.drain(world, worker)
            trickle_s.append(worker.batching_window_s + time.perf_counter() - started)
        trickle_calls = trickle_window.calls()
        trickle_ddb = DYNAMODB.snapshot() - trickle_ddb_before

        payments_at_provider = AtProvider.count(payments_before, provider_payments(world))
        fees_at_provider = AtProvider.count(fees_before, provider_fees(world))
        orders = [
            world.services.store.payment_orders.get_payment_order(
                world.connection.connection_id, details.payment_order_number
            )
            for details in chosen
        ]

    statuses = Counter(order.status.value if order else "missing" for order in orders)
    not_posted = Counter(
        f"{order.reason_code}: {(order.reason or '')[:160]}"
        for order in orders
        if order is not None and order.status is not PaymentOrderStatus.POSTED
    )
    floor = provider_floor_s(provider, run_calls)
    return {
        "provider": provider.value,
        "payments": payments + TRICKLE,
        "posted": statuses[PaymentOrderStatus.POSTED.value],
        "duplicates_at_provider": payments_at_provider.duplicates,
        "http_requests_per_payment": round(run_calls.total / payments, 3),
        "metered_reads_per_payment": round(run_reads / payments, 3),
        "run_wall_s": round(run_wall, 1),
        "floor_wall_s": round(floor, 1),
        "trickle_p50_s": round(statistics.median(trickle_s), 2) if trickle_s else None,
        # DynamoDB items written, by kind of record (the heartbeat lease's beats are "lease").
        "run_ddb_written_by_kind": dict(run_ddb.written),
        "trickle_ddb_written_by_kind_per_payment": {
            kind: round(count / max(1, len(trickle)), 2) for kind, count in trickle_ddb.written.items()
        },
        "sandbox_429s": run_calls.throttled + trickle_calls.throttled,
        # The run, and what else was seen.
        "run_payments": payments,
        "run_provider_requests": run_calls.total,
        "run_requests_by_endpoint": dict(sorted(run_calls.by_endpoint.items())),
        "run_metered_reads": run_reads,
        "wall_over_floor": round(run_wall / floor, 2) if floor else None,
        "invocations": queue.invocations,
        "invocations_busy": queue.busy,
        "orders_retried_later": queue.retried_later,
        "orders_not_reached_in_time": queue.not_reached,
        "worker_errors": dict(queue.worker_errors.most_common(10)),
        "trickle_payments": len(trickle),
        "trickle_s": [round(value, 2) for value in trickle_s],
        "trickle_max_s": round(max(trickle_s), 2) if trickle_s else None,
        "trickle_requests_per_payment": round(trickle_calls.total / len(trickle), 2) if trickle else None,
        "trickle_requests_by_endpoint": dict(sorted(trickle_calls.by_endpoint.items())),
        "with_fee": sum(1 for details in chosen if details.fee_amount),
        "foreign_currency": sum(1 for details in chosen if details.exchange_rate is not None),
        "partial": sum(
            1 for details, payable in zip(chosen, payables, strict=False) if details.amount < payable.amount_due
        ),
        "outcomes": dict(sorted(statuses.items())),
        "not_posted_reasons": dict(not_posted.most_common(10)),
        "payments_created_at_provider": payments_at_provider.created,
        "payments_carrying_order_number": payments_at_provider.with_order_number,
        "fees_created_at_provider": fees_at_provider.created,
        "duplicate_fees_at_provider": fees_at_provider.duplicates,
        "setup_sync_outcome": synced.result.run.outcome.value,
        "setup_provider_calls": setup_calls.total,
        "setup_sandbox_429s": setup_calls.throttled,
        "funding_sources_mapped": sorted(mapping.funding_sources),
        "sandbox_limits": describe_limits(provider),
        "worker": f"BatchSize {worker.batch_size}, window {worker.batching_window_s:g} s, "
        f"timeout {worker.timeout_s:g} s",
    }


def _submit(world: SyncWorld, details: PaymentDetails) -> PaymentOrder:
    """What the worker does with a PaymentCompleted event before the run: record the payment order."""
    connection = world.connection
    return submit_payment(
        world.services, details, business_id=connection.business_id, connection_id=connection.connection_id
    )


def metered_reads(world: SyncWorld) -> int:
    """Reads the provider meters: QuickBooks counts CorePlus calls (each batch query item one); Xero and
    Sage meter nothing beyond their rate limits, so every GET, which counts against them, is a read."""
    if world.provider is Provider.QUICKBOOKS:
        return int(world.sandbox.metered(world.tenant_id))
    return sum(1 for entry in world.sandbox.requests.entries() if entry.method == "GET")


def provider_floor_s(provider: Provider, calls: Calls) -> float:
    """The least wall time the provider's limits allow for these requests, made one after another as
    the connection's lease makes them: each takes the latency, and a limit of L a minute lets the
    (kL+1)th request go no sooner than k minutes after the first."""
    limits = REAL_LIMITS[provider]
    minutes = [(calls.total - 1) // limits["per_minute"]] if calls.total else [0]
    if provider is Provider.QUICKBOOKS:
        batches = calls.by_endpoint.get("batch", 0)
        minutes.append(max(0, batches - 1) // BATCH_PER_MINUTE_LIMIT)
    return max(calls.total * LATENCY_S, max(minutes) * 60.0)


def _targets(provider: Provider, row: dict[str, Any]) -> list[Target]:
    ceiling = REQUESTS_PER_PAYMENT_TARGET[provider]
    return [
        Target("posted = payments", row["posted"] == row["payments"], f"{row['posted']} of {row['payments']}"),
        Target("duplicates_at_provider = 0", row["duplicates_at_provider"] == 0, str(row["duplicates_at_provider"])),
        Target("sandbox_429s = 0", row["sandbox_429s"] == 0, str(row["sandbox_429s"])),
        Target(
            f"http_requests_per_payment <= {ceiling}",
            row["http_requests_per_payment"] <= ceiling,
            str(row["http_requests_per_payment"]),
        ),
        Target(
            "run_wall_s against the provider-limit floor",
            True,
            f"{row['run_wall_s']} s vs {row['floor_wall_s']} s ({row['wall_over_floor']}x)",
        ),
    ]
