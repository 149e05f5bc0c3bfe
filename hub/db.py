"""Async engine, sessions and the unit of work.

One `Database` per process. Reads use `session()`; every write goes through
`write()`, one transaction that commits at the edge or rolls back whole, and
that holds the hub's write lock so registrations, merges and splits never
interleave halfway (PostgreSQL: a transaction-scoped advisory lock, which also
serialises several server processes; SQLite: a process lock, SQLite itself
allows one writer at a time).

Every unit of work ends by sealing its outbox (`seal_outbox`): the events it wrote get their
positions in the change stream, in the same transaction, just before the commit.
"""
from __future__ import annotations

import asyncio
import collections
import errno
import functools
import json
import logging
import os
import socket
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import ARRAY, JSON, BigInteger, Table, bindparam, event, func, literal, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql import FromClause
from sqlalchemy.types import TypeDecorator

from hub.models.types import UTCDateTime, utcnow

from hub.metrics import LOCK_WAIT_SECONDS

T = TypeVar("T")
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


SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")
CONNECT_TIMEOUT = 10  # seconds to open a PostgreSQL connection before the request is answered 503


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL, or None for an in-memory database."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def secure_sqlite_file(url: str) -> None:
    """Create the SQLite file readable by its owner only (0600) before SQLite does (0644 less the umask).

    SQLite gives its -wal, -shm and -journal files the mode of the database file, so they follow. A file
    that exists with wider permissions (made by an older version) is narrowed, side files too. Nothing is
    done when the folder does not exist: SQLite then reports the database unavailable.
    """
    path = sqlite_path(url)
    if path is None or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except OSError:
        return  # read-only folder and the like: SQLite will say so
    for suffix in SQLITE_SIDE_FILES:
        try:
            st = os.stat(path + suffix)
            if st.st_mode & 0o077 and st.st_uid == os.getuid():
                os.chmod(path + suffix, 0o600)
                log.warning("narrowed the permissions of %s to 0600 (owner only)", os.path.basename(path + suffix))
        except OSError:
            continue


def make_engine(url: str, *, echo: bool = False, pool_size: int = 10, max_overflow: int = 20,
                statement_timeout_ms: int = 0, busy_timeout_ms: int = 30000) -> AsyncEngine:
    """Create the async engine with settings fit for the dialect.

    `hide_parameters`: SQL parameters (personal values) never appear in logs or exception messages.
    PostgreSQL: `pool_size` + `max_overflow` connections at most per process, and `statement_timeout`
    set on each connection when it opens (0: none). SQLite: `busy_timeout`, how long a writer waits
    for another's lock before it fails.
    """
    if is_sqlite(url):
        secure_sqlite_file(url)
        engine = create_async_engine(url, echo=echo, hide_parameters=True,
                                     connect_args={"timeout": max(1, busy_timeout_ms / 1000)})
        event.listen(engine.sync_engine, "connect", functools.partial(_sqlite_connect,
                                                                      busy_timeout_ms=busy_timeout_ms))
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    # no pre-ping: it costs a round trip per checkout; recycled connections and the readiness probe suffice
    # (a connection that died with the database is invalidated by the failing statement, see unavailable())
    connect_args: dict[str, Any] = {"timeout": CONNECT_TIMEOUT}
    if statement_timeout_ms > 0:
        connect_args["server_settings"] = {"statement_timeout": str(int(statement_timeout_ms))}
    return create_async_engine(url, echo=echo, hide_parameters=True, pool_size=pool_size, max_overflow=max_overflow,
                               pool_recycle=1800, pool_timeout=CONNECT_TIMEOUT, connect_args=connect_args)


_NETWORK_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTUNREACH,
                   errno.ENETUNREACH, errno.ENETDOWN, errno.EPIPE}
# asyncpg: the server is gone, going, starting, or out of connection slots
_ASYNCPG_UNAVAILABLE = {"ConnectionDoesNotExistError", "ConnectionFailureError", "PostgresConnectionError",
                        "ClientCannotConnectError", "ConnectionRejectionError", "CannotConnectNowError",
                        "AdminShutdownError", "CrashShutdownError", "TooManyConnectionsError",
                        "InternalClientError"}
_SQLITE_UNAVAILABLE = ("unable to open database file", "database is locked", "disk i/o error",
                       "readonly database", "database or disk is full")


