"""Sage Business Cloud Accounting (API v3.1): OAuth, businesses, bank and expense ledger accounts, and
the sync reads (open bills, vendors, changes, documents) delegated to paging, bills and documents.

Facts: docs/providers.md#sage-accounting (endpoints, full_access scope, X-Business, paging).
"""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from payedge_connect.models import ClosedReason, Provider
from payedge_connect.providers.base import (
    AccountKind,
    BillCheck,
    ChangesPage,
    DocumentRef,
    LedgerAccount,
    OAuthSpec,
    ProviderBill,
    SkippedRecord,
    Tenant,
    rebase,
)
from payedge_connect.providers.connector import Connector, split_skipped
from payedge_connect.providers.http import ProviderApi, ProviderError
from payedge_connect.providers.sage import bills, documents, paging, payments
from payedge_connect.providers.sage.paging import MAX_PAGE_SIZE, Listing

AUTHORIZE_URL = "https://www.sageone.com/oauth2/auth/central"
TOKEN_URL = "https://oauth.accounting.sage.com/token"
REVOKE_URL = "https://oauth.accounting.sage.com/revoke"
API_URL = "https://api.accounting.sage.com/v3.1"
# Sage has only readonly and full_access; writing payments needs full_access.
SCOPES = ("full_access",)
# A payment run of at most this many bills checks them by id (one read each) rather than by the two
# changed-since reads.
_READ_BY_ID_UP_TO = 2
# Contacts are read for name, email and address only: bank details, tax number, notes and contact
# persons are never requested, so they never reach this service.
CONTACT_ATTRIBUTES = "name,email,main_address,updated_at,deleted_at"
# The Swagger lets a list expand nested entities (main_address) with nested_attributes.
ADDRESS_ATTRIBUTES = "address_line_1,address_line_2,city,region,postal_code,country"


def pages(api: ProviderApi, path: str, params: Mapping[str, Any], route: str) -> Iterator[dict[str, Any]]:
    """Every item of a Sage list, following `$next` until it is null."""
    response = api.get(path, params={**params, "items_per_page": MAX_PAGE_SIZE}, route=route).json()
    while True:
        yield from response.get("$items", [])
        next_path = response.get("$next")
        if not next_path:
            return
        # $next is a path relative to the API root, query included.
        response = api.get(next_path.lstrip("/"), route=route).json()


