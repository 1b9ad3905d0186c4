"""A year of nightly merges into one dataset: what each night costs as the dataset grows.

Each night is `rerate gen` of one day (--legs legs over --accounts accounts, zipf-free uniform
shares, its own seed so its call_ids are its own), plus, as real exports do, copies of some of
the previous night's legs (--repeat, identical: an overlapping export) and newer copies of a few
of them moved to the next day (--move: the same call re-exported with later times, which a merge
must move, removing the old copy). Every night runs `rerate run NIGHT --out DATASET` (the
default --mode merge) and the script records, per night: wall time, CPU time (user + system),
peak RSS, and the dataset's files and bytes after it, with the night's input bytes. At the end
it prints the medians of nights 2-6 and of the last five, and their ratios, and the dataset's
bytes against all the input's.

usage: python3 benches/year_of_nights.py [--nights 365] [--legs 3000] [--accounts 300]
                                         [--repeat 0.05] [--move 0.005] [--threads 2]
                                         [--work DIR] [--csv FILE] [--check-every N] [--size-every N]
  env RERATE: the binary (default target/release/rerate). Needs only python3 and the binary.
  --check-every N runs `rerate check DATASET` after every Nth night (0: never), outside the
  timings. --size-every N counts the dataset's files and bytes after every Nth night and the
  last (default 30: walking half a million files every night would take longer than the runs).
"""
import argparse
import csv
import datetime
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

GREGORIAN_UNIX = 62_167_219_200


def tree_size(path):
    files = size = 0
    for root, _, names in os.walk(path):
        if os.path.basename(root).startswith(".rerate-staging"):
            continue
        for n in names:
            files += 1
            size += os.path.getsize(os.path.join(root, n))
    return files, size


def timed(cmd):
    """Runs cmd; returns (wall s, cpu s, peak RSS bytes, exit status, stderr)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024, p.returncode, err.decode(errors="replace")


def moved(line, seconds):
    """The leg of an NDJSON line again, `seconds` later (a newer copy on another day)."""
    d = json.loads(line)
    d["channel_created_time"] = d["channel_created_time"] + seconds * 1_000_000
    d["timestamp"] = d["timestamp"] + seconds
    return json.dumps(d, separators=(",", ":"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nights", type=int, default=365)
    ap.add_argument("--legs", type=int, default=3000)
    ap.add_argument("--accounts", type=int, default=300)
    ap.add_argument("--repeat", type=float, default=0.05)
    ap.add_argument("--move", type=float, default=0.005)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="target/year-of-nights")
    ap.add_argument("--csv", default=None)
    ap.add_argument("--check-every", type=int, default=0)
    ap.add_argument("--size-every", type=int, default=30)
    a = ap.parse_args()
    binary = os.environ.get("RERATE", "target/release/rerate")
    shutil.rmtree(a.work, ignore_errors=True)
    nights_dir, ds = os.path.join(a.work, "nights"), os.path.join(a.work, "dataset")
    os.makedirs(nights_dir)
    rng = random.Random(1)
    start = datetime.date(2026, 1, 1)
    previous = []
    rows = []
    input_bytes = 0
    for k in range(1, a.nights + 1):
        day = start + datetime.timedelta(days=k - 1)
        gen_dir = os.path.join(a.work, "gen")
        shutil.rmtree(gen_dir, ignore_errors=True)
        subprocess.run([binary, "gen", "--legs", str(a.legs), "--accounts", str(a.accounts), "--days", "1",
                        "--start", day.isoformat(), "--files", "1", "--seed", str(k), "--out", gen_dir],
                       check=True, capture_output=True)
        lines = []
        for root, _, names in os.walk(gen_dir):
            for n in sorted(names):
                with open(os.path.join(root, n)) as f:
                    lines += [l.rstrip("\n") for l in f if l.strip()]
        extra = []
        if previous:
            extra += rng.sample(previous, int(len(previous) * a.repeat))
            extra += [moved(l, 86_400) for l in rng.sample(previous, max(1, int(len(previous) * a.move)))]
        night = os.path.join(nights_dir, f"{day.isoformat()}.ndjson")
        with open(night, "w") as f:
            f.write("\n".join(extra + lines) + "\n")
        previous = lines
        input_bytes += os.path.getsize(night)
        wall, cpu, rss, code, err = timed([binary, "run", night, "--out", ds, "--quiet", "--threads", str(a.threads)])
        if code != 0:
            sys.exit(f"night {k}: rerate exited {code}: {err}")
        files = size = None
        if k % a.size_every == 0 or k == a.nights or k == 1:
            files, size = tree_size(ds)
        with open(os.path.join(ds, "manifest.json")) as f:
            stages = json.load(f)["stages_ms"]
        rows.append({"night": k, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "peak_rss_mb": round(rss / 1e6, 1),
                     "dataset_files": files, "dataset_bytes": size, "input_bytes": input_bytes,
                     **{f"ms_{name}": ms for name, ms in stages.items()}})
        if a.check_every and k % a.check_every == 0:
            c = subprocess.run([binary, "check", ds], capture_output=True, text=True)
            if c.returncode != 0:
                sys.exit(f"night {k}: rerate check failed: {c.stderr}")
        sizes = "" if files is None else f", {files} files, {size / 1e6:.1f} MB"
        print(f"night {k:3}: {wall:6.2f} s wall, {cpu:6.2f} s CPU, {rss / 1e6:7.1f} MB peak{sizes} "
              f"(input so far {input_bytes / 1e6:.1f} MB)", flush=True)
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}, key=list(rows[-1]).index))
            w.writeheader()
            w.writerows(rows)
    early, late = rows[1:6], rows[-5:]
    print()
    for key in ("wall_s", "cpu_s", "peak_rss_mb"):
        e = statistics.median(r[key] for r in early)
        l = statistics.median(r[key] for r in late)
        print(f"{key:12} nights 2-6 median {e:8.2f}, last 5 median {l:8.2f}, ratio {l / e:.2f}")
    print("milliseconds per stage (rerate's manifest), nights 2-6 median / last 5 median:")
    for name in [k for k in rows[-1] if k.startswith("ms_")]:
        e = statistics.median(r.get(name, 0) for r in early)
        l = statistics.median(r.get(name, 0) for r in late)
        print(f"  {name[3:]:18} {e:6.0f} / {l:6.0f}")
    last = rows[-1]
    print(f"dataset: {last['dataset_files']} files, {last['dataset_bytes'] / 1e6:.1f} MB for "
          f"{last['input_bytes'] / 1e6:.1f} MB of NDJSON input ({last['dataset_bytes'] / last['input_bytes']:.2f}x)")


if __name__ == "__main__":
    main()
