"""Xero (Accounting API 2.0): OAuth, organisations, accounts, and reading bills and vendors.

Facts: docs/providers.md#xero (endpoints, scopes, tenants, limits). Mapping of bills
and vendors: bills.py; Xero's JSON: wire.py.
"""

import base64
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import requests

from payedge_connect.models import Provider
from payedge_connect.providers.base import (
    AccountKind,
    BillCheck,
    ChangesPage,
    DocumentRef,
    LedgerAccount,
    OAuthSpec,
    Tenant,
    rebase,
)
from payedge_connect.providers.connector import Connector, split_skipped
from payedge_connect.providers.http import ProviderApi, ProviderError
from payedge_connect.providers.xero import payments, wire
from payedge_connect.providers.xero.bills import (
    FIRST_ATTACHMENT,
    attachment_from_xero,
    bill_from_xero,
    vendor_from_xero,
)

AUTHORIZE_URL = "https://login.xero.com/identity/connect/authorize"
TOKEN_URL = "https://identity.xero.com/connect/token"
REVOKE_URL = "https://identity.xero.com/connect/revocation"
IDENTITY_API_URL = "https://api.xero.com"  # GET /connections lives beside api.xro
API_URL = "https://api.xero.com/api.xro/2.0"

# Apps created from 2 March 2026 only get granular scopes; older apps keep the broad ones until 2027.
GRANULAR_SCOPES = (
    "offline_access",
    "accounting.invoices.read",
    "accounting.payments",
    "accounting.banktransactions",
    "accounting.contacts.read",
    "accounting.settings.read",
    "accounting.attachments.read",
)
BROAD_SCOPES = (
    "offline_access",
    "accounting.transactions",
    "accounting.contacts.read",
    "accounting.settings.read",
    "accounting.attachments.read",
)
# Account types a payment fee can be booked to.
_EXPENSE_TYPES = {"EXPENSE", "OVERHEADS", "DIRECTCOSTS"}

# Xero clamps pageSize to 1000 (docs/providers.md#xero-bills: a third-party figure).
MAX_PAGE_SIZE = 1000
# The IDs filter breaks past about 52 GUIDs (URL length; XeroAPI/Xero-OpenAPI#534).
IDS_PER_REQUEST = 50
# Every status of an invoice: the incremental listing must see bills leave AUTHORISED, and naming
# DELETED is the safe reading (whether Xero lists deleted bills unasked is not documented).
_ALL_STATUSES = "DRAFT,SUBMITTED,AUTHORISED,PAID,VOIDED,DELETED"
_BILLS = 'Type=="ACCPAY"'
_SUPPLIERS = "IsSupplier==true"


def authentication_event_id(access_token: str) -> str | None:
    """The `authentication_event_id` claim of Xero's JWT access token (read, not verified: we just got
    it from Xero's token endpoint over TLS)."""
    try:
        payload = access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    value = claims.get("authentication_event_id")
    return value if isinstance(value, str) else None


