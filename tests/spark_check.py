"""Runs every query of queries/ in Spark SQL over a finished run's Parquet (read as Spark reads
any Hive-partitioned folder) and compares the results with the reports rerate wrote. .ci/run runs
it with the venv it makes for tests/spark_job.py:

    target/spark-venv/bin/python tests/spark_check.py OUT_DIR
"""
import json
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from report_compare import assert_same_rows

QUERIES = Path(__file__).resolve().parent.parent / "queries"



def main(out: Path) -> None:
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    parquet = lambda p: spark.read.option("pathGlobFilter", "*.parquet").parquet(str(p))
    for table in ("legs", "interactions"):
        parquet(out / table).createOrReplaceTempView(table)
    if any((out / "reconciliation").rglob("*.parquet")):
        parquet(out / "reconciliation").createOrReplaceTempView("reconciliation")
    else:
        # A run where every leg reconciles writes no reconciliation partition.
        spark.sql("select cast(null as string) account_id, cast(null as date) date, cast(null as string) party, cast(null as string) class where false").createOrReplaceTempView("reconciliation")
    manifest = json.loads((out / "manifest.json").read_text())
    legs = spark.table("legs")
    assert dict(legs.dtypes)["date"] == "date", legs.dtypes
    for sql_file in sorted(QUERIES.glob("*.sql")):
        name = sql_file.stem
        sql = sql_file.read_text()
        if name == "reconciliation_daily" and manifest["options"].get("rates") is None:
            # Without a deck rerate keeps only the account-days with a reported row.
            sql = f"select * from ({sql}) where reported_legs > 0 or reseller_reported_legs > 0"
        mine = spark.sql(sql)
        cols = mine.columns
        rows = [tuple(r) for r in mine.collect()]
        theirs = [tuple(r) for r in parquet(out / name).select(*cols).collect()]
        assert_same_rows(f"Spark {spark.version}", name, cols, rows, theirs)
    # The ledger reconciliation over the whole dataset: its months are the tables themselves.
    ledgers = parquet(out / "ledgers")
    ledgers.createOrReplaceTempView("ledgers")
    ledgers.createOrReplaceTempView("month_ledgers")
    legs.createOrReplaceTempView("month_legs")
    spark.sql((QUERIES / "ledgers" / "ledger_rows.sql").read_text()).createOrReplaceTempView("ledger_rows")
    for name in ("ledger_reconciliation", "ledger_daily"):
        mine = spark.sql((QUERIES / "ledgers" / f"{name}.sql").read_text())
        cols = mine.columns
        rows = [tuple(r) for r in mine.collect()]
        theirs = [tuple(r) for r in parquet(out / name).select(*cols).collect()]
        assert_same_rows(f"Spark {spark.version}", name, cols, rows, theirs)
    spark.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
