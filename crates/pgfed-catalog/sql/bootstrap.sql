-- pgfed catalog, version 1 (docs/design/catalog.md).
--
-- pgfed runs this script itself, in the client's transaction, on the first SQL/MED statement it
-- executes in a database where schema pgfed does not exist yet. A role that may not create
-- schemas there gets 42501; an administrator (the database owner, say) then runs it once:
--
--     psql -d mydb -1 -f bootstrap.sql
--
-- and grants INSERT on pgfed.servers to the roles that may create servers (pgfed's analogue of
-- GRANT USAGE ON FOREIGN DATA WRAPPER). Every statement is idempotent. The role that runs it owns
-- the catalog tables and, as their owner, is not subject to their row-level security: treat it as
-- the catalog's administrator.
--
-- Functions pin search_path, and policies are stored parse trees, so a caller's search_path
-- cannot redirect what they call.

SELECT pg_catalog.pg_advisory_xact_lock(7307463, 1);

CREATE SCHEMA IF NOT EXISTS pgfed;
GRANT USAGE ON SCHEMA pgfed TO PUBLIC;

-- CREATE SERVER. Options are validated by the connector before they are stored.
CREATE TABLE IF NOT EXISTS pgfed.servers (
    name text PRIMARY KEY,
    wrapper text NOT NULL,
    server_type text,
    server_version text,
    owner regrole NOT NULL,
    -- GRANT USAGE ON FOREIGN SERVER: the grantees ('-', OID 0, is PUBLIC).
    usage regrole[] NOT NULL DEFAULT '{}',
    options jsonb NOT NULL DEFAULT '{}'
);

-- CREATE USER MAPPING: who has a mapping (readable by all, as pg_user_mappings is) ...
CREATE TABLE IF NOT EXISTS pgfed.user_mappings (
    server text NOT NULL REFERENCES pgfed.servers (name) ON UPDATE CASCADE ON DELETE CASCADE,
    -- '-' (OID 0) is PUBLIC.
    umuser regrole NOT NULL,
    PRIMARY KEY (server, umuser)
);

-- ... and its options, the secrets, readable only by the mapped role (PUBLIC mappings: by the
-- roles that may use the server).
CREATE TABLE IF NOT EXISTS pgfed.user_mapping_options (
    server text NOT NULL,
    umuser regrole NOT NULL,
    options jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (server, umuser),
    FOREIGN KEY (server, umuser) REFERENCES pgfed.user_mappings ON UPDATE CASCADE ON DELETE CASCADE
);

-- CREATE FOREIGN TABLE: one row per shadow table, referenced by regclass so that renames and
-- schema moves follow and pg_dump restores it by name.
CREATE TABLE IF NOT EXISTS pgfed.foreign_tables (
    shadow regclass PRIMARY KEY,
    server text NOT NULL REFERENCES pgfed.servers (name) ON UPDATE CASCADE ON DELETE RESTRICT,
    options jsonb NOT NULL DEFAULT '{}',
    -- Column options by attnum (as text): {"1": {"column_name": "id"}}.
    column_options jsonb NOT NULL DEFAULT '{}'
);

-- Refuses writes to a shadow table made directly in Postgres (pgfed itself never writes them).
CREATE OR REPLACE FUNCTION pgfed.shadow_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $guard$
BEGIN
    RAISE EXCEPTION 'cannot % foreign table "%" outside pgfed',
        CASE TG_OP WHEN 'INSERT' THEN 'insert into' WHEN 'DELETE' THEN 'delete from' ELSE lower(TG_OP) END,
        TG_TABLE_NAME
        USING ERRCODE = 'wrong_object_type',
              DETAIL = 'This table is the shadow of a pgfed foreign table: its rows live in the foreign source.',
              HINT = 'Connect through pgfed to read or write it.';
END
$guard$;

ALTER TABLE pgfed.servers ENABLE ROW LEVEL SECURITY;
ALTER TABLE pgfed.user_mappings ENABLE ROW LEVEL SECURITY;
ALTER TABLE pgfed.user_mapping_options ENABLE ROW LEVEL SECURITY;
ALTER TABLE pgfed.foreign_tables ENABLE ROW LEVEL SECURITY;

-- Servers: everyone reads them (as pg_foreign_server); the creator becomes the owner; only
-- members of the owner role alter or drop them.
DROP POLICY IF EXISTS server_read ON pgfed.servers;
CREATE POLICY server_read ON pgfed.servers FOR SELECT USING (true);
DROP POLICY IF EXISTS server_create ON pgfed.servers;
CREATE POLICY server_create ON pgfed.servers FOR INSERT
    WITH CHECK (owner::oid = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER));
