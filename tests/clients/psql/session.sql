-- pgfed real-client test: a scripted psql session.
--
-- Run as:  psql -X -q -v ON_ERROR_STOP=0 -f session.sql   (connection from PGHOST, PGPORT, ...)
-- Errors are intentional and part of the expected output.  The output (stdout and stderr) must be
-- byte-identical when run directly against PostgreSQL and through pgfed, so everything printed is
-- deterministic:
--   * The schema name appears in \d and \dt output, so it cannot contain a PID.  Instead the
--     schema has a fixed name, `clients_psql`, and a session-level advisory lock makes the run
--     exclusive (a concurrent run waits up to 2 minutes); leftovers of a crashed run are dropped.
--   * psql prints the sender's PID with every notification, so the LISTEN/NOTIFY part sends its
--     output through `sed` (via `\o |...`), which masks every number on lines naming the channel
--     (this works whatever the message language; channel and payloads contain no digits).
--   * Session settings that affect output (TimeZone, DateStyle, ...) are set explicitly.
-- A few `\if` self-checks make the script exit non-zero (ON_ERROR_STOP is switched on, then a
-- statement fails) when a value is wrong, so the script also fails on its own, not only on a diff.
-- Besides, \dt prints the owner (the connecting role), so both runs must use the same PGUSER.

\set VERBOSITY default
\set SHOW_CONTEXT errors
\pset null '(null)'
\pset pager off
\timing off

\echo '== setup'
SET client_min_messages = warning;
SET lock_timeout = '120s';
SELECT pg_advisory_lock(7273301, 1) AS have_lock \gset
RESET lock_timeout;
DROP SCHEMA IF EXISTS clients_psql CASCADE;
CREATE SCHEMA clients_psql;
SET search_path = clients_psql;
RESET client_min_messages;
SELECT coalesce(current_schema() = 'clients_psql', false) AS schema_ok \gset
\if :schema_ok
\echo 'ok: schema clients_psql created'
\else
\echo 'FAIL: could not create schema clients_psql (the role needs CREATE on the database)'
\set ON_ERROR_STOP on
DO $$ BEGIN RAISE EXCEPTION 'psql self-check failed'; END $$;
\endif
SET client_encoding = 'UTF8';
SET TimeZone = 'America/New_York';
SET DateStyle = 'ISO, MDY';
SET IntervalStyle = 'postgres';
SET bytea_output = 'hex';
SET extra_float_digits = 1;
\encoding
SHOW TimeZone;

\echo '== create table, insert, select'
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE items (
    id       integer PRIMARY KEY,
    qty      bigint NOT NULL DEFAULT 0 CHECK (qty >= 0),
    price    numeric(14,4),
    name     text NOT NULL,
    data     bytea,
    created  timestamptz,
    tags     text[],
    attrs    jsonb,
    feeling  mood,
    CONSTRAINT items_name_key UNIQUE (name)
);
CREATE INDEX items_created_idx ON items (created);
CREATE TABLE notes (
    id       integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id  integer NOT NULL REFERENCES items (id),
    body     text
);

INSERT INTO items VALUES
    (1, 3, 19.99, 'plain', '\x00ff10', '2024-03-10 01:59:59-05', '{a,b,c}', '{"b": 2, "a": [1, 2]}', 'ok'),
    (2, 0, -0.0001, 'O''Reilly "double" \back\slash', 'abc', '2024-03-10 03:00:00-04', '{"with space","with,comma","with\"quote",NULL}', '{"nested": {"k": null}}', 'happy'),
    (3, 9223372036854775807, 1234567890.1234, 'Grüße, 世界 🐘', decode('deadbeef', 'hex'), '1999-12-31 23:59:59.999999+00', '{}', '[]', NULL),
    (4, 1, NULL, E'line one\nline two\ttab', NULL, 'infinity', NULL, 'null', 'sad');

