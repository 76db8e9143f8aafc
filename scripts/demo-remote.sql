-- pgfed demo "warehouse" database: web analytics for the shop in scripts/demo.sql.
--
-- Loaded by scripts/quickstart into database pgfed_demo_warehouse (a second database on the
-- same cluster), as role demo (the database owner), over the local socket:
--
--   psql -X -v ON_ERROR_STOP=1 -d pgfed_demo_warehouse -c 'SET ROLE demo' -f scripts/demo-remote.sql
--
-- pgfed then reaches it as a foreign server (FOREIGN DATA WRAPPER postgres), so a client of
-- pgfed_demo can join its customers with these page views in one statement.
--
-- Idempotent: it drops and recreates its own objects in one transaction. The data is computed
-- from the row number only (no random()), so every load yields the same 200,000 rows. Every
-- customer_id is a customers.id of pgfed_demo (1..1000; two customers have no views); about 1%
-- of the rows have no duration (the visitor left before the page reported one).

\set ON_ERROR_STOP on
SET client_min_messages = warning;

BEGIN;

DROP TABLE IF EXISTS page_views;

CREATE TABLE page_views (
    id          bigint      PRIMARY KEY,
    customer_id integer     NOT NULL,
    url         text        NOT NULL,
    viewed_at   timestamptz NOT NULL,
    duration_ms integer
);
COMMENT ON TABLE page_views IS 'Page views of the shop''s customers (demo data)';

INSERT INTO page_views (id, customer_id, url, viewed_at, duration_ms)
SELECT g,
       -- Uneven: a square-root skew (hundreds of views for some customers, one for a few),
       -- spread over the ids by a multiplier coprime with 1000.
       1 + (floor(sqrt((g::bigint * 48271) % 1000000)) * 7919)::bigint % 1000,
       CASE g % 10
           WHEN 0 THEN '/'
           WHEN 1 THEN '/cart'
           WHEN 2 THEN '/checkout'
           WHEN 3 THEN '/account'
           WHEN 4 THEN '/search?q=' || (ARRAY['lamp', 'chair', 'desk', 'mug', 'rug'])[1 + (g / 10) % 5]
           ELSE '/products/' || (1 + (g * 31) % 200)
       END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '157 seconds',
       CASE WHEN g % 97 = 0 THEN NULL ELSE 150 + (g::bigint * 7919) % 29850 END
  FROM generate_series(1, 200000) AS g;

CREATE INDEX page_views_customer_id ON page_views (customer_id);
CREATE INDEX page_views_viewed_at ON page_views (viewed_at);

COMMIT;

ANALYZE page_views;
