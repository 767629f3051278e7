#!/usr/bin/env bash
# test_cli.sh — end-to-end tests of the evstore CLI in embedded mode (--data).
#
#   bash tests/cli/test_cli.sh BUILD_DIR
#
# Runs BUILD_DIR/evstore against scratch directories under ${EVS_TEST_TMP:-/tmp}
# and compares real outputs exactly. Each check counts as passed or failed;
# the script keeps going after a failure so one run shows everything that is
# wrong, and exits non-zero if anything failed.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init cli "${1:-}" evstore
# field NAME JSON: the raw value of "NAME":"value" (strings only).
field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" <<<"$2"; }

D="$T/d1"
ID1=0190a5c8-0000-7000-8000-000000000001
ID2=0190a5c8-0000-7000-8000-000000000002
ID3=0190a5c8-0000-7000-8000-000000000003
DATA1='{"total":129.95,"note":"snow ☃ and party 🎉","big":123456789012345678901234567890,"e":1.0e+2,"esc":"a\"b\\c\u00e9"}'
DATA2='{"items":[1,2,{"k":null}],"empty":{},"list":[]}'
META2='{"user":"ana","trace":"t-1"}'

# ---- append ---------------------------------------------------------------
run "$EVS" --data "$D" append orders/1 <<EOF
{"id":"$ID1","type":"OrderPlaced","data":$DATA1}

{"id":"$ID2","type":"OrderPaid","data":$DATA2,"metadata":$META2}
{"id":"$ID3","type":"OrderShipped"}
EOF
expect_eq "append exits 0" 0 "$RC"
T1=$(sed -n 's/.*"id":"'$ID1'"[^}]*"time":"\([^"]*\)".*/\1/p' <<<"$OUT")
T2=$(sed -n 's/.*"id":"'$ID2'"[^}]*"time":"\([^"]*\)".*/\1/p' <<<"$OUT")
T3=$(sed -n 's/.*"id":"'$ID3'"[^}]*"time":"\([^"]*\)".*/\1/p' <<<"$OUT")
if [[ $T1 =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$ ]]; then pass; else
    fail "append result carries RFC 3339 times" "$OUT"; fi
expect_eq "append result" \
    "{\"first_position\":1,\"last_position\":3,\"events\":[{\"id\":\"$ID1\",\"stream\":\"orders/1\",\"version\":1,\"position\":1,\"time\":\"$T1\"},{\"id\":\"$ID2\",\"stream\":\"orders/1\",\"version\":2,\"position\":2,\"time\":\"$T2\"},{\"id\":\"$ID3\",\"stream\":\"orders/1\",\"version\":3,\"position\":3,\"time\":\"$T3\"}]}" \
    "$OUT"

E1="{\"position\":1,\"stream\":\"orders/1\",\"version\":1,\"id\":\"$ID1\",\"type\":\"OrderPlaced\",\"time\":\"$T1\",\"data\":$DATA1}"
E2="{\"position\":2,\"stream\":\"orders/1\",\"version\":2,\"id\":\"$ID2\",\"type\":\"OrderPaid\",\"time\":\"$T2\",\"data\":$DATA2,\"metadata\":$META2}"
E3="{\"position\":3,\"stream\":\"orders/1\",\"version\":3,\"id\":\"$ID3\",\"type\":\"OrderShipped\",\"time\":\"$T3\",\"data\":null}"

# ---- read -------------------------------------------------------------------
run "$EVS" --data "$D" read
expect_eq "read: exit 0" 0 "$RC"
expect_eq "read global log: data bytes intact (129.95, emoji, big number, escapes)" \
    "$E1"$'\n'"$E2"$'\n'"$E3" "$OUT"
