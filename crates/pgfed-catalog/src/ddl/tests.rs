use proptest::prelude::*;

use super::*;
use crate::quote;

fn ok(sql: &str) -> Ddl {
    match parse(sql) {
        Some(Ok(d)) => d,
        other => panic!("{sql}: {other:?}"),
    }
}

fn err(sql: &str) -> CatalogError {
    match parse(sql) {
        Some(Err(e)) => e,
        other => panic!("{sql}: expected an error, got {other:?}"),
    }
}

fn add(name: &str, value: &str) -> OptionItem {
    OptionItem { action: OptionAction::Add, name: name.into(), value: Some(value.into()) }
}

#[test]
fn other_statements_are_not_med_ddl() {
    for sql in [
        "select 1",
        "CREATE TABLE server (a int)",
        "create user bob",
        "CREATE FOREIGN DATA WRAPPER w",
        "drop table t",
        "alter user bob with password 'x'",
        "GRANT SELECT ON t TO bob",
        "GRANT USAGE ON FOREIGN DATA WRAPPER w TO bob",
        "grant select on \"on foreign server\" to x",
        "import x",
        "",
        "  -- create server\n select 1",
        "'create server'",
    ] {
        assert!(parse(sql).is_none(), "{sql}");
    }
}

#[test]
fn create_server_in_all_its_spellings() {
    assert_eq!(
        ok("CREATE SERVER IF NOT EXISTS \"My Srv\" TYPE 'x' VERSION '1.0' FOREIGN DATA WRAPPER Postgres \
            OPTIONS (host 'h', \"Port\" '5432', dbname E'a\\'b', sslmode $$dis'able$$);"),
        Ddl::CreateServer(CreateServer {
            if_not_exists: true,
            name: "My Srv".into(),
            server_type: Some("x".into()),
            version: Some("1.0".into()),
            wrapper: "postgres".into(),
            options: vec![add("host", "h"), add("Port", "5432"), add("dbname", "a'b"), add("sslmode", "dis'able")],
        })
    );
    let Ddl::CreateServer(c) = ok("/* c */ create server s foreign data wrapper w") else { panic!() };
    assert_eq!((c.name.as_str(), c.wrapper.as_str(), c.options.len(), c.if_not_exists), ("s", "w", 0, false));
    // A server may be called "if".
    let Ddl::CreateServer(c) = ok("create server if foreign data wrapper w") else { panic!() };
    assert_eq!(c.name, "if");
}

#[test]
fn string_literals_follow_postgres() {
    let value = |sql: &str| match ok(sql) {
        Ddl::CreateServer(c) => c.options[0].value.clone().expect("value"),
        other => panic!("{other:?}"),
    };
    assert_eq!(value("create server s foreign data wrapper w options (a 'it''s')"), "it's");
    assert_eq!(value("create server s foreign data wrapper w options (a E'tab\\there\\\\')"), "tab\there\\");
    assert_eq!(value("create server s foreign data wrapper w options (a 'back\\slash')"), "back\\slash");
    assert_eq!(value("create server s foreign data wrapper w options (a 'con'\n'tinued')"), "continued");
    assert_eq!(value("create server s foreign data wrapper w options (a $t$x$$y$t$)"), "x$$y");
    // Two literals on one line are not one literal.
    assert_eq!(err("create server s foreign data wrapper w options (a 'x' 'y')").sqlstate(), "42601");
    // Option values are string literals only, as in Postgres.
    assert_eq!(err("create server s foreign data wrapper w options (port 5432)").sqlstate(), "42601");
}

#[test]
fn identifiers_fold_and_truncate() {
    let long = "a".repeat(70);
    let Ddl::CreateServer(c) = ok(&format!("create server {long} foreign data wrapper w")) else { panic!() };
    assert_eq!(c.name.len(), 63);
    let Ddl::CreateServer(c) = ok("create server \"ÄÖ\" foreign data wrapper W") else { panic!() };
    assert_eq!((c.name.as_str(), c.wrapper.as_str()), ("ÄÖ", "w"));
    // Reserved words need quotes; non-reserved keywords do not.
    assert_eq!(err("create server select foreign data wrapper w").sqlstate(), "42601");
    let Ddl::CreateServer(c) = ok("create server \"select\" foreign data wrapper w") else { panic!() };
    assert_eq!(c.name, "select");
    let Ddl::CreateServer(c) = ok("create server name foreign data wrapper w") else { panic!() };
    assert_eq!(c.name, "name");
}

