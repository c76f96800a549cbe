//! JSON writing shared by the SQL row encoders: strings, base64 and floats
//! straight into the batch's byte buffer.

use base64::Engine as _;
use bytes::{BufMut, BytesMut};

/// Writes `text` as a JSON string.
pub fn write_str(out: &mut BytesMut, text: &str) {
    // serde_json's escaper is fast and exact; writing to a BytesMut cannot fail.
    let _ = serde_json::to_writer((&mut *out).writer(), text);
}

/// Writes bytes as a base64 JSON string.
pub fn write_base64(out: &mut BytesMut, raw: &[u8]) {
    out.put_u8(b'"');
    let start = out.len();
    out.resize(start + base64::encoded_len(raw.len(), true).unwrap_or(0), 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(raw, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
    out.put_u8(b'"');
}

/// Writes text when the bytes are UTF-8, else base64.
pub fn write_text(out: &mut BytesMut, raw: &[u8]) {
    match std::str::from_utf8(raw) {
        Ok(text) => write_str(out, text),
        Err(_) => write_base64(out, raw),
    }
}

/// Writes a float; JSON has no NaN or infinity, so those are `null`.
pub fn write_float(out: &mut BytesMut, value: f64) {
    let _ = serde_json::to_writer((&mut *out).writer(), &value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl Fn(&mut BytesMut)) -> String {
        let mut out = BytesMut::new();
        f(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn writes() {
        assert_eq!(text(|o| write_str(o, "a\"\u{1}")), r#""a\"\u0001""#);
        assert_eq!(text(|o| write_base64(o, b"hi")), r#""aGk=""#);
        assert_eq!(text(|o| write_text(o, &[0xff])), r#""/w==""#);
        assert_eq!(text(|o| write_float(o, f64::INFINITY)), "null");
    }
}
