#!/usr/bin/env python3
"""pgfed real-client test: psycopg2, psycopg 3, asyncpg and SQLAlchemy 2.x.

Reads PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE (libpq semantics, so PGSSLMODE etc. are
honoured too), works in its own schema clients_python_<pid> (dropped at the end), prints
"ok: <check>" per check and exits non-zero with a message on the first failure.

Run:  python3 test_clients.py
Needs: pip install psycopg2-binary "psycopg[binary]" asyncpg "sqlalchemy>=2"
"""

import asyncio
import datetime as dt
import io
import json
import os
import select
import sys
import time
import traceback
import uuid
from decimal import Decimal

try:
    import asyncpg
    import psycopg
    import psycopg2
    import psycopg2.errors
    import psycopg2.extensions
    import psycopg2.extras
    import sqlalchemy
    from psycopg.types.json import Jsonb
    from sqlalchemy import MetaData, Table, create_engine, inspect, select as sa_select, text
    from sqlalchemy.dialects import postgresql as sa_pg
    from sqlalchemy.engine import URL
except ImportError as e:  # pragma: no cover - environment problem, not a test failure
    print(f"FAIL [setup]: missing Python module ({e}); "
          'pip install psycopg2-binary "psycopg[binary]" asyncpg "sqlalchemy>=2"', file=sys.stderr)
    sys.exit(2)


class CheckFailed(Exception):
    pass


SCHEMA = f"clients_python_{os.getpid()}"
CURRENT = "setup"
UTC = dt.timezone.utc


def begin(name):
    global CURRENT
    CURRENT = name


def ok(what):
    print(f"ok: {what}", flush=True)


def expect(cond, message):
    if not cond:
        raise CheckFailed(message)


def eq(actual, expected, what):
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}")


def expect_raises(exc_type, fn, what):
    try:
        fn()
    except exc_type as e:
        return e
    except Exception as e:  # wrong exception type
        raise CheckFailed(f"{what}: expected {exc_type.__name__}, got {type(e).__name__}: {e}") from e
    raise CheckFailed(f"{what}: expected {exc_type.__name__}, but nothing was raised")


def pg2_connect(**kw):
    # empty DSN: libpq takes everything from the PG* environment variables
    conn = psycopg2.connect("", connect_timeout=10, application_name="pgfed-clients-psycopg2", **kw)
    with conn.cursor() as cur:
        cur.execute(f"SET search_path = {SCHEMA}; SET TimeZone = 'UTC'")
    conn.commit()
    return conn


def pg3_connect(**kw):
    conn = psycopg.connect("", connect_timeout=10, application_name="pgfed-clients-psycopg3", **kw)
    conn.execute(f"SET search_path = {SCHEMA}")
    conn.execute("SET TimeZone = 'UTC'")
    if not conn.autocommit:
        conn.commit()
    return conn


# --------------------------------------------------------------------------------------- psycopg2

