#!/usr/bin/env bash
# test_backup.sh — backup and restore end to end, through evstored and the CLI:
#   - `evstore backup --url` while 8 clients keep appending; restore; a second
#     evstored on the restored directory serves exactly what the first served
#     for those positions (`evstore export`, byte for byte);
#   - increments through --url (--since), a chain restored in one go, equal to
#     the live store; `evstore verify` clean on every restored store;
#   - `evstore backup --data` beside the running server (read-only open);
#   - refusals: damaged and truncated archives, a missing increment, a
#     non-empty target, since past the end, bad usage, tokens without the
#     right scope — each with a clear message and nothing left behind;
#   - progress: nothing on stderr when it is not a terminal; on a pty
#     (script(1)) backup, restore, verify, import and export draw their lines;
#   - the README's "snapshot here, restore there" walkthrough, run as written.
#
#   bash tests/cli/test_backup.sh BUILD_DIR
#
# Servers listen on free loopback ports and are stopped by their own PIDs only.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init backup "${1:-}" evstore evstored
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SERVER_OPTS=(--log-level warn)
lib_cleanup_hook() { touch "$T/stop" 2>/dev/null || true; }   # the appender loops end at their next round

# The number after "key": in a JSON line.
field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<<"$2"; }
# The server's committed position (GET /stats through the CLI).
position() { field position "$("$EVS" --url "$1" stats 2>/dev/null | tr -d ' \n')"; }

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

# 8 clients keep appending (1 to 3 events per request) until told to stop
appender() {
    local c=$1 i=0
    while [[ ! -e $T/stop ]]; do
        i=$((i + 1))
        {
            printf '{"type":"Tick","data":{"c":%d,"i":%d}}\n' "$c" "$i"
            ((i % 2)) && printf '{"type":"Tock","data":{"c":%d,"i":%d}}\n' "$c" "$i"
            ((i % 3 == 0)) && printf '{"type":"Tuck","data":{"c":%d,"i":%d},"metadata":{"m":1}}\n' "$c" "$i"
        } | "$EVS" --url "$U1" append "live/$c/$((i % 3))" >/dev/null 2>&1 || true
    done
}
for c in 1 2 3 4 5 6 7 8; do
    appender "$c" &
    BG_PIDS+=($!)
done
wait_position() {   # URL N: until the server's position is >= N (about 30 s at most)
    local i pos
    for ((i = 0; i < 600; i++)); do
        pos=$(position "$1")
        [[ -n $pos && $pos -ge $2 ]] && return 0
        sleep 0.05
    done
    return 1
}
expect_true "the 8 appenders run" "wait_position '$U1' 900"

# the last position acknowledged before the backup began: every append the
# server has acknowledged is in its committed position, which /stats reports
ACK=$(position "$U1")
run "$EVS" --url "$U1" backup -o "$T/full.tar.zst"
expect_eq "backup --url while 8 clients append exits 0" 0 "$RC"
expect_eq "backup --url: nothing on stderr (not a terminal: no progress)" "" "$ERR"
N1=$(field last_position "$OUT")
expect_true "the backup covers what was acknowledged before it began ($N1 >= $ACK)" "[[ ${N1:-0} -ge ${ACK:-1} && $ACK -ge 900 ]]"
expect_has "backup prints the file" "$OUT" "\"file\":\"$T/full.tar.zst\""
expect_has "backup prints since 0" "$OUT" '"since":0'
expect_true "no .part file is left" "[[ ! -e $T/full.tar.zst.part ]]"
if command -v zstd >/dev/null; then
    expect_true "the archive is a zstd file tar reads" "zstd -dc '$T/full.tar.zst' | tar -xO MANIFEST.json | grep -q '\"format\":\"evstore-backup\"'"
fi

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
for p in "${BG_PIDS[@]}"; do wait "$p" || true; done
BG_PIDS=()
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

# ==== 5. progress: quiet when not a terminal, drawn on one =============================
# (stderr is a file here: nothing but errors may appear on it)
D5="$T/d5"
"$EVS" --data "$T/r2" export -o "$T/p-export.jsonl" 2>"$T/p-err1"
"$EVS" --data "$D5" import "$T/p-export.jsonl" >/dev/null 2>"$T/p-err2"
"$EVS" --data "$D5" backup -o "$T/p.tar.zst" >/dev/null 2>"$T/p-err3"
"$EVS" restore "$T/p.tar.zst" --data "$T/p-restored" >/dev/null 2>"$T/p-err4"
"$EVS" verify --data "$T/p-restored" >/dev/null 2>"$T/p-err5"
expect_eq "export, import, backup, restore, verify: no progress when stderr is not a terminal" "" \
    "$(cat "$T"/p-err[1-5])"
