-- Each billable leg whose per-minute ledgers disagree with it, and each per-minute ledger no billable leg claims, per party, with both sides' values: what KAZOO debited against what it recorded and what the deck derives.
-- Classes: ledger_missing (a leg KAZOO recorded or the deck prices above 0, with no ledger:
-- including the unrated calls revenue_leak lists), charged_twice (two or more ledgers),
-- seconds_differ (usage.quantity is not the leg's billed seconds), amount_differs (the debit is
-- not what KAZOO recorded on the CDR), derived_differs (the debit is what KAZOO recorded, not
-- what the deck gives), ledger_without_leg (no leg of that call in the dataset), not_per_minute
-- (the leg is there but that party does not pay it per minute). A leg row is the leg's account
-- and day; a ledger row the ledger's.
SELECT
    account_id, date, call_id, party, class, pvt_account_id, ledger_id, ledgers,
    billed_seconds, charged_seconds, recorded_cost_units, derived_cost_units, debited_units,
    debited_units - recorded_cost_units AS delta_units
FROM ledger_rows
WHERE class NOT IN ('ok', 'no_charge', 'not_checked')
ORDER BY account_id, date, call_id, party, class, ledger_id
