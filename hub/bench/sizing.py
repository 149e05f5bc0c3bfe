"""Sizing: fit how each figure grows with the number of records over runs at two or more sizes, and
project it to a size the user names.

Quantities that add up with the data (database size, review queue) are fitted as
y = c + k * n (a fixed part plus a cost per record); rates and latencies as y = a * n^b (least
squares in log-log), whose exponent b says how they grow: b = 0 flat, b = 0.5 like a square root."""
from __future__ import annotations

import math

AFFINE = {"review queue", "database size"}
# figure name -> (unit, how to read it from a result)
FIGURES = {
    "bulk load rate": ("records/s", lambda r: (r.get("load") or {}).get("records_per_s")),
    "one-record registration p50": ("ms", lambda r: (r.get("register_one_ms") or {}).get("p50")),
    "one-record registration p99": ("ms", lambda r: (r.get("register_one_ms") or {}).get("p99")),
    "golden-record read p50": ("ms", lambda r: (r.get("read_ms") or {}).get("p50")),
    "golden-record read p99": ("ms", lambda r: (r.get("read_ms") or {}).get("p99")),
    "search p50": ("ms", lambda r: (r.get("search_ms") or {}).get("p50")),
    "search p99": ("ms", lambda r: (r.get("search_ms") or {}).get("p99")),
    "steward decision p50": ("ms", lambda r: ((r.get("steward") or {}).get("decision_ms") or {}).get("p50")),
    "review queue": ("candidates", lambda r: (r.get("queue") or {}).get("pending")),
    "database size": ("MB", lambda r: r["database_bytes"] / 1e6 if r.get("database_bytes") else None),
    "server peak memory": ("MB", lambda r: r.get("server_peak_memory_mb")),
    "pairwise F1": ("", lambda r: ((r.get("quality") or {}).get("pairwise") or {}).get("f1")),
}


def power_fit(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """(a, b) of y = a * x^b by least squares on logs; None without two positive points."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pts) < 2 or len({p[0] for p in pts}) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    b = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _y in pts)
    return math.exp(my - b * mx), b


def affine_fit(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """(c, k) of y = c + k * x by least squares; None without two points."""
    pts = [(float(x), float(y)) for x, y in zip(xs, ys) if y is not None]
    if len(pts) < 2 or len({p[0] for p in pts}) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    k = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _y in pts)
    return my - k * mx, k


def _last(runs: list[int], values: list) -> tuple[int, float]:
    return [(n, float(v)) for n, v in zip(runs, values) if v is not None][-1]


def _project(name: str, unit: str, a: float, b: float, runs: list[int], values: list, target: int) -> float:
    """a * target^b, except that a latency is never projected to fall, nor a rate to rise, with more
    records (on small, noisy runs the fit can slope the wrong way): then the largest run's value."""
    n, last = _last(runs, values)
    projected = a * target ** b
    if target >= n and ((unit == "ms" and b < 0) or (unit == "records/s" and b > 0)):
        return last
    return projected


def fit(results: list[dict], project: int | None) -> dict:
    """The sizing section: per figure its measured values, exponent b and the projection to `project`
    records; plus the load time projected by integrating the fitted rate, and the assumptions."""
    results = sorted(results, key=lambda r: r["data"]["records"])
    runs = [r["data"]["records"] for r in results]
    target = project or runs[-1]
    figures = {}
    for name, (unit, get) in FIGURES.items():
        values = [get(r) for r in results]
        if all(v is None for v in values):
            continue
        f = {"unit": unit, "values": [None if v is None else round(float(v), 4) for v in values]}
        if name in AFFINE:
            ck = affine_fit(runs, values)
            if ck:
                c, k = ck
                f["model"] = "c + k * records"
                f["per_million_records"] = round(k * 1e6, 3)
                f["projected"] = round(max(0.0, c + k * target), 3)
        else:
            ab = power_fit(runs, values)
            if ab:
                a, b = ab
                f["model"] = "a * records^b"
                f["exponent"] = round(b, 3)
                if name != "pairwise F1":                      # quality is not extrapolated
                    f["projected"] = round(_project(name, unit, a, b, runs, values, target), 3)
                    if f["projected"] == round(_last(runs, values)[1], 3) and target > runs[-1]:
                        f["clamped"] = True
        figures[name] = f
    rates = [(r.get("load") or {}).get("records_per_s") for r in results]
    load = power_fit(runs, rates)
    if load and load[1] < 1:
        a, b = load
        if b > 0:                                                 # a rate rising with size is noise: flat
            a, b = _last(runs, rates)[1], 0.0
        hours = target ** (1 - b) / (a * (1 - b)) / 3600          # integral of dn / rate(n) from 0 to target
        figures["bulk load time"] = {"unit": "hours", "values": [
            round((r.get("load") or {}).get("seconds", 0) / 3600, 4) for r in results], "projected": round(hours, 2)}
    env = results[-1].get("environment") or {}
    assumptions = [
        f"Measured on {env.get('cores')} cores and {env.get('memory_gb')} GB memory, database "
        f"{env.get('database', '?')}, hub serve --workers {env.get('workers', 1)}, Python {env.get('python')}"
        + (f", machine load average {env['load_average'][1]} (5 min) at the end of the largest run"
           if env.get("load_average") else "") + ".",
        f"Rates and latencies fitted as a * records^b, sizes as c + k * records, over {len(runs)} runs of "
        f"{', '.join(f'{n:,}' for n in runs)} records; "
        f"the projection to {target:,} records extrapolates {target / runs[-1]:,.0f}x beyond the largest run: "
        "read it as an order of magnitude, and measure at the largest size you can.",
        "Bulk load: batches of %s records, %s in flight; load time projected by integrating the fitted rate."
        % ((results[-1].get("load") or {}).get("batch"), (results[-1].get("load") or {}).get("concurrency")),
        "Latencies on a busy or shared machine are noisy: trust p50 over p99, and an exponent only when "
        "the runs span a factor of 10 or more. A latency whose fit falls with size, or a rate whose fit "
        "rises, is projected flat at the largest run's value (marked as clamped).",
        "SQLite allows one writer and one worker; PostgreSQL with more workers and memory for its indexes "
        "(shared_buffers and the page cache holding the blocking-key index) is the deployment for millions.",
    ]
    pg = env.get("postgresql")
    if pg:
        assumptions.append("PostgreSQL settings: " + ", ".join(f"{k} {v}" for k, v in pg.items()) + ".")
    return {"runs": runs, "project": target, "figures": figures, "assumptions": assumptions}
