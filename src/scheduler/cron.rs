//! Cron expressions and time zones for schedules.
//!
//! The `cron` crate wants a seconds field and counts weekdays 1–7 from Sunday. We take
//! the common 5-field Unix form (weekday 0–7, Sunday 0 or 7), prefix `0 ` for the
//! seconds and translate the weekday field; 6- and 7-field input is passed as is.
//! Every numeric field is checked here first, so an error names the operator's own
//! expression and the field's real range, never the translated form.
//!
//! Daylight saving follows cronie: the schedule runs over local wall-clock time; a
//! local time that happens twice (clocks go back) fires once, at its first occurrence,
//! and a local time that never happens (clocks go forward) fires at the first valid
//! instant after the gap. Expressions with `*` in the minute or hour field run every
//! time their wall-clock time comes round instead (both passes of a repeated hour,
//! none inside a gap), as cronie's "wildcard" jobs do.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};

/// A schedule's time zone: an IANA name (`Europe/Paris`, daylight saving included) or a
/// fixed offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Named(chrono_tz::Tz),
    Fixed(FixedOffset),
}

/// A checked cron expression with its time zone.
#[derive(Debug, Clone)]
pub struct CronExpr {
    schedule: cron::Schedule,
    tz: Zone,
    /// `*` in the minute or hour field (cronie's wildcard jobs, see the module doc).
    wild: bool,
}

/// The largest daylight-saving shift we look around for (real zones shift 30 min–2 h).
const MAX_SHIFT: TimeDelta = TimeDelta::hours(3);

impl CronExpr {
    /// Parse `expr` in `timezone` (`UTC`, `Z`, `+05:30`, `-0800`, `UTC+2`...). The error
    /// names what is wrong.
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<CronExpr, String> {
        let tz = parse_timezone(timezone.unwrap_or("UTC"))?;
        let translated = to_crate_syntax(expr)?;
        let schedule = cron::Schedule::from_str(&translated).map_err(|_| {
            format!(
                "cron {expr:?}: not a valid expression (5 fields: minute 0-59, hour 0-23, \
                 day 1-31, month 1-12 or JAN-DEC, weekday 0-7 or SUN-SAT; or 6 with \
                 seconds first)"
            )
        })?;
        if schedule.upcoming(Utc).next().is_none() {
            return Err(format!("cron {expr:?}: never fires"));
        }
        let fields: Vec<&str> = translated.split_whitespace().collect();
        let wild = match fields.as_slice() {
            [one] => one.eq_ignore_ascii_case("@hourly"),
            [_, min, hour, ..] => min.starts_with('*') || hour.starts_with('*'),
            _ => false,
        };
        Ok(CronExpr { schedule, tz, wild })
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.upcoming(t, 1).into_iter().next()
    }

    /// The next `n` fire times strictly after `t`, in order, each instant once.
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        match self.tz {
            Zone::Named(tz) => self.upcoming_in(&tz, t, n),
            Zone::Fixed(tz) => self.upcoming_in(&tz, t, n),
        }
    }

    /// Walk the schedule over local wall-clock times (as if they were UTC) and map each
    /// onto real instants (see the module doc).
    fn upcoming_in<Z: TimeZone>(&self, tz: &Z, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        if n == 0 {
            return Vec::new();
        }
        let offset = |at: DateTime<Utc>| {
            TimeDelta::seconds(
                tz.offset_from_utc_datetime(&at.naive_utc())
                    .fix()
                    .local_minus_utc()
                    .into(),
            )
        };
        // Near clocks going back, wall-clock times just before local(t) still have a
        // second occurrence after t: start the walk that much earlier.
        let now = offset(t);
        let back = [now - offset(t + MAX_SHIFT), offset(t - MAX_SHIFT) - now]
            .into_iter()
            .max()
            .unwrap_or_default()
            .max(TimeDelta::zero());
        let start = Utc.from_utc_datetime(&(t.naive_utc() + now - back));
        let mut out = BTreeSet::new();
        for wall in self.schedule.after(&start) {
            let wall = wall.naive_utc();
            // `first` never decreases along the walk; a second occurrence is later still.
            let (first, second) = match tz.from_local_datetime(&wall) {
                LocalResult::Single(d) => (Some(d.to_utc()), None),
                LocalResult::Ambiguous(a, b) => (Some(a.to_utc()), self.wild.then(|| b.to_utc())),
                LocalResult::None => match first_valid_after(tz, wall) {
                    Some(d) if !self.wild => (Some(d), None),
                    Some(d) => {
                        if out.len() >= n && out.iter().nth(n - 1).is_some_and(|last| d > *last) {
                            break;
                        }
                        continue;
                    }
                    None => continue,
                },
            };
            let Some(first) = first else { continue };
            if out.len() >= n && out.iter().nth(n - 1).is_some_and(|last| first > *last) {
                break;
            }
            out.extend(
                [Some(first), second]
                    .into_iter()
                    .flatten()
                    .filter(|d| *d > t),
            );
        }
        out.into_iter().take(n).collect()
    }
}

