"""Xero's `where`, `order`, If-Modified-Since and paging rules as the sandbox parses them."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from local.sandboxes.xero.query import (
    FieldKind,
    FieldValue,
    Page,
    QueryParseError,
    matches,
    page_slice,
    parse_if_modified_since,
    parse_order,
    parse_paging,
    parse_where,
    references,
    sort_records,
)

FIELDS: dict[str, FieldKind] = {
    "Type": "string",
    "Status": "string",
    "Contact.ContactID": "guid",
    "AmountDue": "number",
    "Date": "date",
    "HasAttachments": "bool",
}
CONTACT = "A3675FC4-F8DD-4F03-BA5B-F1870566BCD7"


def bill(**values: FieldValue) -> dict[str, FieldValue]:
    record: dict[str, FieldValue] = {
        "Type": "ACCPAY",
        "Status": "AUTHORISED",
        "Contact.ContactID": CONTACT.lower(),
        "AmountDue": Decimal("120.00"),
        "Date": date(2026, 10, 1),
        "HasAttachments": False,
    }
    record.update(values)
    return record


def where(text: str) -> object:
    return parse_where(text, FIELDS, "Invoice")


@pytest.mark.parametrize(
    ("text", "record", "expected"),
    [
        ('Type=="ACCPAY" AND Status=="AUTHORISED"', bill(), True),
        ('Type=="ACCPAY" && Status=="AUTHORISED"', bill(Status="PAID"), False),
        ('Status=="PAID" OR Status=="AUTHORISED"', bill(), True),
        ('(Status=="PAID" OR Status=="VOIDED") AND Type=="ACCPAY"', bill(), False),
        (f'Contact.ContactID==guid("{CONTACT}")', bill(), True),
        (f'Contact.ContactID==Guid("{CONTACT.lower()}")', bill(), True),
        ("AmountDue > 100", bill(), True),
        ("AmountDue >= 120.01", bill(), False),
        ("HasAttachments==true", bill(), False),
        ("Date >= DateTime(2026, 10, 01) AND Date < DateTime(2026, 11, 01)", bill(), True),
        ('Status!="DELETED"', bill(), True),
        ('Status="AUTHORISED"', bill(), True),
        ('type=="ACCPAY"', bill(), True),
    ],
)
def test_where_expressions_select_records(text: str, record: dict[str, FieldValue], expected: bool) -> None:
    assert matches(parse_where(text, FIELDS, "Invoice"), record) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('Colour=="RED"', "No property or field 'Colour' exists in type 'Invoice'"),
        (f'Contact.ContactID=="{CONTACT}"', "Operator '==' incompatible with operand types 'Guid' and 'String'"),
        ('Status > "A"', "Operator '>' incompatible with operand types 'String' and 'String'"),
        ('AmountDue=="12"', "incompatible with operand types 'Decimal' and 'String'"),
        ('Status=="AUTHORISED', "Unterminated string literal"),
        ('Type=="ACCPAY" AND', "Expression expected"),
        ('Type.Contains("ACC")', "Method calls are not supported"),
        ('guid("nope")==Type', "Method calls are not supported"),
        ('Contact.ContactID==guid("nope")', "'nope' is not a valid Guid"),
        ('(Type=="ACCPAY"', "')' or operator expected"),
        ("Date > DateTime(2026, 13, 1)", "Invalid DateTime"),
    ],
)
def test_unsupported_or_malformed_where_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(QueryParseError, match=re.escape(message)):
        where(text)


def test_a_doubled_quote_stands_for_one_quote() -> None:
    fields: dict[str, FieldKind] = {"Name": "string"}
    expression = parse_where('Name=="O""Brien"', fields, "Contact")
    assert matches(expression, {"Name": 'O"Brien'})


def test_references_finds_a_field_anywhere_in_the_expression() -> None:
    expression = parse_where('Type=="ACCPAY" AND (AmountDue > 0 OR status=="PAID")', FIELDS, "Invoice")
    assert references(expression, "Status")
    assert not references(expression, "Date")


def test_order_sorts_by_several_keys_with_missing_values_first() -> None:
    keys = parse_order("Status DESC, AmountDue", FIELDS, "Invoice")
    records = [
        bill(Status="PAID", AmountDue=Decimal("5")),
        bill(Status="AUTHORISED", AmountDue=Decimal("9")),
        bill(Status="PAID", AmountDue=None),
        bill(Status="AUTHORISED", AmountDue=Decimal("1")),
    ]

    ordered = sort_records(records, keys, lambda record: record)

    assert [(r["Status"], r["AmountDue"]) for r in ordered] == [
        ("PAID", None),
        ("PAID", Decimal("5")),
        ("AUTHORISED", Decimal("1")),
        ("AUTHORISED", Decimal("9")),
    ]


def test_order_on_an_unknown_field_is_rejected() -> None:
    with pytest.raises(QueryParseError, match="No property or field 'Colour'"):
        parse_order("Colour ASC", FIELDS, "Invoice")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("2026-11-20T08:15:30", datetime(2026, 11, 20, 8, 15, 30, tzinfo=UTC)),
        ("2026-11-20T08:15:30.250", datetime(2026, 11, 20, 8, 15, 30, 250000, tzinfo=UTC)),
        ("2020-02-06T12:17:43.202-08:00", datetime(2020, 2, 6, 20, 17, 43, 202000, tzinfo=UTC)),
        ("2026-11-20T08:15:30Z", datetime(2026, 11, 20, 8, 15, 30, tzinfo=UTC)),
        ("Fri, 20 Nov 2026 08:15:30 GMT", datetime(2026, 11, 20, 8, 15, 30, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_if_modified_since_reads_xeros_offsetless_form_as_utc(header: str | None, expected: datetime | None) -> None:
    assert parse_if_modified_since(header) == expected


@pytest.mark.parametrize(
    ("page", "size", "expected"),
    [
        (None, None, None),
        ("1", None, Page(1, 100)),
        ("3", "50", Page(3, 50)),
        ("1", "5000", Page(1, 1000)),
        ("1", "0", Page(1, 1)),
        ("0", "10", Page(1, 10)),
        (None, "20", Page(1, 20)),
        ("abc", None, None),
    ],
)
def test_paging_defaults_to_100_and_clamps_page_size(page: str | None, size: str | None, expected: Page | None) -> None:
    assert parse_paging(page, size) == expected


def test_page_slice_reports_xeros_pagination_object() -> None:
    shown, pagination = page_slice(list(range(250)), Page(3, 100))
    assert shown == list(range(200, 250))
    assert pagination == {"page": 3, "pageSize": 100, "pageCount": 3, "itemCount": 250}
