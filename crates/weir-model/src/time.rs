//! Calendar arithmetic for the timestamps AWS formats use (ISO 8601 in APIs and logs, compact
//! `YYYYMMDDTHHMMZ` in log file names), and IANA time zones for schedules (the system's
//! `/usr/share/zoneinfo`, or the copy of the database built into the binary when it is missing).

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day, hour, minute, second) of seconds since the epoch.
pub fn parts(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `2026-11-23T07:50:00Z`.
pub fn iso8601(secs: u64) -> String {
    let (y, m, d, h, mi, s) = parts(secs);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `2026-11-23T07:50:00.123456Z` from microseconds since the epoch (the access-log format).
pub fn iso8601_micros(micros: u64) -> String {
    let (y, m, d, h, mi, s) = parts(micros / 1_000_000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}Z", micros % 1_000_000)
}

/// Parses ISO 8601 `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` (no zone: UTC) into seconds since the
/// epoch.
pub fn parse_iso8601(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) =
        (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        r if (r.starts_with('+') || r.starts_with('-')) && r.len() == 6 => {
            let sign = if r.starts_with('-') { -1 } else { 1 };
            let oh: i64 = r.get(1..3)?.parse().ok()?;
            let om: i64 = r.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset;
    u64::try_from(secs).ok()
}

/// The offset from UTC, in seconds, of IANA time zone `zone` (`Europe/Paris`, `UTC`) at `secs`
/// since the epoch; `None` for a zone the database does not know.
pub fn zone_offset(zone: &str, secs: u64) -> Option<i64> {
    let tz = jiff::tz::db().get(zone).ok()?;
    let at = jiff::Timestamp::from_second(i64::try_from(secs).ok()?).ok()?;
    Some(i64::from(tz.to_offset(at).seconds()))
}

/// Seconds since the epoch of the local wall-clock time in `zone` at `secs` (UTC), for matching
/// calendar fields in that zone; `None` for an unknown zone.
pub fn local_secs(zone: &str, secs: u64) -> Option<u64> {
    u64::try_from(secs as i64 + zone_offset(zone, secs)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601_micros(1_530_570_180_186_641), "2018-07-02T22:23:00.186641Z");
        for days in [-1000, 0, 11_016, 20_000, 60_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
        }
    }

    #[test]
    fn zone_offsets_follow_daylight_saving() {
        // 2026-01-15 12:00 UTC and 2026-07-15 12:00 UTC.
        let (winter, summer) = (1_768_478_400, 1_784_116_800);
        assert_eq!(zone_offset("UTC", winter), Some(0));
        assert_eq!(zone_offset("Europe/Paris", winter), Some(3600));
        assert_eq!(zone_offset("Europe/Paris", summer), Some(7200));
        assert_eq!(zone_offset("America/New_York", summer), Some(-4 * 3600));
        assert_eq!(zone_offset("Mars/Olympus_Mons", winter), None);
        assert_eq!(parts(local_secs("Asia/Tokyo", winter).unwrap()).3, 21);
    }
}
