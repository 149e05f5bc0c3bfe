"""The `hub` command: serve, migrate, token, policy, load, train, rematch, reindex, bench."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import csv
import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from hub.golden.attributes import API_NAME
from hub.config import get_settings
from hub.db import Database, is_sqlite
from hub.errors import HubError
from hub.ops.migrate import upgrade


@contextlib.asynccontextmanager
async def _database():
    """The configured database for one command, disposed of at the end."""
    db = Database(get_settings().database_url)
    try:
        yield db
    finally:
        await db.dispose()


@contextlib.asynccontextmanager
async def _database_with_progress():
    """The command's database and its progress bars (`_Bars`), both closed at the end."""
    bars = _Bars()
    try:
        async with _database() as db:
            yield db, bars
    finally:
        bars.close()


def _run(coro):
    try:
        return asyncio.run(coro)
    except HubError as e:
        raise click.ClickException(str(e)) from None


@click.group()
def main() -> None:
    """Customer MDM hub: standardise, link and serve golden customer records."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
def serve(host: str, port: int, workers: int) -> None:
    """Run the GraphQL service, applying pending migrations first."""
    import uvicorn

    settings = get_settings()
    upgrade(settings.database_url)
    if workers > 1 and is_sqlite(settings.database_url):
        raise click.ClickException("SQLite allows one writer: use --workers 1, or PostgreSQL for more workers")
    click.echo(f"hub: GraphQL on http://{host}:{port}/graphql (database {settings.database_url})", err=True)
    with _metrics_dir(workers):
        uvicorn.run("schema.app:create_app", factory=True, host=host, port=port, workers=workers,
                    log_level="warning", access_log=False, timeout_graceful_shutdown=settings.shutdown_grace_s)


@contextlib.contextmanager
def _metrics_dir(workers: int) -> Iterator[None]:
    """Several workers share their metrics through files (prometheus-client's multiprocess mode).

    A private folder, made empty for this run (metrics of an earlier run would add up), removed at exit;
    an operator's own PROMETHEUS_MULTIPROC_DIR is emptied of metric files at start and kept.
    """
    import os
    import shutil
    import tempfile

    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
        return
    if workers <= 1:
        yield  # one process: its metrics live in memory
        return
    folder = tempfile.mkdtemp(prefix="hub-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder  # the spawned workers inherit it
    try:
        yield
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(folder, ignore_errors=True)


@main.command()
def migrate() -> None:
    """Apply Alembic migrations to the configured database."""
    url = get_settings().database_url
    upgrade(url)
    click.echo(f"migrated {url}", err=True)


@main.group()
def token() -> None:
    """Mint and revoke bearer tokens."""


@token.command("create")
@click.option("--subject", required=True, help="Who the token is for (shown as the actor in history).")
@click.option("--role", required=True, help="admin, steward, reader or source (or a role of your policy).")
@click.option("--system", default=None, help="For role source: the system it registers for.")
def token_create(subject: str, role: str, system: str | None) -> None:
    """Print a new bearer token on stdout."""
    from hub.access.tokens import create_token

    async def go() -> str:
        async with _database() as db, db.write() as session:
            return await create_token(session=session, subject=subject, role=role, system=system)

    upgrade(get_settings().database_url)
    click.echo(_run(go()))


@token.command("revoke")
@click.option("--subject", required=True)
def token_revoke(subject: str) -> None:
    """Revoke every token of a subject."""
    from hub.access.tokens import revoke_tokens

    async def go() -> int:
        async with _database() as db, db.write() as session:
            return await revoke_tokens(session=session, subject=subject)

    click.echo(f"revoked {_run(go())} token(s) of {subject}", err=True)


@main.group()
def policy() -> None:
    """List and edit the authorization policy; running servers apply changes within a second."""


async def _in_database(fn, *, write: bool):
    """Run fn(session) in one session of the configured database (a write transaction if asked)."""
    async with _database() as db, db.write() if write else db.session() as session:
        return await fn(session)


@policy.command("list")
def policy_list() -> None:
    """Print the stored policy rows, one per line, as in authz/policy.csv."""
    from hub.access.policy import current_revision, list_rows

    async def read(session):
        return await current_revision(session=session), await list_rows(session=session)

    upgrade(get_settings().database_url)
    revision, rows = _run(_in_database(read, write=False))
    for row in rows:
        click.echo(", ".join(row))
    click.echo(f"policy revision {revision}: {len(rows)} rows", err=True)


def _edit(verb: str, edit, row: tuple[str, ...], actor: str) -> None:
    """Apply one policy edit and print what changed."""
    from hub.access.policy import parse_row

    try:
        parsed = parse_row(row)
    except HubError as e:
        raise click.ClickException(str(e)) from None
    upgrade(get_settings().database_url)
    revision = _run(_in_database(lambda session: edit(session=session, row=parsed, actor=actor), write=True))
    text = ", ".join(parsed)
    if revision is None:
        click.echo(f"unchanged: {text} is {'already' if verb == 'added' else 'not'} in the policy")
    else:
        click.echo(f"{verb} {text} (policy revision {revision})")


@policy.command("add")
@click.argument("row", nargs=-1, required=True)
@click.option("--actor", default="cli:policy", show_default=True, help="Recorded in the audit event.")
def policy_add(row: tuple[str, ...], actor: str) -> None:
    """Add a row: ROLE OBJECT ACTION allow|deny (e.g. reader Customer.email read deny), or g MEMBER PARENT."""
    from hub.access.policy import add_row

    _edit("added", add_row, row, actor)


@policy.command("remove")
@click.argument("row", nargs=-1, required=True)
@click.option("--actor", default="cli:policy", show_default=True, help="Recorded in the audit event.")
def policy_remove(row: tuple[str, ...], actor: str) -> None:
    """Remove a row, written as for `hub policy add`."""
    from hub.access.policy import remove_row

    _edit("removed", remove_row, row, actor)


def read_records(path: Path) -> Iterator[dict]:
    """Yield SourceRecordInput-shaped dicts from JSONL or CSV."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                yield {"key": row.get("key", ""), "updatedAt": row.get("updatedAt") or None,
                       "attributes": {k: v for k, v in row.items() if k in API_NAME.values() and v}}
        return
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise click.ClickException(f"{path}:{n}: not JSON: {e}") from None


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--system", required=True, help="The source system the records come from.")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 5000))
@click.option("--actor", default="cli:load", show_default=True)
def load(file: Path, system: str, batch: int, actor: str) -> None:
    """Register records from JSONL or CSV, through the same path as registerRecords."""
    from tqdm import tqdm

    from hub.ingest.matcher import load_scorer
    from hub.ingest.records import RecordInput

    settings = get_settings()
    upgrade(settings.database_url)

    async def go() -> collections.Counter:
        counts: collections.Counter = collections.Counter()
        rejected: list[str] = []
        async with _database() as db:
            scorer = await load_scorer(db, settings.match_model)
            with tqdm(unit="rec", desc=f"loading {system}", file=sys.stderr) as bar:
                chunk: list[RecordInput] = []
                for obj in read_records(file):
                    chunk.append(RecordInput(str(obj.get("key") or ""), obj.get("attributes") or {},
                                             _ts(obj.get("updatedAt"))))
                    if len(chunk) == batch:
                        await _send(db, system, chunk, actor, settings, scorer, counts, rejected, bar)
                        chunk = []
                if chunk:
                    await _send(db, system, chunk, actor, settings, scorer, counts, rejected, bar)
        for line in rejected[:10]:
            click.echo(f"rejected {line}", err=True)
        return counts

    counts = _run(go())
    click.echo(json.dumps(dict(counts)))


