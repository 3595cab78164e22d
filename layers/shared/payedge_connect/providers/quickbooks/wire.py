"""QuickBooks Online JSON as the sync reads it: only the fields we use, named as on the wire.

JSON field names are the XSD element names (Finance.xsd, IntuitNamesTypes.xsd, docs/providers.md#specs;
docs/providers.md#quickbooks-bills to -attachments). Everything else Intuit sends (tax ids, bank details, phones, notes,
lines...) is ignored here, so it never reaches a record we keep.
"""

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from payedge_connect.providers.http import ProviderApi, ProviderError

# Amounts are read from JSON as Decimal (parse_float=Decimal); NaN and infinity are not amounts.
Money = Annotated[Decimal, Field(allow_inf_nan=False)]


class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Reference(Wire):
    """A ReferenceType: `{"value": "42", "name": "Acme"}`."""

    value: str
    name: str | None = None


class Metadata(Wire):
    LastUpdatedTime: datetime | None = None


class LinkedTransaction(Wire):
    TxnId: str | None = None
    TxnType: str | None = None


class Bill(Wire):
    Id: str
    VendorRef: Reference
    CurrencyRef: Reference | None = None
    TotalAmt: Money
    Balance: Money
    DocNumber: str | None = None
    PrivateNote: str | None = None
    TxnDate: date | None = None
    DueDate: date | None = None
    LinkedTxn: list[LinkedTransaction] = Field(default_factory=list)
    MetaData: Metadata | None = None


class DeletedEntity(Wire):
    """What CDC returns for a deleted object: `{"domain": "QBO", "status": "Deleted", "Id": ...}`."""

    Id: str
    status: Literal["Deleted"]
    MetaData: Metadata | None = None


class EmailAddress(Wire):
    Address: str | None = None


class PhysicalAddress(Wire):
    Line1: str | None = None
    Line2: str | None = None
    Line3: str | None = None
    Line4: str | None = None
    Line5: str | None = None
    City: str | None = None
    CountrySubDivisionCode: str | None = None
    PostalCode: str | None = None
    Country: str | None = None


class Vendor(Wire):
    Id: str
    DisplayName: str | None = None
    CompanyName: str | None = None
    PrimaryEmailAddr: EmailAddress | None = None
    BillAddr: PhysicalAddress | None = None
    Active: bool = True
    MetaData: Metadata | None = None


class EntityReference(Wire):
    value: str
    type: str | None = None


class AttachableLink(Wire):
    EntityRef: EntityReference


class Attachable(Wire):
    Id: str
    FileName: str | None = None
    ContentType: str | None = None
    Size: int | None = None
    AttachableRef: list[AttachableLink] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------- bodies


def read_json(response: requests.Response) -> dict[str, Any]:
    """A QuickBooks JSON body with every number as a Decimal (never through float)."""
    try:
        body = response.json(parse_float=Decimal)
    except requests.JSONDecodeError:
        raise ProviderError(response.status_code, "QuickBooks answered with a body that is not JSON") from None
    if not isinstance(body, dict):
        raise ProviderError(response.status_code, "QuickBooks answered with JSON that is not an object")
    if "Fault" in body:
        # A 200 can still carry a Fault (I-ERR): it is an error all the same.
        raise ProviderError(response.status_code, fault_text(body["Fault"]))
    return body


def query(api: ProviderApi, text: str, route: str) -> dict[str, Any]:
    """A query sent in a POST body (Content-Type application/text): 1,000 quoted ids do not fit in a URL."""
    response = api.request(
        "POST",
        "query",
        idempotent=True,
        route=route,
        data=text.encode("utf-8"),
        headers={"Content-Type": "application/text"},
    )
    return read_json(response)


def quoted(values: Sequence[str]) -> str:
    """Values as a list of query literals; a quote inside a literal is written \\' (Intuit's escape)."""
    return ", ".join("'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'" for value in values)


def fault_text(fault: object) -> str:
    """`Fault.Error[0]` as "code Message: Detail", short and without the rest of the payload."""
    errors = fault.get("Error") if isinstance(fault, dict) else None
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    return f"{first.get('code', '?')} {first.get('Message', 'Fault')}: {first.get('Detail', '')}"[:300]


def query_items(body: dict[str, Any], entity: str) -> list[Any]:
    """The objects of one entity in a query answer (an empty answer is `"QueryResponse": {}`)."""
    return _items(body.get("QueryResponse"), entity)


def cdc_items(body: dict[str, Any], entity: str) -> list[Any]:
    """The objects of one entity in a CDC answer: `CDCResponse[].QueryResponse[].<Entity>[]`."""
    found: list[Any] = []
    for cdc in body.get("CDCResponse") or []:
        responses = cdc.get("QueryResponse") if isinstance(cdc, dict) else None
        for response in responses if isinstance(responses, list) else []:
            found += _items(response, entity)
    return found


def _items(response: object, entity: str) -> list[Any]:
    items = response.get(entity) if isinstance(response, dict) else None
    return items if isinstance(items, list) else []


def problem(error: ValidationError) -> str:
    """The first problem of a record, in words a user can act on (field names, never values)."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "the record"
    if first["type"] == "missing":
        return f"{field} is missing"
    return f"{field} is not valid: {first['msg'].lower()}"


# ---------------------------------------------------------------------------------------------- write-back
# What write-back reads back of the transactions it posts (docs/providers.md#quickbooks-payments).


class BillPaymentLine(Wire):
    LinkedTxn: list[LinkedTransaction] = Field(default_factory=list)


class BillPayment(Wire):
    """A BillPayment as a payment lookup reads it: which bills its lines pay."""

    Id: str
    DocNumber: str | None = None
    Line: list[BillPaymentLine] = Field(default_factory=list)


class ExpenseLineDetail(Wire):
    AccountRef: Reference


class PurchaseLine(Wire):
    AccountBasedExpenseLineDetail: ExpenseLineDetail | None = None


class Purchase(Wire):
    """A Purchase (an expense) as a fee lookup reads it: the account it is paid from and its lines' accounts."""

    Id: str
    DocNumber: str | None = None
    AccountRef: Reference
    Line: list[PurchaseLine] = Field(default_factory=list)
