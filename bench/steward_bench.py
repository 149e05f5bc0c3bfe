"""Play a perfect steward on a loaded hub and time every decision.

Run after `hub bench run --url URL --token TOKEN --steward 0` has loaded a data set into a running hub
(the hub keeps its state; `hub bench run --steward N` does the same in one go):

  python bench/steward_bench.py --data bench/data/gen10k --url http://127.0.0.1:8011/graphql --token TOKEN

For every pending match candidate (most uncertain first) it looks up the truth: MERGE when the two
golden records share a real person, else NOT_A_MATCH. It prints, as JSON, pairwise precision /
recall / F1 before and after, and p50 / p99 / max milliseconds per resolution.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import csv
import json
import os
import statistics
import time

import httpx

PAGE = """query($system: String!, $after: String) { sourceRecords(system: $system, first: 1000, after: $after) {
  edges { node { key customer { id } } } pageInfo { hasNextPage endCursor } } }"""
CANDIDATES = """query($after: String) { matchCandidates(status: PENDING, first: 500, after: $after) {
  edges { node { id customer { sourceRecords { system key } } otherCustomer { sourceRecords { system key } } } }
  pageInfo { hasNextPage endCursor } } }"""
RESOLVE = """mutation($id: ID!, $d: MatchDecision!) { resolveMatchCandidate(id: $id, decision: $d, note: "bench") {
  status } }"""


async def gql(client: httpx.AsyncClient, query: str, **variables) -> dict:
    body = (await client.post("", json={"query": query, "variables": variables})).json()
    if body.get("errors"):
        raise RuntimeError(json.dumps(body["errors"])[:300])
    return body["data"]


def pairwise(assign: dict, truth: dict) -> dict:
    """Pairwise precision, recall and F1 of a clustering against the truth."""
    def pairs(counter):
        return sum(n * (n - 1) // 2 for n in counter.values())
    tp = pairs(collections.Counter((assign[r], truth[r]) for r in truth if r in assign))
    predicted = pairs(collections.Counter(assign[r] for r in truth if r in assign))
    true = pairs(collections.Counter(truth.values()))
    p, r = tp / predicted if predicted else 1.0, tp / true if true else 1.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0}


async def assignments(client, systems) -> dict:
    out = {}
    for system in systems:
        after = None
        while True:
            page = (await gql(client, PAGE, system=system, after=after))["sourceRecords"]
            out.update({(system, e["node"]["key"]): e["node"]["customer"]["id"] for e in page["edges"]
                        if e["node"]["customer"]})
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
    return out


async def main(args) -> None:
    truth = {(r["system"], r["key"]): r["entity"] for r in csv.DictReader(open(os.path.join(args.data, "truth.csv")))}
    systems = [s["name"] for s in json.load(open(os.path.join(args.data, "systems.json")))]
    async with httpx.AsyncClient(base_url=args.url, timeout=600,
                                 headers={"Authorization": f"Bearer {args.token}"}) as client:
        before = pairwise(await assignments(client, systems), truth)
        pending, after = [], None
        while True:
            page = (await gql(client, CANDIDATES, after=after))["matchCandidates"]
            pending += [e["node"] for e in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        timings, decisions, refused = [], collections.Counter(), 0
        for cand in pending[:args.limit]:
            people = [{truth.get((r["system"], r["key"])) for r in side["sourceRecords"]}
                      for side in (cand["customer"], cand["otherCustomer"])]
            decision = "MERGE" if people[0] & people[1] else "NOT_A_MATCH"
            t = time.perf_counter()
            try:
                await gql(client, RESOLVE, id=cand["id"], d=decision)
                decisions[decision] += 1
            except RuntimeError:
                refused += 1  # superseded by an earlier merge
            timings.append(time.perf_counter() - t)
        after_quality = pairwise(await assignments(client, systems), truth)
    ms = sorted(x * 1000 for x in timings)
    print(json.dumps({"pending": len(pending), "resolved": dict(decisions), "refused": refused,
                      "quality_before": before, "quality_after": after_quality,
                      "resolution_ms": {"p50": round(statistics.median(ms), 2) if ms else None,
                                        "p99": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2) if ms else None,
                                        "max": round(ms[-1], 2) if ms else None}}, indent=1))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--url", default="http://127.0.0.1:8000/graphql")
    ap.add_argument("--token", default=os.environ.get("HUB_TOKEN"))
    ap.add_argument("--limit", type=int, default=100_000)
    asyncio.run(main(ap.parse_args()))
