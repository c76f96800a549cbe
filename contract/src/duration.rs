//! The one format of duration settings in the three binaries: Go's `time.ParseDuration`
//! (`5s`, `1m30s`, `250ms`, `1.5h`), the format of the upstream `KIPPER_POLL_INTERVAL`.
//!
//! Two entry points of one parser, both usable as clap value parsers
//! (`#[arg(value_parser = parse_duration)]`):
//! - [`parse_duration`] wants a unit, as the upstream kipper-poll settings always did;
//! - [`parse_duration_or_seconds`] also takes a bare number as seconds (`30`, `0.5`), for the
//!   settings that were numbers of seconds before they were durations (kipper-shim's timeouts,
//!   `KIPPER_SHUTDOWN_GRACE` of kipper-shim and kipper-controller), so old values keep working.
//!
//! Negative durations are refused: every duration here is a wait or a timeout.

use std::time::Duration;

/// Parses a Go-style duration; a bare `0` is zero, any other number needs a unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("empty duration; write e.g. 5s, 500ms or 1m30s".into());
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !is_number_char(c))
            .unwrap_or(rest.len());
        let number = &rest[..number_end];
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration; write e.g. 5s, 500ms or 1m30s"))?;
        rest = &rest[number_end..];
        let unit_end = rest.find(is_number_char).unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "{text:?} lacks a unit; write e.g. {number}s or {number}ms"
                ));
            }
            unit => {
                return Err(format!(
                    "{text:?} has unknown unit {unit:?}; use ns, us, ms, s, m or h"
                ));
            }
        };
        rest = &rest[unit_end..];
        total += value * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).map_err(|_| format!("{text:?} is out of range"))
}

/// Parses a Go-style duration, or a bare number (`30`, `0.5`) as seconds.
pub fn parse_duration_or_seconds(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let bare = !trimmed.is_empty() && trimmed.chars().all(is_number_char);
    if !bare {
        return parse_duration(text);
    }
    trimmed
        .parse::<f64>()
        .ok()
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| {
            format!("{trimmed:?} is not a duration; write e.g. 30 (seconds), 500ms or 1m30s")
        })
}

fn is_number_char(c: char) -> bool {
    c.is_ascii_digit() || c == '.'
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration(" 20s "), Ok(Duration::from_secs(20)));
    }

    #[test]
    fn bad_durations_say_how_to_write_one() {
        assert!(parse_duration("5").unwrap_err().contains("lacks a unit"));
        assert!(parse_duration("5 seconds").is_err());
        assert!(
            parse_duration("five")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn a_bare_number_is_seconds_where_numbers_were_accepted() {
        assert_eq!(parse_duration_or_seconds("25"), Ok(Duration::from_secs(25)));
        assert_eq!(
            parse_duration_or_seconds("0.5"),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(parse_duration_or_seconds("0"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration_or_seconds("1m30s"),
            Ok(Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration_or_seconds("500ms"),
            Ok(Duration::from_millis(500))
        );
    }

    #[test]
    fn bad_bare_numbers_say_how_to_write_one() {
        for bad in ["1.2.3", ".", "-5", "five", "", "5d", "1e3"] {
            assert!(parse_duration_or_seconds(bad).is_err(), "{bad:?}");
        }
        assert!(
            parse_duration_or_seconds("1.2.3")
                .unwrap_err()
                .contains("30 (seconds)")
        );
    }
}
