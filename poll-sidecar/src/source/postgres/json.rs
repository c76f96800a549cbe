//! PostgreSQL rows to JSON event bodies, written straight from the binary
//! wire format into one byte buffer (no `serde_json::Value` per row): numeric
//! keeps its exact decimal digits, json/jsonb are embedded, timestamps are
//! RFC 3339, bytea is base64, arrays are arrays, NULL is `null`
//! (CONTRACT section 2). A type without a JSON rendering here is sent as its
//! text when the bytes are UTF-8 (enums, citext, ...), else as base64;
//! inet/cidr as their text, interval as an ISO 8601 duration.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Duration, NaiveTime};
use tokio_postgres::types::{FromSql, Kind, Type};

use crate::source::sql::json::{write_base64, write_float, write_str, write_text};

/// A column value exactly as it came over the wire (binary format).
#[derive(Debug, Clone, Copy)]
pub struct Raw<'a>(pub Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Writes one value of type `ty` as JSON.
pub fn write_value(out: &mut BytesMut, ty: &Type, raw: Option<&[u8]>) {
    let Some(raw) = raw else {
        out.put_slice(b"null");
        return;
    };
    if write_known(out, ty, raw).is_none() {
        write_text(out, raw);
    }
}

fn be<const N: usize>(raw: &[u8]) -> Option<[u8; N]> {
    raw.get(..N)?.try_into().ok()
}

/// Writes a value of a type this module knows; `None` when the type or the
/// bytes are not what it expects (the caller falls back).
fn write_known(out: &mut BytesMut, ty: &Type, raw: &[u8]) -> Option<()> {
    let mut text = String::new();
    match *ty {
        Type::BOOL => out.put_slice(if raw.first()? != &0 {
            b"true"
        } else {
            b"false"
        }),
        Type::INT2 => write!(text, "{}", i16::from_be_bytes(be(raw)?)).ok()?,
        Type::INT4 => write!(text, "{}", i32::from_be_bytes(be(raw)?)).ok()?,
        Type::INT8 => write!(text, "{}", i64::from_be_bytes(be(raw)?)).ok()?,
        Type::OID | Type::XID | Type::CID => {
            write!(text, "{}", u32::from_be_bytes(be(raw)?)).ok()?
        }
        Type::FLOAT4 => write_float(out, f64::from(f32::from_be_bytes(be(raw)?))),
        Type::FLOAT8 => write_float(out, f64::from_be_bytes(be(raw)?)),
        Type::NUMERIC => write_numeric(out, raw)?,
        Type::JSON => out.put_slice(raw),
        // jsonb: a version byte (1), then the JSON text.
        Type::JSONB => out.put_slice(raw.strip_prefix(&[1])?),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let micros = i64::from_be_bytes(be(raw)?);
            match micros {
                i64::MAX => text.push_str("\"infinity\""),
                i64::MIN => text.push_str("\"-infinity\""),
                _ => {
                    let at = pg_epoch().checked_add_signed(Duration::microseconds(micros))?;
                    write!(text, "\"{}\"", at.format("%Y-%m-%dT%H:%M:%S%.fZ")).ok()?;
                }
            }
        }
        Type::DATE => {
            let days = i32::from_be_bytes(be(raw)?);
            match days {
                i32::MAX => text.push_str("\"infinity\""),
                i32::MIN => text.push_str("\"-infinity\""),
                _ => {
                    let date = pg_epoch()
                        .date_naive()
                        .checked_add_signed(Duration::days(i64::from(days)))?;
                    write!(text, "\"{}\"", date.format("%Y-%m-%d")).ok()?;
                }
            }
        }
        Type::TIME => write!(
            text,
            "\"{}\"",
            time(i64::from_be_bytes(be(raw)?))?.format("%H:%M:%S%.f")
        )
        .ok()?,
        Type::TIMETZ => {
            let t = time(i64::from_be_bytes(be(raw)?))?;
            // The wire offset is seconds *west* of UTC.
            let west = i32::from_be_bytes(be(raw.get(8..)?)?);
            let east = -west;
            let sign = if east < 0 { '-' } else { '+' };
            let east = east.unsigned_abs();
            write!(
                text,
                "\"{}{sign}{:02}:{:02}\"",
                t.format("%H:%M:%S%.f"),
                east / 3600,
                east % 3600 / 60
            )
            .ok()?;
        }
        Type::UUID => {
            let b: [u8; 16] = be(raw)?;
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            write!(
                text,
                "\"{}-{}-{}-{}-{}\"",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
            .ok()?;
        }
        Type::BYTEA => write_base64(out, raw),
        Type::CHAR => write_str(out, &char::from(*raw.first()?).to_string()),
        Type::INET | Type::CIDR => write_str(out, &inet(raw)?),
        Type::INTERVAL => write_str(out, &interval(raw)?),
        _ => match ty.kind() {
            Kind::Array(element) => write_array(out, element, raw)?,
            Kind::Domain(base) => write_known(out, base, raw)?,
            _ => write_text(out, raw),
        },
    }
    out.put_slice(text.as_bytes());
    Some(())
}

