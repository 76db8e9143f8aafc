//! CREATE/ALTER/DROP USER MAPPING, and reading the session user's mapping.
//!
//! A mapping is two rows: `pgfed.user_mappings` says who has one (readable by all, as
//! pg_user_mappings is) and `pgfed.user_mapping_options` holds its options, which row-level
//! security shows only to the mapped role (a PUBLIC mapping's: to the server's owner; pgfed reads
//! it for the roles with USAGE on its service connection). Option values never appear in errors
//! or logs.

use pgfed_connector_sdk::{OptionLevel, ScanContext};
use pgfed_session::UpstreamSession;

use super::server::{existing_server, not_owner, resolve_role, server_row, wrapper};
use super::{
    apply_option_changes, current_role, execute, notice, notify, options_from_json, options_json, query, text, validate,
};
use crate::ddl::{AlterUserMapping, CreateUserMapping, DropUserMapping, RoleSpec, option_pairs};
use crate::{CatalogError, Registry};

/// The options of the session user's mapping for `server`, else of the PUBLIC mapping; empty if
/// neither exists (or is readable). Read through the client's session, so row-level security
/// decides what it may see.
pub async fn user_mapping(session: &dyn UpstreamSession, server: &str) -> Result<Vec<(String, String)>, CatalogError> {
    let rows = query(
        session,
        "SELECT o.options::text FROM pgfed.user_mapping_options o WHERE o.server = $1 AND (o.umuser::oid = 0 \
         OR o.umuser::oid = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER)) \
         ORDER BY o.umuser::oid = 0 LIMIT 1",
        &[Some(server.to_string())],
    )
    .await?;
    match rows.first() {
        Some(row) => options_from_json(&text(row, 0)?),
        None => Ok(vec![]),
    }
}

/// Whether the session's role has no mapping of its own for `server` but may use its PUBLIC
/// mapping (there is one and the role has USAGE on the server), whose options only pgfed's
/// service connection reads ([`public_user_mapping`]).
pub async fn uses_public_mapping(session: &dyn UpstreamSession, server: &str) -> Result<bool, CatalogError> {
    let Some(row) = server_row(session, server).await? else { return Ok(false) };
    if !(row.has_usage || row.is_owner) {
        return Ok(false);
    }
    let rows = query(
        session,
        "SELECT (EXISTS (SELECT 1 FROM pgfed.user_mappings m WHERE m.server = $1 AND m.umuser::oid = 0) \
         AND NOT EXISTS (SELECT 1 FROM pgfed.user_mappings m WHERE m.server = $1 \
         AND m.umuser::oid = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER)))::text",
        &[Some(server.to_string())],
    )
    .await?;
    Ok(rows.first().and_then(|r| r.first().cloned().flatten()).as_deref() == Some("true"))
}

/// The options of `server`'s PUBLIC mapping, read on pgfed's service connection (never the
/// client's: its role may use the mapping without being allowed to read it). Empty when there is
/// none, or the service role may not read it.
pub async fn public_user_mapping(
    service: &dyn UpstreamSession,
    server: &str,
) -> Result<Vec<(String, String)>, CatalogError> {
    let rows = query(
        service,
        "SELECT o.options::text FROM pgfed.user_mapping_options o WHERE o.server = $1 AND o.umuser::oid = 0",
        &[Some(server.to_string())],
    )
    .await?;
    match rows.first() {
        Some(row) => options_from_json(&text(row, 0)?),
        None => Ok(vec![]),
    }
}

/// Postgres's rule: a role with USAGE on the server manages its own mapping; the server's owner
/// manages everyone's (and PUBLIC's).
fn check_may_manage(server: &super::server::ServerRow, user: u32, me: u32) -> Result<(), CatalogError> {
    if server.is_owner {
        return Ok(());
    }
    if user == me {
        return if server.has_usage { Ok(()) } else { Err(super::server::no_usage(&server.name)) };
    }
    Err(not_owner(&server.name))
}

async fn mapping_exists(session: &dyn UpstreamSession, server: &str, user: u32) -> Result<bool, CatalogError> {
    let rows = query(
        session,
        "SELECT 1::text FROM pgfed.user_mappings WHERE server = $1 AND umuser::oid = $2::oid",
        &[Some(server.to_string()), Some(user.to_string())],
    )
    .await?;
    Ok(!rows.is_empty())
}