#[test]
fn alter_and_drop_server() {
    assert_eq!(
        ok("ALTER SERVER s VERSION '2' OPTIONS (ADD a 'x', SET b 'y', DROP c, set 'z')"),
        Ddl::AlterServer(AlterServer {
            name: "s".into(),
            action: AlterServerAction::Change {
                version: Some(Some("2".into())),
                options: vec![
                    add("a", "x"),
                    OptionItem { action: OptionAction::Set, name: "b".into(), value: Some("y".into()) },
                    OptionItem { action: OptionAction::Drop, name: "c".into(), value: None },
                    add("set", "z"),
                ],
            },
        })
    );
    assert_eq!(
        ok("alter server s version null"),
        Ddl::AlterServer(AlterServer {
            name: "s".into(),
            action: AlterServerAction::Change { version: Some(None), options: vec![] }
        })
    );
    assert_eq!(
        ok("alter server s owner to current_role"),
        Ddl::AlterServer(AlterServer { name: "s".into(), action: AlterServerAction::OwnerTo(RoleSpec::CurrentUser) })
    );
    assert_eq!(
        ok("alter server s rename to \"T\""),
        Ddl::AlterServer(AlterServer { name: "s".into(), action: AlterServerAction::Rename("T".into()) })
    );
    assert_eq!(err("alter server s").sqlstate(), "42601");
    assert_eq!(err("alter server s options (drop a 'x')").sqlstate(), "42601");
    assert_eq!(
        ok("drop server if exists a, \"B\" cascade;;"),
        Ddl::DropServer(DropServer { if_exists: true, names: vec!["a".into(), "B".into()], cascade: true })
    );
    assert_eq!(
        ok("DROP SERVER a RESTRICT"),
        Ddl::DropServer(DropServer { if_exists: false, names: vec!["a".into()], cascade: false })
    );
}

#[test]
fn user_mappings_name_roles_as_postgres_does() {
    let user = |sql: &str| match ok(sql) {
        Ddl::CreateUserMapping(c) => c.user,
        Ddl::AlterUserMapping(a) => a.user,
        Ddl::DropUserMapping(d) => d.user,
        other => panic!("{other:?}"),
    };
    assert_eq!(user("create user mapping for public server s"), RoleSpec::Public);
    assert_eq!(user("create user mapping for \"public\" server s"), RoleSpec::Public);
    assert_eq!(user("create user mapping for USER server s"), RoleSpec::CurrentUser);
    assert_eq!(user("create user mapping for current_user server s"), RoleSpec::CurrentUser);
    assert_eq!(user("create user mapping for current_role server s"), RoleSpec::CurrentUser);
    assert_eq!(user("create user mapping for session_user server s"), RoleSpec::SessionUser);
    assert_eq!(user("create user mapping for \"Bob\" server s"), RoleSpec::Named("Bob".into()));
    assert_eq!(user("alter user mapping for bob server s options (set password 'x')"), RoleSpec::Named("bob".into()));
    assert_eq!(user("drop user mapping if exists for bob server s"), RoleSpec::Named("bob".into()));
    let Ddl::CreateUserMapping(c) =
        ok("create user mapping if not exists for bob server s options (user 'u', password 'p')")
    else {
        panic!()
    };
    assert!(c.if_not_exists);
    assert_eq!(option_pairs(&c.options), vec![("user".into(), "u".into()), ("password".into(), "p".into())]);
    assert_eq!(err("alter user mapping for bob server s").sqlstate(), "42601");
}

