"""One sync of one connection: read the provider, write only what changed, close what is no longer open.

Modes (models.SyncMode):
- full: every open bill at the provider's largest page size; stored open bills the listing no longer
  has are read one by one to learn why (paid elsewhere, voided, deleted) and closed with that reason;
  then the vendors those bills are owed to. Runs on the first sync, once a day, and whenever the
  incremental mechanism cannot reach back far enough. Of the table it reads the open payables only.
- incremental: the provider's changes since the last sync's start (minus an overlap for clock skew).
- entities: just what a webhook named.
Incremental and entity syncs read only the stored records of the bills and vendors the provider
returned (batch reads by key), so their cost follows what changed, not the size of the books. The
connection's open-bill and attention counts move with each write (storage: SYNC#COUNTS).

Every page is applied and checkpointed before the next is read, so a sync that hits the Lambda time
limit, a crash or a storm of 429s continues where it stopped (the worker re-queues it). A record the
connector could not read is skipped with its reason on the sync run; it never fails the sync.
A stale page never reopens a bill: a change older than what we stored is ignored.
"""

import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from payedge_connect.models import (
    ClosedReason,
    Connection,
    ConnectionStatus,
    InvoiceDocument,
    Payable,
    PayableStatus,
    RecordError,
    SyncCheckpoint,
    SyncMode,
    SyncOutcome,
    SyncRun,
    SyncSummary,
    SyncTrigger,
    Vendor,
)
from payedge_connect.observability import logger, metrics
from payedge_connect.providers.base import (
    AccountingConnector,
    ChangesPage,
    IncrementalWindowExpired,
    ProviderBill,
    ProviderVendor,
)
from payedge_connect.providers.budget import Priority
from payedge_connect.providers.http import (
    CallBudgetSpent,
    CallCounter,
    ProviderApi,
    ProviderError,
    ProviderUnavailable,
)
from payedge_connect.providers.registry import SUPPORTED_PROVIDERS
from payedge_connect.services import Services
from payedge_connect.storage.leases import HeldLease
from payedge_connect.storage.payables import PAYABLE_HASH_EXCLUDE, StoredState, content_hash, vendor_content_hash
from payedge_connect.storage.syncs import SyncState
from payedge_connect.sync import schedule
from payedge_connect.sync.documents import DocumentStore
from payedge_connect.tokens.refresh import ReauthorizationRequired, TokenRefreshUnavailable

FULL_RECONCILIATION_EVERY = timedelta(hours=24)
# Provider timestamps and ours disagree by seconds; re-reading a few minutes costs nothing (hashes).
WATERMARK_OVERLAP = timedelta(minutes=5)
# Documents fetched during a sync; the rest on first request, so attachments never starve bill sync.
DOCUMENTS_PER_RUN = 20
# Stop this long before the Lambda's deadline, checkpointed, and let the queue run the rest.
STOP_BEFORE_DEADLINE_SECONDS = 60.0
# More errors than this are counted but not listed (a sync run is one DynamoDB item).
_ERRORS_LISTED = 100
_CLOSED = PayableStatus.CLOSED.value
_BACKGROUND_TRIGGERS = frozenset({SyncTrigger.SCHEDULE, SyncTrigger.WEBHOOK})
# Provider-trouble pauses in a row (no page applied between) before the run ends failed and the
# connection is retried on its own schedule (sync/schedule.py) instead of re-queued forever.
MAX_TROUBLE_PAUSES = 10
# A refusal (a steady 4xx: Xero's 403 once the organisation is disconnected from the app) is asked again
# this many times, in case it was a passing state at the provider, before the run ends failed with the
# provider's words.
MAX_REFUSED_PAUSES = 2
# Vendor ids an incremental run remembers to check in its checkpoint (a sync run is one item); past
# this, it checks every open bill's vendor, as a full reconciliation does.
_VENDORS_TO_CHECK_LISTED = 1000


@dataclass(frozen=True)
class SyncResult:
    """What the worker does next: nothing (finished), or run the same sync again after a delay."""

    run: SyncRun
    continue_after_seconds: int | None = None


class _Pause(Exception):
    """Stop now, checkpointed; continue after `seconds`. `trouble`: the provider failed us."""

    def __init__(self, seconds: int, detail: str, *, trouble: bool = True, refused: bool = False) -> None:
        super().__init__(detail)
        self.seconds = seconds
        self.detail = detail
        self.trouble = trouble
        self.refused = refused


