'use strict';
// pgfed real-client test: node-postgres (pg 8.x).
//
// Reads PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE (pg reads them itself), works in its own
// schema clients_node_<pid> (dropped at the end), prints "ok: <check>" per check and exits
// non-zero with a message on the first failure.
//
// Run:  npm ci && node test.js        (in this directory)

const assert = require('node:assert/strict');
const pg = require('pg');

const SCHEMA = `clients_node_${process.pid}`;
let current = 'setup';

class CheckFailed extends Error {}

function begin(name) {
  current = name;
}

function ok(what) {
  console.log(`ok: ${what}`);
}

function expect(cond, message) {
  if (!cond) throw new CheckFailed(message);
}

function eq(actual, expected, what) {
  try {
    assert.deepStrictEqual(actual, expected);
  } catch (e) {
    throw new CheckFailed(`${what}: expected ${fmt(expected)}, got ${fmt(actual)}`);
  }
}

function fmt(v) {
  if (Buffer.isBuffer(v)) return `Buffer<${v.toString('hex')}>`;
  if (v instanceof Date) return `Date<${v.toISOString()}>`;
  try {
    return JSON.stringify(v);
  } catch (e) {
    return String(v);
  }
}

async function expectError(promise, what) {
  try {
    await promise;
  } catch (e) {
    if (e instanceof CheckFailed) throw e;
    return e;
  }
  throw new CheckFailed(`${what}: expected an error, but the query succeeded`);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function connect() {
  const client = new pg.Client({ application_name: 'pgfed-clients-node', connectionTimeoutMillis: 10000 });
  await client.connect();
  await client.query(`SET search_path = ${SCHEMA}; SET TimeZone = 'UTC'`);
  return client;
}

async function simpleQueries(c) {
  begin('simple queries');
  const one = await c.query('SELECT 1 AS one, \'text\' AS t, NULL AS n');
  eq(one.rows, [{ one: 1, t: 'text', n: null }], 'SELECT 1');
  eq(one.command, 'SELECT', 'command tag');
  eq(one.rowCount, 1, 'rowCount');
  eq(one.fields.map((f) => f.name), ['one', 't', 'n'], 'field names');
  // several statements in one simple Query message: one result per statement
  const multi = await c.query(`CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL UNIQUE,
                                 price numeric(12,4), qty int8, created timestamptz, data bytea,
                                 tags text[], nums int4[], big int8[], attrs jsonb);
                               INSERT INTO items (id, name) VALUES (1, 'one'), (2, 'two');
                               SELECT count(*)::int AS n FROM items;
                               UPDATE items SET qty = 5`);
  eq(multi.map((r) => r.command), ['CREATE', 'INSERT', 'SELECT', 'UPDATE'], 'commands of a multi-statement query');
  eq(multi[1].rowCount, 2, 'INSERT rowCount');
  eq(multi[2].rows, [{ n: 2 }], 'SELECT in a multi-statement query');
  eq(multi[3].rowCount, 2, 'UPDATE rowCount');
  const arr = await c.query({ text: 'SELECT g, g * g AS sq FROM generate_series(1, 3) AS g', rowMode: 'array' });
  eq(arr.rows, [[1, 1], [2, 4], [3, 9]], 'rowMode array');
  const many = await c.query('SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) AS g');
  eq(many.rowCount, 20000, 'rows of a 20000-row result');
  eq(many.rows[19999], { g: 20000, h: require('node:crypto').createHash('md5').update('20000').digest('hex') }, 'last row of a 20000-row result');
  const empty = await c.query('');
  eq(empty.rows, [], 'empty query');
  ok('simple queries (multi-statement, rowMode array, 20000 rows, empty query)');
}

async function parameterized(c) {
  begin('parameterized queries');
  const tricky = 'O\'Reilly "dq" \\ $1 ; -- Grüße 世界 🐘';
  const r = await c.query('SELECT $1::int + $2::int AS sum, $3::text AS t, $4::text IS NULL AS isnull, length($3) AS len',
    [40, 2, tricky, null]);
  eq(r.rows, [{ sum: 42, t: tricky, isnull: true, len: tricky.length - 1 /* 🐘 is one char, two UTF-16 units */ }],
    'parameterized SELECT');
  const ins = await c.query('INSERT INTO items (id, name, price) VALUES ($1, $2, $3), ($4, $5, $6) RETURNING id',
    [3, tricky, '1.5', 4, 'four', null]);
  eq(ins.rows, [{ id: 3 }, { id: 4 }], 'INSERT RETURNING');
  const sel = await c.query('SELECT name, price FROM items WHERE id = ANY($1::int[]) ORDER BY id', [[3, 4]]);
  eq(sel.rows, [{ name: tricky, price: '1.5000' }, { name: 'four', price: null }], 'array parameter');
  ok('parameterized queries (unicode, quotes, NULL, array parameter)');
}

async function namedPrepared(c) {
  begin('named prepared statement');
  for (let i = 1; i <= 10; i++) {
    const r = await c.query({
      name: 'pgfed-node-named',
      text: 'SELECT $1::int * 3 AS tripled, $2::text || \'!\' AS shout',
      values: [i, `n${i}`],
    });
    eq(r.rows, [{ tripled: i * 3, shout: `n${i}!` }], `named statement execution ${i}`);
  }
  const ps = await c.query('SELECT statement FROM pg_prepared_statements WHERE name = $1 AND NOT from_sql',
    ['pgfed-node-named']);
  eq(ps.rows.length, 1, 'pg_prepared_statements has the named statement');
  expect(ps.rows[0].statement.includes('tripled'), `unexpected statement text ${ps.rows[0].statement}`);
  // a second named statement with a different text, interleaved with the first
  for (let i = 1; i <= 5; i++) {
    const a = await c.query({ name: 'pgfed-node-upd', text: 'UPDATE items SET qty = qty + $1 WHERE id = $2', values: [i, 1] });
    eq(a.rowCount, 1, `named UPDATE ${i}`);
    const b = await c.query({ name: 'pgfed-node-named', text: 'SELECT $1::int * 3 AS tripled, $2::text || \'!\' AS shout', values: [i, 'x'] });
    eq(b.rows[0].tripled, i * 3, `interleaved named statement ${i}`);
  }
  eq((await c.query('SELECT qty FROM items WHERE id = 1')).rows, [{ qty: '20' }], 'qty after 5 named UPDATEs');
  ok('named prepared statements executed 10 times (one server-side statement), interleaved with another');
}

async function types(c) {
  begin('types');
  const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const created = new Date('1999-12-31T23:59:59.123Z');
  await c.query(`UPDATE items SET price = $1, qty = $2, created = $3, data = $4, tags = $5, nums = $6, big = $7,
                 attrs = $8 WHERE id = 2`,
  ['12345678.1234', '9223372036854775807', created, bytes, ['a', 'b,c', 'd"e', null], [1, null, 3],
    ['-9223372036854775808', '1'], JSON.stringify({ k: [1, null, 'ü'], n: { x: true } })]);
  const r = await c.query('SELECT price, qty, created, data, tags, nums, big, attrs FROM items WHERE id = 2');
  const row = r.rows[0];
  eq(row.price, '12345678.1234', 'numeric arrives as string');
  eq(row.qty, '9223372036854775807', 'int8 arrives as string');
  eq(row.created, created, 'timestamptz as Date');
  eq(row.data, bytes, 'bytea as Buffer');
  eq(row.tags, ['a', 'b,c', 'd"e', null], 'text[]');
  eq(row.nums, [1, null, 3], 'int4[]');
  eq(row.big, ['-9223372036854775808', '1'], 'int8[] as strings');
  eq(row.attrs, { k: [1, null, 'ü'], n: { x: true } }, 'jsonb parsed');
  const lit = await c.query(`SELECT 9007199254740993::int8 AS i8, 0.1::float8 + 0.2::float8 AS f8, true AS b,
                               '{"b": 1, "a": [2]}'::json AS j, '\\xdeadbeef'::bytea AS bt,
                               '2024-03-10 01:59:59-05'::timestamptz AS tz, '2024-02-29'::date::text AS d,
                               ARRAY[[1, 2], [3, 4]] AS arr2d, 'NaN'::numeric AS nan, '{}'::text[] AS emptyarr`);
  eq(lit.rows[0], {
    i8: '9007199254740993', f8: 0.30000000000000004, b: true, j: { b: 1, a: [2] },
    bt: Buffer.from('deadbeef', 'hex'), tz: new Date('2024-03-10T06:59:59Z'), d: '2024-02-29',
    arr2d: [[1, 2], [3, 4]], nan: 'NaN', emptyarr: [],
  }, 'literal types');
  eq(lit.fields.map((f) => f.dataTypeID), [20, 701, 16, 114, 17, 1184, 25, 1007, 1700, 1009], 'field type OIDs');
  ok('types (int8/numeric as string, json, bytea, timestamptz, arrays, field OIDs)');
}

async function errors(c) {
  begin('error fields');
  const dup = await expectError(c.query('INSERT INTO items (id, name) VALUES (1, \'dup\')'), 'duplicate key');
  eq([dup.code, dup.detail, dup.constraint, dup.table, dup.schema, dup.severity],
    ['23505', 'Key (id)=(1) already exists.', 'items_pkey', 'items', SCHEMA, 'ERROR'], 'unique violation fields');
  const syn = await expectError(c.query('SELECT id FROM items WHER id = 1'), 'syntax error');
  eq([syn.code, syn.position, syn.message], ['42601', '27', 'syntax error at or near "id"'], 'syntax error fields');
  const hint = await expectError(c.query('SELECT namee FROM items'), 'undefined column');
  eq([hint.code, hint.position, hint.hint], ['42703', '8', 'Perhaps you meant to reference the column "items.name".'],
    'undefined column fields');
  const ext = await expectError(c.query('SELECT $1::int / 0', [1]), 'division by zero (extended protocol)');
  eq(ext.code, '22012', 'division by zero code');
  const mid = await expectError(c.query('SELECT 1 / (g - 3) FROM generate_series(1, 5) AS g'), 'error after rows');
  eq(mid.code, '22012', 'error after some rows');
  const custom = await expectError(c.query(`DO $$ BEGIN RAISE EXCEPTION 'custom %', 7 USING ERRCODE = 'P0042',
                                             DETAIL = 'd', HINT = 'h'; END $$`), 'RAISE EXCEPTION');
  eq([custom.code, custom.message, custom.detail, custom.hint], ['P0042', 'custom 7', 'd', 'h'], 'custom error fields');
  expect(/PL\/pgSQL function/.test(custom.where || ''), `error context: ${custom.where}`);
  eq((await c.query('SELECT \'still usable\' AS s')).rows, [{ s: 'still usable' }], 'connection usable after errors');
  ok('error code/position/detail/hint/constraint fields (simple and extended protocol)');
}

async function notices(c) {
  begin('notices');
  const got = [];
  const onNotice = (msg) => got.push([msg.severity, msg.code, msg.message, msg.detail]);
  c.on('notice', onNotice);
  await c.query(`DO $$ BEGIN RAISE NOTICE 'node notice %', 1; RAISE WARNING 'node warning ü' USING DETAIL = 'det';
                 END $$`);
  await c.query('DROP TABLE IF EXISTS does_not_exist');
  c.removeListener('notice', onNotice);
  eq(got, [
    ['NOTICE', '00000', 'node notice 1', undefined],
    ['WARNING', '01000', 'node warning ü', 'det'],
    ['NOTICE', '00000', 'table "does_not_exist" does not exist, skipping', undefined],
  ], 'notices received');
  ok('notices via client.on(\'notice\')');
}

async function listenNotify() {
  begin('LISTEN/NOTIFY');
  const listener = await connect();
  const sender = await connect();
  try {
    const received = [];
    listener.on('notification', (n) => received.push(n));
    await listener.query('LISTEN "pgfed node chan"');
    const senderPid = (await sender.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    await sender.query('NOTIFY "pgfed node chan", \'first\'');
    await sender.query('SELECT pg_notify($1, $2)', ['pgfed node chan', 'second ü']);
    await sender.query('BEGIN; NOTIFY "pgfed node chan", \'rolled back\'; ROLLBACK');
    await sender.query('BEGIN; NOTIFY "pgfed node chan", \'committed\'; COMMIT');
    await sender.query('NOTIFY other_channel, \'not listened to\'');
    const deadline = Date.now() + 10000;
    while (received.length < 3 && Date.now() < deadline) await sleep(20);
    await sleep(100); // anything unexpected would arrive now
    eq(received.map((n) => [n.channel, n.payload]),
      [['pgfed node chan', 'first'], ['pgfed node chan', 'second ü'], ['pgfed node chan', 'committed']],
      'notifications received');
    eq([...new Set(received.map((n) => n.processId))], [senderPid], 'sender pid of notifications');
    await listener.query('UNLISTEN *');
    await sender.query('NOTIFY "pgfed node chan", \'after unlisten\'');
    await listener.query('SELECT 1');
    await sleep(100);
    eq(received.length, 3, 'notifications after UNLISTEN');
  } finally {
    await listener.end();
    await sender.end();
  }
  ok('LISTEN/NOTIFY between two clients (transactional NOTIFY, UNLISTEN)');
}

async function transactions(c) {
  begin('transactions');
  const other = await connect();
  try {
    await c.query('BEGIN');
    await c.query('INSERT INTO items (id, name) VALUES (100, \'tx\')');
    eq((await c.query('SELECT count(*)::int AS n FROM items WHERE id = 100')).rows, [{ n: 1 }], 'visible inside transaction');
    eq((await other.query('SELECT count(*)::int AS n FROM items WHERE id = 100')).rows, [{ n: 0 }],
      'invisible to another client before commit');
    await c.query('ROLLBACK');
    eq((await c.query('SELECT count(*)::int AS n FROM items WHERE id = 100')).rows, [{ n: 0 }], 'gone after ROLLBACK');

    await c.query('BEGIN');
    await c.query('INSERT INTO items (id, name) VALUES (101, \'kept\')');
    await c.query('SAVEPOINT s1');
    const e = await expectError(c.query('INSERT INTO items (id, name) VALUES (1, \'dup\')'), 'duplicate in transaction');
    eq(e.code, '23505', 'error inside transaction');
    const aborted = await expectError(c.query('SELECT 1'), 'query in aborted transaction');
    eq(aborted.code, '25P02', 'in failed transaction');
    await c.query('ROLLBACK TO SAVEPOINT s1');
    await c.query('INSERT INTO items (id, name) VALUES ($1, $2)', [102, 'kept too']);
    await c.query('COMMIT');
    eq((await other.query('SELECT array_agg(id ORDER BY id) AS ids FROM items WHERE id >= 100')).rows,
      [{ ids: [101, 102] }], 'committed rows seen by another client');
  } finally {
    await other.end();
  }
  ok('transaction with ROLLBACK, savepoint after an error, commit visibility');
}

async function pool() {
  begin('pg.Pool');
  const p = new pg.Pool({ max: 5, application_name: 'pgfed-clients-node-pool', connectionTimeoutMillis: 10000 });
  try {
    const t0 = Date.now();
    const results = await Promise.all([1, 2, 3, 4, 5].map((i) => p.query(
      `SELECT $1::int AS i, pg_backend_pid() AS pid, (SELECT count(*)::int FROM ${SCHEMA}.items) AS n, pg_sleep(0.5)`,
      [i])));
    const elapsed = Date.now() - t0;
    eq(results.map((r) => r.rows[0].i), [1, 2, 3, 4, 5], 'pool query results');
    eq(new Set(results.map((r) => r.rows[0].pid)).size, 5, 'distinct backends for 5 concurrent queries');
    eq(new Set(results.map((r) => r.rows[0].n)).size, 1, 'all pool clients see the same table');
    expect(elapsed < 2400, `5 concurrent pg_sleep(0.5) took ${elapsed} ms: queries did not run concurrently`);
    eq(p.totalCount, 5, 'pool size');
    // reuse of pooled connections, with a transaction on a checked-out client
    const client = await p.connect();
    try {
      await client.query('BEGIN');
      await client.query(`INSERT INTO ${SCHEMA}.items (id, name) VALUES (200, 'pool')`);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    const again = await Promise.all(Array.from({ length: 20 }, (_, i) => p.query('SELECT $1::int * 2 AS d', [i])));
    eq(again.map((r) => r.rows[0].d), Array.from({ length: 20 }, (_, i) => i * 2), '20 queries over 5 pooled connections');
    eq((await p.query(`SELECT count(*)::int AS n FROM ${SCHEMA}.items WHERE id = 200`)).rows, [{ n: 0 }],
      'rolled back on pooled client');
  } finally {
    await p.end();
  }
  ok('pg.Pool with 5 concurrent queries on 5 backends');
}

async function main() {
  const watchdog = setTimeout(() => {
    console.error(`FAIL [${current}]: timed out after 120 s`);
    process.exit(1);
  }, 120000);
  let status = 0;
  let created = false;
  try {
    begin('create schema');
    const admin = new pg.Client({ connectionTimeoutMillis: 10000 });
    await admin.connect();
    await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE; CREATE SCHEMA ${SCHEMA}`);
    created = true;
    await admin.end();
    ok(`connect and create schema ${SCHEMA}`);

    const c = await connect();
    try {
      await simpleQueries(c);
      await parameterized(c);
      await namedPrepared(c);
      await types(c);
      await errors(c);
      await notices(c);
      await transactions(c);
    } finally {
      await c.end();
    }
    await listenNotify();
    await pool();

    begin('drop schema');
    const admin2 = new pg.Client({ connectionTimeoutMillis: 10000 });
    await admin2.connect();
    await admin2.query(`DROP SCHEMA ${SCHEMA} CASCADE`);
    eq((await admin2.query('SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = $1', [SCHEMA])).rows,
      [{ n: 0 }], 'schema gone');
    created = false;
    await admin2.end();
    ok(`drop schema ${SCHEMA}`);
    ok('all node checks passed');
  } catch (e) {
    status = 1;
    if (e instanceof CheckFailed) {
      console.error(`FAIL [${current}]: ${e.message}`);
    } else {
      console.error(`FAIL [${current}]: unexpected error: ${e && e.stack ? e.stack : e}`);
    }
  } finally {
    if (created) {
      try {
        const cleanup = new pg.Client({ connectionTimeoutMillis: 10000 });
        await cleanup.connect();
        await cleanup.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
        await cleanup.end();
      } catch (e) {
        console.error(`warning: could not drop schema ${SCHEMA}: ${e.message}`);
      }
    }
    clearTimeout(watchdog);
  }
  // exit explicitly: after a failure a client may still hold an open socket that would keep node
  // alive (stdout/stderr writes to files and pipes are synchronous, nothing is lost)
  process.exit(status);
}

main();