SELECT id, qty, price, name FROM items ORDER BY id;
SELECT id, data, length(data) AS len, created, tags, attrs, feeling FROM items ORDER BY id;
SELECT name, length(name) AS chars, octet_length(name) AS bytes, quote_literal(name) FROM items ORDER BY id;
SELECT attrs -> 'a' AS a, attrs ->> 'b' AS b, jsonb_typeof(attrs) AS t,
       '{"z": 1, "a": 2, "z": 3}'::json AS json_keeps, '{"z": 1, "a": 2, "z": 3}'::jsonb AS jsonb_normalizes
  FROM items ORDER BY id;
SELECT 12345678901234567890.123456789::numeric AS big, 'NaN'::numeric AS nan, '-Infinity'::numeric AS ninf,
       0.1::float8 + 0.2::float8 AS float_sum, 1e-300::float8 AS tiny, 'Infinity'::float4 AS inf4,
       (-32768)::smallint AS i2, (-2147483648)::integer AS i4, (-9223372036854775808)::bigint AS i8;
SELECT true AS t, false AS f, NULL::boolean AS n, '2024-02-29'::date AS leap, '23:59:59.5'::time AS tm,
       '1 year 2 mons 3 days 04:05:06.7'::interval AS iv, '192.168.0.1/24'::inet AS ip,
       'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, int4range(1, 10) AS r, point(1.5, -2) AS pt;
SELECT ARRAY[[1, 2], [3, NULL]] AS int2d, ARRAY[1.5, 2.25]::numeric[] AS nums,
       ARRAY['2024-01-01 12:00:00+00'::timestamptz] AS tstz, ARRAY[ROW(1, 'x')] AS rows,
       '{{"a","b"},{"c","d"}}'::text[] AS text2d, (ARRAY[10, 20, 30])[2:3] AS slice;
SELECT created, created AT TIME ZONE 'UTC' AS utc_naive FROM items WHERE id < 4 ORDER BY id;
SET TimeZone = 'Asia/Kolkata';
SELECT created FROM items WHERE id < 4 ORDER BY id;
SET TimeZone = 'UTC';
SELECT created, to_char(created, 'YYYY-MM-DD HH24:MI:SS.US TZ') AS formatted FROM items WHERE id < 4 ORDER BY id;
SET TimeZone = 'America/New_York';
SHOW TimeZone;