@dataclass
class _Context:
    services: Services
    connection: Connection
    connector: AccountingConnector
    api: ProviderApi
    documents: DocumentStore
    run: SyncRun
    time_left: Callable[[], float]
    accounting_software: str
    errors_seen: int = 0
    pending_documents: list[str] = field(default_factory=list)
    # The open payables' stored states (full reconciliation): read once per invocation, kept current.
    open_states: dict[str, StoredState] | None = None
    # Vendors known to be stored (read by key this invocation, or written by it).
    held_vendors: set[str] = field(default_factory=set)


def run_sync(
    services: Services,
    run: SyncRun,
    *,
    documents: DocumentStore,
    time_left: Callable[[], float],
    full: bool = False,
    bill_ids: Sequence[str] = (),
    vendor_ids: Sequence[str] = (),
) -> SyncResult:
    """Run (or continue) one sync; never raises for provider or record trouble - the run says what happened."""
    store = services.store
    stored_run = store.syncs.get_sync_run(run.connection_id, run.sync_run_id)
    run = stored_run or run
    if run.outcome is not SyncOutcome.RUNNING:
        return SyncResult(run)  # a duplicate delivery of a finished sync
    connection = store.connections.get_connection(run.connection_id)
    if connection is None or connection.status is not ConnectionStatus.CONNECTED:
        status = connection.status.value if connection else "missing"
        return SyncResult(_finish(services, run, SyncOutcome.FAILED, f"the connection is {status}; nothing synced"))

    lease = HeldLease(store.leases, connection.connection_id, "sync", uuid.uuid4().hex, clock=services.clock)
    if not lease.held:
        # Another sync of this connection is running: this one waits its turn.
        return SyncResult(run, continue_after_seconds=30)
    lease.start()
    calls = CallCounter(total=run.provider_calls)
    context = _Context(
        services=services,
        connection=connection,
        connector=services.connector(connection.provider),
        api=services.api(
            connection,
            calls=calls,
            # Scheduled and webhook syncs yield to payments and users in the organisation's call budget.
            priority=Priority.BACKGROUND if run.trigger in _BACKGROUND_TRIGGERS else Priority.INTERACTIVE,
            time_left=time_left,
        ),
        documents=documents,
        run=run,
        time_left=time_left,
        accounting_software=next(p.display_name for p in SUPPORTED_PROVIDERS if p.provider is connection.provider),
        errors_seen=len(run.errors),
    )
    try:
        if run.checkpoint is None:
            run.checkpoint, run.mode = _plan(context, full=full, bill_ids=bill_ids, vendor_ids=vendor_ids)
        _run_phases(context, bill_ids=bill_ids, vendor_ids=vendor_ids)
        run.provider_calls = calls.total
        outcome = SyncOutcome.PARTIAL if run.errors or context.errors_seen else SyncOutcome.SUCCEEDED
        return SyncResult(_finish(services, run, outcome, None, completed=True))
    except _Pause as pause:
        run.provider_calls = calls.total
        return _paused(services, run, pause)
    except ReauthorizationRequired:
        run.provider_calls = calls.total
        return SyncResult(_finish(services, run, SyncOutcome.FAILED, "the accounting software needs reauthorisation"))
    finally:
        lease.stop()


def _paused(services: Services, run: SyncRun, pause: _Pause) -> SyncResult:
    """Checkpoint and continue later; after too much provider trouble in a row, end failed instead."""
    if pause.trouble and run.checkpoint is not None:
        run.checkpoint.trouble_pauses += 1
        limit = MAX_REFUSED_PAUSES if pause.refused else MAX_TROUBLE_PAUSES
        if run.checkpoint.trouble_pauses > limit:
            detail = f"{pause.detail}; gave up after {limit} tries, retried on the connection's schedule"
            return SyncResult(_finish(services, run, SyncOutcome.FAILED, detail[:500]))
    run.detail = pause.detail
    services.store.syncs.put_sync_run(run)
    logger.info("Sync paused", extra={"sync_run_id": run.sync_run_id, "reason": pause.detail})
    return SyncResult(run, continue_after_seconds=pause.seconds)


# ---------------------------------------------------------------------------------------------- planning


