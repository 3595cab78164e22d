"""Xero's list-query parameters: the `where` filter, `order`, `If-Modified-Since` and paging.

The `where` language is a small subset of the .NET Dynamic LINQ that Xero evaluates: comparisons of
a field path with a literal, joined with AND/OR and grouped by parentheses. Literals are strings in
double quotes, `guid("...")`, numbers, `true`/`false` and `DateTime(y, m, d[, h, mi, s])`. Anything
else is rejected with the QueryParseException Xero answers with.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Literal

FieldKind = Literal["string", "guid", "number", "bool", "date", "datetime"]
FieldValue = str | Decimal | bool | date | datetime | None

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class QueryParseError(Exception):
    """A `where` or `order` expression Xero would reject (400 QueryParseException)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---- tokens -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: Literal["name", "string", "number", "op", "lparen", "rparen", "comma", "end"]
    text: str
    at: int


_OPERATORS = ("==", "!=", ">=", "<=", "&&", "||", "=", ">", "<")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char.isspace():
            index += 1
            continue
        if char == '"':
            value, index = _read_string(text, index)
            tokens.append(_Token("string", value, index))
            continue
        if char in "(),":
            kind: Literal["lparen", "rparen", "comma"] = (
                "lparen" if char == "(" else "rparen" if char == ")" else "comma"
            )
            tokens.append(_Token(kind, char, index))
            index += 1
            continue
        operator = next((op for op in _OPERATORS if text.startswith(op, index)), None)
        if operator is not None:
            tokens.append(_Token("op", operator, index))
            index += len(operator)
            continue
        number = _NUMBER.match(text, index)
        if number is not None:
            tokens.append(_Token("number", number.group(), index))
            index = number.end()
            continue
        name = _NAME.match(text, index)
        if name is not None:
            tokens.append(_Token("name", name.group(), index))
            index = name.end()
            continue
        raise QueryParseError(f"Syntax error '{char}' (at index {index})")
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    """The literal starting at the quote `start`; a doubled quote stands for one quote (Dynamic LINQ)."""
    chars: list[str] = []
    index = start + 1
    while index < len(text):
        if text[index] == '"':
            if text.startswith('""', index):
                chars.append('"')
                index += 2
                continue
            return "".join(chars), index + 1
        chars.append(text[index])
        index += 1
    raise QueryParseError(f"Unterminated string literal (at index {start})")


# ---- expressions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operand:
    kind: FieldKind
    value: str | Decimal | bool | datetime


@dataclass(frozen=True)
class Comparison:
    path: str
    operator: str  # one of == != > >= < <=
    literal: Operand


@dataclass(frozen=True)
class Junction:
    operator: Literal["AND", "OR"]
    left: Expression
    right: Expression


Expression = Comparison | Junction

_KIND_NAMES: dict[FieldKind, str] = {
    "string": "String",
    "guid": "Guid",
    "number": "Decimal",
    "bool": "Boolean",
    "date": "DateTime",
    "datetime": "DateTime",
}
_ORDERING = (">", ">=", "<", "<=")


