"""Async engine, sessions and the unit of work.

One `Database` per process. Reads use `session()`; every write goes through
`write()`, one transaction that commits at the edge or rolls back whole, and
that holds the hub's write lock so registrations, merges and splits never
interleave halfway (PostgreSQL: a transaction-scoped advisory lock, which also
serialises several server processes; SQLite: a process lock, SQLite itself
allows one writer at a time).
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import ARRAY, JSON, BigInteger, Table, event, func, literal, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql import FromClause

from hub.metrics import LOCK_WAIT_SECONDS

WRITE_LOCK_KEY = 0x4855_4221  # "HUB!": the advisory lock every writing transaction takes
ANALYZE_MIN_ROWS = 5_000
GROWING_TABLES = ("source_record", "blocking_key", "customer", "lineage", "event")
log = logging.getLogger("hub")


def is_sqlite(url: str) -> bool:
    """Tell whether a database URL names SQLite."""
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection, _record, busy_timeout_ms: int = 30000) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cur.execute("PRAGMA synchronous=NORMAL")
    # deleted content is overwritten with zeros, not left in free pages: an erased person's values do not
    # survive in the file (the write-ahead log holds them until the next checkpoint)
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


def _sqlite_begin(conn) -> None:
    # a writing unit of work takes SQLite's write lock at BEGIN, before it reads what it will change,
    # so two processes never both read "no such record" and then both insert it
    options = conn.get_execution_options()
    if options.get("isolation_level") != "AUTOCOMMIT":
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("hub_write") else "BEGIN")


def _sqlite_connect(dbapi_connection, record, busy_timeout_ms: int = 30000) -> None:
    dbapi_connection.isolation_level = None  # let SQLAlchemy's begin event, not the driver, open transactions
    _sqlite_pragmas(dbapi_connection, record, busy_timeout_ms)


def make_engine(url: str, *, echo: bool = False, pool_size: int = 10, max_overflow: int = 20,
                statement_timeout_ms: int = 0, busy_timeout_ms: int = 30000) -> AsyncEngine:
    """Create the async engine with settings fit for the dialect.

    PostgreSQL: `pool_size` + `max_overflow` connections at most per process, and `statement_timeout`
    set on each connection when it opens (0: none). SQLite: `busy_timeout`, how long a writer waits
    for another's lock before it fails.
    """
    if is_sqlite(url):
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": max(1, busy_timeout_ms / 1000)})
        event.listen(engine.sync_engine, "connect", functools.partial(_sqlite_connect,
                                                                      busy_timeout_ms=busy_timeout_ms))
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    connect_args = {}
    if statement_timeout_ms > 0:
        connect_args["server_settings"] = {"statement_timeout": str(int(statement_timeout_ms))}
    # no pre-ping: it costs a round trip per checkout; recycled connections and the readiness probe suffice
    return create_async_engine(url, echo=echo, pool_size=pool_size, max_overflow=max_overflow, pool_recycle=1800,
                               connect_args=connect_args)


class Database:
    """The engine, a session factory and the write lock."""

    def __init__(self, url: str, *, echo: bool = False, **engine_options: int) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        self.engine = make_engine(url, echo=echo, **engine_options)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self._local_lock = asyncio.Lock()
        self._grown, self._analysed_at, self._analysing = 0, 0, None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """Open a session for reads; nothing is committed."""
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """Run one unit of work under the write lock; commit on success, roll back on any error."""
        waiting = time.perf_counter()  # the lock wait: the process lock, BEGIN IMMEDIATE or the advisory lock
        async with self._local_lock if self.sqlite else _nullcontext(), self.sessions() as session:
            async with session.begin():
                await session.connection(execution_options={"hub_write": True})
                if not self.sqlite:
                    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
                LOCK_WAIT_SECONDS.observe(time.perf_counter() - waiting)
                yield session

    @classmethod
    def for_server(cls, settings) -> Database:
        """The database of `hub serve`, with the settings' pool sizes and timeouts."""
        return cls(settings.database_url, echo=settings.sql_echo, pool_size=settings.db_pool_size,
                   max_overflow=settings.db_max_overflow, statement_timeout_ms=settings.statement_timeout_ms,
                   busy_timeout_ms=settings.sqlite_busy_timeout_ms)

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncConnection]:
        """Open an autocommit connection for reads: no BEGIN/ROLLBACK round trips, each statement current."""
        async with self.engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    def grew(self, rows: int) -> None:
        """Note rows inserted; refresh the planner's statistics once the tables have grown by a fifth.

        A bulk load outruns autovacuum: on a table that went from empty to a million rows without
        statistics, PostgreSQL plans key lookups as scans. ANALYZE runs in the background, off the
        request path, at most one at a time.
        """
        if self.sqlite:
            return
        self._grown += rows
        if self._grown >= max(ANALYZE_MIN_ROWS, self._analysed_at // 5) and self._analysing is None:
            self._analysed_at += self._grown
            self._grown = 0
            self._analysing = asyncio.get_running_loop().create_task(self._analyse())

    async def _analyse(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(f"ANALYZE {', '.join(GROWING_TABLES)}"))
        except Exception:
            log.warning("background ANALYZE failed", exc_info=True)
        finally:
            self._analysing = None

    async def ping(self) -> bool:
        """Answer whether the database responds."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return False

    async def dispose(self) -> None:
        """Close every pooled connection."""
        if self._analysing is not None:
            await self._analysing
        await self.engine.dispose()


@asynccontextmanager
async def _nullcontext() -> AsyncIterator[None]:
    yield None


COPY_MIN_ROWS = 200


def any_of(session: AsyncSession, column, values: Sequence[int]) -> Any:
    """`column IN values` as a single parameter, however many values (drivers cap parameters at ~32k)."""
    if session.bind.dialect.name == "postgresql":
        return column == func.any(literal(list(values), ARRAY(BigInteger)))
    return column.in_(select(func.json_each(json.dumps(list(values))).table_valued("value").c.value)
                      .scalar_subquery())


async def bulk_insert(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows without RETURNING: PostgreSQL COPY on the transaction's own connection, else INSERT."""
    if not rows:
        return
    # COPY pays an extra round trip to read the column types: it wins for big batches only
    if session.bind.dialect.name != "postgresql" or len(rows) < COPY_MIN_ROWS:
        await session.execute(table.insert(), rows)
        return
    columns = list(rows[0])
    as_json = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, JSON)]
    records = [tuple(r.values()) for r in rows]
    if as_json:
        records = [tuple(json.dumps(v) if i in as_json and v is not None else v for i, v in enumerate(rec))
                   for rec in records]
    raw = await (await session.connection()).get_raw_connection()
    await raw.driver_connection.copy_records_to_table(table.name, records=records, columns=columns)