def _plan(
    context: _Context, *, full: bool, bill_ids: Sequence[str], vendor_ids: Sequence[str]
) -> tuple[SyncCheckpoint, SyncMode]:
    if bill_ids or vendor_ids:
        return SyncCheckpoint(phase="entities"), SyncMode.ENTITIES
    store = context.services.store
    connection_id = context.connection.connection_id
    state = store.syncs.get_sync_state(connection_id)
    now = context.services.clock()
    if state.watermark is None and store.payables.get_counts(connection_id) is None:
        store.payables.set_counts(connection_id, open_bills=0, vendors_needing_attention=0)  # nothing stored yet
    due_for_full = state.last_full_sync_at is None or now - state.last_full_sync_at >= FULL_RECONCILIATION_EVERY
    if full or state.watermark is None or due_for_full:
        return SyncCheckpoint(phase="open_bills", check_all_vendors=True), SyncMode.FULL
    return SyncCheckpoint(phase="changes", since=state.watermark - WATERMARK_OVERLAP), SyncMode.INCREMENTAL


def _run_phases(context: _Context, *, bill_ids: Sequence[str], vendor_ids: Sequence[str]) -> None:
    connector, api = context.connector, context.api
    context.pending_documents = list(_checkpoint(context).documents_pending)
    if _checkpoint(context).phase == "entities":
        if bill_ids:
            _read_bills_by_id(context, list(bill_ids), None)
        if vendor_ids:
            _apply_page(context, _guarded(context, partial(connector.vendors_by_id, api, list(vendor_ids))), None)
        _next_phase(context, "missing_vendors")
    if _checkpoint(context).phase == "changes":
        try:
            _pages(context, lambda resume: connector.changes_since(api, _since(context), resume=resume), known=None)
            _next_phase(context, "missing_vendors")
        except IncrementalWindowExpired:
            logger.info("Incremental window expired: full reconciliation", extra={"run": context.run.sync_run_id})
            context.run.mode = SyncMode.FULL
            context.run.checkpoint = SyncCheckpoint(phase="open_bills", check_all_vendors=True)
    if _checkpoint(context).phase == "open_bills":
        known = _open_states(context)
        _pages(context, lambda resume: connector.open_bills(api, resume=resume), known=known, remember_seen=True)
        _next_phase(context, "close_missing")
    if _checkpoint(context).phase == "close_missing":
        _close_missing(context)
        _next_phase(context, "vendors")
    if _checkpoint(context).phase == "vendors":
        _pages(context, lambda resume: connector.vendors(api, resume=resume), known=None)
        _next_phase(context, "missing_vendors")
    if _checkpoint(context).phase == "missing_vendors":
        _fetch_missing_vendors(context)
        _next_phase(context, "documents")
    if _checkpoint(context).phase == "documents":
        _fetch_documents(context)
        _next_phase(context, "done")


def _checkpoint(context: _Context) -> SyncCheckpoint:
    checkpoint = context.run.checkpoint
    assert checkpoint is not None, "a running sync always has a checkpoint"
    return checkpoint


def _since(context: _Context) -> datetime:
    since = _checkpoint(context).since
    assert since is not None, "an incremental sync starts from a watermark"
    return since


def _next_phase(context: _Context, phase: str) -> None:
    """Move on; saved only when leaving a listing that read pages (redoing any other phase after an
    interruption costs no more than its checkpoint write would)."""
    listed = _checkpoint(context).pages > 0
    context.run.checkpoint = _checkpoint(context).model_copy(
        update={"phase": phase, "resume": None, "pages": 0, "documents_pending": context.pending_documents[:500]}
    )
    if listed:
        context.services.store.syncs.put_sync_run(context.run)


# ---------------------------------------------------------------------------------------------- reading


