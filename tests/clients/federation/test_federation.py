#!/usr/bin/env python3
"""pgfed real-client test of federation: SQLAlchemy inspectors, psycopg 3, psycopg2 and asyncpg
on foreign tables.

Reads PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE (libpq semantics) and the fixture's names:
PGFED_FED_SCHEMA, PGFED_FED_TABLE (the foreign table), PGFED_FED_REMOTE (the remote table behind
it, readable directly), PGFED_FED_LOCAL (a local table), PGFED_FED_ROWS (row count). Every
federated answer is compared with the same query on the remote table. Prints "ok: <check>" per
check; runs every check, prints "FAIL [check]: ..." for each failure and exits 1 if any failed.

    python3 test_federation.py                    # SQLAlchemy (2.x here) + psycopg 3, psycopg2, asyncpg
    python3 test_federation.py --sqlalchemy-only  # only the inspector, e.g. from a SQLAlchemy 1.4 venv

Driven by crates/pgfed-federation/tests/federation/clients.rs; scripts/setup installs the packages
(SQLAlchemy 1.4 in ~/.cache/pgfed-venvs/sqlalchemy14).
"""

import asyncio
import datetime as dt
import os
import sys
import traceback
import uuid
from decimal import Decimal

SQLALCHEMY_ONLY = "--sqlalchemy-only" in sys.argv[1:]

try:
    import psycopg2
    import sqlalchemy
    from sqlalchemy import MetaData, Table, create_engine, inspect, select
    from sqlalchemy.engine import URL

    if not SQLALCHEMY_ONLY:
        import asyncpg
        import psycopg
except ImportError as e:  # pragma: no cover - environment problem, not a test failure
    print(f"FAIL [setup]: missing Python module ({e}); run scripts/setup", file=sys.stderr)
    sys.exit(2)


class CheckFailed(Exception):
    pass


def need(name):
    v = os.environ.get(name)
    if not v:
        print(f"FAIL [setup]: environment variable {name} is not set", file=sys.stderr)
        sys.exit(2)
    return v


SCHEMA = need("PGFED_FED_SCHEMA")
TABLE = need("PGFED_FED_TABLE")
REMOTE = need("PGFED_FED_REMOTE")
LOCAL = need("PGFED_FED_LOCAL")
ROWS = int(need("PGFED_FED_ROWS"))
COLUMNS = ["id", "big", "name", "code", "amount", "ratio", "flag", "day", "ts", "tstz", "uid", "doc"]
COLS = ", ".join(COLUMNS)
FAILURES = []


def eq(actual, expected, what):
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}")


def expect(cond, message):
    if not cond:
        raise CheckFailed(message)


def same_rows(remote_rows, fed_rows, what):
    eq(len(fed_rows), len(remote_rows), f"{what}: row count")
    for i, (r, f) in enumerate(zip(remote_rows, fed_rows)):
        eq(tuple(f), tuple(r), f"{what}: row {i}")


def check(name, fn):
    try:
        result = fn()
        if asyncio.iscoroutine(result):
            asyncio.run(result)
        print(f"ok: {name}", flush=True)
    except CheckFailed as e:
        FAILURES.append(name)
        print(f"FAIL [{name}]: {e}", flush=True)
    except Exception as e:  # a driver error is a failure of this check, not of the program
        FAILURES.append(name)
        print(f"FAIL [{name}]: unexpected {type(e).__name__}: {e}", flush=True)
        traceback.print_exc(file=sys.stdout)


# ------------------------------------------------------------------------------------ SQLAlchemy

