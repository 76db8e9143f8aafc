-- pgfed federation psql session, part two: other ways a client reads a table than a plain
-- SELECT ... FROM. Run like session.sql (directly with -v src=items_remote, through pgfed with
-- -v src=items); the outputs must be byte-identical. Each of these, passed to Postgres
-- unchanged, would read the empty shadow table and print no rows: a wrong answer.

SET search_path = :schema;
SET TimeZone = 'UTC';

\echo '--- ONLY and TABLE'
SELECT count(*) FROM ONLY :src;
TABLE :src ORDER BY id LIMIT 3;

\echo '--- COPY TO STDOUT (what \\copy sends) of the table, counted, and of a query'
\o | wc -l
COPY :src TO STDOUT;
\o
COPY (SELECT id, name, amount FROM :src WHERE id <= 3 ORDER BY id) TO STDOUT;

\echo '--- a cursor'
BEGIN;
DECLARE c CURSOR FOR SELECT id, name FROM :src WHERE id <= 5 ORDER BY id;
FETCH 2 FROM c;
FETCH ALL FROM c;
COMMIT;
