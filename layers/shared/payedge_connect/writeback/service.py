"""Writing paid bills back to the accounting software: checks, staleness, then exactly one payment each.

A payment run is many payment orders of one connection processed together (`process_payments`): one
staleness check for the whole group, the payments posted in the provider's largest batch (QuickBooks
/batch of 30, Xero arrays of 50, Sage one by one: it has no batch path), then the fees likewise. Each
order has its own outcome: a refused member rejects only itself, with the provider's words.

Exactly once, across duplicates, retries, timeouts, crashes and reconnections:
1. the payment order is recorded under its number before anything else (orders.py: a duplicate finds it);
2. one write-back per connection at a time (a DynamoDB lease);
3. each attempt is counted on the record BEFORE the batch holding it is sent, so after an uncertain
   outcome (timeout, 5xx, dropped connection, a member without an answer) its members are looked up at
   the provider by their references, and only the missing ones are posted again;
4. the provider's own idempotency key covers its window: a batch's key is derived from its members
   (the same members again are a replay, other members another key), a single post's from its payment
   order number; our record outlives every provider's window (Xero's is minutes).

Outcomes: posted, rejected (a check or the provider refused, with the reason), needs_attention (the
bill changed at the provider since the last sync, or the mapping lacks an account), waiting_for_reconnection
(held until the user reconnects), failed (after bounded retries; retryable through the API).
"""

import hashlib
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from payedge_connect.errors import NotFoundError
from payedge_connect.models import (
    ClosedReason,
    Connection,
    ConnectionStatus,
    Payable,
    PayableStatus,
    PaymentOrder,
    PaymentOrderStatus,
)
from payedge_connect.observability import logger, metrics
from payedge_connect.providers.answers import Verdict, classify, provider_words
from payedge_connect.providers.base import BillCheck, FeeToPost, PaymentRejected, PaymentToPost, Posted
from payedge_connect.providers.http import CallBudgetSpent, ProviderError, ProviderUnavailable
from payedge_connect.services import Services
from payedge_connect.storage.leases import HeldLease
from payedge_connect.tokens.refresh import ReauthorizationRequired, TokenRefreshUnavailable
from payedge_connect.writeback.events import publish_outcome
from payedge_connect.writeback.orders import MAX_ATTEMPTS, WritebackBusy, settlement

# The provider's clock and ours disagree by seconds: a changed-since staleness read starts this much
# before the last sync began (the sync engine's own watermark overlap).
_SYNC_CLOCK_MARGIN = timedelta(minutes=5)
_FINAL = {
    PaymentOrderStatus.POSTED,
    PaymentOrderStatus.REJECTED,
    PaymentOrderStatus.NEEDS_ATTENTION,
    # Not final, but nothing a run does now: a later event (settled) or a reversal moves these on.
    PaymentOrderStatus.WAITING_FOR_SETTLEMENT,
    PaymentOrderStatus.REVERSED,
    PaymentOrderStatus.REVERSAL_NEEDS_ATTENTION,
}


class WritebackRetryLater(Exception):
    """The provider could not be reached or answered with a fault worth retrying; `delay_seconds` when
    the wait is known (the organisation's call budget names it)."""

    def __init__(self, reason: str, *, delay_seconds: int | None = None) -> None:
        super().__init__(reason)
        self.delay_seconds = delay_seconds


@dataclass(frozen=True)
class Outcome:
    status: PaymentOrderStatus
    reason_code: str | None = None
    reason: str | None = None


def idempotency_key(connection_id: str, payment_order_number: str, purpose: str) -> str:
    """A stable key per payment order and purpose (payment or fee): 32 hex characters fit every provider."""
    return hashlib.sha256(f"{connection_id}:{payment_order_number}:{purpose}".encode()).hexdigest()[:32]


def process_payment(
    services: Services, connection_id: str, payment_order_number: str, *, bus_name: str
) -> PaymentOrder:
    """Take one payment order as far as it can go now (a payment run of one).
    Raises WritebackBusy/WritebackRetryLater to be retried."""
    if services.store.payment_orders.get_payment_order(connection_id, payment_order_number) is None:
        raise NotFoundError(f"no payment order {payment_order_number}")
    run = process_payments(services, connection_id, [payment_order_number], bus_name=bus_name)
    if run.busy:
        raise WritebackBusy(f"another write-back of connection {connection_id} is running")
    if payment_order_number in run.retry_later:
        wait = run.wait_s.get(payment_order_number)
        raise WritebackRetryLater(
            run.retry_later[payment_order_number], delay_seconds=math.ceil(wait) if wait else None
        )
    return run.orders[payment_order_number]