def _pages(
    context: _Context,
    listing: Callable[[str | None], Iterator[ChangesPage]],
    *,
    known: dict[str, StoredState] | None,
    remember_seen: bool = False,
) -> None:
    """Apply a listing page by page, checkpointing after each so an interruption resumes after it."""
    checkpoint = _checkpoint(context)
    pages = _guarded(context, lambda: listing(checkpoint.resume))
    while True:
        if context.time_left() < STOP_BEFORE_DEADLINE_SECONDS:
            raise _Pause(0, "the Lambda time limit is near; continuing in a new invocation", trouble=False)
        page = _guarded(context, lambda: next(pages, None))
        if page is None:
            return
        _apply_page(context, page, known)
        if remember_seen:
            context.services.store.syncs.add_seen_bills(
                context.connection.connection_id,
                context.run.sync_run_id,
                checkpoint.pages,
                [bill.bill_id for bill in page.bills if bill.is_open],
                now=context.services.clock(),
            )
        checkpoint.pages += 1
        checkpoint.resume = page.resume
        checkpoint.trouble_pauses = 0
        checkpoint.documents_pending = context.pending_documents[:500]
        context.run.provider_calls = context.api.calls.total
        context.services.store.syncs.put_sync_run(context.run)
        if page.resume is None:
            return


def _guarded[T](context: _Context, call: Callable[[], T]) -> T:
    """Provider trouble pauses the sync (checkpointed) instead of failing it."""
    try:
        return call()
    except CallBudgetSpent as error:
        raise _Pause(
            min(max(math.ceil(error.retry_after or 60), 1), 900),
            f"waiting for the organisation's {error.limit} call budget (calls resume in {error.retry_after:.0f} s)",
            trouble=False,  # our own pacing (Xero's day, say), not the provider failing: never ends the run
        ) from None
    except ProviderUnavailable as error:
        wait = int(error.retry_after or 60)
        raise _Pause(
            min(max(wait, 1), 900), f"the accounting software is unavailable ({error.status}); retrying"
        ) from None
    except TokenRefreshUnavailable as error:
        raise _Pause(60, str(error)) from None
    except ProviderError as error:
        raise _Pause(
            300, f"the accounting software refused a listing ({error.status}): {error.message[:300]}", refused=True
        ) from None


def _open_states(context: _Context) -> dict[str, StoredState]:
    if context.open_states is None:
        context.open_states = context.services.store.payables.open_payable_states(context.connection.connection_id)
    return context.open_states


# ---------------------------------------------------------------------------------------------- applying


def _apply_page(context: _Context, page: ChangesPage, known: dict[str, StoredState] | None) -> None:
    for skipped in page.skipped:
        _record_error(
            context, RecordError(entity=skipped.entity, provider_id=skipped.provider_id, reason=skipped.reason)
        )
    if page.bills:
        _apply_bills(context, page.bills, known)
    if page.vendors:
        _apply_vendors(context, page.vendors)


def _payable(context: _Context, bill: ProviderBill, stored: StoredState | None) -> Payable:
    if bill.is_open:
        status = PayableStatus.PART_PAID if bill.amount_due < bill.total_amount else PayableStatus.OPEN
    else:
        status = PayableStatus.CLOSED
    document = None
    if bill.document is not None:
        same_document = stored is not None and stored.document_id == bill.document.provider_document_id
        document = InvoiceDocument(
            provider_document_id=bill.document.provider_document_id,
            file_name=bill.document.file_name,
            content_type=bill.document.content_type,
            size_bytes=bill.document.size_bytes,
            object_key=stored.document_key if same_document and stored else None,
        )
    return Payable(
        connection_id=context.connection.connection_id,
        bill_id=bill.bill_id,
        vendor_id=bill.vendor_id,
        vendor_name=bill.vendor_name,
        currency=bill.currency,
        amount_due=bill.amount_due,
        total_amount=bill.total_amount,
        invoice_number=bill.invoice_number,
        remittance_note=bill.remittance_note,
        issue_date=bill.issue_date,
        due_date=bill.due_date,
        accounting_software=context.accounting_software,
        document=document,
        status=status,
        closed_reason=None if bill.is_open else _closed_reason(bill, stored),
        provider_updated_at=bill.updated_at,
    )


def _closed_reason(bill: ProviderBill, stored: StoredState | None) -> ClosedReason | None:
    # The provider sees a paid bill; only we know the payment went through the platform.
    if (
        bill.closed_reason is ClosedReason.PAID_ELSEWHERE
        and stored is not None
        and stored.closed_reason == ClosedReason.PAID_THROUGH_PLATFORM.value
    ):
        return ClosedReason.PAID_THROUGH_PLATFORM
    return bill.closed_reason