class XeroConnector(Connector):
    provider = Provider.XERO
    payments = payments  # write-back: payments and fee bank transactions, built and found in payments.py
    payment_batch_size = payments.BATCH_MAX_ELEMENTS

    def __init__(self, *, base_url: str | None = None, scope_set: str = "granular") -> None:
        super().__init__(base_url=base_url)
        self._scopes = GRANULAR_SCOPES if scope_set == "granular" else BROAD_SCOPES

    @property
    def oauth(self) -> OAuthSpec:
        return OAuthSpec(
            authorize_url=rebase(AUTHORIZE_URL, self._base_url),
            token_url=rebase(TOKEN_URL, self._base_url),
            revoke_url=rebase(REVOKE_URL, self._base_url),
            scopes=self._scopes,
            pkce=True,
            client_auth="basic",
            revocation_body="form",
        )

    def organisation_endpoint(self, tenant_id: str) -> tuple[str, Mapping[str, str]]:
        return rebase(API_URL, self._base_url), {"xero-tenant-id": tenant_id}

    def tenants(self, access_token: str, callback_params: Mapping[str, str]) -> list[Tenant]:
        # Only the organisations connected in THIS authorisation: a user's earlier grants to our
        # app show up in /connections too, and must not be picked by mistake.
        params: dict[str, str] = {}
        event_id = authentication_event_id(access_token)
        if event_id:
            params["authEventId"] = event_id
        identity = ProviderApi(
            rebase(IDENTITY_API_URL, self._base_url), provider=self.provider, access_token=lambda: access_token
        )
        connections: list[dict[str, Any]] = identity.get("connections", params=params).json()
        return [
            Tenant(tenant_id=item["tenantId"], name=item.get("tenantName") or item["tenantId"])
            for item in connections
            if item.get("tenantType", "ORGANISATION") == "ORGANISATION"
        ]

    def accounts(self, api: ProviderApi) -> list[LedgerAccount]:
        response = api.get("Accounts", route="GET /Accounts").json()
        accounts: list[LedgerAccount] = []
        for item in response.get("Accounts", []):
            if item.get("Type") == "BANK":
                kind = AccountKind.BANK
            elif item.get("Type") in _EXPENSE_TYPES:
                kind = AccountKind.EXPENSE
            else:
                continue
            accounts.append(
                LedgerAccount(
                    account_id=item["AccountID"],
                    name=item.get("Name", ""),
                    code=item.get("Code"),
                    kind=kind,
                    currency=item.get("CurrencyCode") if kind is AccountKind.BANK else None,
                    active=item.get("Status", "ACTIVE") == "ACTIVE",
                )
            )
        return accounts

    def home_currency(self, api: ProviderApi) -> str:
        # Organisation.BaseCurrency [X-OAS xero_accounting.yaml Organisation]
        response = api.get("Organisation", route="GET /Organisation").json()
        return str(response["Organisations"][0]["BaseCurrency"])

    # ------------------------------------------------------------------------------------------ sync

    def open_bills(self, api: ProviderApi, *, resume: str | None) -> Iterator[ChangesPage]:
        # Statuses=AUTHORISED is approved and unpaid-or-part-paid; AmountDue > 0 is checked per bill.
        cursor = _Cursor.read(resume, ("open_bills",)) or _Cursor("open_bills", 1)
        params = {"where": _BILLS, "Statuses": "AUTHORISED", "order": "InvoiceID"}
        for records, next_page in _pages(api, "Invoices", params, {}, cursor.page):
            following = _Cursor("open_bills", next_page) if next_page else None
            yield _bills_page(records, following)

    def vendors(self, api: ProviderApi, *, resume: str | None) -> Iterator[ChangesPage]:
        # IsSupplier is computed by Xero: true once the contact has a bill. Archived contacts are
        # left out, as Xero does unless includeArchived=true: they are not someone to pay.
        cursor = _Cursor.read(resume, ("vendors",)) or _Cursor("vendors", 1)
        params = {"where": _SUPPLIERS, "order": "ContactID"}
        for records, next_page in _pages(api, "Contacts", params, {}, cursor.page):
            following = _Cursor("vendors", next_page) if next_page else None
            yield _vendors_page(records, following)

    def changes_since(self, api: ProviderApi, since: datetime, *, resume: str | None) -> Iterator[ChangesPage]:
        """Bills, then vendors, changed since `since` (If-Modified-Since). Xero has no look-back limit,
        so IncrementalWindowExpired is never raised."""
        fresh = _Cursor("changed_bills", 1, if_modified_since(since))
        cursor = _Cursor.read(resume, ("changed_bills", "changed_vendors")) or fresh
        # A resumed listing keeps the If-Modified-Since it started with: its page numbers depend on it.
        asked = cursor.since or fresh.since
        headers = {"If-Modified-Since": asked} if asked else {}
        if cursor.listing == "changed_bills":
            # No AUTHORISED filter here: a bill that was paid, voided or deleted must come back.
            params = {"where": _BILLS, "Statuses": _ALL_STATUSES, "order": "InvoiceID"}
            for records, next_page in _pages(api, "Invoices", params, headers, cursor.page):
                if next_page:
                    following = _Cursor("changed_bills", next_page, asked)
                else:
                    following = _Cursor("changed_vendors", 1, asked)
                yield _bills_page(records, following)
        vendors_from = cursor.page if cursor.listing == "changed_vendors" else 1
        params = {"where": _SUPPLIERS, "order": "ContactID"}
        for records, next_page in _pages(api, "Contacts", params, headers, vendors_from):
            yield _vendors_page(records, _Cursor("changed_vendors", next_page, asked) if next_page else None)

    def bills_by_id(self, api: ProviderApi, bill_ids: Sequence[str]) -> ChangesPage:
        """Xero keeps deleted and voided bills and returns them by ID with their status, so a bill
        closed at Xero comes back closed with its reason. An ID Xero does not know at all is left out
        of the page (no vendor or currency to fill a ProviderBill with): the caller closes it."""
        invoices: list[Any] = []
        for chunk in _chunks(bill_ids):
            # Unpaged (no `page`): at most IDS_PER_REQUEST records, without line items we do not use.
            invoices += _envelope(api.get("Invoices", params={"IDs": ",".join(chunk)}, route="GET /Invoices")).invoices
        return _bills_page(invoices, None)

    def check_bills(self, api: ProviderApi, bill_ids: Sequence[str], *, unchanged_since: datetime | None) -> BillCheck:
        """`GET /Invoices?IDs=` per 50 bills: Xero returns paid, voided and deleted bills with their
        status; an ID it does not return at all is gone."""
        page = self.bills_by_id(api, bill_ids)
        current = {bill.bill_id: bill for bill in page.bills}
        return BillCheck(current=current, gone=frozenset(set(bill_ids) - set(current)))

    def vendors_by_id(self, api: ProviderApi, vendor_ids: Sequence[str]) -> ChangesPage:
        contacts: list[Any] = []
        for chunk in _chunks(vendor_ids):
            contacts += _envelope(api.get("Contacts", params={"IDs": ",".join(chunk)}, route="GET /Contacts")).contacts
        return _vendors_page(contacts, None)

    def download_document(self, api: ProviderApi, bill_id: str, document: DocumentRef) -> bytes:
        """Two calls: the bill's attachment list (listings only say HasAttachments), then the file by
        AttachmentID (an id needs no URL-encoding, unlike a file name)."""
        attachment_id, mime_type = document.provider_document_id, document.content_type
        if attachment_id == FIRST_ATTACHMENT:
            listed = _envelope(api.get(f"Invoices/{bill_id}/Attachments", route="GET /Invoices/{id}/Attachments"))
            attachments = [a for a in map(attachment_from_xero, listed.attachments) if a is not None]
            if not attachments:
                raise ProviderError(404, f"bill {bill_id} has no attachment at Xero any more")
            first = attachments[0]
            attachment_id, mime_type = first.attachment_id, first.mime_type
        response = api.request(
            "GET",
            f"Invoices/{bill_id}/Attachments/{attachment_id}",
            idempotent=True,
            route="GET /Invoices/{id}/Attachments/{id}",
            # Xero serves the bytes as application/octet-stream and wants the file's MIME type in a
            # `contentType` header; Accept: application/json would not fit the binary answer.
            accept="application/octet-stream",
            headers={"contentType": mime_type},
        )
        return response.content


