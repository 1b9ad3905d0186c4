//! Hive partition directory names: `account_id=<value>` with Hive's escaping, so that DuckDB,
//! polars and Spark read the value back unchanged and no value can leave the output folder.

/// The directory name Hive writes for a null partition value.
pub const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// Hive's escape set: `%XX` (uppercase hex) for control bytes, DEL and
/// `" # % ' * / : = ? \ { [ ] ^`; everything else, non-ASCII included, stays raw UTF-8.
pub fn escape(value: &str) -> String {
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
pub fn dir_name(key: &str, value: Option<&str>) -> String {
    format!(
        "{key}={}",
        value.map_or_else(|| HIVE_NULL.to_owned(), escape)
    )
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
}