fn pg_epoch() -> DateTime<chrono::Utc> {
    // 2000-01-01T00:00:00Z, PostgreSQL's epoch; a constant that always exists.
    DateTime::from_timestamp(946_684_800, 0).unwrap_or_default()
}

fn time(micros: i64) -> Option<NaiveTime> {
    NaiveTime::from_num_seconds_from_midnight_opt(
        u32::try_from(micros / 1_000_000).ok()?,
        u32::try_from(micros % 1_000_000).ok()? * 1000,
    )
}

/// INET / CIDR: family, prefix bits, is-cidr flag, length, address; written
/// as PostgreSQL prints it (`10.0.0.1`, `10.0.0.0/8`, `::1/128` only when
/// the prefix is not the full length).
fn inet(raw: &[u8]) -> Option<String> {
    let (family, bits, is_cidr, len) = (
        *raw.first()?,
        *raw.get(1)?,
        *raw.get(2)?,
        usize::from(*raw.get(3)?),
    );
    let addr = raw.get(4..4 + len)?;
    let (text, full) = match family {
        2 => (
            std::net::Ipv4Addr::from(<[u8; 4]>::try_from(addr).ok()?).to_string(),
            32,
        ),
        3 => (
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(addr).ok()?).to_string(),
            128,
        ),
        _ => return None,
    };
    Some(if bits != full || is_cidr != 0 {
        format!("{text}/{bits}")
    } else {
        text
    })
}

/// INTERVAL: microseconds, days, months; written as an ISO 8601 duration
/// (`P1Y2M3DT4H5M6.5S`), which JSON consumers parse without guessing.
fn interval(raw: &[u8]) -> Option<String> {
    let micros = i64::from_be_bytes(be(raw)?);
    let days = i32::from_be_bytes(be(raw.get(8..)?)?);
    let months = i32::from_be_bytes(be(raw.get(12..)?)?);
    let mut text = String::from("P");
    let (years, months) = (months / 12, months % 12);
    for (value, unit) in [
        (i64::from(years), 'Y'),
        (i64::from(months), 'M'),
        (i64::from(days), 'D'),
    ] {
        if value != 0 {
            let _ = write!(text, "{value}{unit}");
        }
    }
    if micros != 0 {
        text.push('T');
        let (hours, rest) = (micros / 3_600_000_000, micros % 3_600_000_000);
        let (minutes, rest) = (rest / 60_000_000, rest % 60_000_000);
        if hours != 0 {
            let _ = write!(text, "{hours}H");
        }
        if minutes != 0 {
            let _ = write!(text, "{minutes}M");
        }
        if rest != 0 {
            let seconds = format!("{:.6}", rest as f64 / 1e6);
            let _ = write!(
                text,
                "{}S",
                seconds.trim_end_matches('0').trim_end_matches('.')
            );
        }
    }
    if text == "P" {
        text.push_str("T0S");
    }
    Some(text)
}

