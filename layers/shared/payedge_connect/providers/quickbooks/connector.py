"""QuickBooks Online (Intuit Accounting API v3): OAuth, the company (realm), accounts, and the sync reads.

Facts: docs/providers.md#quickbooks-online (endpoints, scopes, realmId, query language, CDC, limits).

What a sync costs at QuickBooks (queries at MAXRESULTS 1000, the largest QuickBooks accepts):
- open bills: ceil(n / 1000) Bill queries (one more, empty, when n is a multiple of 1000: a query
  answer carries no total), plus one Attachable query per page to find the bills' documents;
- vendors: ceil(n / 1000) Vendor queries;
- changes: one CDC call for Bill and Vendor, plus one Attachable query when open bills changed.
"""

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests
from pydantic import ValidationError

from payedge_connect.models import Provider
from payedge_connect.observability import logger
from payedge_connect.providers.base import (
    AccountKind,
    BillCheck,
    ChangesPage,
    DocumentRef,
    IncrementalWindowExpired,
    LedgerAccount,
    OAuthSpec,
    ProviderBill,
    SkippedRecord,
    Tenant,
    rebase,
)
from payedge_connect.providers.connector import Connector, split_skipped
from payedge_connect.providers.http import ProviderApi, ProviderError, ProviderUnavailable
from payedge_connect.providers.quickbooks import bills, payments, wire

AUTHORIZE_URL = "https://appcenter.intuit.com/connect/oauth2"
TOKEN_URL = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
REVOKE_URL = "https://developer.api.intuit.com/v2/oauth2/tokens/revoke"
API_URL = "https://quickbooks.api.intuit.com"
SCOPES = ("com.intuit.quickbooks.accounting",)
# Intuit only reports the 5-year refresh-token cap (x_refresh_token_hard_expires_in) when asked.
HARD_EXPIRY_HEADER = {"x-include-refresh-token-hard-expires-in": "true"}
_ACCOUNTS_QUERY = "select * from Account where AccountType in ('Bank', 'Expense') maxresults 1000"

MAX_RESULTS = 1000  # MAXRESULTS above 1000 is a 4001 "Invalid query"
CDC_MAX_OBJECTS = 1000  # one CDC answer holds at most 1,000 objects (I-CDC)
CDC_MAX_AGE = timedelta(days=30)  # CDC looks back at most 30 days (I-CDC)
OPEN_BILLS = "select * from Bill where Balance > '0'"
# Name lists answer active objects only unless the query filters on Active; an inactive vendor can
# still be owed a bill, so both are listed.
ALL_VENDORS = "select * from Vendor where Active in (true, false)"
_FILE_TIMEOUT_SECONDS = (5, 60)
# Error 610 "Object Not Found": what reading a deleted bill answers (I-ERR).
_OBJECT_NOT_FOUND = re.compile(r'Object Not Found|"code"\s*:\s*"610"')


