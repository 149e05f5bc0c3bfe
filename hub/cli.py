"""The `hub` command: serve, migrate, token, policy, load, train, rematch, reindex, keys, erasure, retention,
subject, bench."""
from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import sys
from pathlib import Path

import click

from hub.config import get_settings
from hub.db import Database, is_sqlite
from hub.errors import HubError
from hub.models.types import SealingNotConfigured
from hub.logs import configure_logging, mask_url
from hub.ops.migrate import upgrade
from hub.privacy.keys import KeyMaterialError
from hub.privacy.sealing import configure as configure_sealing
from hub.validation import safe_echo


@contextlib.asynccontextmanager
async def _database():
    """The configured database for one command, disposed of at the end."""
    settings = get_settings()
    configure_sealing(settings)
    db = Database(settings.database_url)
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
    except (HubError, KeyMaterialError, SealingNotConfigured) as e:
        raise click.ClickException(str(e)) from None


@click.group()
@click.version_option(package_name="customer-mdm-hub", prog_name="hub", message="%(prog)s %(version)s")
def main() -> None:
    """Customer MDM hub: standardise, link and serve golden customer records."""
    settings = get_settings()
    configure_logging("WARNING" if settings.log_level == "INFO" else settings.log_level, settings.log_format)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
def serve(host: str, port: int, workers: int) -> None:
    """Run the GraphQL service, applying pending migrations first."""
    import uvicorn

    from hub.privacy.sealing import verify_keys

    settings = get_settings()
    if workers > 1 and is_sqlite(settings.database_url):
        raise click.ClickException("SQLite allows one writer: use --workers 1, or PostgreSQL for more workers")
    _migrate(settings.database_url)

    async def check() -> None:
        async with _database() as db:
            await verify_keys(db)

    _run(check())  # keys that cannot open the stored values: a clear refusal here, not errors per request
    click.echo(f"hub: GraphQL on http://{host}:{port}/graphql "
               f"(database {mask_url(settings.database_url)})", err=True)
    # log_config=None: uvicorn's own loggers go through the hub's handler (schema.app.serve_app)
    with _metrics_dir(workers):
        uvicorn.run("schema.app:serve_app", factory=True, host=host, port=port, workers=workers,
                    log_level="warning", access_log=False, log_config=None,
                    timeout_graceful_shutdown=settings.shutdown_grace_s)
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
    _migrate(url)
    click.echo(f"migrated {mask_url(url)}", err=True)


def _migrate(url: str) -> None:
    """Apply pending migrations; key problems (the encryption migration needs the keys) are the operator's."""
    try:
        upgrade(url)
    except (KeyMaterialError, SealingNotConfigured) as e:
        raise click.ClickException(str(e)) from None


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


LOAD_HELP = """Register records from a JSONL or CSV file, through the same path and checks as registerRecords.

\b
JSONL: one SourceRecordInput object a line: {"key": "C-1", "updatedAt": "2026-05-01T12:00:00Z",
       "attributes": {"givenName": "Jane", "email": "jane@example.com"}}
CSV:   a header naming key, optionally updatedAt, and attribute columns (givenName, familyName, dateOfBirth,
       email, phone, addressLine1, addressLine2, locality, postcode, region, country, nationalId); an empty
       cell is an absent value. An unknown column refuses the file before anything is loaded.

\b
A line that is not a record (not JSON, an array, an unknown field or attribute, a value that is not a
string, an updatedAt that is not ISO 8601) is skipped and reported with its line number; so is a record
that registration rejects (a bad key, an updatedAt out of range or too far in the future, nothing that
identifies a person). A bad value (an impossible birth date, a bad email) is a field error: the value is
left out and the record goes in, as with registerRecords.

\b
Commits: the records of every --batch lines are one transaction, committed before the next lines are
read. A failure that is not about the data (the database goes away) stops the load: the batches before
it stay committed, and running the same file again is safe (records already loaded come back UNCHANGED).

\b
Output: progress and a summary on stderr (line numbers, actions, field names and counts: never a value);
on stdout one JSON object {"lines", "actions", "fieldErrors", "rejectedLines"}. --errors FILE writes one
JSON object per rejected or flagged line ({"line", "key", "action", "errors": [{"field", "message"}],
"input"}): its messages and "input" quote what the line held, so treat that file like the data itself.
Exit status 1 when any line was rejected, else 0.
"""