#[test]
fn create_foreign_table_keeps_types_as_text() {
    let Ddl::CreateForeignTable(c) = ok("CREATE FOREIGN TABLE IF NOT EXISTS Sales.\"Orders\" (
            id bigint OPTIONS (column_name 'ID') NOT NULL,
            amount NUMERIC(12, 2) DEFAULT 0,
            placed timestamp with time zone null,
            t2 TIME(3) WITHOUT TIME ZONE,
            tags text[],
            grid int[3][],
            legacy int ARRAY,
            name character varying(20) constraint nn not null,
            c2 national character varying (5),
            f double precision default -1.5,
            iv interval day to second(3),
            code \"char\",
            q public.\"MyType\",
            d date DEFAULT now()::date
        ) SERVER s OPTIONS (schema_name 'x', table_name 'orders')")
    else {
        panic!()
    };
    assert!(c.if_not_exists);
    assert_eq!(c.table, QualifiedName { schema: Some("sales".into()), name: "Orders".into() });
    let types: Vec<&str> = c.columns.iter().map(|c| c.type_name.as_str()).collect();
    assert_eq!(
        types,
        [
            "bigint",
            "numeric(12,2)",
            "timestamp with time zone",
            "time(3) without time zone",
            "text[]",
            "int[3][]",
            "int[]",
            "character varying(20)",
            "national character varying(5)",
            "double precision",
            "interval day to second(3)",
            "\"char\"",
            "public.\"MyType\"",
            "date",
        ]
    );
    assert!(c.columns[0].not_null && !c.columns[2].not_null && c.columns[7].not_null);
    assert_eq!(option_pairs(&c.columns[0].options), vec![("column_name".into(), "ID".into())]);
    assert_eq!(c.columns[1].default.as_deref(), Some("0"));
    assert_eq!(c.columns[9].default.as_deref(), Some("-1.5"));
    assert_eq!(c.columns[13].default.as_deref(), Some("now()::DATE"));
    assert_eq!(c.server, "s");
    assert!(c.unsupported.is_empty() && c.columns.iter().all(|c| c.unsupported.is_empty()));
    let Ddl::CreateForeignTable(c) = ok("create foreign table t () server s") else { panic!() };
    assert!(c.columns.is_empty());
}

#[test]
fn defaults_are_rendered_from_a_syntax_tree() {
    let Ddl::CreateForeignTable(c) =
        ok("create foreign table t (a text default 'it''s' || E'\\\\' not null, b int default null) server s")
    else {
        panic!()
    };
    assert_eq!(c.columns[0].default.as_deref(), Some("'it''s' || E'\\\\'"));
    assert!(c.columns[0].not_null);
    assert_eq!(c.columns[1].default.as_deref(), Some("NULL"));
    assert_eq!(err("create foreign table t (a int default) server s").sqlstate(), "42601");
    assert_eq!(err("create foreign table t (a int default 1 +) server s").sqlstate(), "42601");
}

#[test]
fn unsupported_features_are_recorded_not_rejected() {
    // A real postgres_fdw server may use them: the statement must still parse, to go upstream.
    let Ddl::CreateForeignTable(c) = ok("create foreign table t (
            a int collate \"C\" check (a > 0) not null,
            b int generated always as (a * 2) stored,
            constraint c check (a < b),
            like other
        ) inherits (p) server s")
    else {
        panic!()
    };
    assert_eq!(c.columns[0].unsupported, ["COLLATE", "CHECK"]);
    assert!(c.columns[0].not_null);
    assert_eq!(c.columns[1].unsupported, ["GENERATED"]);
    assert_eq!(c.unsupported, ["table constraints", "LIKE", "INHERITS"]);
    assert_eq!(c.server, "s");
    let Ddl::CreateForeignTable(c) =
        ok("create foreign table p1 partition of p (a default 1) for values in ('server') server s options (x 'y')")
    else {
        panic!()
    };
    assert_eq!((c.unsupported.as_slice(), c.server.as_str()), (&["PARTITION OF".to_string()][..], "s"));
}