def _apply_bills(context: _Context, bills: Sequence[ProviderBill], known: dict[str, StoredState] | None) -> None:
    store = context.services.store
    connection_id = context.connection.connection_id
    # Stored states by key, of these bills only: `known` (the open payables) where it has them.
    unknown = [bill.bill_id for bill in bills if known is None or bill.bill_id not in known]
    stored_states = store.payables.payable_states_of(connection_id, unknown) if unknown else {}
    if known is not None:
        stored_states.update({bill.bill_id: known[bill.bill_id] for bill in bills if bill.bill_id in known})
    counts = context.run.counts
    to_write: list[Payable] = []
    previous: dict[str, str | None] = {}
    vendors_of_open: set[str] = set()
    for bill in bills:
        stored = stored_states.get(bill.bill_id)
        payable = _payable_to_consider(context, bill, stored)
        if payable is None:
            continue
        fingerprint = content_hash(payable, exclude=PAYABLE_HASH_EXCLUDE)
        if stored is not None and stored.content_hash == fingerprint:
            counts.bills_unchanged += 1
            continue
        if stored is None:
            counts.bills_new += 1
        elif payable.status is PayableStatus.CLOSED and stored.status != _CLOSED:
            counts.bills_closed += 1
        else:
            counts.bills_changed += 1
        open_now = payable.status is not PayableStatus.CLOSED
        if open_now and payable.document is not None and payable.document.object_key is None:
            context.pending_documents.append(payable.bill_id)
        if open_now:
            vendors_of_open.add(payable.vendor_id)
        to_write.append(payable)
        previous[payable.bill_id] = stored.status if stored else None
        if known is not None:
            known[bill.bill_id] = StoredState(
                content_hash=fingerprint,
                status=payable.status.value,
                provider_updated_at=None,
                vendor_id=payable.vendor_id,
                document_id=stored.document_id if stored else None,
                document_key=stored.document_key if stored else None,
                closed_reason=payable.closed_reason.value if payable.closed_reason else None,
            )
    if to_write:
        store.payables.put_payables(to_write, now=context.services.clock(), previous=previous)
    _note_vendors_to_check(context, vendors_of_open)


def _note_vendors_to_check(context: _Context, vendor_ids: set[str]) -> None:
    """Remember the vendors of newly written open bills that are not stored yet (read by key)."""
    checkpoint = _checkpoint(context)
    if checkpoint.check_all_vendors:
        return  # every open bill's vendor is checked at the end
    listed = set(checkpoint.vendors_to_check)
    unknown = vendor_ids - context.held_vendors - listed
    if not unknown:
        return
    held = context.services.store.payables.vendors_held(context.connection.connection_id, unknown)
    context.held_vendors |= held
    missing = sorted(unknown - held)
    if len(listed) + len(missing) > _VENDORS_TO_CHECK_LISTED:
        checkpoint.check_all_vendors = True
        checkpoint.vendors_to_check = []
    else:
        checkpoint.vendors_to_check.extend(missing)


def _payable_to_consider(context: _Context, bill: ProviderBill, stored: StoredState | None) -> Payable | None:
    """The payable this bill means for us, or None when it changes nothing we hold."""
    if stored is None and not bill.is_open:
        return None  # a bill we never held open: nothing to close
    if not bill.is_open and bill.closed_reason is None:
        return None  # not approved (yet): not payable, not closed either
    if stored is not None and _is_stale(bill, stored):
        context.run.counts.bills_unchanged += 1
        return None
    if not bill.is_open and not bill.currency:
        # A deletion tombstone (QuickBooks CDC, Sage deleted_since) names only the bill: the rest of
        # the closed record comes from what we stored.
        bill = _from_stored(context, bill.bill_id, bill.closed_reason or ClosedReason.DELETED, bill.updated_at)
    return _payable(context, bill, stored)


def _is_stale(bill: ProviderBill, stored: StoredState) -> bool:
    if bill.updated_at is None or stored.provider_updated_at is None:
        return False
    return bill.updated_at < datetime.fromisoformat(stored.provider_updated_at.replace("Z", "+00:00"))


def _close_missing(context: _Context) -> None:
    """Stored open bills a completed full listing did not return: ask the provider why, and close them.
    The open-bill count is then exact, and set (whatever drift the deltas had ends here)."""
    store = context.services.store
    connection_id = context.connection.connection_id
    seen = store.syncs.seen_bills(connection_id, context.run.sync_run_id)
    states = _open_states(context)
    missing = [bill_id for bill_id, state in states.items() if state.status != _CLOSED and bill_id not in seen]
    for start in range(0, len(missing), 50):
        _read_bills_by_id(context, missing[start : start + 50], states)
    store.payables.set_counts(connection_id, open_bills=sum(1 for state in states.values() if state.status != _CLOSED))


