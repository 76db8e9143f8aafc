#!/usr/bin/env bash
# bench/proxy.sh -- proxy-core benchmark: direct PostgreSQL vs pgfed vs PgBouncer (session mode).
#
# A benchmark, not a test: it measures and reports, and only fails on setup errors.
# Everything runs in a private throwaway cluster on 127.0.0.1 (free ports) and is torn down on exit.
# See bench/README.md and `bench/proxy.sh --help`.
set -euo pipefail

ORIG_ARGS=("$@")
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)

# ---------------------------------------------------------------- defaults
TARGETS="direct,pgfed,pgbouncer"
DURATION=10
ROUNDS=3
MODES="simple,extended,prepared"
CLIENTS="1,8,32"
SCALE=10
COPY_RUNS=5
COPY_ROWS=1000000
PGFED_BIN=${PGFED_BIN:-}
BUILD=1
UPDATE_DOC=1
DOC="$REPO/docs/benchmarks.md"
PROFILE=""            # e.g. "extended:8" -> perf record pgfed during one extra pgbench run
PROFILE_ONLY=0
PROFILE_SECONDS=15
KEEP=0
WAIT_IDLE=60          # seconds to wait for an idle machine before measuring
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGFED_WAIT=${PGFED_WAIT:-30}
PERF_FREQ=${PERF_FREQ:-499}
PERF_CALLGRAPH=${PERF_CALLGRAPH:-dwarf,16384}

usage() {
  cat <<'EOF'
Usage: bench/proxy.sh [options]

Runs pgbench -S (simple/extended/prepared, 1/8/32 clients) and a 1M-row COPY TO STDOUT against
direct PostgreSQL, pgfed and PgBouncer (session mode), interleaved, and prints a markdown ratio
table. By default also rewrites the "Proxy core" section of docs/benchmarks.md.

Options:
  --targets LIST        comma list of direct,pgfed,pgbouncer    (default direct,pgfed,pgbouncer)
  -T, --duration SEC    pgbench -T per run                     (default 10)
  --rounds N            interleaved rounds, median taken       (default 3)
  --modes LIST          pgbench -M modes                       (default simple,extended,prepared)
  --clients LIST        pgbench -c values                      (default 1,8,32)
  --scale N             pgbench -i scale                       (default 10)
  --copy-runs N         COPY timings per target (0 = skip COPY) (default 5)
  --pgfed-bin PATH      pgfed binary (env PGFED_BIN)           (default target/release/pgfed)
  --no-build            do not build pgfed if the binary is missing
  --no-doc              do not touch docs/benchmarks.md
  --doc PATH            document to update                     (default docs/benchmarks.md)
  --profile MODE:C      after the benchmark, perf-record pgfed during one pgbench -M MODE -c C run
  --profile-only        skip the benchmark, only do --profile (implies --no-doc)
  --profile-seconds N   length of the profiled run             (default 15)
  --wait-idle SEC       wait up to SEC for the CPU to be >= 90% idle first (default 60)
  --keep                keep the temp dir (logs, perf data) instead of deleting it
  -h, --help

Environment: PGFED_BIN, PG_BIN (default /usr/lib/postgresql/15/bin), PGFED_WAIT (sec, default 30),
  PERF_FREQ (default 499), PERF_CALLGRAPH (perf --call-graph, default dwarf,16384).
EOF
}

while (($#)); do
  case "$1" in
    --targets) TARGETS=$2; shift 2 ;;
    -T|--duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --copy-runs) COPY_RUNS=$2; shift 2 ;;
    --pgfed-bin) PGFED_BIN=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --no-doc) UPDATE_DOC=0; shift ;;
    --doc) DOC=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --profile-only) PROFILE_ONLY=1; UPDATE_DOC=0; shift ;;
    --profile-seconds) PROFILE_SECONDS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --wait-idle) WAIT_IDLE=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "proxy.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[proxy-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

IFS=, read -r -a TARGET_LIST <<<"$TARGETS"
IFS=, read -r -a MODE_LIST <<<"$MODES"
IFS=, read -r -a CLIENT_LIST <<<"$CLIENTS"
for t in "${TARGET_LIST[@]}"; do
  case "$t" in direct|pgfed|pgbouncer) ;; *) die "unknown target '$t'";; esac
done
for m in "${MODE_LIST[@]}"; do
  case "$m" in simple|extended|prepared) ;; *) die "unknown mode '$m'";; esac