def sqlalchemy_checks():
    env = os.environ.get
    # SQLAlchemy 2.x drives psycopg 3 (server-side parameters); 1.4 drives psycopg2.
    driver = "postgresql+psycopg2" if sqlalchemy.__version__.startswith("1.") else "postgresql+psycopg"
    url = URL.create(driver, username=env("PGUSER"), password=env("PGPASSWORD"), host=env("PGHOST"),
                     port=int(env("PGPORT")), database=env("PGDATABASE"))
    engine = create_engine(url, connect_args={"connect_timeout": 10, "application_name": "pgfed-federation-sa"})
    try:
        insp = inspect(engine)
        names = insp.get_table_names(schema=SCHEMA)
        expect(TABLE in names, f"get_table_names({SCHEMA!r}) misses the foreign table: {names}")
        expect(LOCAL in names, f"get_table_names({SCHEMA!r}) misses the local table: {names}")

        def described(table):
            return [(c["name"], repr(c["type"]), c["nullable"], c["default"]) for c in
                    insp.get_columns(table, schema=SCHEMA)]

        fed = described(TABLE)
        eq([c[0] for c in fed], COLUMNS, "get_columns names")
        eq([c[1] for c in fed], ["INTEGER()", "BIGINT()", "TEXT()", "VARCHAR(length=20)",
                                 "NUMERIC(precision=12, scale=2)", "DOUBLE_PRECISION(precision=53)", "BOOLEAN()",
                                 "DATE()", "TIMESTAMP()", "TIMESTAMP(timezone=True)", "UUID()", "JSONB(astext_type=Text())"],
           "get_columns types")
        eq(fed[0][2], False, "id is NOT NULL")
        eq(fed, described(REMOTE), "get_columns of the foreign table vs the remote table")

        # reflection, then a Core SELECT with bound parameters on the foreign table
        meta = MetaData()
        t = Table(TABLE, meta, schema=SCHEMA, autoload_with=engine)
        r = Table(REMOTE, meta, schema=SCHEMA, autoload_with=engine)
        eq([c.name for c in t.columns], COLUMNS, "reflected Table columns")
        with engine.connect() as c:
            def rows(tbl):
                q = (select(tbl.c.id, tbl.c.name, tbl.c.amount, tbl.c.tstz, tbl.c.uid, tbl.c.doc)
                     .where(tbl.c.id.in_([5, 50, 500, 5000]) | (tbl.c.code == "c7"))
                     .where(tbl.c.amount > Decimal("10.5"))
                     .order_by(tbl.c.id.desc()))
                return c.execute(q).fetchall()

            want = rows(r)
            expect(len(want) > 50, f"the query selects rows ({len(want)})")
            same_rows(want, rows(t), "Core select with parameters")
    finally:
        engine.dispose()
    return sqlalchemy.__version__


# ----------------------------------------------------------------------------------- psycopg 3

def pg3_connect():
    conn = psycopg.connect("", connect_timeout=10, application_name="pgfed-federation-psycopg3")
    conn.execute(f"SET search_path = {SCHEMA}")
    conn.execute("SET TimeZone = 'UTC'")
    conn.commit()
    return conn


def psycopg3_binary_parameters():
    sql = (f"SELECT {COLS} FROM {{}} WHERE id = ANY(%b) OR (tstz < %b AND uid <> %b AND amount < %b "
           "AND code = %b AND flag = %b) ORDER BY id")
    params = ([1, 2, 97, 4000, 123456], dt.datetime(2024, 3, 31, 12, 0, tzinfo=dt.timezone.utc),
              uuid.UUID("c4ca4238-a0b9-2382-0dcc-509a6f75849b"), Decimal("100.00"), "c4", True)
    with pg3_connect() as conn:
        for binary in (True, False):
            want = conn.execute(sql.format(REMOTE), params, binary=binary).fetchall()
            expect(len(want) >= 5, f"the query selects rows ({len(want)})")
            cur = conn.execute(sql.format(TABLE), params, binary=binary)
            got = cur.fetchall()
            same_rows(want, got, f"binary={binary}")
            eq(cur.pgresult.fformat(0), 1 if binary else 0, "result format")
        # prepared (psycopg prepares server-side after prepare_threshold executions)
        for i in range(7):
            p = ([i * 10 + 1], dt.datetime(2024, 3, 31, tzinfo=dt.timezone.utc), uuid.uuid4(), Decimal(i * 10), "c1",
                 bool(i % 2))
            same_rows(conn.execute(sql.format(REMOTE), p, binary=True).fetchall(),
                      conn.execute(sql.format(TABLE), p, binary=True).fetchall(), f"prepared execution {i}")
        conn.rollback()


def psycopg3_server_side_cursor():
    with pg3_connect() as conn:
        with conn.cursor(name="pgfed_fed_cursor") as cur:
            cur.itersize = 500
            cur.execute(f"SELECT id, name FROM {TABLE} WHERE id > %s ORDER BY id", (10,))
            n = 0
            for row in cur:
                n += 1
                eq(row[0], n + 10, f"id of row {n}")
                eq(row[1], None if row[0] % 97 == 0 else f"name {row[0]}", f"name of row {n}")
            eq(n, ROWS - 10, "rows through the server-side cursor")
        conn.commit()