async def _send(db, system, chunk, actor, settings, scorer, counts, rejected, bar) -> None:
    from hub.ingest.records import register_batch

    for r in await register_batch(db=db, system=system, records=chunk, actor=actor, settings=settings, scorer=scorer):
        counts[r.action] += 1
        if r.action == "REJECTED":
            rejected.append(f"{r.key}: " + "; ".join(f"{e.field}: {e.message}" for e in r.errors))
    bar.update(len(chunk))


def _ts(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.ClickException(f"updatedAt {value!r} is not an ISO date-time") from None


class _Bars:
    """A tqdm bar per stage on stderr, fed by the (stage, done, total) progress callbacks of train and rematch."""

    def __init__(self) -> None:
        self.bar, self.stage = None, None

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        from tqdm import tqdm

        if total is None:  # a message from a stage without counts
            if self.bar is not None:
                self.bar.write(stage, file=sys.stderr)  # above the bar, not through it
            else:
                click.echo(stage, err=True)
            return
        if stage != self.stage:
            self.close()
            self.bar, self.stage = tqdm(total=total, desc=stage, file=sys.stderr, unit=""), stage
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = self.stage = None


@main.command()
@click.option("--seed", default=1, show_default=True, type=int, help="Random sampling seed.")
@click.option("--max-pairs-u", default=1e7, show_default=True, type=float, help="Pairs sampled to estimate u.")
@click.option("--max-pairs-em", default=2e6, show_default=True, type=float, help="Pairs per EM session (m).")
@click.option("--note", default=None, help="Stored with the model version.")
@click.option("--actor", default="cli:train", show_default=True)
@click.option("--dry-run", is_flag=True, help="Train and print the summary; store nothing.")
@click.option("--engine", type=click.Choice(["duckdb", "spark"]), default="duckdb", show_default=True,
              help="Splink backend: embedded DuckDB, or Spark on HUB_SPARK_MASTER (pip install -e '.[spark]').")
def train(seed: int, max_pairs_u: float, max_pairs_em: float, note: str | None, actor: str, dry_run: bool,
          engine: str) -> None:
    """Re-estimate the match model on the hub's records; print the new model id on stdout."""
    from hub.ops.training import summary, train_model

    settings = get_settings()
    upgrade(settings.database_url)

    async def go():
        async with _database_with_progress() as (db, bars):
            return await train_model(db=db, seed=seed, max_pairs_u=max_pairs_u, max_pairs_em=max_pairs_em,
                                     actor=actor, note=note, dry_run=dry_run, progress=bars, engine=engine,
                                     settings=settings)

    try:
        result = _run(go())
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"trained on {result.records} records in {result.seconds:.1f}s"
               + (" (dry run: not stored)" if dry_run else f": match model {result.model_id}"), err=True)
    for line in summary(result.model):
        click.echo(line, err=True)
    if not dry_run:
        click.echo(result.model_id)