done
for n in "$WAIT_IDLE" "$DURATION" "$ROUNDS" "$SCALE" "$COPY_RUNS" "$PROFILE_SECONDS" "${CLIENT_LIST[@]}"; do
  [[ $n =~ ^[0-9]+$ ]] || die "not a number: '$n'"
done
((ROUNDS >= 1)) || die "--rounds must be >= 1"
has_target() { local x; for x in "${TARGET_LIST[@]}"; do [[ $x == "$1" ]] && return 0; done; return 1; }
if [[ -n $PROFILE ]]; then
  [[ $PROFILE =~ ^(simple|extended|prepared):[0-9]+$ ]] || die "--profile wants MODE:CLIENTS, got '$PROFILE'"
  has_target pgfed || die "--profile needs pgfed among --targets"
fi
((PROFILE_ONLY == 0)) || [[ -n $PROFILE ]] || die "--profile-only needs --profile MODE:C"

for tool in pgbench psql timeout ss awk sort; do
  command -v "$tool" >/dev/null || die "missing tool: $tool"
done
[[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl && -x $PG_BIN/postgres ]] || die "no PostgreSQL binaries in $PG_BIN"
if has_target pgbouncer; then
  command -v pgbouncer >/dev/null || die "pgbouncer not installed (apt-get install -y pgbouncer)"
fi
if [[ -n $PROFILE ]]; then command -v perf >/dev/null || die "perf not installed (apt-get install -y linux-perf)"; fi

# ---------------------------------------------------------------- pgfed binary
if has_target pgfed; then
  [[ -n $PGFED_BIN ]] || PGFED_BIN="$REPO/target/release/pgfed"
  if [[ ! -x $PGFED_BIN ]]; then
    if ((BUILD)) && [[ $PGFED_BIN == "$REPO/target/release/pgfed" ]]; then
      log "building pgfed: cargo build --release -p pgfed --locked"
      (cd "$REPO" && timeout 3600 cargo build --release -p pgfed --locked) || die "cargo build failed"
    fi
    [[ -x $PGFED_BIN ]] || die "pgfed binary not found: $PGFED_BIN (use --pgfed-bin, or --targets direct,pgbouncer)"
  fi
  PGFED_BIN=$(cd "$(dirname "$PGFED_BIN")" && pwd)/$(basename "$PGFED_BIN")
fi

# ---------------------------------------------------------------- workspace + cleanup
# Run the server processes as the postgres OS user when we are root (initdb/pgbouncer refuse root).
if ((EUID == 0)); then
  id postgres >/dev/null 2>&1 || die "no 'postgres' OS user"
  AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  PG_OWNER=postgres
else
  AS_PG=()
  PG_OWNER=$(id -un)
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pgfed-proxy-bench.XXXXXX")
chmod 755 "$WORK"
mkdir -p "$WORK/pg" "$WORK/bouncer" "$WORK/logs"
chown "$PG_OWNER" "$WORK/pg" "$WORK/bouncer"
chmod 700 "$WORK/pg"

PG_STARTED=0
PGFED_PID=""
BOUNCER_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [[ -n $PGFED_PID ]] && kill -0 "$PGFED_PID" 2>/dev/null; then
    kill -TERM "$PGFED_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$PGFED_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PGFED_PID" 2>/dev/null
  fi
  if [[ -n $BOUNCER_PID ]] && kill -0 "$BOUNCER_PID" 2>/dev/null; then
    kill -INT "$BOUNCER_PID" 2>/dev/null   # SIGINT = immediate shutdown
    for _ in $(seq 50); do kill -0 "$BOUNCER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$BOUNCER_PID" 2>/dev/null
  fi
  if ((PG_STARTED)); then
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m immediate -t 30 stop >/dev/null 2>&1
  fi
  wait 2>/dev/null
  if ((KEEP)); then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers
declare -A USED_PORTS=()
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    [[ -n ${USED_PORTS[$p]:-} ]] && continue
    if [[ -z $(ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null) ]]; then
      USED_PORTS[$p]=1; echo "$p"; return 0
    fi
  done
  die "no free port found"
}