class SageConnector(Connector):
    provider = Provider.SAGE
    payments = payments  # write-back: contact payments and fee other payments, built and found in payments.py
    payment_batch_size = payments.BATCH_MAX_ELEMENTS

    @property
    def oauth(self) -> OAuthSpec:
        return OAuthSpec(
            authorize_url=rebase(AUTHORIZE_URL, self._base_url),
            token_url=rebase(TOKEN_URL, self._base_url),
            revoke_url=rebase(REVOKE_URL, self._base_url),
            scopes=SCOPES,
            pkce=True,
            client_auth="body",
            revocation_body="form",
            extra_authorize_params={"filter": "apiv3.1"},
        )

    def organisation_endpoint(self, tenant_id: str) -> tuple[str, Mapping[str, str]]:
        # Without X-Business Sage silently uses the user's lead business: always name it.
        return rebase(API_URL, self._base_url), {"X-Business": tenant_id}

    def tenants(self, access_token: str, callback_params: Mapping[str, str]) -> list[Tenant]:
        # A Sage grant belongs to a user and reaches every business the user has.
        api = ProviderApi(rebase(API_URL, self._base_url), provider=self.provider, access_token=lambda: access_token)
        body = api.get("businesses", route="GET /businesses").json()
        items: list[dict[str, Any]] = body if isinstance(body, list) else body.get("$items", [])
        return [Tenant(tenant_id=item["id"], name=item.get("name") or item["displayed_as"]) for item in items]

    def home_currency(self, api: ProviderApi) -> str:
        # financial_settings.base_currency.id [S-SW getFinancialSettings]
        return str(api.get("financial_settings", route="GET /financial_settings").json()["base_currency"]["id"])

    def accounts(self, api: ProviderApi) -> list[LedgerAccount]:
        accounts = [
            LedgerAccount(
                account_id=item["id"],
                name=(item.get("bank_account_details") or {}).get("account_name") or item["displayed_as"],
                code=item.get("nominal_code"),
                kind=AccountKind.BANK,
                currency=(item.get("currency") or {}).get("id"),
                active=bool(item.get("is_active", True)),
            )
            for item in pages(api, "bank_accounts", {"attributes": "all"}, "GET /bank_accounts")
        ]
        # Fees are booked with other_payments, so the expense accounts are those visible there.
        expense_filter = {"visible_in": "other_payments", "attributes": "all"}
        for item in pages(api, "ledger_accounts", expense_filter, "GET /ledger_accounts"):
            account_type = (item.get("ledger_account_type") or {}).get("id", "")
            if "EXPENSE" not in account_type and "OVERHEAD" not in account_type:
                continue
            accounts.append(
                LedgerAccount(
                    account_id=item["id"],
                    name=item.get("name") or item.get("displayed_as", ""),
                    code=item.get("nominal_code"),
                    kind=AccountKind.EXPENSE,
                    currency=None,
                    active=item.get("visible_in_other_payments", True) is not False,
                )
            )
        return accounts

    # ------------------------------------------------------------------ sync

    def open_bills(self, api: ProviderApi, *, resume: str | None) -> Iterator[ChangesPage]:
        # status_id takes one value (S-SW): UNPAID first, so a bill part-paid during the read is met again.
        listings = [
            Listing(
                f"open:{status}",
                "purchase_invoices",
                # Sorted by creation so that bills created during the read land on later pages.
                {"status_id": status, "attributes": "all", "sort": "created_at"},
            )
            for status in bills.OPEN_STATUSES
        ]
        finder = documents.DocumentFinder(api, per_bill_lookups=0)
        return paging.read_listings(api, listings, resume, lambda _, items: _bills_page(items, finder))

    def vendors(self, api: ProviderApi, *, resume: str | None) -> Iterator[ChangesPage]:
        listing = Listing("vendors", "contacts", _vendor_params())
        return paging.read_listings(api, [listing], resume, lambda _, items: _vendors_page(items))

    def changes_since(self, api: ProviderApi, since: datetime, *, resume: str | None) -> Iterator[ChangesPage]:
        # Sage keeps no change window (unlike QuickBooks' 30 days), so IncrementalWindowExpired never applies.
        moment = _since(since)
        changed = {"updated_or_created_since": moment}
        listings = [
            Listing("changes:vendors", "contacts", {**_vendor_params(), **changed}),
            Listing(
                "changes:bills",
                "purchase_invoices",
                # All statuses: paid and voided bills come back too; allocations tell payments from credits.
                {**changed, "attributes": "all", "show_payments_allocations": "true", "sort": "created_at"},
            ),
            # Deleted invoices leave ordinary reads; deleted_since is exclusive (S-SW) where the other is inclusive.
            Listing("changes:deleted_bills", "purchase_invoices", {"deleted_since": moment, "attributes": "all"}),
        ]
        finder = documents.DocumentFinder(api)

        def page(listing: Listing, items: list[Any]) -> ChangesPage:
            if listing.name == "changes:vendors":
                return _vendors_page(items)
            if listing.name == "changes:deleted_bills":
                return _deleted_bills_page(items)
            return _bills_page(items, finder)

        return paging.read_listings(api, listings, resume, page)

    def bills_by_id(self, api: ProviderApi, bill_ids: Sequence[str]) -> ChangesPage:
        # A bill Sage answers 404 for (deleted) is left out: Sage no longer says what it was, and the
        # sync engine closes a bill it asked for and did not get back as deleted, from what it stored.
        raw_items: list[Any] = []
        for bill_id in dict.fromkeys(bill_ids):
            try:
                response = api.get(
                    f"purchase_invoices/{quote(bill_id, safe='')}",
                    params={"show_payments_allocations": "true"},
                    route="GET /purchase_invoices/{key}",
                )
            except ProviderError as error:
                if error.status != 404:
                    raise
                continue
            raw_items.append(paging.read_json(response))
        return _bills_page(raw_items, documents.DocumentFinder(api))

    def check_bills(self, api: ProviderApi, bill_ids: Sequence[str], *, unchanged_since: datetime | None) -> BillCheck:
        """Sage has no read of many bills by id (purchase_invoices takes no ids filter): a payment run's
        bills are checked with one read of what changed since the last sync (`updated_or_created_since`,
        inclusive) and one of what was deleted since (`deleted_since`, exclusive) - a bill in neither is
        as it was synced. One or two bills, or none synced yet, are read by id instead (fewer calls)."""
        wanted = list(dict.fromkeys(bill_ids))
        if unchanged_since is None or len(wanted) <= _READ_BY_ID_UP_TO:
            page = self.bills_by_id(api, wanted)
            read = {bill.bill_id: bill for bill in page.bills}
            return BillCheck(current=read, gone=frozenset(set(wanted) - set(read)))
        moment = _since(unchanged_since)
        keep = set(wanted)
        changed = Listing(
            "check:bills",
            "purchase_invoices",
            {"updated_or_created_since": moment, "attributes": "all", "show_payments_allocations": "true"},
        )
        deleted = Listing("check:deleted_bills", "purchase_invoices", {"deleted_since": moment, "attributes": "id"})
        current: dict[str, ProviderBill] = {}
        for raw in paging.read_all(api, changed):
            invoice = bills.read_bill(raw)
            if isinstance(invoice, SkippedRecord) or invoice.id not in keep:
                continue
            bill = bills.bill_from_sage(invoice, None)
            if not isinstance(bill, SkippedRecord):
                current[bill.bill_id] = bill
        gone = {raw.get("id") for raw in paging.read_all(api, deleted) if isinstance(raw, dict)}
        return BillCheck(current=current, gone=frozenset(keep & gone))

    def vendors_by_id(self, api: ProviderApi, vendor_ids: Sequence[str]) -> ChangesPage:
        raw_items: list[Any] = []
        skipped: list[SkippedRecord] = []
        for vendor_id in dict.fromkeys(vendor_ids):
            try:
                response = api.get(
                    f"contacts/{quote(vendor_id, safe='')}",
                    params={"attributes": CONTACT_ATTRIBUTES, "nested_attributes": ADDRESS_ATTRIBUTES},
                    route="GET /contacts/{key}",
                )
            except ProviderError as error:
                if error.status != 404:
                    raise
                skipped.append(SkippedRecord("vendor", vendor_id, "Sage no longer has this supplier"))
                continue
            raw_items.append(paging.read_json(response))
        page = _vendors_page(raw_items)
        return ChangesPage(vendors=page.vendors, skipped=[*page.skipped, *skipped])

    def download_document(self, api: ProviderApi, bill_id: str, document: DocumentRef) -> bytes:
        # An attachment's key is enough to fetch it: the bill id is not part of Sage's path.
        return documents.download(api, document)


