"""Partition look-ups for moto's DynamoDB, so a Query costs what it costs in DynamoDB.

moto answers every Query by walking every item of the table (moto/dynamodb/models/table.py,
`Table.query` over `all_items()`), base table and index alike: with 10,000 connections in the table,
each of dispatch's shard queries would cost moto a pass over all of them, and the fleet scenario
would measure moto. Installed, this keeps per table a map from each index's partition-key value to
its items (maintained on every put, update and delete) and hands `Table.query` only the items of
the queried partition in place of `all_items()`; moto's own query code still does everything else
(sort-key conditions, ordering, paging, projections), so answers are the same.
"""

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table
from moto.sqs.models import Queue, SQSBackend, sqs_backends

_local = threading.local()
_lock = threading.RLock()
_ItemKey = tuple[Any, Any]


class _PartitionIndex:
    def __init__(self) -> None:
        self.items: dict[tuple[str, Any], dict[_ItemKey, Any]] = defaultdict(dict)
        self.entries: dict[_ItemKey, list[tuple[str, Any]]] = {}

    def remove(self, key: _ItemKey) -> None:
        for entry in self.entries.pop(key, []):
            self.items[entry].pop(key, None)

    def add(self, table: Table, item: Any) -> None:
        key = (item.hash_key, item.range_key)
        self.remove(key)
        entries = []
        for attribute in _index_hash_attributes(table):
            value = item.attrs.get(attribute)
            if value is not None:
                entries.append((attribute, value))
                self.items[(attribute, value)][key] = item
        self.entries[key] = entries


def _index_hash_attributes(table: Table) -> list[str]:
    return [
        key["AttributeName"]
        for index in table.global_indexes + table.indexes
        for key in index.schema
        if key["KeyType"] == "HASH"
    ]


def _index_of(table: Table) -> _PartitionIndex:
    index = getattr(table, "_bench_partition_index", None)
    if index is None:
        index = _PartitionIndex()
        for item in Table.all_items(table):
            index.add(table, item)
        table._bench_partition_index = index  # type: ignore[attr-defined]
    return index


def _candidates(table: Table, hash_key: Any, index_name: str | None) -> list[Any]:
    if index_name is None:
        partition = table.items.get(hash_key, {})
        return list(partition.values()) if table.range_key_attr else [partition]
    index = next(i for i in table.global_indexes + table.indexes if i.name == index_name)
    attribute = next(key["AttributeName"] for key in index.schema if key["KeyType"] == "HASH")
    with _lock:
        return list(_index_of(table).items.get((attribute, hash_key), {}).values())


@contextmanager
def partition_lookups() -> Iterator[None]:
    """Patch moto's Table and backend for the duration (one scenario)."""
    original_query, original_all_items = Table.query, Table.all_items
    original_put, original_delete = Table.put_item, Table.delete_item
    original_update = DynamoDBBackend.update_item

    def all_items(self: Table) -> Any:
        override = getattr(_local, "override", None)
        if override is not None and override[0] is self:
            return override[1]
        return original_all_items(self)

    def query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        # The backend passes index_name as the 8th positional argument (after projection_expressions).
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        _local.override = (self, _candidates(self, hash_key, index_name))
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            _local.override = None

    def put_item(self: Table, *args: Any, **kwargs: Any) -> Any:
        item = original_put(self, *args, **kwargs)
        with _lock:
            _index_of(self).add(self, item)
        return item

    def delete_item(self: Table, hash_key: Any, range_key: Any) -> Any:
        item = original_delete(self, hash_key, range_key)
        if item is not None:
            with _lock:
                _index_of(self).remove((hash_key, range_key))
        return item

    def update_item(self: DynamoDBBackend, table_name: str, *args: Any, **kwargs: Any) -> Any:
        item = original_update(self, table_name, *args, **kwargs)
        if item is not None:
            table = self.get_table(table_name)
            with _lock:
                _index_of(table).add(table, item)
        return item

    Table.query, Table.all_items = query, all_items  # type: ignore[method-assign]
    Table.put_item, Table.delete_item = put_item, delete_item  # type: ignore[method-assign]
    DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]
    try:
        yield
    finally:
        Table.query, Table.all_items = original_query, original_all_items  # type: ignore[method-assign]
        Table.put_item, Table.delete_item = original_put, original_delete  # type: ignore[method-assign]
        DynamoDBBackend.update_item = original_update  # type: ignore[method-assign]


