//! CREATE/ALTER/DROP SERVER and GRANT/REVOKE USAGE ON FOREIGN SERVER.

use pgfed_connector_sdk::{OptionLevel, ScanContext};
use pgfed_session::UpstreamSession;

use super::{
    apply_option_changes, current_role, ensure_catalog, execute, flag, notice, notify, options_from_json, options_json,
    query, text, validate,
};
use crate::ddl::{AlterServer, AlterServerAction, CreateServer, DropServer, RoleSpec, ServerGrant, option_pairs};
use crate::{CatalogError, Registry, quote};

/// The SQL condition "the current role may use server `s`": a member of its owner, or of a role
/// granted USAGE (`-`, OID 0, is PUBLIC). Postgres superusers are members of every role.
pub(super) const HAS_USAGE: &str = "(pg_catalog.pg_has_role(s.owner::oid, 'USAGE') \
     OR 0::oid = ANY (s.usage::oid[]) \
     OR EXISTS (SELECT 1 FROM pg_catalog.unnest(s.usage::oid[]) g (oid) \
                WHERE g.oid <> 0 AND pg_catalog.pg_has_role(g.oid, 'USAGE')))";

/// A server as the current role sees it.
pub(super) struct ServerRow {
    pub name: String,
    pub wrapper: String,
    pub is_owner: bool,
    pub has_usage: bool,
    pub options: Vec<(String, String)>,
}

pub(super) async fn server_row(session: &dyn UpstreamSession, name: &str) -> Result<Option<ServerRow>, CatalogError> {
    let sql = format!(
        "SELECT s.wrapper, pg_catalog.pg_has_role(s.owner::oid, 'USAGE')::text, {HAS_USAGE}::text, s.options::text \
         FROM pgfed.servers s WHERE s.name = $1"
    );
    let rows = query(session, &sql, &[Some(name.to_string())]).await?;
    let Some(row) = rows.first() else { return Ok(None) };
    Ok(Some(ServerRow {
        name: name.to_string(),
        wrapper: text(row, 0)?,
        is_owner: flag(row, 1),
        has_usage: flag(row, 2),
        options: options_from_json(&text(row, 3)?)?,
    }))
}

/// The server, or Postgres's error for a missing one.
pub(super) async fn existing_server(session: &dyn UpstreamSession, name: &str) -> Result<ServerRow, CatalogError> {
    server_row(session, name).await?.ok_or_else(|| missing(name))
}

pub(super) fn missing(name: &str) -> CatalogError {
    CatalogError::UndefinedObject(format!("server \"{name}\" does not exist"))
}

pub(super) fn not_owner(name: &str) -> CatalogError {
    CatalogError::InsufficientPrivilege { message: format!("must be owner of foreign server {name}"), hint: None }
}

pub(super) fn no_usage(name: &str) -> CatalogError {
    CatalogError::InsufficientPrivilege {
        message: format!("permission denied for foreign server {name}"),
        hint: Some(format!("The server's owner can run GRANT USAGE ON FOREIGN SERVER {name} TO <role>.")),
    }
}

fn no_wrapper_usage(wrapper: &str) -> CatalogError {
    CatalogError::InsufficientPrivilege {
        message: format!("permission denied for foreign-data wrapper {wrapper}"),
        hint: Some(
            "pgfed's analogue of USAGE on a foreign-data wrapper is INSERT on pgfed.servers: an administrator \
             can run GRANT INSERT ON pgfed.servers TO <role>."
                .into(),
        ),
    }
}

pub(super) fn wrapper<'r>(
    registry: &'r Registry,
    name: &str,
) -> Result<&'r std::sync::Arc<dyn pgfed_connector_sdk::Wrapper>, CatalogError> {
    registry.get(name).ok_or_else(|| CatalogError::UnknownWrapper { name: name.to_string(), known: registry.names() })
}

async fn postgres_has_server(session: &dyn UpstreamSession, name: &str) -> Result<bool, CatalogError> {
    let rows = query(
        session,
        "SELECT 1::text FROM pg_catalog.pg_foreign_server WHERE srvname = $1",
        &[Some(name.to_string())],
    )
    .await?;
    Ok(!rows.is_empty())
}

