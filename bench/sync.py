"""Scenario `sync` (issue 5): the first full sync of a large organisation, then an immediate no-change
re-sync, per provider, against a sandbox 100 ms away at the provider's real rate limits.

Listing calls are counted from the sandbox's request log, by endpoint:
- QuickBooks: `query` requests whose entity is Bill or Vendor (the one `query` endpoint split by entity);
- Xero: `get_invoices` (GET /Invoices) and `get_contacts` (GET /Contacts);
- Sage: `list_purchase_invoices` (GET /purchase_invoices) and `list_contacts` (GET /contacts).
Document calls: QuickBooks Attachable queries, `download` and `download_file` (the temporary link);
Xero `get_invoice_attachments` and `get_invoice_attachment`; Sage `list_attachments`, `get_attachment`
and `get_attachment_file`.
"""

import math
import time
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from bench.harness import (
    DYNAMODB,
    Aws,
    RequestWindow,
    Target,
    data_items,
    describe_limits,
    function_timeout,
    load_template,
    measure_providers,
    mocked_aws,
    print_table,
    print_targets,
    sandbox_at_real_limits,
    sync_until_done,
    write_results,
)
from local.sandboxes.generator import Ledger, generate_ledger
from local.sandboxes.quickbooks.query import MAX_RESULTS_LIMIT
from local.sandboxes.sage.routes import MAX_ITEMS_PER_PAGE
from local.sandboxes.xero.query import MAX_PAGE_SIZE
from local.worlds import connect
from payedge_connect.models import Provider

NAME = "sync"
SEED = 5
BILLS = 12_000
OPEN_BILLS = 10_000
VENDORS = 2_000
DOCUMENTS = 200
LATENCY_S = 0.1

LISTING_ENDPOINTS = {
    Provider.QUICKBOOKS: frozenset({"query:bill", "query:vendor"}),
    Provider.XERO: frozenset({"get_invoices", "get_contacts"}),
    Provider.SAGE: frozenset({"list_purchase_invoices", "list_contacts"}),
}
DOCUMENT_ENDPOINTS = {
    Provider.QUICKBOOKS: frozenset({"query:attachable", "download", "download_file"}),
    Provider.XERO: frozenset({"get_invoice_attachments", "get_invoice_attachment"}),
    Provider.SAGE: frozenset({"list_attachments", "get_attachment", "get_attachment_file"}),
}
# The largest page each API serves, as its sandbox enforces it.
MAX_PAGE = {
    Provider.QUICKBOOKS: MAX_RESULTS_LIMIT,
    Provider.XERO: MAX_PAGE_SIZE,
    Provider.SAGE: MAX_ITEMS_PER_PAGE,
}
LISTING_SLACK = 1.05
# Calls a no-change re-sync may make: two per entity type synced (bills, vendors); QuickBooks' CDC
# answers both in one call.
# Issue 13: what a re-sync may read, with nothing changed and after CHANGED_BILLS bills changed.
RESYNC_READS_ALLOWED = 50
CHANGED_BILLS = 10
CHANGED_RESYNC_READS_ALLOWED = 100
RESYNC_CALLS_ALLOWED = {Provider.QUICKBOOKS: 1, Provider.XERO: 2 * 2, Provider.SAGE: 2 * 2}

COLUMNS = [
    "provider",
    "bills",
    "vendors",
    "listing_calls",
    "lower_bound_calls",
    "document_calls",
    "wall_s",
    "cpu_ms_per_bill",
    "ddb_items_written",
    "resync_provider_calls",
    "resync_items_written",
    "resync_ddb_items_read",
    "changed_resync_ddb_items_read",
    "sandbox_429s",
]


def run(providers: Sequence[Provider]) -> list[dict[str, Any]]:
    template = load_template()
    timeout_s = function_timeout(template, "SyncFunction")
    print(
        f"sync: {BILLS:,} bills ({OPEN_BILLS:,} open), {VENDORS:,} vendors, {DOCUMENTS} documents; "
        f"sandbox latency {LATENCY_S * 1000:.0f} ms per call; sync function timeout {timeout_s:.0f} s; "
        "providers at once, a process each"
    )
    rows = measure_providers(measure, providers)
    targets = {provider: _targets(provider, row) for provider, row in zip(providers, rows, strict=True)}
    path = write_results(NAME, rows)
    print_table(f"Scenario sync ({path.relative_to(path.parents[2])})", COLUMNS, rows)
    print("\nTargets")
    for provider in providers:
        print_targets(provider.value, targets[provider])
    return rows