pub(super) async fn create(
    session: &dyn UpstreamSession,
    registry: &Registry,
    c: &CreateUserMapping,
    ctx: &ScanContext,
) -> Result<(), CatalogError> {
    let server = existing_server(session, &c.server).await?;
    let w = wrapper(registry, &server.wrapper)?;
    let (user, name) = resolve_role(session, &c.user).await?;
    let options = option_pairs(&c.options);
    validate(w.options(), OptionLevel::UserMapping, &options)?;
    let (me, _) = current_role(session).await?;
    check_may_manage(&server, user, me)?;
    let params = [Some(c.server.clone()), Some(user.to_string())];
    let inserted = execute(
        session,
        "INSERT INTO pgfed.user_mappings (server, umuser) VALUES ($1, $2::oid::regrole) ON CONFLICT DO NOTHING",
        &params,
    )
    .await?;
    if inserted == 0 {
        let message = format!("user mapping for \"{name}\" already exists for server \"{}\"", c.server);
        if c.if_not_exists {
            notice(ctx, format!("{message}, skipping"), None);
            return Ok(());
        }
        return Err(CatalogError::DuplicateObject(message));
    }
    execute(
        session,
        "INSERT INTO pgfed.user_mapping_options (server, umuser, options) VALUES ($1, $2::oid::regrole, $3::jsonb)",
        &[Some(c.server.clone()), Some(user.to_string()), Some(options_json(&options))],
    )
    .await?;
    notify(session).await
}

pub(super) async fn alter(
    session: &dyn UpstreamSession,
    registry: &Registry,
    a: &AlterUserMapping,
) -> Result<(), CatalogError> {
    let server = existing_server(session, &a.server).await?;
    let w = wrapper(registry, &server.wrapper)?;
    let (user, name) = resolve_role(session, &a.user).await?;
    if !mapping_exists(session, &a.server, user).await? {
        return Err(CatalogError::UndefinedObject(format!(
            "user mapping for \"{name}\" does not exist for server \"{}\"",
            a.server
        )));
    }
    let (me, _) = current_role(session).await?;
    check_may_manage(&server, user, me)?;
    let params = [Some(a.server.clone()), Some(user.to_string())];
    let unreadable = || CatalogError::InsufficientPrivilege {
        message: format!(
            "permission denied for the options of the user mapping for \"{name}\" on server \"{}\"",
            a.server
        ),
        hint: Some(
            "Only the mapped role reads and changes its mapping's options; the server's owner may drop the \
             mapping and create it again."
                .into(),
        ),
    };
    let rows = query(
        session,
        "SELECT options::text FROM pgfed.user_mapping_options WHERE server = $1 AND umuser::oid = $2::oid",
        &params,
    )
    .await?;
    let current = options_from_json(&text(rows.first().ok_or_else(unreadable)?, 0)?)?;
    let new = apply_option_changes(current, &a.options)?;
    validate(w.options(), OptionLevel::UserMapping, &new)?;
    let updated = execute(
        session,
        "UPDATE pgfed.user_mapping_options SET options = $3::jsonb WHERE server = $1 AND umuser::oid = $2::oid",
        &[Some(a.server.clone()), Some(user.to_string()), Some(options_json(&new))],
    )
    .await?;
    if updated == 0 {
        return Err(unreadable());
    }
    notify(session).await
}

pub(super) async fn drop(
    session: &dyn UpstreamSession,
    d: &DropUserMapping,
    ctx: &ScanContext,
) -> Result<(), CatalogError> {
    let Some(server) = server_row(session, &d.server).await? else {
        if d.if_exists {
            notice(ctx, format!("server \"{}\" does not exist, skipping", d.server), None);
            return Ok(());
        }
        return Err(super::server::missing(&d.server));
    };
    let (user, name) = match resolve_role(session, &d.user).await {
        Ok(r) => r,
        Err(CatalogError::UndefinedObject(message)) if d.if_exists => {
            if let RoleSpec::Named(_) = d.user {
                notice(ctx, format!("{message}, skipping"), None);
                return Ok(());
            }
            return Err(CatalogError::UndefinedObject(message));
        }
        Err(e) => return Err(e),
    };
    if !mapping_exists(session, &d.server, user).await? {
        let message = format!("user mapping for \"{name}\" does not exist for server \"{}\"", d.server);
        if d.if_exists {
            notice(ctx, format!("{message}, skipping"), None);
            return Ok(());
        }
        return Err(CatalogError::UndefinedObject(message));
    }
    let (me, _) = current_role(session).await?;
    check_may_manage(&server, user, me)?;
    // The foreign key deletes the options row with it.
    execute(
        session,
        "DELETE FROM pgfed.user_mappings WHERE server = $1 AND umuser::oid = $2::oid",
        &[Some(d.server.clone()), Some(user.to_string())],
    )
    .await?;
    notify(session).await
}