class Reads:
    """The reads of one request: one autocommit connection, opened on first use, statements in turn.

    Resolvers and dataloaders of a request run concurrently; a connection runs one statement at a
    time, so statements queue on a lock instead of each taking a pooled connection of its own.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = asyncio.Lock()
        self._cm = None
        self._conn: AsyncConnection | None = None

    async def all(self, statement, params: dict | None = None) -> list:
        """Run a statement and return all its rows."""
        async with self._lock:
            if self._conn is None:
                self._cm = self.db.reader()
                self._conn = await self._cm.__aenter__()
            return list((await self._conn.execute(statement, params or {})).all())

    async def first(self, statement, params: dict | None = None):
        """Run a statement and return its first row, or None."""
        rows = await self.all(statement, params)
        return rows[0] if rows else None

    async def close(self) -> None:
        """Give the connection back to the pool."""
        if self._cm is not None:
            cm, self._cm, self._conn = self._cm, None, None
            await cm.__aexit__(None, None, None)


def value_rows(session: AsyncSession, columns: Mapping[str, tuple[object, Sequence[object]]]) -> FromClause:
    """Parallel value lists as a table `v` to join in one statement, whatever the number of rows.

    PostgreSQL: unnest of one typed array per column (one parameter per column); SQLite: json_each over
    one JSON parameter. Pass no timestamps (SQLite would see them as JSON text).
    """
    names = list(columns)
    if session.bind.dialect.name == "postgresql":
        arrays = [literal(list(values), ARRAY(typ)) for typ, values in columns.values()]
        return func.unnest(*arrays).table_valued(*names).render_derived(name="v")
    rows = json.dumps([list(r) for r in zip(*(values for _, values in columns.values()), strict=True)], default=str)
    each = func.json_each(rows).table_valued("value")
    return select(*(func.json_extract(each.c.value, f"$[{i}]").label(n) for i, n in enumerate(names))
                  ).select_from(each).subquery("v")
