"""Time the steward console in Debian's Chromium against a real `hub serve`, and take its screenshots.

    .venv/bin/python bench/console_timing.py --people 2000 --scale 350 --candidates 10000 \
        --database postgresql+asyncpg://postgres@127.0.0.1:5432/hub_console_bench   # an empty database

1. registers --people generated people through registerRecords (real matching, real candidates);
2. with --scale K > 1 (PostgreSQL only), copies every source record, event and golden record K-1 more times
   with set-based INSERT ... SELECT (new keys, same values): the dashboard's aggregates then run over
   K times the rows. These copies are not matched: they size the SQL, not the matcher;
3. with --candidates N, pads the pending queue to N candidates between existing golden records (copies of
   the real candidates' probabilities and explanations), as the queue page's query sees them;
4. measures in the browser: first contentful paint of the sign-in page, time from navigation to an
   interactive queue (first candidate drawn, token already in the tab), the dashboard's GraphQL time
   (uncached) and its page; writes screenshots to bench/screens/ (git-ignored).
"""
from __future__ import annotations

import argparse
import asyncio
import pathlib
import statistics
import sys
import tempfile
import time

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.console.browser import launch, missing, shot  # noqa: E402
from tests.console.hubserver import Hub  # noqa: E402

QUALITY = "{ dataQuality { seconds totals { sourceRecords goldenRecords pendingCandidates } } }"


async def _sql(url: str, *statements: str) -> list:
    engine = create_async_engine(url)
    out = []
    try:
        async with engine.begin() as conn:
            for s in statements:
                result = await conn.execute(sa.text(s))
                out.append(result.all() if result.returns_rows else result.rowcount)
    finally:
        await engine.dispose()
    return out


def scale_up(url: str, k: int) -> None:
    """Copy golden records, source records and events k-1 times (PostgreSQL: generate_series)."""
    started = time.perf_counter()
    asyncio.run(_sql(url, f"""CREATE TABLE console_bench_map AS SELECT c.id AS old, g,
        nextval(pg_get_serial_sequence('customer', 'id')) AS new
        FROM customer c CROSS JOIN generate_series(2, {k}) g WHERE c.status = 'ACTIVE'""",
                     *COPY, "DROP TABLE console_bench_map", "ANALYZE"))
    print(f"scaled x{k} in {time.perf_counter() - started:.1f} s", flush=True)


COPY = [
    """INSERT INTO customer (id, status, version, created_at, updated_at, given_name, family_name, date_of_birth,
         email, phone, address_line1, address_line2, locality, postcode, region, country, national_id)
       SELECT m.new, c.status, c.version, c.created_at, c.updated_at, c.given_name, c.family_name,
         c.date_of_birth, c.email, c.phone, c.address_line1, c.address_line2, c.locality, c.postcode, c.region,
         c.country, c.national_id FROM console_bench_map m JOIN customer c ON c.id = m.old""",
    """INSERT INTO source_record (system, key, customer_id, raw, content_hash, match_features, updated_at,
         received_at, given_name, family_name, date_of_birth, email, phone, address_line1, address_line2,
         locality, postcode, region, country, national_id)
       SELECT r.system, r.key || '~' || m.g, m.new, r.raw, r.content_hash, NULL, r.updated_at, r.received_at,
         r.given_name, r.family_name, r.date_of_birth, r.email, r.phone, r.address_line1, r.address_line2,
         r.locality, r.postcode, r.region, r.country, r.national_id
       FROM source_record r JOIN console_bench_map m ON m.old = r.customer_id""",
    """INSERT INTO event (customer_id, kind, at, actor, note, changes)
       SELECT m.new, e.kind, e.at, e.actor, e.note, e.changes FROM event e
       JOIN console_bench_map m ON m.old = e.customer_id""",
]


