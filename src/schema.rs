//! The one home for column names and types.
//!
//! Every column rerate reads from a CDR or derives from it is named here, once. The parser, the
//! rating stage and the writers all take their names from these lists, so a CSV header, a Parquet
//! field and a manifest key can never drift apart.

use polars::prelude::{DataType, TimeUnit, TimeZone};

/// Top-level CDR keys kept as UTF-8 text columns, in output order (the seed schema's strings,
/// plus `fax_t38` from its notes). The fax_* fields are strings, as the schema documents them.
pub(crate) const TOP_STR: &[&str] = &[
    CALL_ID,
    INTERACTION_ID,
    "call_direction",
    "caller_id_name",
    "caller_id_number",
    "callee_id_name",
    "callee_id_number",
    "hangup_cause",
    "hangup_code",
    "disposition",
    "interaction_key",
    "other_leg_call_id",
    "other_leg_caller_id_name",
    "other_leg_caller_id_number",
    "other_leg_destination_number",
    "other_leg_direction",
    "request",
    "to",
    "from",
    "to_uri",
    "from_uri",
    "to_tag",
    "from_tag",
    "presence_id",
    "digits_dialed",
    "user_agent",
    "app_name",
    "app_version",
    "channel_call_state",
    "channel_name",
    "channel_state",
    "event_category",
    "event_name",
    "media_server",
    "msg_id",
    "node",
    "switch_hostname",
    "switch_nodename",
    "switch_uri",
    "switch_url",
    "local_sdp",
    "remote_sdp",
    "fax_bad_rows",
    "fax_ecm_used",
    "fax_result_code",
    "fax_result_text",
    "fax_success",
    "fax_t38",
    "fax_total_pages",
    "fax_transfer_rate",
    "fax_transferred_pages",
];

/// custom_channel_vars kept as named text columns. `account_id` is the partition key; the
/// identity ones may also appear at the top level (the webhook shape), which is used when the
/// CCVs lack them.
pub(crate) const CCV_STR: &[&str] = &[
    ACCOUNT_ID,
    RESELLER_ID,
    ACCOUNT_BILLING,
    RESELLER_BILLING,
    RATE_NAME,
    "rate_description",
    "authorizing_type",
    "authorizing_id",
    "owner_id",
    "bridge_id",
    "resource_type",
    "resource_id",
    "realm",
    "username",
];

/// How many leading entries of [`CCV_STR`] stand after the rating columns; the rest are identity.
const CCV_STR_BILLING: usize = 6;

/// CCVs that a KAZOO webhook or flattened export carries at the top level instead: the
/// account and reseller ids and the identity CCVs.
pub(crate) fn top_level_identity_aliases() -> impl Iterator<Item = &'static str> {
    [ACCOUNT_ID, RESELLER_ID]
        .into_iter()
        .chain(CCV_STR[CCV_STR_BILLING..].iter().copied())
}

/// What a bad value in an integer field does to its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntRole {
    /// A billing field: present but not a non-negative number rejects the record.
    Billing,
    /// Same as billing, read with KAZOO's `kz_term:to_integer` (decimal strings rounded, flagged).
    Rating,
    /// Informational: a bad value becomes null and the leg is flagged `invalid:<field>`.
    Lenient,
}

/// Where an integer field lives and how its raw value maps to the column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntSource {
    /// A top-level integer, stored as is.
    Top,
    /// A top-level Gregorian-seconds timestamp, stored as a UTC datetime.
    TopGregorian,
    /// A top-level Unix-microseconds timestamp, stored as a UTC datetime.
    TopUnixMicros,
    /// A custom_channel_vars integer.
    Ccv,
}

/// One integer input field.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IntField {
    pub name: &'static str,
    pub source: IntSource,
    pub role: IntRole,
}

const fn int(name: &'static str, source: IntSource, role: IntRole) -> IntField {
    IntField { name, source, role }
}

