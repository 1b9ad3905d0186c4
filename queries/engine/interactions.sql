-- Legs grouped into calls, as rerate's interactions stage (src/interactions.rs) builds them: the key is interaction_id, else bridge_id, else call_id; the identifying fields come from the earliest leg (by start_time, then call_id, a leg without a start last), as KAZOO's /cdrs/interaction does.
-- Spark SQL (arrays and lambdas), run by spark/rerate_spark.py over the view `legs` (the run's deduplicated legs, account_id null where the leg has none); its output is compared with rerate's by tests/spark_job_check.py.
WITH k AS (
    SELECT *, COALESCE(interaction_id, bridge_id, call_id) AS call_key
    FROM legs
),
o AS (
    SELECT
        *,
        ROW_NUMBER() OVER (
            PARTITION BY call_key
            ORDER BY start_time ASC NULLS LAST, call_id ASC NULLS LAST
        ) AS leg_order
    FROM k
)
SELECT
    call_key AS interaction_id,
    MAX(CASE WHEN leg_order = 1 THEN start_time END) AS start_time,
    MAX(end_time) AS end_time,
    (UNIX_MICROS(MAX(end_time)) - UNIX_MICROS(MAX(CASE WHEN leg_order = 1 THEN start_time END))) DIV 1000000 AS duration_seconds,
    MAX(CASE WHEN leg_order = 1 THEN call_direction END) AS call_direction,
    MAX(CASE WHEN leg_order = 1 THEN caller_id_name END) AS caller_id_name,
    MAX(CASE WHEN leg_order = 1 THEN caller_id_number END) AS caller_id_number,
    MAX(CASE WHEN leg_order = 1 THEN callee_id_name END) AS callee_id_name,
    MAX(CASE WHEN leg_order = 1 THEN callee_id_number END) AS callee_id_number,
    MAX(CASE WHEN leg_order = 1 THEN hangup_cause END) AS hangup_cause,
    COUNT(*) AS legs,
    TRANSFORM(ARRAY_SORT(COLLECT_LIST(STRUCT(leg_order, call_id))), x -> x.call_id) AS leg_call_ids,
    COALESCE(BOOL_OR(billing_seconds > 0), FALSE) AS answered,
    COALESCE(MAX(billing_seconds), 0) AS talk_seconds,
    COALESCE(SUM(billed_seconds), 0) AS billed_seconds,
    COALESCE(SUM(rated_cost_units), 0) AS rated_cost_units,
    COALESCE(SUM(cost_units), 0) AS cost_units,
    COALESCE(SUM(reseller_cost_units), 0) AS reseller_cost_units,
    ARRAY_DISTINCT(
        TRANSFORM(
            FILTER(ARRAY_SORT(COLLECT_LIST(STRUCT(leg_order, account_id))), x -> x.account_id IS NOT NULL),
            x -> x.account_id
        )
    ) AS accounts,
    MAX(CASE WHEN leg_order = 1 THEN account_id END) AS account_id,
    MAX(CASE WHEN leg_order = 1 THEN date END) AS date
FROM o
GROUP BY call_key