def pad_queue(url: str, n: int) -> None:
    """Add pending candidates until n are pending: pairs of live golden records, real probabilities."""
    dialect_pg = url.startswith("postgresql")
    random = "random()" if dialect_pg else "abs(random()) / 9223372036854775807.0"
    [[(pending,)]] = asyncio.run(_sql(url, "SELECT count(*) FROM match_candidate WHERE status = 'PENDING'"))
    need = n - pending
    if need <= 0:
        return
    asyncio.run(_sql(url, f"""
        INSERT INTO match_candidate (customer_id, other_customer_id, probability, uncertainty, explanation, status,
                                     created_at)
        SELECT a.id, b.id, p.probability, abs(p.probability - 0.775), p.explanation, 'PENDING', a.created_at
        FROM (SELECT id, created_at, row_number() OVER (ORDER BY id) AS n FROM customer WHERE status = 'ACTIVE') a
        JOIN (SELECT id, row_number() OVER (ORDER BY id DESC) AS n FROM customer WHERE status = 'ACTIVE') b
          ON b.n = a.n AND b.id > a.id
        CROSS JOIN (SELECT probability, explanation FROM match_candidate ORDER BY id LIMIT 1) p
        WHERE a.n <= {need}
    """))
    asyncio.run(_sql(url, f"UPDATE match_candidate SET probability = 0.6 + 0.35 * {random} "
                          f"WHERE status = 'PENDING' AND id > (SELECT max(id) - {need} FROM match_candidate)",
                     "UPDATE match_candidate SET uncertainty = abs(probability - 0.775) WHERE status = 'PENDING'"))


def measure(hub: Hub, runs: int) -> dict:
    from playwright.sync_api import sync_playwright
    out: dict = {}
    with sync_playwright() as p:
        browser = launch(p)
        paints, ready = [], []
        for _ in range(runs):
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            page.goto(hub.url + "/console/")
            page.wait_for_selector("#signin")
            fcp = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null")
            paints.append(fcp)
            page.evaluate("t => sessionStorage.setItem('hub.console.token', t)", hub.tokens["steward"])
            page.goto(hub.url + "/console/#/queue")
            page.reload()
            page.wait_for_selector("body[data-ready=queue]", timeout=120000)
            ready.append(page.evaluate("performance.now()"))
            queue_fcp = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null")
            out.setdefault("queue_first_paint_ms", []).append(queue_fcp)
            ctx.close()
        out["signin_first_paint_ms"] = statistics.median(paints)
        out["queue_interactive_ms"] = statistics.median(ready)
        out["queue_first_paint_ms"] = statistics.median(out["queue_first_paint_ms"])
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = ctx.new_page()
        page.goto(hub.url + "/console/")
        page.evaluate("t => sessionStorage.setItem('hub.console.token', t)", hub.tokens["steward"])
        for name, hash_ in (("queue", "#/queue"), ("dashboard", "#/dashboard"), ("explorer", "#/explorer")):
            started = time.perf_counter()
            page.evaluate("h => { document.body.dataset.ready = ''; location.hash = h; }", hash_)
            page.wait_for_selector(f"body[data-ready={name}]", timeout=300000)
            out[f"{name}_page_ms"] = (time.perf_counter() - started) * 1000
            shot(page, f"bench-{name}")
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--candidates", type=int, default=0)
    parser.add_argument("--database", default=None, help="an empty database (default: a SQLite file)")
    parser.add_argument("--port", type=int, default=8184)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="the database holds a data set already: measure only")
    args = parser.parse_args()
    if missing():
        sys.exit(f"cannot run: {missing()}")
    work = pathlib.Path(tempfile.mkdtemp(prefix="console-bench-"))
    url = args.database or f"sqlite+aiosqlite:///{work / 'hub.db'}"
    hub = Hub(work, url, args.port)
    try:
        hub.start()
        if not args.reuse:
            started = time.perf_counter()
            hub.load(args.people)
            print(f"registered {args.people} people in {time.perf_counter() - started:.1f} s", flush=True)
        if args.scale > 1 and not args.reuse:
            if not url.startswith("postgresql"):
                sys.exit("--scale needs PostgreSQL")
            scale_up(url, args.scale)
        if args.candidates and not args.reuse:
            pad_queue(url, args.candidates)
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            r = httpx.post(hub.url + "/graphql", json={"query": QUALITY}, timeout=600,
                           headers={"authorization": f"Bearer {hub.tokens['steward']}"}).json()
            timings.append((time.perf_counter() - started, r["data"]["dataQuality"]["seconds"]))
        totals = r["data"]["dataQuality"]["totals"]
        print(f"data: {totals}", flush=True)
        print("dataQuality (uncached): " + ", ".join(f"{w:.2f} s wall / {s:.2f} s SQL" for w, s in timings))
        for k, v in measure(hub, args.runs).items():
            print(f"{k}: {v:.0f}")
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
