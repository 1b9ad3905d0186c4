-- Per account, day and party: the billable legs, how many were checked against ledgers, the money KAZOO recorded, the deck derives and the ledgers debited, and the rows per class.
-- A leg is checked when the dataset holds ledgers of the party's database for its account and
-- month (ledger_rows.sql); recorded_cost_units, derived_cost_units and debited_units are over the
-- checked legs, debited_units also over the checked ledgers no billable leg claims.
SELECT
    account_id,
    date,
    party,
    SUM(CASE WHEN side = 'leg' THEN 1 ELSE 0 END) AS billable_legs,
    SUM(CASE WHEN side = 'leg' AND class <> 'not_checked' THEN 1 ELSE 0 END) AS checked_legs,
    SUM(CASE WHEN side = 'leg' AND class <> 'not_checked' THEN COALESCE(recorded_cost_units, 0) ELSE 0 END) AS recorded_cost_units,
    SUM(CASE WHEN side = 'leg' AND class <> 'not_checked' THEN COALESCE(derived_cost_units, 0) ELSE 0 END) AS derived_cost_units,
    SUM(CASE WHEN class <> 'not_checked' THEN COALESCE(debited_units, 0) ELSE 0 END) AS debited_units,
    SUM(CASE WHEN class = 'ok' THEN 1 ELSE 0 END) AS ok,
    SUM(CASE WHEN class = 'ledger_missing' THEN 1 ELSE 0 END) AS ledger_missing,
    SUM(CASE WHEN class = 'charged_twice' THEN 1 ELSE 0 END) AS charged_twice,
    SUM(CASE WHEN class = 'seconds_differ' THEN 1 ELSE 0 END) AS seconds_differ,
    SUM(CASE WHEN class = 'amount_differs' THEN 1 ELSE 0 END) AS amount_differs,
    SUM(CASE WHEN class = 'derived_differs' THEN 1 ELSE 0 END) AS derived_differs,
    SUM(CASE WHEN class = 'ledger_without_leg' THEN 1 ELSE 0 END) AS ledger_without_leg,
    SUM(CASE WHEN class = 'not_per_minute' THEN 1 ELSE 0 END) AS not_per_minute,
    SUM(CASE WHEN class = 'not_checked' THEN 1 ELSE 0 END) AS not_checked
FROM ledger_rows
GROUP BY account_id, date, party
ORDER BY account_id, date, party
