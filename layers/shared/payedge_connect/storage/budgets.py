"""Call budgets in the records table: one item per provider organisation (and one per provider app).

Key design (the whole table: storage/__init__.py):
  budget  PK=BUDGET#<provider>#<organisation id | APP>  SK=BUDGET
          m<start>     calls granted in the 2-second bucket starting at <start> (epoch seconds)
          d<start>     calls granted in the hour starting at <start> (Xero's day)
          q<start>     QuickBooks batch requests granted in the 2-second bucket
          l<holder>    when the holder's concurrency lane ends (epoch seconds; it began LANE_SPAN before)
          pausedUntil, pauseLimit   the provider answered 429: nobody calls before then
          expiresAt    TTL: a budget nobody has used for two days disappears
A booking is one conditional ADD: it goes through only if the bucket it adds to holds no more than the
booker saw room for, and answers the whole item either way (ReturnValues ALL_NEW, or
ReturnValuesOnConditionCheckFailure ALL_OLD), so a booker that lost a race learns what won it without a
second request. Buckets may start in the future (a caller books the moment the window has room and
sleeps until then). Aged-out buckets and lanes are removed as bookings go by.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.exceptions import ClientError

from payedge_connect.models import Provider

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

_UNUSED_FOR_SECONDS = 2 * 24 * 3600
APP_SCOPE = "APP"
_PREFIXES = {"m": "minute", "d": "day", "q": "batch"}


@dataclass
class BudgetState:
    """What one budget item holds (see the key design above)."""

    minute: dict[int, int] = field(default_factory=dict)
    day: dict[int, int] = field(default_factory=dict)
    batch: dict[int, int] = field(default_factory=dict)
    lanes: dict[str, float] = field(default_factory=dict)
    paused_until: float = 0.0
    pause_limit: str | None = None


class BudgetStore:
    """Reads and atomic updates of budget items; counts its DynamoDB requests (the budget's own cost)."""

    def __init__(self, table_name: str, *, client: "DynamoDBClient | None" = None) -> None:
        self._table_name = table_name
        self._client = client
        self.requests = 0
        self.lost = 0  # bookings that lost a race (each also a request)

    @property
    def client(self) -> "DynamoDBClient":
        # Built on first use, so tests can wrap construction in moto and nothing connects at import.
        if self._client is None:
            self._client = boto3.client("dynamodb")
        return self._client

    def load(self, provider: Provider, scope: str) -> BudgetState:
        self.requests += 1
        item = self.client.get_item(TableName=self._table_name, Key=_key(provider, scope), ConsistentRead=True).get(
            "Item"
        )
        return _state(item) if item else BudgetState()

    def add(
        self,
        provider: Provider,
        scope: str,
        counts: Mapping[str, int],
        *,
        now: float,
        free_lane: str | None = None,
    ) -> BudgetState:
        """Add `counts` ({attribute: calls}, negative to give back) atomically, free a holder's lane;
        answers the item as it is after."""
        update = _Update(now)
        update.add(counts)
        if free_lane is not None:
            update.remove([f"l{free_lane}"])
        return _state(self._update(provider, scope, update, returns="ALL_NEW") or {})

    def book(
        self,
        provider: Provider,
        scope: str,
        counts: Mapping[str, int],
        *,
        ceilings: Mapping[str, int],
        starts: float,
        now: float,
        lane: tuple[str, float] | None = None,
        aged_out: Iterable[str] = (),
    ) -> tuple[bool, BudgetState]:
        """Add `counts` if no bucket of `ceilings` holds more than its ceiling and no pause lasts past
        `starts`; set the holder's lane; remove the named aged-out attributes. Answers whether it was
        booked and the item as it is after (booked) or as it was (not booked), in one request."""
        update = _Update(now)
        update.add(counts)
        if lane is not None:
            update.set(f"l{lane[0]}", lane[1])
        update.remove([name for name in aged_out if name not in counts and name != (f"l{lane[0]}" if lane else "")])
        for index, (name, ceiling) in enumerate(ceilings.items()):
            update.names[f"#c{index}"], update.values[f":c{index}"] = name, {"N": str(ceiling)}
            update.conditions.append(f"(attribute_not_exists(#c{index}) OR #c{index} <= :c{index})")
        update.values[":starts"] = {"N": _number(starts)}
        update.conditions.append("(attribute_not_exists(pausedUntil) OR pausedUntil <= :starts)")
        try:
            return True, _state(self._update(provider, scope, update, returns="ALL_NEW") or {})
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            self.lost += 1
            return False, _state(cast(dict[str, Any], error.response).get("Item", {}))

    def _update(self, provider: Provider, scope: str, update: "_Update", *, returns: str) -> dict[str, Any] | None:
        self.requests += 1
        arguments: dict[str, Any] = {
            "TableName": self._table_name,
            "Key": _key(provider, scope),
            "UpdateExpression": update.expression(),
            "ExpressionAttributeNames": update.names,
            "ExpressionAttributeValues": update.values,
            "ReturnValues": returns,
        }
        if update.conditions:
            arguments["ConditionExpression"] = " AND ".join(update.conditions)
            arguments["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        return self.client.update_item(**arguments).get("Attributes")

    def pause(self, provider: Provider, scope: str, *, until: float, limit: str, now: float) -> None:
        """Nobody calls before `until` (a later pause already stored stands)."""
        self.requests += 1
        try:
            self.client.update_item(
                TableName=self._table_name,
                Key=_key(provider, scope),
                UpdateExpression="SET pausedUntil = :until, pauseLimit = :limit, expiresAt = :ttl",
                ConditionExpression="attribute_not_exists(pausedUntil) OR pausedUntil < :until",
                ExpressionAttributeValues={
                    ":until": {"N": _number(until)},
                    ":limit": {"S": limit},
                    ":ttl": {"N": str(int(now) + _UNUSED_FOR_SECONDS)},
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise


class _Update:
    """An UpdateExpression being built: every update refreshes the item's TTL."""

    def __init__(self, now: float) -> None:
        self.names: dict[str, str] = {"#ttl": "expiresAt"}
        self.values: dict[str, Any] = {":ttl": {"N": str(int(now) + _UNUSED_FOR_SECONDS)}}
        self.sets = ["#ttl = :ttl"]
        self.adds: list[str] = []
        self.removes: list[str] = []
        self.conditions: list[str] = []

    def add(self, counts: Mapping[str, int]) -> None:
        for name, count in counts.items():
            index = len(self.names)
            self.names[f"#a{index}"], self.values[f":a{index}"] = name, {"N": str(count)}
            self.adds.append(f"#a{index} :a{index}")

    def set(self, name: str, value: float) -> None:
        index = len(self.names)
        self.names[f"#s{index}"], self.values[f":s{index}"] = name, {"N": _number(value)}
        self.sets.append(f"#s{index} = :s{index}")

    def remove(self, names: Iterable[str]) -> None:
        for name in names:
            index = len(self.names)
            self.names[f"#r{index}"] = name
            self.removes.append(f"#r{index}")

    def expression(self) -> str:
        expression = "SET " + ", ".join(self.sets)
        if self.adds:
            expression += " ADD " + ", ".join(self.adds)
        if self.removes:
            expression += " REMOVE " + ", ".join(self.removes)
        return expression


def _key(provider: Provider, scope: str) -> dict[str, Any]:
    return {"PK": {"S": f"BUDGET#{provider.value}#{scope}"}, "SK": {"S": "BUDGET"}}


def _number(value: float) -> str:
    return str(Decimal(str(round(value, 3))))


def _state(item: dict[str, Any]) -> BudgetState:
    state = BudgetState(
        paused_until=float(item.get("pausedUntil", {}).get("N", "0")),
        pause_limit=item.get("pauseLimit", {}).get("S"),
    )
    for name, value in item.items():
        prefix, rest = name[:1], name[1:]
        if prefix == "l" and "N" in value:
            state.lanes[rest] = float(value["N"])
        elif prefix in _PREFIXES and rest.isdigit():
            count = int(value["N"])
            if count:
                getattr(state, _PREFIXES[prefix])[int(rest)] = count
    return state
