//! Stage 5: legs grouped into calls (interactions).
//!
//! The key is `interaction_id`; a leg without one falls back to its custom_channel_vars
//! `bridge_id`, else its own call_id. As KAZOO's `/cdrs/interaction` does, the identifying
//! fields come from the earliest leg (by start_time, then call_id): account_id (which picks the
//! partition), caller and callee, direction, hangup cause, start and day. Added beside them:
//! the legs in start order (as `/cdrs/legs/{id}` returns them), the latest end, answered, talk
//! time, and the money summed over the legs.

use polars::prelude::*;

use crate::schema::{
    ACCOUNTS, ACCOUNT_ID, ANSWERED, BILLED_SECONDS, BILLING_SECONDS, CALL_ID, COST_UNITS, DATE,
    DURATION_SECONDS, END_TIME, INTERACTION_ID, LEGS, LEG_CALL_IDS, RATED_COST_UNITS,
    RESELLER_COST_UNITS, START_TIME, TALK_SECONDS,
};

/// Fields taken from the earliest leg, in output order after the key.
const EARLIEST: &[&str] = &[
    "call_direction",
    "caller_id_name",
    "caller_id_number",
    "callee_id_name",
    "callee_id_number",
    "hangup_cause",
];

/// The interactions table's file columns in output order (partition columns excluded).
pub(crate) fn columns() -> Vec<&'static str> {
    let mut c = vec![INTERACTION_ID, START_TIME, END_TIME, DURATION_SECONDS];
    c.extend_from_slice(EARLIEST);
    c.extend_from_slice(&[
        LEGS,
        LEG_CALL_IDS,
        ANSWERED,
        TALK_SECONDS,
        BILLED_SECONDS,
        RATED_COST_UNITS,
        COST_UNITS,
        RESELLER_COST_UNITS,
        ACCOUNTS,
    ]);
    c
}

/// The interaction key's columns: the first that is not null is the leg's interaction.
pub(crate) const KEY: [&str; 3] = [INTERACTION_ID, "bridge_id", CALL_ID];

/// The leg columns [`build`] reads.
pub(crate) fn input_columns() -> Vec<&'static str> {
    let mut c = KEY.to_vec();
    c.extend_from_slice(&[ACCOUNT_ID, START_TIME, DATE]);
    c.extend_from_slice(EARLIEST);
    c.extend_from_slice(&[
        END_TIME,
        BILLING_SECONDS,
        BILLED_SECONDS,
        RATED_COST_UNITS,
        COST_UNITS,
        RESELLER_COST_UNITS,
    ]);
    c
}

/// One row per interaction, with `account_id` and `date` of its earliest leg.
pub fn build(legs: &DataFrame) -> PolarsResult<DataFrame> {
    let key = coalesce(&KEY.map(col));
    let mut aggs: Vec<Expr> = [ACCOUNT_ID, START_TIME, DATE]
        .iter()
        .chain(EARLIEST)
        .map(|c| col(*c).first())
        .collect();
    aggs.extend([
        len().cast(DataType::Int64).alias(LEGS),
        col(CALL_ID).alias(LEG_CALL_IDS),
        col(END_TIME).max(),
        col(BILLING_SECONDS).gt(lit(0)).any(true).alias(ANSWERED),
        col(BILLING_SECONDS)
            .max()
            .fill_null(lit(0i64))
            .alias(TALK_SECONDS),
        col(BILLED_SECONDS).sum(),
        col(RATED_COST_UNITS).sum(),
        col(COST_UNITS).sum(),
        col(RESELLER_COST_UNITS).sum(),
        col(ACCOUNT_ID).drop_nulls().unique_stable().alias(ACCOUNTS),
    ]);
    let micros = |c: &str| col(c).cast(DataType::Int64);
    legs.clone()
        .lazy()
        .with_column(key.alias(INTERACTION_ID))
        .sort(
            [INTERACTION_ID, START_TIME, CALL_ID],
            SortMultipleOptions::default()
                .with_nulls_last(true)
                .with_maintain_order(true),
        )
        .group_by_stable([col(INTERACTION_ID)])
        .agg(aggs)
        .with_column(
            ((micros(END_TIME) - micros(START_TIME)) / lit(1_000_000i64)).alias(DURATION_SECONDS),
        )
        .collect()
}