@main.command(help=LOAD_HELP)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--system", required=True, help="The source system the records come from.")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 5000),
              help="Lines per transaction.")
@click.option("--errors", "errors_path", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              default=None, help="Write every rejected or flagged line, with its reasons, to this JSONL file.")
@click.option("--actor", default="cli:load", show_default=True)
def load(file: Path, system: str, batch: int, errors_path: Path | None, actor: str) -> None:
    from tqdm import tqdm

    from hub.ingest.files import read_lines
    from hub.ingest.matcher import load_scorer

    settings = get_settings()
    upgrade(settings.database_url)
    batch = min(batch, settings.max_batch)
    report = _LoadReport(errors_path)

    async def go() -> None:
        async with _database() as db:
            scorer = await load_scorer(db, settings.match_model)
            with tqdm(unit="rec", desc=f"loading {system}", file=sys.stderr) as bar:
                chunk: list = []   # the lines since the last batch, refused ones too: reported in file order
                for line in read_lines(file):
                    chunk.append(line)
                    if len(chunk) == batch:
                        await _send(db, system, chunk, actor, settings, scorer, report, bar)
                        chunk = []
                if chunk:
                    await _send(db, system, chunk, actor, settings, scorer, report, bar)

    try:
        _run(go())
    except ValueError as e:  # a CSV header the loader cannot map
        raise click.ClickException(str(e)) from None
    finally:
        report.close()
    report.print_summary()
    click.echo(json.dumps(report.summary()))
    if report.rejected:
        sys.exit(1)


async def _send(db, system, chunk, actor, settings, scorer, report, bar) -> None:
    """Register the records among these lines as one batch (one transaction); report every line in order."""
    from hub.ingest.records import register_batch

    good = [line for line in chunk if line.record is not None]
    results = iter(await register_batch(db=db, system=system, records=[line.record for line in good], actor=actor,
                                        settings=settings, scorer=scorer) if good else [])
    for line in chunk:
        if line.record is None:
            report.add(line, "REJECTED", line.errors)
        else:
            r = next(results)
            report.add(line, r.action, r.errors)
    bar.update(len(chunk))