@main.command()
@click.option("--apply", "apply_", is_flag=True, help="Write the changes (default: only print the diff).")
@click.option("--show", default=0, show_default=True, type=click.IntRange(0), help="Print up to N example changes.")
@click.option("--model", default=None, help="latest, default or a stored model id (default: HUB_MATCH_MODEL).")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1), help="Changes per transaction.")
@click.option("--actor", default="rematch", show_default=True)
@click.option("--engine", type=click.Choice(["duckdb", "spark"]), default="duckdb", show_default=True,
              help="Splink backend: embedded DuckDB, or Spark on HUB_SPARK_MASTER (pip install -e '.[spark]').")
def rematch(apply_: bool, show: int, model: str | None, batch: int, actor: str, engine: str) -> None:
    """Batch-match every record and reconcile the clusters with the golden records (ids stay stable)."""
    import time

    from hub.ops.rematch import apply_rematch, examples, model_in_use, plan_rematch

    settings = get_settings()
    upgrade(settings.database_url)

    async def go():
        async with _database_with_progress() as (db, bars):
            version, model_json = await model_in_use(db=db, choice=model or settings.match_model)
            plan = await plan_rematch(db=db, settings=settings, model_json=model_json, progress=bars,
                                      model_version=version, engine=engine)
            bars.close()
            applied = None
            if apply_ and plan.changes:
                started = time.perf_counter()
                applied = await apply_rematch(db=db, plan=plan, actor=actor, size=batch, progress=bars)
                applied["seconds"] = round(time.perf_counter() - started, 3)
            return plan, applied

    plan, applied = _run(go())
    counts = plan.counts
    click.echo(f"model {plan.model_version or 'default'}, planned in {plan.seconds:.1f}s "
               f"({', '.join(f'{k} {v:.1f}s' for k, v in plan.timings.items())}): "
               + ", ".join(f"{k} {v}" for k, v in counts.items()), err=True)
    for line in examples(plan, show):
        click.echo(line)
    if applied is not None:
        click.echo("applied: " + ", ".join(f"{k} {v}" for k, v in applied.items()), err=True)
    elif plan.changes:
        click.echo("dry run: nothing written (pass --apply)", err=True)
    click.echo(json.dumps({"plan": counts, "applied": applied, "seconds": {**plan.timings, "plan": plan.seconds}}))


@main.command()
@click.option("--batch", default=2000, show_default=True, type=click.IntRange(1, 20000),
              help="Records per transaction.")
def reindex(batch: int) -> None:
    """Recompute the stored blocking keys of every record (after the key definitions changed)."""
    import dataclasses
    import time

    from hub.ops.reindex import reindex_keys

    upgrade(get_settings().database_url)

    async def go():
        async with _database_with_progress() as (db, bars):
            return await reindex_keys(db=db, batch=batch, progress=bars)

    started = time.perf_counter()
    result = _run(go())
    click.echo(f"reindexed {result.records} records in {time.perf_counter() - started:.1f}s: {result.changed} "
               f"changed, keys {result.keys_before} -> {result.keys_after}", err=True)
    click.echo(json.dumps(dataclasses.asdict(result)))


@main.group()
def erasure() -> None:
    """Right to erasure: erase a customer, list overdue erasure tasks, lift a block."""


def _task_line(row, days: int) -> str:
    from hub.privacy.erasure import task_due

    return json.dumps({"id": row.id, "customerId": row.customer_id, "system": row.system, "key": row.key,
                       "createdAt": row.created_at.isoformat(), "dueAt": task_due(row.created_at, days).isoformat()})


