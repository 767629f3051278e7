#!/usr/bin/env bash
# test_backup.sh — backup and restore end to end, through evstored and the CLI:
#   - `evstore backup --url` while a loop keeps appending; restore; a second
#     evstored on the restored directory serves exactly what the first served
#     for those positions (`evstore export`, byte for byte);
#   - increments through --url (--since), a chain restored in one go, equal to
#     the live store; `evstore verify` clean on every restored store;
#   - `evstore backup --data` beside the running server (read-only open);
#   - refusals: damaged and truncated archives, a missing increment, a
#     non-empty target, since past the end, bad usage, tokens without the
#     right scope — each with a clear message and nothing left behind;
#   - the README's "snapshot here, restore there" walkthrough, step by step.
#
#   bash tests/cli/test_backup.sh BUILD_DIR
#
# Servers listen on free loopback ports and are stopped by their own PIDs only.
set -euo pipefail

BUILD=$(cd "${1:?usage: test_backup.sh BUILD_DIR}" && pwd)
EVS="$BUILD/evstore"
EVSD="$BUILD/evstored"
for bin in "$EVS" "$EVSD"; do
    if [[ ! -x $bin ]]; then
        echo "test_backup: $bin is not built" >&2
        exit 1
    fi
done
BASE=${EVS_TEST_TMP:-/tmp}
mkdir -p "$BASE"
T=$(mktemp -d "$BASE/evs-backup.XXXXXX")
SERVER_PIDS=()
BG_PIDS=()
cleanup() {
    local p
    touch "$T/stop" 2>/dev/null || true
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    for p in "${SERVER_PIDS[@]}"; do
        if kill "$p" 2>/dev/null; then wait "$p" 2>/dev/null || true; fi
    done
    rm -rf "$T"
}
trap cleanup EXIT
while read -r v; do unset "$v"; done < <(compgen -e | grep '^EVSTORE_' || true)

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() {
    failed=$((failed + 1))
    echo "FAIL: $1" >&2
    shift
    local line
    for line in "$@"; do echo "      $line" >&2; done
}
expect_eq() {
    if [[ $2 == "$3" ]]; then pass; else fail "$1" "expected: $2" "actual:   $3"; fi
}
expect_has() {
    if [[ $2 == *"$3"* ]]; then pass; else fail "$1" "missing:  $3" "in:       $2"; fi
}
expect_true() {
    if eval "$2"; then pass; else fail "$1" "not true: $2"; fi
}
run() {
    RC=0
    "$@" >"$T/out" 2>"$T/err" || RC=$?
    OUT=$(cat "$T/out")
    ERR=$(cat "$T/err")
}
# The number after "key": in a JSON line.
field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<<"$2"; }
# The server's committed position (GET /stats through the CLI).
position() { field position "$("$EVS" --url "$1" stats 2>/dev/null | tr -d ' \n')"; }

# ---- servers (as in test_cli_url.sh) ------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
http_status() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
        read -r -t 2 _ code _ <&3 || exit 1
        echo "$code"
    ) 2>/dev/null || true
}
NSERVERS=0
# start_server DATA_DIR [EVSTORED OPTIONS...]: sets SPID and URL.
start_server() {
    local data=$1
    shift
    local first=$((20000 + ($$ * 41 + NSERVERS * 991) % 40000)) i p log
    for ((i = 0; i < 40; i++)); do
        p=$((first + i * 17))
        ((p > 65000)) && p=$((p - 45000))
        port_busy "$p" && continue
        NSERVERS=$((NSERVERS + 1))
        log="$T/server$NSERVERS.log"
        "$EVSD" --data "$data" --listen "127.0.0.1:$p" --log-level warn "$@" >"$log" 2>&1 &
        SPID=$!
        SERVER_PIDS+=("$SPID")
        local j up=0
        for ((j = 0; j < 200; j++)); do
            kill -0 "$SPID" 2>/dev/null || break
            [[ $(http_status "$p" /health) == 200 ]] && { up=1; break; }
            sleep 0.05
        done
        if ((up)); then
            URL="http://127.0.0.1:$p"
            return 0
        fi
        kill "$SPID" 2>/dev/null || true
        wait "$SPID" 2>/dev/null || true
    done
    echo "test_backup: cannot start evstored (last log: $(cat "$log" 2>/dev/null))" >&2
    exit 1
}
stop_server() {
    local rc=0
    kill "$1"
    wait "$1" || rc=$?
    expect_eq "evstored (pid $1) stops cleanly on SIGTERM" 0 "$rc"
}
# Append N events (JSON Lines) to STREAM through URL.
append_n() {
    local url=$1 stream=$2 n=$3 i
    for ((i = 1; i <= n; i++)); do
        printf '{"type":"Seeded","data":{"i":%d,"s":"snow \\u2603 and party 🎉","n":1.50e+3}%s}\n' "$i" \
            "$( ((i % 4 == 0)) && printf ',"metadata":{"who":"ana"}')"
    done | "$EVS" --url "$url" append "$stream" >/dev/null
}