class _LoadReport:
    """Counts by action and by field error; the errors file; the few examples shown on the terminal."""

    SHOWN = 10

    def __init__(self, errors_path: Path | None) -> None:
        self.actions: collections.Counter = collections.Counter()
        self.field_errors: collections.Counter = collections.Counter()
        self.lines = self.rejected = self.flagged = 0
        self.examples: list[str] = []
        self.errors_path = errors_path
        self.errors_file = errors_path.open("w", encoding="utf-8") if errors_path is not None else None

    def add(self, line, action: str, errors: list) -> None:
        self.lines += 1
        self.actions[action] += 1
        for e in errors:
            self.field_errors[e.field] += 1
        if action == "REJECTED":
            self.rejected += 1
        elif errors:
            self.flagged += 1
        if action == "REJECTED" or errors:
            if len(self.examples) < self.SHOWN:
                fields = ", ".join(dict.fromkeys(e.field for e in errors))
                self.examples.append(f"line {line.number}: {action.lower()} ({fields})")
            if self.errors_file is not None:
                key = line.record.key if line.record is not None else None
                self.errors_file.write(json.dumps({
                    "line": line.number, "key": safe_echo(key) if key is not None else None, "action": action,
                    "errors": [{"field": e.field, "message": e.message} for e in errors],
                    "input": safe_echo(line.text, len(line.text))}, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self.errors_file is not None:
            self.errors_file.close()

    def summary(self) -> dict:
        return {"lines": self.lines, "actions": dict(sorted(self.actions.items())),
                "fieldErrors": dict(self.field_errors.most_common()), "rejectedLines": self.rejected}

    def print_summary(self) -> None:
        """The outcome on stderr: counts, field names and line numbers, never a value of a record."""
        for example in self.examples:
            click.echo(example, err=True)
        if self.rejected + self.flagged > len(self.examples):
            click.echo(f"... {self.rejected + self.flagged - len(self.examples)} more", err=True)
        actions = ", ".join(f"{n} {a}" for a, n in sorted(self.actions.items())) or "nothing"
        click.echo(f"{self.lines} lines: {actions}", err=True)
        if self.field_errors:
            click.echo("field errors: " + ", ".join(f"{f} {n}" for f, n in self.field_errors.most_common()), err=True)
        if self.rejected or self.flagged:
            where = (f"reasons in {self.errors_path}" if self.errors_path is not None
                     else "pass --errors FILE for the reasons")
            click.echo(f"{self.rejected} lines rejected, {self.flagged} stored with field errors; {where}", err=True)
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
@click.option("--no-evaluate", is_flag=True, help="Store the candidate without planning a rematch with it.")
@click.option("--engine", type=click.Choice(["duckdb", "spark"]), default="duckdb", show_default=True,
              help="Splink backend: embedded DuckDB, or Spark on HUB_SPARK_MASTER (pip install -e '.[spark]').")
def train(seed: int, max_pairs_u: float, max_pairs_em: float, note: str | None, actor: str, dry_run: bool,
          no_evaluate: bool, engine: str) -> None:
    """Re-estimate the match model on the hub's records; store it as a candidate (see `hub model promote`),
    evaluated against the promoted one; print the new model id on stdout."""
    from hub.ops.training import summary, train_model

    settings = get_settings()
    upgrade(settings.database_url)

    async def go():
        async with _database_with_progress() as (db, bars):
            result = await train_model(db=db, seed=seed, max_pairs_u=max_pairs_u, max_pairs_em=max_pairs_em,
                                       actor=actor, note=note, dry_run=dry_run, progress=bars, engine=engine,
                                       settings=settings)
            evaluation = None
            if not dry_run and not no_evaluate:
                from hub.ops.models import evaluate

                evaluation = await evaluate(db=db, settings=settings, model_id=result.model_id,
                                            model_json=result.model, progress=bars)
            bars.close()
            return result, evaluation

    try:
        result, evaluation = _run(go())
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"trained on {result.records} records in {result.seconds:.1f}s"
               + (" (dry run: not stored)" if dry_run else f": match model {result.model_id} (candidate)"), err=True)
    from matching.train import report_lines

    for line in report_lines(result.model) + summary(result.model) + _evaluation_lines(evaluation):
        click.echo(line, err=True)
    if not dry_run:
        click.echo(f"use it: hub model promote {result.model_id}", err=True)
        click.echo(result.model_id)


@main.command()
@click.option("--apply", "apply_", is_flag=True, help="Write the changes (default: only print the diff).")
@click.option("--show", default=0, show_default=True, type=click.IntRange(0), help="Print up to N example changes.")
@click.option("--model", default=None, help="latest, default or a stored model id (default: HUB_MATCH_MODEL).")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1), help="Changes per transaction.")
@click.option("--actor", default="rematch", show_default=True)
@click.option("--accept-splits", is_flag=True,
              help="Apply even when the plan splits more than HUB_REMATCH_MAX_SPLIT_SHARE of golden records.")
@click.option("--engine", type=click.Choice(["duckdb", "spark"]), default="duckdb", show_default=True,
              help="Splink backend: embedded DuckDB, or Spark on HUB_SPARK_MASTER (pip install -e '.[spark]').")
def rematch(apply_: bool, show: int, model: str | None, batch: int, actor: str, accept_splits: bool,
            engine: str) -> None:
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
                _plan_summary(plan)   # always before anything is written
                counts = plan.counts
                share = counts["splits"] / counts["golden"] if counts["golden"] else 0.0
                if share > settings.rematch_max_split_share and not accept_splits:
                    raise click.ClickException(
                        f"the plan splits {counts['splits']} of {counts['golden']} golden records ({share:.2%}), "
                        f"more than HUB_REMATCH_MAX_SPLIT_SHARE {settings.rematch_max_split_share:.2%}: nothing "
                        f"written. Look at the changes (--show N), then pass --accept-splits to apply them")
                started = time.perf_counter()
                applied = await apply_rematch(db=db, plan=plan, actor=actor, size=batch, progress=bars)
                applied["seconds"] = round(time.perf_counter() - started, 3)
            return plan, applied

    plan, applied = _run(go())
    counts = plan.counts
    if applied is None:
        _plan_summary(plan)
    for line in examples(plan, show):
        click.echo(line)
    if applied is not None:
        click.echo("applied: " + ", ".join(f"{k} {v}" for k, v in applied.items()), err=True)
    elif plan.changes:
        click.echo("dry run: nothing written (pass --apply)", err=True)
    click.echo(json.dumps({"plan": counts, "applied": applied, "seconds": {**plan.timings, "plan": plan.seconds}}))


def _plan_summary(plan) -> None:
    click.echo(f"model {plan.model_version or 'default'}, planned in {plan.seconds:.1f}s "
               f"({', '.join(f'{k} {v:.1f}s' for k, v in plan.timings.items())}): "
               + ", ".join(f"{k} {v}" for k, v in plan.counts.items()), err=True)


