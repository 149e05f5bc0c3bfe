"""A small sample of three source systems' records, for the README's walkthrough (`hub load`).

crm.jsonl (dates YMD), billing.jsonl (dates DMY, phones in GB) and support.jsonl (dates MDY, phones in GB):
the same people across systems (exact and probabilistic duplicates), a household (the Khans of 12 Mill
Lane: three people, one address) and one deliberately bad record (support S-3099), which is rejected.
All people, addresses and identifiers are made up.
"""
from pathlib import Path

DIR = Path(__file__).resolve().parent
FILES = {"crm": DIR / "crm.jsonl", "billing": DIR / "billing.jsonl", "support": DIR / "support.jsonl"}
