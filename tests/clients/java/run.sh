#!/bin/sh
# Compile ClientTest.java into a temporary directory and run it against the server described by
# PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE.  The pgjdbc jar defaults to Debian's
# libpostgresql-jdbc-java (/usr/share/java/postgresql.jar); override with PGJDBC_JAR.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
jar=${PGJDBC_JAR:-/usr/share/java/postgresql.jar}
if [ ! -r "$jar" ]; then
    echo "FAIL: pgjdbc jar $jar not found (apt-get install libpostgresql-jdbc-java, or set PGJDBC_JAR)" >&2
    exit 2
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pgfed-java-client.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
javac -nowarn -encoding UTF-8 -cp "$jar" -d "$tmp" "$here/ClientTest.java"
# no exec: the EXIT trap must still remove the temporary directory
status=0
java -Dfile.encoding=UTF-8 -cp "$tmp:$jar" ClientTest || status=$?
exit $status
