"""Records (arrow table or dicts with attributes) -> feature arrow table for Splink.

An arrow table is featurised column by column: every feature is a function of one attribute, so
`features` runs once per distinct value of each attribute (names, birth dates, postcodes and
localities repeat a lot) instead of once per record. That decomposition is checked on the data (no
two attributes give one feature; a sample of rows equals `features` of the whole record), else the
records are featurised row by row.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from .blocking import keys_from_features
from .features import ATTRIBUTES, FEATURE_COLUMNS, features

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


KEY_SCHEMA = pa.schema([("key", pa.string()), ("unique_id", pa.int64())])
SAMPLE_ROWS = 2000      # rows of a columnar featurisation compared with `features` of the whole record


def columnar_features(table: pa.Table, *, id_column: str | None = "id") -> pa.Table | None:
    """The feature table of an arrow table of records, each attribute featurised once per distinct value.

    None when the features of this data are not the features of its attributes one by one.
    """
    n = table.num_rows
    if any(v is not None for v in features({}).values()):
        return None
    out: dict[str, pa.ChunkedArray] = {}
    for attr in ATTRIBUTES:
        if attr not in table.column_names:
            continue
        col = table.column(attr)
        if col.null_count == n:
            continue
        distinct = pc.unique(col.drop_null())
        rows = [features({attr: v}) for v in distinct.to_pylist()]
        produced = {c for r in rows for c, v in r.items() if v is not None}
        if produced & out.keys():
            return None
        at = pc.index_in(col, value_set=distinct)
        for c in produced:
            values = pa.array([r[c] for r in rows], FEATURE_SCHEMA.field(c).type)
            out[c] = pc.take(values, at)
    ids = table.column(id_column).cast(pa.int64()) if id_column else pa.chunked_array([pa.array(range(n), pa.int64())])
    feats = pa.Table.from_arrays(
        [ids] + [out.get(c, pa.chunked_array([pa.nulls(n, FEATURE_SCHEMA.field(c).type)])) for c in FEATURE_COLUMNS],
        schema=FEATURE_SCHEMA).combine_chunks()
    step = max(1, n // SAMPLE_ROWS)
    sample = pc.take(table, pa.array(range(0, n, step)))
    expected = [features(rec) for rec in sample.to_pylist()]
    got = pc.take(feats, pa.array(range(0, n, step))).to_pylist()
    if any({c: e[c] for c in FEATURE_COLUMNS} != {c: g[c] for c in FEATURE_COLUMNS} for e, g in zip(expected, got)):
        return None
    return feats


def feature_batches(records, *, id_column: str | None = "id", with_keys: bool = False,
                    batch_size: int = 100_000) -> Iterator[tuple[pa.RecordBatch, pa.RecordBatch | None]]:
    """Feature record batches; with_keys also yields (key, unique_id) batches of blocking keys.

    id_column=None numbers the records 0..n-1.
    """
    if isinstance(records, pa.RecordBatch):
        records = pa.Table.from_batches([records])
    feats = columnar_features(records, id_column=id_column) if isinstance(records, pa.Table) else None
    if feats is not None:
        for fb in feats.to_batches(max_chunksize=batch_size):
            kb = None
            if with_keys:
                keys: list[str] = []
                key_ids: list[int] = []
                for row in fb.to_pylist():
                    ks = keys_from_features(row)
                    keys.extend(ks)
                    key_ids.extend([row["unique_id"]] * len(ks))
                kb = pa.RecordBatch.from_pydict({"key": keys, "unique_id": key_ids}, schema=KEY_SCHEMA)
            yield fb, kb
        return
    cols: dict[str, list] = {c: [] for c in FEATURE_SCHEMA.names}
    keys: list[str] = []
    key_ids: list[int] = []

    def flush():
        fb = pa.RecordBatch.from_pydict(cols, schema=FEATURE_SCHEMA)
        kb = pa.RecordBatch.from_pydict({"key": keys, "unique_id": key_ids}, schema=KEY_SCHEMA) if with_keys else None
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
