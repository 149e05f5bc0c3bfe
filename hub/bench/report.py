"""One self-contained HTML page from benchmark results: tables and SVG charts drawn here, so the page
works offline and loads nothing from anywhere (no scripts, no fonts, no external links)."""
from __future__ import annotations

import html
import math
from collections.abc import Sequence

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
W, H = 560, 270
ML, MR, MT, MB = 62, 16, 28, 46          # margins: left, right, top, bottom


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


class _Frame:
    """Axes mapping data to pixels, drawn with ticks, grid and labels."""

    def __init__(self, title: str, x: tuple[float, float], y: tuple[float, float], xlabel: str, ylabel: str):
        self.x0, self.x1 = x
        self.y0, self.y1 = y
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1
        self.parts = [f'<svg width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="{_esc(title)}">',
                      f'<text x="{W / 2}" y="16" text-anchor="middle" class="t">{_esc(title)}</text>']
        for t in _nice_ticks(self.x0, self.x1):
            px = self.px(t)
            self.parts.append(f'<line x1="{px:.1f}" y1="{MT}" x2="{px:.1f}" y2="{H - MB}" class="g"/>'
                              f'<text x="{px:.1f}" y="{H - MB + 14}" text-anchor="middle">{_fmt(t)}</text>')
        for t in _nice_ticks(self.y0, self.y1):
            py = self.py(t)
            self.parts.append(f'<line x1="{ML}" y1="{py:.1f}" x2="{W - MR}" y2="{py:.1f}" class="g"/>'
                              f'<text x="{ML - 5}" y="{py + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
        self.parts.append(f'<line x1="{ML}" y1="{H - MB}" x2="{W - MR}" y2="{H - MB}" class="a"/>'
                          f'<line x1="{ML}" y1="{MT}" x2="{ML}" y2="{H - MB}" class="a"/>'
                          f'<text x="{(ML + W - MR) / 2}" y="{H - 8}" text-anchor="middle">{_esc(xlabel)}</text>'
                          f'<text x="14" y="{(MT + H - MB) / 2}" text-anchor="middle" '
                          f'transform="rotate(-90 14 {(MT + H - MB) / 2})">{_esc(ylabel)}</text>')

    def px(self, x: float) -> float:
        return ML + (x - self.x0) / (self.x1 - self.x0) * (W - ML - MR)

    def py(self, y: float) -> float:
        return H - MB - (y - self.y0) / (self.y1 - self.y0) * (H - MT - MB)

    def legend(self, names: Sequence[str], *, low: bool = False) -> None:
        """Top right, or (low) bottom left, where curves near 1 leave room."""
        x0 = ML + 12 if low else W - MR - 150
        top = H - MB - 14 - 15 * len(names) if low else MT + 8
        for i, name in enumerate(names):
            y = top + 15 * i
            self.parts.append(f'<rect x="{x0}" y="{y - 8}" width="10" height="10" '
                              f'fill="{COLORS[i % len(COLORS)]}"/><text x="{x0 + 14}" y="{y + 1}">'
                              f'{_esc(name)}</text>')

    def svg(self) -> str:
        return "".join(self.parts) + "</svg>"


def histogram(title: str, groups: Sequence[tuple[str, Sequence[float]]], xlabel: str, *,
              bins: int = 30, lo: float | None = None, hi: float | None = None, density: bool = False) -> str:
    """Overlaid histograms of the groups' values (counts, or shares of each group when density)."""
    values = [v for _n, vs in groups for v in vs]
    if not values:
        return f'<p class="empty">{_esc(title)}: no data</p>'
    lo = min(values) if lo is None else lo
    hi = max(values) if hi is None else hi
    if hi <= lo:
        hi = lo + 1
    width = (hi - lo) / bins
    counted = []
    for _name, vs in groups:
        counts = [0] * bins
        for v in vs:
            counts[min(bins - 1, max(0, int((v - lo) / width)))] += 1
        if density and vs:
            counts = [c / len(vs) for c in counts]
        counted.append(counts)
    top = max(max(c) for c in counted) or 1
    f = _Frame(title, (lo, hi), (0, top * 1.08), xlabel, "share of the group" if density else "count")
    for i, counts in enumerate(counted):
        color = COLORS[i % len(COLORS)]
        for b, c in enumerate(counts):
            if c:
                x, y = f.px(lo + b * width), f.py(c)
                f.parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(1.0, f.px(lo + width) - f.px(lo) - 1):.1f}" '
                               f'height="{f.py(0) - y:.1f}" fill="{color}" fill-opacity="0.55">'
                               f'<title>{_esc(groups[i][0])}: {c:.3g} in [{lo + b * width:.3g}, '
                               f'{lo + (b + 1) * width:.3g})</title></rect>')
    if len(groups) > 1:
        f.legend([n for n, _v in groups])
    return f.svg()


