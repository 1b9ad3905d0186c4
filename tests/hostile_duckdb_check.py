"""Account ids that try to leave the output folder (../../x, a/b, =, %, NUL, non-ASCII) are
written under Hive-escaped partition folders; DuckDB must read every id back unchanged and
no two ids may share a folder.

usage: python3 tests/hostile_duckdb_check.py RERATE_BINARY WORK_DIR
"""
import json
import subprocess
import sys
from pathlib import Path

import duckdb

ACCOUNTS = ["../../x", "a/b", "=", "%", "a%2Fb", "nul\u0000here", "é ü", "..", "x=y/z"]


def main(binary: str, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    src = work / "hostile.ndjson"
    with src.open("w") as f:
        for i, a in enumerate(ACCOUNTS):
            leg = {
                "call_id": f"h{i}",
                "billing_seconds": 61,
                "timestamp": 63940000000,
                "custom_channel_vars": {"account_id": a, "account_billing": "per_minute", "rate": "600"},
            }
            f.write(json.dumps(leg) + "\n")
    out = work / "out"
    subprocess.run([binary, "run", str(src), "--out", str(out), "-q", "--mode", "replace-all"], check=True)
    assert sorted(p.name for p in work.iterdir()) == ["hostile.ndjson", "out"], list(work.iterdir())
    rows = duckdb.sql(
        f"select account_id, count(*) from read_parquet('{out}/legs/**/*.parquet', hive_partitioning=true) group by all"
    ).fetchall()
    got = sorted(a for a, n in rows if n == 1)
    assert got == sorted(ACCOUNTS), (got, sorted(ACCOUNTS))
    print(f"duckdb {duckdb.__version__}: {len(got)} hostile account ids read back unchanged, one folder each")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
