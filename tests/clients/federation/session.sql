-- pgfed federation psql session: run once directly against Postgres with -v src=items_remote and
-- once through pgfed with -v src=items (and -v schema=<the fixture's schema> both times); the two
-- outputs must be byte-identical. `\d` and `\dt` read the shadow of the foreign table `items`,
-- which is an ordinary table, so they print the same both ways; queries on :src print the remote
-- rows, read by pgfed from the foreign table or by Postgres from the remote table itself.
-- Driven by crates/pgfed-federation/tests/federation/clients.rs.

SET search_path = :schema;
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, MDY';

\echo '--- describe the foreign table (its shadow)'
\d items
\d+ items
\echo '--- tables in the schema'
\dt

\echo '--- every column type, a few rows'
SELECT id, big, name, code, amount, ratio, flag, day, ts, tstz, uid, doc
  FROM :src WHERE id <= 3 OR id % 997 = 0 OR id = 97 ORDER BY id;

\echo '--- aggregates'
SELECT count(*), count(name), sum(big), sum(amount), min(day), max(ts), max(tstz) FROM :src;

\echo '--- filters on several types'
SELECT id, code, amount FROM :src
 WHERE code = 'c42' AND amount > 5000 AND flag AND day >= date '2024-06-01' ORDER BY id;

\echo '--- join with a local table'
SELECT t.tag, i.name, i.amount FROM tags t JOIN :src i ON i.id = t.id WHERE t.id < 800 ORDER BY t.id;
SELECT count(*) FROM tags t LEFT JOIN :src i ON i.id = t.id WHERE i.id IS NULL;

\echo '--- expanded display'
\x on
SELECT * FROM :src WHERE id = 42;
\x off

\echo '--- an error, then the session goes on'
SELECT id / (id - id) FROM :src WHERE id < 3;
SELECT count(*) AS even FROM :src WHERE flag;

\echo '--- inside a transaction'
BEGIN;
SELECT max(id) FROM :src WHERE id < 500;
SELECT 1 / 0;
SELECT count(*) FROM :src;
ROLLBACK;
SELECT count(*) FROM :src WHERE name IS NULL;