DROP POLICY IF EXISTS server_alter ON pgfed.servers;
CREATE POLICY server_alter ON pgfed.servers FOR UPDATE
    USING (pg_catalog.pg_has_role(owner::oid, 'USAGE'))
    WITH CHECK (pg_catalog.pg_has_role(owner::oid, 'USAGE'));
DROP POLICY IF EXISTS server_drop ON pgfed.servers;
CREATE POLICY server_drop ON pgfed.servers FOR DELETE USING (pg_catalog.pg_has_role(owner::oid, 'USAGE'));

-- User mappings: a role with USAGE on the server manages its own; the server's owner manages
-- anyone's (and PUBLIC's).
DROP POLICY IF EXISTS mapping_read ON pgfed.user_mappings;
CREATE POLICY mapping_read ON pgfed.user_mappings FOR SELECT USING (true);
DROP POLICY IF EXISTS mapping_create ON pgfed.user_mappings;
CREATE POLICY mapping_create ON pgfed.user_mappings FOR INSERT WITH CHECK (EXISTS (
    SELECT 1 FROM pgfed.servers s WHERE s.name = user_mappings.server AND (
        pg_catalog.pg_has_role(s.owner::oid, 'USAGE')
        OR (user_mappings.umuser::oid = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER)
            AND (0::oid = ANY (s.usage::oid[])
                 OR EXISTS (SELECT 1 FROM pg_catalog.unnest(s.usage::oid[]) g (oid)
                            WHERE g.oid <> 0 AND pg_catalog.pg_has_role(g.oid, 'USAGE')))))));
DROP POLICY IF EXISTS mapping_drop ON pgfed.user_mappings;
CREATE POLICY mapping_drop ON pgfed.user_mappings FOR DELETE USING (EXISTS (
    SELECT 1 FROM pgfed.servers s WHERE s.name = user_mappings.server AND (
        pg_catalog.pg_has_role(s.owner::oid, 'USAGE')
        OR (user_mappings.umuser::oid = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER)
            AND (0::oid = ANY (s.usage::oid[])
                 OR EXISTS (SELECT 1 FROM pg_catalog.unnest(s.usage::oid[]) g (oid)
                            WHERE g.oid <> 0 AND pg_catalog.pg_has_role(g.oid, 'USAGE')))))));

-- Mapping options: the mapped role reads and changes its own; a PUBLIC mapping's are read and
-- changed by the server's owner only, as pg_user_mappings shows them. Roles with USAGE on the
-- server use a PUBLIC mapping without seeing it: pgfed reads it for them on its service
-- connection (the catalog's owner, to which row-level security does not apply). The server's
-- owner may create a mapping for another role but cannot read it back.
DROP POLICY IF EXISTS mapping_options_read ON pgfed.user_mapping_options;
CREATE POLICY mapping_options_read ON pgfed.user_mapping_options FOR SELECT USING (
    umuser::oid = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER)
    OR (umuser::oid = 0 AND EXISTS (
        SELECT 1 FROM pgfed.servers s WHERE s.name = user_mapping_options.server
            AND pg_catalog.pg_has_role(s.owner::oid, 'USAGE'))));
DROP POLICY IF EXISTS mapping_options_create ON pgfed.user_mapping_options;
CREATE POLICY mapping_options_create ON pgfed.user_mapping_options FOR INSERT WITH CHECK (EXISTS (
    SELECT 1 FROM pgfed.servers s WHERE s.name = user_mapping_options.server AND (
        pg_catalog.pg_has_role(s.owner::oid, 'USAGE')
        OR (user_mapping_options.umuser::oid = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER)
            AND (0::oid = ANY (s.usage::oid[])
                 OR EXISTS (SELECT 1 FROM pg_catalog.unnest(s.usage::oid[]) g (oid)
                            WHERE g.oid <> 0 AND pg_catalog.pg_has_role(g.oid, 'USAGE')))))));
DROP POLICY IF EXISTS mapping_options_alter ON pgfed.user_mapping_options;
CREATE POLICY mapping_options_alter ON pgfed.user_mapping_options FOR UPDATE
    USING (umuser::oid = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER)
           OR (umuser::oid = 0 AND EXISTS (SELECT 1 FROM pgfed.servers s
               WHERE s.name = user_mapping_options.server AND pg_catalog.pg_has_role(s.owner::oid, 'USAGE'))))
    WITH CHECK (umuser::oid = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER)
           OR (umuser::oid = 0 AND EXISTS (SELECT 1 FROM pgfed.servers s
               WHERE s.name = user_mapping_options.server AND pg_catalog.pg_has_role(s.owner::oid, 'USAGE'))));

