"""Call budgets in the records table: one item per provider organisation (and one per provider app).

Key design (the rest of the table: storage/records.py):
  budget  PK=BUDGET#<provider>#<organisation id | APP>  SK=BUDGET
          m<start>     calls granted in the 2-second bucket starting at <start> (epoch seconds)
          d<start>     calls granted in the hour starting at <start> (Xero's day)
          q<start>     QuickBooks batch requests granted in the 2-second bucket
          l<holder>    when the holder's concurrency lane expires (epoch seconds)
          pausedUntil, pauseLimit   the provider answered 429: nobody calls before then
          expiresAt    TTL: a budget nobody has used for two days disappears
A grant is one atomic ADD that answers the whole item as it is after it (ReturnValues ALL_NEW): the
caller counts the window itself and, when the grant went over, gives the excess back with a second
ADD. Concurrent callers never conflict; aged-out buckets and lanes are removed as grants go by.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

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
        lane: tuple[str, float] | None = None,
        free_lane: str | None = None,
        aged_out: Iterable[str] = (),
    ) -> BudgetState:
        """Add `counts` ({attribute: calls}, negative to give back) atomically, set or free a holder's
        lane, remove the named aged-out attributes; answers the item as it is after."""
        names: dict[str, str] = {"#ttl": "expiresAt"}
        values: dict[str, Any] = {":ttl": {"N": str(int(now) + _UNUSED_FOR_SECONDS)}}
        sets, adds = ["#ttl = :ttl"], []
        for index, (name, count) in enumerate(counts.items()):
            names[f"#a{index}"], values[f":a{index}"] = name, {"N": str(count)}
            adds.append(f"#a{index} :a{index}")
        if lane is not None:
            names["#lane"], values[":lane"] = f"l{lane[0]}", {"N": _number(lane[1])}
            sets.append("#lane = :lane")
        removed = [name for name in aged_out if name not in counts and name != names.get("#lane")]
        if free_lane is not None:
            removed.append(f"l{free_lane}")
        for index, name in enumerate(removed):
            names[f"#r{index}"] = name
        expression = "SET " + ", ".join(sets)
        if adds:
            expression += " ADD " + ", ".join(adds)
        if removed:
            expression += " REMOVE " + ", ".join(f"#r{index}" for index in range(len(removed)))
        self.requests += 1
        response = self.client.update_item(
            TableName=self._table_name,
            Key=_key(provider, scope),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        return _state(response.get("Attributes", {}))

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
