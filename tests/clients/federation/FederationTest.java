// pgfed real-client test of federation: the PostgreSQL JDBC driver (pgjdbc) on foreign tables.
//
// Reads PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE and the fixture's names (PGFED_FED_SCHEMA,
// PGFED_FED_TABLE: the foreign table, PGFED_FED_REMOTE: the remote table behind it, readable
// directly, PGFED_FED_LOCAL: a local table, PGFED_FED_SLOW: a foreign table whose rows sleep,
// PGFED_FED_ROWS: the row count). Every federated answer is compared with the same query on the
// remote table. Prints "ok: <check>" per check; runs every check, prints "FAIL [check]: ..." for
// each failure and exits 1 if any failed. Build and run with run.sh next to this file.

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.LocalDate;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.UUID;

import org.postgresql.PGResultSetMetaData;
import org.postgresql.PGStatement;

public final class FederationTest {

    static final class CheckFailed extends RuntimeException {
        CheckFailed(String message) {
            super(message);
        }
    }

    interface Check {
        void run() throws Exception;
    }

    interface SqlAction {
        void run() throws SQLException;
    }

    private static String url;
    private static Properties props;
    private static String schema;
    private static String table;
    private static String remote;
    private static String local;
    private static String slow;
    private static int rows;
    private static int failures = 0;

    static final String COLUMNS = "id, big, name, code, amount, ratio, flag, day, ts, tstz, uid, doc";

    public static void main(String[] args) {
        try {
            setup();
            check("DatabaseMetaData getTables/getColumns list the foreign table", FederationTest::metadata);
            check("PreparedStatement with parameters, server-prepared", FederationTest::prepared);
            check("ResultSetMetaData of a foreign table's columns", FederationTest::resultSetMetaData);
            check("cross-source join", FederationTest::innerJoin);
            check("cross-source left join with a condition on the foreign side", FederationTest::leftJoin);
            check("cross-source join as a server-prepared statement", FederationTest::preparedJoin);
            check("fetchSize streaming with a named portal", FederationTest::fetchSize);
            check("setQueryTimeout cancels a slow foreign scan", FederationTest::queryTimeout);
            check("federated error, then the connection works", FederationTest::errors);
        } catch (Throwable e) {
            System.err.println("FAIL [setup]: " + e);
            e.printStackTrace();
            failures++;
        }
        if (failures == 0) {
            System.out.println("ok: all java federation checks passed");
        }
        System.out.flush();
        System.err.flush();
        System.exit(failures == 0 ? 0 : 1);
    }

    // ---------------------------------------------------------------- helpers

    static String env(String name, String dflt) {
        String v = System.getenv(name);
        if (v == null || v.isEmpty()) {
            if (dflt == null) {
                throw new CheckFailed("environment variable " + name + " is not set");
            }
            return dflt;
        }
        return v;
    }

    static void setup() {
        String host = env("PGHOST", "127.0.0.1");
        url = "jdbc:postgresql://" + host + ":" + env("PGPORT", "5432") + "/" + env("PGDATABASE", "postgres");
        props = new Properties();
        props.setProperty("user", env("PGUSER", "postgres"));
        props.setProperty("password", env("PGPASSWORD", ""));
        props.setProperty("sslmode", "disable");
        props.setProperty("ApplicationName", "pgfed-federation-jdbc");
        schema = env("PGFED_FED_SCHEMA", null);
        table = env("PGFED_FED_TABLE", null);
        remote = env("PGFED_FED_REMOTE", null);
        local = env("PGFED_FED_LOCAL", null);
        slow = env("PGFED_FED_SLOW", null);
        rows = Integer.parseInt(env("PGFED_FED_ROWS", null));
    }

    /** Runs one check on its own; a failure is reported and the next check runs. */
    static void check(String name, Check body) {
        try {
            body.run();
            System.out.println("ok: " + name);
        } catch (CheckFailed e) {
            System.out.println("FAIL [" + name + "]: " + e.getMessage());
            failures++;
        } catch (Throwable e) {
            System.out.println("FAIL [" + name + "]: unexpected " + e);
            e.printStackTrace(System.out);
            failures++;
        }
        System.out.flush();
    }

    static void expect(boolean cond, String message) {
        if (!cond) {
            throw new CheckFailed(message);
        }
    }

    static void expectEq(Object expected, Object actual, String what) {
        if (!Objects.equals(expected, actual)) {
            throw new CheckFailed(what + ": expected <" + expected + "> but got <" + actual + ">");
        }
    }