def psycopg2_checks():
    begin("psycopg2 parameterized queries")
    conn = pg2_connect()
    try:
        cur = conn.cursor()
        cur.execute("""CREATE TABLE pg2_items (
                           id integer PRIMARY KEY, name text NOT NULL UNIQUE, price numeric(12,4),
                           created timestamptz, data bytea, tags text[], attrs jsonb)""")
        conn.commit()
        name = "O'Reilly \"q\" \\ Grüße 世界 🐘 %s %(x)s"
        created = dt.datetime(2024, 3, 10, 1, 59, 59, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
        data = bytes(range(256))
        cur.execute(
            "INSERT INTO pg2_items VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id, name",
            (1, name, Decimal("12.3456"), created, psycopg2.Binary(data), ["a", "b,c", 'd"e', None],
             psycopg2.extras.Json({"k": [1, None, "ü"]})))
        eq(cur.fetchone(), (1, name), "INSERT ... RETURNING")
        cur.execute("SELECT id, name, price, created, data, tags, attrs FROM pg2_items WHERE id = %(id)s",
                    {"id": 1})
        row = cur.fetchone()
        eq(row[0], 1, "int")
        eq(row[1], name, "unicode text with quotes and percent signs")
        eq(row[2], Decimal("12.3456"), "numeric")
        eq(row[3], created, "timestamptz")
        eq(bytes(row[4]), data, "bytea")
        eq(row[5], ["a", "b,c", 'd"e', None], "text[]")
        eq(row[6], {"k": [1, None, "ü"]}, "jsonb")
        eq([d.name for d in cur.description], ["id", "name", "price", "created", "data", "tags", "attrs"],
           "cursor.description names")
        cur.execute("SELECT %s::int + %s, %s IS NULL, %s", (40, 2, None, [1, 2, 3]))
        eq(cur.fetchone(), (42, True, [1, 2, 3]), "arithmetic, NULL and array parameters")
        conn.commit()
        ok("psycopg2 parameterized queries (text, numeric, timestamptz, bytea, arrays, jsonb)")

        begin("psycopg2 executemany")
        cur.executemany("INSERT INTO pg2_items (id, name, price) VALUES (%s, %s, %s)",
                        [(i, f"many {i}", Decimal(i) / 4) for i in range(100, 300)])
        conn.commit()
        cur.execute("SELECT count(*), sum(price), min(name), max(id) FROM pg2_items WHERE id >= 100")
        eq(cur.fetchone(), (200, Decimal(sum(range(100, 300))) / 4, "many 100", 299), "rows after executemany")
        conn.commit()
        ok("psycopg2 executemany of 200 rows")

        begin("psycopg2 copy_expert")
        buf = io.StringIO("".join(f"{i}\tcopied {i} ✓\t{i}.5\n" for i in range(1000, 1500)))
        cur.copy_expert("COPY pg2_items (id, name, price) FROM STDIN", buf)
        eq(cur.rowcount, 500, "rowcount of COPY FROM STDIN")
        out = io.StringIO()
        cur.copy_expert("COPY (SELECT id, name, price FROM pg2_items WHERE id >= 1000 ORDER BY id) TO STDOUT", out)
        eq(out.getvalue(), "".join(f"{i}\tcopied {i} ✓\t{i}.5000\n" for i in range(1000, 1500)),
           "COPY TO STDOUT content")
        conn.commit()
        bad = expect_raises(psycopg2.errors.InvalidTextRepresentation,
                            lambda: cur.copy_expert("COPY pg2_items (id, name) FROM STDIN",
                                                    io.StringIO("5000\tfine\nnope\tbad\n")),
                            "COPY with bad data")
        eq(bad.pgcode, "22P02", "pgcode of failing COPY")
        conn.rollback()
        cur.execute("SELECT count(*) FROM pg2_items WHERE id >= 1000")
        eq(cur.fetchone()[0], 500, "rows after failed COPY")
        conn.commit()
        ok("psycopg2 copy_expert COPY FROM STDIN / TO STDOUT, failing COPY is 22P02")

        begin("psycopg2 server-side named cursor")
        named = conn.cursor(name="pg2_stream")
        named.itersize = 100
        named.execute("SELECT g, g * 2 FROM generate_series(1, 5000) AS g ORDER BY g")
        count = total = 0
        expected = 1
        for g, doubled in named:
            eq(g, expected, "row order from named cursor")
            eq(doubled, g * 2, f"value of row {g}")
            if g == 150:
                cur.execute("SELECT count(*) FROM pg_cursors WHERE name = 'pg2_stream'")
                eq(cur.fetchone()[0], 1, "server-side cursor pg2_stream in pg_cursors while iterating")
            count += 1
            total += doubled
            expected += 1
        eq((count, total), (5000, 5000 * 5001), "count and sum over the named cursor")
        named.close()
        conn.commit()
        ok("psycopg2 server-side named cursor with itersize 100 over 5000 rows")

        begin("psycopg2 error pgcode")
        e = expect_raises(psycopg2.errors.UniqueViolation,
                          lambda: cur.execute("INSERT INTO pg2_items (id, name) VALUES (1, 'dup')"),
                          "duplicate key")
        eq(e.pgcode, "23505", "pgcode of unique violation")
        eq(e.diag.message_detail, "Key (id)=(1) already exists.", "diag.message_detail")
        eq(e.diag.constraint_name, "pg2_items_pkey", "diag.constraint_name")
        eq(e.diag.schema_name, SCHEMA, "diag.schema_name")
        conn.rollback()
        e = expect_raises(psycopg2.errors.SyntaxError, lambda: cur.execute("SELECT 1 FROM pg2_items WHER id = 1"),
                          "syntax error")
        eq(e.pgcode, "42601", "pgcode of syntax error")
        eq(e.diag.statement_position, "30", "diag.statement_position")
        conn.rollback()
        e = expect_raises(psycopg2.errors.DivisionByZero,
                          lambda: (cur.execute("SELECT 1 / (g - 3) FROM generate_series(1, 5) g"), cur.fetchall()),
                          "division by zero after some rows")
        eq(e.pgcode, "22012", "pgcode of division by zero")
        conn.rollback()
        cur.execute("SELECT 'usable'")
        eq(cur.fetchone()[0], "usable", "connection usable after errors")
        conn.commit()
        ok("psycopg2 errors carry pgcode 23505/42601/22012 and diagnostics")

        begin("psycopg2 notices")
        del conn.notices[:]
        cur.execute("DO $$ BEGIN RAISE NOTICE 'pg2 notice %', 1; RAISE WARNING 'pg2 warning ü'; END $$")
        conn.commit()
        eq(list(conn.notices), ["NOTICE:  pg2 notice 1\n", "WARNING:  pg2 warning ü\n"], "conn.notices")
        ok("psycopg2 notices via conn.notices")
    finally:
        conn.close()

    begin("psycopg2 LISTEN/NOTIFY")
    listener = pg2_connect()
    sender = pg2_connect()
    try:
        listener.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        sender.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        lcur = listener.cursor()
        scur = sender.cursor()
        lcur.execute("LISTEN pgfed_py_chan")
        scur.execute("SELECT pg_backend_pid()")
        sender_pid = scur.fetchone()[0]
        payloads = ["first", "second with ü", ""]
        for p in payloads:
            scur.execute("SELECT pg_notify('pgfed_py_chan', %s)", (p,))
        scur.execute("BEGIN; NOTIFY pgfed_py_chan, 'transactional'; ROLLBACK")  # never delivered
        scur.execute("NOTIFY pgfed_py_other, 'not listened to'")
        received = []
        deadline = time.monotonic() + 10
        while len(received) < len(payloads) and time.monotonic() < deadline:
            if select.select([listener], [], [], 0.5)[0]:
                listener.poll()
                while listener.notifies:
                    received.append(listener.notifies.pop(0))
        eq([(n.channel, n.payload) for n in received], [("pgfed_py_chan", p) for p in payloads],
           "notifications received by the listener")
        eq({n.pid for n in received}, {sender_pid}, "sender pid of notifications")
        # one more notification, picked up as a side effect of a query on the listener
        scur.execute("NOTIFY pgfed_py_chan, 'during query'")
        time.sleep(0.2)
        lcur.execute("SELECT 1")
        eq([(n.channel, n.payload) for n in listener.notifies], [("pgfed_py_chan", "during query")],
           "notification delivered with a query result")
        ok("psycopg2 LISTEN/NOTIFY between two connections with conn.poll()")
    finally:
        listener.close()
        sender.close()


# --------------------------------------------------------------------------------------- psycopg 3

def psycopg3_checks():
    begin("psycopg3 binary parameters")
    with pg3_connect(autocommit=True) as conn:
        conn.execute("""CREATE TABLE pg3_items (id integer PRIMARY KEY, name text NOT NULL,
                        price numeric, created timestamptz, data bytea, nums int8[], attrs jsonb)""")
        created = dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
        data = b"\x00\x01\xfe\xff" * 100
        params = (7, "binary Grüße 🐘", Decimal("-12345678901234567890.0001"), created, data,
                  [1, None, -(2 ** 63)], Jsonb({"a": [True, None]}))
        with conn.cursor(binary=True) as cur:
            cur.execute("INSERT INTO pg3_items VALUES (%b, %b, %b, %b, %b, %b, %b)", params)
            cur.execute("SELECT id, name, price, created, data, nums, attrs, %b::int8 + 1 AS p "
                        "FROM pg3_items WHERE id = %b", (2 ** 62, 7), binary=True)
            row = cur.fetchone()
            eq(cur.pgresult.fformat(0), 1, "result column format is binary")
        eq(row, (7, "binary Grüße 🐘", Decimal("-12345678901234567890.0001"), created, data,
                 [1, None, -(2 ** 63)], {"a": [True, None]}, 2 ** 62 + 1), "binary round trip")
        ok("psycopg3 binary parameters and binary results")

        begin("psycopg3 prepared statements")
        query = "SELECT %s::int * 3 AS tripled, 'pg3-prepare-marker' AS marker"
        for i in range(1, 9):
            got = conn.execute(query, (i,), prepare=True).fetchone()
            eq(got, (i * 3, "pg3-prepare-marker"), f"prepared execution {i}")
        rows = conn.execute("SELECT name FROM pg_prepared_statements WHERE NOT from_sql "
                            "AND statement LIKE %s", ("%pg3-prepare-" + "marker%",)).fetchall()
        eq(len(rows), 1, "server-side prepared statements for the query")
        expect(rows[0][0].startswith("_pg3_"), f"prepared statement name {rows[0][0]!r} is not psycopg's")
        ok("psycopg3 prepare=True executed 8 times, one named server-side statement")

        begin("psycopg3 pipeline mode")
        with conn.pipeline():
            c1 = conn.execute("INSERT INTO pg3_items (id, name) VALUES (%s, %s) RETURNING id", (10, "p10"))
            c2 = conn.execute("INSERT INTO pg3_items (id, name) VALUES (%s, %s) RETURNING id", (11, "p11"))
            c3 = conn.cursor()
            c3.executemany("INSERT INTO pg3_items (id, name) VALUES (%s, %s)", [(i, f"p{i}") for i in range(12, 20)])
            c4 = conn.execute("SELECT count(*) FROM pg3_items WHERE id BETWEEN 10 AND 19")
            c5 = conn.execute("SELECT string_agg(name, ',' ORDER BY id) FROM pg3_items WHERE id IN (10, 19)")
        eq(c1.fetchone(), (10,), "pipeline result 1")
        eq(c2.fetchone(), (11,), "pipeline result 2")
        eq(c4.fetchone(), (10,), "pipeline result 4 (count sees earlier pipelined inserts)")
        eq(c5.fetchone(), ("p10,p19",), "pipeline result 5")

        def failing_pipeline():
            # statements up to a Sync form one implicit transaction: 20 is committed by the first Sync,
            # the duplicate fails and 21 (same Sync as the duplicate) is skipped; the second sync()
            # reads the results and raises, so 22 is never sent
            with conn.pipeline() as p:
                conn.execute("INSERT INTO pg3_items (id, name) VALUES (20, 'p20')")
                p.sync()
                conn.execute("INSERT INTO pg3_items (id, name) VALUES (10, 'duplicate')")
                conn.execute("INSERT INTO pg3_items (id, name) VALUES (21, 'p21')")
                p.sync()
                conn.execute("INSERT INTO pg3_items (id, name) VALUES (22, 'p22')")

        e = expect_raises(psycopg.errors.UniqueViolation, failing_pipeline, "pipeline with a duplicate key")
        eq(e.sqlstate, "23505", "sqlstate from pipeline")
        got = conn.execute("SELECT array_agg(id ORDER BY id) FROM pg3_items WHERE id >= 20").fetchone()[0]
        eq(got, [20], "pipeline: statement before the failing Sync committed, the rest skipped")
        eq(conn.execute("SELECT 'usable'").fetchone()[0], "usable", "connection usable after failed pipeline")
        ok("psycopg3 pipeline mode with several statements, error inside a pipeline")

        begin("psycopg3 binary COPY")
        with conn.cursor() as cur:
            with cur.copy("COPY pg3_items (id, name, price) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "text", "numeric"])
                for i in range(100, 400):
                    copy.write_row((i, f"copy {i}", Decimal(i) / 8))
            eq(cur.rowcount, 300, "rows copied in binary")
            rows = []
            with cur.copy("COPY (SELECT id, name, price FROM pg3_items WHERE id >= 100 ORDER BY id) "
                          "TO STDOUT (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "text", "numeric"])
                rows = list(copy.rows())
        eq(rows, [(i, f"copy {i}", Decimal(i) / 8) for i in range(100, 400)], "binary COPY TO STDOUT rows")
        ok("psycopg3 binary COPY FROM STDIN / TO STDOUT of 300 rows")


# --------------------------------------------------------------------------------------- asyncpg

async def asyncpg_checks():
    begin("asyncpg connect")
    # asyncpg reads PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE itself
    conn = await asyncpg.connect(timeout=10, server_settings={"search_path": SCHEMA, "TimeZone": "UTC",
                                                              "application_name": "pgfed-clients-asyncpg"})
    try:
        await conn.execute("""CREATE TABLE apg_items (id integer PRIMARY KEY, name text NOT NULL,
                              val bigint, created timestamptz)""")
        ok("asyncpg connect")

        begin("asyncpg prepared statement")
        stmt = await conn.prepare("SELECT $1::int * 2 AS doubled, $2::text || '!' AS shout")
        eq([t.name for t in stmt.get_parameters()], ["int4", "text"], "prepared statement parameter types")
        eq([(a.name, a.type.name) for a in stmt.get_attributes()], [("doubled", "int4"), ("shout", "text")],
           "prepared statement result attributes")
        for i in range(10):
            row = await stmt.fetchrow(i, f"v{i}ü")
            eq((row["doubled"], row["shout"]), (i * 2, f"v{i}ü!"), f"prepared execution {i}")
        ok("asyncpg prepared statement executed 10 times")

        begin("asyncpg types")
        ts = dt.datetime(2024, 2, 29, 12, 0, 0, 5, tzinfo=UTC)
        u = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        row = await conn.fetchrow(
            """SELECT $1::int2 AS i2, $2::int8 AS i8, $3::numeric AS num, $4::text AS t, $5::bytea AS b,
                      $6::timestamptz AS ts, $7::date AS d, $8::interval AS iv, $9::uuid AS u,
                      $10::float8 AS f, $11::bool AS bo, $12::int4[] AS arr, $13::text[] AS tarr,
                      $14::jsonb AS j, $15::json AS js, '192.168.1.0/24'::cidr AS net,
                      ROW(1, 'x')::record AS rec, NULL::int AS n, 'NaN'::numeric AS nan""",
            -32768, 2 ** 63 - 1, Decimal("3.14159265358979323846264338327950288"), "tab\t'quote' \"dq\" ✓",
            b"\x00" * 10 + b"\xff", ts, dt.date(2000, 1, 1), dt.timedelta(days=1, seconds=3723, microseconds=4),
            u, 1.5e-300, False, [1, None, 3], ["a", None, "c,d"], json.dumps({"z": 1, "a": [1, 2]}),
            json.dumps({"keep": "order", "a": 1}))
        eq(row["i2"], -32768, "int2")
        eq(row["i8"], 2 ** 63 - 1, "int8")
        eq(row["num"], Decimal("3.14159265358979323846264338327950288"), "numeric")
        eq(row["t"], "tab\t'quote' \"dq\" ✓", "text")
        eq(row["b"], b"\x00" * 10 + b"\xff", "bytea")
        eq(row["ts"], ts, "timestamptz")
        eq(row["d"], dt.date(2000, 1, 1), "date")
        eq(row["iv"], dt.timedelta(days=1, seconds=3723, microseconds=4), "interval")
        eq(row["u"], u, "uuid")
        eq(row["f"], 1.5e-300, "float8")
        eq(row["bo"], False, "bool")
        eq(row["arr"], [1, None, 3], "int4[]")
        eq(row["tarr"], ["a", None, "c,d"], "text[]")
        eq(json.loads(row["j"]), {"z": 1, "a": [1, 2]}, "jsonb")
        eq(row["js"], '{"keep": "order", "a": 1}', "json keeps its text")
        eq(str(row["net"]), "192.168.1.0/24", "cidr")
        eq(tuple(row["rec"]), (1, "x"), "record")
        eq(row["n"], None, "NULL")
        expect(row["nan"].is_nan(), f"numeric NaN: got {row['nan']!r}")
        many = await conn.fetch("SELECT g, md5(g::text) FROM generate_series(1, 2000) AS g")
        eq(len(many), 2000, "rows from fetch")
        eq(many[1999][0], 2000, "last row of fetch")
        ok("asyncpg fetch with int2/int8/numeric/text/bytea/timestamptz/date/interval/uuid/float8/bool/"
           "arrays/jsonb/json/cidr/record/NULL")

        begin("asyncpg executemany")
        await conn.executemany("INSERT INTO apg_items (id, name, val, created) VALUES ($1, $2, $3, $4)",
                               [(i, f"many {i}", i * 10, ts + dt.timedelta(minutes=i)) for i in range(1, 201)])
        got = await conn.fetchrow("SELECT count(*), sum(val), max(created) FROM apg_items")
        eq(tuple(got), (200, 10 * 200 * 201 // 2, ts + dt.timedelta(minutes=200)), "rows after executemany")
        e = None
        try:
            await conn.executemany("INSERT INTO apg_items (id, name) VALUES ($1, $2)", [(1000, "a"), (1, "dup")])
        except asyncpg.UniqueViolationError as exc:
            e = exc
        expect(e is not None, "executemany with a duplicate key did not raise UniqueViolationError")
        eq(e.sqlstate, "23505", "sqlstate of executemany failure")
        eq(await conn.fetchval("SELECT count(*) FROM apg_items WHERE id = 1000"), 0,
           "executemany is atomic: first row rolled back")
        ok("asyncpg executemany of 200 rows, failing executemany is atomic")

        begin("asyncpg copy_records_to_table")
        records = [(i, f"copied {i} ✓", i * 7, ts) for i in range(1000, 3000)]
        status = await conn.copy_records_to_table("apg_items", records=records,
                                                  columns=["id", "name", "val", "created"])
        eq(status, "COPY 2000", "status of copy_records_to_table")
        got = await conn.fetchrow("SELECT count(*), sum(val), min(name) FROM apg_items WHERE id >= 1000")
        eq(tuple(got), (2000, 7 * sum(range(1000, 3000)), "copied 1000 ✓"), "rows after copy_records_to_table")
        out = io.BytesIO()
        await conn.copy_from_query("SELECT id, name FROM apg_items WHERE id BETWEEN 1000 AND 1002 ORDER BY id",
                                   output=out, format="csv")
        eq(out.getvalue().decode(), "1000,copied 1000 ✓\n1001,copied 1001 ✓\n1002,copied 1002 ✓\n",
           "copy_from_query csv")
        ok("asyncpg copy_records_to_table of 2000 rows (binary COPY) and copy_from_query")

        begin("asyncpg query cancellation")
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(conn.fetchval("SELECT pg_sleep(5)"), timeout=1)
            raise CheckFailed("pg_sleep(5) finished despite a 1 s asyncio.wait_for timeout")
        except asyncio.TimeoutError:
            pass
        eq(await conn.fetchval("SELECT 'still usable'"), "still usable", "query after cancellation")
        elapsed = time.monotonic() - t0
        expect(elapsed < 4, f"cancel + next query took {elapsed:.1f} s: the server query was not cancelled")
        eq(await stmt.fetchval(21, "x"), 42, "prepared statement after cancellation")
        async with conn.transaction():
            await conn.execute("INSERT INTO apg_items (id, name) VALUES (5000, 'in tx')")
        eq(await conn.fetchval("SELECT name FROM apg_items WHERE id = 5000"), "in tx", "transaction after cancel")
        ok("asyncpg asyncio.wait_for timeout cancels pg_sleep(5) (CancelRequest), connection still usable")
    finally:
        await conn.close()


# --------------------------------------------------------------------------------------- SQLAlchemy

def sqlalchemy_checks():
    begin("sqlalchemy inspect")
    env = os.environ.get
    url = URL.create("postgresql+psycopg2", username=env("PGUSER") or None, password=env("PGPASSWORD") or None,
                     host=env("PGHOST") or None, port=int(env("PGPORT")) if env("PGPORT") else None,
                     database=env("PGDATABASE") or None)
    engine = create_engine(url, connect_args={"connect_timeout": 10, "application_name": "pgfed-clients-sqlalchemy"})
    try:
        with engine.begin() as c:
            c.execute(text(f"""CREATE TABLE {SCHEMA}.sa_parent (
                                   id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                                   label varchar(40) NOT NULL UNIQUE)"""))
            c.execute(text(f"""CREATE TABLE {SCHEMA}.sa_child (
                                   id serial PRIMARY KEY,
                                   parent_id bigint NOT NULL REFERENCES {SCHEMA}.sa_parent (id),
                                   amount numeric(10,2),
                                   happened timestamptz DEFAULT now(),
                                   tags text[],
                                   doc jsonb,
                                   flag boolean NOT NULL DEFAULT false)"""))
            c.execute(text(f"CREATE INDEX sa_child_happened_idx ON {SCHEMA}.sa_child (happened)"))
        insp = inspect(engine)
        tables = insp.get_table_names(schema=SCHEMA)
        for t in ("sa_parent", "sa_child", "pg2_items", "pg3_items", "apg_items"):
            expect(t in tables, f"get_table_names(schema={SCHEMA!r}) lacks {t}: {tables}")
        cols = insp.get_columns("sa_child", schema=SCHEMA)
        eq([c["name"] for c in cols], ["id", "parent_id", "amount", "happened", "tags", "doc", "flag"],
           "get_columns names")
        by = {c["name"]: c for c in cols}
        expect(isinstance(by["id"]["type"], sqlalchemy.INTEGER), f"id type {by['id']['type']!r}")
        expect(isinstance(by["parent_id"]["type"], sqlalchemy.BIGINT), f"parent_id type {by['parent_id']['type']!r}")
        expect(isinstance(by["amount"]["type"], sqlalchemy.NUMERIC), f"amount type {by['amount']['type']!r}")
        eq((by["amount"]["type"].precision, by["amount"]["type"].scale), (10, 2), "numeric(10,2) precision/scale")
        expect(isinstance(by["happened"]["type"], sa_pg.TIMESTAMP) and by["happened"]["type"].timezone,
               f"happened type {by['happened']['type']!r}")
        expect(isinstance(by["tags"]["type"], sa_pg.ARRAY) and isinstance(by["tags"]["type"].item_type, sqlalchemy.TEXT),
               f"tags type {by['tags']['type']!r}")
        expect(isinstance(by["doc"]["type"], sa_pg.JSONB), f"doc type {by['doc']['type']!r}")
        expect(isinstance(by["flag"]["type"], sqlalchemy.BOOLEAN), f"flag type {by['flag']['type']!r}")
        eq({n: c["nullable"] for n, c in by.items()},
           {"id": False, "parent_id": False, "amount": True, "happened": True, "tags": True, "doc": True,
            "flag": False}, "get_columns nullable")
        expect("nextval" in (by["id"]["default"] or ""), f"serial default {by['id']['default']!r}")
        eq(by["flag"]["default"], "false", "boolean default")
        parent_cols = insp.get_columns("sa_parent", schema=SCHEMA)
        expect(isinstance(parent_cols[1]["type"], sqlalchemy.VARCHAR) and parent_cols[1]["type"].length == 40,
               f"label type {parent_cols[1]['type']!r}")
        expect(parent_cols[0].get("identity") is not None, "identity column not reflected")
        eq(insp.get_pk_constraint("sa_child", schema=SCHEMA)["constrained_columns"], ["id"], "primary key")
        fks = insp.get_foreign_keys("sa_child", schema=SCHEMA)
        eq([(f["constrained_columns"], f["referred_table"], f["referred_columns"]) for f in fks],
           [(["parent_id"], "sa_parent", ["id"])], "foreign keys")
        eq([i["name"] for i in insp.get_indexes("sa_child", schema=SCHEMA)], ["sa_child_happened_idx"], "indexes")
        ok("SQLAlchemy inspect(engine).get_table_names/get_columns/get_pk_constraint/get_foreign_keys/get_indexes")

        begin("sqlalchemy core round trip")
        md = MetaData()
        parent = Table("sa_parent", md, autoload_with=engine, schema=SCHEMA)
        child = Table("sa_child", md, autoload_with=engine, schema=SCHEMA)
        with engine.begin() as c:
            pid = c.execute(parent.insert().values(label="parent ü").returning(parent.c.id)).scalar_one()
            c.execute(child.insert(), [{"parent_id": pid, "amount": Decimal("1.25") * i, "tags": ["t", str(i)],
                                        "doc": {"i": i}} for i in range(1, 6)])
        with engine.connect() as c:
            rows = c.execute(sa_select(child.c.amount, child.c.tags, child.c.doc, parent.c.label)
                             .join(parent, child.c.parent_id == parent.c.id).order_by(child.c.id)).all()
        eq([tuple(r) for r in rows],
           [(Decimal("1.25") * i, ["t", str(i)], {"i": i}, "parent ü") for i in range(1, 6)], "reflected table rows")
        ok("SQLAlchemy Core insert/select on reflected tables")
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------- main

def main():
    status = 0
    created = False
    try:
        begin("create schema")
        with psycopg2.connect("", connect_timeout=10) as conn, conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            cur.execute(f"CREATE SCHEMA {SCHEMA}")
            created = True
            cur.execute("SELECT current_schemas(false), 1 + 1")
            eq(cur.fetchone()[1], 2, "SELECT 1 + 1")
        conn.close()
        ok(f"connect and create schema {SCHEMA}")

        psycopg2_checks()
        psycopg3_checks()
        asyncio.run(asyncpg_checks())
        sqlalchemy_checks()

        begin("drop schema")
        with psycopg2.connect("", connect_timeout=10) as conn, conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
            cur.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (SCHEMA,))
            eq(cur.fetchone()[0], 0, "schema still exists")
        conn.close()
        created = False
        ok(f"drop schema {SCHEMA}")
        print("ok: all python checks passed", flush=True)
    except CheckFailed as e:
        print(f"FAIL [{CURRENT}]: {e}", file=sys.stderr, flush=True)
        status = 1
    except BaseException as e:  # noqa: BLE001 - report anything else as a failure of the current check
        print(f"FAIL [{CURRENT}]: unexpected {type(e).__name__}: {e}", file=sys.stderr)
        traceback.print_exc()
        status = 1
    finally:
        if created:
            try:
                conn = psycopg2.connect("", connect_timeout=10)
                conn.autocommit = True
                conn.cursor().execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
                conn.close()
            except Exception as e:  # noqa: BLE001
                print(f"warning: could not drop schema {SCHEMA}: {e}", file=sys.stderr)
    sys.exit(status)


if __name__ == "__main__":
    main()
