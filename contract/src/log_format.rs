//! `KIPPER_LOG_FORMAT`: how the three binaries write their logs to stderr.
//!
//! JSON is the default everywhere: the binaries run in pods whose logs are collected (Loki,
//! per the Functions page), where a line that is one object keeps its key/value fields
//! (`request_id`, `error`, ...) searchable. `text` is for reading by hand (tests, benches, a
//! terminal).

use std::fmt;
use std::str::FromStr;

/// The format of the log lines on stderr. Parses from `json` or `text`, so it is its own clap
/// value parser (`#[arg(env = "KIPPER_LOG_FORMAT", default_value_t)]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line (the default).
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

impl LogFormat {
    /// The format of the older boolean settings (`KIPPER_LOG_JSON` of kipper-controller):
    /// `true` is JSON, `false` text.
    pub fn from_json_flag(json: bool) -> Self {
        if json { Self::Json } else { Self::Text }
    }

    /// Whether lines are JSON objects.
    pub fn is_json(self) -> bool {
        self == Self::Json
    }

    /// The setting's value: `json` or `text`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
        }
    }
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            other => Err(format!("{other:?} is not json or text")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_and_text_parse_and_print_back() {
        for format in [LogFormat::Json, LogFormat::Text] {
            assert_eq!(format.to_string().parse::<LogFormat>(), Ok(format));
        }
        assert_eq!(LogFormat::default(), LogFormat::Json);
        assert!(LogFormat::from_json_flag(true).is_json());
        assert_eq!(LogFormat::from_json_flag(false), LogFormat::Text);
    }

    #[test]
    fn anything_else_is_refused_with_the_choices() {
        let error = "xml".parse::<LogFormat>().unwrap_err();
        assert_eq!(error, "\"xml\" is not json or text");
        assert!(
            "JSON".parse::<LogFormat>().is_err(),
            "values are lower case"
        );
    }
}