    static SQLException expectError(SqlAction action, String what) {
        try {
            action.run();
        } catch (SQLException e) {
            return e;
        }
        throw new CheckFailed(what + ": expected an SQLException, but the statement succeeded");
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
            expect(rs.next(), "no row from: " + sql);
            long v = rs.getLong(1);
            expect(!rs.next(), "more than one row from: " + sql);
            return v;
        }
    }

    /** Each row as its columns' getObject and getString, so typed and text reads are compared. */
    static List<List<Object>> read(ResultSet rs) throws SQLException {
        int n = rs.getMetaData().getColumnCount();
        List<List<Object>> out = new ArrayList<>();
        while (rs.next()) {
            List<Object> row = new ArrayList<>();
            for (int i = 1; i <= n; i++) {
                Object o = rs.getObject(i);
                row.add(o == null ? null : o.getClass().getName() + ":" + o);
                row.add(rs.getString(i));
            }
            out.add(row);
        }
        return out;
    }

    static List<List<Object>> query(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            return read(rs);
        }
    }

    static void sameRows(List<List<Object>> remoteRows, List<List<Object>> fedRows, String what) {
        expectEq(remoteRows.size(), fedRows.size(), what + ": row count");
        for (int i = 0; i < remoteRows.size(); i++) {
            expectEq(remoteRows.get(i), fedRows.get(i), what + ": row " + i);
        }
    }

    // ---------------------------------------------------------------- checks

    static Map<String, List<Object>> columns(DatabaseMetaData md, String tableName) throws SQLException {
        Map<String, List<Object>> cols = new LinkedHashMap<>();
        try (ResultSet rs = md.getColumns(null, schema, tableName, "%")) {
            while (rs.next()) {
                cols.put(rs.getString("COLUMN_NAME"), Arrays.asList(rs.getString("TYPE_NAME"), rs.getInt("DATA_TYPE"),
                        rs.getInt("COLUMN_SIZE"), rs.getInt("DECIMAL_DIGITS"), rs.getInt("NULLABLE"),
                        rs.getInt("ORDINAL_POSITION"), rs.getString("IS_NULLABLE")));
            }
        }
        return cols;
    }

    static void metadata() throws SQLException {
        try (Connection c = connect()) {
            DatabaseMetaData md = c.getMetaData();
            Map<String, String> tables = new LinkedHashMap<>();
            try (ResultSet rs = md.getTables(null, schema, "%", new String[] {"TABLE"})) {
                while (rs.next()) {
                    tables.put(rs.getString("TABLE_NAME"), rs.getString("TABLE_TYPE"));
                }
            }
            expectEq("TABLE", tables.get(table), "getTables(TABLE) type of the foreign table (all: " + tables + ")");
            expectEq("TABLE", tables.get(slow), "getTables(TABLE) type of the slow foreign table");
            expectEq("TABLE", tables.get(local), "getTables(TABLE) type of the local table");
            Map<String, List<Object>> fed = columns(md, table);
            List<String> typeNames = new ArrayList<>();
            for (List<Object> col : fed.values()) {
                typeNames.add((String) col.get(0));
            }
            expectEq(Arrays.asList(COLUMNS.split(", ")), new ArrayList<>(fed.keySet()), "getColumns names");
            expectEq(Arrays.asList("int4", "int8", "text", "varchar", "numeric", "float8", "bool", "date", "timestamp",
                    "timestamptz", "uuid", "jsonb"), typeNames, "getColumns TYPE_NAME");
            expectEq(20, fed.get("code").get(2), "COLUMN_SIZE of varchar(20)");
            expectEq(12, fed.get("amount").get(2), "COLUMN_SIZE of numeric(12,2)");
            expectEq(2, fed.get("amount").get(3), "DECIMAL_DIGITS of numeric(12,2)");
            expectEq(DatabaseMetaData.columnNoNulls, fed.get("id").get(4), "NULLABLE of id (NOT NULL)");
            expectEq(columns(md, remote), fed, "getColumns of the foreign table vs the remote table");
        }
    }

    static final String PREPARED = "SELECT " + COLUMNS + " FROM %s WHERE id BETWEEN ? AND ? AND code <> ? "
            + "AND ratio >= ? AND amount < ? AND tstz > ? AND day >= ? AND uid <> ? ORDER BY id";

    static void bind(PreparedStatement ps, int i) throws SQLException {
        ps.setInt(1, i * 500);
        ps.setInt(2, i * 500 + 60);
        ps.setString(3, "c" + (i % 100));
        ps.setDouble(4, i * 50.5);
        ps.setBigDecimal(5, new BigDecimal("100000.50"));
        ps.setObject(6, OffsetDateTime.of(2024, 3, 30, 12, 0, 0, 0, ZoneOffset.UTC));
        ps.setObject(7, LocalDate.of(2024, 2, 1));
        ps.setObject(8, UUID.fromString("c4ca4238-a0b9-2382-0dcc-509a6f75849b"));
    }

    static void prepared() throws SQLException {
        try (Connection c = connect();
                PreparedStatement fed = c.prepareStatement(String.format(PREPARED, table));
                PreparedStatement rem = c.prepareStatement(String.format(PREPARED, remote))) {
            PGStatement pgs = fed.unwrap(PGStatement.class);
            expectEq(5, pgs.getPrepareThreshold(), "pgjdbc prepareThreshold");
            int nonEmpty = 0;
            for (int i = 1; i <= 8; i++) {
                bind(fed, i);
                bind(rem, i);
                List<List<Object>> want;
                List<List<Object>> got;
                try (ResultSet rs = rem.executeQuery()) {
                    want = read(rs);
                }
                try (ResultSet rs = fed.executeQuery()) {
                    got = read(rs);
                }
                sameRows(want, got, "execution " + i);
                if (!got.isEmpty()) {
                    nonEmpty++;
                }
            }
            expect(nonEmpty >= 6, "the parameters select rows in most executions (" + nonEmpty + " of 8)");
            expect(pgs.isUseServerPrepare(), "after 8 executions the statement is not server-prepared");
            // the same statement again after a plain query, from its (named) server-side statement
            expectEq(1L, queryLong(c, "SELECT count(*) FROM " + table + " WHERE id = 1"), "plain query in between");
            bind(fed, 3);
            try (ResultSet rs = fed.executeQuery()) {
                expect(rs.next(), "re-execution returned no row");
                expectEq(1500, rs.getInt("id"), "re-execution first id");
            }
        }
    }

    /** Collects every mismatch of a check, so one failure does not hide the others. */
    static final class Mismatches {
        final List<String> found = new ArrayList<>();

        void eq(Object expected, Object actual, String what) {
            if (!Objects.equals(expected, actual)) {
                String e = String.valueOf(expected);
                String a = String.valueOf(actual);
                if (expected != null && actual != null && e.equals(a)) {
                    // same text, different Java types: name them
                    e += " (" + expected.getClass().getSimpleName() + ")";
                    a += " (" + actual.getClass().getSimpleName() + ")";
                }
                found.add(what + ": expected <" + e + "> but got <" + a + ">");
            }
        }

        void done() {
            if (!found.isEmpty()) {
                throw new CheckFailed(found.size() + " mismatch(es):\n    " + String.join("\n    ", found));
            }
        }
    }

    static void resultSetMetaData() throws SQLException {
        Mismatches m = new Mismatches();
        try (Connection c = connect()) {
            String sql = "SELECT " + COLUMNS + ", id + 1 AS computed FROM %s WHERE id = 1";
            for (int round = 0; round < 2; round++) {
                try (PreparedStatement fps = c.prepareStatement(String.format(sql, table));
                        PreparedStatement rps = c.prepareStatement(String.format(sql, remote))) {
                    if (round == 1) {
                        // named server-side statements from the first execution on
                        fps.unwrap(PGStatement.class).setPrepareThreshold(1);
                        rps.unwrap(PGStatement.class).setPrepareThreshold(1);
                    }
                    try (ResultSet fr = fps.executeQuery(); ResultSet rr = rps.executeQuery()) {
                        ResultSetMetaData f = fr.getMetaData();
                        ResultSetMetaData r = rr.getMetaData();
                        expectEq(13, f.getColumnCount(), "column count");
                        List<String> typeNames = new ArrayList<>();
                        for (int i = 1; i <= 13; i++) {
                            typeNames.add(f.getColumnTypeName(i));
                            String what = "round " + round + " column " + i + " (" + r.getColumnLabel(i) + ")";
                            m.eq(r.getColumnLabel(i), f.getColumnLabel(i), what + " label");
                            m.eq(r.getColumnType(i), f.getColumnType(i), what + " getColumnType");
                            m.eq(r.getColumnTypeName(i), f.getColumnTypeName(i), what + " getColumnTypeName");
                            m.eq(r.getPrecision(i), f.getPrecision(i), what + " getPrecision");
                            m.eq(r.getScale(i), f.getScale(i), what + " getScale");
                            m.eq(r.getColumnDisplaySize(i), f.getColumnDisplaySize(i), what + " display size");
                            m.eq(r.getColumnClassName(i), f.getColumnClassName(i), what + " class name");
                            m.eq(r.isNullable(i), f.isNullable(i), what + " isNullable");
                            m.eq(r.isAutoIncrement(i), f.isAutoIncrement(i), what + " isAutoIncrement");
                            m.eq(r.getSchemaName(i), f.getSchemaName(i), what + " getSchemaName");
                        }
                        m.eq(Arrays.asList("int4", "int8", "text", "varchar", "numeric", "float8", "bool", "date",
                                "timestamp", "timestamptz", "uuid", "jsonb", "int4"), typeNames,
                                "round " + round + " getColumnTypeName");
                        PGResultSetMetaData pf = f.unwrap(PGResultSetMetaData.class);
                        PGResultSetMetaData pr = r.unwrap(PGResultSetMetaData.class);
                        expectEq(remote, pr.getBaseTableName(2), "remote base table (sanity)");
                        m.eq(table, pf.getBaseTableName(2), "getBaseTableName of a foreign column");
                        m.eq(schema, pf.getBaseSchemaName(2), "getBaseSchemaName of a foreign column");
                        m.eq("big", pf.getBaseColumnName(2), "getBaseColumnName");
                        m.eq("", pf.getBaseTableName(13), "getBaseTableName of a computed column");
                        m.eq(r.getTableName(2).isEmpty() ? "" : table, f.getTableName(2), "getTableName");
                        m.eq(ResultSetMetaData.columnNoNulls, f.isNullable(1), "isNullable of NOT NULL id");
                        m.eq(12, f.getPrecision(5), "getPrecision of numeric(12,2)");
                        m.eq(2, f.getScale(5), "getScale of numeric(12,2)");
                        expect(fr.next() && rr.next(), "one row each");
                        m.eq(rr.getObject(13), fr.getObject(13), "round " + round + " value of id + 1");
                    }
                }
            }
        }
        m.done();
    }

    static void innerJoin() throws SQLException {
        String sql = "SELECT t.tag, i.id, i.name, i.amount, i.tstz FROM " + local + " t JOIN %s i ON i.id = t.id "
                + "WHERE t.id < 9000 AND i.flag ORDER BY t.id";
        try (Connection c = connect()) {
            List<List<Object>> want = query(c, String.format(sql, remote));
            expect(want.size() > 50, "the join selects rows (" + want.size() + ")");
            sameRows(want, query(c, String.format(sql, table)), "inner join");
        }
    }

    static void leftJoin() throws SQLException {
        String sql = "SELECT t.tag, i.code FROM " + local + " t LEFT JOIN %s i ON i.id = t.id AND i.id %% 3 = 0 "
                + "ORDER BY t.tag";
        try (Connection c = connect()) {
            sameRows(query(c, String.format(sql, remote)), query(c, String.format(sql, table)), "left join");
        }
    }

    static void preparedJoin() throws SQLException {
        String sql = "SELECT t.tag, i.name FROM " + local + " t JOIN %s i ON i.id = t.id WHERE t.id < ? ORDER BY 1";
        try (Connection c = connect();
                PreparedStatement f = c.prepareStatement(String.format(sql, table));
                PreparedStatement r = c.prepareStatement(String.format(sql, remote))) {
            for (int i = 1; i <= 7; i++) {
                f.setInt(1, i * 1000);
                r.setInt(1, i * 1000);
                try (ResultSet fr = f.executeQuery(); ResultSet rr = r.executeQuery()) {
                    sameRows(read(rr), read(fr), "prepared join, execution " + i);
                }
            }
        }
    }

    static void fetchSize() throws SQLException {
        try (Connection c = connect()) {
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("SELECT id, name, amount FROM " + table + " ORDER BY id")) {
                ps.setFetchSize(100);
                int seen = 0;
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        seen++;
                        int id = rs.getInt(1);
                        expectEq(seen, id, "id of row " + seen);
                        expectEq(id % 97 == 0 ? null : "name " + id, rs.getString(2), "name of row " + seen);
                        if (seen == rows / 2) {
                            // other statements while the portal is suspended: local and federated
                            expectEq(402L, queryLong(c, "SELECT count(*) FROM " + local), "local query mid-fetch");
                            expectEq(9L, queryLong(c, "SELECT count(*) FROM " + table + " WHERE id < 10"),
                                    "federated query mid-fetch");
                        }
                    }
                }
                expectEq(rows, seen, "rows streamed with fetchSize 100");
            }
            // a plain Statement with a fetch size, too
            try (Statement st = c.createStatement()) {
                st.setFetchSize(100);
                long sum = 0;
                int n = 0;
                try (ResultSet rs = st.executeQuery("SELECT id FROM " + table + " WHERE id > 100")) {
                    while (rs.next()) {
                        sum += rs.getInt(1);
                        n++;
                    }
                }
                expectEq(rows - 100, n, "Statement fetchSize row count");
                expectEq((long) rows * (rows + 1) / 2 - 5050, sum, "Statement fetchSize id sum");
            }
            c.commit();
            c.setAutoCommit(true);
            expectEq((long) rows, queryLong(c, "SELECT count(*) FROM " + table), "after commit");
        }
    }

    static void queryTimeout() throws SQLException {
        try (Connection c = connect()) {
            for (int round = 0; round < 2; round++) {
                try (Statement st = c.createStatement()) {
                    st.setQueryTimeout(1);
                    long t0 = System.nanoTime();
                    SQLException e = expectError(() -> st.executeQuery("SELECT count(s) FROM " + slow),
                            "count over the slow foreign table with query timeout 1s");
                    long ms = (System.nanoTime() - t0) / 1_000_000;
                    expectEq("57014", e.getSQLState(), "SQLState of the cancelled query (" + e.getMessage() + ")");
                    expect(ms < 8000, "cancel took " + ms + " ms");
                }
                expectEq((long) rows, queryLong(c, "SELECT count(*) FROM " + table), "usable after cancel");
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT count(s) FROM " + slow + " WHERE id > ?")) {
                ps.setQueryTimeout(1);
                ps.setInt(1, 0);
                SQLException e = expectError(ps::executeQuery, "prepared count over the slow table");
                expectEq("57014", e.getSQLState(), "SQLState of the cancelled prepared query (" + e.getMessage() + ")");
            }
            expectEq((long) rows, queryLong(c, "SELECT count(*) FROM " + table), "usable after prepared cancel");
        }
    }

    static void errors() throws SQLException {
        String bad = "SELECT id / (id - id) FROM " + table + " WHERE id < 5";
        try (Connection c = connect()) {
            SQLException e = expectError(() -> query(c, bad), "division by zero");
            expectEq("22012", e.getSQLState(), "SQLState (" + e.getMessage() + ")");
            expect(e.getMessage().contains("division by zero"), "message: " + e.getMessage());
            expectEq((long) rows, queryLong(c, "SELECT count(*) FROM " + table), "usable after the error");
            // prepared, past the threshold (a named statement), then the error
            try (PreparedStatement ps = c.prepareStatement("SELECT 100 / (id - ?) FROM " + table + " WHERE id = 7")) {
                for (int i = 0; i < 6; i++) {
                    ps.setInt(1, 2);
                    try (ResultSet rs = ps.executeQuery()) {
                        expect(rs.next(), "prepared row");
                        expectEq(20, rs.getInt(1), "100 / (7 - 2)");
                    }
                }
                ps.setInt(1, 7);
                SQLException pe = expectError(ps::executeQuery, "prepared division by zero");
                expectEq("22012", pe.getSQLState(), "prepared SQLState (" + pe.getMessage() + ")");
                ps.setInt(1, 3);
                try (ResultSet rs = ps.executeQuery()) {
                    expect(rs.next(), "prepared row after the error");
                    expectEq(25, rs.getInt(1), "100 / (7 - 3)");
                }
            }
            // inside a transaction: the error aborts it, as in Postgres
            c.setAutoCommit(false);
            expectEq(4L, queryLong(c, "SELECT count(*) FROM " + table + " WHERE id < 5"), "in transaction");
            SQLException te = expectError(() -> query(c, bad), "division by zero in a transaction");
            expectEq("22012", te.getSQLState(), "SQLState in a transaction");
            SQLException aborted = expectError(() -> queryLong(c, "SELECT count(*) FROM " + table), "aborted");
            expectEq("25P02", aborted.getSQLState(), "SQLState in the aborted transaction");
            c.rollback();
            c.setAutoCommit(true);
            expectEq((long) rows, queryLong(c, "SELECT count(*) FROM " + table), "usable after rollback");
        }
    }
}
