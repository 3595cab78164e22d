"""The canonical records of the service, with the names used everywhere (API, DynamoDB, events).

Field names are snake_case in Python and camelCase on the wire (`amountDue`, `connectionId`).
Amounts are Decimals, serialised as strings so that "100.00" keeps its two places; never floats.
"""

from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

Amount = Annotated[Decimal, PlainSerializer(str, return_type=str, when_used="json")]
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]

# Every identifier the API accepts (connection, bill, vendor, sync run ids, payment order numbers): RFC 3986
# unreserved characters only, so it never needs percent-encoding in a path and a status URL always resolves.
# Provider ids fit: QuickBooks' are digits, Xero's GUIDs, Sage's 32 hex characters.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._~-]*$"
IDENTIFIER_MAX_LENGTH = 64
Identifier = Annotated[str, Field(min_length=1, max_length=IDENTIFIER_MAX_LENGTH, pattern=IDENTIFIER_PATTERN)]


def now_utc() -> datetime:
    """The service's clock: every time a record holds is aware and in UTC."""
    return datetime.now(UTC)


class Record(BaseModel):
    """Base of every canonical record: camelCase on the wire, strict about unknown fields."""

    # defer_build: a record's validator is built the first time it is used, not at import - a function
    # uses a few of the records, and building them all was a sixth of a cold start.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", defer_build=True)


class Provider(StrEnum):
    QUICKBOOKS = "quickbooks"
    XERO = "xero"
    SAGE = "sage"


class ConnectionStatus(StrEnum):
    AUTHORIZING = "authorizing"
    CHOOSING_TENANT = "choosing_tenant"
    MAPPING_REQUIRED = "mapping_required"
    CONNECTED = "connected"
    REAUTHORIZATION_REQUIRED = "reauthorization_required"
    DISCONNECTED = "disconnected"


class AccountMapping(Record):
    """Which provider accounts the platform's money movements are booked to."""

    # funding source id (configured on the platform, e.g. "cad-operating") -> provider bank account id
    funding_sources: dict[str, str]
    # provider expense account id for payment fees; None when the business pays no fees
    fee_account_id: str | None = None
    accepted_at: datetime | None = None


class SyncSummary(Record):
    """The last sync of a connection, as the integrations page and the dashboard show it."""

    sync_run_id: str
    outcome: str
    finished_at: datetime | None = None
    open_bills: int = 0
    vendors_needing_attention: int = 0


class SyncSchedule(Record):
    """When the schedule next syncs a connection, and the streaks that set the interval (sync/schedule.py)."""

    next_due_at: datetime
    # Scheduled syncs in a row that found nothing new: each one lengthens the interval.
    idle_runs: int = 0
    # Runs in a row that failed: retried on their own, growing delay instead of the poll interval.
    failed_runs: int = 0


class TenantChoice(Record):
    """An organisation the user may pick when one grant reaches several."""

    tenant_id: str
    name: str


class Connection(Record):
    """A business's link to one organisation in one accounting package."""

    connection_id: str
    business_id: str
    provider: Provider
    status: ConnectionStatus
    tenant_id: str | None = None
    tenant_name: str | None = None
    # Filled while status is choosing_tenant; emptied once the user chose.
    tenant_choices: list[TenantChoice] = Field(default_factory=list)
    mapping: AccountMapping | None = None
    # The organisation's home currency, read when the mapping is accepted (None: mapped before it was kept).
    home_currency: CurrencyCode | None = None
    # When the provider will refuse to refresh no matter what (QuickBooks' 5-year cap).
    authorization_expires_at: datetime | None = None
    last_sync: SyncSummary | None = None
    # None: due now (a new connection, or one stored before due times existed).
    sync_schedule: SyncSchedule | None = None
    # Things the user must act on ("reauthorize", "refresh token expires in 12 days", ...).
    attention: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    # Optimistic concurrency: every save is conditional on the version it read.
    version: int = 0


