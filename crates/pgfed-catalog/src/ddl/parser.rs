//! Recursive descent over sqlparser's Postgres tokens, following gram.y's productions for the
//! SQL/MED statements (the names in comments are gram.y's).

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use super::*;

/// Postgres's NAMEDATALEN - 1: longer identifiers are truncated (at a character boundary).
const MAX_IDENT_BYTES: usize = 63;

/// Reserved keywords (kwlist.h RESERVED_KEYWORD): never a bare identifier.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "initially",
    "intersect",
    "into",
    "lateral",
    "leading",
    "limit",
    "localtime",
    "localtimestamp",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "placing",
    "primary",
    "references",
    "returning",
    "select",
    "session_user",
    "some",
    "symmetric",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "when",
    "where",
    "window",
    "with",
];

/// TYPE_FUNC_NAME_KEYWORD: allowed as type and function names and role names, not as ColId.
const TYPE_FUNC_NAME: &[&str] = &[
    "authorization",
    "binary",
    "collation",
    "concurrently",
    "cross",
    "current_schema",
    "freeze",
    "full",
    "ilike",
    "inner",
    "is",
    "isnull",
    "join",
    "left",
    "like",
    "natural",
    "notnull",
    "outer",
    "overlaps",
    "right",
    "similar",
    "tablesample",
    "verbose",
];

/// Which identifiers a position accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum IdentKind {
    /// ColId: not reserved, not a type/function-name keyword.
    ColId,
    /// NonReservedWord (role names): not reserved.
    NonReserved,
    /// ColLabel (option names): any word.
    ColLabel,
}

pub(super) struct Tok {
    pub token: Token,
    /// Byte range in the statement text.
    pub start: usize,
    pub end: usize,
    /// Whitespace with a newline precedes it (string continuation needs this).
    pub newline_before: bool,
}

pub(super) struct Parser<'a> {
    sql: &'a str,
    pub toks: Vec<Tok>,
    pub pos: usize,
}

