//! Sticky sessions: the cookies ALB uses to send a client back to the same target
//! (`AWSALB`/`AWSALBCORS` for duration-based stickiness, `AWSALBAPP-0` for application-based
//! stickiness) and to the same target group of a weighted forward (`AWSALBTG`/`AWSALBTGCORS`).
//!
//! A cookie value names the target group (by a hash of its ARN) and the target (id and port); it
//! is checked against the group's current targets, so a forged or stale value only ever picks a
//! target that may receive traffic anyway.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderValue, COOKIE};
use weir_balance::TargetKey;

/// Duration-based stickiness cookie.
pub const LB_COOKIE: &str = "AWSALB";
/// Its CORS twin (`SameSite=None; Secure`).
pub const LB_COOKIE_CORS: &str = "AWSALBCORS";
/// Application-based stickiness cookie.
pub const APP_COOKIE: &str = "AWSALBAPP-0";
/// Target-group stickiness cookie.
pub const TG_COOKIE: &str = "AWSALBTG";
/// Its CORS twin.
pub const TG_COOKIE_CORS: &str = "AWSALBTGCORS";

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn hex(s: &str) -> String {
    s.bytes().fold(String::with_capacity(s.len() * 2), |mut o, b| {
        let _ = write!(o, "{b:02x}");
        o
    })
}

fn unhex(s: &str) -> Option<String> {
    if s.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

/// The cookie value that sends a client to `key` in the group `tg_arn`.
pub fn target_token(tg_arn: &str, key: &TargetKey) -> String {
    format!("{:016x}{}", fnv(tg_arn), hex(&format!("{}:{}", key.id, key.port)))
}

/// The target a cookie value names, if it was issued for `tg_arn`.
pub fn parse_target_token(token: &str, tg_arn: &str) -> Option<TargetKey> {
    let (h, rest) = (token.get(..16)?, token.get(16..)?);
    if u64::from_str_radix(h, 16).ok()? != fnv(tg_arn) {
        return None;
    }
    let s = unhex(rest)?;
    let (id, port) = s.rsplit_once(':')?;
    Some(TargetKey { id: id.to_string(), port: port.parse().ok()? })
}

/// The cookie value that sends a client to the target group `tg_arn`.
pub fn group_token(tg_arn: &str) -> String {
    format!("{:016x}", fnv(tg_arn))
}

/// Whether a target-group cookie value names `tg_arn`.
pub fn group_matches(token: &str, tg_arn: &str) -> bool {
    token == group_token(tg_arn)
}

/// The value of cookie `name` in the request's Cookie headers.
pub fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// Whether a response's Set-Cookie headers set cookie `name`.
pub fn sets_cookie(h: &HeaderMap, name: &str) -> bool {
    h.get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split_once('=').is_some_and(|(k, _)| k.trim() == name))
}

/// A Set-Cookie value as ALB writes it: `NAME=VALUE; Expires=...; Path=/`, plus
/// `; SameSite=None; Secure` for the CORS cookies.
pub fn set_cookie(name: &str, value: &str, lifetime: Duration, cors: bool) -> Option<HeaderValue> {
    let expires = http_date(SystemTime::now() + lifetime);
    let extra = if cors { "; SameSite=None; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Expires={expires}; Path=/{extra}")).ok()
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_group() {
        let key = TargetKey { id: "10.0.0.1".into(), port: 8080 };
        let t = target_token("arn:tg/a", &key);
        assert_eq!(parse_target_token(&t, "arn:tg/a"), Some(key));
        assert_eq!(parse_target_token(&t, "arn:tg/b"), None);
        assert_eq!(parse_target_token("zz", "arn:tg/a"), None);
        assert_eq!(parse_target_token(&format!("{}zz", &t[..16]), "arn:tg/a"), None);
        assert!(group_matches(&group_token("x"), "x"));
        assert!(!group_matches(&group_token("x"), "y"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1; AWSALB=abc".parse().unwrap());
        h.append(COOKIE, "AWSALBTG=\"q\"".parse().unwrap());
        assert_eq!(cookie(&h, "AWSALB"), Some("abc"));
        assert_eq!(cookie(&h, "AWSALBTG"), Some("q"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn dates_are_imf_fixdate() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56
        assert_eq!(http_date(t), "Thu, 29 Feb 2024 12:34:56 GMT");
        let v = set_cookie("AWSALBCORS", "x", Duration::from_secs(60), true).unwrap();
        assert!(v.to_str().unwrap().ends_with("; Path=/; SameSite=None; Secure"));
    }
}