def unavailable(error: BaseException | None) -> bool:
    """Tell whether an error means the database cannot be reached (an outage), not a fault of the request.

    Looks through the error's causes: SQLAlchemy wraps driver errors, and a connection refused at
    connect time arrives as a bare OSError.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
            return True
        if isinstance(error, sa_exc.TimeoutError):  # no pooled connection came free in time
            return True
        if isinstance(error, (ConnectionError, TimeoutError, socket.gaierror)):
            return True
        if isinstance(error, OSError) and error.errno in _NETWORK_ERRNOS:
            return True
        if type(error).__module__.startswith("asyncpg") and type(error).__name__ in _ASYNCPG_UNAVAILABLE:
            return True
        if isinstance(error, sqlite3.OperationalError) and str(error).lower().startswith(_SQLITE_UNAVAILABLE):
            return True
        if isinstance(error, sa_exc.DBAPIError) and error.orig is not None and error.orig is not error:
            if unavailable(error.orig):
                return True
        error = error.__cause__ or error.__context__
    return False


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
    async def write(self, *, lock: bool = True) -> AsyncIterator[AsyncSession]:
        """Run one unit of work under the write lock; commit on success, roll back on any error.

        lock=False (PostgreSQL): no advisory lock, for appends to tables no unit of work reads (the read
        audit), which must not queue behind registrations. SQLite has one writer whatever is asked.
        """
        waiting = time.perf_counter()  # the lock wait: the process lock, BEGIN IMMEDIATE or the advisory lock
        async with self._local_lock if self.sqlite else _nullcontext(), self.sessions() as session:
            async with session.begin():
                await session.connection(execution_options={"hub_write": True})
                if not lock and not self.sqlite:
                    mark = None  # an append no unit of work reads (the read audit): no lock, no golden events
                elif self.sqlite:
                    mark = (await session.execute(_EVENT_MARK)).scalar_one()
                else:
                    mark = (await session.execute(_LOCK_AND_MARK, {"k": WRITE_LOCK_KEY})).one()[1]
                LOCK_WAIT_SECONDS.observe(time.perf_counter() - waiting)
                yield session
                if mark is not None:
                    await seal_outbox(session, mark)

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


async def in_own_loop(db: Database, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run `work` on a Database of its own, in a worker thread with an event loop of its own.

    For units of work that are mostly Python (a registration batch of thousands of records: matching,
    survivorship, building rows): on the caller's loop they would hold it for seconds; in a thread the
    interpreter hands the GIL back every few milliseconds, so the caller's loop keeps serving. The
    database connection is opened and closed in the thread (asyncpg connections belong to one loop);
    the write lock still serialises writers (PostgreSQL advisory lock; SQLite's own lock, BEGIN
    IMMEDIATE with a busy timeout). Background ANALYZE stays with the caller's Database.
    """
    grown: list[int] = []

    def run() -> T:
        async def go() -> T:
            own = Database(db.url)
            own.grew = grown.append  # type: ignore[method-assign]
            try:
                return await work(own)
            finally:
                await own.dispose()

        return asyncio.run(go())

    try:
        return await asyncio.to_thread(run)
    finally:
        if grown:
            db.grew(sum(grown))


# the newest event id before this unit of work: every event it writes has a greater id
_EVENT_MARK = text("SELECT coalesce(max(id), 0) FROM event")
_LOCK_AND_MARK = text("SELECT pg_advisory_xact_lock(:k), (SELECT coalesce(max(id), 0) FROM event)")
# Number this transaction's golden-record events (those naming a customer; not the hub's own, such as
# SYSTEM_REGISTERED or POLICY_CHANGED) after the last position, under the head row's lock. The lock is
# held until the commit, so the next transaction numbers its events only once this one committed:
# positions follow commit order whatever locks the writers take before. The events are found by id
# range from the mark (a primary-key range scan); events of other transactions in the range were
# committed, hence sealed already (NOT EXISTS), or are not visible.
_SEAL_PG = text("""
WITH head AS (SELECT last FROM outbox_head WHERE id = 1 FOR UPDATE),
new AS (INSERT INTO outbox (position, event_id, customer_id, kind, at)
        SELECT head.last + row_number() OVER (ORDER BY e.id), e.id, e.customer_id, e.kind, :now
        FROM event e CROSS JOIN head
        WHERE e.id > :mark AND e.customer_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = e.id)
        RETURNING position)
UPDATE outbox_head SET last = coalesce((SELECT max(position) FROM new), last) WHERE id = 1""").bindparams(
    bindparam("now", type_=UTCDateTime()))
_SEAL_SQLITE = text("""
INSERT INTO outbox (position, event_id, customer_id, kind, at)
SELECT :last + row_number() OVER (ORDER BY e.id), e.id, e.customer_id, e.kind, :now
FROM event e WHERE e.id > :mark AND e.customer_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = e.id)""").bindparams(
    bindparam("now", type_=UTCDateTime()))


async def seal_outbox(session: AsyncSession, mark: int) -> None:
    """Give the events this transaction wrote (ids above `mark`) their commit-ordered stream positions."""
    # the commit time, near enough: the stream's committedAt, and what retention counts from
    now = utcnow()
    if session.bind.dialect.name == "postgresql":
        await session.execute(_SEAL_PG, {"mark": mark, "now": now})
        return
    # SQLite: one writer at a time, so the transaction already holds the database's write lock
    last = (await session.execute(text("SELECT last FROM outbox_head WHERE id = 1"))).scalar_one()
    added = (await session.execute(_SEAL_SQLITE, {"last": last, "mark": mark, "now": now})).rowcount
    if added:
        await session.execute(text("UPDATE outbox_head SET last = :last WHERE id = 1"), {"last": last + added})


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
    dialect = session.bind.dialect
    # COPY bypasses SQLAlchemy's types: apply their bind processing (sealing of personal values included)
    decorated = {i: table.c[c].type for i, c in enumerate(columns) if isinstance(table.c[c].type, TypeDecorator)
                 and type(table.c[c].type).process_bind_param is not TypeDecorator.process_bind_param}
    as_json = {i for i, c in enumerate(columns)
               if isinstance(table.c[c].type, JSON) or isinstance(getattr(table.c[c].type, "impl", None), JSON)}
    records = [tuple(r.values()) for r in rows]
    if decorated or as_json:
        def convert(i: int, v: Any) -> Any:
            if v is None:
                return None
            if i in decorated:
                v = decorated[i].process_bind_param(v, dialect)
            return json.dumps(v) if i in as_json and v is not None else v
        records = [tuple(convert(i, v) for i, v in enumerate(rec)) for rec in records]
    raw = await (await session.connection()).get_raw_connection()
    await raw.driver_connection.copy_records_to_table(table.name, records=records, columns=columns)


