//! Cron schedules as Kubernetes reads them (5 fields, UTC, `@daily`-style macros), validated
//! with the `cron` crate and previewed as a human description plus upcoming firing times.
//!
//! The `cron` crate wants a seconds field and numbers Sunday as 1, while Kubernetes numbers it
//! 0 (or 7); the day-of-week field is therefore rewritten with day names before parsing.

use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::{Error, Result};

/// A validated 5-field cron schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The expression as the user wrote it (what goes into the CronJob).
    expression: String,
    /// minute, hour, day of month, month, day of week.
    fields: [String; 5],
    /// One schedule, or two when both day fields are restricted: standard cron fires when
    /// EITHER matches, the `cron` crate only when both do, so the union is computed.
    parsed: Vec<cron::Schedule>,
}

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const DAY_LONG: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

impl Schedule {
    /// Parses and validates; the error names `--schedule` and shows the expected shape.
    pub fn parse(expression: &str) -> Result<Self> {
        let trimmed = expression.trim();
        let expanded = match trimmed {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let bad = |why: String| {
            Error::Invalid(format!(
                "--schedule {trimmed:?} is not a valid cron expression ({why}): use 5 fields \"minute hour day-of-month month day-of-week\", e.g. \"0 2 * * *\""
            ))
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = parts.as_slice() else {
            return Err(bad(format!("{} fields", parts.len())));
        };
        // Ranges are checked here, in the user's terms: the `cron` crate's
        // messages are off by one ("Hours must be less than 23") and quote
        // the 6-field expression it is given, which the user never wrote.
        check_field("minute", minute, 0, 59).map_err(bad)?;
        check_field("hour", hour, 0, 23).map_err(bad)?;
        check_field("day-of-month", dom, 1, 31).map_err(bad)?;
        check_field("month", month, 1, 12).map_err(bad)?;
        let dow_named = name_days(dow).map_err(bad)?;
        let build = |dom: &str, dow: &str| {
            cron::Schedule::from_str(&format!("0 {minute} {hour} {dom} {month} {dow}"))
                .map_err(|_| bad("a field is not a number, name, range, list or step".into()))
        };
        let restricted = |f: &str| f != "*" && f != "?";
        let parsed = if restricted(dom) && restricted(dow) {
            vec![build(dom, "*")?, build("*", &dow_named)?]
        } else {
            vec![build(dom, &dow_named)?]
        };
        Ok(Self {
            expression: trimmed.to_owned(),
            fields: [minute, hour, dom, month, dow].map(|s| (*s).to_owned()),
            parsed,
        })
    }

    /// The expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The next `n` firing times strictly after `after`, in UTC.
    pub fn next_after(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut all: Vec<DateTime<Utc>> = self
            .parsed
            .iter()
            .flat_map(|s| s.after(&after).take(n).collect::<Vec<_>>())
            .collect();
        all.sort();
        all.dedup();
        all.truncate(n);
        all
    }

    /// A human description such as "Every day at 02:00 UTC".
    pub fn describe(&self) -> String {
        let [minute, hour, dom, month, dow] = &self.fields;
        let num = |s: &str| s.parse::<u32>().ok();
        let step = |s: &str| s.strip_prefix("*/").and_then(|n| n.parse::<u32>().ok());
        let all = |s: &str| s == "*" || s == "?";
        let days_any = all(dom) && all(month) && all(dow);
        match (num(minute), num(hour)) {
            _ if all(minute) && all(hour) && days_any => "Every minute".into(),
            _ if step(minute).is_some() && all(hour) && days_any => {
                format!("Every {} minutes", step(minute).unwrap_or(1))
            }
            (Some(0), None) if all(hour) && days_any => "Every hour, on the hour".into(),
            (Some(m), None) if all(hour) && days_any => format!("Every hour at minute {m}"),
            (Some(m), None) if step(hour).is_some() && days_any => {
                format!("Every {} hours at minute {m}", step(hour).unwrap_or(1))
            }
            (Some(m), Some(h)) if m < 60 && h < 24 => {
                let at = if (m, h) == (0, 0) {
                    "midnight UTC".to_owned()
                } else {
                    format!("{h:02}:{m:02} UTC")
                };
                match (all(dom), all(month), all(dow)) {
                    (true, true, true) => format!("Every day at {at}"),
                    (true, true, false) => format!("Every {} at {at}", describe_days(dow)),
                    (false, true, true) => format!("Every month on day {dom} at {at}"),
                    _ => format!(
                        "At {at}, day-of-month {dom}, month {month}, day-of-week {}",
                        describe_days(dow)
                    ),
                }
            }
            _ => format!(
                "At minute {minute}, hour {hour}, day-of-month {dom}, month {month}, day-of-week {dow} (UTC)"
            ),
        }
    }
}

/// Checks the numbers of one field (`*`, `n`, `a-b`, lists, `/step`) against
/// its range; names (`JAN`) are left to the `cron` crate.
fn check_field(name: &str, field: &str, min: u32, max: u32) -> Result<(), String> {
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step
            && !step.parse::<u32>().is_ok_and(|s| s > 0)
        {
            return Err(format!(
                "{name} step {step:?} is not a whole number above 0"
            ));
        }
        if base == "*" || base == "?" {
            continue;
        }
        let (low, high) = base.split_once('-').unwrap_or((base, base));
        for part in [low, high] {
            if part.bytes().all(|b| b.is_ascii_digit())
                && !part.is_empty()
                && !part.parse::<u32>().is_ok_and(|n| (min..=max).contains(&n))
            {
                return Err(format!("{name} {part} is out of range {min}-{max}"));
            }
        }
    }
    Ok(())
}

/// Rewrites numeric days (0-7, Sunday = 0 or 7) into names the `cron` crate reads the same way.
fn name_days(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok(field.to_owned());
    }
    let mut out = String::with_capacity(field.len() + 8);
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String, in_step: bool| -> Result<(), String> {
        if token.is_empty() {
            return Ok(());
        }
        if in_step || !token.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(token);
        } else {
            let n: usize = token.parse().map_err(|_| format!("day {token}"))?;
            let name = DAY_NAMES
                .get(n % 7)
                .filter(|_| n <= 7)
                .ok_or_else(|| format!("day-of-week {n} is out of range 0-7"))?;
            out.push_str(name);
        }
        token.clear();
        Ok(())
    };
    let mut in_step = false;
    for c in field.chars() {
        match c {
            ',' | '-' | '/' => {
                flush(&mut token, &mut out, in_step)?;
                in_step = c == '/';
                out.push(c);
            }
            _ => token.push(c),
        }
    }
    flush(&mut token, &mut out, in_step)?;
    Ok(out)
}