run "$EVS" read orders/1 --data "$D"
expect_eq "read stream (options after the command)" "$E1"$'\n'"$E2"$'\n'"$E3" "$OUT"
run "$EVS" --data "$D" read orders/1 --backward --limit 2
expect_eq "read --backward --limit 2" "$E3"$'\n'"$E2" "$OUT"
run "$EVS" --data "$D" read orders/1 --from 2
expect_eq "read stream --from 2 (a version)" "$E2"$'\n'"$E3" "$OUT"
run "$EVS" --data "$D" read --from 3
expect_eq "read global --from 3 (a position)" "$E3" "$OUT"
run "$EVS" --data "$D" read --from 99
expect_eq "read --from past the end: nothing, exit 0" "0:" "$RC:$OUT"
run "$EVS" --data "$D" read -b -n 1
expect_eq "read -b -n 1 (short options)" "$E3" "$OUT"
run "$EVS" --data "$D" read --pretty orders/1 --limit 1
expect_has "read --pretty keeps number bytes" "$OUT" '"total": 129.95,'
expect_has "read --pretty indents" "$OUT" $'{\n  "position": 1,\n  "stream": "orders/1",'
expect_has "read --pretty keeps empty containers" "$(
    "$EVS" --data "$D" read --pretty --from 2 --limit 1)" '"empty": {},'

# ---- expected version ----------------------------------------------------
run "$EVS" --data "$D" append orders/1 --expected-version 1 <<<'{"type":"Late"}'
expect_eq "append conflict exits 1" 1 "$RC"
expect_has "conflict names stream, expected and actual" "$ERR" \
    "wrong expected version for stream 'orders/1': expected 1, actual 3"
run "$EVS" --data "$D" append orders/1 --expected-version no_stream <<<'{"type":"Late"}'
expect_has "conflict with no_stream" "$RC:$ERR" "1:"
expect_has "conflict with no_stream names it" "$ERR" "expected no_stream, actual 3"
run "$EVS" --data "$D" read orders/1
expect_eq "a failed append wrote nothing" 3 "$(grep -c . <<<"$OUT")"
run "$EVS" --data "$D" append orders/1 -e 3 <<<'{"type":"OrderClosed","data":[1,"two",3.0]}'
expect_eq "append with the right expected version" 0 "$RC"
expect_has "it got version 4, position 4" "$OUT" '"stream":"orders/1","version":4,"position":4,'
run "$EVS" --data "$D" append customers/7 --expected-version no_stream <<'EOF'
{"type":"CustomerAdded","data":{"name":"Zoë"}}
{"type":"CustomerRenamed","data":{"name":"Zoe"}}
EOF
expect_has "append to a new stream with no_stream" "$RC:$OUT" '0:{"first_position":5,"last_position":6,'
run "$EVS" --data "$D" append orders/1 --expected-version nonsense <<<'{"type":"X"}'
expect_eq "bad --expected-version is a usage error" 2 "$RC"
run "$EVS" --data "$D" append orders/1 <<<'{"type":"X","bogus":1}'
expect_eq "append of an invalid event exits 1" 1 "$RC"
expect_has "and says which field" "$ERR" 'bogus'
run "$EVS" --data "$D" append orders/1 <<<'{"type":"X"} trailing'
expect_eq "append of bad JSON exits 1" 1 "$RC"
run "$EVS" --data "$D" append orders/1 </dev/null
expect_eq "append of nothing exits 1" 1 "$RC"
run "$EVS" --data "$D" stats
expect_has "failed appends changed nothing" "$OUT" '"events":6,'

# ---- filters ------------------------------------------------------------------
run "$EVS" --data "$D" read --type OrderPaid
expect_eq "read --type" "$E2" "$OUT"
run "$EVS" --data "$D" read --type OrderPaid --type CustomerRenamed
expect_eq "read --type twice: either type" "2 6" "$(sed 's/{"position":\([0-9]*\),.*/\1/' <<<"$OUT" | tr '\n' ' ' | sed 's/ $//')"
run "$EVS" --data "$D" read --prefix customers/
expect_eq "read --prefix" "5 6" "$(sed 's/{"position":\([0-9]*\),.*/\1/' <<<"$OUT" | tr '\n' ' ' | sed 's/ $//')"
run "$EVS" --data "$D" read --prefix customers/ --type CustomerAdded
expect_has "read --prefix with --type" "$OUT" '"name":"Zoë"'
run "$EVS" --data "$D" read nosuch/stream
expect_eq "read of a missing stream exits 1" 1 "$RC"
expect_has "and says so" "$ERR" "stream 'nosuch/stream' not found"

