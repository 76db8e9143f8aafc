// pgfed real-client test: PostgreSQL JDBC driver (pgjdbc).
//
// Reads PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE; connects with sslmode=disable; works in
// its own schema clients_java_<pid> (dropped at the end); prints "ok: <check>" per check and exits
// non-zero with a message on the first failure.  Build and run with run.sh next to this file.

import java.math.BigDecimal;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.sql.Array;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.SQLWarning;
import java.sql.Statement;
import java.sql.Types;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;

import org.postgresql.PGConnection;
import org.postgresql.PGResultSetMetaData;
import org.postgresql.PGStatement;
import org.postgresql.copy.CopyManager;
import org.postgresql.util.PSQLException;
import org.postgresql.util.ServerErrorMessage;

public final class ClientTest {

    /** Thrown by the check helpers; main() turns it into a message and exit status 1. */
    static final class CheckFailed extends RuntimeException {
        CheckFailed(String message) {
            super(message);
        }
    }

    private static String url;
    private static Properties props;
    private static String schema;
    private static String currentCheck = "setup";
    private static boolean schemaDropped = false;

    public static void main(String[] args) {
        int status = 0;
        try {
            run();
            System.out.println("ok: all java checks passed");
        } catch (CheckFailed e) {
            System.err.println("FAIL [" + currentCheck + "]: " + e.getMessage());
            status = 1;
        } catch (Throwable e) {
            System.err.println("FAIL [" + currentCheck + "]: unexpected " + e);
            e.printStackTrace();
            status = 1;
        } finally {
            cleanup();
        }
        System.out.flush();
        System.err.flush();
        System.exit(status);
    }

    // ---------------------------------------------------------------- helpers

