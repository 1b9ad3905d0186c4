"""Compares the dataset spark/rerate_spark.py wrote with the one `rerate run` wrote on the same
input: every table partition by partition (the same partition folders; in each, the same columns
in the same order and the same rows in the same order, value for value), rejects.ndjson byte for
byte, and the manifest's counts, totals, interactions, reconciliation summary, partial inputs and
merge counts.

    python3 tests/spark_job_check.py RERATE_OUT SPARK_OUT

Used by tests/spark_job.py; runs with pyarrow alone.
"""
import json
import math
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TABLES = ["legs", "interactions", "reconciliation", "daily", "hangup_causes", "top_destinations",
          "reconciliation_daily", "revenue_leak", "margin", "ledgers", "ledger_reconciliation", "ledger_daily"]
MANIFEST_KEYS = ["counts", "totals", "interactions", "reconciliation", "partial_inputs"]


def plain(t):
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_list(t) or pa.types.is_list(t):
        return pa.list_(plain(t.value_type))
    return t


def read_dir(d: Path) -> pa.Table:
    """The rows of one partition folder (or a table's top folder): every Parquet file in it,
    hidden ones (Hadoop's .crc) aside, in name order."""
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix == ".parquet" and not p.name.startswith("."))
    assert files, f"{d}: no Parquet file"
    tables = [pq.read_table(f, partitioning=None) for f in files]
    schema = pa.schema([pa.field(f.name, plain(f.type)) for f in tables[0].schema])
    return pa.concat_tables([t.cast(schema) for t in tables])


def partitions(table_dir: Path) -> dict:
    """partition folder (account_id=../date=.., or date=.. for a report's day file) -> its
    folder; '' -> the table folder when it has no partition (an empty table's one file)."""
    out = {}
    for a in sorted(table_dir.glob("account_id=*")):
        for d in sorted(a.glob("date=*")):
            out[f"{a.name}/{d.name}"] = d
    for d in sorted(table_dir.glob("date=*")):
        out[d.name] = d
    if not out:
        out[""] = table_dir
    return out


def same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def compare_table(name: str, mine: Path, theirs: Path) -> int:
    pm, pt = partitions(mine / name), partitions(theirs / name)
    assert sorted(pm) == sorted(pt), f"{name}: partitions differ: only rerate {sorted(set(pm) - set(pt))[:5]}, only Spark {sorted(set(pt) - set(pm))[:5]}"
    rows = 0
    for key in pm:
        a, b = read_dir(pm[key]), read_dir(pt[key])
        assert a.column_names == b.column_names, f"{name}/{key}: columns differ:\n{a.column_names}\n{b.column_names}"
        for fa, fb in zip(a.schema, b.schema):
            assert fa.type == fb.type, f"{name}/{key}: column {fa.name} is {fa.type} in rerate's, {fb.type} in Spark's"
        ra, rb = a.to_pylist(), b.to_pylist()
        assert len(ra) == len(rb), f"{name}/{key}: {len(ra)} rows in rerate's, {len(rb)} in Spark's"
        for i, (x, y) in enumerate(zip(ra, rb)):
            diff = [c for c in a.column_names if not same_value(x[c], y[c])]
            assert not diff, f"{name}/{key} row {i}: " + "; ".join(f"{c}: {x[c]!r} (rerate) != {y[c]!r} (Spark)" for c in diff[:5])
        rows += len(ra)
    return rows


def main(mine: Path, theirs: Path) -> None:
    for name in TABLES:
        rows = compare_table(name, mine, theirs)
        print(f"  {name}: Spark's equals rerate's, {rows} rows")
    ra = (mine / "rejects.ndjson").read_bytes()
    rb = (theirs / "rejects.ndjson").read_bytes()
    assert ra == rb, "rejects.ndjson differs"
    print(f"  rejects.ndjson: byte for byte ({len(ra.splitlines())} rejects)")
    ma = json.loads((mine / "manifest.json").read_text())
    mb = json.loads((theirs / "manifest.json").read_text())
    for k in MANIFEST_KEYS:
        assert ma[k] == mb[k], f"manifest {k}: rerate {ma[k]} != Spark {mb[k]}"
    for k in ["partitions_read_back", "legs_read_back", "legs_kept", "partitions_emptied"]:
        assert ma["merge"][k] == mb["merge"][k], f"manifest merge.{k}: rerate {ma['merge'][k]} != Spark {mb['merge'][k]}"
    print(f"  manifest: {', '.join(MANIFEST_KEYS)} and merge agree (records_read {ma['counts']['records_read']}, legs_written {ma['counts']['legs_written']})")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
