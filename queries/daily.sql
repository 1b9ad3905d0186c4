-- One row per account and day: legs, interactions, answer rate, minutes and money.
WITH l AS (
    SELECT
        account_id,
        date,
        COUNT(*) AS legs,
        SUM(CASE WHEN billing_seconds > 0 THEN 1 ELSE 0 END) AS answered_legs,
        SUM(CASE WHEN billing_seconds > 0 THEN billing_seconds ELSE 0 END) AS billing_seconds,
        SUM(billed_seconds) AS billed_seconds,
        SUM(rated_cost_units) AS rated_cost_units,
        SUM(cost_units) AS cost_units,
        SUM(CASE WHEN cost_units IS NULL THEN 1 ELSE 0 END) AS unpriced_legs,
        SUM(reseller_cost_units) AS reseller_cost_units,
        -- What KAZOO charged, and rerate's price, side by side; never summed into each other.
        SUM(CASE WHEN recorded_cost_units IS NOT NULL THEN recorded_cost_units ELSE 0 END) AS recorded_cost_units,
        SUM(CASE WHEN derived_cost_units IS NOT NULL THEN derived_cost_units ELSE 0 END) AS derived_cost_units,
        SUM(CASE WHEN recorded_reseller_cost_units IS NOT NULL THEN recorded_reseller_cost_units ELSE 0 END) AS recorded_reseller_cost_units,
        SUM(CASE WHEN derived_reseller_cost_units IS NOT NULL THEN derived_reseller_cost_units ELSE 0 END) AS derived_reseller_cost_units,
        SUM(CASE WHEN recorded_cost_units IS NULL THEN 1 ELSE 0 END) AS not_recorded_legs,
        SUM(CASE WHEN derived_cost_units IS NULL THEN 1 ELSE 0 END) AS not_derived_legs,
        SUM(CASE WHEN call_direction = 'inbound' THEN 1 ELSE 0 END) AS inbound_legs,
        SUM(CASE WHEN call_direction = 'outbound' THEN 1 ELSE 0 END) AS outbound_legs,
        SUM(
            CASE
                WHEN (account_billing = 'per_minute' OR reseller_billing = 'per_minute')
                    AND (rate IS NULL OR (rate = 0 AND source_format IN ('csv', 'listing')))
                THEN 1 ELSE 0
            END
        ) AS unrated_per_minute_legs
    FROM legs
    GROUP BY account_id, date
),
i AS (
    SELECT account_id, date, COUNT(*) AS interactions
    FROM interactions
    GROUP BY account_id, date
)
SELECT
    l.account_id,
    l.date,
    l.legs,
    COALESCE(i.interactions, 0) AS interactions,
    l.answered_legs,
    CAST(l.answered_legs AS DOUBLE) / l.legs AS asr,
    CASE WHEN l.answered_legs > 0 THEN CAST(l.billing_seconds AS DOUBLE) / l.answered_legs END AS acd_seconds,
    l.billing_seconds,
    l.billed_seconds,
    -- Times the reciprocal: polars divides a column by a constant that way, but divides exactly
    -- when there is a single row, so "/ 60" would depend on how many rows the query sees. The
    -- reciprocal is a DOUBLE: Spark reads "1.0" as DECIMAL(2,1) and "1.0 / 60" as 0.016667.
    CAST(l.billing_seconds AS DOUBLE) * (CAST(1 AS DOUBLE) / 60) AS minutes_of_use,
    l.rated_cost_units,
    l.cost_units,
    l.unpriced_legs,
    l.reseller_cost_units,
    l.recorded_cost_units,
    l.derived_cost_units,
    l.recorded_reseller_cost_units,
    l.derived_reseller_cost_units,
    l.not_recorded_legs,
    l.not_derived_legs,
    l.inbound_legs,
    l.outbound_legs,
    l.unrated_per_minute_legs
FROM l
LEFT JOIN i ON l.account_id = i.account_id AND l.date = i.date
ORDER BY l.account_id, l.date
