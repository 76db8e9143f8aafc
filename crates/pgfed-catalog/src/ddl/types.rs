//! Type names (gram.y's Typename) as text for `CREATE TABLE`: every part is a validated token
//! rendered back (bare lower-case words, quoted identifiers re-quoted, integer modifiers), so the
//! text can only ever be a type name. Postgres resolves it when it creates the shadow table.

use sqlparser::tokenizer::Token;

use super::parser::{IdentKind, Parser};
use crate::{CatalogError, quote};

const INTERVAL_FIELDS: &[&str] = &["year", "month", "day", "hour", "minute", "second"];

impl Parser<'_> {
    /// Typename: a simple type with optional array bounds (`[]`, `[3]`, `ARRAY`, `ARRAY[3]`).
    pub(super) fn type_name(&mut self) -> Result<String, CatalogError> {
        if self.is_kw("setof") {
            return Err(self.error_here());
        }
        let mut out = self.simple_type()?;
        if self.eat_kw("array") {
            out.push('[');
            if self.eat(&Token::LBracket) {
                out.push_str(&self.integer()?);
                self.expect(&Token::RBracket)?;
            }
            out.push(']');
            return Ok(out);
        }
        while self.eat(&Token::LBracket) {
            out.push('[');
            if self.peek() != Some(&Token::RBracket) {
                out.push_str(&self.integer()?);
            }
            self.expect(&Token::RBracket)?;
            out.push(']');
        }
        Ok(out)
    }

    fn integer(&mut self) -> Result<String, CatalogError> {
        match self.peek() {
            Some(Token::Number(n, _)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                let n = n.clone();
                self.advance();
                Ok(n)
            }
            _ => Err(self.error_here()),
        }
    }

    /// The lower-case keyword at the cursor, if it is an unquoted word.
    fn keyword(&self) -> Option<String> {
        match self.peek() {
            Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn simple_type(&mut self) -> Result<String, CatalogError> {
        let Some(first) = self.keyword() else {
            return self.generic_type();
        };
        let mut out = match first.as_str() {
            "double" if self.is_kw_at(1, "precision") => {
                self.expect_kws(&["double", "precision"])?;
                return Ok("double precision".into());
            }
            "national" => {
                self.advance();
                let Some(kind) = self.keyword().filter(|k| k == "character" || k == "char") else {
                    return Err(self.error_here());
                };
                self.advance();
                format!("national {kind}")
            }
            "character" | "char" | "nchar" | "bit" | "timestamp" | "time" => {
                self.advance();
                first
            }
            "interval" => {
                self.advance();
                let mut out = first;
                if let Some(field) = self.keyword().filter(|k| INTERVAL_FIELDS.contains(&k.as_str())) {
                    self.advance();
                    out = format!("{out} {field}");
                    if self.is_kw("to") {
                        self.advance();
                        let Some(to) = self.keyword().filter(|k| INTERVAL_FIELDS.contains(&k.as_str())) else {
                            return Err(self.error_here());
                        };
                        self.advance();
                        out = format!("{out} to {to}");
                    }
                }
                out
            }
            _ => return self.generic_type(),
        };
        if matches!(out.as_str(), "character" | "char" | "nchar" | "bit" | "national character" | "national char")
            && self.eat_kw("varying")
        {
            out.push_str(" varying");
        }
        out.push_str(&self.type_modifiers()?);
        if out.starts_with("time") {
            for (kw, text) in [("with", " with time zone"), ("without", " without time zone")] {
                if self.eat_kw(kw) {
                    self.expect_kws(&["time", "zone"])?;
                    out.push_str(text);
                }
            }
        }
        Ok(out)
    }

    /// GenericType: `name[.name...] [(modifiers)]`.
    fn generic_type(&mut self) -> Result<String, CatalogError> {
        let mut out = self.type_part(IdentKind::NonReserved)?;
        while self.eat(&Token::Period) {
            out.push('.');
            out.push_str(&self.type_part(IdentKind::ColLabel)?);
        }
        out.push_str(&self.type_modifiers()?);
        Ok(out)
    }

    /// A name part: a bare word stays bare (folded), a quoted identifier stays quoted.
    fn type_part(&mut self, kind: IdentKind) -> Result<String, CatalogError> {
        let quoted = matches!(self.peek(), Some(Token::Word(w)) if w.quote_style.is_some());
        let name = self.ident(kind)?;
        Ok(if quoted { quote::ident(&name) } else { name })
    }

    /// opt_type_modifiers: `(n, ...)` of integers, strings or identifiers.
    fn type_modifiers(&mut self) -> Result<String, CatalogError> {
        if !self.eat(&Token::LParen) {
            return Ok(String::new());
        }
        let mut parts = Vec::new();
        loop {
            let negative = self.eat(&Token::Minus);
            let part =
                match self.peek() {
                    Some(Token::Number(_, _)) => self.integer()?,
                    Some(Token::Word(_)) if !negative => quote::ident(&self.ident(IdentKind::ColLabel)?),
                    Some(
                        Token::SingleQuotedString(_) | Token::EscapedStringLiteral(_) | Token::DollarQuotedString(_),
                    ) if !negative => quote::literal(&self.string()?),
                    _ => return Err(self.error_here()),
                };
            parts.push(if negative { format!("-{part}") } else { part });
            if !self.eat(&Token::Comma) {
                break;
            }
        }
        self.expect(&Token::RParen)?;
        Ok(format!("({})", parts.join(",")))
    }
}

/// Validates a type name given as text (a connector's `IMPORT FOREIGN SCHEMA` answer) and returns
/// it in the same normalized form as a declared column type.
pub fn parse_type_name(text: &str) -> Result<String, CatalogError> {
    let mut p = Parser::new(text)?;
    let out = p.type_name()?;
    if !p.at_end() {
        return Err(p.error_here());
    }
    Ok(out)
}
