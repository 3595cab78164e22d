"""Call budgets in the records table: one item per provider organisation (and one per provider app).

Key design (the rest of the table: storage/records.py):
  budget  PK=BUDGET#<provider>#<organisation id | APP>  SK=BUDGET
          version      grows with every write (writes are conditional on it: optimistic concurrency)
          minute       {bucket start (epoch s): calls granted}  the last minute or so, in 2 s buckets
          day          {bucket start: calls granted}            the last day, in 1 h buckets (Xero)
          batch        {bucket start: batch requests granted}   the last minute (QuickBooks /batch)
          lanes        {holder: lane expires at}                 concurrent callers
          pausedUntil, pauseLimit                                the provider said 429 (or ran out)
          expiresAt    TTL: a budget nobody has used for two days disappears
Every change is one conditional PutItem of the whole (small) item; a refused write returns the stored
item (ReturnValuesOnConditionCheckFailure), so a conflict costs no extra read.
"""

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


@dataclass
class BudgetState:
    """What one budget item holds (see the key design above)."""

    version: int = 0
    minute: dict[int, int] = field(default_factory=dict)
    day: dict[int, int] = field(default_factory=dict)
    batch: dict[int, int] = field(default_factory=dict)
    lanes: dict[str, float] = field(default_factory=dict)
    paused_until: float = 0.0
    pause_limit: str | None = None


class BudgetStore:
    """Reads and conditional writes of budget items; counts its DynamoDB requests (the budget's own cost)."""

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

    def replace(self, provider: Provider, scope: str, state: BudgetState, *, now: float) -> BudgetState | None:
        """Store `state` as the next version if the stored item is still `state.version`; on a conflict
        return what is stored instead (None: written)."""
        self.requests += 1
        try:
            self.client.put_item(
                TableName=self._table_name,
                Item=_item(provider, scope, state, expires_at=int(now) + _UNUSED_FOR_SECONDS),
                ConditionExpression="attribute_not_exists(PK) OR version = :expected",
                ExpressionAttributeValues={":expected": {"N": str(state.version)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            item: Any = error.response.get("Item")
            return _state(item) if item else BudgetState()
        state.version += 1
        return None


def _key(provider: Provider, scope: str) -> dict[str, Any]:
    return {"PK": {"S": f"BUDGET#{provider.value}#{scope}"}, "SK": {"S": "BUDGET"}}


def _counts(value: dict[int, int]) -> dict[str, Any]:
    return {"M": {str(start): {"N": str(count)} for start, count in value.items()}}


def _item(provider: Provider, scope: str, state: BudgetState, *, expires_at: int) -> dict[str, Any]:
    item = {
        **_key(provider, scope),
        "recordType": {"S": "budget"},
        "version": {"N": str(state.version + 1)},
        "minute": _counts(state.minute),
        "day": _counts(state.day),
        "batch": _counts(state.batch),
        "lanes": {"M": {holder: {"N": _number(until)} for holder, until in state.lanes.items()}},
        "pausedUntil": {"N": _number(state.paused_until)},
        "expiresAt": {"N": str(expires_at)},
    }
    if state.pause_limit:
        item["pauseLimit"] = {"S": state.pause_limit}
    return item


def _number(value: float) -> str:
    return str(Decimal(str(round(value, 3))))


def _read_counts(attribute: dict[str, Any] | None) -> dict[int, int]:
    return {int(start): int(count["N"]) for start, count in (attribute or {}).get("M", {}).items()}


def _state(item: dict[str, Any]) -> BudgetState:
    return BudgetState(
        version=int(item["version"]["N"]),
        minute=_read_counts(item.get("minute")),
        day=_read_counts(item.get("day")),
        batch=_read_counts(item.get("batch")),
        lanes={holder: float(until["N"]) for holder, until in item.get("lanes", {}).get("M", {}).items()},
        paused_until=float(item.get("pausedUntil", {}).get("N", "0")),
        pause_limit=item.get("pauseLimit", {}).get("S"),
    )