class QuickBooksConnector(Connector):
    provider = Provider.QUICKBOOKS
    payments = payments  # write-back: BillPayments and fee Purchases, built and found in payments.py
    payment_batch_size = payments.BATCH_MAX_ITEMS

    @property
    def oauth(self) -> OAuthSpec:
        return OAuthSpec(
            authorize_url=rebase(AUTHORIZE_URL, self._base_url),
            token_url=rebase(TOKEN_URL, self._base_url),
            revoke_url=rebase(REVOKE_URL, self._base_url),
            scopes=SCOPES,
            pkce=False,  # Intuit's discovery document lists no code_challenge_methods
            client_auth="basic",
            revocation_body="json",
            token_request_headers=HARD_EXPIRY_HEADER,
        )

    def organisation_endpoint(self, tenant_id: str) -> tuple[str, Mapping[str, str]]:
        # The company (realm) is in every path; no header names it.
        return f"{rebase(API_URL, self._base_url)}/v3/company/{tenant_id}", {}

    def tenants(self, access_token: str, callback_params: Mapping[str, str]) -> list[Tenant]:
        # One grant is one company: the redirect names it (realmId); its name comes from CompanyInfo.
        realm_id = callback_params.get("realmId")
        if not realm_id:
            return []
        api = self.api(realm_id, access_token=lambda: access_token)
        info = api.get(f"companyinfo/{realm_id}", route="GET companyinfo").json().get("CompanyInfo", {})
        return [Tenant(tenant_id=realm_id, name=info.get("CompanyName") or f"QuickBooks company {realm_id}")]

    def accounts(self, api: ProviderApi) -> list[LedgerAccount]:
        response = api.get("query", params={"query": _ACCOUNTS_QUERY}, route="GET query Account").json()
        items: list[dict[str, Any]] = response.get("QueryResponse", {}).get("Account", [])
        return [
            LedgerAccount(
                account_id=item["Id"],
                name=item.get("Name", ""),
                code=item.get("AcctNum"),
                kind=AccountKind.BANK if item.get("AccountType") == "Bank" else AccountKind.EXPENSE,
                currency=(item.get("CurrencyRef") or {}).get("value"),
                active=bool(item.get("Active", True)),
            )
            for item in items
        ]

    def home_currency(self, api: ProviderApi) -> str:
        # Preferences.CurrencyPrefs.HomeCurrency, a ReferenceType [I-XSD Finance.xsd CurrencyPrefs]
        response = api.get("preferences", route="GET preferences").json()
        return str(response["Preferences"]["CurrencyPrefs"]["HomeCurrency"]["value"])

    # ------------------------------------------------------------------------------------------ sync

    def open_bills(self, api: ProviderApi, *, resume: str | None) -> Iterator[ChangesPage]:
        """Bills with `Balance > 0` (QuickBooks has no draft bills: every bill is approved)."""
        start = _start_position(resume, "bills")
        for items, following in _listing(api, OPEN_BILLS, "Bill", start):
            yield _bills_page(api, items, resume=_token("bills", following))

    def vendors(self, api: ProviderApi, *, resume: str | None) -> Iterator[ChangesPage]:
        start = _start_position(resume, "vendors")
        for items, following in _listing(api, ALL_VENDORS, "Vendor", start):
            yield _vendors_page(items, resume=_token("vendors", following))

    def changes_since(self, api: ProviderApi, since: datetime, *, resume: str | None) -> Iterator[ChangesPage]:
        """One CDC call for bills and vendors; the answer is one page (CDC has no paging).

        Raises IncrementalWindowExpired - so the sync falls back to a full listing of open bills, which
        also finds the bills that closed - when `since` is beyond CDC's 30 days, and when the answer
        holds 1,000 objects: CDC then may have left changes out, and which ones is not documented.
        """
        if resume is not None:
            raise ValueError(f"a QuickBooks change listing is a single page; nothing resumes from {resume!r}")
        moment = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
        if moment < datetime.now(UTC) - CDC_MAX_AGE:
            raise IncrementalWindowExpired(f"QuickBooks CDC reaches back 30 days, not to {moment.isoformat()}")
        # LastUpdatedTime has whole seconds: asking from the second before `since` cannot miss a change
        # made in the same second (seeing one again is harmless).
        changed_since = (moment.replace(microsecond=0) - timedelta(seconds=1)).isoformat()
        try:
            response = api.get(
                "cdc", params={"entities": "Bill,Vendor", "changedSince": changed_since}, route="GET cdc"
            )
            body = wire.read_json(response)
        except ProviderError as error:
            if error.status == 400 and "older than" in error.message:
                # Intuit's clock decides: "changedSince date ... older than fixed days is not supported".
                raise IncrementalWindowExpired(f"QuickBooks refused CDC since {changed_since}") from None
            raise
        bill_items, vendor_items = wire.cdc_items(body, "Bill"), wire.cdc_items(body, "Vendor")
        if len(bill_items) + len(vendor_items) >= CDC_MAX_OBJECTS:
            raise IncrementalWindowExpired(
                f"QuickBooks CDC returned {CDC_MAX_OBJECTS} objects since {changed_since}, its limit: "
                "changes may be missing, so the open bills are listed in full instead"
            )
        bills_page = _bills_page(api, bill_items)
        vendors_page = _vendors_page(vendor_items)
        yield ChangesPage(
            bills=bills_page.bills,
            vendors=vendors_page.vendors,
            skipped=[*bills_page.skipped, *vendors_page.skipped],
        )

    def bills_by_id(self, api: ProviderApi, bill_ids: Sequence[str]) -> ChangesPage:
        """One query per 1,000 ids; an id the query does not return is read on its own, and a 610
        "Object Not Found" (or 404) on that read is what says the bill was deleted."""
        wanted = list(dict.fromkeys(bill_id for bill_id in bill_ids if bill_id))
        found: list[Any] = []
        for chunk in _chunks(wanted, MAX_RESULTS):
            ids = wire.quoted(chunk)
            text = f"select * from Bill where Id in ({ids}) maxresults {MAX_RESULTS}"  # noqa: S608 - ids escaped
            found += wire.query_items(wire.query(api, text, "POST query Bill by Id"), "Bill")
        returned = {item.get("Id") for item in found if isinstance(item, dict)}
        deleted: list[ProviderBill] = []
        for bill_id in wanted:
            if bill_id in returned:
                continue
            read = _read_bill(api, bill_id)
            if read is None:
                deleted.append(bills.deleted_bill_id(bill_id))
            else:
                found.append(read)
        page = _bills_page(api, found)
        return ChangesPage(bills=[*page.bills, *deleted], skipped=page.skipped)

    def check_bills(self, api: ProviderApi, bill_ids: Sequence[str], *, unchanged_since: datetime | None) -> BillCheck:
        """One `select * from Bill where Id in (...)` per 1,000 bills and nothing else: a payment needs
        the amounts, not the documents. A bill the query does not return is gone (deleted)."""
        wanted = list(dict.fromkeys(bill_id for bill_id in bill_ids if bill_id))
        found: list[Any] = []
        for chunk in _chunks(wanted, MAX_RESULTS):
            text = f"select * from Bill where Id in ({wire.quoted(chunk)}) maxresults {MAX_RESULTS}"  # noqa: S608
            found += wire.query_items(wire.query(api, text, "POST query Bill by Id"), "Bill")
        page = _bills_page(api, found, documents=False)
        current = {bill.bill_id: bill for bill in page.bills}
        return BillCheck(current=current, gone=frozenset(set(wanted) - set(current)))

    def vendors_by_id(self, api: ProviderApi, vendor_ids: Sequence[str]) -> ChangesPage:
        wanted = list(dict.fromkeys(vendor_id for vendor_id in vendor_ids if vendor_id))
        found: list[Any] = []
        for chunk in _chunks(wanted, MAX_RESULTS):
            # "Active in (true, false)": inactive vendors too (name-list rule, see ALL_VENDORS).
            ids = wire.quoted(chunk)
            select = f"select * from Vendor where Id in ({ids}) and Active in (true, false)"  # noqa: S608 - ids escaped
            text = f"{select} maxresults {MAX_RESULTS}"
            found += wire.query_items(wire.query(api, text, "POST query Vendor by Id"), "Vendor")
        page = _vendors_page(found)
        returned = {vendor.vendor_id for vendor in page.vendors} | {record.provider_id for record in page.skipped}
        # QuickBooks never deletes a vendor (it makes it inactive): a missing one is an id it never had.
        missing = [
            SkippedRecord(entity="vendor", provider_id=vendor_id, reason="QuickBooks has no vendor with this Id")
            for vendor_id in wanted
            if vendor_id not in returned
        ]
        return ChangesPage(vendors=page.vendors, skipped=[*page.skipped, *missing])

    def download_document(self, api: ProviderApi, bill_id: str, document: DocumentRef) -> bytes:
        """`GET download/{attachableId}` answers a temporary link as plain text (valid ~15 minutes); the
        bytes come from that link, which is presigned: it gets no Authorization header."""
        response = _fetch_file(api, _download_link(api, bill_id, document))
        if response is None or response.status_code == 403 or response.status_code >= 500:
            # The link expired before it was used (403) or the file store failed: a new link, once.
            response = _fetch_file(api, _download_link(api, bill_id, document))
        if response is None:
            raise ProviderUnavailable(0, f"no answer from the document link of bill {bill_id}")
        if response.status_code != 200:
            raise ProviderError(response.status_code, f"the document link of bill {bill_id} answered an error")
        return response.content


