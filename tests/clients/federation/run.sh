#!/bin/sh
# Compile FederationTest.java into a temporary directory and run it against pgfed, described by
# PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, with the fixture's names in PGFED_FED_* (see
# crates/pgfed-federation/tests/federation/clients.rs). The pgjdbc jar defaults to Debian's
# libpostgresql-jdbc-java (/usr/share/java/postgresql.jar); override with PGJDBC_JAR.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
jar=${PGJDBC_JAR:-/usr/share/java/postgresql.jar}
if [ ! -r "$jar" ]; then
    echo "FAIL: pgjdbc jar $jar not found (apt-get install libpostgresql-jdbc-java, or set PGJDBC_JAR)" >&2
    exit 2
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pgfed-java-federation.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
javac -nowarn -encoding UTF-8 -cp "$jar" -d "$tmp" "$here/FederationTest.java"
# no exec: the EXIT trap must still remove the temporary directory
status=0
java -Dfile.encoding=UTF-8 -cp "$tmp:$jar" FederationTest || status=$?
exit $status
