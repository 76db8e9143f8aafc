-- pgfed demo ClickHouse data: the issue's reference table and an event log of the shop's customers.
--
-- Loaded by scripts/quickstart into the quick start's own ClickHouse server (database default):
--
--   clickhouse-client --multiquery < scripts/demo-clickhouse.sql
--
-- and by docker-compose.yml's clickhouse service (/docker-entrypoint-initdb.d). pgfed then reaches
-- both tables through FOREIGN DATA WRAPPER clickhouse: clickhouse_table as the issue declares it,
-- events imported into schema ch, so a client of pgfed_demo can join its customers with them.
--
-- Valid for Debian's clickhouse-server 18.16 and current ClickHouse alike: no LowCardinality
-- (experimental in 18.x), no Nullable, no literals older parsers reject (5e-324 is exp2(-1074)).
-- Idempotent: it drops and recreates its tables. The data is computed from the row number only,
-- so every load yields the same rows.

DROP TABLE IF EXISTS clickhouse_table;
DROP TABLE IF EXISTS events;

-- The reference scenario's table: 5,000 rows of multiples of 0.25 in [-50, 199.75] (exact in
-- binary, so sums do not depend on their order), about 40% of them above 100; names with a
-- quote, a backslash and non-ASCII text.
CREATE TABLE clickhouse_table (id Int32, name String, value Float64) ENGINE = MergeTree ORDER BY id;

INSERT INTO clickhouse_table
SELECT toInt32(number + 1) AS id,
       multiIf(id % 100 = 11, concat('it''s ', toString(id)),
               id % 100 = 22, concat('größe ', toString(id)),
               id % 100 = 33, concat('back\\slash ', toString(id)),
               concat('item ', toString(id))) AS name,
       toFloat64((id * 7919) % 1000) / 4 - 50 AS value
  FROM numbers(5000);

-- Edge values around the reference filter (value > 100.0): the boundary itself and the next
-- value above it that is a plain sum, signed zero, infinities, the extremes of Float64. No NaN:
-- ClickHouse's `value > 100.0` drops it where Postgres keeps it (pgfed answers as Postgres).
INSERT INTO clickhouse_table
SELECT toInt32(5000 + number + 1) AS id,
       ['exactly 100', 'just above 100', 'minus zero', 'infinity', 'minus infinity', 'huge',
        'smallest subnormal', ''][number + 1] AS name,
       [toFloat64(100), 100 + exp2(-40), -toFloat64(0), toFloat64('inf'), -toFloat64('inf'), exp10(300),
        exp2(-1074), 150.5][number + 1] AS value
  FROM numbers(8);

-- One event every 31 seconds from 2024-01-01 00:00:00 UTC (1,000,000 events, to late December),
-- each of a customer of pgfed_demo (customers.id 1..1000). Amounts are multiples of 0.25 (exact
-- sums): purchases and carts positive, refunds negative, views zero.
CREATE TABLE events (ts DateTime, customer_id Int32, kind String, amount Float64)
    ENGINE = MergeTree ORDER BY (customer_id, ts);

INSERT INTO events
SELECT toDateTime(1704067200 + number * 31) AS ts,
       toInt32(1 + (number * 7919 + intDiv(number, 1000)) % 1000) AS customer_id,
       multiIf(number % 10 < 6, 'view', number % 10 < 8, 'cart', number % 10 = 8, 'purchase', 'refund') AS kind,
       multiIf(kind = 'view', toFloat64(0),
               kind = 'refund', -toFloat64(1 + (number * 104729) % 8000) / 4,
               toFloat64(1 + (number * 104729) % 40000) / 4) AS amount
  FROM numbers(1000000);