@erasure.command("overdue")
@click.option("--days", default=None, type=click.IntRange(0), help="Deadline in days (default HUB_ERASURE_TASK_DAYS).")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1))
def erasure_overdue(days: int | None, limit: int) -> None:
    """Print open erasure tasks past their deadline, oldest first, one JSON object a line."""
    from hub.privacy.erasure import overdue_tasks

    settings = get_settings()
    upgrade(settings.database_url)
    deadline = settings.erasure_task_days if days is None else days
    rows = _run(_in_database(lambda session: overdue_tasks(session=session, days=deadline, first=limit),
                             write=False))
    for row in rows:
        click.echo(_task_line(row, deadline))
    click.echo(f"{len(rows)} overdue erasure task(s) (deadline {deadline} days)", err=True)


@erasure.command("erase")
@click.argument("customer_id", type=int)
@click.option("--note", required=True, help="Why: the request this erasure answers.")
@click.option("--actor", default="cli:erasure", show_default=True)
def erasure_erase(customer_id: int, note: str, actor: str) -> None:
    """Erase a customer (as the eraseCustomer mutation); print the receipt as JSON."""
    from hub.privacy.erasure import erase_customer, receipt

    settings = get_settings()
    upgrade(settings.database_url)

    async def go():
        async with _database() as db:
            async with db.write() as session:
                erased = await erase_customer(session=session, customer_id=customer_id, actor=actor, note=note,
                                              settings=settings)
            async with db.session() as session:
                return await receipt(session=session, customer_id=erased)

    found = _run(go())
    t = found.tombstone
    click.echo(json.dumps({"customerId": t.customer_id, "erasedAt": t.erased_at.isoformat(), "erasedBy": t.actor,
                           "sourceRecordsErased": t.source_records, "mergedCustomerIds": t.merged_ids,
                           "removed": t.counts, "blocked": found.blocked,
                           "tasks": [{"id": r.id, "system": r.system, "key": r.key} for r in found.tasks]}))


@erasure.command("lift")
@click.argument("customer_id", type=int)
@click.option("--note", required=True, help="Why the person may be registered again.")
@click.option("--actor", default="cli:erasure", show_default=True)
def erasure_lift(customer_id: int, note: str, actor: str) -> None:
    """Lift the block of an erased customer: its records may be registered again."""
    from hub.privacy.erasure import lift_block

    upgrade(get_settings().database_url)
    erased = _run(_in_database(lambda session: lift_block(session=session, customer_id=customer_id, actor=actor,
                                                          note=note), write=True))
    click.echo(f"erasure block of customer {erased} lifted", err=True)


@main.group()
def retention() -> None:
    """Remove records past their source system's retention period."""


@retention.command("run")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 20000),
              help="Records per transaction.")
def retention_run(batch: int) -> None:
    """Remove every record past its system's retentionDays (golden records recomputed or erased); print counts."""
    import dataclasses

    from hub.privacy.retention import run_retention

    settings = get_settings()
    upgrade(settings.database_url)

    async def go():
        async with _database_with_progress() as (db, bars):
            return await run_retention(db=db, settings=settings, batch=batch, progress=bars)

    report = _run(go())
    click.echo(f"retention: {report.records} records removed, {report.recomputed} golden records recomputed, "
               f"{report.erased} erased", err=True)
    click.echo(json.dumps(dataclasses.asdict(report)))

from hub.bench.cli import bench  # noqa: E402  (the `hub bench` group lives with its capability)

main.add_command(bench)

if __name__ == "__main__":
    main()


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def backup(file: Path) -> None:
    """Write a consistent snapshot of the whole database to a new archive FILE (mode 0600: personal data)."""
    import time

    from hub.ops.backup import backup as run_backup

    async def go():
        async with _database() as db:
            return await run_backup(db, file)

    started = time.perf_counter()
    manifest = _run(go())
    rows = sum(t["rows"] for t in manifest["tables"].values())
    click.echo(f"backed up {rows} rows of {len(manifest['tables'])} tables (revision {manifest['revision']}) to "
               f"{file} in {time.perf_counter() - started:.1f}s", err=True)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def restore(file: Path) -> None:
    """Load archive FILE into the configured database, which must be empty and migrated to the archive's revision."""
    import time

    from hub.ops.backup import restore as run_restore

    async def go():
        async with _database() as db:
            return await run_restore(db, file)

    started = time.perf_counter()
    manifest = _run(go())
    rows = sum(t["rows"] for t in manifest["tables"].values())
    click.echo(f"restored {rows} rows of {len(manifest['tables'])} tables (revision {manifest['revision']}, "
               f"backed up from {manifest['dialect']} at {manifest['created_at']}) in "
               f"{time.perf_counter() - started:.1f}s", err=True)