\echo '== copy'
\copy items (id, qty, price, name, data, created, tags, attrs, feeling) from stdin
10	5	1.5000	tab\tin name	\\x0102	2024-01-01 00:00:00+00	{x,y}	{"k": 1}	ok
11	6	\N	back\\slash	\N	2024-06-01 12:34:56.789+02	{"q\\"uote"}	{"k": [true, false]}	\N
12	7	0	ünïcödé ✓	\\x	2000-01-01 00:00:00+00	{}	{}	happy
\.
\echo 'rows loaded by \\copy:' :ROW_COUNT
COPY items (id, name, price) FROM STDIN WITH (FORMAT csv, HEADER true);
id,name,price
20,"csv, with comma",2.5
21,"csv ""quoted""",
22,"multi
line",3
\.
\echo 'rows loaded by COPY FROM STDIN:' :ROW_COUNT
SELECT count(*) AS n FROM items \gset
SELECT :n = 10 AS count_ok \gset
\if :count_ok
\echo 'ok: items holds 10 rows after COPY'
\else
\echo 'FAIL: items should hold 10 rows after COPY, has' :n
\set ON_ERROR_STOP on
DO $$ BEGIN RAISE EXCEPTION 'psql self-check failed'; END $$;
\endif
-- a bad row: the server fails the COPY, psql still consumes the data up to \.
\copy items (id, name) from stdin
30	fine
x	not an integer
31	never loaded
\.
COPY items (id, name) FROM STDIN;
40	duplicate name
41	duplicate name
\.
SELECT count(*) AS after_failed_copies FROM items;
COPY (SELECT id, qty, price, name, data, created, tags, attrs, feeling FROM items ORDER BY id) TO STDOUT;
COPY (SELECT id, name, price FROM items WHERE id >= 20 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER true);
\copy (SELECT id, name FROM items WHERE id BETWEEN 10 AND 12 ORDER BY id) to stdout with (format csv)
COPY (SELECT g, repeat('x', g % 7) FROM generate_series(1, 12) AS g) TO STDOUT WITH (DELIMITER '|');

\echo '== describe'
\d items
\d notes
\dt
\di
\dT mood
CREATE FUNCTION add_qty(a bigint, b bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT a + b';
\df add_qty
\sf add_qty
SELECT id, price, created, tags, attrs FROM items \gdesc
SELECT $1::int + 1 AS param_plus_one \gdesc

\echo '== transactions'
BEGIN;
INSERT INTO items (id, name) VALUES (100, 'rolled back');
SELECT count(*) AS inside_tx FROM items;
ROLLBACK;
SELECT count(*) AS after_rollback FROM items WHERE id = 100;
BEGIN;
INSERT INTO items (id, name) VALUES (101, 'kept 1');
SAVEPOINT sp1;
INSERT INTO items (id, name) VALUES (102, 'undone by rollback to');
SELECT array_agg(id ORDER BY id) AS inside_savepoint FROM items WHERE id > 100;
ROLLBACK TO SAVEPOINT sp1;
INSERT INTO items (id, name) VALUES (103, 'kept 2');
SAVEPOINT sp2;
INSERT INTO items (id, name) VALUES (104, 'kept 3');
RELEASE SAVEPOINT sp2;
COMMIT;
SELECT id, name FROM items WHERE id > 100 ORDER BY id;
-- an error aborts the transaction; later statements fail until ROLLBACK
BEGIN;
INSERT INTO items (id, name) VALUES (110, 'lost');
INSERT INTO items (id, name) VALUES (1, 'duplicate id');
SELECT 'not executed';
COMMIT;
SELECT count(*) AS id_110_rows FROM items WHERE id = 110;
-- psql's ON_ERROR_ROLLBACK wraps each statement in a savepoint (depends on ReadyForQuery status)
\set ON_ERROR_ROLLBACK on
BEGIN;
INSERT INTO items (id, name) VALUES (120, 'survives');
INSERT INTO items (id, name) VALUES (2, 'duplicate id again');
INSERT INTO items (id, name) VALUES (121, 'survives too');
COMMIT;
\set ON_ERROR_ROLLBACK off
SELECT id, name FROM items WHERE id >= 120 ORDER BY id;
BEGIN;
DECLARE cur CURSOR FOR SELECT id FROM items ORDER BY id;
FETCH 3 FROM cur;
MOVE FORWARD 4 IN cur;
FETCH NEXT FROM cur;
CLOSE cur;
COMMIT;
PREPARE by_id(integer) AS SELECT id, name FROM items WHERE id = $1;
EXECUTE by_id(3);
EXECUTE by_id(11);
DEALLOCATE by_id;

\echo '== errors'
SELECT id FROM items WHERE;
SELECT id,
       name
  FROM items
 WHRE id = 1;
SELECT namee FROM items;
INSERT INTO items (id, name) VALUES (1, 'duplicate');
INSERT INTO items (id, name) VALUES (200, 'plain');
INSERT INTO items (id, name, qty) VALUES (201, 'negative', -1);
INSERT INTO notes (item_id, body) VALUES (999, 'no such item');
INSERT INTO notes (id, item_id) VALUES (1, 1);
SELECT 1 / (g - 3) AS boom FROM generate_series(1, 5) AS g;
\echo 'SQLSTATE after division by zero:' :SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM no_such_table;
\set VERBOSITY verbose
INSERT INTO items (id, name) VALUES (3, 'verbose duplicate');
\set VERBOSITY terse
INSERT INTO items (id, name) VALUES (3, 'terse duplicate');
\set VERBOSITY default
\echo :LAST_ERROR_MESSAGE
\errverbose
SET statement_timeout = '100ms';
SELECT pg_sleep(3);
RESET statement_timeout;
SELECT 'still connected' AS status;

\echo '== notices'
DO $$
BEGIN
    RAISE NOTICE 'notice with value % and text %', 42, 'Grüße';
    RAISE WARNING 'a warning';
    RAISE INFO 'some info';
END
$$;
DO $$ BEGIN RAISE NOTICE 'with detail' USING DETAIL = 'the detail', HINT = 'the hint'; END $$;
DO $$ BEGIN RAISE EXCEPTION 'custom failure %', 7 USING ERRCODE = 'P0042', DETAIL = 'custom detail', HINT = 'custom hint'; END $$;
DROP TABLE IF EXISTS does_not_exist;
SET client_min_messages = warning;
DO $$ BEGIN RAISE NOTICE 'suppressed by client_min_messages'; END $$;
RESET client_min_messages;

\echo '== variables, \\gset, \\gx, \\gexec, \\crosstabview'
SELECT count(*) AS cnt, max(price) AS maxp, min(name) AS first_name FROM items \gset
\echo cnt=:cnt maxp=:maxp first_name=:first_name
SELECT :cnt * 2 AS doubled, :'maxp'::numeric + 1 AS maxp_plus_one, :'first_name' AS quoted_var;
SELECT 1 AS one, 'two' AS two \gset v_
\echo :v_one :v_two
SELECT id, name, tags FROM items WHERE id IN (1, 2) ORDER BY id \gx
SELECT format('SELECT %L AS tbl, count(*) AS n FROM %I', relname, relname)
  FROM pg_class WHERE relnamespace = 'clients_psql'::regnamespace AND relkind = 'r' ORDER BY relname \gexec
SELECT feeling, id % 2 AS parity, count(*) FROM items WHERE feeling IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2 \crosstabview
SELECT repeat('ab', 50000) AS big \gset
SELECT length(:'big') AS big_length, md5(:'big') AS big_md5;
SELECT length(:'big') = 100000 AS big_ok \gset
\if :big_ok
\echo 'ok: 100000-character literal round trip'
\else
\echo 'FAIL: 100000-character literal did not round trip'
\set ON_ERROR_STOP on
DO $$ BEGIN RAISE EXCEPTION 'psql self-check failed'; END $$;
\endif
SELECT g AS n, md5(g::text) AS h FROM generate_series(1, 3) AS g \g
\set FETCH_COUNT 4
SELECT g, g * g AS sq FROM generate_series(1, 10) AS g;
\unset FETCH_COUNT
\pset format csv
SELECT id, name, price FROM items WHERE id IN (1, 2, 20, 21) ORDER BY id;
\pset format unaligned
SELECT id, tags FROM items WHERE id IN (1, 2) ORDER BY id;
\pset format aligned

\echo '== several statements in one query'
SELECT 1 AS first \; SELECT 2 AS second \; SELECT 3 AS third;
SELECT 'a' AS before_error \; SELECT 1 / 0 \; SELECT 'never' AS after_error;
INSERT INTO items (id, name) VALUES (300, 'multi 1') \; INSERT INTO items (id, name) VALUES (301, 'multi 2');
SELECT count(*) AS multi_rows FROM items WHERE id IN (300, 301);

\echo '== listen / notify'
LISTEN pgfed_psql_chan;
\o |sed -e '/pgfed_psql_chan/s/[0-9][0-9]*/<pid>/g'
NOTIFY pgfed_psql_chan, 'hello';
NOTIFY pgfed_psql_chan;
SELECT pg_notify('pgfed_psql_chan', 'from pg_notify, ünïcödé') AS via_function;
BEGIN;
NOTIFY pgfed_psql_chan, 'sent at commit';
SELECT 'inside transaction, nothing delivered yet' AS status;
COMMIT;
BEGIN;
NOTIFY pgfed_psql_chan, 'rolled back, never delivered';
ROLLBACK;
SELECT 'after rollback' AS status;
\o
UNLISTEN pgfed_psql_chan;
NOTIFY pgfed_psql_chan, 'not listening any more';
SELECT 'after unlisten' AS status;

\echo '== sleep'
SELECT pg_sleep(0.1);
SELECT 'before sleep' AS status \; SELECT pg_sleep(0.1) \; SELECT 'after sleep' AS status;
\timing off

\echo '== cleanup'
SET client_min_messages = warning;
DROP SCHEMA clients_psql CASCADE;
RESET client_min_messages;
SELECT pg_advisory_unlock(7273301, 1) AS unlocked;
SELECT count(*) AS leftover_schemas FROM pg_namespace WHERE nspname = 'clients_psql';
\echo 'ok: psql session finished'