# ---------------------------------------------------------------------------------------------- set-up writes


def _table(table_name: str) -> Table:
    region = boto3.session.Session().region_name or "us-east-1"
    return dynamodb_backends[DEFAULT_ACCOUNT_ID][region].get_table(table_name)


def put_items_directly(table_name: str, items: Iterable[Mapping[str, Any]]) -> int:
    """Write items (keys PK and SK) into moto's in-process table without a request: for a scenario's
    set-up and stand-ins, whose writes are not what it measures (a BatchWriteItem costs moto a
    millisecond an item). Only within `partition_lookups()`. Returns the items written."""
    table, serializer, written = _table(table_name), TypeSerializer(), 0
    index = _index_of(table)
    for item in items:
        attributes: dict[str, Any] = {name: serializer.serialize(value) for name, value in item.items()}
        # What Table.put_item does once its checks pass (the bench's own items need none of them).
        stored = Item(DynamoType(attributes["PK"]), DynamoType(attributes["SK"]), attributes)
        table.items[stored.hash_key][stored.range_key] = stored
        with _lock:
            index.add(table, stored)
        written += 1
    return written


def delete_items_directly(table_name: str, keys: Iterable[tuple[str, str]]) -> None:
    """Delete items (PK, SK) from moto's in-process table without a request (see put_items_directly)."""
    table = _table(table_name)
    for partition, sort in keys:
        table.delete_item(DynamoType({"S": partition}), DynamoType({"S": sort}))


def items_directly(table_name: str, attributes: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Every item of moto's in-process table, with the named attributes it has (and its keys), read
    without a request: for a scenario's own tallies, not the service's reads."""
    deserializer = TypeDeserializer()
    for item in Table.all_items(_table(table_name)):
        wanted = {"PK": item.hash_key, "SK": item.range_key} | {n: item.attrs[n] for n in attributes if n in item.attrs}
        yield {name: deserializer.deserialize(value.to_json()) for name, value in wanted.items() if value is not None}


# ---------------------------------------------------------------------------------------------- SQS


@contextmanager
def constant_time_sends() -> Iterator[None]:
    """moto builds every attribute of a queue on each SendMessage, its message counts included (a pass
    over every message in the queue), to read one FIFO setting: a tick's sends cost moto the square of
    the queue's length. Patched for the duration, a standard queue's send reads no attributes."""
    original_send, original_attributes = SQSBackend.send_message, Queue.attributes

    def send_message(self: SQSBackend, *args: Any, **kwargs: Any) -> Any:
        _local.sending = True
        try:
            return original_send(self, *args, **kwargs)
        finally:
            _local.sending = False

    def attributes(self: Queue) -> dict[str, Any]:
        if getattr(_local, "sending", False) and not self.fifo_queue:
            return {}
        return original_attributes.fget(self)  # type: ignore[attr-defined]

    SQSBackend.send_message = send_message  # type: ignore[method-assign]
    Queue.attributes = property(attributes)  # type: ignore[assignment, method-assign]
    try:
        yield
    finally:
        SQSBackend.send_message = original_send  # type: ignore[method-assign]
        Queue.attributes = original_attributes  # type: ignore[method-assign]


def take_messages_directly(queue_url: str) -> list[str]:
    """Every message body in moto's in-process queue, removed without a request: a stand-in for the
    queue's consumer (ReceiveMessage costs moto a pass over the queue for every message it returns)."""
    region = boto3.session.Session().region_name or "us-east-1"
    queue = sqs_backends[DEFAULT_ACCOUNT_ID][region].get_queue(queue_url.rsplit("/", 1)[-1])
    with queue._messages_lock:
        taken, queue._messages = queue._messages, []
    return [message.body for message in taken]
