"""The job `rerate run` does, written as an analyst would in DuckDB: read the NDJSON (every field
kept), dedup by call_id, apply KAZOO's formula in SQL with DOUBLE arithmetic in KAZOO's operation
order, write the legs partitioned by account_id/date as Parquet, plus the daily totals and the
interactions, and print the totals as JSON on stdout. The date is the leg's start
(`timestamp - duration_seconds`) in UTC, as rerate's.

usage: python3 benches/duckdb_job.py CORPUS_DIR OUT_DIR THREADS
"""
import json
import os
import sys

import duckdb

corpus, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(out, exist_ok=True)
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
con.execute(f"SET temp_directory = '{out}.tmp'")


def num(field: str) -> str:
    # kz_term:to_integer of a CCV string: whole numbers, decimals rounded half away from zero.
    return f"TRY_CAST(ROUND(TRY_CAST({ccv(field)} AS DOUBLE)) AS BIGINT)"


def ccv(field: str) -> str:
    # A CCV key present in some legs only: read through JSON, absent -> NULL.
    return f"json_extract_string(to_json(custom_channel_vars), '$.{field}')"


con.execute(f"""
CREATE TABLE raw AS
SELECT * FROM read_ndjson('{corpus}/*.ndjson', union_by_name = true, maximum_object_size = 16777216)
""")
con.execute(f"""
CREATE TABLE legs AS
WITH d AS (
    SELECT * FROM raw
    QUALIFY ROW_NUMBER() OVER (PARTITION BY call_id ORDER BY timestamp DESC) = 1
), i AS (
    SELECT *,
        {ccv('account_id')} AS acct,
        CAST(to_timestamp(timestamp - COALESCE(TRY_CAST(duration_seconds AS BIGINT), 0) - 62167219200)
             AT TIME ZONE 'UTC' AS DATE) AS day,
        COALESCE(TRY_CAST(billing_seconds AS BIGINT), 0) - COALESCE({num('billing_seconds_offset')}, 0) AS secs,
        COALESCE({num('rate_nocharge_time')}, 0) AS nocharge,
        COALESCE({num('rate')}, 0) AS r,
        CASE WHEN COALESCE({num('rate_increment')}, 60) = 0 THEN 60 ELSE COALESCE({num('rate_increment')}, 60) END AS ri,
        COALESCE({num('rate_minimum')}, 0) AS rm,
        COALESCE({num('surcharge')}, 0) AS sur,
        COALESCE({num('discount_percentage')}, 0) AS disc
    FROM d
), c AS (
    SELECT *,
        CASE WHEN secs <= 0 OR secs <= nocharge THEN 0
             WHEN secs <= rm THEN rm
             ELSE CAST(ceil(secs::DOUBLE / ri) AS BIGINT) * ri END AS billed_seconds,
        CASE WHEN secs <= 0 OR secs <= nocharge THEN 0
             WHEN secs <= rm THEN CAST(trunc(sur::DOUBLE + (rm::DOUBLE / 60) * r) AS BIGINT)
             ELSE CAST(trunc((sur::DOUBLE + (rm::DOUBLE / 60) * r)
                             + ceil((secs - rm)::DOUBLE / ri) * ((ri::DOUBLE / 60) * r)) AS BIGINT) END AS cost0
    FROM i
)
SELECT * EXCLUDE (cost0),
    cost0 - CAST(trunc((disc * 0.01) * cost0) AS BIGINT) AS rated_cost_units,
    CASE WHEN {ccv('account_billing')} = 'per_minute'
         THEN cost0 - CAST(trunc((disc * 0.01) * cost0) AS BIGINT) ELSE 0 END AS cost_units
FROM c
""")
con.execute(f"""
COPY (SELECT * EXCLUDE (acct, day), acct AS account_id, day AS date FROM legs)
TO '{out}/legs' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (account_id, date))
""")
con.execute(f"""
COPY (SELECT acct AS account_id, day AS date, COUNT(*) AS legs, SUM(billed_seconds) AS billed_seconds,
             SUM(rated_cost_units) AS rated_cost_units, SUM(cost_units) AS cost_units
      FROM legs GROUP BY ALL ORDER BY account_id)
TO '{out}/daily' (FORMAT parquet, PARTITION_BY (date))
""")
con.execute(f"""
COPY (SELECT arg_min(acct, start) AS account_id, arg_min(day, start) AS date, key AS interaction_id,
             COUNT(*) AS legs, MIN(start) AS start_time, SUM(billed_seconds) AS billed_seconds,
             SUM(cost_units) AS cost_units
      FROM (SELECT *, COALESCE(interaction_id, {ccv('bridge_id')}, call_id) AS key,
                   timestamp - COALESCE(TRY_CAST(duration_seconds AS BIGINT), 0) AS start FROM legs)
      GROUP BY key)
TO '{out}/interactions' (FORMAT parquet, PARTITION_BY (account_id, date))
""")
legs, billed, rated, cost = con.execute(
    "SELECT COUNT(*), SUM(billed_seconds), SUM(rated_cost_units), SUM(cost_units) FROM legs"
).fetchone()
print(json.dumps({"legs": legs, "billed_seconds": billed, "rated_cost_units": rated, "cost_units": cost}))
