-- Every billable leg against its per-minute ledgers, and every per-minute ledger against its leg, one row per leg and party or per ledger without a billable leg, with its class: the rows ledger_reconciliation.sql and ledger_daily.sql read (registered as the view ledger_rows).
--
-- Tables: legs; ledgers; month_legs (account_id, date) and month_ledgers (account_id, date,
-- pvt_account_id): the legs and ledgers of whole months, for coverage. Over a whole dataset the
-- last two are simply the legs and ledgers tables; rerate gives them for the months its rows
-- fall in.
--
-- KAZOO's rules (jonny5): when a call ends, j5_channel_destroy reconciles it for the account and
-- then for its reseller (unless the account is its own reseller); for each one that bills per
-- minute, j5_per_minute:reconcile_call_cost/2 computes kapps_call_util:calculate_call/1 from the
-- call's rate variables and, unless the cost is 0, writes a ledger into that account's month
-- database (create_ledger_usage/4): source.service per-minute-voip, source.id the call_id,
-- account.id the customer's account, usage.quantity the charged seconds, the amount in units,
-- debited; period.start the event's Gregorian seconds, the leg's end. So a leg's ledgers are the
-- per-minute-voip ledgers of its account with its call_id, held by the party's database
-- (pvt_account_id), on the leg's day or the next (a call across midnight).
--
-- A party's legs are checked only in a month for which the dataset holds ledgers of that
-- database for the account: the others have no row (an account whose ledgers were never loaded
-- is not said to have missing ones); a ledger is checked only in a month for which the dataset
-- holds legs of its account (otherwise: not_checked).
WITH sides AS (
    SELECT
        account_id, date, call_id, 'customer' AS party, account_id AS held_by,
        billed_seconds, recorded_cost_units AS recorded_units, derived_cost_units AS derived_units
    FROM legs
    WHERE account_billing = 'per_minute' AND billing_seconds > 0
    UNION ALL
    SELECT
        account_id, date, call_id, 'reseller' AS party, reseller_id AS held_by,
        billed_seconds, recorded_reseller_cost_units AS recorded_units,
        derived_reseller_cost_units AS derived_units
    FROM legs
    WHERE reseller_billing = 'per_minute' AND billing_seconds > 0
        AND reseller_id IS NOT NULL AND reseller_id <> account_id
),
-- Each side under the two days its ledger may fall on.
side_days AS (
    SELECT account_id, date, call_id, party, held_by, date AS ledger_date FROM sides
    UNION ALL
    SELECT account_id, date, call_id, party, held_by, CAST(date + INTERVAL '1 day' AS DATE) AS ledger_date FROM sides
),
leg_days AS (
    SELECT account_id, call_id, date AS ledger_date FROM legs
    UNION ALL
    SELECT account_id, call_id, CAST(date + INTERVAL '1 day' AS DATE) AS ledger_date FROM legs
),
debits AS (
    SELECT
        account_id, date, source_id AS call_id, COALESCE(pvt_account_id, account_id) AS held_by,
        ledger_id, usage_quantity, amount_units
    FROM ledgers
    WHERE source_service = 'per-minute-voip'
),
matched AS (
    SELECT
        s.account_id, s.date, s.call_id, s.party,
        COUNT(*) AS ledgers,
        SUM(-d.amount_units) AS debited_units,
        SUM(d.usage_quantity) AS charged_seconds,
        MIN(d.ledger_id) AS ledger_id
    FROM side_days s
    JOIN debits d
        ON d.account_id = s.account_id AND d.call_id = s.call_id AND d.held_by = s.held_by
        AND d.date = s.ledger_date
    GROUP BY s.account_id, s.date, s.call_id, s.party
),
ledger_months AS (
    SELECT DISTINCT
        account_id, COALESCE(pvt_account_id, account_id) AS held_by,
        EXTRACT(YEAR FROM date) AS y, EXTRACT(MONTH FROM date) AS m
    FROM month_ledgers
),
leg_months AS (
    SELECT DISTINCT account_id, EXTRACT(YEAR FROM date) AS y, EXTRACT(MONTH FROM date) AS m
    FROM month_legs
),
leg_rows AS (
    SELECT
        s.account_id, s.date, s.call_id, s.party, 'leg' AS side, s.held_by AS pvt_account_id,
        m.ledger_id, COALESCE(m.ledgers, 0) AS ledgers,
        s.billed_seconds, m.charged_seconds,
        s.recorded_units AS recorded_cost_units, s.derived_units AS derived_cost_units,
        m.debited_units,
        CASE
            WHEN m.ledgers IS NULL AND c.account_id IS NULL THEN 'not_checked'
            WHEN m.ledgers IS NULL AND (COALESCE(s.recorded_units, 0) > 0 OR COALESCE(s.derived_units, 0) > 0) THEN 'ledger_missing'
            WHEN m.ledgers IS NULL THEN 'no_charge'
            WHEN m.ledgers > 1 THEN 'charged_twice'
            WHEN s.billed_seconds IS NULL OR m.charged_seconds <> s.billed_seconds THEN 'seconds_differ'
            WHEN s.recorded_units IS NULL OR m.debited_units <> s.recorded_units THEN 'amount_differs'
            WHEN s.derived_units IS NULL OR m.debited_units <> s.derived_units THEN 'derived_differs'
            ELSE 'ok'
        END AS class
    FROM sides s
    LEFT JOIN matched m
        ON m.account_id = s.account_id AND m.date = s.date AND m.call_id = s.call_id AND m.party = s.party
    LEFT JOIN ledger_months c
        ON c.account_id = s.account_id AND c.held_by = s.held_by
        AND c.y = EXTRACT(YEAR FROM s.date) AND c.m = EXTRACT(MONTH FROM s.date)
),
-- Ledgers no billable leg claims: the leg is not in the dataset, or that party does not pay it
-- per minute.
billed AS (
    SELECT DISTINCT account_id, call_id, held_by, ledger_date FROM side_days
),
any_leg AS (
    SELECT DISTINCT account_id, call_id, ledger_date FROM leg_days
),
ledger_rows AS (
    SELECT
        d.account_id, d.date, d.call_id,
        CASE WHEN d.held_by = d.account_id THEN 'customer' ELSE 'reseller' END AS party,
        'ledger' AS side, d.held_by AS pvt_account_id, d.ledger_id, 1 AS ledgers,
        CAST(NULL AS BIGINT) AS billed_seconds, d.usage_quantity AS charged_seconds,
        CAST(NULL AS BIGINT) AS recorded_cost_units, CAST(NULL AS BIGINT) AS derived_cost_units,
        -d.amount_units AS debited_units,
        CASE
            WHEN a.call_id IS NOT NULL THEN 'not_per_minute'
            WHEN w.account_id IS NULL THEN 'not_checked'
            ELSE 'ledger_without_leg'
        END AS class
    FROM debits d
    LEFT JOIN billed b
        ON b.account_id = d.account_id AND b.call_id = d.call_id AND b.held_by = d.held_by
        AND b.ledger_date = d.date
    LEFT JOIN any_leg a
        ON a.account_id = d.account_id AND a.call_id = d.call_id AND a.ledger_date = d.date
    LEFT JOIN leg_months w
        ON w.account_id = d.account_id
        AND w.y = EXTRACT(YEAR FROM d.date) AND w.m = EXTRACT(MONTH FROM d.date)
    WHERE b.call_id IS NULL
)
SELECT * FROM leg_rows WHERE class <> 'not_checked'
UNION ALL
SELECT * FROM ledger_rows
