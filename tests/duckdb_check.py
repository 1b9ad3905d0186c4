"""Reads a finished run's dataset with DuckDB, as an analyst would, and checks it against the
run's manifest: hive partitioning works, types are right, every count and total agrees.

usage: python3 tests/duckdb_check.py OUT_DIR
"""
import json
import sys
from pathlib import Path

import duckdb


def main(out: Path) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    legs = f"read_parquet('{out}/legs/**/*.parquet', hive_partitioning=true)"
    con = duckdb.connect()

    types = dict(con.execute(f"select column_name, column_type from (describe select * from {legs})").fetchall())
    assert types["account_id"] == "VARCHAR", types["account_id"]
    assert types["date"] == "DATE", types["date"]
    assert types["start_time"] == "TIMESTAMP WITH TIME ZONE", types["start_time"]
    for c in ("billed_seconds", "rated_cost_units", "cost_units", "reseller_cost_units", "rate"):
        assert types[c] == "BIGINT", (c, types[c])

    n, cost, rated, billed = con.execute(
        f"select count(*), sum(cost_units), sum(rated_cost_units), sum(billed_seconds) from {legs}"
    ).fetchone()
    t = manifest["totals"]
    assert n == manifest["counts"]["legs_written"], (n, manifest["counts"])
    assert (cost, rated, billed) == (t["cost_units"], t["rated_cost_units"], t["billed_seconds"]), (cost, rated, billed, t)

    rows = con.execute(
        f"select account_id, strftime(date, '%Y-%m-%d'), count(*), sum(cost_units) from {legs} group by all"
    ).fetchall()
    got = {(a, d): (c, s) for a, d, c, s in rows}
    want = {(p["account_id"], p["date"]): (p["rows"], p["cost_units"]) for p in manifest["partitions"]}
    assert got == want, (got, want)

    dup = con.execute(f"select call_id from {legs} group by call_id having count(*) > 1").fetchall()
    assert not dup, dup
    print(f"duckdb {duckdb.__version__}: {n} legs in {len(got)} partitions, cost_units {cost}, all matching the manifest")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
