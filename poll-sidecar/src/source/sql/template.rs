//! Mark-done / mark-failed statements with `{{column}}` placeholders, turned
//! into parameterised SQL at start-up. Values are bound as parameters, never
//! spliced into the text (upstream's SQL injection, CONTRACT section 6.5).
//!
//! The text is tokenised just enough to know where a placeholder stands: in
//! code it becomes a parameter; as the whole of a quoted literal
//! (`'{{name}}'`, how users of the splicing upstream wrote text values) it
//! also becomes a parameter; inside a comment, an identifier or part of a
//! literal it is refused, because there it cannot be a value.

/// The SQL dialect, for quoting rules and parameter markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `$1`, `$2`, ...; `"ident"`, `$tag$ ... $tag$` strings.
    Postgres,
    /// `?` markers; `` `ident` ``, `#` comments, backslash escapes in strings.
    Mysql,
}

/// A statement ready to prepare, and the row column bound to each parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The statement with parameter markers in place of placeholders.
    pub sql: String,
    /// For each parameter, in order, the column whose value it takes.
    /// PostgreSQL reuses `$n` for a repeated column; MySQL repeats the column.
    pub params: Vec<String>,
}

impl Template {
    /// Parses `text`; the error says which placeholder is misplaced and why.
    pub fn parse(text: &str, dialect: Dialect) -> Result<Self, String> {
        let bytes = text.as_bytes();
        let mut sql = String::with_capacity(text.len());
        let mut params: Vec<String> = Vec::new();
        let mut i = 0;
        let mut bind = |column: &str, sql: &mut String| match dialect {
            Dialect::Postgres => {
                let n = match params.iter().position(|p| p == column) {
                    Some(n) => n + 1,
                    None => {
                        params.push(column.to_string());
                        params.len()
                    }
                };
                sql.push_str(&format!("${n}"));
            }
            Dialect::Mysql => {
                params.push(column.to_string());
                sql.push('?');
            }
        };
        while i < bytes.len() {
            let rest = &text[i..];
            if rest.starts_with("{{") {
                let (column, len) = placeholder(rest)?;
                bind(column, &mut sql);
                i += len;
                continue;
            }
            let c = bytes[i];
            let end = match c {
                b'\'' => quoted_end(bytes, i, b'\'', dialect == Dialect::Mysql),
                b'"' => quoted_end(bytes, i, b'"', dialect == Dialect::Mysql),
                b'`' if dialect == Dialect::Mysql => quoted_end(bytes, i, b'`', false),
                b'-' if rest.starts_with("--") => rest.find('\n').map_or(bytes.len(), |n| i + n),
                b'#' if dialect == Dialect::Mysql => rest.find('\n').map_or(bytes.len(), |n| i + n),
                b'/' if rest.starts_with("/*") => {
                    rest[2..].find("*/").map_or(bytes.len(), |n| i + n + 4)
                }
                b'$' if dialect == Dialect::Postgres && dollar_quoted_end(text, i).is_some() => {
                    dollar_quoted_end(text, i).unwrap_or(bytes.len())
                }
                b'$' | b'?' if is_positional(rest, dialect) => {
                    return Err(format!(
                        "{:?} is a positional parameter; name the column instead, e.g. WHERE id = {{{{id}}}}",
                        &rest[..rest.len().min(3)]
                    ));
                }
                _ => {
                    let len = rest.chars().next().map_or(1, char::len_utf8);
                    sql.push_str(&rest[..len]);
                    i += len;
                    continue;
                }
            };
            let token = &text[i..end];
            // A string literal that is exactly one placeholder is a value.
            if c == b'\'' {
                if let Some(inner) = token.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
                    if inner.starts_with("{{") {
                        if let Ok((column, len)) = placeholder(inner) {
                            if len == inner.len() {
                                bind(column, &mut sql);
                                i = end;
                                continue;
                            }
                        }
                    }
                }
            }
            if token.contains("{{") {
                let what = match c {
                    b'\'' | b'$' => {
                        "inside a string literal (only a literal that is exactly '{{column}}' is a value)"
                    }
                    b'"' if dialect == Dialect::Postgres => "inside a quoted identifier",
                    b'"' => {
                        "inside a string literal (only a literal that is exactly '{{column}}' is a value)"
                    }
                    b'`' => "inside a quoted identifier",
                    _ => "inside a comment",
                };
                return Err(format!(
                    "a {{{{placeholder}}}} stands {what}: placeholders are values, write e.g. WHERE id = {{{{id}}}}"
                ));
            }
            sql.push_str(token);
            i = end;
        }
        if sql.trim().is_empty() {
            return Err("the statement is empty".into());
        }
        Ok(Self { sql, params })
    }
}

/// Whether `rest` starts with a hand-written parameter marker, which would
/// collide with the ones the placeholders become.
fn is_positional(rest: &str, dialect: Dialect) -> bool {
    match dialect {
        Dialect::Postgres => {
            rest.starts_with('$') && rest[1..].starts_with(|c: char| c.is_ascii_digit())
        }
        Dialect::Mysql => rest.starts_with('?'),
    }
}

