"""Shared by duckdb_check.py and spark_check.py: compares the rows another engine computes from a
queries/*.sql file with the rows of the report rerate wrote."""
import math


def same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-12)
    return a == b


def assert_same_rows(engine: str, name: str, cols: list, mine: list, theirs: list) -> None:
    """`mine`: the engine's result of the query; `theirs`: rerate's report, same columns."""
    key = lambda r: tuple("" if v is None else str(v) for v in r[:3])
    mine = sorted(mine, key=key)
    theirs = sorted(theirs, key=key)
    assert len(mine) == len(theirs), (name, len(mine), len(theirs))
    for a, b in zip(mine, theirs):
        assert all(same(x, y) for x, y in zip(a, b)), (name, a, b)
    print(f"  {name}: {engine} and rerate agree on {len(theirs)} rows x {len(cols)} columns")
