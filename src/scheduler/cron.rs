//! Cron expressions and time zones for schedules.
//!
//! The `cron` crate wants a seconds field and counts weekdays 1–7 from Sunday. We take
//! the common 5-field Unix form (weekday 0–7, Sunday 0 or 7), prefix `0 ` for the
//! seconds and translate the weekday field; 6- and 7-field input is passed as is.

use std::str::FromStr;

use chrono::{DateTime, FixedOffset, Utc};

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
}

impl CronExpr {
    /// Parse `expr` in `timezone` (`UTC`, `Z`, `+05:30`, `-0800`, `UTC+2`...). The error
    /// names what is wrong.
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<CronExpr, String> {
        let tz = parse_timezone(timezone.unwrap_or("UTC"))?;
        let translated = to_crate_syntax(expr)?;
        let schedule =
            cron::Schedule::from_str(&translated).map_err(|e| format!("cron {expr:?}: {e}"))?;
        if schedule.upcoming(Utc).next().is_none() {
            return Err(format!("cron {expr:?}: never fires"));
        }
        Ok(CronExpr { schedule, tz })
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.upcoming(t, 1).into_iter().next()
    }

    /// The next `n` fire times after `t`.
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        match self.tz {
            Zone::Named(tz) => self
                .schedule
                .after(&t.with_timezone(&tz))
                .take(n)
                .map(|d| d.with_timezone(&Utc))
                .collect(),
            Zone::Fixed(tz) => self
                .schedule
                .after(&t.with_timezone(&tz))
                .take(n)
                .map(|d| d.with_timezone(&Utc))
                .collect(),
        }
    }
}

/// An IANA zone name (`Europe/Paris`), or `UTC`/`Z`/`GMT`, or a fixed offset `±HH`,
/// `±HHMM`, `±HH:MM`, optionally after `UTC`.
pub fn parse_timezone(tz: &str) -> Result<Zone, String> {
    let s = tz.trim();
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
            let dow = translate_dow(fields[4]).map_err(|e| format!("cron {expr:?}: {e}"))?;
            Ok(format!(
                "0 {} {} {} {} {}",
                fields[0], fields[1], fields[2], fields[3], dow
            ))
        }
        6 | 7 => Ok(fields.join(" ")),
        n => Err(format!(
            "cron {expr:?}: expected 5 fields (min hour day month weekday) or 6 with \
             seconds first, got {n}"
        )),
    }
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
}
