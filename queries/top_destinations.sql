-- The 20 destinations (rate name, else the callee's first 4 digits) that cost most per account and day.
WITH d AS (
    SELECT
        account_id,
        date,
        COALESCE(rate_name, SUBSTR(REPLACE(callee_id_number, '+', ''), 1, 4), 'UNKNOWN') AS destination,
        CASE WHEN billing_seconds > 0 THEN billing_seconds ELSE 0 END AS billing_seconds,
        cost_units
    FROM legs
),
g AS (
    SELECT
        account_id,
        date,
        destination,
        COUNT(*) AS legs,
        -- Times the reciprocal, not "/ 60": see daily.sql.
        CAST(SUM(billing_seconds) AS DOUBLE) * (CAST(1 AS DOUBLE) / 60) AS minutes,
        SUM(cost_units) AS cost_units
    FROM d
    GROUP BY account_id, date, destination
),
r AS (
    SELECT
        account_id,
        date,
        destination,
        legs,
        minutes,
        cost_units,
        ROW_NUMBER() OVER (PARTITION BY account_id, date ORDER BY cost_units DESC, legs DESC, destination DESC) AS rank
    FROM g
)
SELECT account_id, date, rank, destination, legs, minutes, cost_units
FROM r
WHERE rank <= 20
ORDER BY account_id, date, rank
