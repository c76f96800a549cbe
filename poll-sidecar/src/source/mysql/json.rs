//! MySQL / MariaDB rows (binary protocol values) to JSON event bodies,
//! written straight into a byte buffer: DECIMAL keeps its exact digits, JSON
//! columns are embedded (MySQL's JSON type, and MariaDB's `json_valid`-checked
//! LONGTEXT when start-up found one), DATETIME/TIMESTAMP are RFC 3339 in UTC
//! (the session runs with `time_zone = '+00:00'`), binary strings and BLOBs
//! are base64, `TINYINT(1)` (BOOLEAN) is a boolean.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::{Column, Value};

use crate::source::sql::json::{write_base64, write_float, write_text};

/// How a column's values are written, decided once per statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Number,
    Bool,
    Decimal,
    Json,
    Text,
    Binary,
    Bits,
    Date,
    DateTime,
    Time,
}

/// The character set number of binary strings.
const BINARY_CHARSET: u16 = 63;

impl Shape {
    /// The shape of `column`; `json` when start-up found a JSON check on it.
    pub fn of(column: &Column, json: bool) -> Self {
        use ColumnType::*;
        let binary = column.character_set() == BINARY_CHARSET
            && column.flags().contains(ColumnFlags::BINARY_FLAG);
        match column.column_type() {
            MYSQL_TYPE_TINY if column.column_length() == 1 => Self::Bool,
            MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_INT24
            | MYSQL_TYPE_LONGLONG | MYSQL_TYPE_YEAR | MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => {
                Self::Number
            }
            MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => Self::Decimal,
            MYSQL_TYPE_JSON => Self::Json,
            MYSQL_TYPE_BIT => Self::Bits,
            MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Self::Date,
            MYSQL_TYPE_DATETIME
            | MYSQL_TYPE_DATETIME2
            | MYSQL_TYPE_TIMESTAMP
            | MYSQL_TYPE_TIMESTAMP2 => Self::DateTime,
            MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => Self::Time,
            _ if json => Self::Json,
            MYSQL_TYPE_GEOMETRY => Self::Binary,
            _ if binary => Self::Binary,
            _ => Self::Text,
        }
    }
}

/// Writes one value of a column of `shape` as JSON.
pub fn write_value(out: &mut BytesMut, shape: Shape, value: &Value) {
    let mut text = String::new();
    match (shape, value) {
        (_, Value::NULL) => out.put_slice(b"null"),
        (Shape::Bool, Value::Int(n)) => out.put_slice(if *n != 0 { b"true" } else { b"false" }),
        (Shape::Bool, Value::UInt(n)) => out.put_slice(if *n != 0 { b"true" } else { b"false" }),
        (_, Value::Int(n)) => {
            let _ = write!(text, "{n}");
        }
        (_, Value::UInt(n)) => {
            let _ = write!(text, "{n}");
        }
        (_, Value::Float(f)) => {
            write_float(out, f64::from(*f));
        }
        (_, Value::Double(f)) => {
            write_float(out, *f);
        }
        (Shape::Decimal, Value::Bytes(raw)) if is_decimal(raw) => out.put_slice(raw),
        (Shape::Json, Value::Bytes(raw))
            if serde_json::from_slice::<serde::de::IgnoredAny>(raw).is_ok() =>
        {
            out.put_slice(raw);
        }
        (Shape::Binary, Value::Bytes(raw)) => write_base64(out, raw),
        (Shape::Bits, Value::Bytes(raw)) if raw.len() <= 8 => {
            let _ = write!(
                text,
                "{}",
                raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
            );
        }
        (_, Value::Bytes(raw)) => write_text(out, raw),
        (Shape::Date, Value::Date(y, m, d, ..)) => {
            let _ = write!(text, "\"{y:04}-{m:02}-{d:02}\"");
        }
        (_, Value::Date(y, m, d, h, mi, s, us)) => {
            let _ = write!(text, "\"{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
            if *us > 0 {
                let _ = write!(text, ".{us:06}");
            }
            text.push_str("Z\"");
        }
        (_, Value::Time(negative, days, h, m, s, us)) => {
            let hours = u64::from(*days) * 24 + u64::from(*h);
            let sign = if *negative { "-" } else { "" };
            let _ = write!(text, "\"{sign}{hours:02}:{m:02}:{s:02}");
            if *us > 0 {
                let _ = write!(text, ".{us:06}");
            }
            text.push('"');
        }
    }
    out.put_slice(text.as_bytes());
}

/// A DECIMAL as the server printed it: digits, one optional point and sign.
fn is_decimal(raw: &[u8]) -> bool {
    let digits = raw.strip_prefix(b"-").unwrap_or(raw);
    !digits.is_empty()
        && digits[0].is_ascii_digit()
        && digits.last().is_some_and(u8::is_ascii_digit)
        && digits.iter().all(|b| b.is_ascii_digit() || *b == b'.')
        && digits.iter().filter(|b| **b == b'.').count() <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(shape: Shape, value: Value) -> String {
        let mut out = BytesMut::new();
        write_value(&mut out, shape, &value);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn values() {
        assert_eq!(
            json(Shape::Decimal, Value::Bytes(b"99.99".to_vec())),
            "99.99"
        );
        assert_eq!(
            json(Shape::Decimal, Value::Bytes(b"-0.10".to_vec())),
            "-0.10"
        );
        assert_eq!(json(Shape::Bool, Value::Int(1)), "true");
        assert_eq!(json(Shape::Number, Value::Int(-7)), "-7");
        assert_eq!(
            json(Shape::Json, Value::Bytes(br#"{"a":[1]}"#.to_vec())),
            r#"{"a":[1]}"#
        );
        assert_eq!(
            json(Shape::Json, Value::Bytes(b"not json".to_vec())),
            r#""not json""#
        );
        assert_eq!(json(Shape::Binary, Value::Bytes(vec![0, 255])), r#""AP8=""#);
        assert_eq!(
            json(Shape::Text, Value::Bytes(b"1; DROP TABLE x".to_vec())),
            r#""1; DROP TABLE x""#
        );
        assert_eq!(json(Shape::Bits, Value::Bytes(vec![1, 0])), "256");
        assert_eq!(
            json(Shape::Date, Value::Date(2026, 1, 2, 0, 0, 0, 0)),
            r#""2026-01-02""#
        );
        assert_eq!(
            json(Shape::DateTime, Value::Date(2026, 1, 2, 3, 4, 5, 60)),
            r#""2026-01-02T03:04:05.000060Z""#
        );
        assert_eq!(
            json(Shape::Time, Value::Time(true, 1, 2, 3, 4, 0)),
            r#""-26:03:04""#
        );
        assert_eq!(json(Shape::Number, Value::Double(0.5)), "0.5");
        assert_eq!(json(Shape::Text, Value::NULL), "null");
    }
}