# ---- get ------------------------------------------------------------------------
run "$EVS" --data "$D" get "$ID2"
expect_eq "get by id" "0:$E2" "$RC:$OUT"
run "$EVS" --data "$D" get 0190A5C8-0000-7000-8000-000000000003
expect_eq "get by id in upper case" "$E3" "$OUT"
run "$EVS" --data "$D" get 0190a5c8-0000-7000-8000-0000000000ff
expect_eq "get of an unknown id exits 1" 1 "$RC"
expect_has "and names it" "$ERR" "event 0190a5c8-0000-7000-8000-0000000000ff not found"
run "$EVS" --data "$D" get not-a-uuid
expect_eq "get of a malformed id is a usage error" 2 "$RC"

# ---- streams and stats ----------------------------------------------------------
run "$EVS" --data "$D" streams
expect_eq "streams" $'{"stream":"customers/7","version":2}\n{"stream":"orders/1","version":4}' "$OUT"
run "$EVS" --data "$D" streams --prefix ord
expect_eq "streams --prefix" '{"stream":"orders/1","version":4}' "$OUT"
run "$EVS" --data "$D" stats
expect_eq "stats exits 0" 0 "$RC"
for f in '"events":6,' '"streams":2,' '"segments":1,' '"position":6,' '"fsync":"always"' \
    '"read_only":true' '"failed":false'; do
    expect_has "stats has $f" "$OUT" "$f"