class _Parser:
    def __init__(self, text: str, fields: Mapping[str, FieldKind], type_name: str) -> None:
        self._tokens = _tokenize(text)
        self._position = 0
        self._fields = fields
        self._type_name = type_name

    def parse(self) -> Expression:
        expression = self._disjunction()
        token = self._peek()
        if token.kind != "end":
            raise QueryParseError(f"Syntax error (at index {token.at})")
        return expression

    def _peek(self) -> _Token:
        return self._tokens[self._position]

    def _next(self) -> _Token:
        token = self._tokens[self._position]
        self._position += 1
        return token

    def _expect(self, kind: str, what: str) -> _Token:
        token = self._next()
        if token.kind != kind:
            raise QueryParseError(f"{what} expected (at index {token.at})")
        return token

    def _is_keyword(self, token: _Token, symbol: str, word: str) -> bool:
        return (token.kind == "op" and token.text == symbol) or (token.kind == "name" and token.text.upper() == word)

    def _disjunction(self) -> Expression:
        left = self._conjunction()
        while self._is_keyword(self._peek(), "||", "OR"):
            self._next()
            left = Junction("OR", left, self._conjunction())
        return left

    def _conjunction(self) -> Expression:
        left = self._primary()
        while self._is_keyword(self._peek(), "&&", "AND"):
            self._next()
            left = Junction("AND", left, self._primary())
        return left

    def _primary(self) -> Expression:
        token = self._peek()
        if token.kind == "lparen":
            self._next()
            inner = self._disjunction()
            self._expect("rparen", "')' or operator")
            return inner
        if token.kind != "name":
            raise QueryParseError(f"Expression expected (at index {token.at})")
        return self._comparison()

    def _comparison(self) -> Comparison:
        name = self._next()
        if self._peek().kind == "lparen":
            raise QueryParseError(f"Method calls are not supported in this filter (at index {name.at})")
        kind = self._field_kind(name.text)
        operator = self._next()
        if operator.kind != "op" or operator.text in ("&&", "||"):
            raise QueryParseError(f"Comparison operator expected (at index {operator.at})")
        symbol = "==" if operator.text == "=" else operator.text
        literal = self._literal()
        kinds_match = literal.kind == kind or (kind == "date" and literal.kind == "datetime")
        if not kinds_match or (symbol in _ORDERING and kind in ("string", "guid", "bool")):
            raise QueryParseError(
                f"Operator '{symbol}' incompatible with operand types "
                f"'{_KIND_NAMES[kind]}' and '{_KIND_NAMES[literal.kind]}'"
            )
        return Comparison(name.text, symbol, literal)

    def _field_kind(self, path: str) -> FieldKind:
        for known, kind in self._fields.items():
            if known.lower() == path.lower():
                return kind
        raise QueryParseError(f"No property or field '{path}' exists in type '{self._type_name}'")

    def _literal(self) -> Operand:
        token = self._next()
        if token.kind == "string":
            return Operand("string", token.text)
        if token.kind == "number":
            return Operand("number", Decimal(token.text))
        if token.kind == "name" and token.text.lower() in ("true", "false"):
            return Operand("bool", token.text.lower() == "true")
        if token.kind == "name" and token.text.lower() == "guid":
            self._expect("lparen", "'('")
            text = self._expect("string", "String literal").text
            self._expect("rparen", "')'")
            try:
                return Operand("guid", str(uuid.UUID(text)))
            except ValueError as exc:
                raise QueryParseError(f"'{text}' is not a valid Guid") from exc
        if token.kind == "name" and token.text == "DateTime":
            return Operand("datetime", self._datetime_arguments())
        raise QueryParseError(f"Expression expected (at index {token.at})")

    def _datetime_arguments(self) -> datetime:
        self._expect("lparen", "'('")
        parts = [int(self._expect("number", "Number").text)]
        while self._peek().kind == "comma":
            self._next()
            parts.append(int(self._expect("number", "Number").text))
        self._expect("rparen", "')'")
        if len(parts) not in (3, 6):
            raise QueryParseError("DateTime takes (year, month, day) or (year, month, day, hour, minute, second)")
        year, month, day, hour, minute, second = (*parts, 0, 0, 0)[:6]
        try:
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError as exc:
            raise QueryParseError(f"Invalid DateTime: {exc}") from exc


def parse_where(text: str, fields: Mapping[str, FieldKind], type_name: str) -> Expression:
    """Parse a `where` filter over `fields` (path -> kind) of the Xero type `type_name`."""
    return _Parser(text, fields, type_name).parse()


def references(expression: Expression, path: str) -> bool:
    """Whether the expression compares the field `path` anywhere."""
    if isinstance(expression, Comparison):
        return expression.path.lower() == path.lower()
    return references(expression.left, path) or references(expression.right, path)


def matches(expression: Expression, record: Mapping[str, FieldValue]) -> bool:
    """Evaluate the filter against one record's field values (keys as declared in `fields`)."""
    if isinstance(expression, Junction):
        if expression.operator == "AND":
            return matches(expression.left, record) and matches(expression.right, record)
        return matches(expression.left, record) or matches(expression.right, record)
    value = _lookup(record, expression.path)
    return _compare(value, expression.operator, expression.literal)


def _lookup(record: Mapping[str, FieldValue], path: str) -> FieldValue:
    if path in record:
        return record[path]
    lowered = path.lower()
    return next((value for key, value in record.items() if key.lower() == lowered), None)