# on a terminal (a pty from script(1), util-linux): each draws its line and ends
# with a summary "LABEL: N events, SIZE in T s (RATE/s)"
if command -v script >/dev/null; then
    tty_run() { script -qec "$1" /dev/null 2>&1 | tr '\r' '\n'; }
    grouped() { local n=$1 out=""; while ((${#n} > 3)); do out=",${n: -3}$out"; n=${n:0:${#n}-3}; done; echo "$n$out"; }
    N5=$(grouped "$(field position "$("$EVS" --data "$D5" stats | tr -d ' \n')")")
    OUT=$(tty_run "'$EVS' --data '$T/r2' export -o '$T/tty-export.jsonl'")
    expect_has "export on a terminal: progress" "$OUT" "export: $N5 events"
    OUT=$(tty_run "'$EVS' --data '$T/tty-import' import '$T/tty-export.jsonl'")
    expect_has "import on a terminal: the check" "$OUT" "import: checking: $N5 events"
    expect_has "import on a terminal: the writes" "$OUT" "import: $N5 events"
    OUT=$(tty_run "'$EVS' --data '$T/tty-import' backup -o '$T/tty.tar.zst'")
    expect_has "backup on a terminal: the check pass" "$OUT" "backup (check): $N5 events"
    expect_has "backup on a terminal: the copy pass" "$OUT" "backup (copy): $N5 events"
    OUT=$(tty_run "'$EVS' restore '$T/tty.tar.zst' --data '$T/tty-restored'")
    expect_has "restore on a terminal: extract" "$OUT" "restore (extract): $N5 events"
    expect_has "restore on a terminal: verify" "$OUT" "restore (verify): $N5 events"
    OUT=$(tty_run "'$EVS' verify --data '$T/tty-restored'")
    expect_has "verify on a terminal: progress" "$OUT" "verify: $N5 events"
    expect_has "verify on a terminal: then the report" "$OUT" "ok, no problems found"
    start_server "$T/tty-import"
    S6=$SPID
    OUT=$(tty_run "'$EVS' --url '$URL' backup -o '$T/tty-url.tar.zst'")
    expect_has "backup --url on a terminal: the download" "$OUT" "backup (download): "
    expect_has "backup --url on a terminal: the check of the file" "$OUT" "backup (check): $N5 events"
    stop_server "$S6"
fi

# ==== 6. the README walkthrough, literally ==============================================
# The ```sh block of README.md's "Backup and restore: snapshot here, restore there",
# run as written in a fresh directory holding a build/ like the source tree's; only
# its ports (2114, 2115) become free ones. Every command must succeed.
W="$T/readme"
mkdir -p "$W/build"
# build/evstored records its PID (exec keeps it) so the cleanup can stop it if the block fails
printf '#!/bin/sh\necho $$ >>"%s"\nexec "%s" "$@"\n' "$T/readme-pids" "$EVSD" >"$W/build/evstored"
chmod +x "$W/build/evstored"
ln -s "$EVS" "$W/build/evstore"
# (they are not our children: stop them by PID, then poll until they are gone)
readme_cleanup() {
    local p i
    [[ -f $T/readme-pids ]] || return 0
    while read -r p; do
        kill "$p" 2>/dev/null || continue
        for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    done <"$T/readme-pids"
}
lib_cleanup_hook() { touch "$T/stop" 2>/dev/null || true; readme_cleanup; }
BLOCK=$(awk '/^## Backup and restore: snapshot here, restore there/ { s = 1 }
             s && /^```sh$/ { b = 1; next }
             b && /^```$/ { exit }
             b' "$ROOT/README.md")
expect_has "README: the walkthrough block is found" "$BLOCK" "evstore restore"
free_port; P1=$FREE_PORT
free_port; P2=$FREE_PORT
BLOCK=${BLOCK//2114/$P1}
BLOCK=${BLOCK//2115/$P2}
# (its own output files: the servers it starts write to their stderr until they stop)
RC=0
timeout 200 bash -c "cd '$W' && set -euo pipefail && $BLOCK" >"$T/readme.out" 2>"$T/readme.err" || RC=$?
OUT=$(cat "$T/readme.out")
expect_eq "README: the walkthrough runs without a failure" 0 "$RC"
[[ $RC == 0 ]] || { echo "README block: exit $RC (124: timed out)" >&2; tail -n 20 "$T/readme.out" "$T/readme.err" >&2; }
expect_eq "README: it ends by saying the exports are identical" "identical" "$(tail -n 1 <<<"$OUT")"
readme_cleanup
# and the proof, once more from here: the restored store verifies, and its export
# equals the original's (the servers are gone: --data on both directories)
HERE=$(sed -n 's/.*evstored --data \(\S*\) .*/\1/p' <<<"$BLOCK" | head -n 1)
THERE=$(sed -n 's/.*evstore restore .* --data \(\S*\).*/\1/p' <<<"$BLOCK" | head -n 1)
run "$EVS" verify --data "$W/$THERE"
expect_eq "README: evstore verify of the restored directory ($THERE)" "0:$W/$THERE: ok, no problems found" "$RC:$OUT"
run diff <("$EVS" --data "$W/$HERE" export) <("$EVS" --data "$W/$THERE" export)
expect_eq "README: evstore export of $HERE and $THERE are identical" "0" "$RC"
expect_eq "README: ... and hold the walkthrough's events" 2 "$("$EVS" --data "$W/$THERE" export | wc -l | tr -d ' ')"

lib_finish