# wait_sql PORT SECONDS [PID]: wait until `select 1` works on 127.0.0.1:PORT
wait_sql() {
  local port=$1 secs=$2 pid=${3:-} deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    if [[ $(timeout 5 psql -X -w -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc 'select 1' 2>/dev/null) == 1 ]]; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

median() { # whitespace-separated numbers in $* (NA/blank ignored) -> median, or NA if none
  printf '%s\n' "$@" | awk '$1 ~ /^[0-9.]+$/' | sort -g | awk '{a[NR]=$1} END { if (NR==0) {print "NA"; exit}
    if (NR%2) printf "%.3f\n", a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2 }'
}
ratio() { # a b -> a/b with 3 decimals, or NA
  awk -v a="$1" -v b="$2" 'BEGIN { if (a=="NA" || b=="NA" || b+0==0) print "NA"; else printf "%.3f\n", a/b }'
}
fmt1() { awk -v a="$1" 'BEGIN { if (a=="NA") print "NA"; else printf "%.1f\n", a }'; }
fmt_int() { awk -v a="$1" 'BEGIN { if (a=="NA") print "NA"; else printf "%.0f\n", a }'; }

declare -A PORT
PGPORT=$(free_port)
PORT[direct]=$PGPORT

# ---------------------------------------------------------------- PostgreSQL cluster
log "initdb into $WORK/pg/data (port $PGPORT)"
"${AS_PG[@]}" "$PG_BIN/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 --no-locale \
  >"$WORK/logs/initdb.log" 2>&1 || { cat "$WORK/logs/initdb.log" >&2; die "initdb failed"; }
cat >>"$WORK/pg/data/postgresql.conf" <<EOF

# --- pgfed proxy benchmark (throwaway cluster: durability off on purpose) ---
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = ''
max_connections = 200
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
EOF
cat >"$WORK/pg/data/pg_hba.conf" <<'EOF'
# TYPE  DATABASE  USER  ADDRESS        METHOD
host    all       all   127.0.0.1/32   trust
EOF
"${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/postgres.log" -w -t 60 start \
  >"$WORK/logs/pg_ctl.log" 2>&1 || { cat "$WORK/logs/pg_ctl.log" "$WORK/pg/postgres.log" >&2; die "postgres did not start"; }
PG_STARTED=1
wait_sql "$PGPORT" 30 || die "postgres not answering on 127.0.0.1:$PGPORT"

PSQL=(psql -X -w -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d postgres)
log "pgbench -i -s $SCALE"
timeout 900 pgbench -i -q -s "$SCALE" -h 127.0.0.1 -p "$PGPORT" -U postgres postgres \
  >"$WORK/logs/pgbench-init.log" 2>&1 || { cat "$WORK/logs/pgbench-init.log" >&2; die "pgbench -i failed"; }
if ((COPY_RUNS > 0)) && ((PROFILE_ONLY == 0)); then
  log "creating copy_src ($COPY_ROWS rows)"
  timeout 600 "${PSQL[@]}" -p "$PGPORT" -q >"$WORK/logs/copy-setup.log" 2>&1 <<EOF || die "copy table setup failed"
CREATE TABLE copy_src AS
  SELECT g AS id, md5(g::text) AS payload, now() AS ts FROM generate_series(1, $COPY_ROWS) g;
VACUUM ANALYZE copy_src;
EOF
fi
timeout 300 "${PSQL[@]}" -p "$PGPORT" -q -c 'VACUUM ANALYZE' >/dev/null 2>&1 || true
timeout 300 "${PSQL[@]}" -p "$PGPORT" -q \
  -c 'CREATE EXTENSION IF NOT EXISTS pg_prewarm' \
  -c "SELECT pg_prewarm(c.oid) FROM pg_class c WHERE c.relname LIKE 'pgbench_%' OR c.relname = 'copy_src'" \
  >/dev/null 2>&1 || log "pg_prewarm unavailable (continuing; warm-up run still happens)"

# ---------------------------------------------------------------- PgBouncer (session mode)
if has_target pgbouncer; then
  BPORT=$(free_port)
  PORT[pgbouncer]=$BPORT
  maxpool=16
  for c in "${CLIENT_LIST[@]}"; do ((c + 4 > maxpool)) && maxpool=$((c + 4)); done
  echo '"postgres" ""' >"$WORK/bouncer/userlist.txt"
  cat >"$WORK/bouncer/pgbouncer.ini" <<EOF
[databases]
postgres = host=127.0.0.1 port=$PGPORT dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BPORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/bouncer/userlist.txt
pool_mode = session
default_pool_size = $maxpool
max_client_conn = $((maxpool * 2 + 10))
max_db_connections = 0
server_reset_query = DISCARD ALL
ignore_startup_parameters = extra_float_digits
logfile = $WORK/bouncer/pgbouncer.log
log_connections = 0
log_disconnections = 0
pidfile =
admin_users = postgres
EOF
  chown -R "$PG_OWNER" "$WORK/bouncer"
  log "starting pgbouncer $(pgbouncer --version | head -1 | awk '{print $2}') on 127.0.0.1:$BPORT (session, pool $maxpool)"
  "${AS_PG[@]}" pgbouncer "$WORK/bouncer/pgbouncer.ini" >"$WORK/logs/pgbouncer.out" 2>&1 &
  BOUNCER_PID=$!
  wait_sql "$BPORT" 30 "$BOUNCER_PID" || { cat "$WORK/logs/pgbouncer.out" "$WORK/bouncer/pgbouncer.log" >&2 || true; die "pgbouncer did not come up"; }
