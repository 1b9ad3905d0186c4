"""spark/rerate_spark.py against `rerate run`, in Spark's local mode: for each case, both write a
dataset from the same input and tests/spark_job_check.py compares them partition by partition
(every table, rejects.ndjson, the manifest's counts); a few counts are also checked against
values worked by hand (fixtures/EXPECTED.md, fixtures/nightly-midnight/README.md). One
SparkSession serves every case. Run by .ci/run:

    python tests/spark_job.py target/debug/rerate [CASE...]

Cases: fixtures, reconcile, nights, moved, ledgers, corpus.
"""
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "spark"))
sys.path.insert(0, str(ROOT / "tests"))

import rerate_spark  # noqa: E402
import spark_job_check  # noqa: E402


class Cases:
    def __init__(self, rerate: str, spark, tmp: Path):
        self.rerate = rerate
        self.spark = spark
        self.tmp = tmp

    def both(self, name, inputs, *opts, check=True):
        """`rerate run` into TMP/name/rerate and rerate_spark.py into TMP/name/spark, with the
        same inputs and options; compares them. Returns both folders."""
        mine, theirs = self.tmp / name / "rerate", self.tmp / name / "spark"
        done = subprocess.run([self.rerate, "run", *inputs, "--out", str(mine), "--quiet", *opts],
                              cwd=ROOT, capture_output=True, text=True)
        assert done.returncode in (0, 3), f"rerate run {inputs}: {done.returncode} {done.stderr}"
        code = rerate_spark.main([*inputs, "--out", str(theirs), "--rerate", self.rerate, "--quiet", *opts],
                                 spark=self.spark)
        assert code == done.returncode, f"rerate_spark.py exited {code}, rerate run {done.returncode}"
        if check:
            spark_job_check.main(mine, theirs)
        return mine, theirs

    def fixtures(self):
        mine, theirs = self.both("fixtures", ["fixtures"])
        c = json.loads((theirs / "manifest.json").read_text())["counts"]
        # fixtures/EXPECTED.md: 50 records, 40 legs, 7 rejects, 3 copies dropped (2 identical).
        assert (c["records_read"], c["legs_written"], c["rejected"], c["duplicates_dropped"],
                c["identical_dropped"]) == (50, 40, 7, 3, 2), c
        assert c["conflict_call_ids"] == ["nd-surcharge-discount"], c

    def reconcile(self):
        mine, theirs = self.both("reconcile", ["fixtures/reconcile"], "--rates", "fixtures/reconcile/ratedeck.csv")
        rows = spark_job_check.compare_table("reconciliation", mine, theirs)
        assert rows > 0, "the reconcile fixtures report no reconciliation row"

    def nights(self):
        n1 = "fixtures/nightly-midnight/night-1.ndjson.nightly"
        n2 = "fixtures/nightly-midnight/night-2.ndjson.nightly"
        self.both("nights", [n1])
        mine, theirs = self.both("nights", [n2])
        # fixtures/nightly-midnight/README.md: 11 legs on 2026-11-19 and 5 on 2026-11-20.
        days = {}
        for p in (theirs / "legs").glob("account_id=*/date=*"):
            days[p.name] = days.get(p.name, 0) + spark_job_check.read_dir(p).num_rows
        assert days == {"date=2026-11-19": 11, "date=2026-11-20": 5}, days
        # The same night again changes no leg.
        self.both("nights", [n2])

    def moved(self):
        """A newer copy of a leg on another day than the dataset's copy, which was alone in its
        partition (the call re-exported with other times): the old copy and its partition go."""
        acct = "3c5a0f1e9b7d4c2a8e6f1b3d5a7c9e0f"
        leg = lambda start, ts: json.dumps({
            "call_id": "mv1", "billing_seconds": 30, "duration_seconds": 35, "channel_created_time": start * 1_000_000,
            "timestamp": ts, "call_direction": "outbound",
            "custom_channel_vars": {"account_id": acct, "account_billing": "per_minute", "rate": "100",
                                    "rate_increment": "60", "rate_minimum": "60"}})
        other = json.dumps({"call_id": "st1", "billing_seconds": 30, "duration_seconds": 35,
                            "channel_created_time": 1795129190000000, "timestamp": 63962348425,
                            "custom_channel_vars": {"account_id": "9d8c7b6a5f4e3d2c1b0a99887766aabb",
                                                    "account_billing": "per_minute", "rate": "100"}})
        src = self.tmp / "moved-in"
        src.mkdir()
        (src / "night-1.ndjson").write_text(leg(1795132790, 63962352025) + "\n" + other + "\n")
        (src / "night-2.ndjson").write_text(leg(1795132810, 63962352045) + "\n")
        self.both("moved", [str(src / "night-1.ndjson")])
        mine, theirs = self.both("moved", [str(src / "night-2.ndjson")])
        days = sorted(p.name for p in (theirs / "legs" / f"account_id={acct}").glob("date=*"))
        assert days == ["date=2026-11-20"], days
        m = json.loads((theirs / "manifest.json").read_text())
        assert m["merge"]["partitions_emptied"] == [[acct, "2026-11-19"]], m["merge"]
        # One engine per dataset: the Spark job refuses the folder `rerate run` wrote, which
        # stays as it was.
        before = sorted((p.relative_to(mine), p.read_bytes()) for p in mine.rglob("*") if p.is_file())
        code = rerate_spark.main([str(src / "night-2.ndjson"), "--out", str(mine), "--rerate", self.rerate, "--quiet"],
                                 spark=self.spark)
        assert code == 2, code
        after = sorted((p.relative_to(mine), p.read_bytes()) for p in mine.rglob("*") if p.is_file())
        assert before == after, "the Spark job changed a folder it refused"

    def ledgers(self):
        """Month databases with ledgers beside their CDRs, then a night bringing copies of them
        (the same documents in every CouchDB wrapper, a generated file again, a ledger page
        repeating a stored ledger with another amount): the ledgers table and its counts as
        rerate run writes them."""
        src = self.tmp / "ledgers-in"
        subprocess.run([self.rerate, "gen", "--out", str(src / "modb"), "--legs", "600", "--accounts", "4",
                        "--days", "2", "--files", "2", "--shape", "modb", "--seed", "5"],
                       check=True, capture_output=True)
        first = sorted((src / "modb").iterdir())[0]
        doc = next(json.loads(line.rstrip().rstrip(","))["doc"] for line in first.read_text().splitlines()
                   if '"pvt_type":"ledger"' in line)
        listed = {k: v for k, v in doc.items() if not k.startswith("_") and not k.startswith("pvt_")}
        listed.update({"id": doc["_id"], "amount": -(doc["amount"] + 7) / 10000})
        (src / "night-2").mkdir()
        (src / "night-2" / "page.json").write_text(json.dumps({"page_size": 1, "data": [listed]}))
        shutil.copy(first, src / "night-2" / "again.json")
        self.both("ledgers", [str(src / "modb")])
        mine, theirs = self.both("ledgers", [str(src / "night-2"), "tests/couchdb"])
        c = json.loads((theirs / "manifest.json").read_text())["counts"]["ledgers"]
        # The page's copy with another amount is the one conflict; the rest are identical copies.
        assert c["conflicts"] == 1 and c["duplicates_dropped"] > 0, c

    def corpus(self):
        """Every shape, gzip, bad records and overlapping copies, generated."""
        src = self.tmp / "corpus-in"
        gen = lambda out, *a: subprocess.run([self.rerate, "gen", "--out", str(src / out), *a],
                                             check=True, capture_output=True)
        gen("ndjson", "--legs", "3000", "--accounts", "12", "--days", "3", "--files", "3", "--seed", "1")
        gen("pages", "--legs", "1200", "--accounts", "6", "--days", "2", "--files", "2", "--shape", "pages", "--seed", "2", "--gzip")
        gen("csv", "--legs", "900", "--accounts", "4", "--days", "2", "--shape", "kazoo-csv", "--seed", "3", "--header-every", "200")
        gen("listing", "--legs", "600", "--accounts", "3", "--days", "2", "--shape", "listing", "--seed", "4")
        # Overlapping copies: a file again under another name, and a copy with one leg changed.
        first = sorted((src / "ndjson").rglob("*.ndjson"))[0]
        lines = first.read_text().splitlines(keepends=True)
        (src / "overlap").mkdir()
        (src / "overlap" / "again.ndjson").write_text("".join(lines[:500]))
        changed = json.loads(lines[10])
        changed["hangup_cause"] = "CHANGED_LATER"
        changed["timestamp"] = changed.get("timestamp", 0) + 1
        (src / "overlap" / "changed.ndjson").write_text(json.dumps(changed) + "\n" + "".join(lines[20:40]))
        # Bad records: not JSON, no call_id, a negative billing field, a truncated gzip stream.
        (src / "bad.ndjson").write_text('{"call_id": "x1", "billing_seconds": -5}\nnot json\n{"no": "call_id"}\n'
                                        + lines[50])
        gz = sorted((src / "pages").rglob("*.gz"))[0].read_bytes()
        (src / "truncated.ndjson.gz").write_bytes(gz[: len(gz) // 2])
        mine, theirs = self.both("corpus", [str(src)])
        c = json.loads((theirs / "manifest.json").read_text())
        assert c["counts"]["duplicates_dropped"] >= 520 and c["counts"]["conflicts"] >= 1, c["counts"]
        assert c["partial_inputs"], "the truncated gzip is not named"
        # A second night that overlaps the first, merged.
        night2 = self.tmp / "corpus-night2"
        subprocess.run([self.rerate, "gen", "--out", str(night2), "--legs", "1500", "--accounts", "12", "--days", "3",
                        "--files", "2", "--seed", "1"], check=True, capture_output=True)
        (night2 / "changed.ndjson").write_text(json.dumps({**changed, "timestamp": changed["timestamp"] + 1, "hangup_cause": "CHANGED_AGAIN"}) + "\n")
        self.both("corpus", [str(night2)])


def main(argv):
    rerate = str(Path(argv[0]).resolve())
    names = argv[1:] or ["fixtures", "reconcile", "nights", "moved", "ledgers", "corpus"]
    args = rerate_spark.parse_args(["x", "--out", "x", "--master", "local[2]", "--rerate", rerate])
    spark = rerate_spark.session(args)
    spark.sparkContext.setLogLevel("ERROR")
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="rerate-spark-test-") as tmp:
        cases = Cases(rerate, spark, Path(tmp))
        for name in names:
            t = time.time()
            print(f"== spark case {name}", flush=True)
            try:
                getattr(cases, name)()
                passed += 1
                print(f"   ok ({time.time() - t:.0f} s)", flush=True)
            except Exception as e:  # report every case, then fail
                failed += 1
                print(f"   FAILED: {type(e).__name__}: {e}", flush=True)
    spark.stop()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
