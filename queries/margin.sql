-- Per account, day and route (rate name and direction) of answered per-minute legs: what KAZOO charged, what the carrier costs, the margin, lowest margin first.
-- The carrier's cost is carrier_cost_units: KAZOO's formula on the leg's pvt_cost (hotornot's
-- Pvt-Cost, the deck row's pvt_internal_rate_cost, kept by ecallmgr_fs_authz among the rate
-- variables). A pvt_cost of 0 is unknown, not free (kzd_rates:private_cost/1 defaults it to 0):
-- such legs are counted apart, with their revenue, and never in the margin.
WITH l AS (
    SELECT
        account_id,
        date,
        COALESCE(rate_name, 'UNKNOWN') AS rate_name,
        COALESCE(call_direction, '') AS call_direction,
        billing_seconds,
        recorded_cost_units,
        carrier_cost_units,
        CASE WHEN carrier_cost_units IS NOT NULL AND recorded_cost_units IS NOT NULL THEN 1 ELSE 0 END AS known
    FROM legs
    WHERE account_billing = 'per_minute' AND billing_seconds > 0
),
g AS (
    SELECT
        account_id,
        date,
        rate_name,
        call_direction,
        COUNT(*) AS legs,
        SUM(billing_seconds) AS billing_seconds,
        SUM(known) AS known_cost_legs,
        SUM(CASE WHEN known = 1 THEN recorded_cost_units ELSE 0 END) AS revenue_units,
        SUM(CASE WHEN known = 1 THEN carrier_cost_units ELSE 0 END) AS carrier_cost_units,
        SUM(1 - known) AS unknown_cost_legs,
        SUM(CASE WHEN known = 0 THEN COALESCE(recorded_cost_units, 0) ELSE 0 END) AS unknown_cost_revenue_units
    FROM l
    GROUP BY account_id, date, rate_name, call_direction
)
SELECT
    account_id,
    date,
    rate_name,
    call_direction,
    legs,
    billing_seconds,
    known_cost_legs,
    revenue_units,
    carrier_cost_units,
    revenue_units - carrier_cost_units AS margin_units,
    CASE WHEN revenue_units <> 0 THEN CAST(revenue_units - carrier_cost_units AS DOUBLE) / revenue_units END AS margin_share,
    unknown_cost_legs,
    unknown_cost_revenue_units
FROM g
ORDER BY account_id, date, margin_units, rate_name, call_direction
