"""The records table (DynamoDB): the only code that reads or writes it. One store per aggregate, each
module with its part of the key design at its top; this is the whole table.

Key design (one table):
  connections.py     connection   PK=CONNECTION#<id>  SK=CONNECTION
                                  GSI1PK=BUSINESS#<businessId>  GSI1SK=CONNECTION#<createdAt>#<id>
                                  GSI2PK=CONNECTIONS#<status>#<shard>  GSI2SK=<nextSyncDueAt>#<id>
                     tenant       PK=TENANT#<provider>#<tenantId>  SK=CONNECTION#<id>
                     oauth state  PK=OAUTH_STATE#<sha256(state)>  SK=OAUTH_STATE            (single use, TTL)
                     completion   PK=OAUTH_COMPLETION#<sha256(code)>  SK=OAUTH_COMPLETION   (single use, TTL)
  payables.py        payable      PK=CONNECTION#<id>  SK=PAYABLE#<billId>          (closed: TTL, retention)
                                  GSI2PK=CONNECTION#<id>#PAYABLE#<status>  GSI2SK=<dueDate>#<billId>
                     vendor       PK=CONNECTION#<id>  SK=VENDOR#<vendorId>
                                  GSI2PK=CONNECTION#<id>#VENDORS#<ATTENTION|CLEAR>  GSI2SK=<name>#<vendorId>
                     counts       PK=CONNECTION#<id>  SK=SYNC#COUNTS  (open bills, vendors needing attention)
  syncs.py           sync run     PK=CONNECTION#<id>  SK=SYNCRUN#<syncRunId>       (TTL: sync-run retention)
                     seen page    PK=CONNECTION#<id>  SK=SYNCRUN#<syncRunId>#SEEN#<page>           (TTL)
                     sync slot    PK=CONNECTION#<id>  SK=SYNC#ACTIVE  (the one requested-or-running sync)
                                  GSI3PK=INFLIGHT#<shard>  GSI3SK=<claimedAt>#SYNC#ACTIVE    (while held)
                     sync state   PK=CONNECTION#<id>  SK=SYNC#STATE   (watermark, last full reconciliation)
                     webhook      PK=WEBHOOK#<provider>  SK=EVENT#<sha256 of the event's identity>  (TTL)
  payment_orders.py  payment      PK=CONNECTION#<id>  SK=PAYMENT#<paymentOrderNumber>     (never expires)
                                  GSI2PK=CONNECTION#<id>#PAYMENTS#<status>  GSI2SK=<createdAt>#<number>
                                  GSI3PK=INFLIGHT#<shard>  GSI3SK=<updatedAt>#PAYMENT#<number>
                                  (only while received, posting or reversing)
                     number       PK=BUSINESS#<businessId>  SK=PAYMENT#<paymentOrderNumber>
  leases.py          lease        PK=CONNECTION#<id>  SK=LEASE#<name>         (one holder at a time, TTL)
  budgets.py         budget       PK=BUDGET#<provider>#<organisation|APP>  SK=BUDGET    (call budgets, TTL)
  in_flight.py       GSI3 is sparse: only work under way carries its keys (the orders and slots above),
                     shard = crc32(connection id) % CONNECTION_SHARDS as for GSI2's connections; the
                     sweeper reads the items unmoved too long, never every connection.
Items carry the record's camelCase fields beside the keys (and `recordType`); amounts and dates as
strings (exact, sortable). Pages are returned with an opaque cursor bound to the partition it was read
from (table.py, with the rest of what the stores share).

Expiry is DynamoDB TTL on `expiresAt` (epoch seconds). TTL deletes lazily (typically within a few days
of expiry), so nothing here relies on an expired item being gone.

What spans aggregates lives with the aggregate that writes: a closed payable's expiry depends on the
payment orders that may still re-read it, so PayablesStore asks PaymentOrdersStore.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from payedge_connect.storage.connections import ConnectionsStore
from payedge_connect.storage.in_flight import InFlightStore
from payedge_connect.storage.leases import LeasesStore
from payedge_connect.storage.payables import PayablesStore
from payedge_connect.storage.payment_orders import PaymentOrdersStore
from payedge_connect.storage.syncs import SyncsStore
from payedge_connect.storage.table import RecordsTable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource, Table


@dataclass(frozen=True)
class Retention:
    """How long records that stop mattering are kept (stack parameters SyncRunRetentionDays and
    ClosedPayableRetentionDays; README "Records and their lifetime")."""

    sync_runs: timedelta = timedelta(days=14)
    closed_payables: timedelta = timedelta(days=30)


class RecordsStore:
    """The records table's stores, one per aggregate, over one table handle (budgets.py, which talks to
    the low-level client, is built on its own by services.py)."""

    def __init__(
        self,
        table_name: str,
        *,
        dynamodb: "DynamoDBServiceResource | None" = None,
        retention: Retention | None = None,
    ) -> None:
        self.retention = retention or Retention()
        self._records = RecordsTable(table_name, dynamodb=dynamodb)
        self.connections = ConnectionsStore(self._records)
        self.payment_orders = PaymentOrdersStore(self._records)
        self.payables = PayablesStore(
            self._records,
            payment_orders=self.payment_orders,
            closed_payable_retention=self.retention.closed_payables,
        )
        self.syncs = SyncsStore(self._records, sync_run_retention=self.retention.sync_runs)
        self.leases = LeasesStore(self._records)
        self.in_flight = InFlightStore(self._records)

    @property
    def table(self) -> "Table":
        """The boto3 table the stores share (for a caller that must build it in its own thread)."""
        return self._records.table