fi

# ---------------------------------------------------------------- pgfed
if has_target pgfed; then
  FPORT=$(free_port)
  PORT[pgfed]=$FPORT
  log "starting pgfed ($PGFED_BIN) on 127.0.0.1:$FPORT -> 127.0.0.1:$PGPORT"
  PGFED_LISTEN="127.0.0.1:$FPORT" PGFED_UPSTREAM="postgres://127.0.0.1:$PGPORT/postgres" \
    "$PGFED_BIN" >"$WORK/logs/pgfed.out" 2>&1 &
  PGFED_PID=$!
  if ! wait_sql "$FPORT" "$PGFED_WAIT" "$PGFED_PID"; then
    tail -n 50 "$WORK/logs/pgfed.out" >&2 || true
    die "pgfed did not answer 'select 1' on 127.0.0.1:$FPORT within ${PGFED_WAIT}s"
  fi
fi

# ---------------------------------------------------------------- pgbench
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
declare -A TPID=([direct]="" [pgfed]="$PGFED_PID" [pgbouncer]="$BOUNCER_PID")
proc_cpu_ticks() { # pid -> utime+stime of the whole process (all threads), or empty
  [[ -n $1 && -r /proc/$1/stat ]] || return 0
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || true
}
proc_all_ticks() { # pid -> utime+stime+cutime+cstime (self and reaped children), or 0
  if [[ -n $1 && -r /proc/$1/stat ]]; then awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; else echo 0; fi
}
pg_tree_ticks() { # CPU of the whole cluster: postmaster incl. reaped backends + live children
  local pm=$1 kids
  kids=$(pgrep -P "$pm" 2>/dev/null | sed 's|.*|/proc/&/stat|' | tr '\n' ' ' || true)
  # shellcheck disable=SC2086
  # backends come and go while we read: missing files are fine, failing is not
  { { cat "/proc/$pm/stat" 2>/dev/null || true; } | awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }'
    if [[ -n $kids ]]; then { cat $kids 2>/dev/null || true; } | awk '{ sub(/^.*\) /, ""); print $12 + $13 }'; fi
  } | awk '{ t += $1 } END { print t + 0 }'
}
sys_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
POSTMASTER_PID=$(head -n 1 "$WORK/pg/data/postmaster.pid")
NCPU=$(nproc)

# run_pgbench TARGET MODE CLIENTS SECONDS -> prints "tps proxy_us_per_txn other_load_pct" (NA where
# unknown). other_load_pct: CPU used during the run by processes that are not part of the benchmark
# (all busy CPU minus postgres -- live and exited backends -- the proxy and pgbench), as % of the machine.
run_pgbench() {
  local target=$1 mode=$2 c=$3 secs=$4 j out pid=${TPID[$1]:-} c0 c1 s0 s1 pm0 pm1 me0 me1 w0 w1
  local me=$BASHPID   # this shell reaps pgbench (via timeout), so its cutime/cstime grow by pgbench's CPU
  j=$((c < 2 ? c : 2))
  out="$WORK/logs/pgbench-$target-$mode-c$c-$(date +%s%N).log"
  c0=$(proc_cpu_ticks "$pid"); s0=$(sys_busy_ticks); pm0=$(pg_tree_ticks "$POSTMASTER_PID")
  me0=$(proc_all_ticks "$me"); w0=$(date +%s%N)
  if timeout $((secs + 60)) pgbench -n -S -M "$mode" -c "$c" -j "$j" -T "$secs" \
       -h 127.0.0.1 -p "${PORT[$target]}" -U postgres postgres >"$out" 2>&1; then
    local tps failed txns us=NA other
    c1=$(proc_cpu_ticks "$pid"); s1=$(sys_busy_ticks); pm1=$(pg_tree_ticks "$POSTMASTER_PID")
    me1=$(proc_all_ticks "$me"); w1=$(date +%s%N)
    tps=$(awk '/^tps = / {print $3; exit}' "$out")
    txns=$(awk -F': ' '/^number of transactions actually processed/ {split($2, a, "/"); print a[1]; exit}' "$out")
    failed=$(awk -F'[: ]+' '/^number of failed transactions/ {print $5; exit}' "$out")
    if [[ -n $c0 && -n $c1 && -n $txns ]]; then
      us=$(awk -v a="$c0" -v b="$c1" -v n="$txns" -v hz="$CLK_TCK" 'BEGIN { if (n > 0) printf "%.1f\n", (b - a) / hz * 1e6 / n; else print "NA" }')
    fi
    other=$(awk -v s="$((s1 - s0))" -v pm="$((pm1 - pm0))" -v me="$((me1 - me0))" -v px="$(( ${c1:-0} - ${c0:-0} ))" \
              -v w="$((w1 - w0))" -v hz="$CLK_TCK" -v n="$NCPU" \
              'BEGIN { o = s - pm - me - px; if (o < 0) o = 0; printf "%.0f\n", 100 * o / (w / 1e9 * hz * n) }')
    if [[ -n $tps && ${failed:-0} == 0 ]]; then echo "$tps $us $other"; return 0; fi
  fi
  log "pgbench failed: $target -M $mode -c $c (last lines of $out follow)"
  tail -n 5 "$out" >&2 || true
  echo "NA NA NA"
}