def _vendor_params() -> dict[str, str]:
    return {"contact_type_id": "VENDOR", "attributes": CONTACT_ATTRIBUTES, "nested_attributes": ADDRESS_ATTRIBUTES}


def _since(since: datetime) -> str:
    """`since` as Sage wants it (YYYY-MM-DDThh:mm:ss+hh:mm), rounded down to the second: the inclusive
    filter then repeats at most one second of changes rather than missing any."""
    if since.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    return since.astimezone(UTC).replace(microsecond=0).isoformat()


def _bills_page(items: list[Any], finder: documents.DocumentFinder) -> ChangesPage:
    invoices, skipped = split_skipped(bills.read_bill(raw) for raw in items)
    # Only open bills need their document; closed ones are leaving the payables list.
    wanted = [
        invoice.id for invoice in invoices if invoice.id and bills.is_open(invoice) and bills.may_have_document(invoice)
    ]
    found = finder.documents(wanted)
    mapped, unmapped = split_skipped(bills.bill_from_sage(invoice, found.get(invoice.id or "")) for invoice in invoices)
    return ChangesPage(bills=mapped, skipped=skipped + unmapped)


def _deleted_bills_page(items: list[Any]) -> ChangesPage:
    """Deleted invoices, closed as deleted with the last details Sage lists for them."""
    deleted: list[ProviderBill] = []
    skipped: list[SkippedRecord] = []
    for raw in items:
        read = bills.read_bill(raw)
        if isinstance(read, SkippedRecord):
            skipped.append(read)
            continue
        if not read.id:
            skipped.append(SkippedRecord("bill", "", "Sage listed a deleted purchase invoice without its id"))
            continue
        bill = bills.bill_from_sage(read, None)
        if isinstance(bill, SkippedRecord):
            # Without its details a payable cannot be recorded; the next full sync closes it as deleted.
            reason = "Sage lists this purchase invoice as deleted without its details; the next full sync closes it"
            skipped.append(SkippedRecord("bill", read.id, reason))
        else:
            deleted.append(replace(bill, is_open=False, closed_reason=ClosedReason.DELETED, document=None))
    return ChangesPage(bills=deleted, skipped=skipped)


def _vendors_page(items: list[Any]) -> ChangesPage:
    read = (bills.read_vendor(raw) for raw in items)
    vendors, skipped = split_skipped(
        contact if isinstance(contact, SkippedRecord) else bills.vendor_from_sage(contact) for contact in read
    )
    return ChangesPage(vendors=vendors, skipped=skipped)