# ------------------------------------------------------------------------------------- psycopg2

def psycopg2_join():
    conn = psycopg2.connect("", connect_timeout=10, application_name="pgfed-federation-psycopg2")
    try:
        cur = conn.cursor()
        cur.execute(f"SET search_path = {SCHEMA}; SET TimeZone = 'UTC'")
        sql = (f"SELECT t.tag, i.id, i.name, i.amount, i.ratio, i.day, i.ts, i.tstz, i.uid, i.doc "
               f"FROM {LOCAL} t JOIN {{}} i ON i.id = t.id WHERE t.id < %s AND i.code <> %s ORDER BY t.id")
        cur.execute(sql.format(REMOTE), (8000, "c11"))
        want = cur.fetchall()
        expect(len(want) > 100, f"the join selects rows ({len(want)})")
        cur.execute(sql.format(TABLE), (8000, "c11"))
        same_rows(want, cur.fetchall(), "join")
        agg = (f"SELECT t.id % 3 AS k, count(*), sum(i.amount), max(i.tstz) FROM {LOCAL} t "
               f"LEFT JOIN {{}} i ON i.id = t.id GROUP BY 1 ORDER BY 1")
        cur.execute(agg.format(REMOTE))
        want = cur.fetchall()
        cur.execute(agg.format(TABLE))
        same_rows(want, cur.fetchall(), "left join with aggregates")
        conn.rollback()
    finally:
        conn.close()


# --------------------------------------------------------------------------------------- asyncpg

async def asyncpg_prepared():
    # asyncpg reads the PG* variables itself; prepare() is Parse/Describe/Sync, fetch Bind/Execute
    conn = await asyncpg.connect(timeout=10, server_settings={"search_path": SCHEMA, "TimeZone": "UTC",
                                                              "application_name": "pgfed-federation-asyncpg"})
    try:
        sql = (f"SELECT {COLS} FROM {{}} WHERE id > $1 AND code = $2 AND tstz < $3 AND amount >= $4 "
               "ORDER BY id LIMIT $5")
        fed = await conn.prepare(sql.format(TABLE))
        rem = await conn.prepare(sql.format(REMOTE))
        eq([t.name for t in fed.get_parameters()], [t.name for t in rem.get_parameters()], "parameter types")
        eq([(a.name, a.type.name) for a in fed.get_attributes()],
           [(a.name, a.type.name) for a in rem.get_attributes()], "result columns")
        for i in range(6):
            args = (i * 700, f"c{i * 3}", dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc) + dt.timedelta(days=i * 9),
                    Decimal(i * 100), 20 + i)
            want = await rem.fetch(*args)
            expect(len(want) > 0, f"execution {i} selects rows")
            same_rows([tuple(r) for r in want], [tuple(r) for r in await fed.fetch(*args)], f"execution {i}")
        one = await conn.fetchrow(f"SELECT {COLS} FROM {TABLE} WHERE id = $1", 98)
        eq(tuple(one), tuple(await conn.fetchrow(f"SELECT {COLS} FROM {REMOTE} WHERE id = $1", 98)), "fetchrow")
        # a cursor: Bind to a portal, then Execute with a row limit
        async with conn.transaction():
            n = 0
            async for r in conn.cursor(f"SELECT id FROM {TABLE} WHERE id <= $1 ORDER BY id", 2500, prefetch=300):
                n += 1
                eq(r["id"], n, f"cursor row {n}")
            eq(n, 2500, "rows through the cursor")
    finally:
        await conn.close()


def main():
    version = None

    def sa():
        nonlocal version
        version = sqlalchemy_checks()

    check(f"sqlalchemy {sqlalchemy.__version__} inspector get_table_names/get_columns, reflected select", sa)
    if not SQLALCHEMY_ONLY:
        check("psycopg 3 binary and text parameters on a foreign table", psycopg3_binary_parameters)
        check("psycopg 3 server-side cursor on a foreign table", psycopg3_server_side_cursor)
        check("psycopg2 cross-source join", psycopg2_join)
        check("asyncpg prepared statement with parameters and a cursor", asyncpg_prepared)
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed: {FAILURES}", flush=True)
        sys.exit(1)
    print("ok: all python federation checks passed", flush=True)


if __name__ == "__main__":
    main()
