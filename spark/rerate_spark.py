#!/usr/bin/env python3
"""rerate on Apache Spark: the job of `rerate run`, with the same dataset as its result.

    python3 spark/rerate_spark.py [--master URL] [--rerate PATH] INPUT... --out DIR [options]
    spark-submit spark/rerate_spark.py --rerate PATH INPUT... --out DIR [options]

The per-record work (reading every input shape and compression, parsing, rating, deck pricing,
reconciliation classes, rejects) is rerate's own: each executor task runs `rerate extract` on one
input file and streams its legs back as Arrow IPC (`mapInArrow`). The cross-record work runs in
Spark SQL: deduplication by call_id (queries/engine/dedup.sql), interactions
(queries/engine/interactions.sql), the reports of queries/*.sql (the files rerate compiles in),
the reconciliation table, and the Hive-partitioned write with rerate's merge semantics. The driver
writes manifest.json and rejects.ndjson as a local run does. See README.md, "rerate on Spark".
"""
import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from functools import reduce
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUERIES = HERE.parent / "queries"
ENGINE = QUERIES / "engine"

# The built-in reports, in the order rerate runs them (src/reports/mod.rs, BUILTIN).
REPORTS = ["daily", "hangup_causes", "top_destinations", "reconciliation_daily", "revenue_leak", "margin"]
LINEAGE = ["source_file", "source_line", "source_offset"]
# The ledgers table (src/ingest/ledger.rs, src/ledgers.rs): a file a day like the reports.
LEDGERS = "ledgers"
# The ledger reconciliation's tables (queries/ledgers/, src/ledger_reconciliation.rs), over the
# view ledger_rows.
LEDGER_QUERIES = QUERIES / "ledgers"
LEDGER_TABLES = ["ledger_reconciliation", "ledger_daily"]
DAY_TABLES = REPORTS + [LEDGERS] + LEDGER_TABLES
LEDGER_COLUMNS = [
    "ledger_id", "source_service", "source_id", "description", "usage_type", "usage_quantity", "usage_unit",
    "ledger_type", "amount_units", "period_start", "period_end", "account_name", "pvt_account_id", "metadata",
    "ledger_format",
    "source_file", "source_line", "source_offset",
]
# What makes two copies of a ledger differ: not where they were read, nor their shape.
LEDGER_VALUES = [c for c in LEDGER_COLUMNS if c not in LINEAGE and c != "ledger_format"]
# A ledger without an id is these (src/ledgers.rs).
LEDGER_KEY = ["source_service", "source_id", "period_start", "period_end", "ledger_type"]
CUSTOMER_CLASS = "reconciliation_class"
RESELLER_CLASS = "reconciliation_reseller_class"
UNASSIGNED = "_unassigned"
SIDE = "__side"
# The interactions and reconciliation tables' file columns (src/interactions.rs, src/reconcile.rs).
INTERACTION_COLUMNS = [
    "interaction_id", "start_time", "end_time", "duration_seconds", "call_direction",
    "caller_id_name", "caller_id_number", "callee_id_name", "callee_id_number", "hangup_cause",
    "legs", "leg_call_ids", "answered", "talk_seconds", "billed_seconds", "rated_cost_units",
    "cost_units", "reseller_cost_units", "accounts",
]
RECON_COLUMNS = [
    "call_id", "party", "class", "recorded_cost_units", "derived_cost_units", "delta_units",
    "leg_rate", "deck_rate", "rate_name", "deck_rate_name", "account_billing", "reseller_billing",
    "billing_seconds", "billed_seconds", "start_time", "source_format", "source_file",
    "source_line",
]
MONEY = ["billing_seconds", "billed_seconds", "rated_cost_units", "cost_units", "reseller_cost_units"]
# Options of `rerate run` that `rerate extract` applies, and which of them name a file.
VALUE_OPTIONS = [
    "tz", "rounding", "max_record_size", "chunk_size", "rates", "ratedeck_map", "rate_sort",
    "e164_converters", "hotornot_filter_list", "default_rate_minimum", "default_rate_increment",
    "default_rate_nocharge_time", "rate_version",
]
FILE_OPTIONS = ["rates", "ratedeck_map", "e164_converters"]
# The options a dataset keeps (src/job.rs, `definition`), by flag.
DEFINITION = ["tz", "rounding", "rates", "ratedeck_map"]
DECK_SETTINGS = [
    "rate_sort", "hotornot_filter_list", "default_rate_minimum", "default_rate_increment",
    "default_rate_nocharge_time", "rate_version",
]


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="rerate_spark.py",
        description="Run rerate's job on Apache Spark: the same legs, interactions, reports, "
        "rejects.ndjson and manifest counts as `rerate run` on the same input.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="files, folders or globs as `rerate run` takes them; under a cluster, "
                   "s3a://, hdfs:// or file:// URIs of files or folders")
    p.add_argument("--out", required=True, metavar="DIR", help="the dataset folder (or URI)")
    p.add_argument("--master", help="Spark master (local[N], spark://..., yarn); default: "
                   "spark-submit's, else local[*]")
    p.add_argument("--rerate", metavar="PATH", default=shutil.which("rerate"),
                   help="the rerate binary (Linux, the executors' architecture); shipped to "
                   "the executors with SparkContext.addFile unless the master is local")
    p.add_argument("--mode", choices=["merge", "overwrite-partitions", "replace-all"],
                   default="merge")
    p.add_argument("--tz", default="UTC")
    p.add_argument("--rounding", choices=["kazoo", "exact"], default="kazoo")
    p.add_argument("--max-record-size", dest="max_record_size")
    p.add_argument("--chunk-size", dest="chunk_size")
    p.add_argument("--rates")
    p.add_argument("--ratedeck-map", dest="ratedeck_map")
    p.add_argument("--rate-sort", dest="rate_sort", choices=["weight", "cost"])
    p.add_argument("--e164-converters", dest="e164_converters")
    p.add_argument("--hotornot-filter-list", dest="hotornot_filter_list")
    p.add_argument("--default-rate-minimum", dest="default_rate_minimum")
    p.add_argument("--default-rate-increment", dest="default_rate_increment")
    p.add_argument("--default-rate-nocharge-time", dest="default_rate_nocharge_time")
    p.add_argument("--rate-version", dest="rate_version")
    p.add_argument("--strict", action="store_true",
                   help="commit nothing (exit 2) when an input could not be read to its end")
    p.add_argument("--threads-per-task", type=int, default=1,
                   help="rerate's threads in each task (match spark.task.cpus)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    if not a.rerate:
        p.error("--rerate PATH is required when no rerate is on PATH")
    return a


def is_uri(s):
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", s) is not None


STARTED = time.time()


def say(args, msg):
    if not args.quiet:
        print(f"rerate_spark: [{time.time() - STARTED:6.1f} s] {msg}", file=sys.stderr, flush=True)


# --- the executors' side -------------------------------------------------------------------


def _resolve(name, shipped):
    """A file the driver shipped with addFile (`shipped`), else the path as given."""
    if shipped:
        from pyspark import SparkFiles
        path = SparkFiles.get(name)
        if name == "rerate":
            os.chmod(path, 0o755)
        return path
    return name


def _extract_task(job):
    """mapInArrow's function: each input row (index, path, local, content) is one file, read by
    `rerate extract`; yields its legs, then one row whose __side column carries the file's stats
    and rejects."""

    def run(batches):
        import pyarrow as pa

        schema = job["schema"]
        binary = _resolve(job["rerate"], job["ship"])
        opts = []
        for flag, value in job["opts"]:
            if flag in job["files"]:
                value = _resolve(value, job["ship"])
            opts += [flag, value]
        for batch in batches:
            for row in batch.to_pylist():
                with tempfile.TemporaryDirectory(prefix="rerate-extract-") as tmp:
                    local = row["local"]
                    if row["content"] is not None:
                        # A copy that keeps the path's folders: a CSV export's account is in them.
                        rel = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*", "", row["path"]).lstrip("/")
                        local = os.path.join(tmp, "input", rel)
                        os.makedirs(os.path.dirname(local), exist_ok=True)
                        with open(local, "wb") as f:
                            f.write(row["content"])
                    to = os.path.join(tmp, "extract")
                    cmd = [binary, "extract", local, "--out", job["out"], "--to", to,
                           "--name", row["path"], "--quiet", "--threads", str(job["threads"])] + opts
                    done = subprocess.run(cmd, capture_output=True, text=True)
                    if done.returncode != 0:
                        raise RuntimeError(f"rerate extract {row['path']} exited {done.returncode}: {done.stderr.strip()}")
                    with pa.ipc.open_stream(os.path.join(to, "legs.arrows")) as r:
                        for b in r:
                            cols = [b.column(f.name).cast(f.type) for f in schema if f.name != SIDE]
                            cols.append(pa.nulls(b.num_rows, pa.string()))
                            yield pa.RecordBatch.from_arrays(cols, schema=schema)
                    with open(os.path.join(to, "stats.json")) as f:
                        stats = json.load(f)
                    with open(os.path.join(to, "rejects.ndjson")) as f:
                        rejects = f.read()
                    # The file's ledgers (an empty stream still gives the table's columns).
                    with open(os.path.join(to, "ledgers.arrows"), "rb") as f:
                        ledgers = base64.b64encode(f.read()).decode()
                    side = json.dumps({"index": row["index"], "stats": stats, "rejects": rejects,
                                       "ledgers": ledgers})
                    cols = [pa.nulls(1, f.type) for f in schema if f.name != SIDE]
                    cols.append(pa.array([side], pa.string()))
                    yield pa.RecordBatch.from_arrays(cols, schema=schema)

    return run


# --- the driver's side ---------------------------------------------------------------------


def plain(t):
    """An Arrow type with Spark's string and list types (rerate writes the large ones)."""
    import pyarrow as pa

    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_list(t) or pa.types.is_list(t):
        return pa.list_(plain(t.value_type))
    return t


class Job:
    def __init__(self, args, spark):
        self.args = args
        self.spark = spark
        self.sc = spark.sparkContext
        self.local_master = self.sc.master.startswith("local")
        self.out = args.out
        self.out_local = None if is_uri(args.out) and not args.out.startswith("file:") else \
            Path(re.sub(r"^file://", "", args.out))
        self.started = time.time()
        if __name__ != "__main__" and not getattr(self.sc, "_rerate_spark_shipped", False):
            # Imported (by a test or another job): the executors import this module by name.
            self.sc.addPyFile(__file__)
            self.sc._rerate_spark_shipped = True

    # Options and files for the executors.
    def extract_options(self):
        a = self.args
        opts, shipped = [], set()
        for name in VALUE_OPTIONS:
            v = getattr(a, name)
            if v is None:
                continue
            flag = "--" + name.replace("_", "-")
            if name in FILE_OPTIONS and not self.local_master:
                self.sc.addFile(v)
                v = os.path.basename(v)
                shipped.add(flag)
            opts.append((flag, str(v)))
        return opts, shipped

    def rerate_cmd(self, *args):
        return [self.args.rerate, *args]

    def listing(self):
        """The input files, found by rerate's own discovery for local paths, by Spark's file
        listing (binaryFile) for URIs."""
        local = [i for i in self.args.inputs if not is_uri(i) or i.startswith("file:")]
        remote = [i for i in self.args.inputs if i not in local]
        files, skipped = [], []
        if local:
            out = str(self.out_local) if self.out_local else "/nonexistent-rerate-out"
            opts = [x for f, v in self.extract_options_plain() for x in (f, v)]
            done = subprocess.run(
                self.rerate_cmd("extract", "--list", *[re.sub(r"^file://", "", i) for i in local], "--out", out, *opts),
                capture_output=True, text=True)
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                sys.exit(done.returncode)
            listed = json.loads(done.stdout)
            files += [{"path": f["path"], "local": f["local"], "bytes": f["bytes"]} for f in listed["files"]]
            skipped += listed["skipped"]
        if remote:
            pattern = r"\.(json|ndjson|jsonl|csv)(\.gz|\.zst)?$"
            found = (self.spark.read.format("binaryFile").option("recursiveFileLookup", "true")
                     .load(remote).select("path", "length").collect())
            for r in sorted(found, key=lambda r: r.path):
                name = r.path.rsplit("/", 1)[-1]
                if name.startswith(".") or not re.search(pattern, name):
                    skipped.append({"path": r.path, "reason": "not named *.json, *.ndjson, *.jsonl or *.csv (optionally .gz/.zst)"})
                else:
                    files.append({"path": r.path, "local": None, "bytes": r.length})
        return files, skipped

    def extract_options_plain(self):
        a = self.args
        return [("--" + n.replace("_", "-"), str(getattr(a, n))) for n in VALUE_OPTIONS
                if getattr(a, n) is not None]

    def legs_schema(self):
        """The legs' Arrow schema, as rerate extract writes it (from an empty input)."""
        import pyarrow as pa

        with tempfile.TemporaryDirectory(prefix="rerate-schema-") as tmp:
            empty = os.path.join(tmp, "empty.ndjson")
            open(empty, "w").close()
            to = os.path.join(tmp, "x")
            subprocess.run(self.rerate_cmd("extract", empty, "--out", os.path.join(tmp, "out"),
                                           "--to", to, "--quiet", *[x for f, v in self.extract_options_plain() for x in (f, v)]),
                           check=True, capture_output=True)
            with pa.ipc.open_stream(os.path.join(to, "legs.arrows")) as r:
                s = r.schema
        fields = [pa.field(f.name, plain(f.type)) for f in s]
        fields.append(pa.field(SIDE, pa.string()))
        return pa.schema(fields)

    def extract(self, files, schema):
        from pyspark.sql.pandas.types import from_arrow_schema
        from pyspark import StorageLevel

        opts, shipped = self.extract_options()
        ship = not self.local_master
        rerate = self.args.rerate
        if ship:
            self.sc.addFile(rerate)
            rerate = "rerate"
        job = {
            "schema": schema, "rerate": rerate, "ship": ship, "opts": opts, "files": shipped,
            "out": str(self.out_local or self.out), "threads": self.args.threads_per_task,
        }
        rows = [(i, f["path"], f["local"]) for i, f in enumerate(files)]
        # A few files a task: each task starts a Python worker.
        slices = max(1, min(len(rows), self.sc.defaultParallelism * 2))
        df = self.spark.createDataFrame(
            self.sc.parallelize(rows, slices), "index int, path string, local string")
        remote = [f["path"] for f in files if f["local"] is None]
        if remote:
            content = (self.spark.read.format("binaryFile").load(remote)
                       .select("path", "content"))
            df = df.join(content, "path", "left").repartition(slices, "index")
        else:
            from pyspark.sql.functions import lit
            df = df.withColumn("content", lit(None).cast("binary"))
        spark_schema = from_arrow_schema(schema)
        ex = df.mapInArrow(_extract_task(job), spark_schema).persist(StorageLevel.MEMORY_AND_DISK)
        sides = [json.loads(r[0]) for r in ex.where(f"{SIDE} IS NOT NULL").select(SIDE).collect()]
        sides.sort(key=lambda s: s["index"])
        legs = ex.where(f"{SIDE} IS NULL").drop(SIDE)
        return legs, sides, ex

    # --- the dataset ------------------------------------------------------------------------

    def table_path(self, table):
        return f"{self.out.rstrip('/')}/{table}"

    def has_partitions(self, table):
        first = "date=" if table in DAY_TABLES else "account_id="
        if self.out_local is not None:
            d = self.out_local / table
            return d.is_dir() and any(p.is_dir() and p.name.startswith(first) for p in d.iterdir())
        jvm = self.sc._jvm
        path = jvm.org.apache.hadoop.fs.Path(self.table_path(table))
        fs = path.getFileSystem(self.sc._jsc.hadoopConfiguration())
        return fs.exists(path) and any(s.getPath().getName().startswith(first) for s in fs.listStatus(path))

    def read_table(self, table):
        """A table of the dataset, account_id and date from the paths, or account_id from the
        files of a report (one file a day: src/write/partition.rs, Grain) (`_unassigned` and the
        Hive default partition read back as null, as rerate's merge reads them)."""
        from pyspark.sql.functions import col, when, to_date

        folders = "/date=*" if table in DAY_TABLES else "/account_id=*/date=*"
        df = (self.spark.read.option("basePath", self.table_path(table))
              .option("pathGlobFilter", "*.parquet").parquet(self.table_path(table) + folders))
        return (df.withColumn("account_id", when(col("account_id") == UNASSIGNED, None).otherwise(col("account_id")))
                .withColumn("date", to_date(col("date"))))

    def touched(self, new):
        """The dataset's legs partitions a merge rewrites (src/merge.rs): those of the run's legs,
        then every partition sharing a call_id or an interaction key with them, until none is
        added. Returns their legs and the set of (account_id, date)."""
        from pyspark.sql.functions import coalesce, col

        if not self.has_partitions("legs"):
            return None, set()
        old = self.read_table("legs").withColumn(
            "__key", coalesce(col("interaction_id"), col("bridge_id"), col("call_id"))).cache()
        parts = new.select("account_id", "date").distinct()
        old_parts = old.select("account_id", "date").distinct()
        joined = set(map(tuple, parts.join(old_parts, (parts.account_id.eqNullSafe(old_parts.account_id)) & (parts.date.eqNullSafe(old_parts.date)))
                         .select(parts.account_id, parts.date).collect()))
        calls = new.select("call_id").union(self._partition_rows(old, joined).select("call_id")).distinct()
        keys = new.select(coalesce(col("interaction_id"), col("bridge_id"), col("call_id")).alias("__key")) \
            .union(self._partition_rows(old, joined).select("__key")).distinct()
        while True:
            hit = (old.join(calls, "call_id", "left_semi").select("account_id", "date")
                   .union(old.join(keys, "__key", "left_semi").select("account_id", "date")).distinct().collect())
            grown = {(r.account_id, r.date) for r in hit} - joined
            if not grown:
                break
            joined |= grown
            more = self._partition_rows(old, grown)
            calls = calls.union(more.select("call_id")).distinct().cache()
            keys = keys.union(more.select("__key")).distinct().cache()
        back = self._partition_rows(old, joined).drop("__key")
        return back, joined

    def _partition_rows(self, df, parts):
        from pyspark.sql.functions import col

        if not parts:
            return df.limit(0)
        pdf = self.spark.createDataFrame(sorted(parts, key=lambda p: (p[0] or "", str(p[1]))), "account_id string, date date")
        return df.join(pdf, (df.account_id.eqNullSafe(pdf.account_id)) & (df.date.eqNullSafe(pdf.date)), "left_semi")

    def read_back(self, back):
        """The read-back legs with their reconciliation classes (from the dataset's
        reconciliation rows of those partitions: one leg per call_id there)."""
        from pyspark.sql.functions import col, lit, first, when

        if self.has_partitions("reconciliation"):
            r = self.read_table("reconciliation").groupBy("call_id").agg(
                first(when(col("party") == "customer", col("class")), ignorenulls=True).alias(CUSTOMER_CLASS),
                first(when(col("party") == "reseller", col("class")), ignorenulls=True).alias(RESELLER_CLASS))
            back = back.join(r, "call_id", "left")
        else:
            back = back.withColumn(CUSTOMER_CLASS, lit(None).cast("string")) \
                .withColumn(RESELLER_CLASS, lit(None).cast("string"))
        return back

    # --- the stages -------------------------------------------------------------------------

    def dedup(self, copies, columns):
        """queries/engine/dedup.sql over `copies`; returns every copy with kept, same_as_first
        and in_dataset."""
        content = [c for c in columns if c not in LINEAGE and c not in (CUSTOMER_CLASS, RESELLER_CLASS)]
        same = " AND ".join(f"c.`{c}` <=> w.`{c}`" for c in content)
        filled = " + ".join(f"CASE WHEN c.`{c}` IS NULL THEN 0 ELSE 1 END" for c in content)
        # One sort key: a struct compares field by field, null least (DESC: null last).
        by_data = "struct(" + ", ".join(f"c.`{c}`" for c in sorted(content)) + ") DESC"
        sql = (ENGINE / "dedup.sql").read_text().replace("${same}", same) \
            .replace("${filled}", filled).replace("${by_data}", by_data)
        copies.createOrReplaceTempView("copies")
        return self.spark.sql(sql)

    def write_table(self, df, table, columns, order, replace_all):
        from pyspark.sql.functions import col, coalesce, lit

        df = df.withColumn("account_id", coalesce(col("account_id"), lit(UNASSIGNED)))
        out = (df.select(*columns, "account_id", "date")
               .repartition("account_id", "date")
               .sortWithinPartitions("account_id", "date", *order))
        w = out.write.mode("overwrite").partitionBy("account_id", "date").option("compression", "zstd")
        if replace_all:
            w = w.option("partitionOverwriteMode", "static")
        w.parquet(self.table_path(table))
        say(self.args, f"wrote {table}")

    def write_day_table(self, df, table, columns, replace_all, replaced):
        """A report, one file a day with account_id its last column, rows by account_id and
        then in the report's order (rerate's Grain::Day): each day the run writes or empties
        holds this run's rows and the dataset's rows of the accounts the run leaves alone
        (`replaced`: the (account_id, date) partitions it rewrites)."""
        from pyspark.sql.functions import col, coalesce, lit, monotonically_increasing_id

        new = df.withColumn("account_id", coalesce(col("account_id"), lit(UNASSIGNED))) \
            .select(*columns, "account_id", "date", lit(0).alias("__source"), "__order")
        days = {d for _, d in replaced}
        if not replace_all and self.has_partitions(table):
            old = self.read_table(table)
            old = old.withColumn("account_id", coalesce(col("account_id"), lit(UNASSIGNED)))
            keep = [r for r in old.select("account_id", "date").distinct().collect()
                    if r.date in days and (None if r.account_id == UNASSIGNED else r.account_id, r.date) not in replaced]
            kept = self._partition_rows(old, {(r.account_id, r.date) for r in keep})
            # Read before the overwrite replaces the files it reads from.
            rows = kept.withColumn("__order", monotonically_increasing_id()).select(
                *columns, "account_id", "date", lit(1).alias("__source"), "__order").collect()
            if rows:
                new = new.unionByName(self.spark.createDataFrame(rows, new.schema))
        out = (new.repartition("date").sortWithinPartitions("date", "account_id", "__source", "__order")
               .select(*columns, "account_id", "date"))
        w = out.write.mode("overwrite").partitionBy("date").option("compression", "zstd")
        if replace_all:
            w = w.option("partitionOverwriteMode", "static")
        w.parquet(self.table_path(table))
        # A day left with no row has no file.
        present = {r.date for r in out.select("date").distinct().collect()}
        self.remove_days(table, sorted(d for d in days - present if d is not None))
        say(self.args, f"wrote {table}")

    def ledgers_of(self, sides):
        """The ledgers every file's extract read (`ledgers.arrows`, shipped in its side row), in
        file order, with __file and __pos (the order read) for the rule's last tie."""
        import pyarrow as pa

        tables = []
        for s in sides:
            with pa.ipc.open_stream(base64.b64decode(s["ledgers"])) as r:
                t = r.read_all()
            t = t.append_column("__file", pa.array([s["index"]] * t.num_rows, pa.int64()))
            t = t.append_column("__pos", pa.array(range(t.num_rows), pa.int64()))
            tables.append(t)
        t = pa.concat_tables(tables)
        t = t.cast(pa.schema([pa.field(f.name, plain(f.type)) for f in t.schema]))
        return self.spark.createDataFrame(t)

    def write_ledgers(self, new, replace_all, merging):
        """The ledgers table (src/ledgers.rs): one row per (account_id, date, ledger key) of
        this run's ledgers and, under --mode merge, the dataset's rows of the account-days they
        fall on; the fuller copy, then the values in column order (nulls last), then the
        dataset's row, then the first read. Returns the manifest's counts.ledgers."""
        from pyspark.sql import Window
        from pyspark.sql.functions import (coalesce, col, concat_ws, lit, monotonically_increasing_id,
                                           row_number, when)

        new = new.withColumn("account_id", coalesce(col("account_id"), lit(UNASSIGNED)))
        read = new.count()
        counts = {"read": read, "written": 0, "duplicates_dropped": 0, "conflicts": 0,
                  "dataset_ledgers_replaced": 0}
        if read == 0:
            return counts
        parts = {(r.account_id, r.date) for r in new.select("account_id", "date").distinct().collect()}
        copies = new.withColumn("__src", lit(1))
        committed = 0
        if merging and self.has_partitions(LEDGERS):
            old = self.read_table(LEDGERS).withColumn("account_id", coalesce(col("account_id"), lit(UNASSIGNED)))
            old = self._partition_rows(old, parts).select(*LEDGER_COLUMNS, "account_id", "date")
            # Read before the overwrite replaces the files it reads from.
            rows = old.collect()
            committed = len(rows)
            if rows:
                old = self.spark.createDataFrame(rows, old.schema).withColumn("__src", lit(0)) \
                    .withColumn("__file", lit(-1).cast("long")).withColumn("__pos", monotonically_increasing_id())
                copies = copies.unionByName(old)
        # The database that holds it (the account's own when unknown), then its id or source.
        key = concat_ws("\x1e", coalesce(col("pvt_account_id"), col("account_id"), lit("")),
                        when(col("ledger_id").isNotNull(), col("ledger_id")).otherwise(
            concat_ws("\x1f", *[coalesce(col(c).cast("string"), lit("")) for c in LEDGER_KEY])))
        nulls = sum(when(col(c).isNull(), 1).otherwise(0) for c in LEDGER_VALUES)
        copies = copies.withColumn("__key", key).withColumn("__nulls", nulls)
        rule = ["__nulls", *[col(c).asc_nulls_last() for c in LEDGER_VALUES], "__src", "__file", "__pos"]
        w = Window.partitionBy("account_id", "date", "__key").orderBy(*rule)
        kept = copies.withColumn("__rank", row_number().over(w)).where("__rank = 1").cache()
        n_kept = kept.count()
        kept_run = kept.where("__src = 1").count()
        distinct = copies.select("account_id", "date", "__key", *LEDGER_VALUES).distinct().count()
        counts.update({"written": kept_run, "duplicates_dropped": read - kept_run,
                       "conflicts": distinct - n_kept,
                       "dataset_ledgers_replaced": committed - (n_kept - kept_run)})
        # Rows in a day: by account, then id, service, source id and start (nulls last), then as
        # the rule ordered them (rerate's Grain::Day write of ledgers::table()).
        order = ["account_id", "date", *[col(c).asc_nulls_last() for c in
                                          ["ledger_id", "source_service", "source_id", "period_start"]],
                 "__key", *rule]
        ordered = kept.orderBy(*order).withColumn("__order", monotonically_increasing_id())
        replaced = {(None if a == UNASSIGNED else a, d) for a, d in parts}
        self.write_day_table(ordered, LEDGERS, LEDGER_COLUMNS, replace_all, replaced)
        return counts

    def ledger_tables(self):
        """The ledger reconciliation's tables over the whole dataset as written (queries/ledgers/:
        ledger_rows.sql, then each table's SQL), every day written anew: the definition rerate's
        incremental stage (src/ledger_reconciliation.rs) must equal. `_unassigned` stays a name
        here, as rerate and an analyst's reader of the folder see it."""
        from pyspark.sql.functions import col, coalesce, lit, monotonically_increasing_id

        def named(df):
            return df.withColumn("account_id", coalesce(col("account_id"), lit(UNASSIGNED)))

        legs = named(self.read_table("legs"))
        if self.has_partitions(LEDGERS):
            ledgers = named(self.read_table(LEDGERS))
        else:
            ledgers = self.spark.read.parquet(self.table_path(LEDGERS) + "/part-0.parquet")
        legs.createOrReplaceTempView("legs")
        legs.createOrReplaceTempView("month_legs")
        ledgers.createOrReplaceTempView("ledgers")
        ledgers.createOrReplaceTempView("month_ledgers")
        self.spark.sql((LEDGER_QUERIES / "ledger_rows.sql").read_text()).createOrReplaceTempView("ledger_rows")
        for name in LEDGER_TABLES:
            df = with_currency(self.spark.sql((LEDGER_QUERIES / f"{name}.sql").read_text()))
            df = df.withColumn("__order", monotonically_increasing_id()).cache()
            cols = [c for c in df.columns if c not in ("account_id", "date", "__order")]
            self.write_day_table(df, name, cols, True, set())
            self.empty_table_file(name, df)

    def remove_days(self, table, days):
        """Removes the day folders `days` of a report."""
        jvm = self.sc._jvm
        escape = jvm.org.apache.spark.sql.catalyst.catalog.ExternalCatalogUtils.escapePathName
        conf = self.sc._jsc.hadoopConfiguration()
        for d in days:
            path = jvm.org.apache.hadoop.fs.Path(f"{self.table_path(table)}/date={escape(str(d))}")
            path.getFileSystem(conf).delete(path, True)

    def run(self):
        from pyspark.sql.functions import col, lit, coalesce, when, monotonically_increasing_id
        from pyspark.sql import functions as F

        args = self.args
        other = self.other_engine()
        if other:
            print(f"rerate_spark: error: {other}", file=sys.stderr)
            return 2
        files, skipped = self.listing()
        if not files:
            print("rerate_spark: error: the inputs hold no CDR file", file=sys.stderr)
            return 4
        say(args, f"{len(files)} input files")
        schema = self.legs_schema()
        legs_new, sides, extracted = self.extract(files, schema)
        columns = [f.name for f in schema if f.name != SIDE]
        leg_cols = [c for c in columns if c not in ("account_id", "date", CUSTOMER_CLASS, RESELLER_CLASS)]
        stats = [s["stats"] for s in sides]
        records_read = sum(s["records_read"] for s in stats)
        partial = sorted([p for s in stats for p in s["partial_inputs"]], key=lambda p: p["file"])
        if args.strict and partial:
            print("rerate_spark: --strict: " + "; ".join(f"{p['file']} ({p['reason']})" for p in partial)
                  + f"; nothing was committed and {self.out} is as it was", file=sys.stderr)
            return 2
        say(args, f"extracted {records_read} records")
        ledgers_new = self.ledgers_of(sides)

        # Merge: the partitions the run rewrites, read back.
        merging = args.mode == "merge"
        back, touched = (None, set())
        if merging:
            back, touched = self.touched(legs_new)
        parts_back = len(touched)
        copies = legs_new.withColumn("from_dataset", lit(False))
        legs_back = 0
        if back is not None:
            back = self.read_back(back).cache()
            legs_back = back.count()
            copies = copies.unionByName(back.withColumn("from_dataset", lit(True)))
        judged = self.dedup(copies, columns).persist()
        kept = judged.where("kept").select(*columns)

        # Counts of deduplication (src/dedup.rs, DedupStats).
        dropped = judged.where("NOT kept")
        d = dropped.agg(
            F.sum(when(~col("from_dataset"), 1).otherwise(0)).alias("dup"),
            F.sum(when(~col("from_dataset") & col("same_as_first"), 1).otherwise(0)).alias("ident"),
            F.sum(when(~col("from_dataset") & ~col("same_as_first"), 1).otherwise(0)).alias("confl"),
            F.sum(when(~col("from_dataset") & col("in_dataset"), 1).otherwise(0)).alias("already"),
            F.sum(when(col("from_dataset"), 1).otherwise(0)).alias("replaced"),
        ).collect()[0]
        conflict_ids = sorted(r.call_id for r in dropped.where("NOT same_as_first").select("call_id").distinct().collect())
        dedup = {
            "duplicates_dropped": int(d.dup or 0), "identical_dropped": int(d.ident or 0),
            "conflicting_dropped": int(d.confl or 0), "conflict_call_ids": conflict_ids,
            "already_in_dataset": int(d.already or 0), "dataset_legs_replaced": int(d.replaced or 0),
        }

        # The copies are held once, deduplicated (judged), from here on.
        extracted.unpersist()
        say(args, f"deduplicated: {dedup['duplicates_dropped']} duplicates dropped")
        # Interactions, reconciliation rows, reports.
        kept.createOrReplaceTempView("legs_for_interactions")
        self.spark.table("legs_for_interactions").createOrReplaceTempView("legs")
        calls = self.spark.sql((ENGINE / "interactions.sql").read_text()).cache()
        filled = kept.withColumn("account_id", coalesce(col("account_id"), lit(UNASSIGNED)))
        recon = self.reconciliation(filled).cache()
        filled.createOrReplaceTempView("legs")
        calls.withColumn("account_id", coalesce(col("account_id"), lit(UNASSIGNED))).createOrReplaceTempView("interactions")
        recon.createOrReplaceTempView("reconciliation")
        reports = {}
        for name in REPORTS:
            df = self.spark.sql((QUERIES / f"{name}.sql").read_text())
            df = with_currency(df)
            if name == "reconciliation_daily" and not args.rates:
                df = df.where("reported_legs > 0 OR reseller_reported_legs > 0")
            reports[name] = df.withColumn("__order", monotonically_increasing_id()).cache()

        # Write: each table's touched partitions replaced (all of them under replace-all).
        replace_all = args.mode == "replace-all"
        self.write_table(kept, "legs", leg_cols, ["start_time", "call_id"], replace_all)
        self.write_table(calls, "interactions", INTERACTION_COLUMNS, ["start_time", "interaction_id"], replace_all)
        self.write_table(recon, "reconciliation", RECON_COLUMNS, ["start_time", "call_id", "party"], replace_all)
        written = {(r.account_id, r.date) for r in kept.select("account_id", "date").distinct().collect()}
        for name, df in reports.items():
            cols = [c for c in df.columns if c not in ("account_id", "date", "__order")]
            self.write_day_table(df, name, cols, replace_all, touched | written)
        # A partition read back that holds no leg now (each of its legs lost to a newer copy on
        # another day) goes in every table: the dynamic overwrite only replaces those written.
        emptied = sorted(touched - written, key=lambda p: (p[0] or "", str(p[1])))
        self.remove_partitions(emptied)
        ledger_counts = self.write_ledgers(ledgers_new, replace_all, merging)
        for t in ["legs", "interactions", "reconciliation", *REPORTS, LEDGERS]:
            self.empty_table_file(t, {"legs": kept, "interactions": calls, "reconciliation": recon,
                                      LEDGERS: ledgers_new.drop("__file", "__pos"), **reports}[t])
        self.ledger_tables()

        # Rejects and the manifest.
        self.write_rejects(sides)
        legs_written_parts = (filled.groupBy("account_id", "date").agg(
            F.count("*").alias("rows"), *[F.coalesce(F.sum(m), F.lit(0)).alias(m) for m in MONEY],
            F.sum(when(col("cost_units").isNull(), 1).otherwise(0)).alias("unpriced_legs"),
            F.coalesce(F.sum(when(col("cost_units").isNull(), col("billing_seconds"))), F.lit(0)).alias("unpriced_billing_seconds"),
        ).collect())
        legs_in_written = sum(r.rows for r in legs_written_parts)
        legs_kept = legs_back - dedup["dataset_legs_replaced"]
        legs_written = legs_in_written - legs_kept
        rejected_by_reason = {}
        for s in stats:
            for k, v in s["rejected_by_reason"].items():
                rejected_by_reason[k] = rejected_by_reason.get(k, 0) + v
        rejected = sum(rejected_by_reason.values())
        counts = {
            "records_read": records_read, "legs_written": legs_written, "rejected": rejected,
            "rejected_by_reason": dict(sorted(rejected_by_reason.items())),
            **{k: v for k, v in dedup.items()},
            "conflicts": len(conflict_ids),
            "balanced": (records_read == legs_written + rejected + dedup["duplicates_dropped"] + ledger_counts["read"]
                         and ledger_counts["read"] == ledger_counts["written"] + ledger_counts["duplicates_dropped"]),
            "legs_in_written_partitions": legs_in_written,
            "ledgers": ledger_counts,
        }
        if not counts["balanced"]:
            print(f"rerate_spark: internal error: the counts do not balance: {counts}", file=sys.stderr)
            return 2
        totals = {m: sum(getattr(r, m) for r in legs_written_parts) for m in MONEY}
        for k in ("unpriced_legs", "unpriced_billing_seconds"):
            totals[k] = sum(getattr(r, k) for r in legs_written_parts)
        manifest = {
            "engine": f"spark {self.spark.version}",
            "rerate_version": subprocess.run(self.rerate_cmd("--version"), capture_output=True, text=True).stdout.split()[-1],
            "options": {k: (v if not isinstance(v, Path) else str(v)) for k, v in vars(args).items()},
            "inputs": [i for s in stats for i in s["inputs"]],
            "skipped_files": skipped,
            "counts": counts,
            "totals": totals,
            "interactions": calls.count(),
            "reconciliation": self.recon_summary(filled, recon),
            "mode": args.mode,
            "partial_inputs": partial,
            "merge": {"partitions_read_back": parts_back, "legs_read_back": legs_back, "legs_kept": legs_kept,
                      "partitions_emptied": [[a or UNASSIGNED, str(d) if d else None] for a, d in emptied]},
            "partitions": [{"table": "legs", "account_id": r.account_id, "date": str(r.date) if r.date else None,
                            "rows": r.rows, **{m: getattr(r, m) for m in MONEY}, "unpriced_legs": r.unpriced_legs,
                            "unpriced_billing_seconds": r.unpriced_billing_seconds}
                           for r in sorted(legs_written_parts, key=lambda r: (r.account_id, str(r.date)))],
            "elapsed_ms": int((time.time() - self.started) * 1000),
        }
        self.write_text("manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")
        # Every table this run cached goes: a session may serve further runs (tests/spark_job.py).
        self.spark.catalog.clearCache()
        say(args, f"read {records_read} records; {legs_written} legs written, {rejected} rejected, "
                  f"{dedup['duplicates_dropped']} duplicates dropped; manifest at {self.out}/manifest.json")
        return 3 if partial else 0

    def reconciliation(self, legs):
        """The reconciliation table (src/reconcile.rs): a row per leg and party that rerate
        extract classed, with the party's money."""
        from pyspark.sql.functions import col, lit

        def party(name, cls, rec, der):
            return legs.where(col(cls).isNotNull()).select(
                "call_id", lit(name).alias("party"), col(cls).alias("class"),
                col(rec).alias("recorded_cost_units"), col(der).alias("derived_cost_units"),
                (col(der) - col(rec)).alias("delta_units"), col("rate").alias("leg_rate"),
                "deck_rate", "rate_name", "deck_rate_name", "account_billing", "reseller_billing",
                "billing_seconds", "billed_seconds", "start_time", "source_format", "source_file",
                "source_line", "account_id", "date")

        return party("customer", CUSTOMER_CLASS, "recorded_cost_units", "derived_cost_units").unionByName(
            party("reseller", RESELLER_CLASS, "recorded_reseller_cost_units", "derived_reseller_cost_units"))

    def recon_summary(self, legs, recon):
        """The manifest's `reconciliation` (src/reconcile.rs, Summary), from the legs' money and
        the reconciliation rows."""
        from pyspark.sql import functions as F
        from pyspark.sql.functions import col, when

        pm = lambda c: col(c) == "per_minute"
        derived = col("derived_cost_units").isNotNull() & col("derived_reseller_cost_units").isNotNull()
        def delta(bill, rec, der):
            return F.coalesce(F.sum(when(derived & col(rec).isNotNull() & (pm(bill) | (col(rec) != 0)),
                                         col(der) - col(rec))), F.lit(0))
        s = legs.agg(
            F.sum(when(~derived, 1).otherwise(0)).alias("not_derived"),
            F.sum(when(col("deck_rate").isNull(), 1).otherwise(0)).alias("no_deck_rate"),
            F.sum(when(derived & col("recorded_cost_units").isNull(), 1).otherwise(0)).alias("not_recorded"),
            F.sum(when(derived & col("recorded_reseller_cost_units").isNull(), 1).otherwise(0)).alias("reseller_not_recorded"),
            delta("account_billing", "recorded_cost_units", "derived_cost_units").alias("total_delta_units"),
            delta("reseller_billing", "recorded_reseller_cost_units", "derived_reseller_cost_units").alias("total_reseller_delta_units"),
        ).collect()[0]
        by_class = {r["class"]: r["n"] for r in recon.groupBy("class").agg(F.count("*").alias("n")).collect()}
        acct = recon.withColumn("a", F.when(col("account_id") == UNASSIGNED, "").otherwise(col("account_id"))) \
            .groupBy("a").agg(F.count("*").alias("n"), F.sum("delta_units").alias("d")).collect()
        worst = sorted(((r.a, r.n, r.d) for r in acct), key=lambda x: (-abs(x[2]), x[0]))[:5]
        return {
            "rows": sum(by_class.values()), "by_class": dict(sorted(by_class.items())),
            "total_delta_units": int(s.total_delta_units or 0),
            "total_reseller_delta_units": int(s.total_reseller_delta_units or 0),
            "not_derived": int(s.not_derived or 0), "no_deck_rate": int(s.no_deck_rate or 0),
            "not_recorded": int(s.not_recorded or 0),
            "reseller_not_recorded": int(s.reseller_not_recorded or 0),
            "worst_accounts": [list(w) for w in worst],
        }

    def other_engine(self):
        """Why the output folder is refused: `rerate run` wrote it (its manifest names no
        engine, and its catalog, `_catalog/`, holds the partition list and legs index this job
        does not keep). None when the folder is new or the Spark job's own."""
        text = None
        if self.out_local is not None:
            p = self.out_local / "manifest.json"
            text = p.read_text() if p.is_file() else None
        else:
            jvm = self.sc._jvm
            path = jvm.org.apache.hadoop.fs.Path(f"{self.out.rstrip('/')}/manifest.json")
            fs = path.getFileSystem(self.sc._jsc.hadoopConfiguration())
            if fs.exists(path):
                stream = fs.open(path)
                text = jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
                stream.close()
        if text is None:
            return None
        try:
            engine = json.loads(text).get("engine")
        except ValueError as e:
            return f"{self.out}/manifest.json cannot be read ({e}); nothing was changed"
        if engine is None:
            return (f"{self.out} was written by `rerate run`, whose catalog (manifest.json and _catalog/) this job "
                    "does not keep; keep one engine per dataset: go on with rerate run, or write the Spark job's "
                    "output to a new folder; nothing was changed")
        return None

    def remove_partitions(self, parts):
        """Removes the folders of the partitions `parts` ((account_id, date), None for the
        unassigned account or no date) in every table, named as Spark names them."""
        if not parts:
            return
        jvm = self.sc._jvm
        escape = jvm.org.apache.spark.sql.catalyst.catalog.ExternalCatalogUtils.escapePathName
        conf = self.sc._jsc.hadoopConfiguration()
        for table in ["legs", "interactions", "reconciliation"]:
            for account, date in parts:
                day = escape(str(date)) if date is not None else "__HIVE_DEFAULT_PARTITION__"
                path = jvm.org.apache.hadoop.fs.Path(
                    f"{self.table_path(table)}/account_id={escape(account or UNASSIGNED)}/date={day}")
                path.getFileSystem(conf).delete(path, True)

    def empty_table_file(self, table, df):
        """A table with no partition gets one empty part-0.parquet holding its columns, as rerate
        writes it, and loses it once the table has partitions (local output folders only)."""
        if self.out_local is None:
            return
        if self.has_partitions(table):
            (self.out_local / table / "part-0.parquet").unlink(missing_ok=True)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        d = self.out_local / table
        d.mkdir(parents=True, exist_ok=True)
        for p in d.iterdir():
            if p.is_file():
                p.unlink()
        cols = [c for c in df.columns if c != "__order"]
        rest = [c for c in cols if c not in ("account_id", "date")] + ["account_id", "date"]
        t = df.select(*rest).limit(0).toArrow()
        pq.write_table(t, d / "part-0.parquet")

    def write_rejects(self, sides):
        """rejects.ndjson: every file's rejects, in file, line and record order (ties in the order
        of their text), as rerate writes it."""
        lines = []
        for s in sides:
            for line in s["rejects"].splitlines(keepends=True):
                r = json.loads(line)
                rec = r.get("record")
                lines.append(((r["source"].encode(), r["line"], -1 if rec is None else rec), line.encode()))
        lines.sort()
        self.write_text("rejects.ndjson", b"".join(l for _, l in lines).decode())

    def write_text(self, name, text):
        if self.out_local is not None:
            self.out_local.mkdir(parents=True, exist_ok=True)
            tmp = self.out_local / f".{name}.tmp"
            tmp.write_text(text)
            tmp.replace(self.out_local / name)
            return
        jvm = self.sc._jvm
        path = jvm.org.apache.hadoop.fs.Path(f"{self.out.rstrip('/')}/{name}")
        fs = path.getFileSystem(self.sc._jsc.hadoopConfiguration())
        out = fs.create(path, True)
        out.write(bytearray(text.encode()))
        out.close()


def with_currency(df):
    """Each integer column `<x>_units` gets its twin `<x>` right after it, DECIMAL(18,4) =
    units / 10,000 exactly (src/reports/mod.rs, with_currency)."""
    from pyspark.sql.functions import col

    cols = []
    names = set(df.columns)
    types = dict(df.dtypes)
    for c in df.columns:
        t = types[c]
        cols.append(col(c).cast("bigint").alias(c) if t in ("int", "smallint", "tinyint") else col(c))
        stem = c[: -len("_units")] if c.endswith("_units") else None
        if stem and stem not in names and t in ("bigint", "int", "smallint", "tinyint"):
            cols.append((col(c).cast("decimal(22,0)") / 10000).cast("decimal(18,4)").alias(stem))
    return df.select(*cols)


def session(args):
    from pyspark.sql import SparkSession

    # The executors' Python is the driver's (where pyarrow is), unless the cluster says otherwise.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    b = SparkSession.builder.appName("rerate")
    if args.master:
        b = b.master(args.master)
    elif "spark.master" not in os.environ.get("PYSPARK_SUBMIT_ARGS", "") and not os.environ.get("SPARK_ENV_LOADED"):
        b = b.master("local[*]")
    for k, v in {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.hadoop.parquet.enable.summary-metadata": "false",
        "spark.ui.showConsoleProgress": "false",
    }.items():
        b = b.config(k, v)
    if (args.master or "local").startswith("local"):
        # A few shuffle partitions: a local run's tables are small, and 200 tasks cost seconds.
        b = b.config("spark.sql.shuffle.partitions", "4")
        # The driver is the executor: Spark's default heap of 1 GB ran out once in CI while
        # deduplicating the corpus case's second night (tests/spark_job.py). Set before the JVM
        # starts; PYSPARK_SUBMIT_ARGS's --driver-memory, when given, wins.
        if "--driver-memory" not in os.environ.get("PYSPARK_SUBMIT_ARGS", ""):
            b = b.config("spark.driver.memory", "2g")
    return b.getOrCreate()


def main(argv=None, spark=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    own = spark is None
    if own:
        spark = session(args)
        spark.sparkContext.setLogLevel("ERROR")
    try:
        return Job(args, spark).run()
    finally:
        if own:
            spark.stop()


if __name__ == "__main__":
    sys.exit(main())