# ---------------------------------------------------------------------------------------------- reading


def _listing(api: ProviderApi, select: str, entity: str, start: int) -> Iterator[tuple[list[Any], int | None]]:
    """Pages of a query from STARTPOSITION `start`, each with the position of the next page (None: last)."""
    while True:
        text = f"{select} startposition {start} maxresults {MAX_RESULTS}"
        items = wire.query_items(wire.query(api, text, f"POST query {entity}"), entity)
        # A full page may be followed by more; a short one is the last.
        following = start + len(items) if len(items) >= MAX_RESULTS else None
        yield items, following
        if following is None:
            return
        start = following


def _read_bill(api: ProviderApi, bill_id: str) -> Any | None:
    """The Bill object by Id, or None when QuickBooks says it does not exist (deleted)."""
    try:
        response = api.get(f"bill/{quote(bill_id, safe='')}", route="GET bill")
        return wire.read_json(response).get("Bill")
    except ProviderError as error:
        if error.status == 404 or (
            error.status == 400 and ("Object Not Found" in error.message or "610" in error.message)
        ):
            return None
        raise


def _download_link(api: ProviderApi, bill_id: str, document: DocumentRef) -> str:
    path = f"download/{quote(document.provider_document_id, safe='')}"
    link = api.request("GET", path, idempotent=True, route="GET download", accept="text/plain").text.strip()
    if not link.startswith(("https://", "http://")):
        raise ProviderError(200, f"QuickBooks gave no download link for the document of bill {bill_id}")
    return link