    static String env(String name, String dflt) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? dflt : v;
    }

    static void check(boolean cond, String message) {
        if (!cond) {
            throw new CheckFailed(message);
        }
    }

    static void checkEq(Object expected, Object actual, String what) {
        if (!Objects.equals(expected, actual)) {
            throw new CheckFailed(what + ": expected <" + expected + "> but got <" + actual + ">");
        }
    }

    static void ok(String what) {
        System.out.println("ok: " + what);
        System.out.flush();
    }

    static void begin(String check) {
        currentCheck = check;
    }

    static Connection connect() throws SQLException {
        Connection c = DriverManager.getConnection(url, props);
        try (Statement st = c.createStatement()) {
            st.execute("SET search_path = " + schema);
            st.execute("SET TimeZone = 'UTC'");
        }
        return c;
    }

    static long queryLong(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            check(rs.next(), "no row from: " + sql);
            long v = rs.getLong(1);
            check(!rs.next(), "more than one row from: " + sql);
            return v;
        }
    }

    interface SqlAction {
        void run() throws SQLException;
    }

    static SQLException expectError(SqlAction action, String what) {
        try {
            action.run();
        } catch (SQLException e) {
            return e;
        }
        throw new CheckFailed(what + ": expected an SQLException, but the statement succeeded");
    }

    // ---------------------------------------------------------------- checks

    static void run() throws Exception {
        String host = env("PGHOST", "127.0.0.1");
        if (host.startsWith("/")) {
            throw new CheckFailed("PGHOST=" + host + " is a Unix socket directory; pgjdbc needs a TCP host");
        }
        String port = env("PGPORT", "5432");
        String user = env("PGUSER", System.getProperty("user.name"));
        String db = env("PGDATABASE", user);
        url = "jdbc:postgresql://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + port + "/"
                + URLEncoder.encode(db, StandardCharsets.UTF_8)
                + "?sslmode=disable&connectTimeout=10&socketTimeout=120&ApplicationName=pgfed-clients-java";
        props = new Properties();
        props.setProperty("user", user);
        String pw = System.getenv("PGPASSWORD");
        if (pw != null) {
            props.setProperty("password", pw);
        }
        schema = "clients_java_" + ProcessHandle.current().pid();

        begin("connect");
        try (Connection c = DriverManager.getConnection(url, props); Statement st = c.createStatement()) {
            st.execute("DROP SCHEMA IF EXISTS " + schema + " CASCADE");
            st.execute("CREATE SCHEMA " + schema);
            try (ResultSet rs = st.executeQuery("SELECT current_user, current_database(), 1 + 1")) {
                check(rs.next(), "no row from SELECT current_user");
                checkEq(user, rs.getString(1), "current_user");
                checkEq(db, rs.getString(2), "current_database()");
                checkEq(2, rs.getInt(3), "1 + 1");
            }
        }
        ok("connect and create schema " + schema);

        try (Connection c = connect()) {
            try (Statement st = c.createStatement()) {
                st.execute("CREATE TABLE items ("
                        + " id integer PRIMARY KEY,"
                        + " name text NOT NULL UNIQUE,"
                        + " price numeric(12,4),"
                        + " qty bigint NOT NULL DEFAULT 0,"
                        + " created timestamptz,"
                        + " data bytea,"
                        + " tags text[],"
                        + " active boolean,"
                        + " attrs jsonb)");
                st.execute("CREATE TABLE big (id integer PRIMARY KEY, val bigint NOT NULL, pad text)");
            }
            preparedStatements(c);
            batchInsert(c);
            fetchSizeStreaming(c);
            metadata(c);
            resultSetMetaData(c);
            typesRoundTrip(c);
            errors(c);
            notices(c);
            copy(c);
            transactions(c);
            queryTimeout(c);
        }

        begin("drop schema");
        try (Connection c = DriverManager.getConnection(url, props); Statement st = c.createStatement()) {
            st.execute("DROP SCHEMA " + schema + " CASCADE");
            checkEq(0L, queryLong(c, "SELECT count(*) FROM pg_namespace WHERE nspname = '" + schema + "'"),
                    "schema still exists after DROP SCHEMA");
        }
        schemaDropped = true;
        ok("drop schema " + schema);
    }

    static void preparedStatements(Connection c) throws SQLException {
        begin("prepared statement executed 10 times");
        String sql = "SELECT ?::int * 2 AS doubled, upper(?) AS up, ?::numeric + 0.5 AS num, "
                + "'prep-marker-jdbc' AS marker";
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            PGStatement pgs = ps.unwrap(PGStatement.class);
            checkEq(5, pgs.getPrepareThreshold(), "pgjdbc prepareThreshold");
            for (int i = 1; i <= 10; i++) {
                ps.setInt(1, i * 7);
                ps.setString(2, "value-" + i + "-ü");
                ps.setBigDecimal(3, new BigDecimal(i + ".25"));
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), "execution " + i + " returned no row");
                    checkEq(i * 14, rs.getInt("doubled"), "execution " + i + " doubled");
                    checkEq("VALUE-" + i + "-Ü", rs.getString("up"), "execution " + i + " upper()");
                    checkEq(new BigDecimal(i + ".75"), rs.getBigDecimal("num"), "execution " + i + " numeric");
                    check(!rs.next(), "execution " + i + " returned more than one row");
                }
            }
            check(pgs.isUseServerPrepare(), "after 10 executions the statement is not server-prepared");
            long named = queryLong(c, "SELECT count(*) FROM pg_prepared_statements "
                    + "WHERE NOT from_sql AND statement LIKE '%prep-marker' || '-jdbc%'");
            checkEq(1L, named, "named server-side statements for the query in pg_prepared_statements");
        }
        // a DML prepared statement, also past the threshold, with NULLs and different types
        try (PreparedStatement ins = c.prepareStatement(
                "INSERT INTO items (id, name, price, qty, created, active) VALUES (?, ?, ?, ?, ?, ?)")) {
            for (int i = 1; i <= 10; i++) {
                ins.setInt(1, i);
                ins.setString(2, "item " + i);
                if (i % 3 == 0) {
                    ins.setNull(3, Types.NUMERIC);
                } else {
                    ins.setBigDecimal(3, new BigDecimal(i + ".1234"));
                }
                ins.setLong(4, 1L << (i * 3));
                ins.setObject(5, OffsetDateTime.of(2024, 1, i, 12, 30, 0, 0, ZoneOffset.ofHours(2)));
                ins.setBoolean(6, i % 2 == 0);
                checkEq(1, ins.executeUpdate(), "insert " + i + " update count");
            }
        }
        try (PreparedStatement sel = c.prepareStatement(
                "SELECT name, price, qty, created, active FROM items WHERE id = ?")) {
            for (int i = 1; i <= 10; i++) {
                sel.setInt(1, i);
                try (ResultSet rs = sel.executeQuery()) {
                    check(rs.next(), "item " + i + " not found");
                    checkEq("item " + i, rs.getString(1), "item " + i + " name");
                    checkEq(i % 3 == 0 ? null : new BigDecimal(i + ".1234"), rs.getBigDecimal(2), "item " + i + " price");
                    checkEq(1L << (i * 3), rs.getLong(3), "item " + i + " qty");
                    checkEq(OffsetDateTime.of(2024, 1, i, 10, 30, 0, 0, ZoneOffset.UTC),
                            rs.getObject(4, OffsetDateTime.class), "item " + i + " created");
                    checkEq(i % 2 == 0, rs.getBoolean(5), "item " + i + " active");
                }
            }
        }
        ok("prepared statement executed 10 times (switched to a named server-side statement)");
    }

    static void batchInsert(Connection c) throws SQLException {
        begin("batch insert 1000 rows");
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO big (id, val, pad) VALUES (?, ?, ?)")) {
            for (int i = 1; i <= 1000; i++) {
                ps.setInt(1, i);
                ps.setLong(2, i * 3L);
                ps.setString(3, "row " + i);
                ps.addBatch();
            }
            int[] counts = ps.executeBatch();
            checkEq(1000, counts.length, "executeBatch result length");
            for (int i = 0; i < counts.length; i++) {
                check(counts[i] == 1 || counts[i] == Statement.SUCCESS_NO_INFO,
                        "batch element " + i + " update count " + counts[i]);
            }
        }
        checkEq(1000L, queryLong(c, "SELECT count(*) FROM big"), "rows after batch");
        checkEq(3L * 1000 * 1001 / 2, queryLong(c, "SELECT sum(val) FROM big"), "sum(val) after batch");
        checkEq(1000L, queryLong(c, "SELECT count(*) FROM big WHERE pad = 'row ' || id"), "pad column after batch");
        // a batch with a failing element: pgjdbc reports BatchUpdateException with the SQLState
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO big (id, val) VALUES (?, ?)")) {
            for (int id : new int[] {5001, 5002, 5, 5003}) {
                ps.setInt(1, id);
                ps.setLong(2, 0);
                ps.addBatch();
            }
            SQLException e = expectError(ps::executeBatch, "batch with a duplicate key");
            check(e instanceof BatchUpdateException, "expected BatchUpdateException, got " + e);
            String state = e.getSQLState();
            if (e.getNextException() != null && !"23505".equals(state)) {
                state = e.getNextException().getSQLState();
            }
            checkEq("23505", state, "SQLState of failing batch");
        }
        checkEq(1000L, queryLong(c, "SELECT count(*) FROM big"), "rows after failed batch (autocommit, all rolled back)");
        ok("batch insert of 1000 rows (addBatch/executeBatch), failing batch rolled back");
    }

    static void fetchSizeStreaming(Connection c) throws SQLException {
        begin("fetchSize streaming");
        try (Statement st = c.createStatement()) {
            st.execute("INSERT INTO big (id, val, pad) SELECT g, g * 3, 'row ' || g FROM generate_series(1001, 10000) AS g");
        }
        c.setAutoCommit(false);
        try (PreparedStatement ps = c.prepareStatement("SELECT id, val, pad FROM big ORDER BY id")) {
            ps.setFetchSize(50);
            long count = 0;
            long sum = 0;
            int expectedId = 1;
            try (ResultSet rs = ps.executeQuery()) {
                checkEq(50, rs.getFetchSize(), "ResultSet fetch size");
                while (rs.next()) {
                    int id = rs.getInt(1);
                    checkEq(expectedId, id, "streamed row order");
                    checkEq(id * 3L, rs.getLong(2), "val of streamed row " + id);
                    if (id == 75) {
                        // past the first batch of 50 rows: the portal must still be open on the server
                        checkEq(1L, queryLong(c, "SELECT count(*) FROM pg_cursors WHERE name <> '' "
                                + "AND statement = 'SELECT id, val, pad FROM big ORDER BY id'"),
                                "named portal of the streaming query in pg_cursors");
                    }
                    if (id % 997 == 0) {
                        checkEq("row " + id, rs.getString(3), "pad of streamed row " + id);
                        // another statement on the same connection while the portal is suspended
                        checkEq((long) id, queryLong(c, "SELECT " + id + "::bigint"),
                                "query interleaved with open portal");
                    }
                    count++;
                    sum += rs.getLong(2);
                    expectedId++;
                }
            }
            checkEq(10000L, count, "rows streamed with fetchSize 50");
            checkEq(3L * 10000 * 10001 / 2, sum, "sum of streamed rows");
        }
        c.commit();
        c.setAutoCommit(true);
        ok("fetchSize(50) streaming over 10000 rows (count and sum match)");
    }

    static void metadata(Connection c) throws SQLException {
        begin("DatabaseMetaData");
        DatabaseMetaData md = c.getMetaData();
        List<String> tables = new ArrayList<>();
        try (ResultSet rs = md.getTables(null, schema, "%", new String[] {"TABLE"})) {
            while (rs.next()) {
                checkEq(schema, rs.getString("TABLE_SCHEM"), "getTables TABLE_SCHEM");
                checkEq("TABLE", rs.getString("TABLE_TYPE"), "getTables TABLE_TYPE");
                tables.add(rs.getString("TABLE_NAME"));
            }
        }
        tables.sort(null);
        checkEq(List.of("big", "items"), tables, "getTables(null, schema, \"%\", TABLE)");

        Map<String, String> expected = new LinkedHashMap<>();
        expected.put("id", "int4/" + Types.INTEGER + "/NO");
        expected.put("name", "text/" + Types.VARCHAR + "/NO");
        expected.put("price", "numeric/" + Types.NUMERIC + "/YES");
        expected.put("qty", "int8/" + Types.BIGINT + "/NO");
        expected.put("created", "timestamptz/" + Types.TIMESTAMP + "/YES");
        expected.put("data", "bytea/" + Types.BINARY + "/YES");
        expected.put("tags", "_text/" + Types.ARRAY + "/YES");
        expected.put("active", "bool/" + Types.BIT + "/YES");
        expected.put("attrs", "jsonb/" + Types.OTHER + "/YES");
        Map<String, String> actual = new LinkedHashMap<>();
        try (ResultSet rs = md.getColumns(null, schema, "items", "%")) {
            int pos = 0;
            while (rs.next()) {
                pos++;
                checkEq(pos, rs.getInt("ORDINAL_POSITION"), "getColumns ORDINAL_POSITION");
                actual.put(rs.getString("COLUMN_NAME"),
                        rs.getString("TYPE_NAME") + "/" + rs.getInt("DATA_TYPE") + "/" + rs.getString("IS_NULLABLE"));
                if (rs.getString("COLUMN_NAME").equals("price")) {
                    checkEq(12, rs.getInt("COLUMN_SIZE"), "getColumns COLUMN_SIZE of numeric(12,4)");
                    checkEq(4, rs.getInt("DECIMAL_DIGITS"), "getColumns DECIMAL_DIGITS of numeric(12,4)");
                }
                if (rs.getString("COLUMN_NAME").equals("qty")) {
                    checkEq("0", rs.getString("COLUMN_DEF"), "getColumns COLUMN_DEF of qty");
                }
            }
        }
        checkEq(expected, actual, "getColumns(items)");
        try (ResultSet rs = md.getPrimaryKeys(null, schema, "items")) {
            check(rs.next(), "getPrimaryKeys returned nothing");
            checkEq("id", rs.getString("COLUMN_NAME"), "primary key column");
            check(!rs.next(), "getPrimaryKeys returned more than one column");
        }
        ok("DatabaseMetaData getTables/getColumns/getPrimaryKeys");
    }

    static void resultSetMetaData(Connection c) throws SQLException {
        begin("ResultSetMetaData");
        try (Statement st = c.createStatement();
                ResultSet rs = st.executeQuery("SELECT id, name, price, qty, created, data, tags, active, attrs, "
                        + "1.5::float8 AS f8, now()::date AS d FROM items LIMIT 0")) {
            ResultSetMetaData md = rs.getMetaData();
            checkEq(11, md.getColumnCount(), "column count");
            String[] names = {"id", "name", "price", "qty", "created", "data", "tags", "active", "attrs", "f8", "d"};
            int[] types = {Types.INTEGER, Types.VARCHAR, Types.NUMERIC, Types.BIGINT, Types.TIMESTAMP, Types.BINARY,
                Types.ARRAY, Types.BIT, Types.OTHER, Types.DOUBLE, Types.DATE};
            String[] typeNames = {"int4", "text", "numeric", "int8", "timestamptz", "bytea", "_text", "bool", "jsonb",
                "float8", "date"};
            for (int i = 1; i <= names.length; i++) {
                checkEq(names[i - 1], md.getColumnName(i), "column " + i + " name");
                checkEq(types[i - 1], md.getColumnType(i), "column " + names[i - 1] + " java.sql.Types");
                checkEq(typeNames[i - 1], md.getColumnTypeName(i), "column " + names[i - 1] + " type name");
            }
            // typmod from RowDescription
            checkEq(12, md.getPrecision(3), "precision of numeric(12,4)");
            checkEq(4, md.getScale(3), "scale of numeric(12,4)");
            // table OID and attribute number from RowDescription
            PGResultSetMetaData pg = md.unwrap(PGResultSetMetaData.class);
            checkEq("items", pg.getBaseTableName(1), "base table of column id");
            checkEq("price", pg.getBaseColumnName(3), "base column name of column 3");
            checkEq("", pg.getBaseTableName(10), "base table of a computed column");
            checkEq(ResultSetMetaData.columnNoNulls, md.isNullable(1), "nullability of id");
            checkEq(ResultSetMetaData.columnNullable, md.isNullable(3), "nullability of price");
        }
        ok("ResultSetMetaData names, types, typmod, base table");
    }

    static void typesRoundTrip(Connection c) throws SQLException {
        begin("types round trip");
        byte[] bytes = new byte[300];
        for (int i = 0; i < bytes.length; i++) {
            bytes[i] = (byte) i;
        }
        String text = "O'Reilly \"q\" \\ Grüße 世界 🐘 \ttab\nnewline";
        OffsetDateTime ts = OffsetDateTime.of(1999, 12, 31, 23, 59, 59, 123456000, ZoneOffset.ofHours(-5));
        try (PreparedStatement ps = c.prepareStatement(
                "UPDATE items SET data = ?, tags = ?, attrs = ?::jsonb, name = ?, created = ? WHERE id = ?")) {
            ps.setBytes(1, bytes);
            ps.setArray(2, c.createArrayOf("text", new String[] {"a", "b,c", "d\"e", null}));
            ps.setString(3, "{\"k\": [1, 2, {\"n\": null}], \"s\": \"ü\"}");
            ps.setString(4, text);
            ps.setObject(5, ts);
            ps.setInt(6, 1);
            checkEq(1, ps.executeUpdate(), "update count");
        }
        // run the same SELECT several times so that later executions use binary transfer
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT data, tags, attrs, name, created, price, qty, id::int2 AS small, 1e300::float8 AS big, "
                        + "ARRAY[1, NULL, 3]::int8[] AS ints, '1 day 02:03:04'::interval AS iv, "
                        + "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u FROM items WHERE id = ?")) {
            for (int round = 1; round <= 7; round++) {
                ps.setInt(1, 1);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next(), "round " + round + ": row 1 missing");
                    check(Arrays.equals(bytes, rs.getBytes("data")), "round " + round + ": bytea differs");
                    Array tags = rs.getArray("tags");
                    checkEq(Arrays.asList("a", "b,c", "d\"e", null), Arrays.asList((Object[]) tags.getArray()),
                            "round " + round + ": text[]");
                    checkEq("{\"k\": [1, 2, {\"n\": null}], \"s\": \"ü\"}", rs.getString("attrs"),
                            "round " + round + ": jsonb");
                    checkEq(text, rs.getString("name"), "round " + round + ": text");
                    checkEq(ts.toInstant(), rs.getObject("created", OffsetDateTime.class).toInstant(),
                            "round " + round + ": timestamptz");
                    checkEq(Instant.parse("2000-01-01T04:59:59.123456Z"), rs.getTimestamp("created").toInstant(),
                            "round " + round + ": getTimestamp");
                    checkEq(new BigDecimal("1.1234"), rs.getBigDecimal("price"), "round " + round + ": numeric");
                    checkEq(8L, rs.getLong("qty"), "round " + round + ": int8");
                    checkEq((short) 1, rs.getShort("small"), "round " + round + ": int2");
                    checkEq(1e300, rs.getDouble("big"), "round " + round + ": float8");
                    checkEq(Arrays.asList(1L, null, 3L), Arrays.asList((Object[]) rs.getArray("ints").getArray()),
                            "round " + round + ": int8[]");
                    checkEq("1 day 02:03:04", rs.getString("iv"), "round " + round + ": interval");
                    checkEq(java.util.UUID.fromString("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), rs.getObject("u"),
                            "round " + round + ": uuid");
                }
            }
        }
        ok("types round trip (bytea, text[], jsonb, unicode text, timestamptz, numeric, int2/8, float8, interval, uuid)");
    }

    static void errors(Connection c) throws SQLException {
        begin("SQLSTATE of errors");
        try (Statement st = c.createStatement()) {
            SQLException dup = expectError(() -> st.executeUpdate("INSERT INTO items (id, name) VALUES (1, 'dup')"),
                    "duplicate primary key");
            checkEq("23505", dup.getSQLState(), "SQLState of unique violation");
            ServerErrorMessage sem = ((PSQLException) dup).getServerErrorMessage();
            check(sem != null, "unique violation has no ServerErrorMessage");
            checkEq("Key (id)=(1) already exists.", sem.getDetail(), "detail of unique violation");
            checkEq("items_pkey", sem.getConstraint(), "constraint of unique violation");
            checkEq("items", sem.getTable(), "table of unique violation");
            checkEq(schema, sem.getSchema(), "schema of unique violation");
            checkEq("ERROR", sem.getSeverity(), "severity of unique violation");

            SQLException syntax = expectError(() -> st.executeQuery("SELECT id FROM items WHER id = 1"), "syntax error");
            checkEq("42601", syntax.getSQLState(), "SQLState of syntax error");
            ServerErrorMessage ssem = ((PSQLException) syntax).getServerErrorMessage();
            checkEq(27, ssem.getPosition(), "position of syntax error");
            checkEq("syntax error at or near \"id\"", ssem.getMessage(), "message of syntax error");

            SQLException undefined = expectError(() -> st.executeQuery("SELECT * FROM no_such_table"), "undefined table");
            checkEq("42P01", undefined.getSQLState(), "SQLState of undefined table");
        }
        // the same errors through the extended protocol (prepared statement)
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO items (id, name) VALUES (?, ?)")) {
            ps.setInt(1, 2);
            ps.setString(2, "another");
            SQLException dup = expectError(ps::executeUpdate, "duplicate key via prepared statement");
            checkEq("23505", dup.getSQLState(), "SQLState of unique violation via prepared statement");
        }
        SQLException prepSyntax = expectError(() -> {
            try (PreparedStatement ps = c.prepareStatement("SELEC ?")) {
                ps.setInt(1, 1);
                ps.executeQuery();
            }
        }, "syntax error in prepared statement");
        checkEq("42601", prepSyntax.getSQLState(), "SQLState of syntax error in Parse");
        checkEq(1L, queryLong(c, "SELECT 1"), "connection usable after errors");
        ok("SQLException.getSQLState: 23505 unique violation (with detail/constraint), 42601 syntax error (with position), 42P01");
    }

    static void notices(Connection c) throws SQLException {
        begin("notices as SQLWarning");
        try (Statement st = c.createStatement()) {
            st.execute("DO $$ BEGIN RAISE NOTICE 'first notice %', 1; RAISE WARNING 'second: %', 'ü'; END $$");
            SQLWarning w = st.getWarnings();
            check(w != null, "no SQLWarning after RAISE NOTICE");
            checkEq("first notice 1", w.getMessage(), "first warning message");
            checkEq("00000", w.getSQLState(), "first warning SQLState");
            SQLWarning w2 = w.getNextWarning();
            check(w2 != null, "second warning missing");
            checkEq("second: ü", w2.getMessage(), "second warning message");
            checkEq("01000", w2.getSQLState(), "second warning SQLState");
            check(w2.getNextWarning() == null, "unexpected third warning");
        }
        ok("RAISE NOTICE/WARNING arrive as SQLWarnings");
    }

    static void copy(Connection c) throws Exception {
        begin("COPY via CopyManager");
        CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
        StringBuilder in = new StringBuilder();
        for (int i = 20001; i <= 20500; i++) {
            in.append(i).append('\t').append(i * 3L).append('\t').append("copied ").append(i).append(" ✓\n");
        }
        long copied = cm.copyIn("COPY big (id, val, pad) FROM STDIN",
                new java.io.StringReader(in.toString()));
        checkEq(500L, copied, "rows reported by copyIn");
        java.io.StringWriter out = new java.io.StringWriter();
        long exported = cm.copyOut("COPY (SELECT id, val, pad FROM big WHERE id > 20000 ORDER BY id) TO STDOUT", out);
        checkEq(500L, exported, "rows reported by copyOut");
        checkEq(in.toString(), out.toString(), "COPY TO STDOUT text equals what was copied in");
        SQLException bad = expectError(() -> {
            try {
                cm.copyIn("COPY big (id, val) FROM STDIN", new java.io.StringReader("1\t2\nnot-a-number\t3\n"));
            } catch (java.io.IOException e) {
                throw new SQLException(e);
            }
        }, "COPY with bad data");
        checkEq("22P02", bad.getSQLState(), "SQLState of COPY with bad data");
        checkEq(500L, queryLong(c, "SELECT count(*) FROM big WHERE id > 20000"), "rows after failed COPY");
        ok("COPY FROM STDIN / TO STDOUT via CopyManager, failing COPY reports 22P02");
    }

    static void transactions(Connection c) throws SQLException {
        begin("transaction visibility");
        try (Connection other = connect()) {
            c.setAutoCommit(false);
            try (Statement st = c.createStatement()) {
                st.executeUpdate("INSERT INTO items (id, name) VALUES (500, 'tx row')");
                checkEq(1L, queryLong(c, "SELECT count(*) FROM items WHERE id = 500"), "row visible inside its transaction");
                checkEq(0L, queryLong(other, "SELECT count(*) FROM items WHERE id = 500"),
                        "uncommitted row visible to another connection");
                c.rollback();
                checkEq(0L, queryLong(c, "SELECT count(*) FROM items WHERE id = 500"), "row visible after rollback");

                st.executeUpdate("INSERT INTO items (id, name) VALUES (501, 'sp row 1')");
                java.sql.Savepoint sp = c.setSavepoint("sp1");
                st.executeUpdate("INSERT INTO items (id, name) VALUES (502, 'sp row 2')");
                c.rollback(sp);
                // an error inside the transaction, then rollback to a savepoint keeps the transaction usable
                java.sql.Savepoint sp2 = c.setSavepoint("sp2");
                SQLException e = expectError(() -> st.executeUpdate("INSERT INTO items (id, name) VALUES (501, 'dup')"),
                        "duplicate inside transaction");
                checkEq("23505", e.getSQLState(), "SQLState inside transaction");
                SQLException aborted = expectError(() -> st.executeQuery("SELECT 1"), "query in aborted transaction");
                checkEq("25P02", aborted.getSQLState(), "SQLState in aborted transaction");
                c.rollback(sp2);
                st.executeUpdate("INSERT INTO items (id, name) VALUES (503, 'sp row 3')");
                c.commit();
            }
            c.setAutoCommit(true);
            try (Statement st = other.createStatement();
                    ResultSet rs = st.executeQuery("SELECT array_agg(id ORDER BY id)::text FROM items WHERE id >= 500")) {
                check(rs.next(), "no row");
                checkEq("{501,503}", rs.getString(1), "rows committed after savepoint rollbacks");
            }
        }
        ok("transaction rollback/commit visibility across connections, savepoints, 25P02 after error");
    }

    static void queryTimeout(Connection c) throws SQLException {
        begin("setQueryTimeout cancel");
        try (Statement st = c.createStatement()) {
            st.setQueryTimeout(1);
            long t0 = System.nanoTime();
            SQLException e = expectError(() -> st.executeQuery("SELECT pg_sleep(5)"), "pg_sleep(5) with query timeout 1s");
            long ms = (System.nanoTime() - t0) / 1_000_000;
            checkEq("57014", e.getSQLState(), "SQLState of cancelled query (message: " + e.getMessage() + ")");
            check(ms < 4500, "cancel took " + ms + " ms, the query was not cancelled early");
        }
        checkEq(42L, queryLong(c, "SELECT 42"), "connection usable after cancel");
        // and again, to make sure the cancel did not leave anything behind
        try (Statement st = c.createStatement()) {
            st.setQueryTimeout(1);
            SQLException e = expectError(() -> st.execute("SELECT pg_sleep(5)"), "second pg_sleep(5) with timeout");
            checkEq("57014", e.getSQLState(), "SQLState of second cancelled query");
        }
        try (PreparedStatement ps = c.prepareStatement("SELECT ?::int + 1")) {
            ps.setInt(1, 41);
            try (ResultSet rs = ps.executeQuery()) {
                check(rs.next(), "no row after cancel");
                checkEq(42, rs.getInt(1), "prepared statement after cancel");
            }
        }
        ok("setQueryTimeout(1) cancels pg_sleep(5) with 57014 (CancelRequest), connection still usable");
    }

    static void cleanup() {
        if (url == null || schema == null || schemaDropped) {
            return;
        }
        try (Connection c = DriverManager.getConnection(url, props); Statement st = c.createStatement()) {
            st.execute("DROP SCHEMA IF EXISTS " + schema + " CASCADE");
        } catch (SQLException e) {
            System.err.println("warning: could not drop schema " + schema + ": " + e.getMessage());
        }
    }
}