class OAuthState(Record):
    """One pending authorisation: single-use, short-lived, bound to a business, its user and a provider."""

    state_hash: str
    business_id: str
    # The signed-in user (the JWT's `sub`) who started it: only they can complete it.
    user_id: str | None = None
    provider: Provider
    connection_id: str
    redirect_uri: str
    code_verifier: str | None = None
    created_at: datetime
    expires_at: datetime


class OAuthCompletion(Record):
    """A consent the provider sent back, waiting for the web app of the user who started it to redeem it.

    Single-use and short-lived (the provider's code expires within minutes anyway); the code is exchanged
    only when the business's JWT redeems it, so a consent approved in another browser never becomes a grant.
    """

    completion_hash: str
    business_id: str
    user_id: str | None = None
    provider: Provider
    connection_id: str
    redirect_uri: str
    code_verifier: str | None = None
    # The provider's callback parameters but the state: the code, QuickBooks' realmId.
    callback_params: dict[str, str]
    created_at: datetime
    expires_at: datetime


class PayableStatus(StrEnum):
    OPEN = "open"
    PART_PAID = "part_paid"
    CLOSED = "closed"


class ClosedReason(StrEnum):
    PAID_ELSEWHERE = "paid_elsewhere"
    PAID_THROUGH_PLATFORM = "paid_through_platform"
    VOIDED = "voided"
    DELETED = "deleted"
    CREDITED = "credited"


class InvoiceDocument(Record):
    """The invoice document attached to a bill at the provider; bytes live in the private bucket."""

    provider_document_id: str
    file_name: str
    content_type: str
    size_bytes: int | None = None
    # None until the document has been fetched into the bucket.
    object_key: str | None = None


class Payable(Record):
    """An approved, unpaid bill owed by the business (Payments > Unpaid payables)."""

    connection_id: str
    bill_id: str
    vendor_id: str
    vendor_name: str
    currency: CurrencyCode
    amount_due: Amount
    total_amount: Amount
    invoice_number: str | None = None
    remittance_note: str | None = None
    issue_date: date | None = None
    due_date: date | None = None
    accounting_software: str
    document: InvoiceDocument | None = None
    status: PayableStatus
    closed_reason: ClosedReason | None = None
    provider_updated_at: datetime | None = None


class PostalAddress(Record):
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = None


class Vendor(Record):
    """A vendor that unpaid bills are owed to (Vendors > Manage vendors): name, address, email only."""

    connection_id: str
    vendor_id: str
    name: str
    address: PostalAddress | None = None
    email: str | None = None
    # New, or its details changed since the platform last acknowledged it.
    attention_required: bool = True
    provider_updated_at: datetime | None = None


class PaymentOrderStatus(StrEnum):
    RECEIVED = "received"
    # The platform's payment is not settled yet (pending, processing): posted once an event says settled.
    WAITING_FOR_SETTLEMENT = "waiting_for_settlement"
    POSTING = "posting"
    POSTED = "posted"
    NEEDS_ATTENTION = "needs_attention"
    REJECTED = "rejected"
    WAITING_FOR_RECONNECTION = "waiting_for_reconnection"
    FAILED = "failed"
    # A posted payment the platform reversed (returned, stopped, recalled): being undone at the provider.
    REVERSING = "reversing"
    # Undone at the provider (payment and fee voided or deleted), the bill open again there and here.
    REVERSED = "reversed"
    # The provider refused to undo it (reconciled, period closed, ...): its words in `reason`; retryable.
    REVERSAL_NEEDS_ATTENTION = "reversal_needs_attention"


# The platform's payment statuses (PaymentCompleted's paymentStatus, compared without case): only a
# settled payment is posted; a pending one waits for an event saying settled; one that failed, was
# cancelled or returned is never posted.
SETTLED_PAYMENT_STATUSES = frozenset({"completed", "settled"})
PENDING_PAYMENT_STATUSES = frozenset({"pending", "processing"})
UNPAID_PAYMENT_STATUSES = frozenset({"failed", "cancelled", "returned"})
PAYMENT_STATUSES = SETTLED_PAYMENT_STATUSES | PENDING_PAYMENT_STATUSES | UNPAID_PAYMENT_STATUSES


