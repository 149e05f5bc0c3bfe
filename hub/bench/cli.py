"""`hub bench generate | run | baseline | report`."""
from __future__ import annotations

import json
import os
import sys

import click

from hub.bench.generate import PROFILES


def _count(text: str) -> int:
    """'50M', '2.5k', '20000' -> an integer."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 1e3, "m": 1e6, "b": 1e9}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if t[-1:] in "kmb" else t) * scale
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a count like 20000, 50k or 50M") from None
    if value < 1:
        raise click.BadParameter(f"{text!r} must be at least 1")
    return int(value)


def _say(msg: str) -> None:
    click.echo(f"hub bench: {msg}", err=True)


def _write_json(path: str, obj: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)


def _write_html(path: str, result: dict, baseline: dict | None, sizing: dict | None) -> None:
    from hub.bench.report import render

    with open(path, "w", encoding="utf-8") as f:
        f.write(render(result, baseline, sizing))


def _check_data(folder: str) -> None:
    """A data folder as `hub bench generate` writes it, or a clear error."""
    missing = [f for f in ("systems.json", "truth.csv") if not os.path.exists(os.path.join(folder, f))]
    if missing:
        raise click.ClickException(f"{folder} lacks {' and '.join(missing)}: give a folder made by `hub bench generate`")


def _load_json(path: str | None) -> dict | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise click.ClickException(f"cannot read {path}: {e}") from None


@click.group()
def bench() -> None:
    """Benchmark and size the hub on generated data with known truth (needs: pip install -e '.[bench]')."""


@bench.command()
@click.option("--people", required=True, type=str, help="How many people (e.g. 10000, 50k, 1M).")
@click.option("--profile", default="full", show_default=True, type=click.Choice(list(PROFILES)),
              help="Attribute mix: " + "; ".join(f"{k}: {v[0]}" for k, v in PROFILES.items()))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write the data set to.")
def generate(people: str, profile: str, seed: int, out: str) -> None:
    """Write multi-source customer records (one JSONL file per system) and the truth to OUT."""
    from hub.bench.generate import write

    n = _count(people)
    try:
        manifest = write(out, n, seed=seed, profile=profile)
    except RuntimeError as e:
        raise click.ClickException(str(e)) from None
    rate = manifest["records"] / manifest["seconds"] if manifest["seconds"] else 0
    _say(f"{manifest['people']} people, {manifest['records']} records in {manifest['seconds']} s "
         f"({rate:,.0f} records/s) -> {out}")
    click.echo(json.dumps(manifest))


def _options(batch, concurrency, single, reads, steward, seed):
    from hub.bench.run import Options

    return Options(batch=batch, concurrency=concurrency, single=single, reads=reads, steward=steward, seed=seed)


@bench.command("run")
@click.option("--data", type=click.Path(exists=True, file_okay=False), help="A folder made by `hub bench generate`.")
@click.option("--url", default=None, help="GraphQL endpoint of a running, empty hub.")
@click.option("--token", default=lambda: os.environ.get("HUB_TOKEN"), help="Admin token for --url (or HUB_TOKEN).")
@click.option("--embedded", is_flag=True, help="Start `hub serve` on a temporary SQLite file (or --database-url).")
@click.option("--database-url", default=None, help="With --embedded: an empty database to use instead of SQLite.")
@click.option("--port", default=None, type=int, help="With --embedded: the port (default: a free one).")
@click.option("--workers", default=1, show_default=True, type=int, help="With --embedded: hub serve --workers.")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 5000))
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--single", default=200, show_default=True, type=click.IntRange(0), help="Records sent one at a time.")
@click.option("--reads", default=200, show_default=True, type=click.IntRange(0))
@click.option("--steward", default=500, show_default=True, type=click.IntRange(0),
              help="Pending candidates a perfect steward resolves.")
@click.option("--seed", default=1, show_default=True, type=int, help="Arrival order and sampling.")
@click.option("--sizes", default=None, help="Sizing: people per run, e.g. 2000,5000,10000 (generates each).")
@click.option("--profile", default="full", show_default=True, type=click.Choice(list(PROFILES)),
              help="With --sizes: the attribute mix to generate.")
@click.option("--project", default=None, help="With --sizes: records to project the figures to (e.g. 50M).")
@click.option("--workdir", default=None, type=click.Path(file_okay=False),
              help="With --sizes: where data and results go (default: bench/data/sizes).")
@click.option("--baseline", "baseline_path", default=None, help="A `hub bench baseline` JSON to show beside.")
@click.option("--json", "json_path", default=None, help="Result JSON (default: DATA/bench-result.json).")
@click.option("--html", "html_path", default=None, help="HTML report (default: DATA/bench-report.html).")
def run_cmd(data, url, token, embedded, database_url, port, workers, batch, concurrency, single, reads, steward, seed,
            sizes, profile, project, workdir, baseline_path, json_path, html_path) -> None:
    """Drive a hub (--url/--token, or --embedded) with a data set; write JSON and an HTML report."""
    import asyncio

    try:
        import httpx  # noqa: F401
    except ImportError:
        raise click.ClickException("hub bench run needs httpx: pip install -e '.[bench]'") from None
    from hub.bench.run import HubError, environment, run, run_embedded

    if embedded == bool(url):
        raise click.UsageError("give either --embedded or --url (with --token)")
    if url and not token:
        raise click.UsageError("--url needs --token (an admin token of that hub) or HUB_TOKEN")
    if database_url and not embedded:
        raise click.UsageError("--database-url goes with --embedded")
    if url and sizes:
        raise click.UsageError("--sizes needs --embedded: each size starts on an empty database")
    if not sizes and not data:
        raise click.UsageError("give --data (or --sizes to generate data sets)")
    if project and not sizes:
        raise click.UsageError("--project goes with --sizes (or merge separate runs with `hub bench report`)")
    if data:
        _check_data(data)
    opts = _options(batch, concurrency, single, reads, steward, seed)
    baseline = _load_json(baseline_path)

    def one(folder: str) -> dict:
        if embedded:
            return run_embedded(folder, opts, database_url=database_url, port=port, workers=workers, progress=_say)
        result = asyncio.run(run(folder, url, token, opts, progress=_say))
        result["environment"] = {**environment(), "database": "unknown (a hub at --url)"}
        result["hub"] = url
        return result

    try:
        if sizes:
            _sizes_run(sizes, profile, project, workdir, one, baseline, json_path, html_path, database_url)
            return
        result = one(data)
    except HubError as e:
        raise click.ClickException(str(e)) from None
    except RuntimeError as e:
        raise click.ClickException(str(e)) from None
    json_path = json_path or os.path.join(data, "bench-result.json")
    html_path = html_path or os.path.join(data, "bench-report.html")
    _write_json(json_path, result)
    _write_html(html_path, result, baseline, None)
    _summary(result, baseline)
    _say(f"wrote {json_path} and {html_path}")


def _sizes_run(sizes, profile, project, workdir, one, baseline, json_path, html_path, database_url) -> None:
    from hub.bench.generate import write
    from hub.bench.sizing import fit

    if database_url:
        raise click.UsageError("--sizes runs each size on its own temporary SQLite database; for PostgreSQL "
                               "run each size with --database-url and merge them with `hub bench report`")
    people = [_count(s) for s in sizes.split(",") if s.strip()]
    if len(people) < 2:
        raise click.UsageError("--sizes needs at least two sizes")
    workdir = workdir or os.path.join("bench", "data", "sizes")
    results = []
    for n in sorted(people):
        folder = os.path.join(workdir, f"{profile}-{n}")
        if not os.path.exists(os.path.join(folder, "manifest.json")):
            _say(f"generating {n} people ({profile}) -> {folder}")
            write(folder, n, profile=profile)
        _say(f"running {folder}")
        result = one(folder)
        _write_json(os.path.join(folder, "bench-result.json"), result)
        results.append(result)
    sizing = fit(results, _count(project) if project else None)
    largest = results[-1]
    merged = {**largest, "sizing": sizing}
    json_path = json_path or os.path.join(workdir, "bench-result.json")
    html_path = html_path or os.path.join(workdir, "bench-report.html")
    _write_json(json_path, merged)
    _write_html(html_path, largest, baseline, sizing)
    _summary(largest, baseline)
    _say(f"wrote {json_path} and {html_path}")


def _summary(result: dict, baseline: dict | None) -> None:
    q = (result.get("quality") or {}).get("pairwise") or {}
    qs = (result.get("quality_after_steward") or {}).get("pairwise") or {}
    line = (f"F1 {q.get('f1')} (P {q.get('precision')} R {q.get('recall')})"
            + (f", after steward {qs.get('f1')}" if qs else "")
            + f"; load {result['load']['records_per_s']} rec/s; register p50 {result['register_one_ms'].get('p50')} ms; "
            f"read p50 {result['read_ms'].get('p50')} ms; search p50 {result['search_ms'].get('p50')} ms; "
            f"queue {result['queue']['pending']}")
    if baseline:
        line += f"; baseline F1 {baseline['quality']['pairwise']['f1']}"
    _say(line)


@bench.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--threshold", default=0.95, show_default=True, type=click.FloatRange(0, 1),
              help="Cluster at this match probability (the hub's link threshold by default).")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--json", "json_path", default=None, help="Output (default: DATA/baseline.json).")
def baseline(data: str, threshold: float, seed: int, json_path: str | None) -> None:
    """A plain Splink 5 batch model on the same data (trained, predicted, clustered), scored against the truth."""
    from hub.bench.baseline import run_baseline

    _check_data(data)
    result = run_baseline(data, threshold=threshold, seed=seed, progress=_say)
    json_path = json_path or os.path.join(data, "baseline.json")
    _write_json(json_path, result)
    q = result["quality"]["pairwise"]
    _say(f"baseline F1 {q['f1']} (P {q['precision']} R {q['recall']}) in {result['seconds']} s -> {json_path}")


@bench.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--baseline", "baseline_path", default=None, help="A `hub bench baseline` JSON to show beside.")
@click.option("--project", default=None, help="Records to project the figures to (e.g. 50M); needs 2+ results.")
@click.option("--html", "html_path", required=True, help="The report to write.")
@click.option("--json", "json_path", default=None, help="Also write the merged JSON (with the sizing fit).")
def report(results, baseline_path, project, html_path, json_path) -> None:
    """Merge `hub bench run` results (one per size) into one HTML report, with sizing when 2+ sizes."""
    from hub.bench.sizing import fit

    loaded = [_load_json(p) for p in results]
    loaded.sort(key=lambda r: r["data"]["records"])
    sizing = fit(loaded, _count(project) if project else None) if len(loaded) >= 2 else None
    if project and not sizing:
        raise click.UsageError("--project needs results of at least two sizes")
    _write_html(html_path, loaded[-1], _load_json(baseline_path), sizing)
    if json_path:
        _write_json(json_path, {**loaded[-1], "sizing": sizing})
    if sizing:
        for name, f in sizing["figures"].items():
            growth = (f"b = {f['exponent']}" if f.get("exponent") is not None
                      else f"+{f['per_million_records']} {f['unit']} per 1M records"
                      if f.get("per_million_records") is not None else "measured")
            projected = f"projected {f['projected']:,} {f['unit']}" if f.get("projected") is not None else "not projected"
            click.echo(f"{name}: {f['values']} {f['unit']}; {growth}; {projected}")
    _say(f"wrote {html_path}")


if __name__ == "__main__":  # pragma: no cover
    bench(sys.argv[1:])
