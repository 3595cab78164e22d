"""What every accounting package offers the service, and the shapes connectors return.

Each provider folder (providers/quickbooks/, xero/, sage/) builds one `AccountingConnector` in its connector.py,
on the common part in providers/connector.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from payedge_connect.models import ClosedReason, PostalAddress, Provider

if TYPE_CHECKING:  # the calls' side: a function that reads no provider imports none of it
    from payedge_connect.providers.budget import CallerBudget
    from payedge_connect.providers.http import CallCounter, ProviderApi


@dataclass(frozen=True)
class OAuthSpec:
    """How a provider does OAuth 2.0 (authorization-code grant, refresh, revocation)."""

    authorize_url: str
    token_url: str
    revoke_url: str
    scopes: tuple[str, ...]
    # PKCE only where the provider documents it (QuickBooks does not).
    pkce: bool
    # "basic": HTTP Basic client authentication; "body": client_id/client_secret in the form.
    client_auth: Literal["basic", "body"]
    # How the revocation request carries the token: a JSON body or a form.
    revocation_body: Literal["json", "form"]
    extra_authorize_params: Mapping[str, str] = field(default_factory=dict)
    token_request_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Tenant:
    """An organisation (QuickBooks company, Xero organisation, Sage business) a grant reaches."""

    tenant_id: str
    name: str


class AccountKind(StrEnum):
    BANK = "bank"
    EXPENSE = "expense"


@dataclass(frozen=True)
class LedgerAccount:
    """A provider account a payment or a fee can be booked to."""

    account_id: str
    name: str
    # Xero books fee lines by account code; the others by id.
    code: str | None
    kind: AccountKind
    currency: str | None
    active: bool


# ---------------------------------------------------------------------------- what a sync reads


@dataclass(frozen=True)
class DocumentRef:
    """The invoice document attached to a bill at the provider (fetched separately, on a budget)."""

    provider_document_id: str
    file_name: str
    content_type: str
    size_bytes: int | None = None


@dataclass(frozen=True)
class ProviderBill:
    """One accounts-payable bill as a connector read it, already in our vocabulary.

    `is_open` means: approved, accounts payable, with an amount still due. A bill that is not open
    says why in `closed_reason` (paid, voided, deleted, credited); a bill that is not approved yet
    (draft, awaiting approval) is not open and has no closed reason.
    """

    bill_id: str
    vendor_id: str
    vendor_name: str
    currency: str
    total_amount: Decimal
    amount_due: Decimal
    invoice_number: str | None
    remittance_note: str | None
    issue_date: date | None
    due_date: date | None
    is_open: bool
    closed_reason: ClosedReason | None
    document: DocumentRef | None
    updated_at: datetime | None


@dataclass(frozen=True)
class ProviderVendor:
    """A vendor as a connector read it: name, address and email only - nothing personal."""

    vendor_id: str
    name: str
    email: str | None
    address: PostalAddress | None
    updated_at: datetime | None


@dataclass(frozen=True)
class SkippedRecord:
    """A provider record that could not be read into our vocabulary, and why (for the sync run)."""

    entity: Literal["bill", "vendor"]
    provider_id: str
    reason: str


@dataclass(frozen=True)
class ChangesPage:
    """One page of a listing. `resume` continues the listing after this page if the sync is interrupted
    (None: the listing is complete)."""

    bills: Sequence[ProviderBill] = ()
    vendors: Sequence[ProviderVendor] = ()
    skipped: Sequence[SkippedRecord] = ()
    resume: str | None = None


# ---------------------------------------------------------------------------- what a write-back posts


@dataclass(frozen=True)
class PaymentToPost:
    """A bill paid through the platform, to be recorded as a payment against that bill.

    `reference` is the payment order number; connectors fit it to the provider's field limits.
    `exchange_rate` is home-currency units per one unit of the bill's currency (QuickBooks' convention);
    connectors convert it to their provider's.
    `idempotency_key` is derived from the payment order number; connectors send it in the provider's
    own idempotency mechanism (QuickBooks requestid, Xero Idempotency-Key, Sage idempotency_id).
    """

    reference: str
    idempotency_key: str
    bill_id: str
    vendor_id: str
    vendor_name: str
    currency: str
    amount: Decimal
    payment_date: date
    bank_account_id: str
    exchange_rate: Decimal | None
    remittance_note: str | None
    invoice_number: str | None
    payment_status: str


@dataclass(frozen=True)
class FeeToPost:
    """The platform's fee for a payment, booked from the same bank account to the fee expense account."""

    reference: str
    idempotency_key: str
    vendor_id: str
    currency: str
    amount: Decimal
    payment_date: date
    bank_account_id: str
    expense_account_id: str
    description: str
    # Same convention as PaymentToPost.exchange_rate; None in the home currency.
    exchange_rate: Decimal | None = None


