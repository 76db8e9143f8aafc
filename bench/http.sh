#!/usr/bin/env bash
# bench/http.sh -- http connector benchmark (issue 5): a paginated scan of 100k rows (1000 pages of
# 100) from a local fixture API through pgfed, vs a plain async client fetching and parsing the
# same pages; and the requests a selective query makes with and without pushdown.
#
# A benchmark, not a test: it measures and reports, and only fails on setup errors. The fixture API
# and the baseline client are bench/http-fixture (hyper, reqwest; a project of its own).
set -euo pipefail

ORIG_ARGS=("$@")
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)

CLUSTER=/tmp/pgfed-bench-http-pg
ROWS=100000
PER_PAGE=100
RUNS=5
PGFED_BIN=${PGFED_BIN:-}
BENCH_BIN=${BENCH_BIN:-}
BUILD=1
UPDATE_DOC=1
DOC="$REPO/docs/benchmarks.md"
PGFED_WAIT=${PGFED_WAIT:-60}
QUERY_TIMEOUT=${QUERY_TIMEOUT:-600}
DB=pgfed_test

usage() {
  cat <<'EOF'
Usage: bench/http.sh [options]

Starts a fixture API (ROWS items, GET /items?page=N&per_page=100, GET /items/{id}, a request
counter), a private Postgres cluster and pgfed; defines FOREIGN DATA WRAPPER http tables over the
API through pgfed; then times, interleaved, RUNS times each:
  a) SELECT * FROM items through pgfed (psql, rows discarded) and SELECT count(*) FROM items,
     vs the plain async client (reqwest + serde_json, the same 1001 requests in sequence)
and counts the requests of selective queries with and without pushdown. Prints a markdown report;
by default also rewrites the "HTTP connector (issue 5)" section of docs/benchmarks.md.

Options:
  --cluster DIR       private cluster directory             (default /tmp/pgfed-bench-http-pg)
  --rows N            items served                          (default 100000)
  --runs N            timed runs per target                 (default 5)
  --pgfed-bin PATH    pgfed binary (env PGFED_BIN)          (default target/release/pgfed)
  --bench-bin PATH    fixture/client binary (env BENCH_BIN) (default target/release/http-fixture)
  --no-build          do not build missing binaries
  --no-doc            do not touch docs/benchmarks.md
  --doc PATH          document to update                    (default docs/benchmarks.md)
  -h, --help
EOF
}

while (($#)); do
  case "$1" in
    --cluster) CLUSTER=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --pgfed-bin) PGFED_BIN=$2; shift 2 ;;
    --bench-bin) BENCH_BIN=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --no-doc) UPDATE_DOC=0; shift ;;
    --doc) DOC=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "http.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[http-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
for n in "$ROWS" "$RUNS"; do [[ $n =~ ^[0-9]+$ ]] || die "not a number: '$n'"; done

# ---------------------------------------------------------------- binaries
[[ -n $PGFED_BIN ]] || PGFED_BIN="$REPO/target/release/pgfed"
[[ -n $BENCH_BIN ]] || BENCH_BIN="$REPO/target/release/http-fixture"
if ((BUILD)); then
  # Release builds: the benchmark measures throughput. Cargo only rebuilds what changed.
  if [[ $PGFED_BIN == "$REPO/target/release/pgfed" ]]; then
    log "building pgfed: cargo build --release -p pgfed"
    (cd "$REPO" && timeout 3600 cargo build --release -p pgfed) || die "cargo build failed"
  fi
  if [[ $BENCH_BIN == "$REPO/target/release/http-fixture" ]]; then
    log "building the fixture: cargo build --release --manifest-path bench/http-fixture/Cargo.toml"
    (cd "$REPO" && CARGO_TARGET_DIR="$REPO/target" timeout 3600 cargo build --release \
      --manifest-path bench/http-fixture/Cargo.toml) || die "cargo build failed"
  fi
fi
[[ -x $PGFED_BIN ]] || die "pgfed binary not found: $PGFED_BIN"
[[ -x $BENCH_BIN ]] || die "fixture binary not found: $BENCH_BIN"

