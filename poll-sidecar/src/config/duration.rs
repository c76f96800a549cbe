//! Go-style durations (`5s`, `1m30s`, `250ms`, `1.5h`), the format of the
//! upstream `KIPPER_POLL_INTERVAL`, used for every duration setting.

use std::time::Duration;

/// Parses a Go `time.ParseDuration` string; a bare `0` is zero. Negative
/// durations are refused: every duration here is a wait or a timeout.
pub fn parse(text: &str) -> Result<Duration, String> {
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
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_end];
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration; write e.g. 5s, 500ms or 1m30s"))?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("100us"), Ok(Duration::from_micros(100)));
    }

    #[test]
    fn bad_durations_say_how_to_write_one() {
        assert!(parse("5").unwrap_err().contains("lacks a unit"));
        assert!(parse("5 seconds").is_err());
        assert!(parse("five").unwrap_err().contains("not a duration"));
        assert!(parse("5d").unwrap_err().contains("unknown unit"));
        assert!(parse("").is_err());
        assert!(parse("-5s").is_err());
    }
}