# ==== 1. a live server, backups while appending ====================================
D1="$T/d1"
start_server "$D1" --segment-size 64K
S1=$SPID
U1=$URL
append_n "$U1" "orders/1" 300
append_n "$U1" "orders/2" 300
append_n "$U1" "payments/é" 200

# keep appending, one event per request, until told to stop
appender() {
    local i=0
    while [[ ! -e $T/stop ]]; do
        i=$((i + 1))
        printf '{"type":"Tick","data":{"i":%d}}\n' "$i" | "$EVS" --url "$U1" append "live/$((i % 3))" >/dev/null 2>&1 || true
    done
}
appender &
APID=$!
BG_PIDS+=("$APID")
wait_position() {   # URL N: until the server's position is >= N (about 30 s at most)
    local i pos
    for ((i = 0; i < 600; i++)); do
        pos=$(position "$1")
        [[ -n $pos && $pos -ge $2 ]] && return 0
        sleep 0.05
    done
    return 1
}
expect_true "the appender runs" "wait_position '$U1' 820"

run "$EVS" --url "$U1" backup -o "$T/full.tar.zst"
expect_eq "backup --url while appending exits 0" 0 "$RC"
expect_eq "backup --url: nothing on stderr" "" "$ERR"
N1=$(field last_position "$OUT")
expect_true "the backup covers what was acknowledged before it (>= 820, got $N1)" "[[ ${N1:-0} -ge 820 ]]"
expect_has "backup prints the file" "$OUT" "\"file\":\"$T/full.tar.zst\""
expect_has "backup prints since 0" "$OUT" '"since":0'
expect_true "no .part file is left" "[[ ! -e $T/full.tar.zst.part ]]"
expect_true "the archive is a zstd file tar reads" "zstd -dc '$T/full.tar.zst' | tar -xO MANIFEST.json | grep -q '\"format\":\"evstore-backup\"'"

run "$EVS" --data "$D1" backup -o "$T/local.tar.zst"
expect_eq "backup --data beside the running server exits 0" 0 "$RC"
NL=$(field last_position "$OUT")
expect_true "the --data backup sees the server's writes ($NL >= $N1)" "[[ ${NL:-0} -ge $N1 ]]"

expect_true "more events arrive" "wait_position '$U1' $((N1 + 30))"
run "$EVS" --url "$U1" backup --since "$N1" -o "$T/inc1.tar.zst"
expect_eq "incremental backup --url exits 0" 0 "$RC"
N2=$(field last_position "$OUT")
expect_has "the increment says its since" "$OUT" "\"since\":$N1"
expect_true "the increment ends later ($N2 > $N1)" "[[ ${N2:-0} -gt $N1 ]]"

touch "$T/stop"
wait "$APID" || true
append_n "$U1" "orders/3" 50
run "$EVS" --url "$U1" backup --since "$N2" -o "$T/inc2.tar.zst"
expect_eq "a second increment exits 0" 0 "$RC"
N3=$(field last_position "$OUT")
POS=$(position "$U1")
expect_eq "with appends stopped, the last increment ends at the server's position" "$POS" "$N3"