WORK=$(mktemp -d /tmp/pgfed-http-bench.XXXXXX)
API_PID="" PGFED_PID="" CLUSTER_STARTED=0
cleanup() {
  for pid in $PGFED_PID $API_PID; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if ((CLUSTER_STARTED)); then "$REPO/scripts/pg-test-cluster" stop "$CLUSTER" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- services
if ! "$REPO/scripts/pg-test-cluster" env "$CLUSTER" >/dev/null 2>&1; then CLUSTER_STARTED=1; fi
eval "$("$REPO/scripts/pg-test-cluster" start "$CLUSTER")"
PGPORT=$PGFED_TEST_PG_PORT

"$BENCH_BIN" serve "$WORK/api.port" "$ROWS" >"$WORK/api.log" 2>&1 &
API_PID=$!
for _ in $(seq 100); do [[ -s $WORK/api.port ]] && break; sleep 0.1; done
[[ -s $WORK/api.port ]] || die "the fixture API did not start"
API="http://127.0.0.1:$(cat "$WORK/api.port")"

FPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PGFED_LISTEN="127.0.0.1:$FPORT" PGFED_UPSTREAM="postgres://postgres@127.0.0.1:$PGPORT/$DB?sslmode=disable" \
  PGFED_LOG=${PGFED_LOG:-warn} "$PGFED_BIN" >"$WORK/pgfed.log" 2>&1 &
PGFED_PID=$!
PSQL=(psql -X -w -q -h 127.0.0.1 -U postgres -d "$DB" -p "$FPORT" -v ON_ERROR_STOP=1)
via() { timeout "$QUERY_TIMEOUT" "${PSQL[@]}" "$@"; }
for _ in $(seq $((PGFED_WAIT * 5))); do
  kill -0 "$PGFED_PID" 2>/dev/null || { tail -n 30 "$WORK/pgfed.log" >&2; die "pgfed exited"; }
  [[ $(via -tAc 'select 1' 2>/dev/null) == 1 ]] && break
  sleep 0.2
done
log "API $API, pgfed 127.0.0.1:$FPORT, cluster 127.0.0.1:$PGPORT"

N="bh$$"
cols() { echo "id bigint, name text, category text $1, price numeric(10, 2), created_at timestamptz, active boolean"; }
PAGED="rows 'data', pagination 'page', page_size_param 'per_page', page_size '$PER_PAGE'"
via <<SQL
CREATE SERVER ${N}_srv FOREIGN DATA WRAPPER http OPTIONS (base_url '$API', max_pages '5000');
CREATE FOREIGN TABLE ${N}_items ($(cols "OPTIONS (param 'category')")) SERVER ${N}_srv OPTIONS (path '/items', $PAGED);
CREATE FOREIGN TABLE ${N}_items_plain ($(cols "")) SERVER ${N}_srv OPTIONS (path '/items', $PAGED);
CREATE FOREIGN TABLE ${N}_item ($(cols "")) SERVER ${N}_srv OPTIONS (path '/items/{id}');
SQL

requests_of() { # SQL -> "rows requests"
  curl -s -X POST "$API/stats/reset" >/dev/null
  local out
  out=$(via -tAc "$1")
  echo "$out $(curl -s "$API/stats")"
}
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- timed runs (interleaved)
declare -A T
expected_pages=$(( ROWS / PER_PAGE + 1 ))
check_rows() { [[ $1 == "$ROWS" ]] || die "$2 returned $1 rows, expected $ROWS"; }
for run in $(seq "$RUNS"); do
  for target in client rows count convert psql; do
    case $target in
      client)
        read -r n secs < <("$BENCH_BIN" client "$API" "$PER_PAGE")
        check_rows "$n" client
        T[client]+=" $(awk -v s="$secs" 'BEGIN { printf "%.0f", s * 1000 }')" ;;
      rows)
        t0=$(now_ms); n=$(via -tAc "SELECT * FROM ${N}_items" | wc -l); t1=$(now_ms)
        check_rows "$n" "SELECT *"
        T[rows]+=" $((t1 - t0))" ;;
      count)
        t0=$(now_ms); n=$(via -tAc "SELECT count(*) FROM ${N}_items"); t1=$(now_ms)
        check_rows "$n" "count(*)"
        T[count]+=" $((t1 - t0))" ;;
      convert)
        t0=$(now_ms)
        n=$(via -tAc "SELECT count(id) + count(name) + count(category) + count(price) + count(created_at) + count(active) FROM ${N}_items")
        t1=$(now_ms)
        check_rows "$((n / 6))" "count(every column)"
        T[convert]+=" $((t1 - t0))" ;;
      psql)
        # What psql alone costs for 100k such rows: Postgres sends them, no pgfed, no HTTP.
        t0=$(now_ms)
        n=$(timeout "$QUERY_TIMEOUT" psql -X -w -q -h 127.0.0.1 -U postgres -d "$DB" -p "$PGPORT" -tAc \
          "SELECT g::bigint, 'item number ' || g, 'c' || g % 50, (g % 1000 + (g % 100) / 100.0)::numeric(10, 2),
                  now(), g % 3 <> 0 FROM generate_series(1, $ROWS) g" | wc -l)
        t1=$(now_ms)
        check_rows "$n" "psql reference"
        T[psql]+=" $((t1 - t0))" ;;
    esac
  done
  log "run $run: client ${T[client]##* } ms, pgfed rows ${T[rows]##* } ms, count ${T[count]##* } ms, convert ${T[convert]##* } ms, psql ${T[psql]##* } ms"
done

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "NA"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
minimum() { printf '%s\n' "$@" | sort -g | head -1; }
rate() { awk -v ms="$1" -v n="$ROWS" 'BEGIN { printf "%.0f", n / (ms / 1000) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }

# ---------------------------------------------------------------- requests with and without pushdown
read -r sel_rows sel_push < <(requests_of "SELECT count(*) FROM ${N}_items WHERE category = 'c7'")
read -r sel_rows2 sel_plain < <(requests_of "SELECT count(*) FROM ${N}_items_plain WHERE category = 'c7'")
[[ $sel_rows == "$sel_rows2" ]] || die "pushdown changed the answer: $sel_rows vs $sel_rows2"
read -r id_rows id_push < <(requests_of "SELECT count(*) FROM ${N}_item WHERE id = 4242")
read -r id_rows2 id_plain < <(requests_of "SELECT count(*) FROM ${N}_items_plain WHERE id = 4242")
[[ $id_rows == "$id_rows2" ]] || die "pushdown changed the answer: $id_rows vs $id_rows2"
read -r lim_rows lim_req < <(requests_of "SELECT count(*) FROM (SELECT id FROM ${N}_items LIMIT 250) s")
explain=$(via -tAc "EXPLAIN SELECT name FROM ${N}_items WHERE category = 'c7' AND price > 10" | grep -o 'GET [^,]*' | head -1)

# ---------------------------------------------------------------- report
c_med=$(median ${T[client]}); r_med=$(median ${T[rows]}); n_med=$(median ${T[count]})
v_med=$(median ${T[convert]}); p_med=$(median ${T[psql]})
git_rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit")
if [[ -n $(git -C "$REPO" status --porcelain --untracked-files=no -- crates Cargo.toml Cargo.lock 2>/dev/null) ]]; then
  git_rev+=" + uncommitted changes in crates/"
fi
cmd="bench/http.sh"
for a in "${ORIG_ARGS[@]}"; do cmd+=" $(printf '%q' "$a")"; done
REPORT="$WORK/report.md"
{
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores ($(uname -m)), git $git_rev, \`$cmd\`."
  echo "Fixture API: bench/http-fixture (hyper, HTTP/1.1 on loopback), $ROWS items of 6"
  echo "fields, $PER_PAGE per page: $expected_pages requests per full scan (the last page is empty). Median and"
  echo "best of $RUNS interleaved runs; pgfed is a release build, its client psql (rows read and discarded)."
  echo
  echo "| scan of $ROWS rows | median | best | rows/s (median) | throughput vs client |"
  echo "|---|---|---|---|---|"
  echo "| plain async client (reqwest, serde_json::Value per page) | ${c_med} ms | $(minimum ${T[client]}) ms | $(rate "$c_med") | 1 |"
  echo "| pgfed: \`SELECT * FROM items\` (all 6 columns to psql) | ${r_med} ms | $(minimum ${T[rows]}) ms | $(rate "$r_med") | $(ratio "$r_med" "$c_med") |"
  echo "| pgfed: \`SELECT count(*) FROM items\` (pages fetched and parsed, no column converted) | ${n_med} ms | $(minimum ${T[count]}) ms | $(rate "$n_med") | $(ratio "$n_med" "$c_med") |"
  echo "| pgfed: \`SELECT count(id) + ... + count(active)\` (every value converted, none sent) | ${v_med} ms | $(minimum ${T[convert]}) ms | $(rate "$v_med") | $(ratio "$v_med" "$c_med") |"
  echo "| reference: psql reading 100k such rows from Postgres itself (no pgfed, no HTTP) | ${p_med} ms | $(minimum ${T[psql]}) ms | $(rate "$p_med") | |"
  echo
  echo "Target: pgfed at least 0.8 of the client's throughput."
  echo
  echo "| selective query | rows | requests with pushdown | requests without |"
  echo "|---|---|---|---|"
  echo "| \`count(*) ... WHERE category = 'c7'\` (\`param 'category'\` vs none) | $sel_rows | $sel_push | $sel_plain |"
  echo "| \`count(*) ... WHERE id = 4242\` (\`path '/items/{id}'\` vs the list) | $id_rows | $id_push | $id_plain |"
  echo "| \`SELECT id ... LIMIT 250\` (LIMIT stops paging) | $lim_rows | $lim_req | $expected_pages |"
  echo
  echo "EXPLAIN of \`... WHERE category = 'c7' AND price > 10\` shows \`$explain\`."
} >"$REPORT"
cat "$REPORT"

if ((UPDATE_DOC)); then
  [[ -f $DOC ]] || printf '# pgfed benchmarks\n' >"$DOC"
  if ! grep -q '^<!-- http-bench:start -->' "$DOC"; then
    printf '\n## HTTP connector (issue 5)\n\n<!-- http-bench:start -->\n<!-- http-bench:end -->\n' >>"$DOC"
  fi
  tmp=$(mktemp "$WORK/doc.XXXXXX")
  awk -v rep="$REPORT" '
    /^<!-- http-bench:start -->/ { print; print "<!-- generated by bench/http.sh; edits inside these markers are overwritten -->"; print "";
                                   while ((getline l < rep) > 0) print l; print ""; skip = 1; next }
    /^<!-- http-bench:end -->/   { skip = 0 }
    !skip { print }' "$DOC" >"$tmp"
  cat "$tmp" >"$DOC"
  log "updated $DOC"
fi