done
bytes=$(sed -n 's/.*"bytes":\([0-9]*\).*/\1/p' <<<"$OUT")
seg_bytes=$(cat "$D"/*.seg | wc -c | tr -d ' ')
expect_eq "stats bytes are the segment files' size" "$seg_bytes" "$bytes"

# ---- environment and global options ----------------------------------------------
run env EVSTORE_DATA="$D" "$EVS" read --limit 1
expect_eq "EVSTORE_DATA selects the directory" "$E1" "$OUT"
run env EVSTORE_DATA="$T/nowhere" "$EVS" --data "$D" read --limit 1
expect_eq "--data beats EVSTORE_DATA" "$E1" "$OUT"
run "$EVS" --data "$T/nowhere" read
expect_eq "reading a missing directory exits 1" 1 "$RC"
if [[ ! -e $T/nowhere ]]; then pass; else fail "reading must not create the directory"; fi
expect_has "and says where" "$ERR" "$T/nowhere"

# ---- usage errors -------------------------------------------------------------------
run "$EVS" frobnicate
expect_eq "unknown command exits 2" 2 "$RC"
expect_eq "unknown command: one line on stderr" "evstore: unknown command 'frobnicate' (see 'evstore --help')" "$ERR"
run "$EVS" --data "$D" read --frobnicate
expect_eq "unknown option exits 2" 2 "$RC"
expect_eq "unknown option: one line naming it" "evstore: read: unknown option '--frobnicate' (see 'evstore help read')" "$ERR"
run "$EVS" --data "$D" read --limit
expect_eq "missing option value exits 2" 2 "$RC"
run "$EVS" --data "$D" read --limit -3
expect_eq "negative number exits 2" 2 "$RC"
run "$EVS" --data "$D" append
expect_eq "append without a stream exits 2" 2 "$RC"
run "$EVS" --data "$D" read --follow --backward
expect_eq "--follow with --backward exits 2" 2 "$RC"
run "$EVS"
expect_eq "no command exits 2" 2 "$RC"
run "$EVS" --url http://127.0.0.1:1 read
expect_eq "--url to a closed port: exit 1" 1 "$RC"
expect_has "--url names the URL" "$ERR" "cannot connect to http://127.0.0.1:1"
run "$EVS" --data "$D" --fsync sometimes append orders/1 <<<'{"type":"X"}'
expect_eq "bad --fsync exits 2" 2 "$RC"
run env EVSTORE_FSYNC=bogus "$EVS" --data "$D" stats
expect_eq "bad EVSTORE_FSYNC exits 2" 2 "$RC"
run "$EVS" --data "$D" import --segment-size 12Q /dev/null
expect_eq "bad --segment-size exits 2" 2 "$RC"
run "$EVS" --version
expect_has "--version" "$RC:$OUT" "0:evstore "
run "$EVS" help read
expect_has "help read" "$RC:$OUT" "0:usage: evstore read"
run "$EVS" import --help
expect_has "import --help" "$RC:$OUT" "0:usage: evstore import"
run "$EVS" help nosuch
expect_eq "help on an unknown command exits 2" 2 "$RC"

# ---- export / import round trip ----------------------------------------------------
run "$EVS" --data "$D" export
expect_eq "export exits 0" 0 "$RC"
printf '%s\n' "$OUT" >"$T/export1.jsonl"
expect_eq "export has every event" 6 "$(lines "$T/export1.jsonl")"
expect_eq "export is the served form" "$E1" "$(head -n 1 "$T/export1.jsonl")"
run "$EVS" --data "$D" export --from 2 --to 3
expect_eq "export --from 2 --to 3" "$E2"$'\n'"$E3" "$OUT"
run "$EVS" --data "$D" export -o "$T/export1b.jsonl"
if cmp -s "$T/export1.jsonl" "$T/export1b.jsonl"; then pass; else fail "export -o writes the same bytes"; fi

D2="$T/d2"
run "$EVS" --data "$D2" import "$T/export1.jsonl"
expect_eq "import exits 0" 0 "$RC"
expect_eq "import summary" '{"events":6,"first_position":1,"last_position":6}' "$OUT"
run "$EVS" --data "$D2" export
printf '%s\n' "$OUT" >"$T/export2.jsonl"
# Commit times are assigned again by the importing store; everything else
# (positions, versions, ids, types, data and metadata bytes) must be identical.
strip_time() { sed 's/"time":"[^"]*",//' "$1"; }
if diff <(strip_time "$T/export1.jsonl") <(strip_time "$T/export2.jsonl") >"$T/diff"; then pass; else
    fail "export -> import -> export is identical apart from times" "$(head -n 5 "$T/diff")"; fi
run "$EVS" --data "$D2" get "$ID1"
expect_has "import keeps ids" "$OUT" "\"position\":1,\"stream\":\"orders/1\",\"version\":1,\"id\":\"$ID1\""

D4="$T/d4"
run "$EVS" --data "$D4" import - <"$T/export1.jsonl"
expect_eq "import from stdin" '{"events":6,"first_position":1,"last_position":6}' "$OUT"
run "$EVS" --data "$D4" import --batch 2 <"$T/export1.jsonl"
expect_eq "re-import of ids already stored exits 1" 1 "$RC"
expect_has "and names the line" "$ERR" "line 1: event id $ID1 is already in the store"
expect_has "and says nothing was imported" "$ERR" "6 bad lines; nothing was imported"
run "$EVS" --data "$D4" stats
expect_has "re-import wrote nothing" "$OUT" '"events":6,'

# Many events, small batches, small segments: several appends and segments.
D5="$T/d5"
for ((i = 1; i <= 2500; i++)); do
    printf '{"stream":"bulk/%d","type":"Tick","data":{"i":%d,"pad":"%0100d"}}\n' $((i % 7)) "$i" 0
done >"$T/bulk.jsonl"
run "$EVS" --data "$D5" --segment-size 64K import --batch 300 "$T/bulk.jsonl"
expect_eq "bulk import" '{"events":2500,"first_position":1,"last_position":2500}' "$OUT"
run "$EVS" --data "$D5" stats
segs=$(sed -n 's/.*"segments":\([0-9]*\).*/\1/p' <<<"$OUT")
if [[ $segs -gt 1 ]]; then pass; else fail "--segment-size 64K gives several segments" "$OUT"; fi
run "$EVS" --data "$D5" read bulk/3 --backward --limit 1
expect_has "bulk: last event of bulk/3" "$OUT" '{"position":2495,"stream":"bulk/3","version":357,'
run "$EVS" --data "$D5" verify
expect_eq "verify of a multi-segment store" 0 "$RC"

# ---- import validation: nothing written, every bad line named ------------------------
cat >"$T/bad.jsonl" <<EOF
{"stream":"a","type":"One","data":1}
{"stream":"a","type":"Two","data":
{"stream":"a","type":"Three"}
{"stream":"a","data":4}

{"stream":"a","type":"Five","id":"$ID1"}
{"stream":"b","type":"Six","id":"$ID1"}
EOF
D3="$T/d3"
run "$EVS" --data "$D3" import "$T/bad.jsonl"
expect_eq "import of a bad file exits 1" 1 "$RC"
expect_has "bad JSON line named" "$ERR" "bad.jsonl: line 2: "
expect_has "missing type line named" "$ERR" "bad.jsonl: line 4: "
expect_has "repeated id line named" "$ERR" "line 7: event id $ID1 was already used on line 6"
expect_has "summary of bad lines" "$ERR" "3 bad lines; nothing was imported"
if grep -q 'line 1:\|line 3:\|line 6:' <<<"$ERR"; then fail "good lines are not reported" "$ERR"; else pass; fi
if [[ ! -e $D3 ]]; then pass; else fail "a rejected import creates no store"; fi
head -n 4 "$T/bad.jsonl" | sed -n '2p;4p' >"$T/bad2.jsonl"
run "$EVS" --data "$D" import "$T/bad2.jsonl"
expect_has "two bad lines: both reported" "$RC:$ERR" "1:evstore: import: $T/bad2.jsonl: line 1:"
expect_has "two bad lines: the second too" "$ERR" "bad2.jsonl: line 2:"
run "$EVS" --data "$D" stats
expect_has "the existing store is unchanged" "$OUT" '"events":6,'

# ---- verify ----------------------------------------------------------------------------
run "$EVS" --data "$D" verify
expect_eq "verify clean store exits 0" 0 "$RC"
expect_has "verify says ok" "$OUT" "ok"
run "$EVS" --data "$D" verify --json
expect_has "verify --json summary" "$OUT" '"ok":true,"problems":0}'
run "$EVS" --data "$T/nowhere" verify
expect_eq "verify of a missing directory exits 2" 2 "$RC"

cp -r "$D" "$T/damaged"
seg=$(ls "$T/damaged"/*.seg | head -n 1)
off=100   # inside the first record, past the 64-byte segment header
orig=$(od -An -tu1 -j $off -N 1 "$seg" | tr -d ' ')
printf "$(printf '\\%03o' $(((orig ^ 0xff) & 0xff)))" |
    dd of="$seg" bs=1 seek=$off count=1 conv=notrunc 2>/dev/null
run "$EVS" --data "$T/damaged" verify
expect_eq "verify of a flipped byte exits 1" 1 "$RC"
expect_has "verify names the segment file" "$OUT" "$(basename "$seg"):"
expect_has "verify summary counts problems" "$OUT" "problem"
run "$EVS" --data "$T/damaged" verify --json
expect_has "verify --json names the file" "$RC:$OUT" "1:{\"file\":\"$(basename "$seg")\",\"offset\":"

# ---- follow -------------------------------------------------------------------------------
FOUT="$T/follow.out"
timeout 30 "$EVS" --data "$D" read --follow >"$FOUT" 2>"$T/follow.err" &
FPID=$!
BG_PIDS+=("$FPID")
if wait_lines "$FOUT" 6; then pass; else fail "--follow prints the existing events first"; fi
run "$EVS" --data "$D" append live/1 <<<'{"type":"Live","data":{"n":1}}'
if wait_lines "$FOUT" 7; then pass; else fail "--follow prints an event appended later" "$(cat "$FOUT")"; fi
expect_has "the followed event" "$(tail -n 1 "$FOUT")" '"position":7,"stream":"live/1","version":1,'
kill -TERM "$FPID"
frc=0
wait "$FPID" || frc=$?
expect_eq "--follow ends with exit 0 on SIGTERM" 0 "$frc"

# Following a stream that does not exist yet, with a limit that ends it.
FOUT2="$T/follow2.out"
timeout 30 "$EVS" --data "$D" read later/1 --follow --limit 2 >"$FOUT2" 2>"$T/follow2.err" &
FPID2=$!
BG_PIDS+=("$FPID2")
sleep 0.3   # let it open; the check below does not depend on this
run "$EVS" --data "$D" append later/1 <<<'{"type":"A"}'
run "$EVS" --data "$D" append other/1 <<<'{"type":"Noise"}'
run "$EVS" --data "$D" append later/1 <<<'{"type":"B"}'
frc=0
wait "$FPID2" || frc=$?
expect_eq "--follow --limit 2 on a new stream ends by itself" 0 "$frc"
expect_eq "it saw both events of that stream only" "A B" \
    "$(sed 's/.*"type":"\([^"]*\)".*/\1/' "$FOUT2" | tr '\n' ' ' | sed 's/ $//')"

lib_finish
