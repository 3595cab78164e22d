"""Scenario `writeback` (issue 6): payments written back to each provider, as the write-back worker
processes them one after another, against a sandbox 100 ms away at the provider's real rate limits.

The organisation is synced first (not measured), the user accepts a mapping (a bank account per
currency, a fee account), then each payment is submitted and processed like a queue delivery:
WritebackBusy and WritebackRetryLater, and any other exception (SQS redelivers it), are delivered
again at once. The mix: every 4th payment has a fee, every 5th pays half the bill, and bills in a
currency other than the organisation's are paid with the generator's exchange rate.

Duplicates are counted at the provider: its payments grouped by the payment order number they carry
(found anywhere in the provider's record); more than one payment for a number is a duplicate.
"""

import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

from bench.harness import (
    Aws,
    RequestWindow,
    Target,
    describe_limits,
    function_timeout,
    load_template,
    mocked_aws,
    print_table,
    print_targets,
    sandbox_at_real_limits,
    sync_until_done,
    write_results,
)
from local.sandboxes.generator import exchange_rate, generate_ledger
from local.worlds import SyncWorld, connect
from payedge_connect.models import Payable, PayableStatus, PaymentOrder, PaymentOrderStatus, Provider
from payedge_connect.writeback.events import PaymentDetails
from payedge_connect.writeback.service import WritebackBusy, WritebackRetryLater, process_payment, submit_payment

NAME = "writeback"
PAYMENTS = 1_000
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

COLUMNS = [
    "provider",
    "payments",
    "posted",
    "duplicates_at_provider",
    "provider_calls",
    "calls_per_payment",
    "wall_s",
    "sandbox_429s",
]


def run(providers: Sequence[Provider], *, payments: int) -> list[dict[str, Any]]:
    template = load_template()
    timeout_s = function_timeout(template, "SyncFunction")
    print(
        f"writeback: {payments:,} payments per provider; sandbox latency {LATENCY_S * 1000:.0f} ms per call. "
        "At Xero's 60 calls a minute this takes tens of minutes (--payments N runs fewer)."
    )
    rows: list[dict[str, Any]] = []
    targets: dict[Provider, list[Target]] = {}
    for provider in providers:
        print(f"writeback: {provider.value} (sandbox limits: {describe_limits(provider)}) ...", flush=True)
        with mocked_aws(template) as aws:
            row = _measure(provider, payments, aws, timeout_s)
        targets[provider] = _targets(row)
        row["targets"] = {target.name: "PASS" if target.passed else "FAIL" for target in targets[provider]}
        rows.append(row)
        print(f"writeback: {provider.value} done in {row['wall_s']:.1f} s")
    path = write_results(NAME, rows)
    print_table(f"Scenario writeback ({path.relative_to(path.parents[2])})", COLUMNS, rows)
    print("\nTargets")
    for provider in providers:
        print_targets(provider.value, targets[provider])
    return rows


@dataclass
class Delivery:
    order: PaymentOrder
    busy: int = 0
    retry_later: int = 0
    worker_errors: list[str] = field(default_factory=list)


def deliver(world: SyncWorld, details: PaymentDetails) -> Delivery:
    """What the write-back queue and worker do with one payment: record it, then process it until it
    settles (or MAX_DELIVERIES deliveries have been spent)."""
    services, connection = world.services, world.connection
    order = submit_payment(
        services, details, business_id=connection.business_id, connection_id=connection.connection_id
    )
    delivery = Delivery(order)
    for _ in range(MAX_DELIVERIES):
        try:
            delivery.order = process_payment(services, order.connection_id, order.payment_order_number, bus_name=BUS)
            return delivery
        except WritebackBusy:
            delivery.busy += 1
        except WritebackRetryLater:
            delivery.retry_later += 1
        except Exception as error:  # the Lambda fails this record and SQS delivers it again
            delivery.worker_errors.append(f"{type(error).__name__}: {error}"[:300])
    delivery.order = services.store.get_payment_order(order.connection_id, order.payment_order_number) or order
    return delivery


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