/// NUMERIC: base-10000 digits with a weight and a display scale; written
/// with exactly `dscale` fraction digits, as PostgreSQL prints it.
fn write_numeric(out: &mut BytesMut, raw: &[u8]) -> Option<()> {
    let ndigits = usize::try_from(i16::from_be_bytes(be(raw)?)).ok()?;
    let weight = i32::from(i16::from_be_bytes(be(raw.get(2..)?)?));
    let sign = u16::from_be_bytes(be(raw.get(4..)?)?);
    let dscale = usize::try_from(i16::from_be_bytes(be(raw.get(6..)?)?)).ok()?;
    if sign == 0xC000 || sign == 0xD000 || sign == 0xF000 {
        out.put_slice(b"null");
        return Some(());
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|i| {
            raw.get(8 + 2 * i..10 + 2 * i)
                .map(|d| u16::from_be_bytes([d[0], d[1]]))
        })
        .collect::<Option<_>>()?;
    let digit = |i: i32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0)
    };
    let mut text = String::with_capacity(ndigits * 4 + 4);
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                let _ = write!(text, "{}", digit(i));
            } else {
                let _ = write!(text, "{:04}", digit(i));
            }
        }
    }
    if dscale > 0 {
        text.push('.');
        let mut written = 0;
        let mut i = weight + 1;
        while written < dscale {
            let group = format!("{:04}", digit(i));
            let take = (dscale - written).min(4);
            text.push_str(&group[..take]);
            written += take;
            i += 1;
        }
    }
    out.put_slice(text.as_bytes());
    Some(())
}

/// An array: dimensions, then elements (length -1 is NULL); nested for
/// multi-dimensional arrays.
fn write_array(out: &mut BytesMut, element: &Type, raw: &[u8]) -> Option<()> {
    let ndim = usize::try_from(i32::from_be_bytes(be(raw)?)).ok()?;
    let mut dims = Vec::with_capacity(ndim);
    for d in 0..ndim {
        dims.push(usize::try_from(i32::from_be_bytes(be(raw.get(12 + 8 * d..)?)?)).ok()?);
    }
    let mut rest = raw.get(12 + 8 * ndim..)?;
    let mut body = BytesMut::new();
    if ndim == 0 {
        body.put_slice(b"[]");
    } else {
        write_dimension(&mut body, element, &dims, &mut rest)?;
    }
    out.put_slice(&body);
    Some(())
}

