"""The job `rerate run` does, written as an analyst would in chdb (embedded ClickHouse): read the
NDJSON (every field kept, the schema inferred by ClickHouse), dedup by call_id (the latest
`timestamp` wins: `LIMIT 1 BY`), apply KAZOO's formula with Float64 arithmetic in KAZOO's
operation order into an in-memory table, then write the legs partitioned by account_id/date as
Parquet, plus the daily totals and the interactions. The date is the leg's start
(`timestamp - duration_seconds`) in UTC, as rerate's. Prints the totals as JSON on stdout.

usage: python3 benches/chdb_job.py CORPUS_DIR OUT_DIR THREADS
"""
import json
import os
import sys

from chdb import session

corpus, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(out, exist_ok=True)
db = session.Session(f"{out}.tmp")
SETTINGS = f"SETTINGS max_threads = {threads}"


def q(sql: str) -> str:
    return db.query(sql, "TSV").data()


def ccv(field: str) -> str:
    # A CCV key present in some legs only, or in none: absent -> NULL.
    return f"tupleElement(custom_channel_vars, '{field}', NULL)"


def num(field: str) -> str:
    # kz_term:to_integer of a CCV string: whole numbers, decimals rounded half away from zero
    # (ClickHouse's round() rounds floats half to even).
    x = f"toFloat64OrNull({ccv(field)})"
    return f"toInt64(if({x} >= 0, floor({x} + 0.5), ceil({x} - 0.5)))"


q(f"""
CREATE TABLE legs ENGINE = Memory AS
WITH i AS (
    SELECT *,
        {ccv('account_id')} AS account_id,
        toDate(toDateTime(timestamp - coalesce(duration_seconds, 0) - 62167219200, 'UTC')) AS date,
        coalesce(billing_seconds, 0) - coalesce({num('billing_seconds_offset')}, 0) AS _secs,
        coalesce({num('rate_nocharge_time')}, 0) AS _nocharge,
        coalesce({num('rate')}, 0) AS _r,
        if(coalesce({num('rate_increment')}, 60) = 0, 60, coalesce({num('rate_increment')}, 60)) AS _ri,
        coalesce({num('rate_minimum')}, 0) AS _rm,
        coalesce({num('surcharge')}, 0) AS _sur,
        coalesce({num('discount_percentage')}, 0) AS _disc,
        _secs <= 0 OR _secs <= _nocharge AS _free
    FROM file('{corpus}/*.ndjson', JSONEachRow)
    ORDER BY timestamp DESC
    LIMIT 1 BY call_id
), c AS (
    SELECT *,
        multiIf(_free, 0, _secs <= _rm, _rm, toInt64(ceil(_secs / _ri)) * _ri) AS billed_seconds,
        multiIf(_free, 0,
                _secs <= _rm, toInt64(trunc(toFloat64(_sur) + (_rm / 60) * _r)),
                toInt64(trunc((toFloat64(_sur) + (_rm / 60) * _r)
                              + ceil((_secs - _rm) / _ri) * ((_ri / 60) * _r)))) AS _cost0
    FROM i
)
SELECT * EXCEPT (_secs, _nocharge, _r, _ri, _rm, _sur, _disc, _free, _cost0),
    _cost0 - toInt64(trunc((_disc * 0.01) * _cost0)) AS rated_cost_units,
    if({ccv('account_billing')} = 'per_minute', rated_cost_units, 0) AS cost_units
FROM c
{SETTINGS}
""")


def write(table: str, select: str, by_day: bool = False) -> None:
    """`by_day`: a file a day with account_id a column, as rerate writes its reports."""
    key = "concat('date=', toString(date))" if by_day else \
        "concat('account_id=', account_id, '/date=', toString(date))"
    q(f"""
INSERT INTO FUNCTION file('{out}/{table}/{{_partition_id}}/part-0.parquet', Parquet)
PARTITION BY {key}
{select}
{SETTINGS}
""")


write("legs", "SELECT * FROM legs")
write("daily", """
SELECT account_id, date, count() AS legs, sum(billed_seconds) AS billed_seconds,
       sum(rated_cost_units) AS rated_cost_units, sum(cost_units) AS cost_units
FROM legs GROUP BY account_id, date ORDER BY account_id""", by_day=True)
write("interactions", f"""
SELECT argMin(account_id, start) AS account_id, argMin(date, start) AS date, key AS interaction_id,
       count() AS legs, min(start) AS start_time, sum(billed_seconds) AS billed_seconds,
       sum(cost_units) AS cost_units
FROM (SELECT *, coalesce(interaction_id, {ccv('bridge_id')}, call_id) AS key,
             timestamp - coalesce(duration_seconds, 0) AS start FROM legs)
GROUP BY key""")
legs, billed, rated, cost = (
    int(x)
    for x in q("SELECT count(), sum(billed_seconds), sum(rated_cost_units), sum(cost_units) FROM legs")
    .split()
)
print(json.dumps({"legs": legs, "billed_seconds": billed, "rated_cost_units": rated, "cost_units": cost}))