def _fetch_file(api: ProviderApi, link: str) -> requests.Response | None:
    """The file behind a temporary link (None: no answer). Counted as a call, but not against
    QuickBooks' budget: the link points at Intuit's file store, not at the API."""
    api.calls.count("GET document file")
    try:
        return requests.get(link, headers={"Accept": "*/*"}, timeout=_FILE_TIMEOUT_SECONDS)
    except (requests.ConnectionError, requests.Timeout):
        return None


def _documents(api: ProviderApi, bill_ids: Sequence[str]) -> dict[str, DocumentRef]:
    """The invoice document of each of these bills that has one: one Attachable query per 1,000 bills."""
    wanted = set(bill_ids)
    attachables: dict[str, list[wire.Attachable]] = {}
    for chunk in _chunks(list(bill_ids), MAX_RESULTS):
        select = (
            "select * from Attachable where AttachableRef.EntityRef.Type = 'Bill' "  # noqa: S608 - _quoted escapes
            f"and AttachableRef.EntityRef.value in ({wire.quoted(chunk)})"
        )
        for items, _ in _listing(api, select, "Attachable", 1):
            for raw in items:
                try:
                    attachable = wire.Attachable.model_validate(raw)
                except ValidationError as error:
                    # An unreadable attachment leaves its bill without a document; the bill still syncs.
                    logger.warning("QuickBooks attachable skipped", extra={"problem": wire.problem(error)})
                    continue
                for link in attachable.AttachableRef:
                    if link.EntityRef.value in wanted and (link.EntityRef.type or "Bill").lower() == "bill":
                        attachables.setdefault(link.EntityRef.value, []).append(attachable)
    documents = {bill_id: bills.document_from_qbo(items) for bill_id, items in attachables.items()}
    return {bill_id: document for bill_id, document in documents.items() if document is not None}


def _bills_page(
    api: ProviderApi, items: Sequence[Any], *, resume: str | None = None, documents: bool = True
) -> ChangesPage:
    read = [bills.read_bill(raw) for raw in items]
    open_ids = [item.Id for item in read if isinstance(item, wire.Bill) and item.Balance > 0]
    found = _documents(api, open_ids) if open_ids and documents else {}
    mapped, skipped = split_skipped(_bill(item, found) for item in read)
    return ChangesPage(bills=mapped, skipped=skipped, resume=resume)


def _bill(
    item: wire.Bill | wire.DeletedEntity | SkippedRecord, found: Mapping[str, DocumentRef]
) -> ProviderBill | SkippedRecord:
    if isinstance(item, wire.DeletedEntity):
        return bills.deleted_bill(item)
    return item if isinstance(item, SkippedRecord) else bills.bill_from_qbo(item, found.get(item.Id))


def _vendors_page(items: Sequence[Any], *, resume: str | None = None) -> ChangesPage:
    read = [bills.read_vendor(raw) for raw in items]
    mapped, skipped = split_skipped(
        vendor if isinstance(vendor, SkippedRecord) else bills.vendor_from_qbo(vendor)
        for vendor in read
        # a CDC tombstone of a vendor says nothing to show; QuickBooks makes vendors inactive
        if not isinstance(vendor, wire.DeletedEntity)
    )
    return ChangesPage(vendors=mapped, skipped=skipped, resume=resume)


# ---------------------------------------------------------------------------------------------- helpers


def _token(listing: str, start: int | None) -> str | None:
    """Resume token: the listing and the STARTPOSITION of its next page."""
    return None if start is None else f"{listing}:{start}"


def _start_position(resume: str | None, listing: str) -> int:
    if resume is None:
        return 1
    name, _, start = resume.partition(":")
    if name != listing or not start.isdigit() or int(start) < 1:
        raise ValueError(f"not a resume token of the QuickBooks {listing} listing: {resume!r}")
    return int(start)


def _chunks(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