def line_chart(title: str, lines: Sequence[tuple[str, Sequence[tuple[float, float]]]], xlabel: str, ylabel: str, *,
               y_range: tuple[float, float] | None = None, marks: Sequence[tuple[str, float]] = ()) -> str:
    """Lines through (x, y) points; `marks` are labelled vertical lines (thresholds)."""
    points = [p for _n, ps in lines for p in ps]
    if not points:
        return f'<p class="empty">{_esc(title)}: no data</p>'
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    y0, y1 = y_range or (min(0.0, min(ys)), max(ys) * 1.08 or 1)
    f = _Frame(title, (min(xs), max(xs)), (y0, y1), xlabel, ylabel)
    for i, (_name, ps) in enumerate(lines):
        path = " ".join(f"{f.px(x):.1f},{f.py(y):.1f}" for x, y in ps)
        f.parts.append(f'<polyline points="{path}" fill="none" stroke="{COLORS[i % len(COLORS)]}" stroke-width="2"/>')
    for label, x in marks:
        px = f.px(x)
        f.parts.append(f'<line x1="{px:.1f}" y1="{MT}" x2="{px:.1f}" y2="{H - MB}" class="m"/>'
                       f'<text x="{px - 3:.1f}" y="{H - MB - 6}" text-anchor="end" class="ml">{_esc(label)}</text>')
    if len(lines) > 1:
        f.legend([n for n, _p in lines], low=y_range is not None)
    return f.svg()


def _moving(points: list[tuple[float, float]], k: int = 5) -> list[tuple[float, float]]:
    out = []
    for i in range(len(points)):
        window = points[max(0, i - k + 1):i + 1]
        out.append((points[i][0], sum(y for _x, y in window) / len(window)))
    return out