pub(crate) fn truncate_ident(mut s: String) -> String {
    if s.len() > MAX_IDENT_BYTES {
        let mut cut = MAX_IDENT_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Byte offset of each line start, for turning sqlparser's (line, column) into offsets.
fn byte_offset(sql: &str, line_starts: &[usize], line: u64, column: u64) -> usize {
    let Some(&start) = usize::try_from(line).ok().and_then(|l| l.checked_sub(1)).and_then(|l| line_starts.get(l))
    else {
        return sql.len();
    };
    let col = usize::try_from(column).unwrap_or(usize::MAX).saturating_sub(1);
    sql[start..].char_indices().nth(col).map(|(i, _)| start + i).unwrap_or(sql.len())
}

/// A 42601 error at byte offset `at` (Postgres positions count characters from 1).
pub(super) fn syntax_error(sql: &str, at: usize, near: Option<&str>) -> CatalogError {
    let position = sql[..at.min(sql.len())].chars().count() as u32 + 1;
    let message = match near {
        Some(text) => format!("syntax error at or near \"{text}\""),
        None => "syntax error at end of input".to_string(),
    };
    CatalogError::Syntax { message, position: Some(position) }
}

impl<'a> Parser<'a> {
    pub(super) fn new(sql: &'a str) -> Result<Self, CatalogError> {
        let dialect = PostgreSqlDialect {};
        let spanned = Tokenizer::new(&dialect, sql).tokenize_with_location().map_err(|e| {
            let line_starts = line_starts(sql);
            let at = byte_offset(sql, &line_starts, e.location.line, e.location.column);
            CatalogError::Syntax {
                message: e.message.to_lowercase(),
                position: Some(sql[..at].chars().count() as u32 + 1),
            }
        })?;
        let line_starts = line_starts(sql);
        let starts: Vec<usize> =
            spanned.iter().map(|t| byte_offset(sql, &line_starts, t.span.start.line, t.span.start.column)).collect();
        let mut toks = Vec::new();
        let mut newline_before = false;
        for (i, t) in spanned.into_iter().enumerate() {
            let end = starts.get(i + 1).copied().unwrap_or(sql.len());
            match t.token {
                Token::Whitespace(w) => {
                    newline_before |= match w {
                        Whitespace::Newline | Whitespace::SingleLineComment { .. } => true,
                        Whitespace::MultiLineComment(c) => c.contains('\n'),
                        Whitespace::Space | Whitespace::Tab => false,
                    };
                }
                Token::EOF => {}
                token => {
                    toks.push(Tok { token, start: starts[i], end, newline_before });
                    newline_before = false;
                }
            }
        }
        Ok(Self { sql, toks, pos: 0 })
    }

    pub(super) fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos).map(|t| &t.token)
    }

    pub(super) fn peek_nth(&self, n: usize) -> Option<&Token> {
        self.toks.get(self.pos + n).map(|t| &t.token)
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }

    pub(super) fn advance(&mut self) {
        self.pos += 1;
    }

    /// The error for the current token (or the end of input).
    pub(super) fn error_here(&self) -> CatalogError {
        match self.toks.get(self.pos) {
            Some(t) => syntax_error(self.sql, t.start, Some(self.sql[t.start..t.end].trim_end())),
            None => syntax_error(self.sql, self.sql.len(), None),
        }
    }

    /// The source text of tokens `from..to`.
    pub(super) fn text(&self, from: usize, to: usize) -> &'a str {
        match (self.toks.get(from), to.checked_sub(1).and_then(|i| self.toks.get(i))) {
            (Some(a), Some(b)) if from < to => self.sql[a.start..b.end].trim_end(),
            _ => "",
        }
    }

    /// Whether token `pos + n` is the unquoted keyword `kw`.
    pub(super) fn is_kw_at(&self, n: usize, kw: &str) -> bool {
        matches!(self.peek_nth(n), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
    }

    pub(super) fn is_kw(&self, kw: &str) -> bool {
        self.is_kw_at(0, kw)
    }

    pub(super) fn eat_kw(&mut self, kw: &str) -> bool {
        let yes = self.is_kw(kw);
        if yes {
            self.pos += 1;
        }
        yes
    }

    pub(super) fn expect_kw(&mut self, kw: &str) -> Result<(), CatalogError> {
        if self.eat_kw(kw) { Ok(()) } else { Err(self.error_here()) }
    }

    pub(super) fn expect_kws(&mut self, kws: &[&str]) -> Result<(), CatalogError> {
        kws.iter().try_for_each(|kw| self.expect_kw(kw))
    }

    pub(super) fn eat(&mut self, token: &Token) -> bool {
        let yes = self.peek() == Some(token);
        if yes {
            self.pos += 1;
        }
        yes
    }

    pub(super) fn expect(&mut self, token: &Token) -> Result<(), CatalogError> {
        if self.eat(token) { Ok(()) } else { Err(self.error_here()) }
    }

    /// An identifier of the given kind, folded and truncated as Postgres does.
    pub(super) fn ident(&mut self, kind: IdentKind) -> Result<String, CatalogError> {
        let Some(Token::Word(w)) = self.peek() else { return Err(self.error_here()) };
        let value = match w.quote_style {
            Some('"') => w.value.clone(),
            Some(_) => return Err(self.error_here()),
            None => {
                let folded = w.value.to_ascii_lowercase();
                let reserved = RESERVED.contains(&folded.as_str());
                let type_func = TYPE_FUNC_NAME.contains(&folded.as_str());
                let ok = match kind {
                    IdentKind::ColId => !reserved && !type_func,
                    IdentKind::NonReserved => !reserved,
                    IdentKind::ColLabel => true,
                };
                if !ok {
                    return Err(self.error_here());
                }
                folded
            }
        };
        if value.is_empty() {
            // `""`: Postgres's "zero-length delimited identifier".
            return Err(self.error_here());
        }
        self.pos += 1;
        Ok(truncate_ident(value))
    }

    pub(super) fn col_id(&mut self) -> Result<String, CatalogError> {
        self.ident(IdentKind::ColId)
    }

    /// `ColId [. ColLabel]` (qualified_name for relations; catalogs are not supported).
    pub(super) fn qualified_name(&mut self) -> Result<QualifiedName, CatalogError> {
        let first = self.col_id()?;
        if self.eat(&Token::Period) {
            let name = self.ident(IdentKind::ColLabel)?;
            if self.peek() == Some(&Token::Period) {
                return Err(self.error_here());
            }
            return Ok(QualifiedName { schema: Some(first), name });
        }
        Ok(QualifiedName { schema: None, name: first })
    }

    /// `name [, ...]`.
    pub(super) fn col_id_list(&mut self) -> Result<Vec<String>, CatalogError> {
        let mut out = vec![self.col_id()?];
        while self.eat(&Token::Comma) {
            out.push(self.col_id()?);
        }
        Ok(out)
    }

    /// Sconst: a string literal in any of Postgres's spellings, with adjacent literals separated
    /// by a newline joined as Postgres joins them.
    pub(super) fn string(&mut self) -> Result<String, CatalogError> {
        let mut out = match self.peek() {
            Some(Token::SingleQuotedString(s) | Token::EscapedStringLiteral(s) | Token::UnicodeStringLiteral(s)) => {
                s.clone()
            }
            Some(Token::DollarQuotedString(d)) => {
                let v = d.value.clone();
                self.pos += 1;
                return Ok(v);
            }
            _ => return Err(self.error_here()),
        };
        self.pos += 1;
        while let Some(t) = self.toks.get(self.pos) {
            match &t.token {
                Token::SingleQuotedString(s) | Token::EscapedStringLiteral(s) if t.newline_before => {
                    out.push_str(s);
                    self.pos += 1;
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// `RoleSpec` (and `USER` where `allow_user`, for user mappings).
    pub(super) fn role_spec(&mut self, allow_user: bool) -> Result<RoleSpec, CatalogError> {
        for (kw, spec) in [
            ("current_user", RoleSpec::CurrentUser),
            ("current_role", RoleSpec::CurrentUser),
            ("session_user", RoleSpec::SessionUser),
        ] {
            if self.eat_kw(kw) {
                return Ok(spec);
            }
        }
        if allow_user && self.eat_kw("user") {
            return Ok(RoleSpec::CurrentUser);
        }
        let name = self.ident(IdentKind::NonReserved)?;
        Ok(if name == "public" { RoleSpec::Public } else { RoleSpec::Named(name) })
    }

    /// `[CASCADE | RESTRICT]`: true for CASCADE.
    pub(super) fn drop_behavior(&mut self) -> bool {
        if self.eat_kw("cascade") {
            return true;
        }
        self.eat_kw("restrict");
        false
    }

    fn if_not_exists(&mut self) -> Result<bool, CatalogError> {
        if self.is_kw("if") && self.is_kw_at(1, "not") {
            self.expect_kws(&["if", "not", "exists"])?;
            return Ok(true);
        }
        Ok(false)
    }

    fn if_exists(&mut self) -> Result<bool, CatalogError> {
        if self.is_kw("if") && self.is_kw_at(1, "exists") {
            self.pos += 2;
            return Ok(true);
        }
        Ok(false)
    }

    /// create_generic_options: `OPTIONS (name 'value', ...)`, or nothing.
    pub(super) fn create_options(&mut self) -> Result<Vec<OptionItem>, CatalogError> {
        if !self.eat_kw("options") {
            return Ok(vec![]);
        }
        self.expect(&Token::LParen)?;
        let mut out = Vec::new();
        loop {
            let name = self.ident(IdentKind::ColLabel)?;
            let value = self.string()?;
            out.push(OptionItem { action: OptionAction::Add, name, value: Some(value) });
            if !self.eat(&Token::Comma) {
                break;
            }
        }
        self.expect(&Token::RParen)?;
        Ok(out)
    }

    /// alter_generic_options: `OPTIONS ([ADD | SET] name 'value' | DROP name, ...)`.
    pub(super) fn alter_options(&mut self) -> Result<Vec<OptionItem>, CatalogError> {
        self.expect_kw("options")?;
        self.expect(&Token::LParen)?;
        let mut out = Vec::new();
        loop {
            // `set 'x'` is the option named "set": an action keyword needs a name after it.
            let followed_by_name = matches!(self.peek_nth(1), Some(Token::Word(_)));
            let action = if followed_by_name && self.eat_kw("add") {
                OptionAction::Add
            } else if followed_by_name && self.eat_kw("set") {
                OptionAction::Set
            } else if followed_by_name && self.eat_kw("drop") {
                OptionAction::Drop
            } else {
                OptionAction::Add
            };
            let name = self.ident(IdentKind::ColLabel)?;
            let value = if action == OptionAction::Drop { None } else { Some(self.string()?) };
            out.push(OptionItem { action, name, value });
            if !self.eat(&Token::Comma) {
                break;
            }
        }
        self.expect(&Token::RParen)?;
        Ok(out)
    }

    /// Skips tokens up to (not including) a top-level `,` or `)`, or the end.
    pub(super) fn skip_element(&mut self) {
        let mut depth = 0usize;
        while let Some(t) = self.peek() {
            match t {
                Token::LParen | Token::LBracket => depth += 1,
                Token::RParen | Token::RBracket if depth > 0 => depth -= 1,
                Token::RParen | Token::Comma | Token::SemiColon if depth == 0 => return,
                _ => {}
            }
            self.pos += 1;
        }
    }

    /// Skips a parenthesized group starting at `(`.
    fn skip_parens(&mut self) -> Result<(), CatalogError> {
        self.expect(&Token::LParen)?;
        self.skip_element_all()?;
        self.expect(&Token::RParen)
    }

    /// Skips a comma-separated list inside parentheses (up to the closing `)`).
    fn skip_element_all(&mut self) -> Result<(), CatalogError> {
        loop {
            self.skip_element();
            if !self.eat(&Token::Comma) {
                return Ok(());
            }
        }
    }

    // ---- statements ----

    fn statement(&mut self) -> Result<Ddl, CatalogError> {
        if self.eat_kw("create") {
            if self.eat_kw("server") {
                return self.create_server();
            }
            if self.eat_kw("user") {
                self.expect_kw("mapping")?;
                return self.create_user_mapping();
            }
            self.expect_kws(&["foreign", "table"])?;
            return self.create_foreign_table();
        }
        if self.eat_kw("alter") {
            if self.eat_kw("server") {
                return self.alter_server();
            }
            if self.eat_kw("user") {
                self.expect_kw("mapping")?;
                return self.alter_user_mapping();
            }
            self.expect_kws(&["foreign", "table"])?;
            return self.alter_foreign_table();
        }
        if self.eat_kw("drop") {
            if self.eat_kw("server") {
                let if_exists = self.if_exists()?;
                let names = self.col_id_list()?;
                let cascade = self.drop_behavior();
                return Ok(Ddl::DropServer(DropServer { if_exists, names, cascade }));
            }
            if self.eat_kw("user") {
                self.expect_kw("mapping")?;
                let if_exists = self.if_exists()?;
                self.expect_kw("for")?;
                let user = self.role_spec(true)?;
                self.expect_kw("server")?;
                let server = self.col_id()?;
                return Ok(Ddl::DropUserMapping(DropUserMapping { if_exists, user, server }));
            }
            self.expect_kws(&["foreign", "table"])?;
            let if_exists = self.if_exists()?;
            let mut tables = vec![self.qualified_name()?];
            while self.eat(&Token::Comma) {
                tables.push(self.qualified_name()?);
            }
            let cascade = self.drop_behavior();
            return Ok(Ddl::DropForeignTable(DropForeignTable { if_exists, tables, cascade }));
        }
        if self.eat_kw("import") {
            return self.import_foreign_schema();
        }
        if self.eat_kw("grant") {
            return self.server_grant(true);
        }
        if self.eat_kw("revoke") {
            return self.server_grant(false);
        }
        Err(self.error_here())
    }

    /// CreateForeignServerStmt.
    fn create_server(&mut self) -> Result<Ddl, CatalogError> {
        let if_not_exists = self.if_not_exists()?;
        let name = self.col_id()?;
        let server_type = if self.eat_kw("type") { Some(self.string()?) } else { None };
        let version =
            if self.eat_kw("version") { if self.eat_kw("null") { None } else { Some(self.string()?) } } else { None };
        self.expect_kws(&["foreign", "data", "wrapper"])?;
        let wrapper = self.col_id()?;
        let options = self.create_options()?;
        Ok(Ddl::CreateServer(CreateServer { if_not_exists, name, server_type, version, wrapper, options }))
    }

    /// AlterForeignServerStmt, and the OWNER TO / RENAME TO forms.
    fn alter_server(&mut self) -> Result<Ddl, CatalogError> {
        let name = self.col_id()?;
        let action = if self.eat_kw("owner") {
            self.expect_kw("to")?;
            AlterServerAction::OwnerTo(self.role_spec(false)?)
        } else if self.eat_kw("rename") {
            self.expect_kw("to")?;
            AlterServerAction::Rename(self.col_id()?)
        } else {
            let version = if self.eat_kw("version") {
                Some(if self.eat_kw("null") { None } else { Some(self.string()?) })
            } else {
                None
            };
            let options = if version.is_none() || self.is_kw("options") { self.alter_options()? } else { vec![] };
            AlterServerAction::Change { version, options }
        };
        Ok(Ddl::AlterServer(AlterServer { name, action }))
    }

    fn create_user_mapping(&mut self) -> Result<Ddl, CatalogError> {
        let if_not_exists = self.if_not_exists()?;
        self.expect_kw("for")?;
        let user = self.role_spec(true)?;
        self.expect_kw("server")?;
        let server = self.col_id()?;
        let options = self.create_options()?;
        Ok(Ddl::CreateUserMapping(CreateUserMapping { if_not_exists, user, server, options }))
    }

    fn alter_user_mapping(&mut self) -> Result<Ddl, CatalogError> {
        self.expect_kw("for")?;
        let user = self.role_spec(true)?;
        self.expect_kw("server")?;
        let server = self.col_id()?;
        let options = self.alter_options()?;
        Ok(Ddl::AlterUserMapping(AlterUserMapping { user, server, options }))
    }

    /// CreateForeignTableStmt (both the column-list and the PARTITION OF forms).
    fn create_foreign_table(&mut self) -> Result<Ddl, CatalogError> {
        let if_not_exists = self.if_not_exists()?;
        let table = self.qualified_name()?;
        let mut columns = Vec::new();
        let mut unsupported = Vec::new();
        if self.is_kw("partition") && self.is_kw_at(1, "of") {
            unsupported.push("PARTITION OF".to_string());
            // Everything up to the top-level SERVER keyword belongs to the partition clause.
            let mut depth = 0usize;
            while let Some(t) = self.peek() {
                match t {
                    Token::LParen => depth += 1,
                    Token::RParen => depth = depth.saturating_sub(1),
                    _ if depth == 0 && self.is_kw("server") => break,
                    _ => {}
                }
                self.pos += 1;
            }
        } else {
            self.expect(&Token::LParen)?;
            if !self.eat(&Token::RParen) {
                loop {
                    self.table_element(&mut columns, &mut unsupported)?;
                    if !self.eat(&Token::Comma) {
                        break;
                    }
                }
                self.expect(&Token::RParen)?;
            }
            if self.eat_kw("inherits") {
                unsupported.push("INHERITS".to_string());
                self.skip_parens()?;
            }
        }
        self.expect_kw("server")?;
        let server = self.col_id()?;
        let options = self.create_options()?;
        unsupported.dedup();
        Ok(Ddl::CreateForeignTable(CreateForeignTable { if_not_exists, table, columns, server, options, unsupported }))
    }

    /// TableElement: a column definition, or a table constraint / LIKE clause (recorded).
    fn table_element(
        &mut self,
        columns: &mut Vec<ColumnDef>,
        unsupported: &mut Vec<String>,
    ) -> Result<(), CatalogError> {
        for (kw, what) in [
            ("constraint", "table constraints"),
            ("check", "table constraints"),
            ("unique", "table constraints"),
            ("primary", "table constraints"),
            ("exclude", "table constraints"),
            ("foreign", "table constraints"),
            ("like", "LIKE"),
        ] {
            if self.is_kw(kw) {
                unsupported.push(what.to_string());
                self.skip_element();
                return Ok(());
            }
        }
        columns.push(self.column_def()?);
        Ok(())
    }

    /// columnDef: `ColId Typename [COMPRESSION x] [OPTIONS (...)] ColQualList`.
    pub(super) fn column_def(&mut self) -> Result<ColumnDef, CatalogError> {
        let name = self.col_id()?;
        let type_name = self.type_name()?;
        let mut col =
            ColumnDef { name, type_name, not_null: false, default: None, options: vec![], unsupported: vec![] };
        if self.is_kw("compression") {
            col.unsupported.push("COMPRESSION".into());
            self.pos += 1;
            self.ident(IdentKind::ColLabel)?;
        }
        col.options = self.create_options()?;
        loop {
            if self.eat_kw("constraint") {
                // A named constraint: the name, then one constraint.
                self.col_id()?;
                if !self.column_constraint(&mut col)? {
                    return Err(self.error_here());
                }
                continue;
            }
            if !self.column_constraint(&mut col)? {
                break;
            }
        }
        col.unsupported.dedup();
        Ok(col)
    }

    /// One ColConstraintElem (or COLLATE); false when none follows.
    fn column_constraint(&mut self, col: &mut ColumnDef) -> Result<bool, CatalogError> {
        if self.is_kw("not") && self.is_kw_at(1, "null") {
            self.pos += 2;
            col.not_null = true;
        } else if self.eat_kw("null") {
            col.not_null = false;
        } else if self.eat_kw("default") {
            col.default = Some(self.default_expr()?);
        } else if let Some(what) =
            ["collate", "check", "generated", "unique", "primary", "references"].into_iter().find(|kw| self.is_kw(kw))
        {
            col.unsupported.push(what.to_uppercase());
            // Skip this element's tokens up to the next constraint keyword or the column's end.
            self.pos += 1;
            let mut depth = 0usize;
            while let Some(t) = self.peek() {
                match t {
                    Token::LParen => depth += 1,
                    Token::RParen if depth > 0 => depth -= 1,
                    Token::RParen | Token::Comma if depth == 0 => break,
                    _ if depth == 0
                        && ["not", "null", "default", "constraint", "collate", "check", "generated"]
                            .iter()
                            .any(|kw| self.is_kw(kw)) =>
                    {
                        break;
                    }
                    _ => {}
                }
                self.pos += 1;
            }
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// `DEFAULT b_expr`: the expression's tokens up to the next column constraint or the end of
    /// the column, parsed by sqlparser and rendered back from its syntax tree.
    fn default_expr(&mut self) -> Result<String, CatalogError> {
        let start = self.pos;
        let mut depth = 0usize;
        while let Some(t) = self.peek() {
            let stop = match t {
                Token::LParen | Token::LBracket => {
                    depth += 1;
                    false
                }
                Token::RParen | Token::RBracket if depth > 0 => {
                    depth -= 1;
                    false
                }
                Token::RParen | Token::Comma | Token::SemiColon if depth == 0 => true,
                _ if depth == 0 && self.pos > start => {
                    ["not", "null", "constraint", "collate", "check", "generated", "unique", "primary", "references"]
                        .iter()
                        .any(|kw| self.is_kw(kw))
                }
                _ => false,
            };
            if stop {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error_here());
        }
        let tokens: Vec<Token> = self.toks[start..self.pos].iter().map(|t| t.token.clone()).collect();
        let dialect = PostgreSqlDialect {};
        let mut parser = sqlparser::parser::Parser::new(&dialect).with_tokens(tokens);
        let at = self.toks[start].start;
        let expr = parser.parse_expr().map_err(|_| syntax_error(self.sql, at, Some(self.text(start, self.pos))))?;
        if parser.peek_token().token != Token::EOF {
            return Err(syntax_error(self.sql, at, Some(self.text(start, self.pos))));
        }
        Ok(expr.to_string())
    }

    /// AlterTableStmt for foreign tables.
    fn alter_foreign_table(&mut self) -> Result<Ddl, CatalogError> {
        let if_exists = self.if_exists()?;
        self.eat_kw("only");
        let table = self.qualified_name()?;
        self.eat(&Token::Mul);
        let mut actions = Vec::new();
        if self.eat_kw("rename") {
            if self.eat_kw("to") {
                actions.push(AlterTableAction::RenameTable(self.col_id()?));
            } else if self.is_kw("constraint") {
                actions.push(AlterTableAction::Unsupported("RENAME CONSTRAINT".into()));
                self.skip_element();
            } else {
                self.eat_kw("column");
                let from = self.col_id()?;
                self.expect_kw("to")?;
                let to = self.col_id()?;
                actions.push(AlterTableAction::RenameColumn { from, to });
            }
        } else if self.is_kw("set") && self.is_kw_at(1, "schema") {
            self.pos += 2;
            actions.push(AlterTableAction::SetSchema(self.col_id()?));
        } else {
            loop {
                actions.push(self.alter_table_cmd()?);
                if !self.eat(&Token::Comma) {
                    break;
                }
            }
        }
        Ok(Ddl::AlterForeignTable(AlterForeignTable { if_exists, table, actions }))
    }

    /// One alter_table_cmd.
    fn alter_table_cmd(&mut self) -> Result<AlterTableAction, CatalogError> {
        let start = self.pos;
        if self.is_kw("options") {
            return Ok(AlterTableAction::Options(self.alter_options()?));
        }
        if self.is_kw("owner") && self.is_kw_at(1, "to") {
            self.pos += 2;
            return Ok(AlterTableAction::OwnerTo(self.role_spec(false)?));
        }
        if self.eat_kw("add") {
            let constraint = ["constraint", "check", "unique", "primary", "exclude", "foreign"];
            if constraint.iter().any(|kw| self.is_kw(kw)) {
                return Ok(self.unsupported_from(start));
            }
            self.eat_kw("column");
            let if_not_exists = self.if_not_exists()?;
            let column = self.column_def()?;
            return Ok(AlterTableAction::AddColumn { if_not_exists, column });
        }
        if self.is_kw("drop") && !self.is_kw_at(1, "constraint") {
            self.pos += 1;
            self.eat_kw("column");
            let if_exists = self.if_exists()?;
            let column = self.col_id()?;
            let cascade = self.drop_behavior();
            return Ok(AlterTableAction::DropColumn { if_exists, column, cascade });
        }
        if self.eat_kw("alter") {
            if self.is_kw("constraint") {
                return Ok(self.unsupported_from(start));
            }
            self.eat_kw("column");
            let column = self.col_id()?;
            if self.is_kw("options") {
                let options = self.alter_options()?;
                return Ok(AlterTableAction::ColumnOptions { column, options });
            }
            if self.is_kw("type") || (self.is_kw("set") && self.is_kw_at(1, "data")) {
                if self.eat_kw("set") {
                    self.expect_kw("data")?;
                }
                self.expect_kw("type")?;
                let type_name = self.type_name()?;
                if self.is_kw("collate") || self.is_kw("using") {
                    return Ok(self.unsupported_from(start));
                }
                return Ok(AlterTableAction::SetType { column, type_name });
            }
            if self.is_kw("set") && self.is_kw_at(1, "default") {
                self.pos += 2;
                let default = self.default_expr()?;
                return Ok(AlterTableAction::SetDefault { column, default });
            }
            if self.is_kw("drop") && self.is_kw_at(1, "default") {
                self.pos += 2;
                return Ok(AlterTableAction::DropDefault { column });
            }
            for (verb, set) in [("set", true), ("drop", false)] {
                if self.is_kw(verb) && self.is_kw_at(1, "not") && self.is_kw_at(2, "null") {
                    self.pos += 3;
                    return Ok(if set {
                        AlterTableAction::SetNotNull { column }
                    } else {
                        AlterTableAction::DropNotNull { column }
                    });
                }
            }
        }
        if self.at_end() || matches!(self.peek(), Some(Token::Comma | Token::SemiColon)) {
            return Err(self.error_here());
        }
        Ok(self.unsupported_from(start))
    }

    /// Records an action pgfed does not implement by its leading words, and skips it.
    fn unsupported_from(&mut self, start: usize) -> AlterTableAction {
        self.pos = start;
        let mut words = Vec::new();
        while let Some(Token::Word(w)) = self.peek() {
            if w.quote_style.is_some() || words.len() == 3 {
                break;
            }
            let upper = w.value.to_uppercase();
            words.push(upper);
            self.pos += 1;
        }
        self.skip_element();
        let name = if words.is_empty() { self.text(start, self.pos).to_string() } else { words.join(" ") };
        AlterTableAction::Unsupported(name)
    }

    /// ImportForeignSchemaStmt.
    fn import_foreign_schema(&mut self) -> Result<Ddl, CatalogError> {
        self.expect_kws(&["foreign", "schema"])?;
        let remote_schema = self.col_id()?;
        let filter = if self.is_kw("limit") && self.is_kw_at(1, "to") {
            self.pos += 2;
            ImportFilter::LimitTo(self.relation_list()?)
        } else if self.eat_kw("except") {
            ImportFilter::Except(self.relation_list()?)
        } else {
            ImportFilter::All
        };
        self.expect_kws(&["from", "server"])?;
        let server = self.col_id()?;
        self.expect_kw("into")?;
        let local_schema = self.col_id()?;
        let options = self.create_options()?;
        Ok(Ddl::ImportForeignSchema(ImportForeignSchema { remote_schema, filter, server, local_schema, options }))
    }

    /// `( relation_expr, ... )`: the relation names (a schema, `ONLY` and `*` are accepted and
    /// ignored, as Postgres ignores them here).
    fn relation_list(&mut self) -> Result<Vec<String>, CatalogError> {
        self.expect(&Token::LParen)?;
        let mut out = Vec::new();
        loop {
            self.eat_kw("only");
            out.push(self.qualified_name()?.name);
            self.eat(&Token::Mul);
            if !self.eat(&Token::Comma) {
                break;
            }
        }
        self.expect(&Token::RParen)?;
        Ok(out)
    }

    /// GrantStmt / RevokeStmt on FOREIGN SERVER.
    fn server_grant(&mut self, grant: bool) -> Result<Ddl, CatalogError> {
        let mut unsupported = Vec::new();
        if !grant && self.is_kw("grant") && self.is_kw_at(1, "option") && self.is_kw_at(2, "for") {
            self.pos += 3;
            unsupported.push("GRANT OPTION FOR".to_string());
        }
        // privileges: ALL [PRIVILEGES] | privilege [, ...]
        if self.eat_kw("all") {
            self.eat_kw("privileges");
        } else {
            loop {
                let at = self.pos;
                let privilege = self.ident(IdentKind::ColLabel)?;
                if privilege != "usage" {
                    self.pos = at;
                    return Err(CatalogError::InvalidGrant(format!(
                        "invalid privilege type {} for foreign server",
                        privilege.to_uppercase()
                    )));
                }
                if !self.eat(&Token::Comma) {
                    break;
                }
            }
        }
        self.expect_kws(&["on", "foreign", "server"])?;
        let servers = self.col_id_list()?;
        self.expect_kw(if grant { "to" } else { "from" })?;
        let mut roles = Vec::new();
        loop {
            self.eat_kw("group");
            roles.push(self.role_spec(false)?);
            if !self.eat(&Token::Comma) {
                break;
            }
        }
        if grant && self.is_kw("with") {
            self.expect_kws(&["with", "grant", "option"])?;
            unsupported.push("WITH GRANT OPTION".to_string());
        }
        if self.eat_kw("granted") {
            self.expect_kw("by")?;
            self.role_spec(false)?;
            unsupported.push("GRANTED BY".to_string());
        }
        if !grant {
            self.drop_behavior();
        }
        Ok(Ddl::ServerGrant(ServerGrant { grant, servers, roles, unsupported }))
    }

    /// After a statement: semicolons, then nothing.
    fn finish(&mut self) -> Result<(), CatalogError> {
        while self.eat(&Token::SemiColon) {}
        if self.at_end() {
            return Ok(());
        }
        Err(CatalogError::NotSupported(
            "more than one statement in a query string with SQL/MED DDL; send each statement on its own".into(),
        ))
    }
}

fn line_starts(sql: &str) -> Vec<usize> {
    std::iter::once(0).chain(sql.match_indices('\n').map(|(i, _)| i + 1)).collect()
}

pub(super) fn parse_statement(sql: &str) -> Result<Ddl, CatalogError> {
    let mut p = Parser::new(sql)?;
    let ddl = p.statement()?;
    if !p.at_end() && p.peek() != Some(&Token::SemiColon) {
        return Err(p.error_here());
    }
    p.finish()?;
    Ok(ddl)
}