def _evaluation_lines(evaluation: dict | None) -> list[str]:
    if not evaluation:
        return []
    r = evaluation["rematch"]
    return [f"against the model in use ({evaluation['against']}), a rematch with it would: merge {r['merged_away']} "
            f"golden records into {r['merges']}, split {r['splits']} of {r['golden']} "
            f"({evaluation['split_share']:.2%}), move {r['records_moved']} records, create {r['new_golden']}",
            f"  golden record sizes now {evaluation['golden_sizes_now']}, after {evaluation['cluster_sizes']}",
            *(f"  e.g. {line}" for line in evaluation["examples"][:5]),
            *(f"  steward decisions ({lab['labels']}: {lab['positive']} merges, {lab['negative']} kept apart), "
              f"{who}: agrees with {lab['agreement']:.1%}, precision {lab['precision']}, recall {lab['recall']}"
              for who, lab in (evaluation.get("steward_labels") or {}).items() if lab.get("labels"))]


@main.group()
def model() -> None:
    """Match model versions: list, show, promote, rollback."""


@model.command("list")
def model_list() -> None:
    """Every stored version, newest first (status: candidate, promoted, retired)."""
    from hub.ops.models import list_models

    async def go():
        async with _database() as db:
            return await list_models(db=db)

    upgrade(get_settings().database_url)
    for row in _run(go()):
        click.echo(f"{row['id']}\t{row['status']}\t{row['created_at']:%Y-%m-%d %H:%M}\t{row['records']} records"
                   f"\t{row['seconds']:.1f}s\t{row['actor']}" + (f"\t{row['note']}" if row["note"] else ""))


@model.command("show")
@click.argument("model_id", type=int)
def model_show(model_id: int) -> None:
    """A version's training report, parameters and evaluation."""
    from hub.errors import NotFound
    from hub.ops.models import get_model
    from hub.ops.training import summary
    from matching.train import report_lines

    async def go():
        async with _database() as db:
            return await get_model(db=db, model_id=model_id)

    upgrade(get_settings().database_url)
    try:
        row = _run(go())
    except NotFound as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"match model {row['id']}: {row['status']}, trained {row['created_at']:%Y-%m-%d %H:%M} by {row['actor']} "
               f"on {row['records']} records in {row['seconds']:.1f}s"
               + (f", promoted {row['promoted_at']:%Y-%m-%d %H:%M}" if row["promoted_at"] else ""))
    for line in report_lines(row["model"]) + summary(row["model"]) + _evaluation_lines(row["evaluation"]):
        click.echo(line)


@model.command("report")
@click.argument("model_id", type=int)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the HTML files.")
@click.option("--waterfall-pairs", default=20, show_default=True, type=click.IntRange(1, 500))
def model_report(model_id: int, out: str, waterfall_pairs: int) -> None:
    """Splink's charts for a stored model on the hub's records, as offline HTML (some show record values)."""
    import logging

    from hub.errors import NotFound
    from hub.ops.model_report import write_report

    settings = get_settings()
    upgrade(settings.database_url)
    logging.getLogger("splink").setLevel(logging.WARNING)

    async def go():
        async with _database() as db:
            return await write_report(db=db, settings=settings, model_id=model_id, out=out,
                                      waterfall_pairs=waterfall_pairs)

    try:
        files = _run(go())
    except NotFound as e:
        raise click.ClickException(str(e)) from None
    for path in files:
        click.echo(path)


@model.command("promote")
@click.argument("model_id", type=int)
def model_promote(model_id: int) -> None:
    """Use this version for registration and `hub rematch` (HUB_MATCH_MODEL=latest); the current one is retired."""
    from hub.errors import NotFound
    from hub.ops.models import promote

    async def go():
        async with _database() as db:
            return await promote(db=db, model_id=model_id)

    upgrade(get_settings().database_url)
    try:
        before = _run(go())
    except NotFound as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"match model {model_id} promoted (was: {before or 'the shipped model'}); running servers pick it "
               f"up when restarted; `hub rematch` re-matches stored records with it")


@model.command("rollback")
def model_rollback() -> None:
    """Retire the promoted version and promote the one promoted before it (none: the shipped model)."""
    from hub.errors import BadInput
    from hub.ops.models import rollback

    async def go():
        async with _database() as db:
            return await rollback(db=db)

    upgrade(get_settings().database_url)
    try:
        retired, now = _run(go())
    except BadInput as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"match model {retired} retired; in use: {now or 'the shipped model'}")


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