PGBENCH_VERSION=$(pgbench --version)
declare -A RAW=()    # RAW[target|mode|c] = "tps tps tps"
declare -A CPU=()    # CPU[target|mode|c] = "us us us" (proxy process CPU per transaction)
declare -A OTHER=()  # OTHER[target|mode|c] = "% % %" (CPU used by unrelated processes during the run)
ntarg=${#TARGET_LIST[@]}
ALL_OTHER=""
# How idle is the box before we start? (other work on these cores skews every number)
idle_pct() {
  local a b
  a=$(awk '/^cpu / {print $5+$6, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat); sleep 3
  b=$(awk '/^cpu / {print $5+$6, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[2] - x[2];
    if (d <= 0) print "NA"; else printf "%.0f\n", 100 * (y[1] - x[1]) / d }'
}
IDLE_BEFORE=$(idle_pct)
idle_deadline=$((SECONDS + WAIT_IDLE))
while [[ $IDLE_BEFORE != NA ]] && ((IDLE_BEFORE < 90 && SECONDS < idle_deadline)); do
  log "CPU only ${IDLE_BEFORE}% idle (something else is running); waiting up to $((idle_deadline - SECONDS))s more"
  sleep 7
  IDLE_BEFORE=$(idle_pct)
done
log "CPU idle before the runs (3 s sample): ${IDLE_BEFORE}%"
if [[ $IDLE_BEFORE != NA ]] && ((IDLE_BEFORE < 90)); then
  log "WARNING: the machine is busy with something else; results will be skewed"
fi
if ((PROFILE_ONLY == 0)); then
  log "warm-up: pgbench -S -T 3 per target"
  for t in "${TARGET_LIST[@]}"; do run_pgbench "$t" simple 2 3 >/dev/null || true; done

  total=$((ROUNDS * ${#MODE_LIST[@]} * ${#CLIENT_LIST[@]} * ntarg))
  log "pgbench: $total runs x ${DURATION}s (~$((total * (DURATION + 1) / 60)) min)"
  n=0
  for ((r = 0; r < ROUNDS; r++)); do
    for m in "${MODE_LIST[@]}"; do
      for c in "${CLIENT_LIST[@]}"; do
        for ((k = 0; k < ntarg; k++)); do
          t=${TARGET_LIST[$(((k + r) % ntarg))]}   # rotate the order each round
          n=$((n + 1))
          read -r tps us other < <(run_pgbench "$t" "$m" "$c" "$DURATION") || true
          tps=${tps:-NA}; us=${us:-NA}; other=${other:-NA}
          RAW["$t|$m|$c"]="${RAW["$t|$m|$c"]:-} $tps"
          CPU["$t|$m|$c"]="${CPU["$t|$m|$c"]:-} $us"
          OTHER["$t|$m|$c"]="${OTHER["$t|$m|$c"]:-} $other"
          ALL_OTHER+=" $other"
          log "[$n/$total] round $((r + 1)) -M $m -c $c $t: $tps tps$([[ $us == NA ]] || echo ", proxy CPU ${us} us/txn"), other load ${other}%"
        done
      done
    done
  done
fi

# ---------------------------------------------------------------- COPY
declare -A COPY_RAW=()
if ((COPY_RUNS > 0)) && ((PROFILE_ONLY == 0)); then
  copy_once() { # target -> seconds or NA
    local t=$1 s e
    s=$(date +%s%N)
    if timeout 300 "${PSQL[@]}" -p "${PORT[$t]}" -q -c "COPY copy_src TO STDOUT" >/dev/null 2>>"$WORK/logs/copy-$t.err"; then
      e=$(date +%s%N)
      awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f\n", (e - s) / 1e9 }'
    else
      echo NA
    fi
  }
  log "COPY copy_src TO STDOUT ($COPY_ROWS rows): 1 warm-up + $COPY_RUNS runs per target, interleaved"
  for t in "${TARGET_LIST[@]}"; do copy_once "$t" >/dev/null; done
  for ((r = 0; r < COPY_RUNS; r++)); do
    for ((k = 0; k < ntarg; k++)); do
      t=${TARGET_LIST[$(((k + r) % ntarg))]}
      s=$(copy_once "$t")
      COPY_RAW[$t]="${COPY_RAW[$t]:-} $s"
      log "COPY run $((r + 1)) $t: ${s}s"
    done
  done
fi

# ---------------------------------------------------------------- profile (optional)
PROFILE_REPORT=""
if [[ -n $PROFILE ]]; then
  pm=${PROFILE%%:*}; pc=${PROFILE##*:}
  pdata="$WORK/perf-pgfed.data"
  log "profiling pgfed: perf record -g during pgbench -S -M $pm -c $pc -T $PROFILE_SECONDS"
  timeout $((PROFILE_SECONDS + 60)) perf record -e cpu-clock -F "$PERF_FREQ" --call-graph "$PERF_CALLGRAPH" -o "$pdata" -p "$PGFED_PID" \
    >"$WORK/logs/perf-record.log" 2>&1 &
  perf_pid=$!
  sleep 1
  read -r tps _ _ < <(run_pgbench pgfed "$pm" "$pc" "$PROFILE_SECONDS") || true
  kill -INT "$perf_pid" 2>/dev/null || true
  wait "$perf_pid" 2>/dev/null || true
  log "profiled run: $tps tps"
  PROFILE_REPORT="$WORK/perf-report.txt"
  perf_lines() { # perf report args... -> report lines without comments/padding (never fails)
    timeout 300 perf report -i "$pdata" --stdio -g none "$@" 2>/dev/null \
      | awk '!/^#/ && NF { sub(/[ \t]+-[ \t]+-[ \t]*$/, ""); sub(/[ \t]+$/, ""); print }' || true
  }
  {
    echo "# pgbench -S -M $pm -c $pc -T $PROFILE_SECONDS through pgfed: $tps tps (perf record -e cpu-clock -F $PERF_FREQ --call-graph $PERF_CALLGRAPH -p <pgfed pid>)"
    echo "## by shared object (self time)"
    perf_lines --no-children --sort dso --percent-limit 0.5 | head -n 8 || true
    echo "## kernel entry points and scheduler, including children (syscalls, softirq, context switches)"
    perf_lines --children --sort symbol --percent-limit 1 \
      | grep -E '\[k\] (__x64_sys_[a-z0-9_]+|do_softirq[.a-z0-9]*|schedule|exit_to_user_mode_loop|try_to_wake_up|asm_sysvec_[a-z0-9_]+)$' \
      | head -n 15 || true
    echo "## top symbols, self time"
    perf_lines --no-children --sort symbol --percent-limit 0.7 | head -n 15 || true
    echo "## user space only (pgfed binary + libc), self time"
    perf_lines --no-children --dsos "$(basename "$PGFED_BIN"),libc.so.6" --sort dso,symbol --percent-limit 0.2 \
      | cut -c1-160 | head -n 20 || true
  } >"$PROFILE_REPORT"
  cat "$PROFILE_REPORT" >&2
  if ((KEEP)); then log "perf data: $pdata"; fi
fi
((PROFILE_ONLY == 0)) || exit 0

# ---------------------------------------------------------------- report
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_gb=$(awk '/^MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
pg_version=$("$PG_BIN/postgres" --version)
bouncer_version=$(command -v pgbouncer >/dev/null && pgbouncer --version | head -1 || echo "n/a")
pgfed_version="not run"
if has_target pgfed; then
  # Only trust --version output that looks like a version; keep it on loopback and bounded in case
  # the binary ignores the flag and starts serving.
  v=$(PGFED_LISTEN="127.0.0.1:$(free_port)" PGFED_UPSTREAM="postgres://127.0.0.1:$PGPORT/postgres" \
      timeout -k 1 3 "$PGFED_BIN" --version 2>/dev/null </dev/null | head -1 || true)
  [[ $v =~ [0-9]+\.[0-9]+ ]] || v=""
  pgfed_version="$(basename "$PGFED_BIN")${v:+ ($v)}"
  pgfed_version="$pgfed_version (${PGFED_BIN#"$REPO"/}, sha256 $(sha256sum "$PGFED_BIN" | cut -c1-12), built $(date -u -r "$PGFED_BIN" '+%Y-%m-%d %H:%M UTC'))"
fi
git_rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit yet")
if [[ -n $(git -C "$REPO" status --porcelain --untracked-files=no -- crates Cargo.toml Cargo.lock 2>/dev/null) ]]; then
  git_rev+=" + uncommitted changes in crates/"
fi
cmd="bench/proxy.sh"
for a in "${ORIG_ARGS[@]}"; do
  if [[ $a =~ ^[A-Za-z0-9_,./:=+-]+$ ]]; then cmd+=" $a"; else cmd+=" $(printf '%q' "$a")"; fi
done

cell() { # target mode c -> median tps
  if has_target "$1"; then median ${RAW["$1|$2|$3"]:-}; else echo NA; fi
}
verdict() { # value op threshold -> met/missed/not measured
  awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { if (v=="NA") { print "not measured"; exit }
    ok = (op==">=") ? (v+0 >= t+0) : (v+0 <= t+0); print ok ? "**met**" : "**missed**" }'
}

REPORT="$WORK/report.md"
{
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname -s 2>/dev/null || echo host): $(nproc) cores ($cpu_model), ${mem_gb} GB RAM, Linux $(uname -r)."
  echo
  echo "- PostgreSQL: $pg_version (private throwaway cluster: shared_buffers=256MB, max_connections=200, **fsync=off, synchronous_commit=off, full_page_writes=off**; trust auth on 127.0.0.1)"
  echo "- PgBouncer: $bouncer_version, pool_mode=session, auth_type=trust"
  echo "- pgfed: $pgfed_version; repo HEAD when the benchmark ran: $git_rev (the binary may predate it: see its build time)"
  echo "- $PGBENCH_VERSION; \`pgbench -n -S -M <mode> -c <C> -j min(C,2) -T $DURATION\`, scale $SCALE, one connection per client (no -C); $ROUNDS interleaved rounds (targets back to back per cell, order rotated each round), median tps shown"
  echo "- pgbench, PostgreSQL and the proxy share the same $(nproc) cores, so any proxy CPU directly costs tps at 8+ clients"
  other_med=$(median $ALL_OTHER); other_max=$(printf '%s\n' $ALL_OTHER | awk '$1 ~ /^[0-9.]+$/ && $1 > m { m = $1 } END { print m + 0 }')
  echo "- Quietness: CPU idle just before the runs ${IDLE_BEFORE}%; CPU used by unrelated processes during the pgbench runs: median $(fmt_int "$other_med")%, max ${other_max}% of the machine (above ~5% the numbers are skewed; per-run values in the raw table)"
  echo
  echo "Reproduce: \`$cmd\`"
  echo
  echo "### pgbench -S (tps, median of $ROUNDS)"
  echo
  echo "| mode | clients | direct | pgfed | pgbouncer | pgfed/direct | pgfed/pgbouncer | pgbouncer/direct |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for m in "${MODE_LIST[@]}"; do
    for c in "${CLIENT_LIST[@]}"; do
      d=$(cell direct "$m" "$c"); f=$(cell pgfed "$m" "$c"); b=$(cell pgbouncer "$m" "$c")
      echo "| $m | $c | $(fmt_int "$d") | $(fmt_int "$f") | $(fmt_int "$b") | $(ratio "$f" "$d") | $(ratio "$f" "$b") | $(ratio "$b" "$d") |"
    done
  done
  proxies=()
  for t in pgfed pgbouncer; do has_target "$t" && proxies+=("$t"); done
  if ((${#proxies[@]})); then
    echo
    echo "### Proxy CPU per transaction (microseconds, median; proxy process utime+stime / pgbench transactions)"
    echo
    echo "| mode | clients |$(printf ' %s |' "${proxies[@]}")"
    echo "|---|---:|$(printf -- '---:|%.0s' "${proxies[@]}")"
    for m in "${MODE_LIST[@]}"; do
      for c in "${CLIENT_LIST[@]}"; do
        row="| $m | $c |"
        for t in "${proxies[@]}"; do row+=" $(fmt1 "$(median ${CPU["$t|$m|$c"]:-})") |"; done
        echo "$row"
      done
    done
  fi
  if ((COPY_RUNS > 0)); then
    echo
    echo "### COPY copy_src TO STDOUT ($COPY_ROWS rows, ~$(( $(timeout 60 "${PSQL[@]}" -p "$PGPORT" -tAc "select pg_total_relation_size('copy_src')") / 1048576 )) MB table) via psql into /dev/null (seconds, median of $COPY_RUNS)"
    echo
    echo "| target | seconds | throughput vs direct (direct s / target s) |"
    echo "|---|---:|---:|"
    cd_med=$(median ${COPY_RAW[direct]:-})
    for t in "${TARGET_LIST[@]}"; do
      med=$(median ${COPY_RAW[$t]:-})
      echo "| $t | $med | $(ratio "$cd_med" "$med") |"
    done
  fi
  echo
  echo "### Targets"
  echo
  echo "| target | measured | result |"
  echo "|---|---|---|"
  if has_target pgfed; then
    for m in "${MODE_LIST[@]}"; do
      d=$(cell direct "$m" 8); f=$(cell pgfed "$m" 8); b=$(cell pgbouncer "$m" 8)
      rd=$(ratio "$f" "$d"); rb=$(ratio "$f" "$b")
      echo "| pgfed >= 0.80 x direct, -M $m -c 8 | $rd | $(verdict "$rd" ">=" 0.80) |"
      echo "| pgfed >= PgBouncer, -M $m -c 8 | $rb | $(verdict "$rb" ">=" 1.00) |"
    done
    if ((COPY_RUNS > 0)); then
      cf=$(median ${COPY_RAW[pgfed]:-})
      # COPY is a time: throughput ratio = direct_seconds / pgfed_seconds
      rc=$(ratio "$cd_med" "$cf")
      echo "| COPY throughput >= 0.90 x direct (direct s / pgfed s) | $rc | $(verdict "$rc" ">=" 0.90) |"
    fi
  else
    echo "| pgfed targets (>= 0.80 x direct and >= PgBouncer at 8 clients; COPY >= 0.90 x direct) | pgfed not in --targets | not measured |"
  fi
  echo
  echo "<details><summary>raw per-round values</summary>"
  echo
  echo "| mode | clients | target | tps per round (in round order) | proxy CPU us/txn per round | other load % per round |"
  echo "|---|---:|---|---|---|---|"
  for m in "${MODE_LIST[@]}"; do
    for c in "${CLIENT_LIST[@]}"; do
      for t in "${TARGET_LIST[@]}"; do
        echo "| $m | $c | $t | $(echo ${RAW["$t|$m|$c"]:-}) | $(echo ${CPU["$t|$m|$c"]:-}) | $(echo ${OTHER["$t|$m|$c"]:-}) |"
      done
    done
  done
  if ((COPY_RUNS > 0)); then
    echo
    for t in "${TARGET_LIST[@]}"; do echo "- COPY $t seconds: $(echo ${COPY_RAW[$t]:-})"; done
  fi
  echo
  echo "</details>"
  if [[ -n $PROFILE_REPORT && -s $PROFILE_REPORT ]]; then
    echo
    echo "<details><summary>perf profile of pgfed ($PROFILE)</summary>"
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
  mkdir -p "$(dirname "$DOC")"
  if [[ ! -f $DOC ]]; then
    cat >"$DOC" <<'EOF'
# pgfed benchmarks

Numbers are machine-specific; each section states its machine, versions and the command that
reproduced it. Sections between `<!-- ... -->` markers are rewritten by the scripts in `bench/`.
EOF
  fi
  if ! grep -q '^<!-- proxy-bench:start -->' "$DOC"; then
    printf '\n## Proxy core\n\n<!-- proxy-bench:start -->\n<!-- proxy-bench:end -->\n' >>"$DOC"
  fi
  tmp=$(mktemp "$WORK/doc.XXXXXX")
  awk -v rep="$REPORT" '
    /^<!-- proxy-bench:start -->/ { print; print "<!-- generated by bench/proxy.sh; edits inside these markers are overwritten -->"; print "";
                                    while ((getline l < rep) > 0) print l; print ""; skip = 1; next }
    /^<!-- proxy-bench:end -->/   { skip = 0 }
    !skip { print }' "$DOC" >"$tmp"
  cat "$tmp" >"$DOC"
  log "updated $DOC"
fi