def _read_bills_by_id(context: _Context, bill_ids: list[str], known: dict[str, StoredState] | None) -> None:
    """Apply the provider's current state of these bills; one we hold that it no longer returns at all was
    deleted there, and is closed from our stored copy."""
    page = _guarded(context, partial(context.connector.bills_by_id, context.api, bill_ids))
    returned = {bill.bill_id for bill in page.bills}
    states = (
        known
        if known is not None
        else context.services.store.payables.payable_states_of(context.connection.connection_id, bill_ids)
    )
    gone = [
        _from_stored(context, bill_id, ClosedReason.DELETED, None)
        for bill_id in bill_ids
        if bill_id not in returned and bill_id in states and states[bill_id].status != _CLOSED
    ]
    _apply_page(context, ChangesPage(bills=[*page.bills, *gone], skipped=page.skipped), known)


def _from_stored(context: _Context, bill_id: str, reason: ClosedReason, updated_at: datetime | None) -> ProviderBill:
    """A closed bill built from our stored copy (the provider no longer says what it was)."""
    stored = context.services.store.payables.get_payable(context.connection.connection_id, bill_id)
    assert stored is not None, "only bills we hold are closed from what we hold"
    return ProviderBill(
        bill_id=bill_id,
        vendor_id=stored.vendor_id,
        vendor_name=stored.vendor_name,
        currency=stored.currency,
        total_amount=stored.total_amount,
        amount_due=stored.amount_due,
        invoice_number=stored.invoice_number,
        remittance_note=stored.remittance_note,
        issue_date=stored.issue_date,
        due_date=stored.due_date,
        is_open=False,
        closed_reason=reason,
        document=None,
        updated_at=updated_at,
    )


def _open_vendor_ids(context: _Context) -> set[str]:
    """Vendors that open bills are owed to (full reconciliation: read from the open payables)."""
    return {s.vendor_id for s in _open_states(context).values() if s.status != _CLOSED and s.vendor_id}


def _apply_vendors(context: _Context, vendors: Iterable[ProviderVendor]) -> None:
    """Store the vendors that open bills are owed to; a new or changed vendor needs the platform's attention.

    Wanted: the vendors we hold (read by key, of those returned) and those of open bills we hold
    without their vendor (the checkpoint's list; in a full reconciliation every open bill's vendor).
    """
    store = context.services.store
    connection_id = context.connection.connection_id
    listed = list({vendor.vendor_id: vendor for vendor in vendors}.values())
    if not listed:
        return
    stored = store.payables.get_vendors(connection_id, [vendor.vendor_id for vendor in listed])
    checkpoint = _checkpoint(context)
    wanted = set(stored) | set(checkpoint.vendors_to_check)
    if checkpoint.check_all_vendors:
        wanted |= _open_vendor_ids(context)
    counts = context.run.counts
    to_write: list[Vendor] = []
    for item in listed:
        if item.vendor_id not in wanted:
            continue
        vendor = Vendor(
            connection_id=connection_id,
            vendor_id=item.vendor_id,
            name=item.name,
            email=item.email,
            address=item.address,
            attention_required=True,
            provider_updated_at=item.updated_at,
        )
        previous = stored.get(item.vendor_id)
        context.held_vendors.add(item.vendor_id)
        if previous is None:
            counts.vendors_new += 1
        elif vendor_content_hash(previous) == vendor_content_hash(vendor):
            counts.vendors_unchanged += 1
            continue
        else:
            counts.vendors_changed += 1
        to_write.append(vendor)
    if to_write:
        store.payables.put_vendors(
            to_write, previous={vendor.vendor_id: stored.get(vendor.vendor_id) for vendor in to_write}
        )
    if checkpoint.vendors_to_check:
        checkpoint.vendors_to_check = [v for v in checkpoint.vendors_to_check if v not in context.held_vendors]