/// The column name of the placeholder at the start of `text` and its length.
fn placeholder(text: &str) -> Result<(&str, usize), String> {
    let close = text
        .find("}}")
        .ok_or("a {{ without its closing }}; write e.g. {{id}}")?;
    let column = text[2..close].trim();
    if column.is_empty() || column.contains(['{', '}', '\'', '"', ';']) {
        return Err(format!(
            "{:?} is not a column placeholder; write e.g. {{{{id}}}}",
            &text[..close + 2]
        ));
    }
    Ok((column, close + 2))
}

/// The end (exclusive) of a token quoted by `quote` starting at `start`;
/// a doubled quote escapes it, and so does a backslash when `backslash`.
fn quoted_end(bytes: &[u8], start: usize, quote: u8, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        if backslash && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// The end of a PostgreSQL `$tag$ ... $tag$` string, if one starts at `start`.
fn dollar_quoted_end(text: &str, start: usize) -> Option<usize> {
    let rest = &text[start + 1..];
    let tag_len = rest.find('$')?;
    let tag = &rest[..tag_len];
    if !tag.chars().all(|c| c.is_alphanumeric() || c == '_')
        || tag.starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    let delimiter = &text[start..start + tag_len + 2];
    let body_start = start + tag_len + 2;
    let close = text[body_start..].find(delimiter)?;
    Some(body_start + close + delimiter.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_parameters() {
        let t = Template::parse(
            "UPDATE orders SET status = 'done' WHERE id = {{id}}",
            Dialect::Postgres,
        )
        .unwrap();
        assert_eq!(t.sql, "UPDATE orders SET status = 'done' WHERE id = $1");
        assert_eq!(t.params, vec!["id"]);
        let t = Template::parse(
            "UPDATE t SET a = {{ b }} WHERE id = {{id}} AND b = {{b}}",
            Dialect::Postgres,
        )
        .unwrap();
        assert_eq!(t.sql, "UPDATE t SET a = $1 WHERE id = $2 AND b = $1");
        assert_eq!(t.params, vec!["b", "id"]);
        let t = Template::parse(
            "UPDATE t SET a = {{b}} WHERE id = {{id}} AND b = {{b}}",
            Dialect::Mysql,
        )
        .unwrap();
        assert_eq!(t.sql, "UPDATE t SET a = ? WHERE id = ? AND b = ?");
        assert_eq!(t.params, vec!["b", "id", "b"]);
    }

    #[test]
    fn a_literal_that_is_one_placeholder_is_a_value() {
        let t = Template::parse(
            "UPDATE t SET s = 'done' WHERE name = '{{name}}'",
            Dialect::Mysql,
        )
        .unwrap();
        assert_eq!(t.sql, "UPDATE t SET s = 'done' WHERE name = ?");
        assert_eq!(t.params, vec!["name"]);
    }

    #[test]
    fn placeholders_in_comments_identifiers_and_literals_are_refused() {
        for (text, dialect, why) in [
            (
                "UPDATE t SET s=1 WHERE id = 1 -- {{id}}",
                Dialect::Postgres,
                "comment",
            ),
            (
                "UPDATE t SET s=1 /* {{id}} */ WHERE id = {{id}}",
                Dialect::Postgres,
                "comment",
            ),
            (
                "UPDATE t SET s=1 WHERE id = 1 # {{id}}",
                Dialect::Mysql,
                "comment",
            ),
            (
                "UPDATE \"{{table}}\" SET s=1",
                Dialect::Postgres,
                "identifier",
            ),
            ("UPDATE `{{table}}` SET s=1", Dialect::Mysql, "identifier"),
            ("UPDATE t SET s='x{{id}}'", Dialect::Postgres, "literal"),
            ("UPDATE t SET s=$$ {{id}} $$", Dialect::Postgres, "literal"),
        ] {
            let err = Template::parse(text, dialect).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn quoting_rules_do_not_confuse_the_scanner() {
        let t = Template::parse(
            "UPDATE t SET s = 'it''s {{x' WHERE id = {{id}}",
            Dialect::Postgres,
        );
        assert!(
            t.is_err(),
            "a {{ inside a literal is not a placeholder but still refused"
        );
        let t =
            Template::parse(r"UPDATE t SET s = 'a\'b' WHERE id = {{id}}", Dialect::Mysql).unwrap();
        assert_eq!(t.sql, r"UPDATE t SET s = 'a\'b' WHERE id = ?");
        assert!(
            Template::parse("UPDATE t SET s = $1 WHERE id = {{id}}", Dialect::Postgres).is_err()
        );
        assert!(Template::parse("UPDATE t SET s = ? WHERE id = {{id}}", Dialect::Mysql).is_err());
        let t = Template::parse("UPDATE t SET s = 'a?' WHERE id = {{id}}", Dialect::Mysql).unwrap();
        assert_eq!(t.params, vec!["id"]);
        assert!(Template::parse("UPDATE t SET s = 1 WHERE id = {{}}", Dialect::Postgres).is_err());
        assert!(Template::parse("UPDATE t SET s = 1 WHERE id = {{id", Dialect::Postgres).is_err());
        assert!(Template::parse("  ", Dialect::Postgres).is_err());
    }
}
