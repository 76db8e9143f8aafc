//! A lexer just good enough to see statement structure without tokenizing: it skips whitespace,
//! comments (`--`, nested `/* */`), string literals (`'..'` with doubled quotes, `E'..'` with
//! backslash escapes, `$tag$..$tag$`) and quoted identifiers, and reports bare words and other
//! characters. The proxy runs [`crate::ddl::parse`] on every statement it routes, so the
//! "is this SQL/MED DDL at all?" question must cost a few bytes of scanning, not a tokenizer run;
//! the bootstrap script is split into statements with it too.

/// What the lexer saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lexeme<'a> {
    /// An unquoted word (keyword or identifier), as written.
    Word(&'a str),
    /// A string literal, quoted identifier or any other token that cannot be a keyword.
    Other,
    /// `;` outside any literal.
    Semicolon,
}

pub(crate) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    /// Byte offset of the next unread character.
    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    fn rest(&self) -> &'a [u8] {
        &self.src.as_bytes()[self.pos..]
    }

    /// Skips whitespace and comments. An unterminated block comment runs to the end.
    fn skip_trivia(&mut self) {
        loop {
            let rest = self.rest();
            match rest {
                [c, ..] if c.is_ascii_whitespace() => self.pos += 1,
                [b'-', b'-', ..] => {
                    self.pos += rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
                }
                [b'/', b'*', ..] => {
                    let mut depth = 0usize;
                    let mut i = 0;
                    while i < rest.len() {
                        if rest[i..].starts_with(b"/*") {
                            depth += 1;
                            i += 2;
                        } else if rest[i..].starts_with(b"*/") {
                            depth -= 1;
                            i += 2;
                            if depth == 0 {
                                break;
                            }
                        } else {
                            i += 1;
                        }
                    }
                    self.pos += i;
                }
                _ => return,
            }
        }
    }

    /// Skips a quoted run starting at the opening quote; `backslash`: `\` escapes the next byte.
    fn skip_quoted(&mut self, quote: u8, backslash: bool) {
        let rest = self.rest();
        let mut i = 1;
        while i < rest.len() {
            let c = rest[i];
            if backslash && c == b'\\' {
                i += 2;
            } else if c == quote {
                if rest.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    i += 1;
                    break;
                }
            } else {
                i += 1;
            }
        }
        self.pos += i.min(rest.len());
    }

    /// At `$`: a dollar-quoted string if a tag follows, else a lone character (`$1`).
    fn skip_dollar(&mut self) {
        let rest = self.rest();
        let tag_len = rest[1..].iter().position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80));
        match tag_len {
            Some(n) if rest[1 + n] == b'$' && !rest.get(1).is_some_and(u8::is_ascii_digit) => {
                let delim = &rest[..n + 2];
                let body = &rest[n + 2..];
                let end = body.windows(delim.len()).position(|w| w == delim).map(|p| p + delim.len());
                self.pos += n + 2 + end.unwrap_or(body.len());
            }
            _ => self.pos += 1,
        }
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Lexeme<'a>;

    fn next(&mut self) -> Option<Lexeme<'a>> {
        self.skip_trivia();
        let rest = self.rest();
        let &first = rest.first()?;
        match first {
            b'\'' => {
                self.skip_quoted(b'\'', false);
                Some(Lexeme::Other)
            }
            b'"' => {
                self.skip_quoted(b'"', false);
                Some(Lexeme::Other)
            }
            b'$' => {
                self.skip_dollar();
                Some(Lexeme::Other)
            }
            b';' => {
                self.pos += 1;
                Some(Lexeme::Semicolon)
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let len = rest
                    .iter()
                    .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80))
                    .unwrap_or(rest.len());
                // E'..' (and U&'..') strings: the prefix is part of the literal.
                if len == 1 && matches!(c, b'e' | b'E') && rest.get(1) == Some(&b'\'') {
                    self.pos += 1;
                    self.skip_quoted(b'\'', true);
                    return Some(Lexeme::Other);
                }
                let word = &self.src[self.pos..self.pos + len];
                self.pos += len;
                Some(Lexeme::Word(word))
            }
            _ => {
                // One character (or one UTF-8 sequence, which starts >= 0x80 and is a word).
                self.pos += 1;
                Some(Lexeme::Other)
            }
        }
    }
}

/// Splits a script into statements at top-level semicolons; empty statements are dropped and
/// each statement is trimmed.
pub fn split_statements(script: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut lexer = Lexer::new(script);
    let mut start = 0;
    while let Some(l) = lexer.next() {
        if l == Lexeme::Semicolon {
            push_statement(&mut out, &script[start..lexer.offset() - 1]);
            start = lexer.offset();
        }
    }
    push_statement(&mut out, &script[start..]);
    out
}

fn push_statement<'a>(out: &mut Vec<&'a str>, text: &'a str) {
    // A statement made of comments only is no statement.
    if Lexer::new(text).next().is_some() {
        out.push(text.trim());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        Lexer::new(s)
            .map(|l| match l {
                Lexeme::Word(w) => w.to_string(),
                Lexeme::Other => "?".into(),
                Lexeme::Semicolon => ";".into(),
            })
            .collect()
    }

    #[test]
    fn skips_comments_strings_and_quoted_identifiers() {
        assert_eq!(
            words("/* a /* nested */ b */ create -- server\n \"server\" 'x''y' E'\\'' $q$ ; $q$ $1;"),
            // `$1` is two characters to this lexer; only keywords matter.
            ["create", "?", "?", "?", "?", "?", "?", ";"]
        );
        assert_eq!(words("e'x' E 'y' ex"), ["?", "E", "?", "ex"]);
    }

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let script = "create function f() returns int language sql as $$ select 1; $$;\n-- only a comment;\n\
                      select ';'; select 2 /* ; */ ;  ";
        assert_eq!(
            split_statements(script),
            [
                "create function f() returns int language sql as $$ select 1; $$",
                "-- only a comment;\nselect ';'",
                "select 2 /* ; */"
            ]
        );
        assert!(split_statements(" ; -- x\n ;").is_empty());
    }

    #[test]
    fn unterminated_input_ends_quietly() {
        for s in ["'abc", "\"abc", "$a$ abc", "E'\\", "$"] {
            assert_eq!(Lexer::new(s).count(), 1, "{s}");
        }
        assert_eq!(Lexer::new("/* abc /* d */").count(), 0);
    }
}