/// The first instant after a wall-clock time that falls in a gap (clocks went forward).
fn first_valid_after<Z: TimeZone>(tz: &Z, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    // Gaps end on a whole minute and last at most a day (Samoa, 2011).
    let mut m = wall.and_utc().timestamp().div_euclid(60) * 60;
    for _ in 0..=24 * 60 {
        m += 60;
        let candidate = DateTime::from_timestamp(m, 0)?.naive_utc();
        if let Some(d) = tz.from_local_datetime(&candidate).earliest() {
            return Some(d.to_utc());
        }
    }
    None
}

/// An IANA zone name (`Europe/Paris`), or `UTC`/`Z`/`GMT`, or a fixed offset `±HH`,
/// `±HHMM`, `±HH:MM`, optionally after `UTC`.
pub fn parse_timezone(tz: &str) -> Result<Zone, String> {
    // Stored as given, so a name with stray spaces would be kept and shown: refuse it.
    if tz.trim() != tz || tz.is_empty() {
        return Err(format!(
            "timezone {tz:?}: remove the surrounding whitespace (expected an IANA zone such \
             as Europe/Paris, UTC, or a fixed offset such as +02:00)"
        ));
    }
    let s = tz;
    if let Ok(named) = s.parse::<chrono_tz::Tz>() {
        return Ok(Zone::Named(named));
    }
    parse_offset(s).map(Zone::Fixed).ok_or_else(|| {
        format!(
            "timezone {tz:?}: expected an IANA zone such as Europe/Paris, UTC, or a fixed \
                 offset such as +02:00 or -0530"
        )
    })
}

fn parse_offset(s: &str) -> Option<FixedOffset> {
    let upper = s.to_ascii_uppercase();
    if matches!(upper.as_str(), "UTC" | "Z" | "GMT" | "ETC/UTC") {
        return FixedOffset::east_opt(0);
    }
    let rest = upper
        .strip_prefix("UTC")
        .or_else(|| upper.strip_prefix("GMT"))
        .unwrap_or(&upper);
    let (sign, digits) = match rest.as_bytes().first() {
        Some(b'+') => (1, &rest[1..]),
        Some(b'-') => (-1, &rest[1..]),
        _ => return None,
    };
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (h, m) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    if h > 14 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// Unix cron (5 fields) to the crate's syntax (6 fields, weekdays 1–7 from Sunday).
pub fn to_crate_syntax(expr: &str) -> Result<String, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    match fields.len() {
        1 if fields[0].starts_with('@') => Ok(fields[0].to_string()),
        5 => {
            check_fields(expr, &fields, &UNIX_FIELDS)?;
            let dow = translate_dow(fields[4]).map_err(|e| format!("cron {expr:?}: {e}"))?;
            Ok(format!(
                "0 {} {} {} {} {}",
                fields[0], fields[1], fields[2], fields[3], dow
            ))
        }
        6 | 7 => {
            check_fields(expr, &fields, &SECONDS_FIELDS)?;
            Ok(fields.join(" "))
        }
        n => Err(format!(
            "cron {expr:?}: expected 5 fields (min hour day month weekday) or 6 with \
             seconds first, got {n}"
        )),
    }
}