def _compare(value: FieldValue, operator: str, literal: Operand) -> bool:
    expected: object = literal.value
    actual: object = value
    if literal.kind == "guid" and isinstance(value, str):
        actual = value.lower()
    if isinstance(value, date) and not isinstance(value, datetime):
        actual = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if operator == "==":
        return actual == expected
    if operator == "!=":
        return actual != expected
    if actual is None:
        return False
    comparisons: dict[str, Callable[[object, object], bool]] = {
        ">": lambda a, b: a > b,  # type: ignore[operator]
        ">=": lambda a, b: a >= b,  # type: ignore[operator]
        "<": lambda a, b: a < b,  # type: ignore[operator]
        "<=": lambda a, b: a <= b,  # type: ignore[operator]
    }
    return comparisons[operator](actual, expected)


# ---- order --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    path: str
    descending: bool


def parse_order(text: str, fields: Mapping[str, FieldKind], type_name: str) -> list[SortKey]:
    """`order=UpdatedDateUTC DESC, InvoiceNumber` as sort keys; unknown fields are rejected."""
    keys: list[SortKey] = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2:
            raise QueryParseError(f"Invalid order clause '{part.strip()}'")
        direction = words[1].upper() if len(words) == 2 else "ASC"
        if direction not in ("ASC", "DESC"):
            raise QueryParseError(f"Invalid order direction '{words[1]}'")
        path = next((known for known in fields if known.lower() == words[0].lower()), None)
        if path is None:
            raise QueryParseError(f"No property or field '{words[0]}' exists in type '{type_name}'")
        keys.append(SortKey(path, direction == "DESC"))
    return keys


def sort_records[T](
    records: Sequence[T], keys: Sequence[SortKey], fields_of: Callable[[T], Mapping[str, FieldValue]]
) -> list[T]:
    """Stable multi-key sort; a missing value sorts before any present one (ascending)."""
    ordered = list(records)
    for key in reversed(keys):
        ordered.sort(key=lambda record: _sortable(fields_of(record).get(key.path)), reverse=key.descending)
    return ordered


def _sortable(value: FieldValue) -> tuple[int, object]:
    if value is None:
        return (0, "")
    if isinstance(value, str):
        return (1, value.lower())
    if isinstance(value, date) and not isinstance(value, datetime):
        return (1, datetime(value.year, value.month, value.day, tzinfo=UTC))
    return (1, value)


# ---- If-Modified-Since --------------------------------------------------------------------------


def parse_if_modified_since(header: str | None) -> datetime | None:
    """The instant in an If-Modified-Since header, or None when absent or unreadable.

    Xero documents `yyyy-mm-ddThh:mm:ss` without an offset (read as UTC); an ISO offset and the
    HTTP-date form are accepted too. An unreadable value is ignored, as HTTP says of this header.
    """
    if not header or not header.strip():
        return None
    text = header.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


# ---- paging -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    number: int
    size: int


def parse_paging(page: str | None, page_size: str | None, *, force: bool = False) -> Page | None:
    """The page asked for, or None for an unpaged list.

    `pageSize` outside 1..1000 is clamped rather than rejected (Xero adjusts it: pageSize=5000 gives
    1000 items); a `pageSize` without `page` means page 1.
    """
    number = _int_or_none(page)
    size = _int_or_none(page_size)
    if number is None and size is None and not force:
        return None
    return Page(
        number=max(1, number if number is not None else 1),
        size=min(MAX_PAGE_SIZE, max(1, size if size is not None else DEFAULT_PAGE_SIZE)),
    )


def _int_or_none(text: str | None) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        return int(Decimal(text.strip()))
    except (InvalidOperation, ValueError):
        return None


def page_slice[T](records: Sequence[T], page: Page) -> tuple[list[T], dict[str, int]]:
    """The records on `page` and Xero's `pagination` object for the whole result."""
    start = (page.number - 1) * page.size
    pagination = {
        "page": page.number,
        "pageSize": page.size,
        "pageCount": math.ceil(len(records) / page.size),
        "itemCount": len(records),
    }
    return list(records[start : start + page.size]), pagination