fn write_dimension(
    out: &mut BytesMut,
    element: &Type,
    dims: &[usize],
    rest: &mut &[u8],
) -> Option<()> {
    out.put_u8(b'[');
    for i in 0..dims[0] {
        if i > 0 {
            out.put_u8(b',');
        }
        if dims.len() > 1 {
            write_dimension(out, element, &dims[1..], rest)?;
        } else {
            let len = i32::from_be_bytes(be(rest)?);
            *rest = rest.get(4..)?;
            if len < 0 {
                out.put_slice(b"null");
            } else {
                let len = usize::try_from(len).ok()?;
                write_value(out, element, Some(rest.get(..len)?));
                *rest = rest.get(len..)?;
            }
        }
    }
    out.put_u8(b']');
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn pg_date(date: NaiveDate) -> i32 {
        i32::try_from((date - pg_epoch().date_naive()).num_days()).unwrap()
    }

    fn json(ty: &Type, raw: &[u8]) -> String {
        let mut out = BytesMut::new();
        write_value(&mut out, ty, Some(raw));
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn numeric(weight: i16, sign: u16, dscale: i16, digits: &[u16]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend((digits.len() as i16).to_be_bytes());
        raw.extend(weight.to_be_bytes());
        raw.extend(sign.to_be_bytes());
        raw.extend(dscale.to_be_bytes());
        for d in digits {
            raw.extend(d.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numeric_keeps_exact_digits() {
        assert_eq!(
            json(&Type::NUMERIC, &numeric(0, 0, 2, &[99, 9900])),
            "99.99"
        );
        assert_eq!(
            json(&Type::NUMERIC, &numeric(1, 0x4000, 0, &[1, 2345])),
            "-12345"
        );
        assert_eq!(json(&Type::NUMERIC, &numeric(-1, 0, 5, &[12])), "0.00120");
        assert_eq!(
            json(&Type::NUMERIC, &numeric(-2, 0, 6, &[5000])),
            "0.000050"
        );
        assert_eq!(json(&Type::NUMERIC, &numeric(0, 0, 0, &[])), "0");
        assert_eq!(json(&Type::NUMERIC, &numeric(2, 0, 0, &[1])), "100000000");
        assert_eq!(json(&Type::NUMERIC, &numeric(0, 0xC000, 0, &[])), "null");
    }

    #[test]
    fn scalars() {
        assert_eq!(json(&Type::INT8, &42i64.to_be_bytes()), "42");
        assert_eq!(json(&Type::FLOAT8, &1.5f64.to_be_bytes()), "1.5");
        assert_eq!(json(&Type::FLOAT8, &f64::NAN.to_be_bytes()), "null");
        assert_eq!(json(&Type::BOOL, &[1]), "true");
        assert_eq!(json(&Type::TEXT, b"a\"b\n"), r#""a\"b\n""#);
        assert_eq!(json(&Type::JSONB, b"\x01{\"a\":1}"), r#"{"a":1}"#);
        assert_eq!(json(&Type::BYTEA, &[0, 255, 1]), r#""AP8B""#);
        assert_eq!(
            json(
                &Type::DATE,
                &pg_date(NaiveDate::from_ymd_opt(2026, 1, 31).unwrap()).to_be_bytes()
            ),
            r#""2026-01-31""#
        );
        assert_eq!(
            json(&Type::TIMESTAMPTZ, &1_500_000i64.to_be_bytes()),
            r#""2000-01-01T00:00:01.500Z""#
        );
        assert_eq!(
            json(&Type::UUID, &[0x12; 16]),
            r#""12121212-1212-1212-1212-121212121212""#
        );
    }

    #[test]
    fn inet_and_interval() {
        assert_eq!(
            json(&Type::INET, &[2, 32, 0, 4, 10, 0, 0, 1]),
            r#""10.0.0.1""#
        );
        assert_eq!(
            json(&Type::CIDR, &[2, 8, 1, 4, 10, 0, 0, 0]),
            r#""10.0.0.0/8""#
        );
        let mut raw = Vec::new();
        raw.extend((4 * 3_600_000_000i64 + 5 * 60_000_000 + 6_500_000).to_be_bytes());
        raw.extend(3i32.to_be_bytes());
        raw.extend(14i32.to_be_bytes());
        assert_eq!(json(&Type::INTERVAL, &raw), r#""P1Y2M3DT4H5M6.5S""#);
        assert_eq!(json(&Type::INTERVAL, &[0; 16]), r#""PT0S""#);
    }

    #[test]
    fn arrays_nest_and_keep_nulls() {
        // int4[] '{{1,NULL},{3,4}}'
        let mut raw = Vec::new();
        for v in [2i32, 1, 23, 2, 1, 2, 1] {
            raw.extend(v.to_be_bytes());
        }
        for v in [Some(1i32), None, Some(3), Some(4)] {
            match v {
                Some(v) => {
                    raw.extend(4i32.to_be_bytes());
                    raw.extend(v.to_be_bytes());
                }
                None => raw.extend((-1i32).to_be_bytes()),
            }
        }
        assert_eq!(json(&Type::INT4_ARRAY, &raw), "[[1,null],[3,4]]");
    }
}