-- Foreign tables: everyone reads the rows (as pg_foreign_table); creating one needs ownership
-- of the shadow (so CREATE on its schema) and USAGE on the server; changing one needs ownership
-- of the shadow; a row whose shadow is gone may be deleted by anyone.
DROP POLICY IF EXISTS table_read ON pgfed.foreign_tables;
CREATE POLICY table_read ON pgfed.foreign_tables FOR SELECT USING (true);
DROP POLICY IF EXISTS table_create ON pgfed.foreign_tables;
CREATE POLICY table_create ON pgfed.foreign_tables FOR INSERT WITH CHECK (
    EXISTS (SELECT 1 FROM pg_catalog.pg_class c
            WHERE c.oid = foreign_tables.shadow::oid AND pg_catalog.pg_has_role(c.relowner, 'USAGE'))
    AND EXISTS (SELECT 1 FROM pgfed.servers s WHERE s.name = foreign_tables.server AND (
        pg_catalog.pg_has_role(s.owner::oid, 'USAGE')
        OR 0::oid = ANY (s.usage::oid[])
        OR EXISTS (SELECT 1 FROM pg_catalog.unnest(s.usage::oid[]) g (oid)
                   WHERE g.oid <> 0 AND pg_catalog.pg_has_role(g.oid, 'USAGE')))));
DROP POLICY IF EXISTS table_alter ON pgfed.foreign_tables;
CREATE POLICY table_alter ON pgfed.foreign_tables FOR UPDATE
    USING (EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                   WHERE c.oid = foreign_tables.shadow::oid AND pg_catalog.pg_has_role(c.relowner, 'USAGE')))
    WITH CHECK (EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                   WHERE c.oid = foreign_tables.shadow::oid AND pg_catalog.pg_has_role(c.relowner, 'USAGE')));
DROP POLICY IF EXISTS table_drop ON pgfed.foreign_tables;
CREATE POLICY table_drop ON pgfed.foreign_tables FOR DELETE USING (
    NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                WHERE c.oid = foreign_tables.shadow::oid AND NOT pg_catalog.pg_has_role(c.relowner, 'USAGE')));

GRANT SELECT ON pgfed.servers, pgfed.user_mappings, pgfed.user_mapping_options, pgfed.foreign_tables TO PUBLIC;
-- INSERT on pgfed.servers is deliberately not granted: see the top of this file.
GRANT UPDATE, DELETE ON pgfed.servers TO PUBLIC;
GRANT INSERT, DELETE ON pgfed.user_mappings TO PUBLIC;
GRANT INSERT, UPDATE ON pgfed.user_mapping_options TO PUBLIC;
GRANT INSERT, UPDATE, DELETE ON pgfed.foreign_tables TO PUBLIC;

-- Objects created from the catalog files in pgfed.toml ([catalog] files, docs/configuration.md):
-- pgfed's reconciler changes and drops only these, never objects created with DDL. The foreign
-- keys follow renames and remove a row when its object is dropped by other means. `source` is
-- the file and statement that declared the object, for messages. Names only, no options.
CREATE TABLE IF NOT EXISTS pgfed.declared_servers (
    name text PRIMARY KEY REFERENCES pgfed.servers (name) ON UPDATE CASCADE ON DELETE CASCADE,
    source text NOT NULL
);
CREATE TABLE IF NOT EXISTS pgfed.declared_user_mappings (
    server text NOT NULL,
    umuser regrole NOT NULL,
    source text NOT NULL,
    PRIMARY KEY (server, umuser),
    FOREIGN KEY (server, umuser) REFERENCES pgfed.user_mappings ON UPDATE CASCADE ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS pgfed.declared_tables (
    shadow regclass PRIMARY KEY REFERENCES pgfed.foreign_tables (shadow) ON DELETE CASCADE,
    source text NOT NULL
);
GRANT SELECT ON pgfed.declared_servers, pgfed.declared_user_mappings, pgfed.declared_tables TO PUBLIC;
-- Writing them is left to the catalog's administrator (pgfed's service role, normally); grant
-- INSERT, DELETE on them to another service role if it runs the reconciler.

-- Last: the marker pgfed checks before using the catalog.
COMMENT ON SCHEMA pgfed IS 'pgfed catalog, version 1';