@dataclass(frozen=True)
class Posted:
    """What the provider said about one member of a batch posting.

    `provider_id`: it was created; `refused`: the provider refused it, in its own words; neither: its
    outcome is unknown (no answer for it), so it is looked up by its reference before any re-post."""

    provider_id: str | None = None
    refused: str | None = None


@dataclass(frozen=True)
class BillCheck:
    """The provider's current state of the bills a payment run pays (the staleness check).

    `current` holds the bills the provider returned. A bill in `gone` no longer exists there. A bill in
    neither is unchanged since `unchanged_since` (a changed-since read returns only what changed)."""

    current: Mapping[str, ProviderBill]
    gone: frozenset[str] = frozenset()


class PaymentRejected(Exception):
    """The provider refused the payment for a reason retrying will not change (its message says why)."""


class IncrementalWindowExpired(Exception):
    """The provider cannot list changes that far back (QuickBooks CDC: 30 days): do a full sync."""


class AccountingConnector(Protocol):
    """One accounting package, as the connect, sync and write-back logic sees it.

    A connector is built with the provider's base URL override (None: the real service), so its
    endpoints point at a sandbox when the stack runs locally.
    """

    provider: Provider

    @property
    def oauth(self) -> OAuthSpec:
        """The OAuth endpoints, scopes and client-authentication style."""
        ...

    def api(
        self,
        tenant_id: str,
        *,
        access_token: Callable[[], str],
        refresh_access_token: Callable[[], str] | None = None,
        calls: CallCounter | None = None,
        budget: CallerBudget | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> ProviderApi:
        """The accounting API of one organisation, called with a connection's access token; every call
        takes from `budget`, the organisation's fleet-wide call budget (None: unbudgeted, for one-off
        calls such as discovering the organisation during the OAuth callback). `sleep`: how backoffs wait."""
        ...

    def tenants(self, access_token: str, callback_params: Mapping[str, str]) -> list[Tenant]:
        """The organisations a fresh grant reaches (QuickBooks names its realm in the callback)."""
        ...

    def accounts(self, api: ProviderApi) -> list[LedgerAccount]:
        """Bank accounts (funding sources) and expense accounts (fees) of the organisation."""
        ...

    def home_currency(self, api: ProviderApi) -> str:
        """The organisation's home (base) currency: a payment in any other needs an exchange rate."""
        ...

    # ------------------------------------------------------------------ sync

    def open_bills(self, api: ProviderApi, *, resume: str | None) -> Iterator[ChangesPage]:
        """Every open bill, at the provider's maximum page size (a full reconciliation)."""
        ...

    def vendors(self, api: ProviderApi, *, resume: str | None) -> Iterator[ChangesPage]:
        """Every vendor (supplier) of the organisation, at the provider's maximum page size."""
        ...

    def changes_since(self, api: ProviderApi, since: datetime, *, resume: str | None) -> Iterator[ChangesPage]:
        """Bills (open or not, deleted included) and vendors created or changed since `since`, by the
        provider's incremental mechanism; raises IncrementalWindowExpired when it cannot reach back."""
        ...

    def bills_by_id(self, api: ProviderApi, bill_ids: Sequence[str]) -> ChangesPage:
        """The current state of these bills. A bill the provider no longer has is left out: the caller
        closes it as deleted from what it stored. Used for webhooks, write-back staleness checks, and to
        learn why a bill left the open listing."""
        ...

    def vendors_by_id(self, api: ProviderApi, vendor_ids: Sequence[str]) -> ChangesPage:
        """The current state of these vendors (webhooks)."""
        ...

    def download_document(self, api: ProviderApi, bill_id: str, document: DocumentRef) -> bytes:
        """The bytes of an invoice document."""
        ...

    # ------------------------------------------------------------------ write-back

    # The largest batch of payments (and of fees) the provider takes in one request (1: no batch path).
    payment_batch_size: int

    def check_bills(self, api: ProviderApi, bill_ids: Sequence[str], *, unchanged_since: datetime | None) -> BillCheck:
        """The staleness check of a payment run: these bills as the provider has them now, in as few
        reads as its API allows. `unchanged_since` is when the stored copies were last read in full
        (the last sync's start), for providers that can only list what changed since."""
        ...

    def post_payments(self, api: ProviderApi, payments: Sequence[PaymentToPost], idempotency_key: str) -> list[Posted]:
        """Post up to `payment_batch_size` payments in one request under `idempotency_key` (derived from
        the members); one Posted per payment, in order. Raises ProviderUnavailable when the answer is
        lost or unreadable (every member's outcome unknown), ProviderError when the whole request is refused."""
        ...

    def find_payments(self, api: ProviderApi, payments: Sequence[PaymentToPost]) -> dict[str, str]:
        """Payments we may have posted already, looked up by their references in as few reads as the
        API allows: payment order number (`reference`) -> provider payment id, for those found."""
        ...

    def post_fees(self, api: ProviderApi, fees: Sequence[FeeToPost], idempotency_key: str) -> list[Posted]:
        """Post up to `payment_batch_size` fees in one request, as post_payments."""
        ...

    def find_fees(self, api: ProviderApi, fees: Sequence[FeeToPost]) -> dict[str, str]:
        """Fees we may have posted already: payment order number -> provider transaction id."""
        ...

    def find_payment(self, api: ProviderApi, payment: PaymentToPost) -> str | None:
        """The provider id of a payment we may have posted already (looked up by its reference against
        the bill), after an uncertain outcome; None if there is none."""
        ...

    def post_payment(self, api: ProviderApi, payment: PaymentToPost) -> str:
        """Record the payment against the bill; returns the provider's payment id.
        Raises PaymentRejected for validation refusals, ProviderError/ProviderUnavailable otherwise."""
        ...

    def find_fee(self, api: ProviderApi, fee: FeeToPost) -> str | None:
        """The provider id of a fee transaction we may have posted already; None if there is none."""
        ...

    def post_fee(self, api: ProviderApi, fee: FeeToPost) -> str:
        """Record the fee as its own spend transaction; returns the provider's transaction id."""
        ...

    # ------------------------------------------------------------------ reversal (a payment undone)

    def reverse_payment(self, api: ProviderApi, provider_payment_id: str) -> None:
        """Undo a payment we posted (QuickBooks voids the BillPayment, Xero and Sage delete it), so the bill
        owes the amount again; nothing when it is undone already. Never resent after a lost answer (the
        caller asks `payment_reversed`). Raises PaymentRejected when the provider refuses, in its words."""
        ...

    def payment_reversed(self, api: ProviderApi, provider_payment_id: str) -> bool:
        """Whether that payment is undone (voided, deleted or gone) at the provider."""
        ...

    def reverse_fee(self, api: ProviderApi, provider_fee_id: str) -> None:
        """Undo a fee transaction we posted (deleted at every provider), as reverse_payment."""
        ...

    def fee_reversed(self, api: ProviderApi, provider_fee_id: str) -> bool:
        """Whether that fee transaction is undone at the provider."""
        ...


def rebase(url: str, base_url: str | None) -> str:
    """The same path on another host: how a provider's endpoints point at its sandbox."""
    if not base_url:
        return url
    target = urlsplit(base_url)
    original = urlsplit(url)
    return urlunsplit((target.scheme, target.netloc, original.path, original.query, original.fragment))