def measure(provider: Provider) -> dict[str, Any]:
    """One provider's row, in an AWS (moto) of its own."""
    template = load_template()
    ledger = generate_ledger(seed=SEED, bills=BILLS, vendors=VENDORS, documents=DOCUMENTS, open_bills=OPEN_BILLS)
    print(f"sync: {provider.value} (sandbox limits: {describe_limits(provider)}) ...", flush=True)
    with mocked_aws(template) as aws:
        row = _measure(provider, ledger, aws, function_timeout(template, "SyncFunction"))
    row["targets"] = {target.name: "PASS" if target.passed else "FAIL" for target in _targets(provider, row)}
    print(f"sync: {provider.value} done in {row['wall_s']:.1f} s (re-sync {row['resync_wall_s']:.1f} s)")
    return row


def lower_bound_calls(provider: Provider, ledger: Ledger, vendors: int) -> int:
    """The listing calls the API cannot avoid at its largest page: one listing of the open bills (Sage:
    one per status, its status filter takes one value) and one of the vendors."""
    page = MAX_PAGE[provider]
    states = Counter(bill.state for bill in ledger.bills)
    if provider is Provider.SAGE:
        bill_listings = [states["open"], states["part_paid"]]  # status_id UNPAID, then PART_PAID
    else:
        bill_listings = [states["open"] + states["part_paid"]]
    if provider is Provider.QUICKBOOKS:
        # QuickBooks' query answers carry no total and no next link: a listing ends on the first page
        # shorter than MAXRESULTS, so n items cost n // 1000 + 1 calls (an exact multiple ends on an
        # empty page). Its vendor listing includes inactive vendors (a bill may be owed to one).
        return sum(count // page + 1 for count in [*bill_listings, len(ledger.vendors)])
    return sum(math.ceil(count / page) for count in bill_listings) + math.ceil(vendors / page)


def _measure(provider: Provider, ledger: Ledger, aws: Aws, timeout_s: float) -> dict[str, Any]:
    sandbox = sandbox_at_real_limits(provider, latency_s=LATENCY_S)
    with connect(
        provider, ledger, table=aws.table, kms_key_arn=aws.kms_key_arn, bucket=aws.bucket, sandbox=sandbox
    ) as world:
        lifetime = RequestWindow(sandbox, from_start=True)
        budget = world.services.api(world.connection).budget

        window, dynamodb = RequestWindow(sandbox), DYNAMODB.snapshot()
        wall, cpu, main_thread = time.perf_counter(), time.process_time(), time.thread_time()
        first = sync_until_done(world, function_timeout_s=timeout_s)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        main_thread = time.thread_time() - main_thread
        calls, dynamodb = window.calls(), DYNAMODB.snapshot() - dynamodb

        window, resync_dynamodb = RequestWindow(sandbox), DYNAMODB.snapshot()
        resync_wall = time.perf_counter()
        resync = sync_until_done(world, function_timeout_s=timeout_s)
        resync_wall = time.perf_counter() - resync_wall
        resync_calls, resync_dynamodb = window.calls(), DYNAMODB.snapshot() - resync_dynamodb

        # CHANGED_BILLS bills amended at the provider, then a re-sync (issue 13: its reads follow the change).
        open_now = world.open_payables()
        for bill_id in sorted(open_now)[:CHANGED_BILLS]:
            new_total = Decimal(str(open_now[bill_id]["totalAmount"])) + Decimal("10.00")
            world.sandbox.change_bill_amount(world.tenant_id, bill_id, new_total)
        world.sandbox.clock.advance(60)
        window, changed_dynamodb = RequestWindow(sandbox), DYNAMODB.snapshot()
        changed = sync_until_done(world, function_timeout_s=timeout_s)
        changed_calls, changed_dynamodb = window.calls(), DYNAMODB.snapshot() - changed_dynamodb

        items = world.items()
        throttled = lifetime.calls().throttled

    bills = sum(1 for item in items if item.get("recordType") == "payable" and item["status"] != "closed")
    vendors = sum(1 for item in items if item.get("recordType") == "vendor")
    run, resync_run = first.result.run, resync.result.run
    return {
        "provider": provider.value,
        "bills": bills,
        "vendors": vendors,
        "listing_calls": calls.of(LISTING_ENDPOINTS[provider]),
        "lower_bound_calls": lower_bound_calls(provider, ledger, vendors),
        "document_calls": calls.of(DOCUMENT_ENDPOINTS[provider]),
        "wall_s": round(wall, 2),
        "cpu_ms_per_bill": round(cpu * 1000 / bills, 3) if bills else None,
        "ddb_items_written": sum(dynamodb.written.values()),
        "resync_provider_calls": resync_calls.total,
        "resync_items_written": data_items(resync_dynamodb.written),
        "sandbox_429s": throttled,
        # What the figures above come from, and what else was seen.
        "provider_open_bills": len(ledger.unpaid_bills()),
        "provider_calls": calls.total,
        "calls_by_endpoint": dict(sorted(calls.by_endpoint.items())),
        "ddb_items_written_by_kind": dict(sorted(dynamodb.written.items())),
        "ddb_items_read": sum(dynamodb.read.values()),
        "main_thread_cpu_ms_per_bill": round(main_thread * 1000 / bills, 3) if bills else None,
        "outcome": run.outcome.value,
        "mode": run.mode.value if run.mode else None,
        "counts": run.counts.model_dump(mode="json"),
        "records_skipped": len(run.errors),
        "invocations": first.invocations,
        "throttled_pauses": first.throttled_pauses,
        "other_pauses": first.other_pauses,
        "pause_details": first.pause_details,
        "resync_outcome": resync_run.outcome.value,
        "resync_mode": resync_run.mode.value if resync_run.mode else None,
        "resync_wall_s": round(resync_wall, 2),
        "resync_calls_by_endpoint": dict(sorted(resync_calls.by_endpoint.items())),
        "resync_ddb_writes_by_kind": dict(sorted(resync_dynamodb.written.items())),
        "resync_ddb_items_read": sum(resync_dynamodb.read.values()),
        "resync_ddb_reads_by_operation": dict(sorted(resync_dynamodb.read.items())),
        "changed_resync_ddb_items_read": sum(changed_dynamodb.read.values()),
        "changed_resync_items_written": data_items(changed_dynamodb.written),
        "changed_resync_provider_calls": changed_calls.total,
        "changed_resync_counts": changed.result.run.counts.model_dump(mode="json"),
        "client_budget_per_minute": budget.budget.limits.per_minute if budget else None,
        "sandbox_limits": describe_limits(provider),
    }


def _targets(provider: Provider, row: dict[str, Any]) -> list[Target]:
    listing, lower = row["listing_calls"], row["lower_bound_calls"]
    allowed = RESYNC_CALLS_ALLOWED[provider]
    per_type = "one CDC call" if provider is Provider.QUICKBOOKS else "2 per entity type: bills, vendors"
    return [
        Target(
            f"listing_calls <= {LISTING_SLACK} x lower_bound_calls",
            listing <= LISTING_SLACK * lower,
            f"{listing} vs {LISTING_SLACK * lower:.1f} (lower bound {lower})",
        ),
        Target("resync_items_written = 0", row["resync_items_written"] == 0, str(row["resync_items_written"])),
        Target(
            f"resync_provider_calls <= {allowed} ({per_type})",
            row["resync_provider_calls"] <= allowed,
            str(row["resync_provider_calls"]),
        ),
        Target("sandbox_429s = 0", row["sandbox_429s"] == 0, str(row["sandbox_429s"])),
        Target(
            f"resync_ddb_items_read <= {RESYNC_READS_ALLOWED}",
            row["resync_ddb_items_read"] <= RESYNC_READS_ALLOWED,
            str(row["resync_ddb_items_read"]),
        ),
        Target(
            f"changed_resync_ddb_items_read <= {CHANGED_RESYNC_READS_ALLOWED} ({CHANGED_BILLS} bills changed)",
            row["changed_resync_ddb_items_read"] <= CHANGED_RESYNC_READS_ALLOWED,
            f"{row['changed_resync_ddb_items_read']} (bills changed: {row['changed_resync_counts']['bills_changed']})",
        ),
    ]
