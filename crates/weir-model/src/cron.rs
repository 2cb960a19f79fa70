//! Unix cron expressions as Auto Scaling's `Recurrence` takes them: five fields — minute, hour,
//! day of month, month, day of week — each `*`, a number, a name (`JAN`, `MON`), a range `a-b`,
//! a step `*/n` or `a-b/n`, or a list of those. When both day fields are restricted, a day
//! matching either runs (as cron does). `matches` reads calendar fields of the seconds it is given: UTC, or wall-clock
//! time in a zone after `time::local_secs`.

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_any: bool,
    weekdays_any: bool,
}

const MONTHS: &[&str] =
    &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn value(s: &str, names: &[&str], base: u32) -> Option<u32> {
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    let upper = s.to_ascii_uppercase();
    names.iter().position(|n| *n == upper).map(|i| i as u32 + base)
}

/// The set of values `field` allows within `lo..=hi`, as a bit mask.
fn field(f: &str, lo: u32, hi: u32, names: &[&str], base: u32) -> Result<(u64, bool), String> {
    let mut mask = 0u64;
    let any = f == "*" || f == "?";
    for part in f.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let s: u32 = s.parse().map_err(|_| format!("bad step in '{part}'"))?;
                if s == 0 {
                    return Err(format!("zero step in '{part}'"));
                }
                (r, s)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" || range == "?" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, names, base).ok_or_else(|| format!("bad value '{a}'"))?,
                value(b, names, base).ok_or_else(|| format!("bad value '{b}'"))?,
            )
        } else {
            let v = value(range, names, base).ok_or_else(|| format!("bad value '{range}'"))?;
            (v, if part.contains('/') { hi } else { v })
        };
        if a < lo || b > hi || a > b {
            return Err(format!("'{part}' is outside {lo}-{hi}"));
        }
        let mut v = a;
        while v <= b {
            mask |= 1 << v;
            v += step;
        }
    }
    Ok((mask, any))
}

impl Cron {
    /// Parses five fields.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let f: Vec<&str> = expr.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!(
                "expected 5 fields (minute hour day month weekday), got {}",
                f.len()
            ));
        }
        let (minutes, _) = field(f[0], 0, 59, &[], 0)?;
        let (hours, _) = field(f[1], 0, 23, &[], 0)?;
        let (days, days_any) = field(f[2], 1, 31, &[], 0)?;
        let (months, _) = field(f[3], 1, 12, MONTHS, 1)?;
        // Day of week 7 is Sunday too.
        let (weekdays, weekdays_any) = field(f[4], 0, 7, DAYS, 0)?;
        let weekdays = (weekdays & 0x7f) | (weekdays >> 7);
        Ok(Self { minutes, hours, days, months, weekdays, days_any, weekdays_any })
    }

    /// Whether the minute holding `secs` (since the epoch, UTC) matches.
    pub fn matches(&self, secs: u64) -> bool {
        let (_, m, d, h, mi, _) = crate::time::parts(secs);
        let weekday = (secs / 86_400 + 4) % 7; // 1970-01-01 was a Thursday
        let bit = |mask: u64, v: u64| mask & (1 << v) != 0;
        let day_ok = match (self.days_any, self.weekdays_any) {
            (true, true) => true,
            (false, true) => bit(self.days, u64::from(d)),
            (true, false) => bit(self.weekdays, weekday),
            (false, false) => bit(self.days, u64::from(d)) || bit(self.weekdays, weekday),
        };
        bit(self.minutes, mi) && bit(self.hours, h) && bit(self.months, u64::from(m)) && day_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-23 (a Monday) 09:30:00 UTC.
    const MON_0930: u64 = 1_795_426_200;

    #[test]
    fn fields_match_their_minute() {
        assert!(Cron::parse("30 9 * * *").unwrap().matches(MON_0930));
        assert!(Cron::parse("30 9 * * *").unwrap().matches(MON_0930 + 59));
        assert!(!Cron::parse("30 9 * * *").unwrap().matches(MON_0930 + 60));
        assert!(Cron::parse("*/15 * * * MON-FRI").unwrap().matches(MON_0930));
        assert!(!Cron::parse("*/15 * * * SAT,SUN").unwrap().matches(MON_0930));
        assert!(Cron::parse("0-59/10 9 23 NOV *").unwrap().matches(MON_0930));
        assert!(Cron::parse("30 9 1 * 1").unwrap().matches(MON_0930), "day OR weekday");
        assert!(!Cron::parse("30 9 1 * 0").unwrap().matches(MON_0930));
        assert!(Cron::parse("30 9 * * 7").unwrap().matches(MON_0930 - 86_400), "7 is Sunday");
    }

    #[test]
    fn bad_expressions_are_refused() {
        for bad in [
            "",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "*/0 * * * *",
            "a * * * *",
            "5-1 * * * *",
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad}");
        }
    }
}
