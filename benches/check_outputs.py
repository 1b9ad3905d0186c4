"""Reads back what each engine of benches/compare.sh wrote and checks they agree: the legs
dataset's rows, billed seconds, rated and charged cost units, and its set of account_id/date
partitions; the daily table's totals against the legs'. Prints one JSON object of the totals and
exits 1 naming the first difference.

usage: python3 benches/check_outputs.py NAME=OUT_DIR...
"""
import json
import sys

import duckdb

SUMS = "count(*), sum(billed_seconds), sum(rated_cost_units), sum(cost_units)"
KEYS = ["legs", "billed_seconds", "rated_cost_units", "cost_units"]


def read(out: str) -> dict:
    con = duckdb.connect()

    def scan(table: str) -> str:
        # Only the summed columns and the file's path: the partition keys come from the path,
        # whatever each engine also keeps in the files.
        return (f"read_parquet('{out}/{table}/**/*.parquet', hive_partitioning = false, "
                f"union_by_name = true, filename = true)")

    legs = con.execute(f"SELECT {SUMS} FROM {scan('legs')}").fetchone()
    daily = con.execute(
        f"SELECT sum(legs), sum(billed_seconds), sum(rated_cost_units), sum(cost_units) FROM {scan('daily')}"
    ).fetchone()
    parts = {
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT regexp_extract(filename, '/(account_id=[^/]*/date=[^/]*)/', 1) FROM {scan('legs')}"
        ).fetchall()
    }
    return {"legs": dict(zip(KEYS, legs)), "daily": dict(zip(KEYS, daily)), "partitions": parts}


def main() -> int:
    first = None
    for arg in sys.argv[1:]:
        name, out = arg.split("=", 1)
        got = read(out)
        if got["legs"] != got["daily"]:
            print(f"{name}: the daily table's totals {got['daily']} are not the legs' {got['legs']}")
            return 1
        if first is None:
            first = (name, got)
            continue
        base, want = first
        if got["legs"] != want["legs"]:
            print(f"the totals differ: {base} {want['legs']}, {name} {got['legs']}")
            return 1
        if got["partitions"] != want["partitions"]:
            only = sorted(want["partitions"] ^ got["partitions"])[:3]
            print(f"the partitions differ: {base} {len(want['partitions'])}, {name} "
                  f"{len(got['partitions'])} (e.g. {only})")
            return 1
    print(json.dumps({**first[1]["legs"], "partitions": len(first[1]["partitions"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