@dataclass
class PaymentRun:
    """What one invocation made of a connection's payment orders.

    `orders`: every order as it stands now. `busy`: another write-back holds the connection's lease and
    nothing was done. `retry_later`: orders the provider could not take now (number -> why), to be
    queued again with a delay (`wait_s` where the provider named one); `not_reached`: orders the
    invocation had no time left for, to be queued again at once."""

    orders: dict[str, PaymentOrder] = field(default_factory=dict)
    busy: bool = False
    retry_later: dict[str, str] = field(default_factory=dict)
    not_reached: list[str] = field(default_factory=list)
    # Seconds the provider asked us to wait (Retry-After) before an order handed back is tried again.
    wait_s: dict[str, float] = field(default_factory=dict)


def process_payments(
    services: Services,
    connection_id: str,
    payment_order_numbers: Sequence[str],
    *,
    bus_name: str,
    time_left: Callable[[], float] | None = None,
) -> PaymentRun:
    """A payment run: many payment orders of one connection, under the connection's lease, with one
    staleness check for the whole group, then the payments in the provider's largest batches, then the
    fees likewise. Each order ends with its own outcome; numbers with no order recorded are skipped."""
    store = services.store
    run = PaymentRun()
    pending: list[PaymentOrder] = []
    for number in dict.fromkeys(payment_order_numbers):
        order = store.payment_orders.get_payment_order(connection_id, number)
        if order is None:
            logger.warning("No payment order to process", extra={"order": number})
            continue
        run.orders[number] = order
        if order.status not in _FINAL and order.status is not PaymentOrderStatus.FAILED:
            pending.append(order)
    connection = store.connections.get_connection(connection_id)
    unreachable = _unreachable(connection)
    if unreachable is not None:
        for order in pending:
            run.orders[order.payment_order_number] = _conclude(services, order, _held(order, unreachable), bus_name)
    if connection is None or unreachable is not None or not pending:
        return run

    with HeldLease(store.leases, connection_id, "writeback", uuid.uuid4().hex, clock=services.clock) as lease:
        if not lease.held:
            run.busy = True
            return run
        # Read again under the lease: the run that held it before may have moved these orders on.
        pending = [_current(services, order) for order in pending]
        run.orders.update({order.payment_order_number: order for order in pending})
        pending = [o for o in pending if o.status not in _FINAL and o.status is not PaymentOrderStatus.FAILED]
        group = _Group(services, connection, bus_name, run, time_left or (lambda: float("inf")), lease=lease)
        try:
            group.process([o for o in pending if o.status is not PaymentOrderStatus.REVERSING])
            group.reverse([o for o in pending if o.status is PaymentOrderStatus.REVERSING])
        except ReauthorizationRequired:
            refreshed = store.connections.get_connection(connection_id) or connection
            for order in pending:
                current = _current(services, order)
                if current.status not in _FINAL:
                    outcome = _held(current, _waiting(refreshed))
                    run.orders[order.payment_order_number] = _conclude(services, current, outcome, bus_name)
                run.retry_later.pop(order.payment_order_number, None)
    return run


def _unreachable(connection: Connection | None) -> Outcome | None:
    """Why nothing can be posted through this connection now, if so."""
    if connection is None or connection.status is ConnectionStatus.DISCONNECTED:
        removed = "The connection to the accounting software was removed."
        return Outcome(PaymentOrderStatus.REJECTED, "connection_disconnected", removed)
    if connection.status is not ConnectionStatus.CONNECTED:
        return _waiting(connection)
    return None


def _held(order: PaymentOrder, outcome: Outcome) -> Outcome:
    """What a connection that cannot be reached makes of an order: a reversal waits for the user (who
    reverses again once reconnected), anything else as `outcome` says."""
    if order.status is not PaymentOrderStatus.REVERSING:
        return outcome
    return Outcome(
        PaymentOrderStatus.REVERSAL_NEEDS_ATTENTION,
        outcome.reason_code,
        f"{outcome.reason} The reversal is made when it is requested again after that.",
    )


def _waiting(connection: Connection) -> Outcome:
    return Outcome(
        PaymentOrderStatus.WAITING_FOR_RECONNECTION,
        "reauthorization_required",
        "The accounting software needs to be reconnected; the payment is held and will be posted after.",
    )


