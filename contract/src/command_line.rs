//! A bad command line or environment as one line, the rule of the three binaries: exit code 2
//! and exactly one line on stderr naming the setting and the fix (clap's own report names only
//! the flag and adds usage lines).

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Command, Parser};

/// Parses `P` from the command line and environment. `--help` and `--version` print and exit 0;
/// anything else wrong comes back as the line of [`one_line`], for `main` to print with exit
/// code 2.
pub fn parse_or_one_line<P: Parser>() -> Result<P, String> {
    P::try_parse().map_err(|error| {
        if matches!(
            error.kind(),
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
        ) {
            error.exit()
        }
        one_line(&error, &P::command())
    })
}

/// One line for a clap error of `command`: `<VARIABLE>: <what is wrong>` when the error is
/// about one setting (its environment variable, the name users set in a pod), else clap's
/// first line and where to look (`see <binary> --help`).
///
/// When the value parser's own message already quotes the value (the duration and log format
/// parsers do), it is the whole explanation: `KIPPER_POLL_INTERVAL: "5" lacks a unit; write e.g.
/// 5s or 5ms`. Otherwise clap's line says which value and flag (`PORT: invalid value 'eighty'
/// for '--port <PORT>': invalid digit found in string`).
pub fn one_line(error: &clap::Error, command: &Command) -> String {
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let first = first.trim_start_matches("error: ");
    let Some(variable) = variable_at_fault(error, command) else {
        return format!("{first}; see {} --help", command.get_name());
    };
    let value = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => Some(value.as_str()),
        _ => None,
    };
    let own_message = std::error::Error::source(error).map(ToString::to_string);
    match (value, own_message) {
        (Some(value), Some(message)) if message.contains(&format!("{value:?}")) => {
            format!("{variable}: {message}")
        }
        // clap lists the values it knows on a line of their own (`[possible values: ...]`).
        _ => match error.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(valid)) => {
                format!("{variable}: {first}; use {}", valid.join(" or "))
            }
            _ => format!("{variable}: {first}"),
        },
    }
}

/// The environment variable of the argument an error is about, e.g. `KIPPER_ADMIN_PORT` for
/// `--admin-port <ADMIN_PORT>`.
fn variable_at_fault(error: &clap::Error, command: &Command) -> Option<String> {
    let Some(ContextValue::String(flag)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = flag.split_whitespace().next()?.strip_prefix("--")?;
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .and_then(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{LogFormat, parse_duration};
    use clap::CommandFactory as _;
    use std::time::Duration;

    #[derive(Debug, Parser)]
    #[command(name = "kipper-test")]
    struct Args {
        #[arg(long, env = "KIPPER_TEST_PORT", default_value_t = 8080)]
        port: u16,
        #[arg(long, env = "KIPPER_TEST_INTERVAL", value_parser = parse_duration, default_value = "5s")]
        interval: Duration,
        #[arg(long, env = "KIPPER_TEST_LOG_FORMAT", default_value_t)]
        log_format: LogFormat,
        #[arg(long, env = "KIPPER_TEST_JSON", num_args = 0..=1, default_missing_value = "true")]
        json: Option<bool>,
    }

    fn line(args: &[&str]) -> String {
        let error = Args::try_parse_from(args).unwrap_err();
        one_line(&error, &Args::command())
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        assert_eq!(
            line(&["kt", "--port", "eighty"]),
            "KIPPER_TEST_PORT: invalid value 'eighty' for '--port <PORT>': invalid digit found in string"
        );
        assert_eq!(
            line(&["kt", "--interval", "5"]),
            "KIPPER_TEST_INTERVAL: \"5\" lacks a unit; write e.g. 5s or 5ms"
        );
        assert_eq!(
            line(&["kt", "--json=maybe"]),
            "KIPPER_TEST_JSON: invalid value 'maybe' for '--json [<JSON>]'; use true or false"
        );
        assert_eq!(
            line(&["kt", "--log-format=xml"]),
            "KIPPER_TEST_LOG_FORMAT: \"xml\" is not json or text"
        );
    }

    #[test]
    fn anything_else_points_at_help() {
        assert_eq!(
            line(&["kt", "--no-such-flag"]),
            "unexpected argument '--no-such-flag' found; see kipper-test --help"
        );
    }

    #[test]
    fn typed_values_and_defaults() {
        let args = Args::try_parse_from(["kt", "--interval=250ms", "--log-format=text"]).unwrap();
        assert_eq!(
            (args.port, args.interval, args.log_format),
            (8080, Duration::from_millis(250), LogFormat::Text)
        );
        let args = Args::try_parse_from(["kt"]).unwrap();
        assert_eq!(
            (args.interval, args.log_format),
            (Duration::from_secs(5), LogFormat::Json)
        );
    }
}
