"""Runs every query of queries/ in Spark SQL over a finished run's Parquet (read as Spark reads
any Hive-partitioned folder) and compares the results with the reports rerate wrote. Not part of
CI (pyspark is a large download); run it by hand:

    pip install pyspark && python3 tests/spark_check.py OUT_DIR
"""
import math
import sys
from pathlib import Path

from pyspark.sql import SparkSession

QUERIES = Path(__file__).resolve().parent.parent / "queries"


def same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-12)
    return a == b


def main(out: Path) -> None:
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    for table in ("legs", "interactions"):
        spark.read.option("pathGlobFilter", "*.parquet").parquet(str(out / table)).createOrReplaceTempView(table)
    legs = spark.table("legs")
    assert dict(legs.dtypes)["date"] == "date", legs.dtypes
    for sql_file in sorted(QUERIES.glob("*.sql")):
        name = sql_file.stem
        mine = spark.sql(sql_file.read_text())
        cols = mine.columns
        rows = [tuple(r) for r in mine.collect()]
        theirs = [tuple(r) for r in spark.read.option("pathGlobFilter", "*.parquet").parquet(str(out / name)).select(*cols).collect()]
        key = lambda r: tuple("" if v is None else str(v) for v in r[:3])
        rows.sort(key=key)
        theirs.sort(key=key)
        assert len(rows) == len(theirs), (name, len(rows), len(theirs))
        for a, b in zip(rows, theirs):
            assert all(same(x, y) for x, y in zip(a, b)), (name, a, b)
        print(f"  {name}: Spark {spark.version} and rerate agree on {len(rows)} rows x {len(cols)} columns")
    spark.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