# ---- the page -------------------------------------------------------------------------------------
CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 12px}
h1{font-size:22px}h2{font-size:18px;margin-top:30px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 9px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f5f5f5}
.charts{display:flex;flex-wrap:wrap;gap:10px}svg{border:1px solid #eee;background:#fff}
svg text{font-size:11px;fill:#333}svg .t{font-size:13px;font-weight:600}.g{stroke:#eee}.a{stroke:#888}
.m{stroke:#555;stroke-dasharray:4 3}.ml{fill:#555}.note{color:#555;max-width:900px}.empty{color:#999}"""


def _table(head: Sequence[str], rows: Sequence[Sequence]) -> str:
    h = "".join(f"<th>{_esc(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _g(d: dict | None, *path, default="–"):
    for p in path:
        if not isinstance(d, dict) or d.get(p) is None:
            return default
        d = d[p]
    return d


def quality_rows(result: dict, baseline: dict | None) -> list[list]:
    rows = []

    def row(name, q):
        if q:
            rows.append([name, _g(q, "pairwise", "precision"), _g(q, "pairwise", "recall"), _g(q, "pairwise", "f1"),
                         _g(q, "cluster", "precision"), _g(q, "cluster", "recall"), _g(q, "cluster", "f1"),
                         _g(q, "clusters"), _g(q, "entities")])

    row("hub, as loaded (real time)", result.get("quality"))
    row("hub, after a perfect steward", result.get("quality_after_steward"))
    if baseline:
        row(f"plain Splink 5 batch (link at {baseline.get('threshold')})", baseline.get("quality"))
    return rows


def speed_rows(result: dict) -> list[list]:
    load = result.get("load") or {}
    rows = [["bulk load (records/s)", _g(load, "records_per_s"),
             f"{_g(load, 'records')} records, batches of {_g(load, 'batch')}, {_g(load, 'concurrency')} in flight"]]
    for key, name in (("register_one_ms", "one-record registration (ms)"), ("read_ms", "full golden-record read (ms)"),
                      ("search_ms", "findCustomers search (ms)")):
        d = result.get(key) or {}
        rows.append([name, f"p50 {_g(d, 'p50')} · p90 {_g(d, 'p90')} · p99 {_g(d, 'p99')}", f"n = {_g(d, 'n')}"])
    st = result.get("steward") or {}
    d = st.get("decision_ms") or {}
    rows.append(["steward decision (ms)", f"p50 {_g(d, 'p50')} · p90 {_g(d, 'p90')} · p99 {_g(d, 'p99')}",
                 f"{_g(st, 'resolved')} resolved, F1 gain pairwise {_g(st, 'gain', 'pairwise')}, "
                 f"cluster {_g(st, 'gain', 'cluster')}: "
                 + ", ".join(f"{v} {k}" for k, v in (st.get("decisions") or {}).items())])
    q = result.get("queue") or {}
    rows.append(["review queue after load", _g(q, "pending"), f"{_g(q, 'true_matches')} of them the same person"])
    s = result.get("search") or {}
    rows.append(["search finds the person (top 10)", _g(s, "recall_top10"),
                 f"{_g(s, 'found_in_top10')} of {_g(s, 'person_in_hub')}; first: {_g(s, 'found_first')}"])
    rows.append(["database size after the run (MB)",
                 round(result["database_bytes"] / 1e6, 1) if result.get("database_bytes") else "–",
                 f"server peak memory {_g(result, 'server_peak_memory_mb')} MB"])
    return rows


def charts(result: dict, baseline: dict | None) -> list[str]:
    out = []
    for key, name in (("register_one_ms", "one-record registration"), ("read_ms", "full golden-record read"),
                      ("search_ms", "findCustomers search")):
        samples = (result.get(key) or {}).get("samples_ms") or []
        if samples:
            cap = sorted(samples)[int(0.99 * (len(samples) - 1))] * 1.2
            out.append(histogram(f"{name}: latency", [(name, [min(s, cap) for s in samples])],
                                 "milliseconds (p99 x 1.2 and above in the last bin)", lo=0, hi=cap))
    steward = ((result.get("steward") or {}).get("decision_ms") or {}).get("samples_ms") or []
    if steward:
        out.append(histogram("steward decision: latency", [("decision", steward)], "milliseconds", lo=0))
    timeline = (result.get("load") or {}).get("timeline") or []
    if timeline:
        pts = sorted((float(n), float(rate)) for n, _t, rate in timeline)
        out.append(line_chart("bulk load: throughput as the hub grows",
                              [("records/s per batch (moving mean of 5)", _moving(pts))],
                              "records in the hub", "records per second"))
        elapsed = sorted((float(t), float(n)) for n, t, _r in timeline)
        out.append(line_chart("bulk load: records over time", [("records", [(0.0, 0.0), *elapsed])],
                              "seconds", "records loaded"))
    scores = result.get("scores") or {}
    if scores.get("true") or scores.get("false"):
        out.append(histogram("search results: match probability by truth",
                             [("same person", scores.get("true") or []), ("different person", scores.get("false") or [])],
                             "match probability", lo=0, hi=1, bins=25, density=True))
    q = result.get("queue") or {}
    if q.get("probabilities_true") or q.get("probabilities_false"):
        out.append(histogram("review queue: match probability by truth",
                             [("same person", q.get("probabilities_true") or []),
                              ("different person", q.get("probabilities_false") or [])],
                             "match probability", lo=0, hi=1, bins=25))
    curve = scores.get("threshold_curve") or []
    marks = [("review", (result.get("thresholds") or {}).get("review", 0.6)),
             ("link", (result.get("thresholds") or {}).get("link", 0.95))]
    if curve:
        out.append(line_chart("hub: precision and recall by threshold (searches)",
                              [("precision", [(c["threshold"], c["precision"]) for c in curve]),
                               ("recall", [(c["threshold"], c["recall"]) for c in curve])],
                              "match probability threshold", "", y_range=(0, 1.02), marks=marks))
    bcurve = (baseline or {}).get("threshold_curve") or []
    if bcurve:
        out.append(line_chart("plain Splink: pairwise precision and recall by threshold",
                              [("precision", [(c["threshold"], c["precision"]) for c in bcurve]),
                               ("recall", [(c["threshold"], c["recall"]) for c in bcurve])],
                              "match probability threshold", "", y_range=(0, 1.02)))
    if (baseline or {}).get("scores"):
        bs = baseline["scores"]
        out.append(histogram("plain Splink baseline: pair probability by truth",
                             [("same person", bs.get("true") or []), ("different person", bs.get("false") or [])],
                             "match probability", lo=0, hi=1, bins=25, density=True))
    return out


def sizing_section(sizing: dict | None) -> str:
    if not sizing or not sizing.get("figures"):
        return ""
    runs = sizing["runs"]
    head = ["figure", *[f"{r:,} records" for r in runs], "growth", f"projected at {sizing['project']:,}"]
    rows = []
    for name, f in sizing["figures"].items():
        rows.append([name, *[("–" if v is None else f"{v:,.4g}") for v in f["values"]],
                     (f"b = {f['exponent']:.2f}" if f.get("exponent") is not None else
                      f"+{f['per_million_records']:,.4g} per 1M records" if f.get("per_million_records") is not None
                      else "–"),
                     "–" if f.get("projected") is None else f"{f['projected']:,.4g} {f.get('unit', '')}"
                     + (" (clamped)" if f.get("clamped") else "")])
    charts_html = []
    for name, f in sizing["figures"].items():
        pts = [(float(n), float(v)) for n, v in zip(runs, f["values"]) if v is not None]
        if len(pts) >= 2:
            charts_html.append(line_chart(name, [("measured", pts)], "records", f.get("unit", "")))
    notes = "".join(f"<li>{_esc(a)}</li>" for a in sizing.get("assumptions", []))
    return (f"<h2>Sizing: measured at {len(runs)} sizes, projected to {sizing['project']:,} records</h2>"
            + _table(head, rows) + f"<ul class=note>{notes}</ul><div class=charts>{''.join(charts_html)}</div>")


def render(result: dict, baseline: dict | None = None, sizing: dict | None = None) -> str:
    """The whole page as a string."""
    data = result.get("data") or {}
    env = result.get("environment") or {}
    title = (f"hub bench: {data.get('people') or '?'} people, {data.get('records')} records, "
             f"profile {data.get('profile') or '?'}")
    envline = (f"{env.get('cores')} cores, {env.get('memory_gb')} GB memory, {env.get('database', '?')}"
               f" ({env.get('workers', 1)} worker(s)), Python {env.get('python')}, {env.get('platform')}, "
               f"{env.get('date')}"
               + (f"; load average {env['load_average'][1]} over the run's last 5 minutes"
                  if env.get("load_average") else ""))
    pg = env.get("postgresql")
    if pg:
        envline += "; PostgreSQL " + ", ".join(f"{k} {v}" for k, v in pg.items())
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_esc(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{_esc(title)}</h1><p class=note>{_esc(envline)}</p>",
             "<h2>Linking quality against the truth</h2>",
             _table(["", "pairwise precision", "recall", "F1", "cluster precision", "recall", "F1", "clusters",
                     "people"], quality_rows(result, baseline)),
             "<p class=note>Pairwise: pairs of records put in one golden record vs pairs of records of one person. "
             "Cluster: golden records holding exactly one person's records, and people reproduced exactly. "
             "Rejected records count as missed.</p>"]
    if baseline:
        parts.append(f"<p class=note>Baseline: {_esc(baseline.get('description', ''))} "
                     f"({baseline.get('seconds')} s, {baseline.get('pairs_scored')} pairs scored).</p>")
    if data.get("features"):
        parts += ["<h2>The data</h2><p class=note>",
                  _esc(f"Attributes: {', '.join(data.get('attributes') or [])}. Records per system: "
                       + ", ".join(f"{k} {v:,}" for k, v in (data.get("records_per_system") or {}).items())
                       + ". Made: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in data["features"].items())
                       + "."), "</p>"]
    parts += ["<h2>Speed</h2>", _table(["", "value", "detail"], speed_rows(result)),
              "<h2>Charts</h2><div class=charts>", *charts(result, baseline), "</div>",
              "<p class=note>Search results: each record held back from the bulk load is first searched for "
              "(findCustomers, top 10) and then registered; a result is true when its golden record holds a record "
              "of the same person. Recall counts a person already in the hub but not found as a miss.</p>",
              sizing_section(sizing), "</body></html>"]
    return "".join(parts)
