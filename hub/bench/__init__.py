"""`hub bench`: generate customer data with known truth, drive a hub with it, score and size it.

generate  multi-source records with known truth (hub/bench/generate.py)
run       load, register, read, search and steward through the public GraphQL API (hub/bench/run.py)
baseline  a plain Splink 5 batch model on the same data (hub/bench/baseline.py)
sizing    how each figure grows with the number of records, projected (hub/bench/sizing.py)
report    one self-contained HTML page with SVG charts (hub/bench/report.py)
"""
