-- Per-minute legs KAZOO charged nothing for that the rate deck prices above 0, one row per leg and party, costliest first: the money never charged (needs --rates).
-- KAZOO rates a call asynchronously and lets it through when the rate lookup fails
-- (ecallmgr_fs_authz: inbound_rate_required and outbound_rate_required default to false), and
-- jonny5 writes no ledger for a cost of 0 (j5_per_minute:reconcile_call_cost/2), computed from
-- the same rate variables as the CDR's: a leg recorded at 0 was debited nothing. Legitimate zeros
-- are not leaks: a leg within its own no-charge time (rate_nocharge_time), a 100% discount, a
-- reseller that is the account itself (j5_channel_destroy), and every leg not billed per minute
-- (flat_rate, allotment_*, limits_disabled: emergency and toll-free calls).
WITH l AS (
    SELECT
        account_id, date, call_id, call_direction, callee_id_number, billing_seconds, rate,
        rate_name, deck_rate_name, deck_rate, account_billing, reseller_billing, reseller_id,
        rate_nocharge_time, recorded_cost_units, derived_cost_units,
        recorded_reseller_cost_units, derived_reseller_cost_units,
        billing_seconds - COALESCE(billing_seconds_offset, 0) AS billable_seconds,
        CASE
            WHEN rate IS NULL OR (rate = 0 AND source_format IN ('csv', 'listing')) THEN 'no_rate'
            WHEN rate = 0 THEN 'zero_rate'
            ELSE 'zero_cost'
        END AS reason
    FROM legs
    WHERE deck_cost_units > 0
        AND COALESCE(discount_percentage, 0) < 100
),
c AS (
    SELECT
        account_id, date, call_id, 'customer' AS party, reason, call_direction, callee_id_number,
        billing_seconds, rate, rate_name, deck_rate_name, deck_rate,
        recorded_cost_units, derived_cost_units AS leaked_units
    FROM l
    WHERE account_billing = 'per_minute'
        AND billable_seconds > 0
        AND NOT (rate_nocharge_time IS NOT NULL AND billable_seconds <= rate_nocharge_time)
        AND recorded_cost_units = 0
        AND derived_cost_units > 0
),
r AS (
    SELECT
        account_id, date, call_id, 'reseller' AS party, reason, call_direction, callee_id_number,
        billing_seconds, rate, rate_name, deck_rate_name, deck_rate,
        recorded_reseller_cost_units AS recorded_cost_units, derived_reseller_cost_units AS leaked_units
    FROM l
    WHERE reseller_billing = 'per_minute'
        AND COALESCE(reseller_id, '') <> COALESCE(account_id, '')
        AND billable_seconds > 0
        AND NOT (rate_nocharge_time IS NOT NULL AND billable_seconds <= rate_nocharge_time)
        AND recorded_reseller_cost_units = 0
        AND derived_reseller_cost_units > 0
)
SELECT * FROM c
UNION ALL
SELECT * FROM r
ORDER BY account_id, date, leaked_units DESC, call_id, party