@main.group()
def keys() -> None:
    """Key material for personal data at rest: create, rotate (while the hub serves), retire, status."""


@keys.command("init")
@click.option("--stdout", "to_stdout", is_flag=True,
              help="Print fresh key material instead of writing HUB_KEY_FILE (for HUB_KEYS or a secret store).")
def keys_init(to_stdout: bool) -> None:
    """Write a new key file at HUB_KEY_FILE (owner-only); refuses to overwrite an existing one."""
    from hub.privacy.rotation import init_keys, new_key_text

    if to_stdout:
        click.echo(new_key_text(), nl=False)
        return
    try:
        path = init_keys(get_settings())
    except KeyMaterialError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"wrote new keys to {path} (mode 0600): back it up, losing it loses the encrypted values", err=True)


def _report_line(report) -> str:
    keys_used = ", ".join(f"{kid}: {n}" for kid, n in sorted(report.by_key.items())) or "none"
    return f"{report.rows} rows read; sealed values by key: {keys_used}; clear values to seal: {report.clear}"


@keys.command("rotate")
@click.option("--resume", is_flag=True, help="Add no key: finish re-encrypting under the active key.")
@click.option("--key-id", default=None, help="Id of the new key (default k<N>).")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 20000), help="Rows per transaction.")
def keys_rotate(resume: bool, key_id: str | None, batch: int) -> None:
    """Add a key, make it active and re-encrypt every sealed value under it, in batches, while the hub serves."""
    from hub.privacy.rotation import rotate

    settings = get_settings()
    _migrate(settings.database_url)

    async def go():
        async with _database_with_progress() as (db, bars):
            return await rotate(db, settings, key_id=key_id, resume=resume, batch=batch, progress=bars)

    active, report = _run(go())
    click.echo(f"active key {active}: {report.rewritten} rows re-encrypted; {_report_line(report)}", err=True)
    if report.old(active):
        raise click.ClickException(f"{report.old(active)} values are still under older keys (a busy hub wrote them "
                                   "meanwhile): run `hub keys rotate --resume` again")
    click.echo("older keys are kept until `hub keys retire` confirms no value needs them", err=True)


@keys.command("retire")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 20000))
def keys_retire(batch: int) -> None:
    """Remove the keys no stored value is sealed under any more (checks every value first)."""
    from hub.privacy.rotation import retire

    settings = get_settings()

    async def go():
        async with _database_with_progress() as (db, bars):
            return await retire(db, settings, batch=batch, progress=bars)

    retired, report = _run(go())
    click.echo(f"retired {', '.join(retired) or 'no key'}; {_report_line(report)}", err=True)


@keys.command("status")
def keys_status() -> None:
    """Count the stored sealed values per key id (and clear values still to seal); prints no key material."""
    from hub.privacy.rotation import walk
    from hub.privacy.sealing import sealer

    async def go():
        async with _database_with_progress() as (db, bars):
            return await walk(db, fix=False, progress=bars)

    report = _run(go())
    click.echo(json.dumps({"active": sealer().ring.active_id, "keys": [kid for kid, _ in sealer().ring.enc_keys],
                           "sealed_by_key": dict(report.by_key), "clear": report.clear, "rows": report.rows}))


