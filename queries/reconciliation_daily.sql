-- Per account and day: money KAZOO recorded and rerate derived, customer's and reseller's, their
-- differences, and reported rows per class. The sums run over the legs where both are known.
WITH t AS (
    SELECT
        account_id,
        date,
        COUNT(*) AS legs,
        SUM(CASE WHEN derived_cost_units IS NOT NULL AND recorded_cost_units IS NOT NULL THEN 1 ELSE 0 END) AS derived_legs,
        SUM(CASE WHEN derived_cost_units IS NOT NULL AND recorded_cost_units IS NOT NULL THEN recorded_cost_units ELSE 0 END) AS recorded_cost_units,
        SUM(CASE WHEN derived_cost_units IS NOT NULL AND recorded_cost_units IS NOT NULL THEN derived_cost_units ELSE 0 END) AS derived_cost_units,
        SUM(CASE WHEN derived_reseller_cost_units IS NOT NULL AND recorded_reseller_cost_units IS NOT NULL THEN 1 ELSE 0 END) AS reseller_derived_legs,
        SUM(CASE WHEN derived_reseller_cost_units IS NOT NULL AND recorded_reseller_cost_units IS NOT NULL THEN recorded_reseller_cost_units ELSE 0 END) AS recorded_reseller_cost_units,
        SUM(CASE WHEN derived_reseller_cost_units IS NOT NULL AND recorded_reseller_cost_units IS NOT NULL THEN derived_reseller_cost_units ELSE 0 END) AS derived_reseller_cost_units
    FROM legs
    GROUP BY account_id, date
),
c AS (
    SELECT
        account_id,
        date,
        SUM(CASE WHEN party = 'customer' THEN 1 ELSE 0 END) AS reported_legs,
        SUM(CASE WHEN class = 'unrated' THEN 1 ELSE 0 END) AS unrated,
        SUM(CASE WHEN class = 'billing_type' THEN 1 ELSE 0 END) AS billing_type,
        SUM(CASE WHEN class = 'rate_mismatch' THEN 1 ELSE 0 END) AS rate_mismatch,
        SUM(CASE WHEN class = 'rounding' THEN 1 ELSE 0 END) AS rounding,
        SUM(CASE WHEN class = 'mismatch' THEN 1 ELSE 0 END) AS mismatch,
        SUM(CASE WHEN party = 'reseller' THEN 1 ELSE 0 END) AS reseller_reported_legs,
        SUM(CASE WHEN class = 'reseller_unrated' THEN 1 ELSE 0 END) AS reseller_unrated,
        SUM(CASE WHEN class = 'reseller_billing_type' THEN 1 ELSE 0 END) AS reseller_billing_type,
        SUM(CASE WHEN class = 'reseller_rate_mismatch' THEN 1 ELSE 0 END) AS reseller_rate_mismatch,
        SUM(CASE WHEN class = 'reseller_rounding' THEN 1 ELSE 0 END) AS reseller_rounding,
        SUM(CASE WHEN class = 'reseller_mismatch' THEN 1 ELSE 0 END) AS reseller_mismatch
    FROM reconciliation
    GROUP BY account_id, date
)
SELECT
    t.account_id,
    t.date,
    t.legs,
    t.derived_legs,
    t.recorded_cost_units,
    t.derived_cost_units,
    t.derived_cost_units - t.recorded_cost_units AS delta_units,
    COALESCE(c.reported_legs, 0) AS reported_legs,
    COALESCE(c.unrated, 0) AS unrated,
    COALESCE(c.billing_type, 0) AS billing_type,
    COALESCE(c.rate_mismatch, 0) AS rate_mismatch,
    COALESCE(c.rounding, 0) AS rounding,
    COALESCE(c.mismatch, 0) AS mismatch,
    t.reseller_derived_legs,
    t.recorded_reseller_cost_units,
    t.derived_reseller_cost_units,
    t.derived_reseller_cost_units - t.recorded_reseller_cost_units AS reseller_delta_units,
    COALESCE(c.reseller_reported_legs, 0) AS reseller_reported_legs,
    COALESCE(c.reseller_unrated, 0) AS reseller_unrated,
    COALESCE(c.reseller_billing_type, 0) AS reseller_billing_type,
    COALESCE(c.reseller_rate_mismatch, 0) AS reseller_rate_mismatch,
    COALESCE(c.reseller_rounding, 0) AS reseller_rounding,
    COALESCE(c.reseller_mismatch, 0) AS reseller_mismatch
FROM t
LEFT JOIN c ON t.account_id = c.account_id AND t.date = c.date
ORDER BY t.account_id, t.date