/// Each field's name and range as the operator writes it.
const UNIX_FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("weekday", 0, 7),
];
/// The 6- and 7-field form goes to the crate as is: its weekdays are 1–7 from Sunday.
const SECONDS_FIELDS: [(&str, u32, u32); 7] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("weekday", 1, 7),
    ("year", 1970, 2099),
];

/// Check every number of every field against its range (names such as `MON` or `JAN`
/// are left to the crate).
fn check_fields(expr: &str, fields: &[&str], spec: &[(&str, u32, u32)]) -> Result<(), String> {
    for (field, (name, lo, hi)) in fields.iter().zip(spec) {
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            if let Some(step) = step
                && !step.parse::<u32>().is_ok_and(|n| n > 0)
            {
                return Err(format!(
                    "cron {expr:?}: {name} step {step:?} must be a whole number above 0"
                ));
            }
            if range.is_empty() {
                return Err(format!(
                    "cron {expr:?}: empty {name} field item in {field:?}"
                ));
            }
            let ends = match range.split_once('-') {
                Some((a, b)) => vec![a, b],
                None => vec![range],
            };
            for end in ends {
                if end.is_empty() || !end.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                match end.parse::<u32>() {
                    Ok(n) if (*lo..=*hi).contains(&n) => {}
                    _ => {
                        return Err(format!(
                            "cron {expr:?}: {name} {end} is out of range {lo}-{hi}"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

fn unix_day(s: &str) -> Result<Option<u32>, String> {
    if s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty() {
        let n: u32 = s.parse().map_err(|_| format!("bad weekday {s:?}"))?;
        if n > 7 {
            return Err(format!("weekday {n} is out of range 0-7"));
        }
        Ok(Some(n))
    } else {
        Ok(None)
    }
}

/// Unix 0–7 (0 and 7 Sunday) to 1–7 (1 Sunday).
fn crate_day(n: u32) -> u32 {
    n % 7 + 1
}

fn translate_dow(field: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let step_sfx = step.map(|s| format!("/{s}")).unwrap_or_default();
        if range == "*" || range == "?" {
            out.push(format!("{range}{step_sfx}"));
            continue;
        }
        match range.split_once('-') {
            Some((a, b)) => match (unix_day(a)?, unix_day(b)?) {
                (Some(a), Some(b)) => {
                    if a > b {
                        return Err(format!("weekday range {range:?} runs backwards"));
                    }
                    if b == 7 && a > 0 {
                        // Ends on Sunday: the crate's Sunday is 1, at the other end.
                        if step.is_some() {
                            return Err(format!(
                                "weekday range {range:?} with a step: write it with 0 for Sunday"
                            ));
                        }
                        if a < 7 {
                            out.push(format!("{}-7", crate_day(a)));
                        }
                        out.push("1".into());
                    } else {
                        let hi = if b == 7 { 7 } else { crate_day(b) };
                        out.push(format!("{}-{}{step_sfx}", crate_day(a), hi));
                    }
                }
                (None, None) => out.push(item.to_string()),
                _ => return Err(format!("weekday range {range:?} mixes names and numbers")),
            },
            None => match unix_day(range)? {
                Some(n) => out.push(format!("{}{step_sfx}", crate_day(n))),
                None => out.push(item.to_string()),
            },
        }
    }
    Ok(out.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Weekday};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn five_fields_get_seconds_and_weekdays_translated() {
        assert_eq!(to_crate_syntax("*/5 * * * *").unwrap(), "0 */5 * * * *");
        assert_eq!(to_crate_syntax("0 3 * * 0").unwrap(), "0 0 3 * * 1");
        assert_eq!(to_crate_syntax("0 3 * * 7").unwrap(), "0 0 3 * * 1");
        assert_eq!(to_crate_syntax("0 3 * * 1-5").unwrap(), "0 0 3 * * 2-6");
        assert_eq!(to_crate_syntax("0 3 * * 0-6").unwrap(), "0 0 3 * * 1-7");
        assert_eq!(to_crate_syntax("0 3 * * 5-7").unwrap(), "0 0 3 * * 6-7,1");
        assert_eq!(to_crate_syntax("0 3 * * 1,3").unwrap(), "0 0 3 * * 2,4");
        assert_eq!(
            to_crate_syntax("0 3 * * MON-FRI").unwrap(),
            "0 0 3 * * MON-FRI"
        );
        assert_eq!(to_crate_syntax("0 3 * * */2").unwrap(), "0 0 3 * * */2");
        assert_eq!(to_crate_syntax("0 0 3 * * 1").unwrap(), "0 0 3 * * 1");
        assert!(to_crate_syntax("* * *").is_err());
        assert!(to_crate_syntax("0 3 * * 8").is_err());
    }

    #[test]
    fn weekday_semantics_match_unix() {
        // 2026-01-05 is a Monday.
        let start = t("2026-01-04T12:00:00Z");
        let mon = CronExpr::parse("0 3 * * 1", None).unwrap();
        assert_eq!(mon.next_after(start).unwrap().weekday(), Weekday::Mon);
        let sun = CronExpr::parse("0 3 * * 0", None).unwrap();
        assert_eq!(sun.next_after(start).unwrap().weekday(), Weekday::Sun);
        let sun7 = CronExpr::parse("0 3 * * 7", None).unwrap();
        assert_eq!(sun7.next_after(start).unwrap().weekday(), Weekday::Sun);
        let weekend = CronExpr::parse("0 3 * * 6-7", None).unwrap();
        let days: Vec<Weekday> = weekend
            .upcoming(start, 4)
            .iter()
            .map(|d| d.weekday())
            .collect();
        assert_eq!(
            days,
            [Weekday::Sat, Weekday::Sun, Weekday::Sat, Weekday::Sun]
        );
    }

    #[test]
    fn six_fields_with_seconds_and_offsets() {
        let e = CronExpr::parse("*/10 * * * * *", None).unwrap();
        assert_eq!(
            e.next_after(t("2026-01-01T00:00:01Z")).unwrap(),
            t("2026-01-01T00:00:10Z")
        );
        let e = CronExpr::parse("0 9 * * *", Some("+02:00")).unwrap();
        assert_eq!(
            e.next_after(t("2026-01-01T00:00:00Z")).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 1, 7, 0, 0).unwrap()
        );
        assert!(parse_timezone("UTC-05:30").is_ok());
        // A named zone follows daylight saving: 09:00 in Paris is 08:00 UTC in winter
        // and 07:00 UTC in summer.
        let e = CronExpr::parse("0 9 * * *", Some("Europe/Paris")).unwrap();
        assert_eq!(
            e.next_after(t("2026-01-10T00:00:00Z")).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 10, 8, 0, 0).unwrap()
        );
        assert_eq!(
            e.next_after(t("2026-07-10T00:00:00Z")).unwrap(),
            Utc.with_ymd_and_hms(2026, 7, 10, 7, 0, 0).unwrap()
        );
        assert!(parse_timezone("+25").is_err());
    }

    #[test]
    fn bad_expressions_are_named() {
        let e = CronExpr::parse("61 * * * *", None).unwrap_err();
        assert!(e.contains("61 * * * *"), "{e}");
        let e = CronExpr::parse("* * * * *", Some("Mars/Base")).unwrap_err();
        assert!(e.contains("Mars/Base"), "{e}");
    }

    fn paris(expr: &str) -> CronExpr {
        CronExpr::parse(expr, Some("Europe/Paris")).unwrap()
    }

    #[test]
    fn ambiguous_local_time_fires_once() {
        // 2027-10-31: Paris goes from +02:00 back to +01:00 at 03:00 local; 02:30 happens
        // twice. It fires at the first occurrence only, then next year.
        let e = paris("30 2 31 10 *");
        let from = t("2027-10-30T12:00:00Z");
        assert_eq!(
            e.upcoming(from, 2),
            [t("2027-10-31T00:30:00Z"), t("2028-10-31T01:30:00Z")]
        );
        // Asked from inside the repeated hour (after the first pass), it does not fire
        // again that day.
        assert_eq!(
            e.next_after(t("2027-10-31T01:10:00Z")).unwrap(),
            t("2028-10-31T01:30:00Z")
        );
    }

    #[test]
    fn skipped_local_time_fires_at_the_first_valid_instant() {
        // 2027-03-28: Paris jumps from 02:00 to 03:00 local; 02:30 never happens. It
        // fires when the gap ends (03:00 local = 01:00 UTC), not a year later.
        let e = paris("30 2 28 3 *");
        assert_eq!(
            e.upcoming(t("2027-03-27T12:00:00Z"), 2),
            [t("2027-03-28T01:00:00Z"), t("2028-03-28T00:30:00Z")]
        );
        // Two fire times inside one gap still fire once.
        let e = paris("0,30 2 28 3 *");
        assert_eq!(
            e.upcoming(t("2027-03-27T12:00:00Z"), 2),
            [t("2027-03-28T01:00:00Z"), t("2028-03-28T00:00:00Z")]
        );
    }

    #[test]
    fn wildcard_jobs_follow_real_time_across_both_changes() {
        // Every 30 minutes: both passes of the repeated hour, nothing inside the gap.
        let e = paris("*/30 * * * *");
        assert_eq!(
            e.upcoming(t("2027-10-30T23:50:00Z"), 6),
            [
                t("2027-10-31T00:00:00Z"),
                t("2027-10-31T00:30:00Z"),
                t("2027-10-31T01:00:00Z"),
                t("2027-10-31T01:30:00Z"),
                t("2027-10-31T02:00:00Z"),
                t("2027-10-31T02:30:00Z"),
            ]
        );
        assert_eq!(
            e.upcoming(t("2027-03-28T00:15:00Z"), 3),
            [
                t("2027-03-28T00:30:00Z"),
                t("2027-03-28T01:00:00Z"),
                t("2027-03-28T01:30:00Z"),
            ]
        );
    }

    #[test]
    fn timezone_with_whitespace_is_refused() {
        let e = CronExpr::parse("0 3 * * *", Some("Europe/Paris ")).unwrap_err();
        assert!(e.contains("whitespace"), "{e}");
        assert!(parse_timezone(" UTC").is_err());
        assert!(parse_timezone("").is_err());
        assert!(parse_timezone("Europe/Paris").is_ok());
    }

    #[test]
    fn errors_name_the_operators_expression_and_the_real_range() {
        let e = CronExpr::parse("0 24 * * *", None).unwrap_err();
        assert_eq!(e, r#"cron "0 24 * * *": hour 24 is out of range 0-23"#);
        let e = CronExpr::parse("60 1 * * *", None).unwrap_err();
        assert!(e.ends_with("minute 60 is out of range 0-59"), "{e}");
        let e = CronExpr::parse("0 1 0 * *", None).unwrap_err();
        assert!(e.ends_with("day of month 0 is out of range 1-31"), "{e}");
        let e = CronExpr::parse("0 1 * 1-13 *", None).unwrap_err();
        assert!(e.ends_with("month 13 is out of range 1-12"), "{e}");
        let e = CronExpr::parse("0 1 * * */0", None).unwrap_err();
        assert!(e.contains("step"), "{e}");
        // Whatever the crate refuses is reported without its translated 6-field form.
        let e = CronExpr::parse("0 1 * * FOO", None).unwrap_err();
        assert!(e.starts_with(r#"cron "0 1 * * FOO""#), "{e}");
        assert!(!e.contains("0 0 1"), "{e}");
    }
}