# ---------------------------------------------------------------------------------------------- paging

Listing = Literal["open_bills", "vendors", "changed_bills", "changed_vendors"]


@dataclass(frozen=True)
class _Cursor:
    """Where a listing continues: which listing, which page, and (incremental) the If-Modified-Since
    value it started with, so a resumed listing asks the same question."""

    listing: Listing
    page: int
    since: str | None = None

    def token(self) -> str:
        return json.dumps({"listing": self.listing, "page": self.page, "since": self.since}, separators=(",", ":"))

    @classmethod
    def read(cls, token: str | None, allowed: tuple[Listing, ...]) -> "_Cursor | None":
        if token is None:
            return None
        try:
            data = json.loads(token)
            cursor = cls(listing=data["listing"], page=int(data["page"]), since=data.get("since"))
        except (ValueError, TypeError, KeyError):
            raise ValueError("not a resume token of this Xero listing") from None
        if cursor.listing not in allowed or cursor.page < 1:
            raise ValueError(f"a {cursor.listing} resume token cannot continue this Xero listing")
        return cursor


def if_modified_since(since: datetime) -> str:
    """Xero's If-Modified-Since wants yyyy-mm-ddThh:mm:ss in UTC without an offset; whole seconds,
    rounded down so nothing changed within the starting second is missed."""
    moment = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def _pages(
    api: ProviderApi, collection: str, params: Mapping[str, str], headers: Mapping[str, str], first_page: int
) -> Iterator[tuple[list[Any], int | None]]:
    """(records, next page or None) for each page from `first_page`, at Xero's largest page size.

    Ordered by id so a record edited during the listing keeps its place (the default order,
    UpdatedDateUTC, would move it to the end and shift a record past the page boundary).
    """
    page = first_page
    while True:
        response = api.get(
            collection,
            params={**params, "page": page, "pageSize": MAX_PAGE_SIZE},
            headers=dict(headers),
            route=f"GET /{collection}",
        )
        envelope = _envelope(response)
        records = envelope.invoices if collection == "Invoices" else envelope.contacts
        if envelope.pagination is not None:
            # pageCount saves the empty call after a full last page (2,000 bills: 2 calls, not 3).
            last = page >= envelope.pagination.page_count
        else:
            last = len(records) < MAX_PAGE_SIZE
        yield records, None if last else page + 1
        if last:
            return
        page += 1


def _envelope(response: requests.Response) -> wire.Envelope:
    try:
        # Amounts stay exact: JSON numbers become Decimal, never binary floats.
        body = response.json(parse_float=Decimal)
    except ValueError:
        raise ProviderError(response.status_code, "Xero answered something other than JSON") from None
    if not isinstance(body, dict):
        raise ProviderError(response.status_code, "Xero answered JSON that is not a list response")
    return wire.Envelope.model_validate(body)


def _bills_page(records: Sequence[Any], following: _Cursor | None) -> ChangesPage:
    bills, skipped = split_skipped(bill_from_xero(record) for record in records)
    return ChangesPage(bills=bills, skipped=skipped, resume=following.token() if following else None)


def _vendors_page(records: Sequence[Any], following: _Cursor | None) -> ChangesPage:
    vendors, skipped = split_skipped(vendor_from_xero(record) for record in records)

    return ChangesPage(vendors=vendors, skipped=skipped, resume=following.token() if following else None)


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), IDS_PER_REQUEST):
        yield unique[start : start + IDS_PER_REQUEST]
