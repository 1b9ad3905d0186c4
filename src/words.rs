//! Numbers and counts as people read them, for the terminal summary and `summary.html`:
//! thousands separators, plurals, money in currency.

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `one` when `n` is 1, else `many`.
pub(crate) fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// `n` with its separators and the word that goes with it: `1 leg`, `1,024 legs`.
pub(crate) fn count(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n as i64), plural(n, one, many))
}

/// Units as a currency amount with thousands separators: `1,234.5678`.
pub(crate) fn money(units: i64) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let u = units.unsigned_abs();
    format!("{sign}{}.{:04}", thousands((u / 10_000) as i64), u % 10_000)
}

/// Seconds as minutes with one decimal and separators: `12,345.6`.
pub(crate) fn minutes(seconds: i64) -> String {
    let tenths = (seconds as i128 * 10 + 30 * seconds.signum() as i128) / 60;
    let sign = if tenths < 0 { "-" } else { "" };
    let t = tenths.unsigned_abs();
    format!("{sign}{}.{}", thousands((t / 10) as i64), t % 10)
}

/// Bytes as `1.4 MB` / `812 KB` / `97 B` (powers of 1,000, as `ls -h --si` and DuckDB print).
pub(crate) fn bytes(n: u64) -> String {
    match n {
        0..=999 => format!("{n} B"),
        1_000..=999_999 => format!("{:.0} KB", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.1} GB", n as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_people_write_them() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-999), "-999");
        assert_eq!(thousands(-1000), "-1,000");
        assert_eq!(count(1, "leg", "legs"), "1 leg");
        assert_eq!(count(0, "leg", "legs"), "0 legs");
        assert_eq!(count(12_000, "leg", "legs"), "12,000 legs");
        assert_eq!(money(123_456_789), "12,345.6789");
        assert_eq!(money(-5), "-0.0005");
        assert_eq!(minutes(2148), "35.8");
        assert_eq!(minutes(3), "0.1");
        assert_eq!(minutes(60 * 12_345), "12,345.0");
        assert_eq!(bytes(97), "97 B");
        assert_eq!(bytes(812_345), "812 KB");
        assert_eq!(bytes(1_400_000), "1.4 MB");
    }
}
