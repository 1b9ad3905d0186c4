-- Legs per account, day and hangup cause, with each cause's share of the day's legs.
WITH c AS (
    SELECT account_id, date, COALESCE(hangup_cause, 'UNKNOWN') AS hangup_cause
    FROM legs
),
n AS (
    SELECT account_id, date, hangup_cause, COUNT(*) AS legs
    FROM c
    GROUP BY account_id, date, hangup_cause
),
t AS (
    SELECT account_id, date, COUNT(*) AS day_legs
    FROM legs
    GROUP BY account_id, date
)
SELECT
    n.account_id,
    n.date,
    n.hangup_cause,
    n.legs,
    -- legs x (1 / day's legs), as written: polars divides a column by a one-value column as a
    -- multiplication by its reciprocal, so "legs / day_legs" gave 3/5 as 0.6 or as
    -- 0.6000000000000001 depending on the other accounts a run held. Written this way every
    -- engine and every run computes the same double.
    CAST(n.legs AS DOUBLE) * (1.0 / t.day_legs) AS share
FROM n
JOIN t ON n.account_id = t.account_id AND n.date = t.date
ORDER BY n.account_id, n.date, n.legs DESC, n.hangup_cause
