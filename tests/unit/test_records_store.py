from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from payedge_connect.errors import ConflictError, InvalidInputError
from payedge_connect.models import Connection, ConnectionStatus, Payable, PayableStatus, Provider
from payedge_connect.storage import RecordsStore
from payedge_connect.storage.connections import CONNECTION_SHARDS

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def a_connection(connection_id: str = "conn-1", business_id: str = "biz-1") -> Connection:
    return Connection(
        connection_id=connection_id,
        business_id=business_id,
        provider=Provider.XERO,
        status=ConnectionStatus.AUTHORIZING,
        created_at=NOW,
        updated_at=NOW,
    )


def a_payable(bill_id: str, *, connection_id: str = "conn-1", due: date | None = None) -> Payable:
    return Payable(
        connection_id=connection_id,
        bill_id=bill_id,
        vendor_id="v-1",
        vendor_name="Fournitures Québec Inc.",
        currency="CAD",
        amount_due=Decimal("100.10"),
        total_amount=Decimal("250.00"),
        invoice_number=f"INV-{bill_id}",
        due_date=due,
        accounting_software="Xero",
        status=PayableStatus.OPEN,
    )


def test_creating_a_connection_twice_is_a_conflict(records_table: str) -> None:
    # Given a stored connection
    store = RecordsStore(records_table)
    store.connections.create_connection(a_connection())
    # When the same id is created again
    # Then the second write is refused and the first one is untouched
    with pytest.raises(ConflictError):
        store.connections.create_connection(a_connection(business_id="someone-else"))
    stored = store.connections.get_connection("conn-1")
    assert stored is not None
    assert stored.business_id == "biz-1"


def test_a_save_based_on_a_stale_read_is_refused(records_table: str) -> None:
    # Given two readers of the same connection
    store = RecordsStore(records_table)
    store.connections.create_connection(a_connection())
    first = store.connections.get_connection("conn-1")
    second = store.connections.get_connection("conn-1")
    assert first is not None and second is not None
    # When the first saves a change
    saved = store.connections.save_connection(first.model_copy(update={"status": ConnectionStatus.MAPPING_REQUIRED}))
    # Then the second's save, based on the older version, is refused
    with pytest.raises(ConflictError):
        store.connections.save_connection(second.model_copy(update={"status": ConnectionStatus.DISCONNECTED}))
    stored = store.connections.get_connection("conn-1")
    assert stored is not None
    assert stored.status is ConnectionStatus.MAPPING_REQUIRED
    assert stored.version == saved.version == 1


def test_saving_a_connection_that_was_never_created_is_refused(records_table: str) -> None:
    store = RecordsStore(records_table)
    with pytest.raises(ConflictError):
        store.connections.save_connection(a_connection("ghost"))
    assert store.connections.get_connection("ghost") is None


def test_a_business_lists_only_its_own_connections_page_by_page(records_table: str) -> None:
    # Given five connections of one business and one of another
    store = RecordsStore(records_table)
    for index in range(5):
        store.connections.create_connection(a_connection(f"conn-{index}"))
    store.connections.create_connection(a_connection("other", business_id="biz-2"))
    # When the business pages through its connections two at a time
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.connections.list_connections("biz-1", limit=2, cursor=cursor)
        seen.extend(connection.connection_id for connection in page.items)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    # Then it sees each of its own exactly once, and never the other business's
    assert sorted(seen) == [f"conn-{index}" for index in range(5)]
    assert pages == 3


def test_a_cursor_from_another_listing_is_rejected_naming_the_cursor(records_table: str) -> None:
    # Given a cursor issued while listing business 1's connections
    store = RecordsStore(records_table)
    for index in range(3):
        store.connections.create_connection(a_connection(f"conn-{index}"))
    cursor = store.connections.list_connections("biz-1", limit=1).next_cursor
    assert cursor is not None
    # When it is used to list another business's connections, or is garbage
    # Then the request is refused with the field named
    with pytest.raises(InvalidInputError) as other_business:
        store.connections.list_connections("biz-2", cursor=cursor)
    assert other_business.value.field == "cursor"
    with pytest.raises(InvalidInputError) as garbage:
        store.connections.list_connections("biz-1", cursor="not-a-cursor!!")
    assert garbage.value.field == "cursor"


def test_a_page_size_out_of_range_is_rejected(records_table: str) -> None:
    with pytest.raises(InvalidInputError) as error:
        RecordsStore(records_table).connections.list_connections("biz-1", limit=0)
    assert error.value.field == "limit"


def test_payables_round_trip_exactly_and_list_by_status_in_due_date_order(records_table: str) -> None:
    # Given payables written in one batch, amounts with trailing zeros and one without a due date
    store = RecordsStore(records_table)
    written = store.payables.put_payables(
        [
            a_payable("b-late", due=date(2026, 12, 31)),
            a_payable("b-none", due=None),
            a_payable("b-soon", due=date(2026, 12, 1)),
        ]
    )
    # When they are read back by status, one at a time
    order: list[str] = []
    cursor = None
    while True:
        page = store.payables.list_payables("conn-1", status=PayableStatus.OPEN, limit=1, cursor=cursor)
        order.extend(payable.bill_id for payable in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    # Then every field survives exactly and the soonest due comes first
    assert written == 3
    assert order == ["b-soon", "b-late", "b-none"]
    stored = store.payables.get_payable("conn-1", "b-soon")
    assert stored == a_payable("b-soon", due=date(2026, 12, 1))
    assert str(stored.total_amount) == "250.00"
    assert store.payables.list_payables("conn-1", status=PayableStatus.CLOSED).items == []


def test_connections_are_listed_by_status_for_the_schedule(records_table: str) -> None:
    store = RecordsStore(records_table)
    store.connections.create_connection(a_connection("a"))
    connected = store.connections.get_connection("a")
    assert connected is not None
    store.connections.save_connection(connected.model_copy(update={"status": ConnectionStatus.CONNECTED}))
    store.connections.create_connection(a_connection("b"))
    due = [
        connection.connection_id
        for shard in range(CONNECTION_SHARDS)
        for connection in store.connections.due_connections(shard, datetime.now(UTC))[0]
    ]
    assert due == ["a"]
