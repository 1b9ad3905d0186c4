"""Reads a finished run's dataset with DuckDB, as an analyst would, and checks it against the
run's manifest: hive partitioning works, types are right, every count and total agrees. Then runs
every built-in query of queries/ in DuckDB over the same Parquet and compares its result with the
report rerate wrote: the SQL is portable and both engines agree.

usage: python3 tests/duckdb_check.py OUT_DIR
"""
import json
import sys
from pathlib import Path

import duckdb

from report_compare import assert_same_rows

QUERIES = Path(__file__).resolve().parent.parent / "queries"


def dataset(out: Path, table: str) -> str:
    return f"read_parquet('{out}/{table}/**/*.parquet', hive_partitioning=true)"



def catalog_partitions(con, out: Path) -> list:
    """Every partition of every table, from the catalog's month files (read by DuckDB as is)."""
    cur = con.execute(f"select * from read_parquet('{out}/_catalog/partitions/*.parquet')")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def check_legs(con, out: Path, manifest: dict) -> None:
    legs = dataset(out, "legs")
    types = dict(con.execute(f"select column_name, column_type from (describe select * from {legs})").fetchall())
    assert types["account_id"] == "VARCHAR", types["account_id"]
    assert types["date"] == "DATE", types["date"]
    assert types["start_time"] == "TIMESTAMP WITH TIME ZONE", types["start_time"]
    for c in ("billed_seconds", "rated_cost_units", "cost_units", "reseller_cost_units", "rate"):
        assert types[c] == "BIGINT", (c, types[c])

    n, cost, rated, billed = con.execute(
        f"select count(*), sum(cost_units), sum(rated_cost_units), sum(billed_seconds) from {legs}"
    ).fetchone()
    # The folder may hold partitions of earlier runs too: the manifest's dataset sums them all.
    t = manifest["dataset"]
    assert n == t["legs"], (n, t)
    assert (cost, rated, billed) == (t["cost_units"], t["rated_cost_units"], t["billed_seconds"]), (cost, rated, billed, t)

    rows = con.execute(
        f"select account_id, strftime(date, '%Y-%m-%d'), count(*), coalesce(sum(cost_units), 0) from {legs} group by all"
    ).fetchall()
    got = {(a, d): (c, s) for a, d, c, s in rows}
    want = {
        (p["account_id"], p["date"]): (p["rows"], p["cost_units"])
        for p in catalog_partitions(con, out)
        if p["table"] == "legs"
    }
    assert got == want, (got, want)
    dup = con.execute(f"select call_id from {legs} group by call_id having count(*) > 1").fetchall()
    assert not dup, dup
    print(f"duckdb {duckdb.__version__}: {n} legs in {len(got)} partitions, cost_units {cost}, all matching the manifest")


def check_tables(con, out: Path, manifest: dict) -> None:
    """Every partitioned table the run manages reads in DuckDB, with account_id and date, and
    holds the rows the manifest says: an empty one (a clean night's reconciliation, no deck's
    reconciliation_daily) is one empty file that reads as zero rows, never a missing folder."""
    tables = [n for n in manifest["outputs"] if (out / n).is_dir() and not n.startswith("_")]
    parts = catalog_partitions(con, out)
    for required in ("legs", "interactions", "reconciliation", "daily", "reconciliation_daily"):
        assert required in tables, (required, tables)
    for name in tables:
        rows = sum(p["rows"] for p in parts if p["table"] == name)
        ds = dataset(out, name)
        n = con.execute(f"select count(*) from {ds}").fetchone()[0]
        assert n == rows, (name, n, rows)
        types = dict(con.execute(f"select column_name, column_type from (describe select * from {ds})").fetchall())
        assert types.get("account_id") == "VARCHAR" and types.get("date") == "DATE", (name, types)
        # The queries analysts run work on an empty table too.
        con.execute(f"select account_id, count(*) from {ds} where date >= date '2000-01-01' group by all").fetchall()
        print(f"  {name}: {n} rows{' (an empty table)' if n == 0 else ''}")


def check_queries(con, out: Path, manifest: dict) -> None:
    con.execute(f"create view legs as select * from {dataset(out, 'legs')}")
    con.execute(f"create view interactions as select * from {dataset(out, 'interactions')}")
    con.execute(f"create view reconciliation as select * from {dataset(out, 'reconciliation')}")
    for sql_file in sorted(QUERIES.glob("*.sql")):
        name = sql_file.stem
        sql = sql_file.read_text()
        if name == "reconciliation_daily" and manifest["options"].get("rates") is None:
            # Without a deck rerate keeps only the account-days with a reported leg.
            sql = f"select * from ({sql}) where reported_legs > 0 or reseller_reported_legs > 0"
        mine = con.execute(sql)
        cols = [d[0] for d in mine.description]
        rows = mine.fetchall()
        theirs = con.execute(f"select {', '.join(cols)} from {dataset(out, name)}").fetchall()
        assert_same_rows(f"DuckDB {duckdb.__version__}", name, cols, rows, theirs)
    # The ledger reconciliation over the whole dataset: its months are the tables themselves.
    con.execute(f"create view ledgers as select * from {dataset(out, 'ledgers')}")
    con.execute("create view month_legs as select account_id, date from legs")
    con.execute("create view month_ledgers as select * from ledgers")
    ledgers = QUERIES / "ledgers"
    con.execute(f"create view ledger_rows as {(ledgers / 'ledger_rows.sql').read_text()}")
    for name in ("ledger_reconciliation", "ledger_daily"):
        mine = con.execute((ledgers / f"{name}.sql").read_text())
        cols = [d[0] for d in mine.description]
        rows = mine.fetchall()
        theirs = con.execute(f"select {', '.join(cols)} from {dataset(out, name)}").fetchall()
        assert_same_rows(f"DuckDB {duckdb.__version__}", name, cols, rows, theirs)

def main(out: Path) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    con = duckdb.connect()
    check_legs(con, out, manifest)
    check_tables(con, out, manifest)
    check_queries(con, out, manifest)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
