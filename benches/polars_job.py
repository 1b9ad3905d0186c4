"""The job `rerate run` does, written as an analyst would in polars (lazy): scan the NDJSON
(every field kept), dedup by call_id (the latest `timestamp` wins), apply KAZOO's formula with
Float64 arithmetic in KAZOO's operation order, and sink the legs partitioned by account_id/date
as Parquet, plus the daily totals and the interactions, all three from one lazy plan
(`collect_all`). The date is the leg's start (`timestamp - duration_seconds`) in UTC, as rerate's.
Prints the totals as JSON on stdout.

usage: python3 benches/polars_job.py CORPUS_DIR OUT_DIR THREADS
(THREADS is read by polars from POLARS_MAX_THREADS, which benches/compare.sh sets.)
"""
import json
import os
import sys

import polars as pl

corpus, out = sys.argv[1], sys.argv[2]
GREGORIAN_TO_UNIX = 62167219200

# The schema is inferred from the first 10,000 records: a field first seen later would be
# dropped, as an analyst's script would drop it (the generated corpus has every field early).
lf = pl.scan_ndjson(f"{corpus}/*.ndjson", infer_schema_length=10_000)
ccv_fields = set(lf.collect_schema()["custom_channel_vars"].to_schema())


def ccv(field: str) -> pl.Expr:
    # A CCV key present in some legs only: absent from the schema -> null.
    if field in ccv_fields:
        return pl.col("custom_channel_vars").struct.field(field)
    return pl.lit(None, dtype=pl.String)


def num(field: str) -> pl.Expr:
    # kz_term:to_integer of a CCV string: whole numbers, decimals rounded half away from zero.
    return (
        ccv(field)
        .cast(pl.Float64, strict=False)
        .round(0, mode="half_away_from_zero")
        .cast(pl.Int64, strict=False)
    )


secs = pl.col("billing_seconds").cast(pl.Int64, strict=False).fill_null(0) - num(
    "billing_seconds_offset"
).fill_null(0)
nocharge = num("rate_nocharge_time").fill_null(0)
r = num("rate").fill_null(0).cast(pl.Float64)
ri0 = num("rate_increment").fill_null(60)
ri = pl.when(ri0 == 0).then(60).otherwise(ri0)
rm = num("rate_minimum").fill_null(0)
sur = num("surcharge").fill_null(0).cast(pl.Float64)
disc = num("discount_percentage").fill_null(0)

legs = (
    lf.filter(pl.col("timestamp").rank("ordinal", descending=True).over("call_id") == 1)
    .with_columns(
        _secs=secs, _nocharge=nocharge, _r=r, _ri=ri, _rm=rm, _sur=sur, _disc=disc,
        account_id=ccv("account_id"),
        date=pl.from_epoch(
            pl.col("timestamp") - pl.col("duration_seconds").fill_null(0) - GREGORIAN_TO_UNIX,
            time_unit="s",
        ).dt.date(),
    )
    .with_columns(
        _free=(pl.col("_secs") <= 0) | (pl.col("_secs") <= pl.col("_nocharge")),
        _min=pl.col("_secs") <= pl.col("_rm"),
    )
    .with_columns(
        billed_seconds=pl.when(pl.col("_free"))
        .then(0)
        .when(pl.col("_min"))
        .then(pl.col("_rm"))
        .otherwise((pl.col("_secs") / pl.col("_ri")).ceil().cast(pl.Int64) * pl.col("_ri")),
        _cost0=pl.when(pl.col("_free"))
        .then(0)
        .when(pl.col("_min"))
        .then((pl.col("_sur") + (pl.col("_rm") / 60) * pl.col("_r")).cast(pl.Int64))
        .otherwise(
            (
                (pl.col("_sur") + (pl.col("_rm") / 60) * pl.col("_r"))
                + ((pl.col("_secs") - pl.col("_rm")) / pl.col("_ri")).ceil()
                * ((pl.col("_ri") / 60) * pl.col("_r"))
            ).cast(pl.Int64)
        ),
    )
    .with_columns(
        rated_cost_units=pl.col("_cost0")
        - ((pl.col("_disc") * 0.01) * pl.col("_cost0")).cast(pl.Int64)
    )
    .with_columns(
        cost_units=pl.when(ccv("account_billing") == "per_minute")
        .then(pl.col("rated_cost_units"))
        .otherwise(0)
    )
    .drop("_secs", "_nocharge", "_r", "_ri", "_rm", "_sur", "_disc", "_free", "_min", "_cost0")
)
# An empty struct cannot be written to Parquet: KAZOO's `custom_application_vars` is often `{}`.
empty = [n for n, t in legs.collect_schema().items() if t == pl.Struct({})]
legs = legs.drop(empty)

daily = legs.group_by("account_id", "date").agg(
    legs=pl.len(),
    billed_seconds=pl.col("billed_seconds").sum(),
    rated_cost_units=pl.col("rated_cost_units").sum(),
    cost_units=pl.col("cost_units").sum(),
)
start = pl.col("timestamp") - pl.col("duration_seconds").fill_null(0)
interactions = (
    legs.with_columns(
        interaction_id=pl.coalesce(pl.col("interaction_id"), ccv("bridge_id"), pl.col("call_id")),
        _start=start,
    )
    .group_by("interaction_id")
    .agg(
        account_id=pl.col("account_id").sort_by("_start").first(),
        date=pl.col("date").sort_by("_start").first(),
        legs=pl.len(),
        start_time=pl.col("_start").min(),
        billed_seconds=pl.col("billed_seconds").sum(),
        cost_units=pl.col("cost_units").sum(),
    )
)


def sink(frame: pl.LazyFrame, table: str, key=("account_id", "date")) -> pl.LazyFrame:
    return frame.sink_parquet(
        pl.PartitionBy(f"{out}/{table}", key=list(key), include_key=False),
        mkdir=True,
        lazy=True,
    )


# The daily totals a file a day with account_id a column, as rerate writes its reports.
daily = daily.sort("account_id")
pl.collect_all([sink(legs, "legs"), sink(daily, "daily", ["date"]), sink(interactions, "interactions")])
totals = (
    pl.scan_parquet(f"{out}/daily/**/*.parquet", hive_partitioning=True)
    .select(
        legs=pl.col("legs").sum(),
        billed_seconds=pl.col("billed_seconds").sum(),
        rated_cost_units=pl.col("rated_cost_units").sum(),
        cost_units=pl.col("cost_units").sum(),
    )
    .collect()
    .row(0, named=True)
)
print(json.dumps(totals))
