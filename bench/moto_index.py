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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

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