/// Integer input fields; indices are the `I_*` constants below.
pub(crate) const INT_FIELDS: &[IntField] = &[
    int(BILLING_SECONDS, IntSource::Top, IntRole::Billing),
    int(DURATION_SECONDS, IntSource::Top, IntRole::Billing),
    int(TIMESTAMP, IntSource::TopGregorian, IntRole::Billing),
    int(RINGING_SECONDS, IntSource::Top, IntRole::Lenient),
    int(
        CHANNEL_CREATED_TIME,
        IntSource::TopUnixMicros,
        IntRole::Lenient,
    ),
    int(
        "interaction_time",
        IntSource::TopGregorian,
        IntRole::Lenient,
    ),
    int(RATE, IntSource::Ccv, IntRole::Rating),
    int(RATE_INCREMENT, IntSource::Ccv, IntRole::Rating),
    int(RATE_MINIMUM, IntSource::Ccv, IntRole::Rating),
    int(SURCHARGE, IntSource::Ccv, IntRole::Rating),
    int(RATE_NOCHARGE_TIME, IntSource::Ccv, IntRole::Rating),
    int(DISCOUNT_PERCENTAGE, IntSource::Ccv, IntRole::Rating),
    int(BILLING_SECONDS_OFFSET, IntSource::Ccv, IntRole::Rating),
    int("base_cost", IntSource::Ccv, IntRole::Lenient),
    int(PVT_COST, IntSource::Ccv, IntRole::Lenient),
];

pub(crate) const I_BILLING_SECONDS: usize = 0;
pub(crate) const I_DURATION_SECONDS: usize = 1;
pub(crate) const I_TIMESTAMP: usize = 2;
pub(crate) const I_CHANNEL_CREATED_TIME: usize = 4;

/// Nested objects kept whole as compact JSON text, and the catch-all for unknown top-level keys.
pub(crate) const JSON_COLS: &[&str] = &[
    CUSTOM_CHANNEL_VARS,
    "custom_application_vars",
    "custom_sip_headers",
    EXTRA,
];
pub(crate) const J_CCV: usize = 0;
pub(crate) const J_EXTRA: usize = 3;

pub const CALL_ID: &str = "call_id";
pub(crate) const INTERACTION_ID: &str = "interaction_id";
pub(crate) const ACCOUNT_ID: &str = "account_id";
pub(crate) const RESELLER_ID: &str = "reseller_id";
pub(crate) const ACCOUNT_BILLING: &str = "account_billing";
pub(crate) const RESELLER_BILLING: &str = "reseller_billing";
pub(crate) const RATE_NAME: &str = "rate_name";
pub(crate) const BILLING_SECONDS: &str = "billing_seconds";
pub(crate) const DURATION_SECONDS: &str = "duration_seconds";
pub(crate) const RINGING_SECONDS: &str = "ringing_seconds";
pub(crate) const TIMESTAMP: &str = "timestamp";
pub(crate) const CHANNEL_CREATED_TIME: &str = "channel_created_time";
pub(crate) const RATE: &str = "rate";
pub(crate) const RATE_INCREMENT: &str = "rate_increment";
pub(crate) const RATE_MINIMUM: &str = "rate_minimum";
pub(crate) const SURCHARGE: &str = "surcharge";
pub(crate) const RATE_NOCHARGE_TIME: &str = "rate_nocharge_time";
pub(crate) const DISCOUNT_PERCENTAGE: &str = "discount_percentage";
pub(crate) const BILLING_SECONDS_OFFSET: &str = "billing_seconds_offset";
pub(crate) const CUSTOM_CHANNEL_VARS: &str = "custom_channel_vars";
/// The carrier's rate, units per minute: hotornot's `Pvt-Cost` (`hon_rater:rate_resp/2`,
/// `kzd_rates:private_cost/1`: the deck row's `pvt_internal_rate_cost` in units, 0 when the row
/// has none), set on the channel by `ecallmgr_fs_authz` among its rate variables.
pub(crate) const PVT_COST: &str = "pvt_cost";
pub(crate) const EXTRA: &str = "extra";

/// Derived columns.
pub const START_TIME: &str = "start_time";
pub(crate) const END_TIME: &str = "end_time";
pub(crate) const DATE: &str = "date";
/// Every flag of a leg, comma-separated: its [`PARSE_FLAGS`], then those the rating stage adds
/// ([`crate::rate::RATING_STAGE_FLAGS`]). Derived: a leg read back from the dataset has it
/// rebuilt from `parse_flags`.
pub(crate) const RATING_FLAGS: &str = "rating_flags";
/// The flags the parser sets on a leg (how a value was read: `decimal:rate`,
/// `time_from_pvt_created`, ...), comma-separated, null for none; no later stage changes them.
pub(crate) const PARSE_FLAGS: &str = "parse_flags";
pub(crate) const BILLED_SECONDS: &str = "billed_seconds";
pub(crate) const RATED_COST_UNITS: &str = "rated_cost_units";
pub(crate) const COST_UNITS: &str = "cost_units";
pub(crate) const RESELLER_COST_UNITS: &str = "reseller_cost_units";
/// What the carrier charges for the leg, units: KAZOO's formula on the carrier's rate
/// ([`PVT_COST`]) with the leg's seconds, increment and minimum; null when the rate is unknown.
pub(crate) const CARRIER_COST_UNITS: &str = "carrier_cost_units";
pub(crate) const SOURCE_FILE: &str = "source_file";
pub(crate) const SOURCE_LINE: &str = "source_line";
/// The decoded byte offset of the record's first byte in its file (after a UTF-8 BOM, counted
/// too): with `source_file`, unique to each record, even when several JSON values share a line.
pub(crate) const SOURCE_OFFSET: &str = "source_offset";