def _measure(provider: Provider, payments: int, aws: Aws, timeout_s: float) -> dict[str, Any]:
    ledger = generate_ledger(
        seed=SEED,
        bills=payments + payments // 4 + 20,
        vendors=max(20, payments // 5),
        documents=0,
        open_bills=payments + payments // 10 + 10,
    )
    sandbox = sandbox_at_real_limits(provider, latency_s=LATENCY_S)
    with connect(
        provider, ledger, table=aws.table, kms_key_arn=aws.kms_key_arn, bucket=aws.bucket, sandbox=sandbox
    ) as world:
        setup = RequestWindow(sandbox, from_start=True)
        synced = sync_until_done(world, function_timeout_s=timeout_s)
        mapping = world.accept_mapping()
        setup_calls = setup.calls()

        stored = world.services.store.get_payables(world.connection.connection_id, sorted(world.open_payables()))
        payables = [stored[bill_id] for bill_id in sorted(stored) if stored[bill_id].status is not PayableStatus.CLOSED]
        if len(payables) < payments:
            raise RuntimeError(f"{len(payables)} open bills synced from {provider.value}; {payments} needed")
        chosen = [
            payment_details(index, payable, base_currency=ledger.base_currency, world=world)
            for index, payable in enumerate(payables[:payments])
        ]
        payments_before, fees_before = provider_payments(world), provider_fees(world)

        window = RequestWindow(sandbox)
        deliveries: list[Delivery] = []
        wall = time.perf_counter()
        for details in chosen:
            deliveries.append(deliver(world, details))
            if len(deliveries) % 100 == 0:
                elapsed = time.perf_counter() - wall
                print(f"writeback: {provider.value} {len(deliveries):,} payments in {elapsed:.0f} s", flush=True)
        wall = time.perf_counter() - wall
        calls = window.calls()

        payments_at_provider = AtProvider.count(payments_before, provider_payments(world))
        fees_at_provider = AtProvider.count(fees_before, provider_fees(world))

    statuses = Counter(delivery.order.status.value for delivery in deliveries)
    not_posted = Counter(
        f"{delivery.order.reason_code}: {(delivery.order.reason or '')[:160]}"
        for delivery in deliveries
        if delivery.order.status is not PaymentOrderStatus.POSTED
    )
    worker_errors = Counter(error for delivery in deliveries for error in delivery.worker_errors)
    return {
        "provider": provider.value,
        "payments": payments,
        "posted": statuses[PaymentOrderStatus.POSTED.value],
        "duplicates_at_provider": payments_at_provider.duplicates,
        "provider_calls": calls.total,
        "calls_per_payment": round(calls.total / payments, 2),
        "wall_s": round(wall, 2),
        "sandbox_429s": calls.throttled,
        # The mix, and what else was seen.
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
        "calls_by_endpoint": dict(sorted(calls.by_endpoint.items())),
        "deliveries_busy": sum(delivery.busy for delivery in deliveries),
        "deliveries_retry_later": sum(delivery.retry_later for delivery in deliveries),
        "worker_errors": dict(worker_errors.most_common(10)),
        "ms_per_payment": round(wall * 1000 / payments, 1),
        "setup_sync_outcome": synced.result.run.outcome.value,
        "setup_provider_calls": setup_calls.total,
        "setup_sandbox_429s": setup_calls.throttled,
        "funding_sources_mapped": sorted(mapping.funding_sources),
        "sandbox_limits": describe_limits(provider),
    }


def _targets(row: dict[str, Any]) -> list[Target]:
    return [
        Target("posted = payments", row["posted"] == row["payments"], f"{row['posted']} of {row['payments']}"),
        Target("duplicates_at_provider = 0", row["duplicates_at_provider"] == 0, str(row["duplicates_at_provider"])),
        Target("sandbox_429s = 0", row["sandbox_429s"] == 0, str(row["sandbox_429s"])),
    ]
