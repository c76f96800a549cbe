//! YAML output that `kubectl` reads back as we meant it.
//!
//! serde_yaml writes YAML 1.2, where `yes`, `no`, `on`, `off`, `y` and `n` are plain strings,
//! so it leaves them unquoted; `kubectl` and most Kubernetes tooling read YAML 1.1, where they
//! are booleans. An env value `FEATURE=yes` piped from `--dry-run -o yaml` into `kubectl apply`
//! would fail ("cannot unmarshal bool into string"). [`to_string`] quotes those scalars (keys
//! too) and leaves the content of block scalars (`|`, `>`: code, scripts) untouched.

use serde::Serialize;

/// The scalars YAML 1.1 reads as booleans and YAML 1.2 as strings.
const YAML11_BOOLEANS: &[&str] = &[
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
    "OFF",
];

/// `value` as one YAML document (no leading `---`), safe for YAML 1.1 readers.
pub fn to_string<T: Serialize>(value: &T) -> crate::Result<String> {
    Ok(quote_yaml11_booleans(&serde_yaml::to_string(value)?))
}

fn quoted(scalar: &str) -> Option<String> {
    YAML11_BOOLEANS
        .contains(&scalar)
        .then(|| format!("'{scalar}'"))
}

/// Quotes every plain scalar (key or value) of serde_yaml's block output that YAML 1.1 would
/// read as a boolean.
fn quote_yaml11_booleans(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    // Indentation of the line that opened a block scalar: deeper lines are its content.
    let mut block: Option<usize> = None;
    for line in yaml.split_inclusive('\n') {
        let text = line.trim_end_matches('\n');
        let indent = text.len() - text.trim_start().len();
        if let Some(opened_at) = block {
            if text.trim().is_empty() || indent > opened_at {
                out.push_str(line);
                continue;
            }
            block = None;
        }
        let (prefix, mut rest) = text.split_at(indent);
        let mut rebuilt = prefix.to_owned();
        while let Some(item) = rest.strip_prefix("- ") {
            rebuilt.push_str("- ");
            rest = item;
        }
        let (key, value) = match rest.split_once(": ") {
            Some((k, v)) => (Some(k), v),
            None => match rest.strip_suffix(':') {
                Some(k) => (Some(k), ""),
                None => (None, rest),
            },
        };
        if let Some(key) = key {
            rebuilt.push_str(&quoted(key).unwrap_or_else(|| key.to_owned()));
            rebuilt.push(':');
            if !value.is_empty() {
                rebuilt.push(' ');
            }
        }
        rebuilt.push_str(&quoted(value).unwrap_or_else(|| value.to_owned()));
        if value.starts_with('|') || value.starts_with('>') {
            block = Some(indent);
        }
        out.push_str(&rebuilt);
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml11_booleans_are_quoted_and_read_back_as_strings() {
        let value = json!({
            "env": [{"name": "FEATURE", "value": "yes"}, {"name": "on", "value": "off"}],
            "flags": ["y", "no", "maybe"],
            "enabled": true,
            "count": 3,
            "script": "if x\nyes\n  on\n",
            "after": "N",
            "labels": {"on": "x"},
        });
        let text = to_string(&value).unwrap();
        for quotedword in [
            "'yes'",
            "name: 'on'",
            "'on': x",
            "'off'",
            "- 'y'",
            "- 'no'",
            "after: 'N'",
        ] {
            assert!(text.contains(quotedword), "{quotedword} in\n{text}");
        }
        assert!(
            text.contains("enabled: true") && text.contains("count: 3"),
            "{text}"
        );
        assert!(text.contains("- maybe"), "{text}");
        // Block scalar content is untouched.
        assert!(
            text.contains("\n  yes\n") && text.contains("\n    on\n"),
            "{text}"
        );
        let back: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, value);
    }
}
