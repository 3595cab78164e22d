"""Invoice documents of Sage purchase invoices: finding them (S-ATT) and downloading their bytes.

Sage lists no attachment on the invoice itself, only a count on its transaction, so finding a
document takes a call. `DocumentFinder` makes as few as it can: one look-up per bill while a sync
needs few, else one pass over the business's whole attachment list (200 a page), kept for the rest
of the sync. A full listing of open bills meets every bill that has a document, so it takes the pass
at once.
"""

import base64
import binascii
from collections.abc import Sequence
from urllib.parse import quote

from payedge_connect.providers.base import DocumentRef
from payedge_connect.providers.http import ProviderApi, ProviderError
from payedge_connect.providers.sage import bills, paging

# Up to this many bills (changes, look-ups by id), one look-up each is likely cheaper than reading the
# business's attachment list, which takes ceil(attachments / 200) calls whoever they belong to.
PER_BILL_LOOKUPS = 5
# Never `all`: attachment items then carry the file itself, base64-encoded (S-ATT).
ATTACHMENT_ATTRIBUTES = "file_name,mime_type,file_size,attachment_context_type,attachment_context"


class DocumentFinder:
    """The documents of the bills of one sync run."""

    def __init__(self, api: ProviderApi, *, per_bill_lookups: int = PER_BILL_LOOKUPS) -> None:
        self._api = api
        self._per_bill_lookups = per_bill_lookups
        self._lookups = 0
        self._index: dict[str, DocumentRef] | None = None

    def documents(self, bill_ids: Sequence[str]) -> dict[str, DocumentRef]:
        """The document of each of these bills that has one."""
        if not bill_ids:
            return {}
        if self._index is None and self._lookups + len(bill_ids) > self._per_bill_lookups:
            self._index = self._read_index()
        if self._index is not None:
            return {bill_id: self._index[bill_id] for bill_id in bill_ids if bill_id in self._index}
        found: dict[str, DocumentRef] = {}
        for bill_id in bill_ids:
            self._lookups += 1
            document = self._look_up(bill_id)
            if document is not None:
                found[bill_id] = document
        return found

    def _read_index(self) -> dict[str, DocumentRef]:
        listing = paging.Listing("attachments", "attachments", {"attributes": ATTACHMENT_ATTRIBUTES})
        attachments = (bills.read_attachment(raw) for raw in paging.read_all(self._api, listing))
        return bills.documents_by_bill(item for item in attachments if item is not None)

    def _look_up(self, bill_id: str) -> DocumentRef | None:
        # Sage accepts the two context filters only together (S-SW).
        params = {
            "attachment_context_type_id": bills.PURCHASE_INVOICE_CONTEXT,
            "attachment_context_id": bill_id,
            "attributes": ATTACHMENT_ATTRIBUTES,
            "items_per_page": str(paging.MAX_PAGE_SIZE),
        }
        response = self._api.get("attachments", params=params, route="GET /attachments")
        attachments = (bills.read_attachment(raw) for raw in paging.read_page(response).items)
        return bills.documents_by_bill(item for item in attachments if item is not None).get(bill_id)


def download(api: ProviderApi, document: DocumentRef) -> bytes:
    """The bytes of an attachment: GET /attachments/{key}/file."""
    key = quote(document.provider_document_id, safe="")
    # The Swagger makes `Accept: application/octet-stream` mandatory on this endpoint.
    route = "GET /attachments/{key}/file"
    response = api.get(f"attachments/{key}/file", route=route, accept="application/octet-stream")
    if not response.headers.get("Content-Type", "").startswith("application/json"):
        return response.content
    # The Swagger declares an Attachment (base64 `file`) as the answer: accept that form as well.
    body = paging.read_json(response)
    encoded = body.get("file") if isinstance(body, dict) else None
    if not isinstance(encoded, str):
        raise ProviderError(response.status_code, "Sage answered the attachment download without its file")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ProviderError(response.status_code, "Sage answered the attachment download with a damaged file") from None