pub(crate) const SOURCE_FORMAT: &str = "source_format";

/// Whether a leg's `source_format` is one of crossbar's column-shaped exports (`csv`, the CSV
/// export; `listing`, a `GET /cdrs` page's rows): legs that carry KAZOO's recorded money and its
/// rate, but no increment or minimum.
pub(crate) fn is_column_shaped(source_format: Option<&str>) -> bool {
    matches!(source_format, Some("csv" | "listing"))
}
pub(crate) const RECORDED_COST_UNITS: &str = "recorded_cost_units";
pub(crate) const RECORDED_RESELLER_COST_UNITS: &str = "recorded_reseller_cost_units";
pub(crate) const DERIVED_COST_UNITS: &str = "derived_cost_units";
pub(crate) const DERIVED_RESELLER_COST_UNITS: &str = "derived_reseller_cost_units";
pub(crate) const DECK_RATE_NAME: &str = "deck_rate_name";
pub(crate) const DECK_RATE: &str = "deck_rate";
pub(crate) const DECK_RATE_INCREMENT: &str = "deck_rate_increment";
pub(crate) const DECK_RATE_MINIMUM: &str = "deck_rate_minimum";
pub(crate) const DECK_SURCHARGE: &str = "deck_surcharge";
pub(crate) const DECK_NOCHARGE_TIME: &str = "deck_nocharge_time";
pub(crate) const DECK_COST_UNITS: &str = "deck_cost_units";

/// Money as KAZOO recorded it, in units of 1/10,000: for crossbar's column-shaped legs their
/// [`EXPORTED_COLS`], for JSON legs KAZOO's own double arithmetic on the leg's rate (see
/// [`crate::reconcile::recorded`]). Derived by reconciliation.
pub(crate) const RECORDED_COLS: &[&str] = &[RECORDED_COST_UNITS, RECORDED_RESELLER_COST_UNITS];

pub(crate) const EXPORTED_COST_UNITS: &str = "exported_cost_units";
pub(crate) const EXPORTED_RESELLER_COST_UNITS: &str = "exported_reseller_cost_units";
/// Money as KAZOO's export wrote it on the leg, in units of 1/10,000: the `cost` and
/// `reseller_cost` of crossbar's column-shaped legs (CSV export and listing,
/// [`is_column_shaped`]), as the parser read them; null for JSON legs, which carry none. No
/// later stage changes them.
pub(crate) const EXPORTED_COLS: &[&str] = &[EXPORTED_COST_UNITS, EXPORTED_RESELLER_COST_UNITS];

/// The rate deck's choice for a leg, and what it costs with the deck's parameters.
pub(crate) const DECK_COLS: &[&str] = &[
    DECK_RATE_NAME,
    DECK_RATE,
    DECK_RATE_INCREMENT,
    DECK_RATE_MINIMUM,
    DECK_SURCHARGE,
    DECK_NOCHARGE_TIME,
    DECK_COST_UNITS,
];

/// The money columns the rating stage adds, in output order.
pub(crate) const RATED_COLS: &[&str] = &[
    BILLED_SECONDS,
    RATED_COST_UNITS,
    COST_UNITS,
    RESELLER_COST_UNITS,
    CARRIER_COST_UNITS,
];

/// Interactions' own columns (see [`crate::interactions`]).
pub(crate) const LEGS: &str = "legs";
pub(crate) const LEG_CALL_IDS: &str = "leg_call_ids";
pub(crate) const ANSWERED: &str = "answered";
pub(crate) const TALK_SECONDS: &str = "talk_seconds";
pub(crate) const ACCOUNTS: &str = "accounts";

/// Reconciliation's own columns (see [`crate::reconcile`]).
pub(crate) const CLASS: &str = "class";
/// Whose money a reconciliation row is about: `customer` or `reseller`.
pub(crate) const PARTY: &str = "party";
pub(crate) const DELTA_UNITS: &str = "delta_units";
pub(crate) const LEG_RATE: &str = "leg_rate";