def batch_idempotency_key(connection_id: str, purpose: str, payment_order_numbers: Sequence[str]) -> str:
    """The key of one batch posting, derived from its members: the same members again are a replay
    the provider recognises, and any other set of members gets another key."""
    members = ",".join(sorted(payment_order_numbers))
    return hashlib.sha256(f"{connection_id}:{purpose}:batch:{members}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class _Kind:
    """Payments or fees: what a batch posts, where the provider's id and the attempts are recorded."""

    purpose: str
    id_field: str
    attempts_field: str


_PAYMENTS = _Kind("payment", "provider_payment_id", "attempts")
_FEES = _Kind("fee", "provider_fee_id", "fee_attempts")


@dataclass(frozen=True)
class _Undo:
    """A payment or its fee undone: the connector's undo and look-up, where it is recorded."""

    id_field: str
    done_field: str
    attempts_field: str
    undo: str
    check: str


_PAYMENT_UNDO = _Undo(
    "provider_payment_id", "payment_reversed", "reversal_attempts", "reverse_payment", "payment_reversed"
)
_FEE_UNDO = _Undo("provider_fee_id", "fee_reversed", "fee_reversal_attempts", "reverse_fee", "fee_reversed")
# A batch whose answer was lost is resolved (looked up, the missing re-posted) this many times in one
# invocation; what is still unknown after that is retried later.
_RESOLUTIONS_PER_INVOCATION = 1
# Seconds an invocation keeps in hand: no new batch starts with less time left.
_TIME_IN_HAND_SECONDS = 20.0


class _Group:
    """One connection's payment orders in one invocation, under its lease."""

    def __init__(
        self,
        services: Services,
        connection: Connection,
        bus_name: str,
        run: PaymentRun,
        time_left: Callable[[], float],
        *,
        lease: HeldLease,
    ) -> None:
        self.services = services
        self.lease = lease
        self.store = services.store
        self.connection = connection
        self.bus_name = bus_name
        self.run = run
        self.time_left = time_left
        self.connector = services.connector(connection.provider)
        # The run waits for the organisation's call budget while its invocation has time for it.
        self.api = services.api(connection, time_left=time_left)
        self.payables: dict[str, Payable] = {}

    # ------------------------------------------------------------------------------------ the run

    def process(self, pending: list[PaymentOrder]) -> None:
        self.payables = self.store.payables.get_payables(self.connection.connection_id, {o.bill_id for o in pending})
        fresh = [o for o in pending if o.provider_payment_id is None and o.attempts == 0]
        # Orders of which nothing can have reached the provider yet: the checks decide first.
        checked = {order.payment_order_number for order in self._checked(fresh)}
        alive = [o for o in pending if o.payment_order_number in checked or o not in fresh]
        try:
            paid = self._post(_PAYMENTS, [o for o in alive if o.provider_payment_id is None])
            with_payment = [o for o in alive if o.provider_payment_id is not None] + paid
            owing_fee = [o for o in with_payment if o.fee_amount and o.provider_fee_id is None]
            self._post(_FEES, owing_fee)
        except TokenRefreshUnavailable as error:
            for order in pending:
                current = _current(self.services, order)
                if current.status not in _FINAL and current.status is not PaymentOrderStatus.FAILED:
                    self._retry_or_fail(current, str(error))
        for order in alive:
            current = _current(self.services, order)
            if current.payment_order_number in self.run.retry_later or current.status in _FINAL:
                continue
            if current.payment_order_number in self.run.not_reached:
                continue
            fee_done = not current.fee_amount or current.provider_fee_id is not None
            if current.provider_payment_id is not None and fee_done:
                self._mark_paid(current)
                self._conclude(current, Outcome(PaymentOrderStatus.POSTED))

    def _checked(self, fresh: list[PaymentOrder]) -> list[PaymentOrder]:
        """The orders that pass the checks and the one staleness check of the group; the rest concluded."""
        passing = []
        for order in fresh:
            problem = _check(order, self.connection, self.payables.get(order.bill_id))
            if problem is not None:
                self._conclude(order, problem)
            else:
                passing.append(order)
        if not passing:
            return []
        state = self.store.syncs.get_sync_state(self.connection.connection_id)
        since = state.watermark - _SYNC_CLOCK_MARGIN if state.watermark else None
        try:
            check = self.connector.check_bills(
                self.api, sorted({order.bill_id for order in passing}), unchanged_since=since
            )
        except (ProviderError, TokenRefreshUnavailable) as error:
            # Nothing was posted: each unanswered check is counted on the order, so an outage that lasts
            # ends in `failed` (with its outcome event) rather than on the dead-letter queue unseen.
            verdict = classify(error)
            for order in passing:
                if verdict is Verdict.REFUSED:
                    refused = f"The accounting software refused the check of the bill: {provider_words(error)}"
                    self._conclude(order, Outcome(PaymentOrderStatus.FAILED, "provider_refused", refused))
                    continue
                counted = self.store.payment_orders.save_payment_order(
                    order.model_copy(
                        update={"check_attempts": order.check_attempts + 1, "updated_at": self.services.clock()}
                    )
                )
                wait_s = error.retry_after if isinstance(error, ProviderError) else None
                self._retry_or_fail(
                    counted, f"the staleness check got no answer ({provider_words(error)})", wait_s=wait_s, error=error
                )
            return []
        current = []
        for order in passing:
            problem = _staleness(order, self.payables[order.bill_id], check)
            if problem is not None:
                self._conclude(order, problem)
            else:
                current.append(order)
        return current

    # ------------------------------------------------------------------------------------ posting

    def _post(self, kind: _Kind, orders: list[PaymentOrder]) -> list[PaymentOrder]:
        """Post `orders` (their payments or fees) in the provider's batches; returns those now posted.

        An order with an earlier attempt is first looked up by its reference (one look-up for all of
        them); only what is not found is posted."""
        posted: list[PaymentOrder] = []
        maybe = [o for o in orders if getattr(o, kind.attempts_field) > 0]
        try:
            posted += self._record_found(kind, maybe) if maybe else []
        except ProviderError as error:
            # Not looked up, so not posted: an earlier attempt may be there already.
            for order in maybe:
                current = _current(self.services, order)
                if _retryable(error):
                    reason = f"the look-up got no answer ({error.status})"
                    self._retry_or_fail(current, reason, wait_s=error.retry_after, error=error)
                else:
                    refused = f"The accounting software refused the look-up of the payment: {provider_words(error)}"
                    self._conclude(current, Outcome(PaymentOrderStatus.FAILED, "provider_refused", refused))
        failed = {n for n, o in self.run.orders.items() if o.status is PaymentOrderStatus.FAILED}
        done = {o.payment_order_number for o in posted} | set(self.run.retry_later) | failed
        waiting = []
        for order in orders:
            if order.payment_order_number in done:
                continue
            current = _current(self.services, order)
            if getattr(current, kind.attempts_field) >= MAX_ATTEMPTS:
                self._conclude(current, Outcome(PaymentOrderStatus.FAILED, "provider_unavailable", "too many attempts"))
                continue
            waiting.append(current)
        size = self.connector.payment_batch_size
        for start in range(0, len(waiting), size):
            chunk = waiting[start : start + size]
            # A lost lease: another worker presumed this one dead and may be posting these orders now.
            if self.time_left() < _TIME_IN_HAND_SECONDS or self.lease.lost:
                self.run.not_reached += [o.payment_order_number for o in waiting[start:]]
                break
            posted += self._post_batch(kind, chunk, resolutions=_RESOLUTIONS_PER_INVOCATION)
        return posted

    def _post_batch(self, kind: _Kind, chunk: list[PaymentOrder], *, resolutions: int) -> list[PaymentOrder]:
        # The intent, durably, before the call: after a crash the next attempt looks these up first.
        chunk = [
            self.store.payment_orders.save_payment_order(
                o.model_copy(
                    update={
                        "status": PaymentOrderStatus.POSTING,
                        kind.attempts_field: getattr(o, kind.attempts_field) + 1,
                        "updated_at": self.services.clock(),
                    }
                )
            )
            for o in chunk
        ]
        key = batch_idempotency_key(
            self.connection.connection_id, kind.purpose, [o.payment_order_number for o in chunk]
        )
        try:
            outcomes = self._send(kind, chunk, key)
        except CallBudgetSpent as error:
            # Held by the organisation's call budget before the batch left (its earlier attempts, if any,
            # are looked up first next time, as after any attempt).
            for order in chunk:
                self._retry_or_fail(order, str(error), wait_s=error.retry_after, error=error)
            return []
        except ProviderError as error:
            if _retryable(error):
                return self._resolve(
                    kind, chunk, f"the accounting software did not answer ({error.status})", resolutions
                )
            outcomes = [Posted(refused=f"{error.status}: {error.message[:300]}")] * len(chunk)
        posted, unknown = [], []
        for order, outcome in zip(chunk, outcomes, strict=True):
            if outcome.provider_id is not None:
                posted.append(self._record_id(kind, order, outcome.provider_id))
            elif outcome.refused is not None:
                self._refused(order, outcome.refused)
            else:
                unknown.append(order)
        if unknown:
            posted += self._resolve(kind, unknown, "the accounting software gave no answer for it", resolutions)
        return posted

    def _send(self, kind: _Kind, chunk: list[PaymentOrder], key: str) -> list[Posted]:
        try:
            if kind is _PAYMENTS:
                return self.connector.post_payments(self.api, [self._payment(o) for o in chunk], key)
            return self.connector.post_fees(self.api, [self._fee(o) for o in chunk], key)
        except PaymentRejected as error:
            # The whole request refused as invalid: every member with the provider's words.
            return [Posted(refused=str(error))] * len(chunk)

    def _resolve(self, kind: _Kind, orders: list[PaymentOrder], reason: str, resolutions: int) -> list[PaymentOrder]:
        """A batch whose answer was lost or uncertain: every member looked up by its reference, and only
        the missing ones posted again (as a batch of their own, under their own key)."""
        if resolutions <= 0:
            for order in orders:
                self._retry_or_fail(_current(self.services, order), reason)
            return []
        try:
            posted = self._record_found(kind, orders)
        except ProviderError as error:
            for order in orders:
                why = f"{reason}; the look-up failed ({error.status})"
                self._retry_or_fail(_current(self.services, order), why, wait_s=error.retry_after, error=error)
            return []
        found = {o.payment_order_number for o in posted}
        missing = [_current(self.services, o) for o in orders if o.payment_order_number not in found]
        if missing:
            posted += self._post_batch(kind, missing, resolutions=resolutions - 1)
        return posted

    def _record_found(self, kind: _Kind, orders: list[PaymentOrder]) -> list[PaymentOrder]:
        if kind is _PAYMENTS:
            found = self.connector.find_payments(self.api, [self._payment(o) for o in orders])
        else:
            found = self.connector.find_fees(self.api, [self._fee(o) for o in orders])
        recorded = []
        for order in orders:
            provider_id = found.get(order.payment_order_number)
            if provider_id is not None:
                logger.info("Found the earlier attempt at the provider", extra={"order": order.payment_order_number})
                recorded.append(self._record_id(kind, _current(self.services, order), provider_id))
        return recorded

    def _record_id(self, kind: _Kind, order: PaymentOrder, provider_id: str) -> PaymentOrder:
        saved = self.store.payment_orders.save_payment_order(
            order.model_copy(update={kind.id_field: provider_id, "updated_at": self.services.clock()})
        )
        self.run.orders[saved.payment_order_number] = saved
        return saved

    # ------------------------------------------------------------------------------------ reversal

    def reverse(self, orders: list[PaymentOrder]) -> None:
        """Undo what each reversed order posted: the payment first (so a refusal, a reconciled payment
        say, leaves nothing undone), then the fee; the bill reopened from the provider's state. A
        reversal of an order that never reached the provider cancels it."""
        if not orders:
            return
        self.payables.update(
            self.store.payables.get_payables(self.connection.connection_id, {o.bill_id for o in orders})
        )
        for order in orders:
            if self.time_left() < _TIME_IN_HAND_SECONDS:
                self.run.not_reached.append(order.payment_order_number)
                continue
            current = _current(self.services, order)
            try:
                self._reverse(current)
            except (ProviderError, TokenRefreshUnavailable) as error:
                current = _current(self.services, current)
                if isinstance(error, ProviderError) and not _retryable(error):
                    words = f"{error.status}: {error.message[:300]}"
                    self._conclude(current, _reversal_held("provider_refused_reversal", current, words))
                elif max(current.reversal_attempts, current.fee_reversal_attempts) >= MAX_ATTEMPTS:
                    self._conclude(current, _reversal_held("provider_unavailable", current, str(error)))
                else:
                    self.run.orders[current.payment_order_number] = current
                    self.run.retry_later[current.payment_order_number] = f"the reversal got no answer: {error}"
                    if isinstance(error, ProviderError) and error.retry_after:
                        self.run.wait_s[current.payment_order_number] = error.retry_after

    def _reverse(self, order: PaymentOrder) -> None:
        # What may have reached the provider without its id recorded is looked up first.
        if order.bill_id in self.payables:
            if order.provider_payment_id is None and order.attempts > 0:
                self._record_found(_PAYMENTS, [order])
            if order.fee_amount and order.provider_fee_id is None and order.fee_attempts > 0:
                self._record_found(_FEES, [_current(self.services, order)])
        order = _current(self.services, order)
        if order.provider_payment_id is None and order.provider_fee_id is None:
            cancelled = Outcome(
                PaymentOrderStatus.REJECTED,
                "reversed_before_posting",
                f"The payment was reversed before it was posted ({order.reversal_reason}): nothing was posted.",
            )
            self._conclude(order, cancelled)
            return
        undone = self._undo(_PAYMENT_UNDO, order)
        if undone is None:
            return
        if undone.provider_payment_id is not None:
            self._reopen(undone)
        undone = self._undo(_FEE_UNDO, undone)
        if undone is None:
            return
        self._conclude(
            undone,
            Outcome(
                PaymentOrderStatus.REVERSED,
                "payment_reversed",
                f"Undone in the accounting software: the payment was reversed ({undone.reversal_reason}).",
            ),
        )

    def _undo(self, kind: "_Undo", order: PaymentOrder) -> PaymentOrder | None:
        """Undo one transaction exactly once: an earlier attempt is looked up first, the attempt counted
        before the call, a lost answer looked up at once. None: the order was concluded (refused)."""
        provider_id = getattr(order, kind.id_field)
        if provider_id is None or getattr(order, kind.done_field):
            return order
        done = getattr(self.connector, kind.check)
        if getattr(order, kind.attempts_field) > 0 and done(self.api, provider_id):
            return self._undone(kind, order)
        order = self.store.payment_orders.save_payment_order(
            order.model_copy(
                update={
                    kind.attempts_field: getattr(order, kind.attempts_field) + 1,
                    "updated_at": self.services.clock(),
                }
            )
        )
        try:
            getattr(self.connector, kind.undo)(self.api, provider_id)
        except PaymentRejected as refusal:
            if kind is _FEE_UNDO and order.payment_reversed:
                words = f"The payment was undone; the fee's transaction was refused: {refusal}"
                self._conclude(order, _reversal_held("fee_reversal_refused", order, words))
            else:
                self._conclude(order, _reversal_held("provider_refused_reversal", order, str(refusal)))
            return None
        except ProviderUnavailable:
            if not done(self.api, provider_id):
                raise
            logger.info("The lost undo had been made", extra={"order": order.payment_order_number})
        return self._undone(kind, order)

    def _undone(self, kind: "_Undo", order: PaymentOrder) -> PaymentOrder:
        saved = self.store.payment_orders.save_payment_order(
            _current(self.services, order).model_copy(
                update={kind.done_field: True, "updated_at": self.services.clock()}
            )
        )
        self.run.orders[saved.payment_order_number] = saved
        return saved

    def _reopen(self, order: PaymentOrder) -> None:
        """The payable as the provider's bill now stands (open or part-paid again, its amount due back),
        so that the next sync agrees."""
        stored = self.store.payables.get_payable(self.connection.connection_id, order.bill_id)
        page = self.connector.bills_by_id(self.api, [order.bill_id])
        bill = next((b for b in page.bills if b.bill_id == order.bill_id), None)
        if stored is None or bill is None or not bill.is_open:
            return  # gone or closed at the provider since: the next sync says why
        status = PayableStatus.PART_PAID if bill.amount_due < bill.total_amount else PayableStatus.OPEN
        reopened = stored.model_copy(
            update={
                "amount_due": bill.amount_due,
                "total_amount": bill.total_amount,
                "status": status,
                "closed_reason": None,
                "provider_updated_at": bill.updated_at,
            }
        )
        self.store.payables.put_payables([reopened], pinned=set())
        self.payables[order.bill_id] = reopened

    # ------------------------------------------------------------------------------------ what is posted

    def _payment(self, order: PaymentOrder) -> PaymentToPost:
        mapping = self.connection.mapping
        assert mapping is not None  # _check held every order without a mapped funding source
        payable = self.payables[order.bill_id]
        return PaymentToPost(
            reference=order.payment_order_number,
            idempotency_key=idempotency_key(self.connection.connection_id, order.payment_order_number, "payment"),
            bill_id=order.bill_id,
            vendor_id=payable.vendor_id,
            vendor_name=order.vendor_name,
            currency=order.currency,
            amount=order.amount,
            payment_date=order.payment_date,
            bank_account_id=mapping.funding_sources[order.funding_source],
            exchange_rate=order.exchange_rate,
            remittance_note=order.remittance_note,
            invoice_number=order.invoice_number or payable.invoice_number,
            payment_status=order.payment_status,
        )

    def _fee(self, order: PaymentOrder) -> FeeToPost:
        mapping = self.connection.mapping
        assert mapping is not None and order.fee_amount is not None
        return FeeToPost(
            reference=order.payment_order_number,
            idempotency_key=idempotency_key(self.connection.connection_id, order.payment_order_number, "fee"),
            vendor_id=self.payables[order.bill_id].vendor_id,
            currency=order.currency,
            amount=order.fee_amount,
            payment_date=order.payment_date,
            bank_account_id=mapping.funding_sources[order.funding_source],
            expense_account_id=mapping.fee_account_id or "",
            description=f"Payment fee, payment order {order.payment_order_number}",
            exchange_rate=order.exchange_rate,
        )

    # ------------------------------------------------------------------------------------ outcomes

    def _refused(self, order: PaymentOrder, message: str) -> None:
        current = _current(self.services, order)
        if current.provider_payment_id is not None:
            # The bill is paid at the provider; only the fee was refused: the user books it by hand.
            self._mark_paid(current)
            held = Outcome(
                PaymentOrderStatus.NEEDS_ATTENTION,
                "fee_rejected",
                f"The payment was posted; the fee was refused: {message}",
            )
            self._conclude(current, held)
            return
        self._conclude(current, Outcome(PaymentOrderStatus.REJECTED, "provider_rejected", message))

    def _retry_or_fail(
        self, order: PaymentOrder, reason: str, *, wait_s: float | None = None, error: Exception | None = None
    ) -> None:
        attempts = max(order.attempts, order.fee_attempts, order.check_attempts)
        # Waiting for the call budget (a day's limit spent, say) is not the provider failing: never final.
        if attempts >= MAX_ATTEMPTS and not isinstance(error, CallBudgetSpent):
            self._conclude(order, Outcome(PaymentOrderStatus.FAILED, "provider_unavailable", reason))
            return
        self.run.orders[order.payment_order_number] = order
        self.run.retry_later[order.payment_order_number] = reason
        if wait_s:
            self.run.wait_s[order.payment_order_number] = wait_s

    def _mark_paid(self, order: PaymentOrder) -> None:
        payable = self.payables[order.bill_id]
        self.payables[order.bill_id] = _mark_payable_paid(self.services, payable, order)

    def _conclude(self, order: PaymentOrder, outcome: Outcome) -> None:
        self.run.retry_later.pop(order.payment_order_number, None)
        self.run.orders[order.payment_order_number] = _conclude(self.services, order, outcome, self.bus_name)


def _reversal_held(reason_code: str, order: PaymentOrder, words: str) -> Outcome:
    """A reversal the provider would not make (its words), or could not be reached for: the user acts
    (unreconciles, reopens the period) and reverses again; what was undone stays recorded."""
    undone = [what for what, done in (("payment", order.payment_reversed), ("fee", order.fee_reversed)) if done]
    state = f" Already undone: {' and '.join(undone)}." if undone else " Nothing was undone."
    return Outcome(PaymentOrderStatus.REVERSAL_NEEDS_ATTENTION, reason_code, f"{words}{state}")


def _retryable(error: ProviderError) -> bool:
    """A fault worth trying again (no answer, throttled, the provider's own trouble), not a refusal."""
    return classify(error) is Verdict.RETRY_LATER


def _current(services: Services, order: PaymentOrder) -> PaymentOrder:
    """The order as last saved (each step of the posting saves it)."""
    return services.store.payment_orders.get_payment_order(order.connection_id, order.payment_order_number) or order


def _check(order: PaymentOrder, connection: Connection, payable: Payable | None) -> Outcome | None:  # noqa: PLR0911
    """The checks made before anything is written at the provider, each with a reason a user can read."""
    rejected = PaymentOrderStatus.REJECTED
    held = PaymentOrderStatus.NEEDS_ATTENTION
    status = order.payment_status.lower()
    if settlement(status) == "pending":
        return Outcome(
            PaymentOrderStatus.WAITING_FOR_SETTLEMENT,
            "payment_not_settled",
            f"The payment is {status}: it is posted when the platform reports it settled.",
        )
    if settlement(status) == "unpaid":
        return Outcome(rejected, f"payment_{status}", f"The payment {status}: nothing is posted for it.")
    if payable is None:
        return Outcome(rejected, "unknown_bill", f"Bill {order.bill_id} is not one of this connection's unpaid bills.")
    if payable.status is PayableStatus.CLOSED:
        reason = payable.closed_reason.value if payable.closed_reason else "closed"
        return Outcome(held, "bill_closed", f"The bill is already closed ({reason.replace('_', ' ')}).")
    if order.currency != payable.currency:
        return Outcome(
            rejected, "currency_mismatch", f"The payment is in {order.currency} but the bill is in {payable.currency}."
        )
    home = connection.home_currency
    if home is not None and order.currency != home and order.exchange_rate is None:
        return Outcome(
            rejected,
            "exchange_rate_required",
            f"The payment is in {order.currency}, not the home currency {home}: it needs an exchange rate.",
        )
    if home is not None and order.currency == home and order.exchange_rate not in (None, 1):
        return Outcome(
            rejected,
            "exchange_rate_not_allowed",
            f"The payment is in the home currency {home}: its exchange rate can only be 1.",
        )
    if order.amount > payable.amount_due:
        return Outcome(
            rejected,
            "amount_exceeds_due",
            f"The payment of {order.amount} exceeds the {payable.amount_due} {payable.currency} still due.",
        )
    mapping = connection.mapping
    if mapping is None or order.funding_source not in mapping.funding_sources:
        return Outcome(
            held, "funding_source_not_mapped", f"Funding source {order.funding_source} is not mapped to a bank account."
        )
    if order.fee_amount and mapping.fee_account_id is None:
        return Outcome(held, "fee_account_not_mapped", "The payment has a fee but no fee account is mapped.")
    return None


def _staleness(order: PaymentOrder, payable: Payable, check: BillCheck) -> Outcome | None:
    """Compare with the provider's bill now: a bill paid, voided, deleted or changed since the sync is held."""
    held = PaymentOrderStatus.NEEDS_ATTENTION
    if order.bill_id in check.gone:
        return Outcome(
            held, "bill_changed_at_provider", "The bill was deleted in the accounting software since the last sync."
        )
    current = check.current.get(order.bill_id)
    if current is None:
        return None  # unchanged since the last sync (a changed-since read lists only what changed)
    if not current.is_open:
        why = current.closed_reason.value.replace("_", " ") if current.closed_reason else "closed"
        return Outcome(
            held, "bill_changed_at_provider", f"The bill was {why} in the accounting software since the last sync."
        )
    if current.amount_due != payable.amount_due or current.total_amount != payable.total_amount:
        return Outcome(
            held,
            "bill_changed_at_provider",
            f"The bill's amount due changed from {payable.amount_due} to {current.amount_due} since the last sync.",
        )
    return None


def _mark_payable_paid(services: Services, payable: Payable, order: PaymentOrder) -> Payable:
    remaining = payable.amount_due - order.amount
    if remaining <= 0:
        changes = {
            "amount_due": Decimal("0.00"),
            "status": PayableStatus.CLOSED,
            "closed_reason": ClosedReason.PAID_THROUGH_PLATFORM,
        }
    else:
        changes = {"amount_due": remaining, "status": PayableStatus.PART_PAID, "closed_reason": None}
    paid = payable.model_copy(update=changes)
    # The order that closes the bill is posted: nothing retryable needs this payable any more. (Reading
    # every retryable order of the connection here cost a payment run of n orders n reads of them all.)
    services.store.payables.put_payables([paid], pinned=set())
    return paid


def _conclude(services: Services, order: PaymentOrder, outcome: Outcome, bus_name: str) -> PaymentOrder:
    saved = services.store.payment_orders.save_payment_order(
        order.model_copy(
            update={
                "status": outcome.status,
                "reason_code": outcome.reason_code,
                "reason": outcome.reason,
                "updated_at": services.clock(),
            }
        )
    )
    publish_outcome(bus_name, saved)
    metrics.add_metric(name=f"Payment{outcome.status.value.title().replace('_', '')}", unit="Count", value=1)
    logger.info(
        "Payment write-back",
        extra={"order": saved.payment_order_number, "status": saved.status.value, "reason_code": outcome.reason_code},
    )
    return saved