#[test]
fn alter_foreign_table_actions() {
    let Ddl::AlterForeignTable(a) = ok("ALTER FOREIGN TABLE IF EXISTS ONLY s.t * \
        OPTIONS (SET table_name 'x'), ALTER COLUMN a OPTIONS (ADD column_name 'A'), ADD COLUMN IF NOT EXISTS b text \
        OPTIONS (column_name 'B') NOT NULL, DROP c CASCADE, ALTER d TYPE numeric(5,-2), \
        ALTER COLUMN e SET DATA TYPE bigint, ALTER e SET DEFAULT 1, ALTER e DROP DEFAULT, ALTER e SET NOT NULL, \
        ALTER e DROP NOT NULL, OWNER TO bob, ENABLE TRIGGER ALL, ALTER e SET STATISTICS 5")
    else {
        panic!()
    };
    assert!(a.if_exists);
    assert_eq!(a.table, QualifiedName { schema: Some("s".into()), name: "t".into() });
    use AlterTableAction as A;
    let expected = vec![
        A::Options(vec![OptionItem { action: OptionAction::Set, name: "table_name".into(), value: Some("x".into()) }]),
        A::ColumnOptions { column: "a".into(), options: vec![add("column_name", "A")] },
        A::AddColumn {
            if_not_exists: true,
            column: ColumnDef {
                name: "b".into(),
                type_name: "text".into(),
                not_null: true,
                default: None,
                options: vec![add("column_name", "B")],
                unsupported: vec![],
            },
        },
        A::DropColumn { if_exists: false, column: "c".into(), cascade: true },
        A::SetType { column: "d".into(), type_name: "numeric(5,-2)".into() },
        A::SetType { column: "e".into(), type_name: "bigint".into() },
        A::SetDefault { column: "e".into(), default: "1".into() },
        A::DropDefault { column: "e".into() },
        A::SetNotNull { column: "e".into() },
        A::DropNotNull { column: "e".into() },
        A::OwnerTo(RoleSpec::Named("bob".into())),
        A::Unsupported("ENABLE TRIGGER ALL".into()),
        A::Unsupported("ALTER E SET".into()),
    ];
    assert_eq!(a.actions, expected);
    let actions = |sql: &str| match ok(sql) {
        Ddl::AlterForeignTable(a) => a.actions,
        other => panic!("{other:?}"),
    };
    assert_eq!(actions("alter foreign table t rename to u"), [A::RenameTable("u".into())]);
    assert_eq!(actions("alter foreign table t rename a to b"), [A::RenameColumn { from: "a".into(), to: "b".into() }]);
    assert_eq!(
        actions("alter foreign table t rename column a to b"),
        [A::RenameColumn { from: "a".into(), to: "b".into() }]
    );
    assert_eq!(actions("alter foreign table t set schema x"), [A::SetSchema("x".into())]);
    assert_eq!(err("alter foreign table t").sqlstate(), "42601");
    assert_eq!(err("alter foreign table t rename to u, add b int").sqlstate(), "42601");
}

#[test]
fn drop_foreign_table_and_import() {
    assert_eq!(
        ok("drop foreign table if exists a, s.b restrict"),
        Ddl::DropForeignTable(DropForeignTable {
            if_exists: true,
            tables: vec![
                QualifiedName { schema: None, name: "a".into() },
                QualifiedName { schema: Some("s".into()), name: "b".into() },
            ],
            cascade: false,
        })
    );
    assert_eq!(
        ok("IMPORT FOREIGN SCHEMA \"Remote\" LIMIT TO (a, \"B\", x.c) FROM SERVER s INTO local OPTIONS (k 'v')"),
        Ddl::ImportForeignSchema(ImportForeignSchema {
            remote_schema: "Remote".into(),
            filter: ImportFilter::LimitTo(vec!["a".into(), "B".into(), "c".into()]),
            server: "s".into(),
            local_schema: "local".into(),
            options: vec![add("k", "v")],
        })
    );
    let Ddl::ImportForeignSchema(i) = ok("import foreign schema public except (t) from server s into x") else {
        panic!()
    };
    assert_eq!(i.filter, ImportFilter::Except(vec!["t".into()]));
    assert_eq!(err("import foreign schema public from server s").sqlstate(), "42601");
}

#[test]
fn grant_and_revoke_usage_on_servers() {
    assert_eq!(
        ok("GRANT USAGE ON FOREIGN SERVER a, b TO bob, GROUP public WITH GRANT OPTION"),
        Ddl::ServerGrant(ServerGrant {
            grant: true,
            servers: vec!["a".into(), "b".into()],
            roles: vec![RoleSpec::Named("bob".into()), RoleSpec::Public],
            unsupported: vec!["WITH GRANT OPTION".into()],
        })
    );
    assert_eq!(
        ok("revoke all privileges on foreign server a from current_user cascade"),
        Ddl::ServerGrant(ServerGrant {
            grant: false,
            servers: vec!["a".into()],
            roles: vec![RoleSpec::CurrentUser],
            unsupported: vec![],
        })
    );
    let e = err("grant select on foreign server a to bob");
    assert_eq!((e.sqlstate(), e.to_string().as_str()), ("0LP01", "invalid privilege type SELECT for foreign server"));
}