# ==== 2. restore and serve ===========================================================
run "$EVS" restore "$T/full.tar.zst" --data "$T/r0"
expect_eq "restore of the full backup exits 0" 0 "$RC"
expect_has "restore prints the last position" "$OUT" "\"last_position\":$N1"
run "$EVS" verify --data "$T/r0"
expect_eq "verify of the restored store exits 0" 0 "$RC"
start_server "$T/r0"
S2=$SPID
U2=$URL
"$EVS" --url "$U1" export --to "$N1" >"$T/export1"
"$EVS" --url "$U2" export >"$T/export2"
expect_eq "the restored server has $N1 events" "$N1" "$(wc -l <"$T/export2" | tr -d ' ')"
expect_true "export of both servers is identical for the first $N1 events" "cmp -s '$T/export1' '$T/export2'"
# the restored store is a working store: it continues at the next position
run "$EVS" --url "$U2" append after/restore <<<'{"type":"T"}'
expect_has "an append to the restored server gets the next position" "$OUT" "\"first_position\":$((N1 + 1))"
stop_server "$S2"

run "$EVS" restore "$T/full.tar.zst" "$T/inc1.tar.zst" "$T/inc2.tar.zst" --data "$T/r2"
expect_eq "restore of full + two increments exits 0" 0 "$RC"
expect_has "restore names the archives" "$OUT" '"archives":3'
expect_has "restore reaches the last increment" "$OUT" "\"last_position\":$N3"
run "$EVS" verify --data "$T/r2" --json
expect_eq "verify --json of the chain's store exits 0" 0 "$RC"
expect_has "verify --json says ok" "$OUT" '"ok":true'
"$EVS" --url "$U1" export >"$T/export-live"
"$EVS" --data "$T/r2" export >"$T/export-r2"
expect_true "the chain restores exactly the live store's events" "cmp -s '$T/export-live' '$T/export-r2'"
for f in "$T"/r2/*.seg; do
    expect_true "$(basename "$f") is a byte prefix of the live segment" \
        "cmp -s -n \$(stat -c %s '$f') '$f' '$D1/$(basename "$f")'"
done

run "$EVS" restore "$T/local.tar.zst" --data "$T/rl"
expect_eq "restore of the --data backup exits 0" 0 "$RC"
"$EVS" --data "$T/rl" export >"$T/export-rl"
expect_true "the --data backup restores a prefix of the live log" \
    "cmp -s '$T/export-rl' <(head -n $NL '$T/export-live')"

# ==== 3. refusals =====================================================================
run "$EVS" restore "$T/full.tar.zst" --data "$T/r2"
expect_eq "restore into a non-empty directory exits 1" 1 "$RC"
expect_has "... and says so" "$ERR" "is not empty"

run "$EVS" restore "$T/full.tar.zst" "$T/inc2.tar.zst" --data "$T/gap"
expect_eq "a missing increment exits 1" 1 "$RC"
expect_has "... naming the missing positions" "$ERR" "are missing"
expect_true "... and leaves no directory" "[[ ! -e $T/gap && ! -e $T/gap.restoring ]]"

run "$EVS" restore "$T/inc1.tar.zst" --data "$T/incfirst"
expect_eq "an increment alone exits 1" 1 "$RC"
expect_has "... and asks for a full backup first" "$ERR" "full backup"

SIZE=$(stat -c %s "$T/full.tar.zst")
cp "$T/full.tar.zst" "$T/flip.tar.zst"
OFF=$((SIZE / 2))
BYTE=$(od -An -tu1 -j "$OFF" -N1 "$T/flip.tar.zst" | tr -d ' ')
printf "$(printf '\\%03o' $((BYTE ^ 1)))" | dd of="$T/flip.tar.zst" bs=1 seek="$OFF" conv=notrunc status=none
expect_true "the copy differs in one byte" "! cmp -s '$T/full.tar.zst' '$T/flip.tar.zst'"
run "$EVS" restore "$T/flip.tar.zst" --data "$T/flip"
expect_eq "a flipped byte exits 1" 1 "$RC"
expect_has "... calling it damaged" "$ERR" "damaged"
expect_true "... and leaves no directory" "[[ ! -e $T/flip && ! -e $T/flip.restoring ]]"

head -c $((SIZE - 100)) "$T/full.tar.zst" >"$T/cut.tar.zst"
run "$EVS" restore "$T/cut.tar.zst" --data "$T/cut"
expect_eq "a truncated archive exits 1" 1 "$RC"
expect_has "... calling it truncated" "$ERR" "truncated"
expect_true "... and leaves no directory" "[[ ! -e $T/cut && ! -e $T/cut.restoring ]]"

run "$EVS" --url "$U1" backup --since $((N3 + 1000)) -o "$T/past.tar.zst"
expect_eq "since past the end exits 1" 1 "$RC"
expect_has "... with the server's reason" "$ERR" "after the store's last position"
expect_true "... and writes no file" "[[ ! -e $T/past.tar.zst && ! -e $T/past.tar.zst.part ]]"

run "$EVS" --url "$U1" backup
expect_eq "backup without -o is a usage error" 2 "$RC"
run "$EVS" restore "$T/full.tar.zst"
expect_eq "restore without --data is a usage error" 2 "$RC"
run "$EVS" --url "$U1" restore "$T/full.tar.zst" --data "$T/x"
expect_eq "restore through --url is a usage error" 2 "$RC"
run "$EVS" --url "http://127.0.0.1:1" backup -o "$T/none.tar.zst"
expect_eq "an unreachable server exits 1" 1 "$RC"
expect_true "... and writes no file" "[[ ! -e $T/none.tar.zst && ! -e $T/none.tar.zst.part ]]"
stop_server "$S1"

# ==== 4. tokens: a backup needs a token that reads every stream ======================
if command -v sha256sum >/dev/null; then
    h() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
    printf '%s read\n%s read orders/\n%s write\n' "$(h reader)" "$(h scoped)" "$(h writer)" >"$T/tokens"
    start_server "$D1" --auth-tokens "$T/tokens"
    S3=$SPID
    run "$EVS" --url "$URL" backup -o "$T/auth.tar.zst"
    expect_eq "no token: exit 1" 1 "$RC"
    expect_has "... unauthorized" "$ERR" "unauthorized"
    run "$EVS" --url "$URL" --token scoped backup -o "$T/auth.tar.zst"
    expect_eq "a prefix-scoped token: exit 1" 1 "$RC"
    expect_has "... forbidden, saying why" "$ERR" "holds every stream"
    run "$EVS" --url "$URL" --token reader backup -o "$T/auth.tar.zst"
    expect_eq "a read token for every stream may back up" 0 "$RC"
    stop_server "$S3"
fi

# ==== 5. the README walkthrough: snapshot here, restore there ==========================
# (the commands of README.md "Backup and restore", with this test's paths and ports)
mkdir -p "$T/readme" && cd "$T/readme"
start_server ./data
S4=$SPID
SRC=$URL
echo '{"type":"OrderPlaced","data":{"total":129.95}}' | "$EVS" --url "$SRC" append orders/17 >/dev/null
"$EVS" --url "$SRC" backup -o full.tar.zst >/dev/null
echo '{"type":"OrderPaid","data":{"amount":129.95}}' | "$EVS" --url "$SRC" append orders/17 >/dev/null
LAST=$(zstd -dc full.tar.zst | tar -xO MANIFEST.json | sed 's/.*"last_position":\([0-9]*\).*/\1/')
expect_eq "the manifest can be read with zstd and tar" 1 "$LAST"
"$EVS" --url "$SRC" backup --since "$LAST" -o inc-1.tar.zst >/dev/null
run "$EVS" restore full.tar.zst inc-1.tar.zst --data ./restored
expect_eq "README: restore exits 0" 0 "$RC"
run "$EVS" verify --data ./restored
expect_eq "README: verify exits 0" 0 "$RC"
start_server ./restored
S5=$SPID
DST=$URL
run diff <("$EVS" --url "$SRC" export) <("$EVS" --url "$DST" export)
expect_eq "README: the exports are identical" 0 "$RC"
stop_server "$S4"
stop_server "$S5"
cd "$T"

echo "test_backup: $passed passed, $failed failed"
((failed == 0))
