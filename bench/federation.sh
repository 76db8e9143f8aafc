#!/usr/bin/env bash
# bench/federation.sh -- federation benchmark (issue 3): a foreign `postgres` table of 10M rows read
# through pgfed vs the same query run all-local in PostgreSQL.
#
# A benchmark, not a test: it measures and reports, and only fails on setup errors.
# The data lives in a persistent private cluster (default /tmp/pgfed-bench-pg, made by
# scripts/pg-test-cluster) so the ~2.5 GB of tables are built once and reused. See bench/README.md.
set -euo pipefail

ORIG_ARGS=("$@")
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)

# ---------------------------------------------------------------- defaults
CLUSTER=/tmp/pgfed-bench-pg
ROWS=10000000
LOCAL_ROWS=100000
RUNS=5          # timed runs of the join and the aggregate (median, min)
SCAN_RUNS=3     # timed runs of the full scan per target
PGFED_BIN=${PGFED_BIN:-}
BUILD=1
UPDATE_DOC=1
DOC="$REPO/docs/benchmarks.md"
REBUILD=0
SETUP_ONLY=0
STOP_CLUSTER=1
PROFILE=""      # join|scan: perf record pgfed during one extra run
KEEP=0
QUERY_TIMEOUT=${QUERY_TIMEOUT:-900}
PGFED_WAIT=${PGFED_WAIT:-60}
PERF_FREQ=${PERF_FREQ:-499}
REMOTE_DB=bench_remote
APP_DB=bench_app
DATA_VERSION=1  # bump when the generated data changes: an old cluster is then rebuilt

usage() {
  cat <<'EOF'
Usage: bench/federation.sh [options]

Builds (once) a 10M-row table `big` in database bench_remote and, in database bench_app, a local
copy `big_local` and a 100k-row table `local_100k`; defines the foreign table `big` (server
bench_srv, FOREIGN DATA WRAPPER postgres) through pgfed; then times, through pgfed vs directly:
  a) a selective join local_100k JOIN big (100 rows of local_100k) vs all-local in Postgres
  b) a full scan of big streamed to psql (FETCH_COUNT) vs the local copy, with pgfed's peak RSS
  c) SELECT customer_id % 10, count(*), sum(amount) FROM big GROUP BY 1 vs directly on the remote
Prints a markdown report; by default also rewrites the "Federation (issue 3)" section of
docs/benchmarks.md (between its markers).

Options:
  --cluster DIR       persistent cluster directory               (default /tmp/pgfed-bench-pg)
  --rows N            rows of big                                (default 10000000)
  --runs N            timed runs of the join and the aggregate   (default 5)
  --scan-runs N       timed runs of the full scan per target     (default 3)
  --rebuild           drop and regenerate the data
  --setup-only        build the data and stop (no pgfed needed)
  --keep-running      leave the cluster running at the end
  --pgfed-bin PATH    pgfed binary (env PGFED_BIN)               (default target/release/pgfed)
  --no-build          do not build pgfed if the binary is missing
  --no-doc            do not touch docs/benchmarks.md
  --doc PATH          document to update                         (default docs/benchmarks.md)
  --profile join|scan perf record pgfed during one extra run of that query (needs perf)
  --keep              keep the work dir (logs, outputs, perf data)
  -h, --help

Environment: PGFED_BIN, QUERY_TIMEOUT (sec per query, default 900), PGFED_WAIT (default 60),
  PERF_FREQ (default 499), PGFED_PG_BIN (as scripts/pg-test-cluster).
EOF
}

while (($#)); do
  case "$1" in
    --cluster) CLUSTER=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --scan-runs) SCAN_RUNS=$2; shift 2 ;;
    --rebuild) REBUILD=1; shift ;;
    --setup-only) SETUP_ONLY=1; shift ;;
    --keep-running) STOP_CLUSTER=0; shift ;;
    --pgfed-bin) PGFED_BIN=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --no-doc) UPDATE_DOC=0; shift ;;
    --doc) DOC=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "federation.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[fed-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for n in "$ROWS" "$RUNS" "$SCAN_RUNS"; do [[ $n =~ ^[0-9]+$ ]] || die "not a number: '$n'"; done