pub(super) async fn create(
    session: &dyn UpstreamSession,
    registry: &Registry,
    c: &CreateServer,
    ctx: &ScanContext,
) -> Result<(), CatalogError> {
    let w = wrapper(registry, &c.wrapper)?;
    let options = option_pairs(&c.options);
    validate(w.options(), OptionLevel::Server, &options)?;
    ensure_catalog(session).await?;
    let exists = |ctx: &ScanContext| {
        if c.if_not_exists {
            notice(ctx, format!("server \"{}\" already exists, skipping", c.name), None);
            Ok(())
        } else {
            Err(CatalogError::DuplicateObject(format!("server \"{}\" already exists", c.name)))
        }
    };
    // One namespace for servers, as in Postgres: a postgres_fdw server of that name is a clash.
    if postgres_has_server(session, &c.name).await? {
        return exists(ctx);
    }
    let may_create =
        query(session, "SELECT pg_catalog.has_table_privilege('pgfed.servers', 'INSERT')::text", &[]).await?;
    if !may_create.first().is_some_and(|r| flag(r, 0)) {
        return Err(no_wrapper_usage(&c.wrapper));
    }
    let inserted = execute(
        session,
        "INSERT INTO pgfed.servers (name, wrapper, server_type, server_version, owner, options) \
         SELECT $1, $2, $3, $4, r.oid::regrole, $5::jsonb FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER \
         ON CONFLICT DO NOTHING",
        &[
            Some(c.name.clone()),
            Some(c.wrapper.clone()),
            c.server_type.clone(),
            c.version.clone(),
            Some(options_json(&options)),
        ],
    )
    .await?;
    if inserted == 0 {
        return exists(ctx);
    }
    notify(session).await
}

pub(super) async fn alter(
    session: &dyn UpstreamSession,
    registry: &Registry,
    a: &AlterServer,
) -> Result<(), CatalogError> {
    let server = existing_server(session, &a.name).await?;
    if !server.is_owner {
        return Err(not_owner(&a.name));
    }
    match &a.action {
        AlterServerAction::Change { version, options } => {
            let w = wrapper(registry, &server.wrapper)?;
            let new = apply_option_changes(server.options, options)?;
            validate(w.options(), OptionLevel::Server, &new)?;
            execute(
                session,
                "UPDATE pgfed.servers SET options = $2::jsonb, \
                 server_version = CASE WHEN $3::bool THEN $4 ELSE server_version END WHERE name = $1",
                &[
                    Some(a.name.clone()),
                    Some(options_json(&new)),
                    Some(version.is_some().to_string()),
                    version.clone().flatten(),
                ],
            )
            .await?;
        }
        AlterServerAction::OwnerTo(spec) => {
            let (oid, role) = resolve_role(session, spec).await?;
            if oid == 0 {
                return Err(CatalogError::UndefinedObject("role \"public\" does not exist".into()));
            }
            let rows = query(
                session,
                "SELECT pg_catalog.pg_has_role($1::oid, 'MEMBER')::text, \
                 pg_catalog.has_table_privilege($1::oid, 'pgfed.servers', 'INSERT')::text",
                &[Some(oid.to_string())],
            )
            .await?;
            let row = rows.first().ok_or_else(|| CatalogError::Internal("privilege query returned no row".into()))?;
            if !flag(row, 0) {
                return Err(CatalogError::InsufficientPrivilege {
                    message: format!("must be member of role \"{role}\""),
                    hint: None,
                });
            }
            if !flag(row, 1) {
                return Err(no_wrapper_usage(&server.wrapper));
            }
            execute(
                session,
                "UPDATE pgfed.servers SET owner = $2::oid::regrole WHERE name = $1",
                &[Some(a.name.clone()), Some(oid.to_string())],
            )
            .await?;
        }
        AlterServerAction::Rename(new) => {
            if server_row(session, new).await?.is_some() || postgres_has_server(session, new).await? {
                return Err(CatalogError::DuplicateObject(format!("server \"{new}\" already exists")));
            }
            // The foreign keys rename the server in mappings and tables too.
            execute(
                session,
                "UPDATE pgfed.servers SET name = $2 WHERE name = $1",
                &[Some(a.name.clone()), Some(new.clone())],
            )
            .await?;
        }
    }
    notify(session).await
}