/// The tables (folders) and whole-run files of an output folder.
pub(crate) const LEGS_TABLE: &str = "legs";
pub(crate) const INTERACTIONS_TABLE: &str = "interactions";
pub(crate) const RECONCILIATION_TABLE: &str = "reconciliation";
/// The built-in report summary.html is drawn from.
pub(crate) const DAILY_REPORT: &str = "daily";
pub(crate) const SUMMARY_HTML: &str = "summary.html";
pub(crate) const REJECTS_FILE: &str = "rejects.ndjson";
pub(crate) const MANIFEST_FILE: &str = "manifest.json";

/// The partition value for legs that carry no account_id.
pub(crate) const UNASSIGNED_ACCOUNT: &str = "_unassigned";

/// The dtype of every timestamp column: microseconds, UTC-adjusted.
pub(crate) fn timestamp_dtype() -> DataType {
    DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
}

/// The dtype of a named int field column.
pub(crate) fn int_field_dtype(f: &IntField) -> DataType {
    match f.source {
        IntSource::TopGregorian | IntSource::TopUnixMicros => timestamp_dtype(),
        IntSource::Top | IntSource::Ccv => DataType::Int64,
    }
}

/// The legs file's columns in output order (partition columns excluded).
pub fn leg_columns() -> Vec<&'static str> {
    let mut cols: Vec<&'static str> = Vec::with_capacity(128);
    cols.extend_from_slice(&[CALL_ID, INTERACTION_ID, START_TIME, END_TIME]);
    cols.extend(TOP_STR[2..10].iter().copied());
    cols.extend_from_slice(&[DURATION_SECONDS, BILLING_SECONDS, RINGING_SECONDS]);
    cols.extend(CCV_STR[1..CCV_STR_BILLING].iter().copied());
    cols.extend(
        INT_FIELDS
            .iter()
            .filter(|f| f.source == IntSource::Ccv)
            .map(|f| f.name),
    );
    cols.extend_from_slice(RATED_COLS);
    cols.extend_from_slice(&[RATING_FLAGS, PARSE_FLAGS]);
    cols.extend_from_slice(RECORDED_COLS);
    cols.extend_from_slice(EXPORTED_COLS);
    cols.extend_from_slice(&[DERIVED_COST_UNITS, DERIVED_RESELLER_COST_UNITS]);
    cols.extend_from_slice(DECK_COLS);
    cols.extend(CCV_STR[CCV_STR_BILLING..].iter().copied());
    cols.extend_from_slice(&[TIMESTAMP, CHANNEL_CREATED_TIME, "interaction_time"]);
    cols.extend(TOP_STR[10..].iter().copied());
    cols.extend_from_slice(JSON_COLS);
    cols.extend_from_slice(&[SOURCE_FORMAT, SOURCE_FILE, SOURCE_LINE, SOURCE_OFFSET]);
    cols
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn leg_columns_are_unique_and_cover_every_input_field() {
        let cols = leg_columns();
        let set: HashSet<_> = cols.iter().collect();
        assert_eq!(set.len(), cols.len(), "duplicate column name");
        for name in TOP_STR
            .iter()
            .chain(CCV_STR.iter().skip(1))
            .chain(INT_FIELDS.iter().map(|f| &f.name))
            .chain(JSON_COLS.iter())
            .chain(RATED_COLS.iter())
        {
            assert!(set.contains(name), "{name} missing from leg_columns");
        }
        assert!(!set.contains(&ACCOUNT_ID) && !set.contains(&DATE));
    }

    #[test]
    fn index_constants_point_at_their_fields() {
        assert_eq!(INT_FIELDS[I_BILLING_SECONDS].name, BILLING_SECONDS);
        assert_eq!(INT_FIELDS[I_DURATION_SECONDS].name, DURATION_SECONDS);
        assert_eq!(INT_FIELDS[I_TIMESTAMP].name, TIMESTAMP);
        assert_eq!(
            INT_FIELDS[I_CHANNEL_CREATED_TIME].name,
            CHANNEL_CREATED_TIME
        );
        assert_eq!(JSON_COLS[J_CCV], CUSTOM_CHANNEL_VARS);
        assert_eq!(JSON_COLS[J_EXTRA], EXTRA);
        assert_eq!(TOP_STR[0], CALL_ID);
        assert_eq!(TOP_STR[1], INTERACTION_ID);
        assert_eq!(TOP_STR[9], "disposition");
        assert_eq!(CCV_STR[CCV_STR_BILLING], "authorizing_type");
    }
}