((ROWS >= LOCAL_ROWS)) || die "--rows must be >= $LOCAL_ROWS"
((RUNS >= 1 && SCAN_RUNS >= 1)) || die "--runs and --scan-runs must be >= 1"
case "$PROFILE" in ""|join|scan) ;; *) die "--profile wants join or scan";; esac
for tool in psql timeout awk sort md5sum wc; do command -v "$tool" >/dev/null || die "missing tool: $tool"; done
if [[ -n $PROFILE ]]; then command -v perf >/dev/null || die "perf not installed (apt-get install -y linux-perf)"; fi

# ---------------------------------------------------------------- pgfed binary
if ((SETUP_ONLY == 0)); then
  [[ -n $PGFED_BIN ]] || PGFED_BIN="$REPO/target/release/pgfed"
  if [[ ! -x $PGFED_BIN ]]; then
    if ((BUILD)) && [[ $PGFED_BIN == "$REPO/target/release/pgfed" ]]; then
      log "building pgfed: cargo build --release -p pgfed"
      (cd "$REPO" && timeout 3600 cargo build --release -p pgfed) || die "cargo build failed"
    fi
    [[ -x $PGFED_BIN ]] || die "pgfed binary not found: $PGFED_BIN (use --pgfed-bin)"
  fi
  PGFED_BIN=$(cd "$(dirname "$PGFED_BIN")" && pwd)/$(basename "$PGFED_BIN")
fi

