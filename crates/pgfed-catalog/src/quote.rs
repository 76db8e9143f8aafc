//! The quoting layer for the few SQL texts pgfed cannot send with bind parameters (utility
//! statements such as `CREATE TABLE` and `COMMENT ON` take none). Identifiers are always quoted and
//! literals are always escaped, so a name or value can never change a statement's structure, and
//! the result does not depend on `standard_conforming_strings`.

/// `"name"`, with embedded double quotes doubled (Postgres's `quote_ident`, but always quoted).
pub fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// A string literal, as Postgres's `quote_literal` writes it: quotes doubled, and when the value
/// holds a backslash, an `E'..'` literal with backslashes doubled (correct whatever
/// `standard_conforming_strings` says).
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_escaped() {
        assert_eq!(ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(qualified("S", "t x"), r#""S"."t x""#);
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal(r"a\'b"), r"E'a\\''b'");
    }
}
