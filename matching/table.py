"""Records (arrow table or dicts with attributes) -> feature arrow table for Splink."""
from __future__ import annotations

from typing import Iterable, Iterator, Mapping

import pyarrow as pa

from .blocking import keys_from_features
from .features import FEATURE_COLUMNS, features

FEATURE_SCHEMA = pa.schema(
    [("unique_id", pa.int64())]
    + [(c, pa.list_(pa.string()) if c == "given_nick" else pa.string()) for c in FEATURE_COLUMNS]
)


def iter_records(records) -> Iterator[Mapping]:
    """Rows of an arrow table (batch-wise) or of an iterable of mappings."""
    if isinstance(records, (pa.Table, pa.RecordBatch)):
        batches = records.to_batches(max_chunksize=50_000) if isinstance(records, pa.Table) else [records]
        for batch in batches:
            yield from batch.to_pylist()
    else:
        yield from records


def feature_batches(records, *, id_column: str | None = "id", with_keys: bool = False,
                    batch_size: int = 100_000) -> Iterator[tuple[pa.RecordBatch, pa.RecordBatch | None]]:
    """Feature record batches; with_keys also yields (key, unique_id) batches of blocking keys.

    id_column=None numbers the records 0..n-1.
    """
    cols: dict[str, list] = {c: [] for c in FEATURE_SCHEMA.names}
    keys: list[str] = []
    key_ids: list[int] = []

    def flush():
        fb = pa.RecordBatch.from_pydict(cols, schema=FEATURE_SCHEMA)
        kb = (pa.RecordBatch.from_pydict({"key": keys, "unique_id": key_ids},
                                         schema=pa.schema([("key", pa.string()), ("unique_id", pa.int64())]))
              if with_keys else None)
        return fb, kb

    for n, rec in enumerate(iter_records(records)):
        rid = int(rec[id_column]) if id_column else n
        row = features(rec)
        cols["unique_id"].append(rid)
        for c in FEATURE_COLUMNS:
            cols[c].append(row[c])
        if with_keys:
            ks = keys_from_features(row)
            keys.extend(ks)
            key_ids.extend([rid] * len(ks))
        if len(cols["unique_id"]) >= batch_size:
            yield flush()
            for v in cols.values():
                v.clear()
            keys.clear()
            key_ids.clear()
    if cols["unique_id"]:
        yield flush()


def feature_table(records: Iterable[Mapping] | pa.Table, *, id_column: str | None = "id") -> pa.Table:
    return pa.Table.from_batches([fb for fb, _ in feature_batches(records, id_column=id_column)],
                                 schema=FEATURE_SCHEMA)