pub(super) async fn drop(session: &dyn UpstreamSession, d: &DropServer, ctx: &ScanContext) -> Result<(), CatalogError> {
    let mut changed = false;
    for name in &d.names {
        let Some(server) = server_row(session, name).await? else {
            if d.if_exists {
                notice(ctx, format!("server \"{name}\" does not exist, skipping"), None);
                continue;
            }
            return Err(missing(name));
        };
        if !server.is_owner {
            return Err(not_owner(name));
        }
        let param = [Some(server.name.clone())];
        // Rows of shadows dropped behind pgfed's back are not dependents.
        execute(
            session,
            "DELETE FROM pgfed.foreign_tables t WHERE t.server = $1 \
             AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t.shadow::oid)",
            &param,
        )
        .await?;
        let mappings = query(
            session,
            "SELECT CASE WHEN umuser::oid = 0 THEN 'public' ELSE umuser::text END FROM pgfed.user_mappings \
             WHERE server = $1 ORDER BY 1",
            &param,
        )
        .await?;
        let tables = query(
            session,
            "SELECT n.nspname::text, c.relname::text, c.oid::text FROM pgfed.foreign_tables t \
             JOIN pg_catalog.pg_class c ON c.oid = t.shadow::oid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE t.server = $1 ORDER BY 1, 2",
            &param,
        )
        .await?;
        let mut dependents = Vec::new();
        for m in &mappings {
            dependents.push(format!("user mapping for {} on server {name}", text(m, 0)?));
        }
        for t in &tables {
            dependents.push(format!("foreign table {}", text(t, 1)?));
        }
        if !dependents.is_empty() && !d.cascade {
            let detail: Vec<String> = dependents.iter().map(|o| format!("{o} depends on server {name}")).collect();
            return Err(CatalogError::DependentObjects {
                message: format!("cannot drop server {name} because other objects depend on it"),
                detail: detail.join("\n"),
            });
        }
        for t in &tables {
            let shadow = quote::qualified(&text(t, 0)?, &text(t, 1)?);
            execute(session, &format!("DROP TABLE {shadow} CASCADE"), &[]).await?;
            execute(session, "DELETE FROM pgfed.foreign_tables WHERE shadow::oid = $1::oid", &[Some(text(t, 2)?)])
                .await?;
        }
        match dependents.len() {
            0 => {}
            1 => notice(ctx, format!("drop cascades to {}", dependents[0]), None),
            n => {
                let detail: Vec<String> = dependents.iter().map(|o| format!("drop cascades to {o}")).collect();
                notice(ctx, format!("drop cascades to {n} other objects"), Some(detail.join("\n")));
            }
        }
        // The foreign keys delete the user mappings (and their options) with the server.
        execute(session, "DELETE FROM pgfed.servers WHERE name = $1", &param).await?;
        changed = true;
    }
    if changed {
        notify(session).await?;
    }
    Ok(())
}

pub(super) async fn grant(session: &dyn UpstreamSession, g: &ServerGrant) -> Result<(), CatalogError> {
    if let Some(what) = g.unsupported.first() {
        return Err(CatalogError::NotSupported(format!("{what} is not supported for pgfed foreign servers")));
    }
    let mut oids = Vec::new();
    for spec in &g.roles {
        oids.push(resolve_role(session, spec).await?.0);
    }
    let array = format!("{{{}}}", oids.iter().map(u32::to_string).collect::<Vec<_>>().join(","));
    for name in &g.servers {
        let server = existing_server(session, name).await?;
        if !server.is_owner {
            return Err(not_owner(name));
        }
        let sql = if g.grant {
            "UPDATE pgfed.servers SET usage = (SELECT coalesce(pg_catalog.array_agg(DISTINCT x), '{}')::oid[]::regrole[] \
             FROM pg_catalog.unnest(usage::oid[] || $2::oid[]) x) WHERE name = $1"
        } else {
            "UPDATE pgfed.servers SET usage = (SELECT coalesce(pg_catalog.array_agg(x), '{}')::oid[]::regrole[] \
             FROM pg_catalog.unnest(usage::oid[]) x WHERE x <> ALL ($2::oid[])) WHERE name = $1"
        };
        execute(session, sql, &[Some(name.clone()), Some(array.clone())]).await?;
    }
    notify(session).await
}

/// A role spec as (OID, name); PUBLIC is (0, "public").
pub(crate) async fn resolve_role(
    session: &dyn UpstreamSession,
    spec: &RoleSpec,
) -> Result<(u32, String), CatalogError> {
    let (sql, param) = match spec {
        RoleSpec::Public => return Ok((0, "public".into())),
        RoleSpec::CurrentUser => return current_role(session).await,
        RoleSpec::SessionUser => {
            ("SELECT r.oid::text, r.rolname::text FROM pg_catalog.pg_roles r WHERE r.rolname = SESSION_USER", None)
        }
        RoleSpec::Named(n) => {
            ("SELECT r.oid::text, r.rolname::text FROM pg_catalog.pg_roles r WHERE r.rolname = $1", Some(n.clone()))
        }
    };
    let params: Vec<Option<String>> = param.into_iter().map(Some).collect();
    let rows = query(session, sql, &params).await?;
    let row = rows.first().ok_or_else(|| CatalogError::UndefinedObject(format!("role \"{spec}\" does not exist")))?;
    Ok((super::number(row, 0)?, text(row, 1)?))
}