def _write_private(path: Path, text: str) -> None:
    """Write a file of personal data readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


@main.group()
def subject() -> None:
    """Data subject requests: what the hub holds on a person."""


@subject.command("export")
@click.argument("customer_id", type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON document here (default: stdout); the summary goes beside it as .md.")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the readable summary (Markdown) here instead.")
@click.option("--actor", default="cli:subject", show_default=True, help="Recorded in the audit of sensitive reads.")
def subject_export(customer_id: int, out: Path | None, summary_path: Path | None, actor: str) -> None:
    """Everything the hub holds on the person behind CUSTOMER_ID (a merged-away id: its survivor)."""
    from authz import Authorizer
    from hub.access.policy import list_rows
    from hub.golden.attributes import STORAGE_NAME
    from hub.privacy.audit import write_reads
    from hub.privacy.subject import subject_access

    upgrade(get_settings().database_url)

    async def go():
        async with _database() as db:
            async with db.session() as session:
                rows = await list_rows(session=session)
                auth = Authorizer(rows or None)
                sensitive = [f for f in STORAGE_NAME if auth.audited("admin", "Customer", f)]
                found = await subject_access(session=session, customer_id=customer_id, sensitive=sensitive)
            if found.reads:  # the export discloses these: audited like any admin read
                async with db.write(lock=False) as session:
                    await write_reads(session, found.reads, subject=actor, role="admin")
            return found

    found = _run(go())
    text = json.dumps(found.document, indent=2, ensure_ascii=False)
    if out is None:
        click.echo(text)
    else:
        _write_private(out, text + "\n")
        summary_path = summary_path or out.with_suffix(".md")
    if summary_path is not None:
        _write_private(summary_path, found.summary)
        click.echo(f"wrote {out or 'stdout'} and {summary_path} (customer {found.customer_id})", err=True)
    else:
        click.echo(found.summary, err=True)


@main.command()
@click.option("--after", type=click.IntRange(0), default=None,
              help="Start after this position (default: the consumer's stored position, else the newest change).")
@click.option("--follow", is_flag=True, help="Keep waiting for new changes (default: stop at the end).")
@click.option("--kinds", default="", help="Comma-separated kinds to keep, e.g. MERGED,MERGED_AWAY (default: all).")
@click.option("--role", default="admin", show_default=True, help="Whose view of the values to print.")
@click.option("--consumer", default=None,
              help="A durable consumer name: resume from its stored position and store progress after each "
                   "batch printed (the outbox keeps what it has not passed).")
def events(after: int | None, follow: bool, kinds: str, role: str, consumer: str | None) -> None:
    """Print committed golden-record changes as JSON lines, in commit order."""
    from hub.events import (
        View, follow as follow_stream, message, save_position, start_position, stored_authorizer, visible_to,
    )
    from hub.events.outbox import check_name, consumer_position

    settings = get_settings()
    wanted_kinds = [k.strip().upper() for k in kinds.split(",") if k.strip()] or None

    async def go() -> None:
        async with _database() as db:
            view = View(await stored_authorizer(db), role)
            name = check_name(consumer) if consumer is not None else None
            async with db.reader() as conn:
                start = after
                if start is None and name is not None:
                    start = await consumer_position(conn, name)
                position = await start_position(conn, start)
            async for rows in follow_stream(db, after=position, kinds=wanted_kinds, poll=settings.events_poll,
                                            forever=follow):
                shown = await visible_to(db, rows, view.purposes)
                sys.stdout.write("".join(json.dumps(message(r, view)) + "\n" for r in shown))
                sys.stdout.flush()
                if name is not None:
                    async with db.engine.begin() as conn:
                        await save_position(conn, name, rows[-1].position)

    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        _run(go())


@main.command()
@click.option("--broker", default=None, help="The broker to publish to (default: HUB_PUBLISH, else nats).")
def publish(broker: str | None) -> None:
    """Publish committed changes to the message broker until stopped (Ctrl-C); resumes where it stopped."""
    import signal

    from hub.events import View, publisher_from, relay, retention, stored_authorizer

    settings = get_settings()
    upgrade(settings.database_url)
    try:
        publisher = publisher_from(settings, broker)
    except ValueError as e:
        raise click.ClickException(str(e)) from None

    async def go() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with _database() as db:
            authorizer = await stored_authorizer(db)
            click.echo(f"hub: publishing changes to {settings.nats_url} as consumer {publisher.name!r} "
                       f"(role {settings.publish_role})", err=True)
            return await relay(db, publisher, lambda: View(authorizer, settings.publish_role),
                               poll=settings.events_poll, retention=retention(settings), stop=stop)

    sent = _run(go())
    click.echo(f"published {sent} changes", err=True)


@main.command("events-prune")
@click.option("--forget", "forget", multiple=True, help="First forget this durable consumer (it no longer holds "
                                                       "the outbox back); repeatable.")
def events_prune(forget: tuple[str, ...]) -> None:
    """Drop outbox rows older than HUB_EVENTS_RETENTION_HOURS that every durable consumer has passed."""
    from hub.events import drop_consumer, prune, retention

    async def go() -> int:
        async with _database() as db, db.engine.begin() as conn:
            for name in forget:
                if not await drop_consumer(conn, name):
                    raise click.ClickException(f"no durable consumer {name!r}")
            return await prune(conn, retention=retention(get_settings()))

    click.echo(f"pruned {_run(go())} outbox rows", err=True)


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
