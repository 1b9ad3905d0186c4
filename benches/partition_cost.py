"""How rerate's run time splits into a cost per account/day partition and a cost per leg.

Runs `rerate run` on a grid of generated corpora, one day each (so the partitions are the
accounts that got a call), every leg count against every account count, REPEAT times each, and
takes each cell's median wall time. Then, from the grid:
- the cost per partition at each leg count: the slope of time against partitions at fixed legs
  (between consecutive account counts, and the least-squares line over all of them); the
  partitions hold LEGS/ACCOUNTS legs each, down to about 10, so this is the cost of near-empty
  partitions;
- the cost per leg at each account count: the slope of time against legs at fixed partitions;
- the plane T = c + a * partitions + b * legs fitted to every cell, and how far each cell is from
  it (a cost per partition that grows with the input shows as a misfit).

usage: python3 benches/partition_cost.py [--legs 50000,200000] [--accounts 300,1000,5000]
                                         [--repeat 3] [--threads 2] [--corpora DIR] [--work DIR]
  env RERATE: the binary (default target/release/rerate). The corpora are generated into
  --corpora (default target/compare) as g<legs>-<accounts>x1 unless there already, and kept;
  each run's output is moved aside and deleted at the end (ext4 passes over the inodes of files
  deleted in the last minutes when it creates new ones: deleting thousands of files right before
  a run adds seconds of system time to it). Needs only python3 and the binary.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time


def label(n: int) -> str:
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def corpus(binary: str, root: str, legs: int, accounts: int) -> str:
    path = os.path.join(root, f"g{label(legs)}-{accounts}x1")
    if not os.path.isdir(path):
        # Generated aside and renamed: a corpus directory is whole or absent.
        tmp = f"{path}.tmp.{os.getpid()}"
        subprocess.run([binary, "gen", "--legs", str(legs), "--accounts", str(accounts),
                        "--days", "1", "--out", tmp], check=True)
        os.rename(tmp, path)
    return path


def run(binary: str, src: str, out: str, threads: int, trash: str) -> tuple[float, int, dict]:
    """One run: wall seconds, the partitions of the legs table, the manifest's stages (ms)."""
    # Read the corpus once so that the run reads it from the page cache.
    for f in os.listdir(src):
        with open(os.path.join(src, f), "rb") as fh:
            while fh.read(1 << 24):
                pass
    t0 = time.monotonic()
    subprocess.run([binary, "run", src, "--out", out, "-q", "--threads", str(threads)], check=True)
    wall = time.monotonic() - t0
    parts = sum(len(os.listdir(os.path.join(out, "legs", a))) for a in os.listdir(os.path.join(out, "legs")))
    with open(os.path.join(out, "manifest.json")) as fh:
        stages = json.load(fh).get("stages_ms", {})
    os.makedirs(trash, exist_ok=True)
    os.rename(out, os.path.join(trash, f"{len(os.listdir(trash))}"))
    return wall, parts, stages


def solve(rows: list[list[float]], ys: list[float]) -> list[float]:
    """Least squares by the normal equations (a few unknowns, well conditioned once scaled)."""
    n = len(rows[0])
    a = [[sum(r[i] * r[j] for r in rows) for j in range(n)] + [sum(r[i] * y for r, y in zip(rows, ys))]
         for i in range(n)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(a[r][c]))
        a[c], a[p] = a[p], a[c]
        for r in range(n):
            if r != c:
                f = a[r][c] / a[c][c]
                a[r] = [x - f * y for x, y in zip(a[r], a[c])]
    return [a[i][n] / a[i][i] for i in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--legs", default="50000,200000")
    ap.add_argument("--accounts", default="300,1000,5000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--corpora", default="target/compare")
    ap.add_argument("--work", default="target/compare")
    args = ap.parse_args()
    binary = os.environ.get("RERATE", "target/release/rerate")
    legs = [int(x) for x in args.legs.split(",")]
    accounts = [int(x) for x in args.accounts.split(",")]
    os.makedirs(args.work, exist_ok=True)
    cells = {}
    trash = os.path.join(args.work, f"partition-cost-trash-{os.getpid()}")
    try:
        measure(binary, args, legs, accounts, cells, trash)
    finally:
        shutil.rmtree(trash, ignore_errors=True)
    report(args, legs, accounts, cells)
    return 0


def measure(binary, args, legs, accounts, cells, trash) -> None:
    """Fills `cells`: (legs, accounts) -> (median wall s, partitions, every run's wall s)."""
    for n in legs:
        for a in accounts:
            src = corpus(binary, args.corpora, n, a)
            walls, parts = [], 0
            for i in range(args.repeat):
                out = os.path.join(args.work, f"partition-cost-out-{os.getpid()}")
                wall, parts, stages = run(binary, src, out, args.threads, trash)
                walls.append(wall)
                print(f"{n:>9,} legs {parts:>6,} partitions  run {i + 1}: {wall:6.2f} s  "
                      f"stages {json.dumps(stages)}", file=sys.stderr)
            cells[(n, a)] = (statistics.median(walls), parts, walls)


def report(args, legs, accounts, cells) -> None:
    """Prints the grid, the slopes and the plane."""
    print(f"median wall time of {args.repeat} runs, {args.threads} threads, one day:")
    print(f"{'legs':>9} {'partitions':>10} {'legs/part':>9} {'wall s':>7}  runs")
    for (n, a), (t, p, walls) in sorted(cells.items()):
        print(f"{n:>9,} {p:>10,} {n / p:>9.0f} {t:7.2f}  {', '.join(f'{w:.2f}' for w in walls)}")

    print("\ncost per partition (slope of time against partitions, fixed legs):")
    for n in legs:
        row = [(cells[(n, a)][1], cells[(n, a)][0]) for a in accounts]
        pieces = [f"{p0:,}->{p1:,}: {(t1 - t0) / (p1 - p0) * 1000:.2f} ms"
                  for (p0, t0), (p1, t1) in zip(row, row[1:])]
        c, s = solve([[1.0, p / 1000] for p, _ in row], [t for _, t in row])
        print(f"  {n:>9,} legs: {'; '.join(pieces)}; line over all: {s:.2f} ms a partition")
    print("cost per leg (slope of time against legs, fixed accounts):")
    for a in accounts:
        col = [(n, cells[(n, a)][0]) for n in legs]
        pieces = [f"{n0:,}->{n1:,}: {(t1 - t0) / (n1 - n0) * 1e6:.1f} us"
                  for (n0, t0), (n1, t1) in zip(col, col[1:])]
        print(f"  {a:>6,} accounts: {'; '.join(pieces)}")
    rows = [[1.0, p / 1000, n / 1e6] for (n, a), (t, p, _) in cells.items()]
    ys = [t for t, _, _ in cells.values()]
    c, per_kpart, per_mleg = solve(rows, ys)
    print(f"plane over every cell: {c:.2f} s + {per_kpart:.2f} ms a partition + "
          f"{per_mleg:.2f} us a leg; residuals: "
          + ", ".join(f"{label(n)}/{p:,}: {t - (c + per_kpart * p / 1000 + per_mleg * n / 1e6):+.2f} s"
                      for (n, a), (t, p, _) in sorted(cells.items())))


if __name__ == "__main__":
    sys.exit(main())
