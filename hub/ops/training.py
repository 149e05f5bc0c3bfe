"""`hub train`: re-estimate the match model on the hub's own records and store it as a candidate version.

`matching.train` fits the model to the data (absent attributes left out, EM rules from the attributes
present, a report of what was estimated from what); the model JSON is stored in `match_model` with its
training time, record count and parameters, status candidate. `hub.ops.models` evaluates and promotes it;
`hub.ingest.matcher.load_scorer(db, "latest")` matches with the promoted one.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pyarrow as pa
from sqlalchemy import func, insert, select

from hub.golden.attributes import ATTRIBUTES
from hub.config import Settings
from hub.db import Database
from hub.models import MatchModelVersion, SourceRecord
from matching.train import complete

SR = SourceRecord.__table__
MODEL = MatchModelVersion.__table__
CHUNK = 20_000
# the arrow schema `matching` reads: an integer id and the standardised attributes as text
RECORD_SCHEMA = pa.schema([("id", pa.int64()), *((a, pa.string()) for a in ATTRIBUTES)])

Progress = Callable[[str, int, int | None], None]


@dataclass
class TrainingResult:
    model: dict[str, Any]
    records: int
    seconds: float
    params: dict[str, Any]
    model_id: int | None = None  # None: not stored (dry run)


def _text(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.date) else value


async def record_batches(*, db: Database, chunk: int = CHUNK,
                         with_customer: bool = False) -> AsyncIterator[tuple[pa.RecordBatch, list[int] | None]]:
    """Stream every source record as arrow batches (id + attributes), optionally with each one's golden id.

    Core rows through a server-side cursor: no ORM objects, and at most one chunk of rows in Python at once.
    """
    cols = [SR.c.id, *(SR.c[a] for a in ATTRIBUTES)] + ([SR.c.customer_id] if with_customer else [])
    async with db.engine.connect() as conn:
        result = await conn.stream(select(*cols).order_by(SR.c.id).execution_options(yield_per=chunk))
        async for rows in result.partitions(chunk):
            columns = list(zip(*rows, strict=True))
            arrays = [pa.array(columns[0], pa.int64())] + [
                pa.array([_text(v) for v in columns[i + 1]], pa.string()) for i in range(len(ATTRIBUTES))]
            yield (pa.RecordBatch.from_arrays(arrays, schema=RECORD_SCHEMA),
                   list(columns[-1]) if with_customer else None)


async def count_records(*, db: Database) -> int:
    """How many source records the hub holds."""
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(SR)) or 0)


async def records_table(*, db: Database, progress: Progress | None = None) -> pa.Table:
    """Every source record as one arrow table (id + standardised attributes as text), read as the rematch
    reads them (PostgreSQL: one COPY parsed by arrow)."""
    from hub.ops.rematch import read_records  # the rematch imports this module

    table, _ = await read_records(db=db, progress=progress)
    return table


async def train_model(*, db: Database, seed: int = 1, max_pairs_u: float = 1e7, max_pairs_em: float = 2e6,
                      actor: str = "cli:train", note: str | None = None, dry_run: bool = False,
                      progress: Progress | None = None, engine: str = "duckdb",
                      settings: Settings | None = None) -> TrainingResult:
    """Train a model on every stored record and store it as the newest version (unless dry_run).

    The model fits the data (`matching.train`): absent attributes' comparisons are left out, EM rules are
    chosen from the attributes present, levels the data never showed keep the shipped model's values
    (listed in model["matching_training"]["report"], which `hub train` prints).
    engine: `duckdb` (embedded) or `spark` (Splink's SparkAPI on the settings' HUB_SPARK_MASTER).
    """
    from matching import train

    if engine == "spark":
        # matching.spark.train_spark runs the fixed (shipped) recipe; the training that fits the data (absent
        # comparisons left out, rules from the attributes present, a report) exists on DuckDB only so far
        raise ValueError("--engine spark: training that fits the data runs on DuckDB only for now; train with "
                         "--engine duckdb (hub rematch --engine spark works)")
    if engine != "duckdb":
        raise ValueError(f"unknown matching engine {engine!r}: duckdb or spark")

    started = time.perf_counter()
    table = await records_table(db=db, progress=progress)
    if table.num_rows < 2:
        raise ValueError(f"training needs records; the hub holds {table.num_rows}")
    read_s = time.perf_counter() - started
    params = {"seed": seed, "max_pairs_u": max_pairs_u, "max_pairs_em": max_pairs_em}
    # Splink/DuckDB work is CPU-bound and blocking: keep it off the event loop
    model = await asyncio.to_thread(train, table, seed=seed, max_pairs_u=max_pairs_u, max_pairs_em=max_pairs_em,
                                    id_column="id", prior=default_model_json())
    report = model["matching_training"]["report"]
    params["from_default"] = [f"{c}/{lv}/{w}" for c, levels in report["levels"].items()
                              for lv, src in levels.items() for w, v in src.items() if v == "prior"]
    params["left_out"] = sorted(report["comparisons_left_out"])
    params["read_seconds"] = round(read_s, 3)
    result = TrainingResult(model, table.num_rows, round(time.perf_counter() - started, 3), params)
    if not dry_run:
        result.model_id = await store_model(db=db, result=result, actor=actor, note=note)
    return result


def default_model_json() -> dict[str, Any]:
    """The model shipped with `matching`."""
    return json.loads(resources.files("matching").joinpath("default_model.json").read_text(encoding="utf-8"))


async def store_model(*, db: Database, result: TrainingResult, actor: str, note: str | None) -> int:
    """Insert the trained model as a new match_model row; return its id."""
    async with db.write() as session:
        return (await session.execute(insert(MODEL).values(
            actor=actor, records=result.records, seconds=result.seconds, params=result.params,
            model=result.model, note=note).returning(MODEL.c.id))).scalar_one()


def summary(model: dict[str, Any], *, top: int = 2) -> list[str]:
    """A few lines describing a model: lambda and the m/u of the first levels of each comparison."""
    lines = [f"lambda (probability two random records match): {model.get('probability_two_random_records_match'):.3g}"]
    for comp in model.get("comparisons", []):
        levels = [lv for lv in comp["comparison_levels"] if not lv.get("is_null_level")][:top]
        parts = [f"{lv.get('label_for_charts')}: m={lv.get('m_probability', float('nan')):.3g} "
                 f"u={lv.get('u_probability', float('nan')):.3g}" for lv in levels]
        lines.append(f"  {comp['output_column_name']}: " + "; ".join(parts))
    return lines


__all__ = ["RECORD_SCHEMA", "TrainingResult", "complete", "count_records", "default_model_json", "record_batches", "records_table", "store_model",
           "summary", "train_model"]
