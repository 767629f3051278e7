# lib.sh — what the shell tests in tests/cli/ share. Not a test itself (ctest
# runs test_*.sh only). Source it after `set -euo pipefail`:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   lib_init test_name "${1:-}" evstore evstored   # the binaries this test needs
#   ...
#   lib_finish                                    # the summary line; fails if anything failed
#
# lib_init sets BUILD, EVS, EVSD, T (a scratch directory, removed at exit with
# every process the test registered), and unsets EVSTORE_* so the environment
# steers neither the CLI nor the servers under test.
#
# Results:  pass, fail NAME [DETAIL...], expect_eq NAME WANT GOT, expect_has NAME
#           HAYSTACK NEEDLE, expect_not NAME HAYSTACK NEEDLE, expect_true NAME EXPR
# Commands: run CMD... (sets RC, OUT, ERR without tripping set -e), lines FILE,
#           wait_lines FILE N
# Servers:  port_busy PORT, http_status PORT PATH, free_port (sets FREE_PORT),
#           start_server DATA [OPTIONS...] (sets SPID, PORT, URL, LOG), stop_server PID
# Cleanup:  add PIDs of background jobs to BG_PIDS (servers are added by
#           start_server to SERVER_PIDS); define lib_cleanup_hook to do more.
# Processes are stopped by their own PIDs only: other people run servers too.

lib_init() {
    LIB_NAME=$1
    BUILD=$(cd "${2:?usage: $LIB_NAME.sh BUILD_DIR}" && pwd)
    shift 2
    EVS="$BUILD/evstore"
    EVSD="$BUILD/evstored"
    local bin
    for bin in "$@"; do
        if [[ ! -x $BUILD/$bin ]]; then
            echo "$LIB_NAME: $BUILD/$bin is not built" >&2
            exit 1
        fi
    done
    local base=${EVS_TEST_TMP:-/tmp}
    mkdir -p "$base"
    T=$(mktemp -d "$base/evs-$LIB_NAME.XXXXXX")
    SERVER_PIDS=()
    BG_PIDS=()
    NSERVERS=0
    passed=0
    failed=0
    trap lib_cleanup EXIT
    while read -r v; do unset "$v"; done < <(compgen -e | grep '^EVSTORE_' || true)
}

lib_cleanup() {
    local p
    if declare -F lib_cleanup_hook >/dev/null; then lib_cleanup_hook || true; fi
    for p in "${BG_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    for p in "${SERVER_PIDS[@]}"; do
        if kill "$p" 2>/dev/null; then wait "$p" 2>/dev/null || true; fi
    done
    rm -rf "$T"
}

lib_finish() {
    echo "$LIB_NAME: $passed passed, $failed failed"
    ((failed == 0))
}

# ---- results ------------------------------------------------------------------
pass() { passed=$((passed + 1)); }
fail() {
    failed=$((failed + 1))
    echo "FAIL: $1" >&2
    shift
    local line
    for line in "$@"; do echo "      $line" >&2; done
}
expect_eq() { if [[ $2 == "$3" ]]; then pass; else fail "$1" "expected: $2" "actual:   $3"; fi; }
expect_has() { if [[ $2 == *"$3"* ]]; then pass; else fail "$1" "missing:  $3" "in:       $2"; fi; }
expect_not() { if [[ $2 != *"$3"* ]]; then pass; else fail "$1" "unexpected: $3" "in:         $2"; fi; }
expect_true() { if eval "$2"; then pass; else fail "$1" "not true: $2"; fi; }

# ---- commands -----------------------------------------------------------------
# run CMD...: sets RC, OUT and ERR without tripping set -e.
run() {
    RC=0
    "$@" >"$T/out" 2>"$T/err" || RC=$?
    OUT=$(cat "$T/out")
    ERR=$(cat "$T/err")
}
lines() { wc -l <"$1" | tr -d ' '; }
# Bounded polling: wait until FILE has at least N lines (about 15 s at most).
wait_lines() {
    local i
    for ((i = 0; i < 300; i++)); do
        [[ -f $1 && $(lines "$1") -ge $2 ]] && return 0
        sleep 0.05
    done
    return 1
}

# ---- servers ------------------------------------------------------------------
# Is something listening on 127.0.0.1:PORT? (bash's /dev/tcp; no python, no nc)
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# The status code of a plain-HTTP GET of PATH on PORT, or nothing.
http_status() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
        read -r -t 2 _ code _ <&3 || exit 1
        echo "$code"
    ) 2>/dev/null || true
}
# A port nobody listens on now, derived from our PID in a high range: FREE_PORT.
LIB_PORTS=0
free_port() {
    local i p first=$((20000 + ($$ * 37 + LIB_PORTS * 997) % 40000))
    for ((i = 0; i < 40; i++)); do
        p=$((first + i * 13))
        ((p > 65000)) && p=$((p - 45000))
        LIB_PORTS=$((LIB_PORTS + 1))
        port_busy "$p" && continue
        FREE_PORT=$p
        return 0
    done
    echo "$LIB_NAME: no free port" >&2
    exit 1
}
# start_server DATA_DIR [EVSTORED OPTIONS...]: sets SPID, PORT, URL and LOG.
# SERVER_OPTS (an array, optional) goes before the options given here. A port
# in use is skipped (evstored binds with SO_REUSEPORT, so it would start
# anyway and share the port with its owner), and a server that does not come
# up is retried on the next one. With FIXED_PORT set (a restart), only that one.
start_server() {
    local data=$1
    shift
    local tries=40 i p tls=0 opts=("${SERVER_OPTS[@]+"${SERVER_OPTS[@]}"}")
    [[ " $* " == *" --tls-cert "* ]] && tls=1
    for ((i = 0; i < tries; i++)); do
        if [[ -n ${FIXED_PORT:-} ]]; then tries=1; p=$FIXED_PORT; else free_port; p=$FREE_PORT; fi
        NSERVERS=$((NSERVERS + 1))
        LOG="$T/server$NSERVERS.log"
        "$EVSD" --data "$data" --listen "127.0.0.1:$p" "${opts[@]+"${opts[@]}"}" "$@" >"$LOG" 2>&1 &
        SPID=$!
        SERVER_PIDS+=("$SPID")
        local j up=0
        for ((j = 0; j < 200; j++)); do
            kill -0 "$SPID" 2>/dev/null || break
            if ((tls)); then port_busy "$p" && up=1; else [[ $(http_status "$p" /health) == 200 ]] && up=1; fi
            ((up)) && break
            sleep 0.05
        done
        if ((up)); then
            PORT=$p
            URL="http://127.0.0.1:$p"
            ((tls)) && URL="https://127.0.0.1:$p"
            return 0
        fi
        kill "$SPID" 2>/dev/null || true
        wait "$SPID" 2>/dev/null || true
    done
    echo "$LIB_NAME: cannot start evstored (last log: $(cat "$LOG" 2>/dev/null))" >&2
    exit 1
}
# stop_server PID: SIGTERM, then wait for it; its exit status must be 0.
stop_server() {
    local rc=0
    kill "$1"
    wait "$1" || rc=$?
    expect_eq "evstored (pid $1) stops cleanly on SIGTERM" 0 "$rc"
}