# ---------------------------------------------------------------- work dir + cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pgfed-fed-bench.XXXXXX")
mkdir -p "$WORK/logs" "$WORK/out"
CLUSTER_STARTED=0
PGFED_PID=""
stop_pgfed() {
  if [[ -n $PGFED_PID ]] && kill -0 "$PGFED_PID" 2>/dev/null; then
    kill -TERM "$PGFED_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$PGFED_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PGFED_PID" 2>/dev/null || true
    wait "$PGFED_PID" 2>/dev/null || true
  fi
  PGFED_PID=""
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  stop_pgfed
  if ((CLUSTER_STARTED && STOP_CLUSTER)); then
    "$REPO/scripts/pg-test-cluster" stop "$CLUSTER" >/dev/null 2>&1
  fi
  if ((KEEP)); then log "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- cluster
if ! "$REPO/scripts/pg-test-cluster" env "$CLUSTER" >/dev/null 2>&1; then CLUSTER_STARTED=1; fi
eval "$("$REPO/scripts/pg-test-cluster" start "$CLUSTER")"
PGPORT=$PGFED_TEST_PG_PORT
PSQL=(psql -X -w -q -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1)
direct() { timeout "$QUERY_TIMEOUT" "${PSQL[@]}" -p "$PGPORT" "$@"; }

# 1 GB shared buffers, for the indexes and the small tables; a sequential scan of a 10M-row table
# still goes through a small buffer ring, so full reads come from the OS page cache on both sides.
if [[ $(direct -d postgres -tAc "show shared_buffers") != 1GB ]]; then
  log "setting shared_buffers = 1GB and restarting the cluster"
  direct -d postgres -c "ALTER SYSTEM SET shared_buffers = '1GB'"
  "$REPO/scripts/pg-test-cluster" stop "$CLUSTER" >/dev/null
  eval "$("$REPO/scripts/pg-test-cluster" start "$CLUSTER")"
  PGPORT=$PGFED_TEST_PG_PORT
fi
log "cluster $CLUSTER on 127.0.0.1:$PGPORT"

# ---------------------------------------------------------------- data (built once)
db_exists() { [[ $(direct -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$1'") == 1 ]]; }
data_ok() {
  db_exists "$REMOTE_DB" && db_exists "$APP_DB" &&
    [[ $(direct -d "$APP_DB" -tAc "SELECT rows || '/' || version FROM bench_meta" 2>/dev/null) == "$ROWS/$DATA_VERSION" ]]
}
if ((REBUILD)) || ! data_ok; then
  t0=$SECONDS
  log "building the data: $ROWS rows in $REMOTE_DB.big (takes minutes)"
  direct -d postgres -c "DROP DATABASE IF EXISTS $APP_DB WITH (FORCE)" -c "DROP DATABASE IF EXISTS $REMOTE_DB WITH (FORCE)" \
    -c "CREATE DATABASE $REMOTE_DB"
  # Deterministic values, so the local copy equals the remote table row for row.
  direct -d "$REMOTE_DB" <<SQL
CREATE TABLE big (id bigint NOT NULL, customer_id int NOT NULL, amount numeric(12,2) NOT NULL,
                  created_at timestamptz NOT NULL, note text);
INSERT INTO big
SELECT g, (g * 7919) % 100000, ((g * 37) % 1000000) / 100.0,
       timestamptz '2023-01-01 00:00:00+00' + g * interval '3 seconds',
       md5(g::text) || ' ' || (g % 1000)::text
  FROM generate_series(1::bigint, $ROWS) g;
ALTER TABLE big ADD PRIMARY KEY (id);
VACUUM (FREEZE, ANALYZE) big;
SQL
  log "copying $REMOTE_DB into $APP_DB (the all-local baseline reads big_local there)"
  direct -d postgres -c "CHECKPOINT" -c "CREATE DATABASE $APP_DB TEMPLATE $REMOTE_DB STRATEGY FILE_COPY"
  direct -d "$APP_DB" <<SQL
ALTER TABLE big RENAME TO big_local;
ALTER INDEX big_pkey RENAME TO big_local_pkey;
-- 100 rows of segment 'x'; big_id is a permutation of 1..$ROWS (99991 is prime, coprime with it)
CREATE TABLE local_100k (id int PRIMARY KEY, big_id bigint NOT NULL, segment text NOT NULL, label text);
INSERT INTO local_100k
SELECT g, (g::bigint * 99991) % $ROWS + 1, CASE WHEN g % 1000 = 0 THEN 'x' ELSE 's' || (g % 97) END, 'label ' || g
  FROM generate_series(1, $LOCAL_ROWS) g;
CREATE INDEX local_100k_segment ON local_100k (segment);
VACUUM (FREEZE, ANALYZE) local_100k;
CREATE TABLE bench_meta (rows bigint, version int);
INSERT INTO bench_meta VALUES ($ROWS, $DATA_VERSION);
SQL
  log "data built in $((SECONDS - t0)) s"
else
  log "reusing the data in $CLUSTER ($ROWS rows)"
fi
BIG_MB=$(direct -d "$REMOTE_DB" -tAc "SELECT pg_total_relation_size('big') / 1048576")
HEAP_MB=$(direct -d "$REMOTE_DB" -tAc "SELECT pg_relation_size('big') / 1048576")
log "big: ${HEAP_MB} MB heap, ${BIG_MB} MB with its primary key"
((SETUP_ONLY == 0)) || exit 0

# ---------------------------------------------------------------- pgfed
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if [[ -z $(ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null) ]]; then echo "$p"; return 0; fi
  done
  die "no free port found"
}
FPORT=$(free_port)
via() { timeout "$QUERY_TIMEOUT" "${PSQL[@]}" -p "$FPORT" -d "$APP_DB" "$@"; }
# The catalog is loaded when pgfed starts; until then `big` is the empty shadow table. A point read
# of id 1 answers 1 only once it is federated.
federated_ready() { [[ $(via -tAc "SELECT count(*) FROM big WHERE id = 1" 2>/dev/null) == 1 ]]; }
start_pgfed() { # [--no-catalog-wait]
  stop_pgfed
  PGFED_LISTEN="127.0.0.1:$FPORT" PGFED_UPSTREAM="postgres://postgres@127.0.0.1:$PGPORT/$APP_DB?sslmode=disable" \
    PGFED_LOG=${PGFED_LOG:-warn} "$PGFED_BIN" >>"$WORK/logs/pgfed.out" 2>&1 &
  PGFED_PID=$!
  local deadline=$((SECONDS + PGFED_WAIT))
  while ((SECONDS < deadline)); do
    kill -0 "$PGFED_PID" 2>/dev/null || { tail -n 30 "$WORK/logs/pgfed.out" >&2; die "pgfed exited"; }
    if [[ ${1:-} == --no-catalog-wait ]]; then
      [[ $(via -tAc 'select 1' 2>/dev/null) == 1 ]] && return 0
    elif federated_ready; then
      return 0
    fi
    sleep 0.2
  done
  tail -n 30 "$WORK/logs/pgfed.out" >&2
  die "pgfed did not serve the foreign table within ${PGFED_WAIT}s"
}
proc_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo NA; }
proc_cpu_s() { # utime+stime of a process in seconds
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo NA
}

log "starting pgfed ($PGFED_BIN) on 127.0.0.1:$FPORT -> $APP_DB"
start_pgfed --no-catalog-wait
# Defined afresh on every run: the cluster's port may have changed since the last one.
via -c "DROP SERVER IF EXISTS bench_srv CASCADE" >/dev/null 2>>"$WORK/logs/ddl.err" || true
via <<SQL || { cat "$WORK/logs/ddl.err" >&2; die "DDL through pgfed failed"; }
CREATE SERVER bench_srv FOREIGN DATA WRAPPER postgres OPTIONS (host '127.0.0.1', port '$PGPORT', dbname '$REMOTE_DB');
CREATE USER MAPPING FOR postgres SERVER bench_srv OPTIONS (user 'postgres');
CREATE FOREIGN TABLE big (id bigint NOT NULL, customer_id int NOT NULL, amount numeric(12,2) NOT NULL,
                          created_at timestamptz NOT NULL, note text)
  SERVER bench_srv OPTIONS (table_name 'big');
SQL
start_pgfed   # fresh process: waits until the catalog serves big

# ---------------------------------------------------------------- queries
JOIN_COLS="l.id, l.label, f.id AS big_id, f.customer_id, f.amount, f.created_at"
Q_JOIN_FED="SELECT $JOIN_COLS FROM local_100k l JOIN big f ON f.id = l.big_id WHERE l.segment = 'x'"
Q_JOIN_LOCAL="SELECT $JOIN_COLS FROM local_100k l JOIN big_local f ON f.id = l.big_id WHERE l.segment = 'x'"
KEYS=$(direct -d "$APP_DB" -tAc "SELECT string_agg(big_id::text, ', ' ORDER BY big_id) FROM local_100k WHERE segment = 'x'")
Q_KEYS="SELECT id, customer_id, amount, created_at FROM big WHERE id IN ($KEYS)"
Q_SCAN_FED="SELECT * FROM big"
Q_SCAN_LOCAL="SELECT * FROM big_local"
Q_AGG="SELECT customer_id % 10, count(*), sum(amount) FROM big GROUP BY 1"

# timed PORT DB SQL OUT [psql args]: one psql session runs SQL with \timing, rows to OUT (a file, or
# "|command"). Prints "ms wall_ms": psql's \timing, and the wall clock of the whole psql run, which
# is what counts for the scan: with FETCH_COUNT psql's \timing leaves out the time spent printing.
timed() {
  local port=$1 db=$2 sql=$3 out=$4 res s e
  shift 4
  s=$(date +%s%N)
  if res=$(printf '\\timing on\n\\o %s\n%s;\n' "$out" "$sql" |
           timeout "$QUERY_TIMEOUT" "${PSQL[@]}" -p "$port" -d "$db" -At "$@" -f - 2>>"$WORK/logs/psql.err"); then
    e=$(date +%s%N)
    echo "$(awk '/^Time: / {v = $2} END {print (v == "" ? "NA" : v)}' <<<"$res") $(awk -v s="$s" -v e="$e" 'BEGIN {printf "%.3f", (e - s) / 1e6}')"
  else
    log "query failed on port $port: ${sql:0:80}... (see below)"
    tail -n 3 "$WORK/logs/psql.err" >&2
    echo "NA NA"
  fi
}
median() { printf '%s\n' "$@" | awk '$1 ~ /^[0-9.]+$/' | sort -g | awk '{a[NR]=$1} END { if (NR==0) {print "NA"; exit}
    if (NR%2) printf "%.3f\n", a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
minimum() { printf '%s\n' "$@" | awk '$1 ~ /^[0-9.]+$/' | sort -g | awk 'NR==1 {printf "%.3f\n", $1} END {if (NR==0) print "NA"}'; }
ms2s() { awk -v a="$1" 'BEGIN { if (a=="NA") print "NA"; else printf "%.3f\n", a / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a=="NA" || b=="NA" || b+0==0) print "NA"; else printf "%.2f\n", a/b }'; }
mb() { awk -v k="$1" 'BEGIN { if (k=="NA" || k=="") print "NA"; else printf "%.0f\n", k / 1024 }'; }
same_rows() { # file file -> "yes" when both hold the same rows in any order
  if [[ -s $1 && -s $2 && $(sort "$1" | md5sum) == $(sort "$2" | md5sum) ]]; then echo yes; else echo "**NO**"; fi
}

idle_pct() {
  local a b
  a=$(awk '/^cpu / {print $5+$6, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat); sleep 3
  b=$(awk '/^cpu / {print $5+$6, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[2] - x[2];
    if (d <= 0) print "NA"; else printf "%.0f\n", 100 * (y[1] - x[1]) / d }'
}

declare -A T=()     # T[case|target] = "ms ms ..." (psql \timing)
declare -A CPU=()   # CPU[case] = "s s ..." pgfed CPU seconds per run
declare -A HWM=()   # HWM[case] = "kB kB ..." pgfed VmHWM after the run (pgfed restarted before it)
declare -A CHECK=()

log "EXPLAIN through pgfed"
{
  for q in "$Q_JOIN_FED" "$Q_SCAN_FED" "$Q_AGG"; do
    echo "=> EXPLAIN $q"; via -At -c "EXPLAIN $q" 2>&1 || true; echo
  done
  echo "=> EXPLAIN (ids of segment 'x' as an IN list) SELECT ... FROM big WHERE id IN (...100 ids...)"
  via -At -c "EXPLAIN $Q_KEYS" 2>&1 | sed -E 's/\(([0-9]+, ){3}[0-9, ]{40,}\)/(...)/g' || true
} >"$WORK/explain.txt"
cat "$WORK/explain.txt" >&2

IDLE_BEFORE=$(idle_pct)
log "CPU idle before the runs (3 s sample): ${IDLE_BEFORE}%"
log "warm-up: one read of each big table (page cache), one run of each query"
direct -d "$REMOTE_DB" -tAc "SELECT count(*) FROM big" >/dev/null
direct -d "$APP_DB" -tAc "SELECT count(*) FROM big_local" >/dev/null

# ---- a) selective join; a2) the same keys as an IN list (what semi-join pushdown would send)
log "a) selective join: $RUNS runs per target, interleaved"
start_pgfed; pid=$PGFED_PID
read -r _ _ < <(timed "$PGPORT" "$APP_DB" "$Q_JOIN_LOCAL" "$WORK/out/join-direct.txt")
for ((r = 0; r < RUNS; r++)); do
  for t in direct pgfed; do
    if [[ $t == direct ]]; then
      read -r ms _ < <(timed "$PGPORT" "$APP_DB" "$Q_JOIN_LOCAL" /dev/null)
    else
      c0=$(proc_cpu_s "$pid")
      read -r ms _ < <(timed "$FPORT" "$APP_DB" "$Q_JOIN_FED" "$([[ $r == 0 ]] && echo "$WORK/out/join-pgfed.txt" || echo /dev/null)")
      CPU[join]+=" $(awk -v a="$c0" -v b="$(proc_cpu_s "$pid")" 'BEGIN {printf "%.2f", b - a}')"
    fi
    T["join|$t"]+=" $ms"
    log "join run $((r + 1)) $t: $ms ms"
  done
done
HWM[join]=$(proc_kb "$pid" VmHWM)
CHECK[join]=$(same_rows "$WORK/out/join-direct.txt" "$WORK/out/join-pgfed.txt")
JOIN_ROWS=$(wc -l <"$WORK/out/join-direct.txt")
log "join: pgfed peak RSS $(mb "${HWM[join]}") MB, same rows as direct: ${CHECK[join]} ($JOIN_ROWS rows)"
EXPLAIN_ANALYZE=$(via -At -c "EXPLAIN ANALYZE $Q_JOIN_FED" 2>&1 || true)
log "EXPLAIN ANALYZE of the join through pgfed:"; echo "$EXPLAIN_ANALYZE" >&2

log "a2) the 100 join keys as an IN list on big: $RUNS runs through pgfed and directly on the remote"
for ((r = 0; r < RUNS; r++)); do
  read -r ms _ < <(timed "$FPORT" "$APP_DB" "$Q_KEYS" /dev/null); T["keys|pgfed"]+=" $ms"
  read -r ms _ < <(timed "$PGPORT" "$REMOTE_DB" "$Q_KEYS" /dev/null); T["keys|direct"]+=" $ms"
done

# ---- c) aggregate pushed whole
log "c) aggregate: $RUNS runs per target, interleaved"
timed "$PGPORT" "$REMOTE_DB" "$Q_AGG" "$WORK/out/agg-direct.txt" >/dev/null
timed "$FPORT" "$APP_DB" "$Q_AGG" "$WORK/out/agg-pgfed.txt" >/dev/null
CHECK[agg]=$(same_rows "$WORK/out/agg-direct.txt" "$WORK/out/agg-pgfed.txt")
for ((r = 0; r < RUNS; r++)); do
  for t in pgfed direct; do
    if [[ $t == direct ]]; then read -r ms _ < <(timed "$PGPORT" "$REMOTE_DB" "$Q_AGG" /dev/null)
    else read -r ms _ < <(timed "$FPORT" "$APP_DB" "$Q_AGG" /dev/null); fi
    T["agg|$t"]+=" $ms"
    log "aggregate run $((r + 1)) $t: $ms ms"
  done
done

# ---- b) full scan streamed to psql (FETCH_COUNT: psql reads through a cursor, 10000 rows at a time)
FETCH=(-v FETCH_COUNT=10000)
SCAN_MODE="psql -At with FETCH_COUNT=10000 (a cursor), output piped to wc -lc"
start_pgfed
if ! timed "$FPORT" "$APP_DB" "$Q_SCAN_FED LIMIT 20000" /dev/null "${FETCH[@]}" | grep -qv NA; then
  log "a cursor over the foreign table fails through pgfed; falling back to plain psql (rows buffered in psql)"
  FETCH=()
  SCAN_MODE="psql -At without FETCH_COUNT (pgfed streams, psql buffers the whole result), output piped to wc -lc"
fi
log "b) full scan: $SCAN_RUNS runs per target ($SCAN_MODE); pgfed restarted before each run for its peak RSS"
declare -a SCAN_BASE=()
for ((r = 0; r < SCAN_RUNS; r++)); do
  for t in pgfed direct; do
    if [[ $t == direct ]]; then
      read -r _ ms < <(timed "$PGPORT" "$APP_DB" "$Q_SCAN_LOCAL" "| wc -lc > $WORK/out/scan-direct.txt" "${FETCH[@]}")
    else
      start_pgfed; pid=$PGFED_PID
      SCAN_BASE+=("$(proc_kb "$pid" VmHWM)")
      c0=$(proc_cpu_s "$pid")
      read -r _ ms < <(timed "$FPORT" "$APP_DB" "$Q_SCAN_FED" "| wc -lc > $WORK/out/scan-pgfed.txt" "${FETCH[@]}")
      CPU[scan]+=" $(awk -v a="$c0" -v b="$(proc_cpu_s "$pid")" 'BEGIN {printf "%.2f", b - a}')"
      HWM[scan]+=" $(proc_kb "$pid" VmHWM)"
    fi
    T["scan|$t"]+=" $ms"
    log "scan run $((r + 1)) $t: $ms ms$([[ $t == pgfed ]] && echo ", pgfed VmHWM $(mb "$(proc_kb "$pid" VmHWM)") MB")"
  done
done
read -r SCAN_LINES SCAN_BYTES <"$WORK/out/scan-direct.txt" || true
CHECK[scan]=$([[ $(cat "$WORK/out/scan-direct.txt") == $(cat "$WORK/out/scan-pgfed.txt") ]] && echo yes || echo "**NO**")
log "scan: direct $(cat "$WORK/out/scan-direct.txt"), pgfed $(cat "$WORK/out/scan-pgfed.txt") (lines bytes)"

# ---- optional profile
PROFILE_REPORT=""
if [[ -n $PROFILE ]]; then
  start_pgfed; pid=$PGFED_PID
  pdata="$WORK/perf-pgfed.data"
  log "profiling pgfed during one $PROFILE run: perf record -g -p $pid"
  perf record -e cpu-clock -F "$PERF_FREQ" -g -o "$pdata" -p "$pid" >"$WORK/logs/perf-record.log" 2>&1 &
  perf_pid=$!
  sleep 1
  if [[ $PROFILE == join ]]; then timed "$FPORT" "$APP_DB" "$Q_JOIN_FED" /dev/null >/dev/null
  else timed "$FPORT" "$APP_DB" "$Q_SCAN_FED" /dev/null "${FETCH[@]}" >/dev/null; fi
  kill -INT "$perf_pid" 2>/dev/null || true
  wait "$perf_pid" 2>/dev/null || true
  PROFILE_REPORT="$WORK/perf-report.txt"
  {
    echo "## by shared object (self time)"
    timeout 300 perf report -i "$pdata" --stdio -g none --no-children --sort dso --percent-limit 1 2>/dev/null | grep -v '^#' | grep . | head -n 8
    echo "## top symbols (self time)"
    timeout 300 perf report -i "$pdata" --stdio -g none --no-children --sort symbol --percent-limit 1 2>/dev/null | grep -v '^#' | grep . | cut -c1-150 | head -n 25
  } >"$PROFILE_REPORT" || true
  cat "$PROFILE_REPORT" >&2
fi
stop_pgfed

# ---------------------------------------------------------------- report
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_gb=$(awk '/^MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
pg_version=$(direct -d postgres -tAc "SELECT version()" | awk '{print $1, $2}')
git_rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit yet")
if [[ -n $(git -C "$REPO" status --porcelain --untracked-files=no -- crates Cargo.toml Cargo.lock 2>/dev/null) ]]; then
  git_rev+=" + uncommitted changes in crates/"
fi
pgfed_version="${PGFED_BIN#"$REPO"/} (sha256 $(sha256sum "$PGFED_BIN" | cut -c1-12), built $(date -u -r "$PGFED_BIN" '+%Y-%m-%d %H:%M UTC'))"
cmd="bench/federation.sh"
for a in "${ORIG_ARGS[@]}"; do
  if [[ $a =~ ^[A-Za-z0-9_,./:=+-]+$ ]]; then cmd+=" $a"; else cmd+=" $(printf '%q' "$a")"; fi
done
row() { # case label-pgfed label-direct check
  local c=$1 fm dm
  fm=$(median ${T["$c|pgfed"]:-}); dm=$(median ${T["$c|direct"]:-})
  echo "| $2 | pgfed | $(ms2s "$fm") | $(ms2s "$(minimum ${T["$c|pgfed"]:-})") | $(ratio "$fm" "$dm") | $4 |"
  echo "| | $3 | $(ms2s "$dm") | $(ms2s "$(minimum ${T["$c|direct"]:-})") | 1 | |"
}
scan_med=$(median ${T["scan|pgfed"]:-}); scan_dmed=$(median ${T["scan|direct"]:-})
rate() { awk -v ms="$1" -v n="$2" -v d="$3" 'BEGIN { if (ms=="NA" || ms+0==0) print "NA"; else printf "%.0f\n", n / (ms / 1000) / d }'; }
hwm_max=$(printf '%s\n' ${HWM[scan]:-} | sort -g | tail -1)

REPORT="$WORK/report.md"
{
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname -s 2>/dev/null || echo host): $(nproc) cores ($cpu_model), ${mem_gb} GB RAM, Linux $(uname -r); the machine is shared with other builds (CPU idle just before the runs: ${IDLE_BEFORE}%)."
  echo
  echo "- $pg_version: one private cluster (\`scripts/pg-test-cluster\`, shared_buffers=1GB, fsync=off) holds both databases: \`$REMOTE_DB\` (the remote side: \`big\`) and \`$APP_DB\` (pgfed's upstream: \`local_100k\`, the copy \`big_local\`, and the foreign table \`big\` on server \`bench_srv\` = FOREIGN DATA WRAPPER postgres pointing at \`$REMOTE_DB\` over TCP 127.0.0.1). A sequential scan of a table this size (more than a quarter of shared_buffers) goes through a 256 kB buffer ring, so full reads on both sides come from the warm OS page cache; index lookups hit shared_buffers."
  echo "- Data: \`big\` $ROWS rows (id bigint primary key, customer_id int, amount numeric(12,2), created_at timestamptz, note text), ${HEAP_MB} MB heap, ${BIG_MB} MB with its index; \`big_local\` is a file copy of it; \`local_100k\` $LOCAL_ROWS rows, index on segment, 100 rows with segment 'x' whose big_id are spread over the whole id range."
  echo "- pgfed: $pgfed_version; repo HEAD when the benchmark ran: $git_rev; default engine settings (memory pool 512 MB, batch 8192)."
  echo "- Times are psql's \`\\timing\` (first byte sent to last row received, connection set-up excluded), rows written to /dev/null; the scan is timed by the wall clock of the whole psql run (psql's \`\\timing\` leaves out printing under FETCH_COUNT), its rows piped to \`wc -lc\`. Targets alternate per run; median and min of $RUNS runs ($SCAN_RUNS for the scan), after one warm-up read of each table."
  echo
  echo "Reproduce: \`$cmd\` (the first run also builds the data, ~1.5 min on an idle machine; add \`--no-doc\` to only print)"
  echo
  echo "| query | target | median s | min s | pgfed / direct (median) | same rows |"
  echo "|---|---|---:|---:|---:|---|"
  row join "a) selective join \`local_100k l JOIN big f ON f.id = l.big_id WHERE l.segment = 'x'\` ($JOIN_ROWS rows)" "direct: all-local (\`big_local\`)" "${CHECK[join]}"
  row keys "a2) reference: the same 100 keys as \`big WHERE id IN (...)\` (what a pushed semi-join would send)" "direct on \`$REMOTE_DB\`" "n/a"
  row scan "b) full scan \`SELECT * FROM big\`, streamed to psql" "direct: \`SELECT * FROM big_local\`" "${CHECK[scan]} (lines, bytes)"
  row agg "c) \`$Q_AGG\`" "direct on \`$REMOTE_DB\`" "${CHECK[agg]}"
  echo
  echo "Full scan: ${SCAN_LINES:-NA} rows, $(awk -v b="${SCAN_BYTES:-0}" 'BEGIN {printf "%.0f", b / 1048576}') MB of text; pgfed $(rate "$scan_med" "${SCAN_LINES:-0}" 1000) k rows/s vs direct $(rate "$scan_dmed" "${SCAN_LINES:-0}" 1000) k rows/s. Client mode: $SCAN_MODE."
  echo
  echo "| pgfed process | value |"
  echo "|---|---|"
  echo "| VmHWM (peak RSS) just after start and the catalog load, per scan run | $(for k in "${SCAN_BASE[@]}"; do printf '%s ' "$(mb "$k")"; done)MB |"
  echo "| VmHWM after a full scan (restarted before each), per run | $(for k in ${HWM[scan]:-}; do printf '%s ' "$(mb "$k")"; done)MB (max $(mb "$hwm_max") MB) |"
  echo "| VmHWM after $RUNS runs of the join (one process) | $(mb "${HWM[join]:-NA}") MB |"
  echo "| CPU (user+sys) per full scan | $(echo ${CPU[scan]:-}) s |"
  echo "| CPU (user+sys) per join run | $(echo ${CPU[join]:-}) s |"
  echo
  echo "<details><summary>EXPLAIN through pgfed, raw times</summary>"
  echo
  echo '```'
  cat "$WORK/explain.txt"
  echo "=> EXPLAIN ANALYZE $Q_JOIN_FED"
  echo "$EXPLAIN_ANALYZE"
  echo '```'
  echo
  for c in join keys scan agg; do
    for t in pgfed direct; do echo "- $c $t ms: $(echo ${T["$c|$t"]:-})"; done
  done
  echo
  echo "</details>"
  if [[ -n $PROFILE_REPORT && -s $PROFILE_REPORT ]]; then
    echo
    echo "<details><summary>perf profile of pgfed during one $PROFILE run</summary>"
    echo
    echo '```'
    cat "$PROFILE_REPORT"
    echo '```'
    echo
    echo "</details>"
  fi
} >"$REPORT"
cat "$REPORT"

# ---------------------------------------------------------------- docs/benchmarks.md
if ((UPDATE_DOC)); then
  [[ -f $DOC ]] || printf '# pgfed benchmarks\n' >"$DOC"
  if ! grep -q '^<!-- federation-bench:start -->' "$DOC"; then
    printf '\n## Federation (issue 3)\n\n<!-- federation-bench:start -->\n<!-- federation-bench:end -->\n' >>"$DOC"
  fi
  tmp=$(mktemp "$WORK/doc.XXXXXX")
  awk -v rep="$REPORT" '
    /^<!-- federation-bench:start -->/ { print; print "<!-- generated by bench/federation.sh; edits inside these markers are overwritten -->"; print "";
                                         while ((getline l < rep) > 0) print l; print ""; skip = 1; next }
    /^<!-- federation-bench:end -->/   { skip = 0 }
    !skip { print }' "$DOC" >"$tmp"
  cat "$tmp" >"$DOC"
  log "updated $DOC"
fi