class PaymentOrder(Record):
    """A bill paid through the platform, to be written back to the accounting software exactly once.

    The record is written before the provider is called (the intent), and every step after it is
    recorded, so a retry knows whether the provider may already hold the payment.
    """

    payment_order_number: str
    connection_id: str
    business_id: str
    bill_id: str
    vendor_name: str
    currency: CurrencyCode
    amount: Amount
    fee_amount: Amount | None = None
    funding_source: str
    payment_date: date
    payment_status: str
    remittance_note: str | None = None
    invoice_number: str | None = None
    exchange_rate: Decimal | None = None
    status: PaymentOrderStatus
    # Why the order is not posted, as a stable code ("amount_exceeds_due") and a sentence for the user.
    reason_code: str | None = None
    reason: str | None = None
    provider_payment_id: str | None = None
    provider_fee_id: str | None = None
    # Provider calls that may have reached the provider (each one is looked up before another is made):
    # for the payment, and for its fee.
    attempts: int = 0
    fee_attempts: int = 0
    # A reversal the platform reported (PaymentReversed, or the web app), and how far its undoing went:
    # each undo is counted before its call, so after a lost answer it is looked up, not repeated.
    reversal_reason: str | None = None
    reversal_date: date | None = None
    reversal_requested_at: datetime | None = None
    payment_reversed: bool = False
    fee_reversed: bool = False
    reversal_attempts: int = 0
    fee_reversal_attempts: int = 0
    # Staleness checks the provider did not answer (nothing was posted by them): bounded like attempts.
    check_attempts: int = 0
    created_at: datetime
    updated_at: datetime
    version: int = 0


class SyncTrigger(StrEnum):
    SCHEDULE = "schedule"
    ON_DEMAND = "on_demand"
    WEBHOOK = "webhook"
    CONSOLE = "console"


class SyncOutcome(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"


class RecordError(Record):
    """One provider record the sync skipped, with a reason the user can read."""

    entity: str
    provider_id: str
    reason: str


class SyncCounts(Record):
    bills_new: int = 0
    bills_changed: int = 0
    bills_closed: int = 0
    bills_unchanged: int = 0
    vendors_new: int = 0
    vendors_changed: int = 0
    vendors_unchanged: int = 0
    documents_stored: int = 0


class SyncMode(StrEnum):
    # Every open bill listed, and stored bills the listing no longer has asked about one by one.
    FULL = "full"
    # Only what changed since the last sync, by the provider's incremental mechanism.
    INCREMENTAL = "incremental"
    # Just the bills and vendors a webhook named.
    ENTITIES = "entities"


class SyncCheckpoint(Record):
    """Where an interrupted sync continues: the phase, and the provider listing's resume position."""

    phase: str
    resume: str | None = None
    pages: int = 0
    since: datetime | None = None
    documents_pending: list[str] = Field(default_factory=list)
    # Vendors of open bills this run wrote that may not be stored yet; with check_all_vendors, every
    # open bill's vendor is checked instead (a full reconciliation, or more than the list holds).
    vendors_to_check: list[str] = Field(default_factory=list)
    check_all_vendors: bool = False
    # Provider-trouble pauses since the last page applied: too many in a row end the run failed.
    trouble_pauses: int = 0


class SyncRun(Record):
    """One sync of one connection: what triggered it, what it did, how it ended."""

    sync_run_id: str
    connection_id: str
    trigger: SyncTrigger
    mode: SyncMode | None = None
    outcome: SyncOutcome
    started_at: datetime
    finished_at: datetime | None = None
    counts: SyncCounts = Field(default_factory=SyncCounts)
    provider_calls: int = 0
    errors: list[RecordError] = Field(default_factory=list)
    # Why the run failed or was paused, for the user ("reconnect", "provider busy, retrying at ...").
    detail: str | None = None
    checkpoint: SyncCheckpoint | None = None