fn describe_days(dow: &str) -> String {
    let day = |s: &str| -> Option<&'static str> {
        let n = s.parse::<usize>().ok().filter(|n| *n <= 7).map(|n| n % 7);
        let n = n.or_else(|| DAY_NAMES.iter().position(|d| d.eq_ignore_ascii_case(s)))?;
        DAY_LONG.get(n).copied()
    };
    if let Some((a, b)) = dow.split_once('-')
        && let (Some(a), Some(b)) = (day(a), day(b))
    {
        return format!("{a} to {b}");
    }
    let names: Option<Vec<&str>> = dow.split(',').map(day).collect();
    match names {
        Some(names) => names.join(", "),
        None => format!("day-of-week {dow}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn presets_of_the_seed_are_described() {
        let cases = [
            ("* * * * *", "Every minute"),
            ("*/5 * * * *", "Every 5 minutes"),
            ("0 * * * *", "Every hour, on the hour"),
            ("0 0 * * *", "Every day at midnight UTC"),
            ("0 2 * * *", "Every day at 02:00 UTC"),
            ("0 9 * * 1", "Every Monday at 09:00 UTC"),
            ("30 8 * * 1-5", "Every Monday to Friday at 08:30 UTC"),
            ("0 3 1 * *", "Every month on day 1 at 03:00 UTC"),
        ];
        for (expr, want) in cases {
            assert_eq!(Schedule::parse(expr).unwrap().describe(), want, "{expr}");
        }
    }

    #[test]
    fn monday_is_one_as_in_kubernetes() {
        // 2026-11-24 is a Tuesday.
        let s = Schedule::parse("0 9 * * 1").unwrap();
        let next = s.next_after(at(2026, 11, 24, 10, 0), 2);
        assert_eq!(next, vec![at(2026, 11, 30, 9, 0), at(2026, 12, 7, 9, 0)]);
        let sunday = Schedule::parse("0 0 * * 7").unwrap();
        assert_eq!(
            sunday.next_after(at(2026, 11, 24, 0, 0), 1),
            vec![at(2026, 11, 29, 0, 0)]
        );
    }

    #[test]
    fn next_five_firings_are_in_order() {
        let s = Schedule::parse("0 2 * * *").unwrap();
        let next = s.next_after(at(2026, 11, 24, 3, 0), 5);
        assert_eq!(next.len(), 5);
        assert_eq!(next[0], at(2026, 11, 25, 2, 0));
        assert_eq!(next[4], at(2026, 11, 29, 2, 0));
    }

    #[test]
    fn both_day_fields_restricted_fire_on_either() {
        // 1st of the month OR any Friday; 2026-11-24 is a Tuesday.
        let s = Schedule::parse("0 0 1 * 5").unwrap();
        let next = s.next_after(at(2026, 11, 24, 0, 0), 3);
        assert_eq!(
            next,
            vec![
                at(2026, 11, 27, 0, 0),
                at(2026, 12, 1, 0, 0),
                at(2026, 12, 4, 0, 0)
            ]
        );
    }

    #[test]
    fn bad_expressions_name_the_flag() {
        for bad in [
            "",
            "0 2 * *",
            "0 0 2 * * *",
            "61 * * * *",
            "0 0 * * 8",
            "x y z w v",
        ] {
            let e = Schedule::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--schedule"), "{bad}: {e}");
        }
        assert!(Schedule::parse("@daily").is_ok());
    }

    #[test]
    fn out_of_range_says_the_range_in_the_users_terms() {
        let shape =
            "use 5 fields \"minute hour day-of-month month day-of-week\", e.g. \"0 2 * * *\"";
        for (bad, why) in [
            ("0 25 * * *", "hour 25 is out of range 0-23"),
            ("60 * * * *", "minute 60 is out of range 0-59"),
            ("0 0 0 * *", "day-of-month 0 is out of range 1-31"),
            ("0 0 1 13 *", "month 13 is out of range 1-12"),
            ("0 1-24 * * *", "hour 24 is out of range 0-23"),
            (
                "*/0 * * * *",
                "minute step \"0\" is not a whole number above 0",
            ),
            ("0 0 * * 8", "day-of-week 8 is out of range 0-7"),
        ] {
            assert_eq!(
                Schedule::parse(bad).unwrap_err().to_string(),
                format!("--schedule {bad:?} is not a valid cron expression ({why}): {shape}")
            );
        }
        // The edges are valid.
        for good in [
            "59 23 31 12 7",
            "0 0 1 1 0",
            "0 */23 * * *",
            "0 0 * JAN-DEC MON-FRI",
        ] {
            assert!(Schedule::parse(good).is_ok(), "{good}");
        }
        let other = Schedule::parse("x y z w v").unwrap_err().to_string();
        assert!(
            !other.contains("0 x y"),
            "no internal 6-field expression: {other}"
        );
    }
}