#[test]
fn syntax_errors_point_at_the_token_like_postgres() {
    let e = err("create server s foreign data wrapper w options (host 'h' port '1')");
    assert_eq!(e.sqlstate(), "42601");
    assert_eq!(e.to_string(), "syntax error at or near \"port\"");
    assert_eq!(e.position(), Some(58));
    let e = err("create server s foreign data wrapper");
    assert_eq!(e.to_string(), "syntax error at end of input");
    assert_eq!(e.position(), Some(37));
    let e = err("create server s\nforeign data wrapper w options (a 'x");
    assert_eq!(e.sqlstate(), "42601");
    let e = err("create foreign table t (a int) server s; select 1");
    assert_eq!(e.sqlstate(), "0A000");
    let e = err("create foreign table t (\"\" int) server s");
    assert_eq!(e.sqlstate(), "42601");
}

#[test]
fn accessors_name_wrappers_servers_and_tables() {
    assert_eq!(ok("create server s foreign data wrapper w").wrapper(), Some("w"));
    assert_eq!(ok("drop server a, b").servers(), ["a", "b"]);
    assert_eq!(ok("create foreign table t (a int) server s").servers(), ["s"]);
    assert_eq!(ok("import foreign schema r from server s into l").servers(), ["s"]);
    assert!(ok("create server s foreign data wrapper w").servers().is_empty());
    let d = ok("drop foreign table a, x.b");
    assert_eq!(d.tables().iter().map(|t| t.to_string()).collect::<Vec<_>>(), ["a", "x.b"]);
    assert_eq!(d.command_tag(), "DROP FOREIGN TABLE");
}

#[test]
fn debug_output_never_shows_option_values() {
    let d = ok("create user mapping for bob server s options (user 'u', password 'hunter2')");
    let shown = format!("{d:?}");
    assert!(!shown.contains("hunter2") && shown.contains("password"), "{shown}");
}

#[test]
fn type_names_from_text() {
    assert_eq!(parse_type_name("numeric(20,0)").expect("valid"), "numeric(20,0)");
    assert_eq!(parse_type_name("timestamp(6) without time zone").expect("valid"), "timestamp(6) without time zone");
    assert_eq!(parse_type_name("\"my type\"[]").expect("valid"), "\"my type\"[]");
    for bad in ["int; drop table x", "int)", "text default 1", "", "setof int", "int[1.5]"] {
        assert!(parse_type_name(bad).is_err(), "{bad}");
    }
}

fn arb_name() -> impl Strategy<Value = String> {
    // Any non-empty name without NUL, at most 63 bytes (longer ones are truncated).
    "[^\u{0}]{1,20}".prop_filter("63 bytes at most", |s| s.len() <= 63)
}

proptest! {
    #[test]
    fn quoted_names_and_literals_round_trip(name in arb_name(), value in "[^\u{0}]{0,40}", key in arb_name()) {
        let sql = format!(
            "create server {} foreign data wrapper w options ({} {})",
            quote::ident(&name), quote::ident(&key), quote::literal(&value)
        );
        let Some(Ok(Ddl::CreateServer(c))) = parse(&sql) else { panic!("{sql}") };
        prop_assert_eq!(c.name, name);
        prop_assert_eq!(option_pairs(&c.options), vec![(key, value)]);
    }

    #[test]
    fn unquoted_names_fold_to_lower_case(name in "[a-zA-Z_][a-zA-Z0-9_]{0,30}") {
        let folded = name.to_ascii_lowercase();
        prop_assume!(!["if"].contains(&folded.as_str()));
        match parse(&format!("drop server {name}")) {
            Some(Ok(Ddl::DropServer(d))) => prop_assert_eq!(d.names, vec![folded]),
            // A reserved word: Postgres refuses it unquoted too.
            Some(Err(e)) => prop_assert_eq!(e.sqlstate(), "42601"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arbitrary_text_never_panics(tail in "\\PC{0,80}") {
        for head in ["create server ", "alter foreign table ", "create foreign table t (", "import foreign schema ",
                     "grant usage on foreign server ", "create user mapping for "] {
            let _ = parse(&format!("{head}{tail}"));
        }
    }

    #[test]
    fn type_modifiers_round_trip(p in 1u32..1000, s in 0u32..1000) {
        let sql = format!("create foreign table t (a numeric({p}, {s}) options (column_name 'x')) server s");
        let Some(Ok(Ddl::CreateForeignTable(c))) = parse(&sql) else { panic!("{sql}") };
        prop_assert_eq!(&c.columns[0].type_name, &format!("numeric({p},{s})"));
    }
}
