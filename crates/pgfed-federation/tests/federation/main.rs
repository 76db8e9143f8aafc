//! pgfed-federation's integration tests, one binary (every test binary links DataFusion):
//! `core` drives pgfed with tokio-postgres, `clients` runs real client programs
//! (tests/clients/federation: pgjdbc, psycopg2, psycopg 3, asyncpg, SQLAlchemy 1.4 and 2.x, psql)
//! against foreign tables. All need the private test cluster (`scripts/pg-test-cluster`).

mod clickhouse;
mod clients;
mod core;
mod gitops;
mod writes;
