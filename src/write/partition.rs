//! Hive partition directory names: `account_id=<value>` with Hive's escaping, so that DuckDB,
//! polars and Spark read the value back unchanged and no value can leave the output folder.

/// The directory name Hive writes for a null partition value.
pub(crate) const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// Hive's escape set: `%XX` (uppercase hex) for control bytes, DEL and
/// `" # % ' * / : = ? \ { [ ] ^`; everything else, non-ASCII included, stays raw UTF-8.
pub(crate) fn escape(value: &str) -> String {
    if value.is_empty() {
        return HIVE_NULL.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let needs = (c as u32) < 0x20
            || c == '\u{7f}'
            || matches!(
                c,
                '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '{' | '[' | ']' | '^'
            );
        if needs {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    // `.` and `..` are not names a folder can safely have.
    match out.as_str() {
        "." => "%2E".to_owned(),
        ".." => "%2E%2E".to_owned(),
        _ => out,
    }
}

/// `key=escaped-value`.
pub(crate) fn dir_name(key: &str, value: Option<&str>) -> String {
    format!(
        "{key}={}",
        value.map_or_else(|| HIVE_NULL.to_owned(), escape)
    )
}

/// How a table's files are cut, by the rows a file holds.
///
/// - [`Grain::AccountDay`]: `<table>/account_id=<ID>/date=<YYYY-MM-DD>/part-0.parquet`, the
///   legs, interactions and reconciliation rows of one account's day (the unit a merge reads
///   back and rewrites, and the bounded-memory pipeline's unit); neither key is in the file.
/// - [`Grain::Day`]: `<table>/date=<YYYY-MM-DD>/part-0.parquet`, every account's rows of one
///   day, `account_id` the file's last column and the rows sorted by it: the reports (`daily`,
///   `hangup_causes`, `top_destinations`, `reconciliation_daily`, a `--queries` report with
///   `account_id` and `date`), a row or a few per account and day, which finance reads a day
///   at a time. One file a day instead of one per account: a one-row file is 8 KB of footer
///   and page index for 1 KB of values (see BENCHMARKS.md).
///
/// Either way `account_id` and `date` are the table's keys as a Hive-partitioned reader shows
/// them (`read_parquet('<table>/**/*.parquet', hive_partitioning=true)`), in that order, last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    AccountDay,
    Day,
}

/// Whether a run computes the table's rows from the legs of the partitions it rewrites (every
/// table but the ledgers, which are read from the input and merged by their own rule,
/// [`crate::ledgers`], and the ledger reconciliation's, which reach neighbouring days,
/// [`crate::ledger_reconciliation`]): a rewritten partition's old rows of such a table go,
/// whatever the run writes in their place.
pub(crate) fn made_from_legs(table: &str) -> bool {
    table != crate::ingest::ledger::LEDGERS_TABLE
        && !crate::ledger_reconciliation::is_ledger_table(table)
}

impl Grain {
    /// The grain of the table named `table`: by account and day for the legs, interactions and
    /// reconciliation tables, by day for every report and the ledgers.
    pub fn of(table: &str) -> Grain {
        use crate::schema::{INTERACTIONS_TABLE, LEGS_TABLE, RECONCILIATION_TABLE};
        match table {
            LEGS_TABLE | INTERACTIONS_TABLE | RECONCILIATION_TABLE => Grain::AccountDay,
            _ => Grain::Day,
        }
    }

    /// The folder of `account`'s rows of `date` in `table`, relative to the output folder:
    /// `table/account_id=<ID>/date=<D>` or `table/date=<D>`.
    pub fn folder(self, table: &str, account: &str, date: Option<&str>) -> String {
        use crate::schema::{ACCOUNT_ID, DATE};
        match self {
            Grain::AccountDay => format!(
                "{table}/{}/{}",
                dir_name(ACCOUNT_ID, Some(account)),
                dir_name(DATE, date)
            ),
            Grain::Day => format!("{table}/{}", dir_name(DATE, date)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hive_escaping() {
        assert_eq!(
            escape("7600efb3424dc4b79854521fd4563d0a"),
            "7600efb3424dc4b79854521fd4563d0a"
        );
        assert_eq!(escape("../../x"), "..%2F..%2Fx");
        assert_eq!(escape("a/b=c%d"), "a%2Fb%3Dc%25d");
        assert_eq!(escape("é\u{0}"), "é%00");
        assert_eq!(escape(".."), "%2E%2E");
        assert_eq!(escape(""), HIVE_NULL);
        assert_eq!(dir_name("date", None), "date=__HIVE_DEFAULT_PARTITION__");
        assert_eq!(dir_name("date", Some("2019-05-06")), "date=2019-05-06");
    }

    #[test]
    fn reports_by_day_the_rest_by_account_and_day() {
        let d = Some("2026-11-01");
        assert_eq!(
            Grain::of("legs").folder("legs", "a/b", d),
            "legs/account_id=a%2Fb/date=2026-11-01"
        );
        assert_eq!(Grain::of("interactions"), Grain::AccountDay);
        assert_eq!(Grain::of("reconciliation"), Grain::AccountDay);
        for t in [
            "daily",
            "hangup_causes",
            "top_destinations",
            "reconciliation_daily",
            "mine",
        ] {
            assert_eq!(Grain::of(t), Grain::Day);
        }
        assert_eq!(
            Grain::Day.folder("daily", "a", None),
            "daily/date=__HIVE_DEFAULT_PARTITION__"
        );
    }
}
