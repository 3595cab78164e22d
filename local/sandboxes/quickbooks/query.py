"""The QuickBooks Online query language: a tokenizer, a parser and an evaluator over entity JSON.

Grammar (Intuit "data queries"): `SELECT * | COUNT(*) FROM <Entity> [WHERE <cond> [AND <cond>]...]
[ORDERBY <field> [ASC|DESC] [, ...]] [STARTPOSITION <n>] [MAXRESULTS <n>]`, where `<cond>` is
`<field> <op> <value>` with op one of = < > <= >= LIKE, or `<field> IN (<value>, ...)`. There is no
OR, no GROUP BY, no JOIN and no projection; LIKE knows only the '%' wildcard. Keywords are
case-insensitive; fields may be dotted (`MetaData.LastUpdatedTime`, `AttachableRef.EntityRef.Type`).
Errors carry Intuit's codes: 4000 "Error parsing query" (QueryParserError) and 4001 "Invalid query"
(QueryValidationError).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_RESULTS_LIMIT = 1000
# Intuit staff on the .NET SDK tracker: "Default maxresults for any query is 100".
DEFAULT_MAX_RESULTS = 100

_KEYWORDS = frozenset(
    {
        "select",
        "count",
        "from",
        "where",
        "and",
        "or",
        "in",
        "like",
        "orderby",
        "order",
        "by",
        "asc",
        "desc",
        "startposition",
        "maxresults",
        "true",
        "false",
    }
)
_COMPARISONS = ("<=", ">=", "=", "<", ">")


class QueryError(Exception):
    """A query Intuit would refuse: `code`, `message` and `detail` go into the Fault's Error."""

    def __init__(self, code: str, message: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.message = message
        self.detail = detail


def _parser_error(detail: str) -> QueryError:
    return QueryError("4000", "Error parsing query", f"QueryParserError: {detail}")


def _validation_error(detail: str) -> QueryError:
    return QueryError("4001", "Invalid query", f"QueryValidationError: {detail}")


@dataclass(frozen=True)
class Token:
    kind: str  # "ident", "keyword", "string", "number", "op", "(", ")", ",", "*", "eof"
    text: str
    column: int  # 1-based, as JavaCC reports it


@dataclass(frozen=True)
class Condition:
    path: tuple[str, ...]
    operator: str  # "=", "<", ">", "<=", ">=", "IN" or "LIKE"
    values: tuple[str | bool | Decimal, ...]


@dataclass(frozen=True)
class OrderKey:
    path: tuple[str, ...]
    descending: bool


@dataclass(frozen=True)
class Query:
    entity: str
    count_only: bool
    conditions: tuple[Condition, ...]
    order_by: tuple[OrderKey, ...]
    start_position: int
    max_results: int


# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        char = text[position]
        column = position + 1
        if char.isspace():
            position += 1
            continue
        if char == "'":
            value, position = _read_string(text, position)
            tokens.append(Token("string", value, column))
            continue
        if char in "(),*":
            tokens.append(Token(char, char, column))
            position += 1
            continue
        operator = next((op for op in _COMPARISONS if text.startswith(op, position)), None)
        if operator is not None:
            tokens.append(Token("op", operator, column))
            position += len(operator)
            continue
        number = _NUMBER.match(text, position)
        if number is not None:
            tokens.append(Token("number", number.group(), column))
            position = number.end()
            continue
        ident = _IDENT.match(text, position)
        if ident is not None:
            word = ident.group()
            kind = "keyword" if word.lower() in _KEYWORDS else "ident"
            tokens.append(Token(kind, word, column))
            position = ident.end()
            continue
        raise _parser_error(
            f"Invalid content. Lexical error at line 1, column {column}.  "
            f'Encountered: "{char}" ({ord(char)}), after : ""'
        )
    tokens.append(Token("eof", "", len(text) + 1))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    """A quoted literal starting at `start`; a quote inside is written \\' (Intuit's escape)."""
    chars: list[str] = []
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == "\\" and position + 1 < len(text):
            chars.append(text[position + 1])
            position += 2
            continue
        if char == "'":
            return "".join(chars), position + 1
        chars.append(char)
        position += 1
    raise _parser_error(
        f"Invalid content. Lexical error at line 1, column {len(text) + 1}.  "
        f'Encountered: <EOF> after : "\'{"".join(chars)}"'
    )


# ----------------------------------------------------------------------------------------------
# Parser
# ----------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._index = 0

    def _peek(self) -> Token:
        return self._tokens[self._index]

    def _next(self) -> Token:
        token = self._tokens[self._index]
        if token.kind != "eof":
            self._index += 1
        return token

    def _is_keyword(self, token: Token, *words: str) -> bool:
        return token.kind == "keyword" and token.text.lower() in words

    def _unexpected(self, token: Token, expected: Sequence[str]) -> QueryError:
        if token.kind == "eof":
            seen = '"<EOF>"'
        elif token.kind == "keyword":
            seen = f'" <{token.text.upper()}> "{token.text} ""'
        elif token.kind == "ident":
            seen = f'" <IDENTIFIER> "{token.text} ""'
        else:
            seen = f'" "{token.text}" "{token.text} ""'
        wanted = "".join(f"\n    {item} ..." for item in expected)
        return _parser_error(f"Encountered {seen} at line 1, column {token.column}.\nWas expecting one of:{wanted}")

    def _expect_keyword(self, word: str) -> Token:
        token = self._next()
        if not self._is_keyword(token, word):
            raise self._unexpected(token, [f'"{word}"'])
        return token

    def _expect(self, kind: str) -> Token:
        token = self._next()
        if token.kind != kind:
            raise self._unexpected(token, [f'"{kind}"'])
        return token

    def parse(self) -> Query:
        if self._peek().kind == "eof":
            raise _parser_error('Encountered "<EOF>" at line 0, column 0.\nWas expecting:\n    "select" ...')
        self._expect_keyword("select")
        count_only = self._projection()
        self._expect_keyword("from")
        entity_token = self._next()
        if entity_token.kind != "ident":
            raise self._unexpected(entity_token, ["<IDENTIFIER>"])
        conditions = self._where()
        order_by = self._order_by()
        start_position, max_results = self._paging()
        end = self._peek()
        if end.kind != "eof":
            raise self._unexpected(end, ["<EOF>", '"and"', '"orderby"', '"startposition"', '"maxresults"'])
        return Query(
            entity=entity_token.text,
            count_only=count_only,
            conditions=conditions,
            order_by=order_by,
            start_position=start_position,
            max_results=max_results,
        )

    def _projection(self) -> bool:
        """True for COUNT(*), False for *; projections are not supported (all properties come back)."""
        if self._is_keyword(self._peek(), "count"):
            self._next()
            self._expect("(")
            self._expect("*")
            self._expect(")")
            return True
        if self._peek().kind != "*":
            raise self._unexpected(self._peek(), ['"*"', '"count"'])
        self._next()
        return False

    def _where(self) -> tuple[Condition, ...]:
        if not self._is_keyword(self._peek(), "where"):
            return ()
        self._next()
        conditions = [self._condition()]
        while self._is_keyword(self._peek(), "and"):
            self._next()
            conditions.append(self._condition())
        return tuple(conditions)

    def _order_by(self) -> tuple[OrderKey, ...]:
        if not self._is_keyword(self._peek(), "orderby", "order"):
            return ()
        if self._next().text.lower() == "order":
            self._expect_keyword("by")
        keys = [self._order_key()]
        while self._peek().kind == ",":
            self._next()
            keys.append(self._order_key())
        return tuple(keys)

    def _paging(self) -> tuple[int, int]:
        start_position, max_results = 1, DEFAULT_MAX_RESULTS
        if self._is_keyword(self._peek(), "startposition"):
            self._next()
            start_position = max(1, self._integer())  # Intuit treats STARTPOSITION 0 as the first row
        if self._is_keyword(self._peek(), "maxresults"):
            self._next()
            max_results = self._integer()
            if max_results > MAX_RESULTS_LIMIT:
                raise _validation_error(f"value {max_results} is too large. Max allowed value is {MAX_RESULTS_LIMIT}")
        return start_position, max_results

    def _field(self) -> tuple[str, ...]:
        token = self._next()
        if token.kind != "ident":
            raise self._unexpected(token, ["<IDENTIFIER>"])
        return tuple(token.text.split("."))

    def _value(self) -> str | bool | Decimal:
        token = self._next()
        if token.kind == "string":
            return token.text
        if token.kind == "number":
            return Decimal(token.text)
        if self._is_keyword(token, "true", "false"):
            return token.text.lower() == "true"
        raise self._unexpected(token, ["<STRING>", "<NUMBER>", '"true"', '"false"'])

    def _condition(self) -> Condition:
        path = self._field()
        token = self._next()
        if self._is_keyword(token, "in"):
            self._expect("(")
            values = [self._value()]
            while self._peek().kind == ",":
                self._next()
                values.append(self._value())
            self._expect(")")
            return Condition(path, "IN", tuple(values))
        if self._is_keyword(token, "like"):
            value = self._value()
            if not isinstance(value, str):
                raise _validation_error("LIKE needs a quoted value")
            return Condition(path, "LIKE", (value,))
        if token.kind == "op":
            return Condition(path, token.text, (self._value(),))
        raise self._unexpected(token, ['"="', '"<"', '">"', '"<="', '">="', '"in"', '"like"'])

    def _order_key(self) -> OrderKey:
        path = self._field()
        descending = False
        if self._is_keyword(self._peek(), "asc", "desc"):
            descending = self._next().text.lower() == "desc"
        return OrderKey(path, descending)

    def _integer(self) -> int:
        token = self._next()
        if token.kind != "number" or not token.text.lstrip("-").isdigit():
            raise self._unexpected(token, ["<INTEGER>"])
        return int(token.text)


def parse_query(text: str) -> Query:
    """The parsed query, or QueryError (code 4000/4001) as Intuit's parser would answer."""
    return _Parser(tokenize(text.strip())).parse()


# ----------------------------------------------------------------------------------------------
# Evaluation over entity JSON
# ----------------------------------------------------------------------------------------------


def resolve(entity: Mapping[str, object], path: Sequence[str]) -> list[object]:
    """Leaf values at `path`; names match case-insensitively, lists fan out, and a reference
    (`{"value": ..., "name": ...}`) compares by its value."""
    current: list[object] = [entity]
    for name in path:
        found: list[object] = []
        for node in current:
            for item in node if isinstance(node, list) else [node]:
                if not isinstance(item, Mapping):
                    continue
                key = next((k for k in item if isinstance(k, str) and k.lower() == name.lower()), None)
                if key is not None:
                    found.append(item[key])
        current = found
    leaves: list[object] = []
    for node in current:
        for item in node if isinstance(node, list) else [node]:
            leaves.append(item["value"] if isinstance(item, Mapping) and "value" in item else item)
    return leaves


def _as_datetime(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    # Choice: a datetime literal without offset is read as UTC (Intuit reads it in the company's zone).
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _comparable(actual: object, literal: str | bool | Decimal) -> tuple[object, object] | None:
    """The pair to compare, typed after the entity's own value; None when they cannot compare."""
    if isinstance(actual, bool):
        return _comparable_bool(actual, literal)
    if isinstance(actual, int | Decimal):
        try:
            return Decimal(actual), Decimal(str(literal))
        except InvalidOperation:
            return None
    if isinstance(actual, str):
        return _comparable_text(actual, str(literal).lower() if isinstance(literal, bool) else str(literal))
    return None


def _comparable_bool(actual: bool, literal: str | bool | Decimal) -> tuple[object, object] | None:
    if isinstance(literal, bool):
        return actual, literal
    if isinstance(literal, str) and literal.lower() in ("true", "false"):
        return actual, literal.lower() == "true"
    return None


def _comparable_text(actual: str, text: str) -> tuple[object, object]:
    if actual.isdigit() and text.isdigit():
        return int(actual), int(text)  # Ids are numeric strings: '9' < '10'
    if "T" in actual:
        actual_time, literal_time = _as_datetime(actual), _as_datetime(text)
        if actual_time is not None and literal_time is not None:
            return actual_time, literal_time
    if _is_date(actual) and _is_date(text[:10]):
        return actual, text[:10]
    # Choice: text compares case-insensitively, like QBO's name searches.
    return actual.lower(), text.lower()


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def _like(actual: object, pattern: str) -> bool:
    if not isinstance(actual, str):
        return False
    regex = ".*".join(re.escape(part) for part in pattern.split("%"))
    return re.fullmatch(regex, actual, flags=re.IGNORECASE | re.DOTALL) is not None


def _compare(left: object, right: object, operator: str) -> bool:
    if operator == "=":
        return left == right
    try:
        if operator == "<":
            return left < right  # type: ignore[operator]
        if operator == ">":
            return left > right  # type: ignore[operator]
        if operator == "<=":
            return left <= right  # type: ignore[operator]
        if operator == ">=":
            return left >= right  # type: ignore[operator]
    except TypeError:
        return False
    raise ValueError(f"unknown operator {operator}")


def matches(entity: Mapping[str, object], condition: Condition) -> bool:
    for actual in resolve(entity, condition.path):
        if condition.operator == "LIKE":
            if _like(actual, str(condition.values[0])):
                return True
            continue
        operator = "=" if condition.operator == "IN" else condition.operator
        for literal in condition.values:
            pair = _comparable(actual, literal)
            if pair is not None and _compare(pair[0], pair[1], operator):
                return True
    return False


def _sort_value(entity: Mapping[str, object], key: OrderKey) -> tuple[int, object]:
    values = resolve(entity, key.path)
    if not values or values[0] is None:
        return (1, "")
    value = values[0]
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int | Decimal):
        return (0, Decimal(value))
    if isinstance(value, str) and key.path[-1].lower() == "id" and value.isdigit():
        return (0, Decimal(value))
    if isinstance(value, str) and "T" in value and _as_datetime(value) is not None:
        return (0, _as_datetime(value))
    return (0, str(value).lower())


def _present_sort_value(entity: Mapping[str, object], key: OrderKey) -> Any:
    return _sort_value(entity, key)[1]


def _numeric_id(entity: Mapping[str, object]) -> int:
    raw = entity.get("Id")
    return int(raw) if isinstance(raw, str) and raw.isdigit() else 0


def check_fields(query: Query, queryable: Iterable[str]) -> None:
    """QueryValidationError when a WHERE or ORDERBY names a property the entity does not have."""
    known = {name.lower() for name in queryable}
    for path in [c.path for c in query.conditions] + [k.path for k in query.order_by]:
        if path[0].lower() not in known:
            raise _validation_error(f"property '{path[0]}' is not queryable")


def select(entities: Iterable[Mapping[str, object]], query: Query) -> tuple[list[Mapping[str, object]], int]:
    """The page the query asks for, and how many entities matched in all."""
    found = [entity for entity in entities if all(matches(entity, c) for c in query.conditions)]
    # Default order is by Id so pages are stable; later keys are applied first (stable sort).
    found.sort(key=_numeric_id)
    for key in reversed(query.order_by):
        present = [e for e in found if _sort_value(e, key)[0] == 0]
        missing = [e for e in found if _sort_value(e, key)[0] == 1]
        present.sort(key=functools.partial(_present_sort_value, key=key), reverse=key.descending)
        found = present + missing
    start = query.start_position - 1
    return found[start : start + query.max_results], len(found)
