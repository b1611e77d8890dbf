//! Modification times as `YYYY-MM-DD HH:MM` (UTC), without a date crate:
//! Howard Hinnant's civil-from-days conversion.

/// Formats milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM` UTC.
pub fn format_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// (year, month 1-12, day 1-31) of the day `z` days after 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(format_ms(0), "1970-01-01 00:00");
        // 2000-02-29 12:34:56 UTC
        assert_eq!(format_ms(951_827_696_000), "2000-02-29 12:34");
        // 2024-12-31 23:59:59 UTC
        assert_eq!(format_ms(1_735_689_599_999), "2024-12-31 23:59");
        // 2100-03-01 00:00 UTC (2100 is no leap year)
        assert_eq!(format_ms(4_107_542_400_000), "2100-03-01 00:00");
    }
}