def _fetch_missing_vendors(context: _Context) -> None:
    """Vendors of open bills we do not hold yet (a new bill from a vendor an incremental listing did not
    name, or one a full vendor listing did not return), fetched by id."""
    checkpoint = _checkpoint(context)
    wanted = _open_vendor_ids(context) if checkpoint.check_all_vendors else set(checkpoint.vendors_to_check)
    unknown = wanted - context.held_vendors
    held = context.services.store.payables.vendors_held(context.connection.connection_id, unknown) if unknown else set()
    context.held_vendors |= held
    missing = sorted(unknown - held)
    for start in range(0, len(missing), 50):
        chunk = missing[start : start + 50]
        page = _guarded(context, partial(context.connector.vendors_by_id, context.api, chunk))
        _apply_page(context, page, None)
    checkpoint.vendors_to_check = []
    checkpoint.check_all_vendors = False


def _fetch_documents(context: _Context) -> None:
    budget = DOCUMENTS_PER_RUN
    store = context.services.store
    remaining = list(dict.fromkeys(context.pending_documents))
    while remaining and budget > 0:
        bill_id = remaining.pop(0)
        payable = store.payables.get_payable(context.connection.connection_id, bill_id)
        if (
            payable is None
            or payable.document is None
            or payable.document.object_key
            or payable.status is PayableStatus.CLOSED
        ):
            continue
        try:
            context.documents.fetch_into_bucket(context.connector, context.api, payable)
        except (ProviderError, ProviderUnavailable) as error:
            # Not fatal: the document is fetched on first request instead.
            logger.warning("Document not fetched", extra={"bill_id": bill_id, "status": error.status})
            continue
        context.run.counts.documents_stored += 1
        budget -= 1
    context.pending_documents = remaining


# ---------------------------------------------------------------------------------------------- finishing


def _record_error(context: _Context, error: RecordError) -> None:
    context.errors_seen += 1
    if len(context.run.errors) < _ERRORS_LISTED:
        context.run.errors.append(error)


def _changed(run: SyncRun) -> bool:
    counts = run.counts
    return bool(
        counts.bills_new + counts.bills_changed + counts.bills_closed + counts.vendors_new + counts.vendors_changed
    )


def _finish(
    services: Services, run: SyncRun, outcome: SyncOutcome, detail: str | None, *, completed: bool = False
) -> SyncRun:
    store = services.store
    now = services.clock()
    run.outcome = outcome
    run.finished_at = now
    run.detail = detail
    run.checkpoint = None
    store.syncs.put_sync_run(run)
    if completed and run.mode in (SyncMode.FULL, SyncMode.INCREMENTAL):
        previous = store.syncs.get_sync_state(run.connection_id)
        store.syncs.save_sync_state(
            run.connection_id,
            SyncState(
                watermark=run.started_at,
                last_full_sync_at=run.started_at if run.mode is SyncMode.FULL else previous.last_full_sync_at,
            ),
        )
    store.syncs.release_sync_slot(run.connection_id, run.sync_run_id)
    connection = store.connections.get_connection(run.connection_id)
    if connection is not None:
        counts = store.payables.get_counts(run.connection_id)
        if counts is None:
            # A connection stored before the counts were kept: counted once, kept by deltas from now on.
            open_bills = store.payables.count_payables(
                run.connection_id, PayableStatus.OPEN
            ) + store.payables.count_payables(run.connection_id, PayableStatus.PART_PAID)
            attention = store.payables.count_vendors_needing_attention(run.connection_id)
            store.payables.set_counts(run.connection_id, open_bills=open_bills, vendors_needing_attention=attention)
        else:
            open_bills, attention = counts.open_bills, counts.vendors_needing_attention
        summary = SyncSummary(
            sync_run_id=run.sync_run_id,
            outcome=outcome.value,
            finished_at=now,
            open_bills=open_bills,
            vendors_needing_attention=attention,
        )
        # A webhook's entity sync leaves the poll schedule alone; every other run sets the next due time.
        next_schedule = (
            None
            if run.mode is SyncMode.ENTITIES
            else schedule.after_run(
                connection.provider,
                connection.connection_id,
                connection.sync_schedule,
                outcome=outcome,
                changed=_changed(run),
                now=now,
            )
        )
        store.connections.record_sync_outcome(run.connection_id, summary, next_schedule)
    metrics.add_metric(name=f"Sync{outcome.value.capitalize()}", unit="Count", value=1)
    logger.info(
        "Sync finished",
        extra={"sync_run_id": run.sync_run_id, "outcome": outcome.value, "provider_calls": run.provider_calls},
    )
    return run