SLICE = 0.02  # seconds of resolving before the event loop gets to look at its sockets again


class _Turns:
    """The resolvers of one event loop waiting for their turn, released a batch per loop iteration."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.began = 0.0  # when the current batch was released
        self.waiting: collections.deque[asyncio.Future] = collections.deque()
        self.scheduled = False
        self.batch = 8  # how many to release at once: doubled or halved to keep a batch near SLICE

    def wait(self) -> asyncio.Future:
        future = self.loop.create_future()
        self.waiting.append(future)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.release)
        return future

    def release(self) -> None:
        now = time.perf_counter()
        took, self.began = now - self.began, now
        if took < SLICE / 2:
            self.batch = min(self.batch * 2, 4096)
        elif took > SLICE:
            self.batch = max(self.batch // 2, 1)
        for _ in range(min(self.batch, len(self.waiting))):
            future = self.waiting.popleft()
            if not future.done():
                future.set_result(None)
        # the next batch after the released ones ran, and after the loop polled its sockets
        self.scheduled = bool(self.waiting)
        if self.scheduled:
            self.loop.call_soon(self.release)


_turns: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def cooperate() -> None:
    """Resume in turn, so that resolving (or reading rows) never holds the event loop for long.

    A loader's batch completes every waiting resolver in the same loop iteration: a page of 1000
    customers would then resolve all their lineage, source records and history before the loop polls
    its sockets again (seconds, for a big page, during which /healthz and every other request wait).
    Within SLICE of the last release a resolver goes on; past it, resolvers queue and are released a
    batch per loop iteration, the batch sized to take about SLICE.
    """
    loop = asyncio.get_running_loop()
    turns = _turns.get(loop)
    if turns is None:
        turns = _turns[loop] = _Turns(loop)
    if not turns.waiting and time.perf_counter() - turns.began <= SLICE:
        return
    await turns.wait()


FETCH_SLICE = 1000  # rows turned into Python objects between two turns of the event loop


class Reads:
    """The reads of one request: one autocommit connection, opened on first use, statements in turn.

    Resolvers and dataloaders of a request run concurrently; a connection runs one statement at a
    time, so statements queue on a lock instead of each taking a pooled connection of its own.
    A statement is shielded from cancellation: when a field fails, graphql-core cancels its sibling
    resolvers, and a statement cut off mid-flight would leave its connection closed or mid-protocol in
    the pool for the next request. The cancelled resolver stops waiting; the statement finishes first.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = asyncio.Lock()
        self._cm = None
        self._conn: AsyncConnection | None = None

    async def all(self, statement, params: dict | None = None) -> list:
        """Run a statement and return all its rows."""
        task = asyncio.ensure_future(self._all(statement, params))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_retrieve)  # nobody waits for it any more: do not warn of its outcome
            raise

    async def _all(self, statement, params: dict | None) -> list:
        async with self._lock:
            if self._conn is None:
                self._cm = self.db.reader()
                self._conn = await self._cm.__aenter__()
            try:
                result = await self._conn.execute(statement, params or {})
                rows = result.fetchmany(FETCH_SLICE)
                while len(rows) % FETCH_SLICE == 0 and rows:  # a big result: convert it in slices
                    await cooperate()
                    more = result.fetchmany(FETCH_SLICE)
                    if not more:
                        break
                    rows.extend(more)
                return rows
            except Exception as e:
                if unavailable(e):  # the connection died with the database: the next statement takes a new one
                    await self._discard()
                raise

    async def _discard(self) -> None:
        cm, self._cm, self._conn = self._cm, None, None
        if cm is not None:
            try:
                await cm.__aexit__(None, None, None)
            except Exception:  # noqa: BLE001 - the connection is gone; the pool has invalidated it
                pass

    async def first(self, statement, params: dict | None = None):
        """Run a statement and return its first row, or None."""
        rows = await self.all(statement, params)
        return rows[0] if rows else None

    async def close(self) -> None:
        """Give the connection back to the pool, once a statement still running has finished."""
        async with self._lock:
            if self._cm is not None:
                cm, self._cm, self._conn = self._cm, None, None
                try:
                    await cm.__aexit__(None, None, None)
                except DBAPIError as e:
                    log.warning("a read connection could not be returned (%s); it was dropped",
                                type(e.orig).__name__)


def _retrieve(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


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
