#!/usr/bin/env bash
# test_cli_url.sh — end-to-end tests of the evstore CLI against a running
# evstored (--url), compared with the same commands on the data directory
# (--data).
#
#   bash tests/cli/test_cli_url.sh BUILD_DIR
#
# Starts BUILD_DIR/evstored on free loopback ports (scratch data under
# ${EVS_TEST_TMP:-/tmp}), runs every command through --url, then stops the
# server and runs the same commands with --data on its directory: stdout,
# exit codes and error lines must be identical (export byte for byte). Then:
# conflicts, import (validation, batches, a failure mid-way), --follow (live
# events, a server restart), bearer tokens, TLS when openssl is there.
# Servers are stopped by their own PIDs only: other people run servers too.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init cli_url "${1:-}" evstore evstored
SERVER_OPTS=(--log-level warn --fsync always)

ID1=0190a5c8-0000-7000-8000-000000000001
ID2=0190a5c8-0000-7000-8000-000000000002
ID3=0190a5c8-0000-7000-8000-000000000003
DATA1='{"total":129.95,"note":"snow ☃ and party 🎉","big":123456789012345678901234567890,"e":1.0e+2,"esc":"a\"b\\c\u00e9"}'
DATA2='{"items":[1,2,{"k":null}],"empty":{},"list":[]}'
META2='{"user":"ana","trace":"t-1"}'
# Names that need percent-encoding: space, '+', '%', '?', '#', '&', '=', non-ASCII, dot steps.
WEIRD='odd name/a+b%20c?d#e&f=g/ü'
DOTS='x/../y/./z'

# ==== 1. a server: write through it, read everything back through it =====================
D="$T/d1"
start_server "$D"
S1=$SPID
U=$URL

run "$EVS" --url "$U" append orders/1 <<EOF
{"id":"$ID1","type":"OrderPlaced","data":$DATA1}

{"id":"$ID2","type":"OrderPaid","data":$DATA2,"metadata":$META2}
{"id":"$ID3","type":"OrderShipped"}
EOF
expect_eq "append via --url exits 0" 0 "$RC"
T1=$(sed -n 's/.*"id":"'$ID1'"[^}]*"time":"\([^"]*\)".*/\1/p' <<<"$OUT")
T2=$(sed -n 's/.*"id":"'$ID2'"[^}]*"time":"\([^"]*\)".*/\1/p' <<<"$OUT")
T3=$(sed -n 's/.*"id":"'$ID3'"[^}]*"time":"\([^"]*\)".*/\1/p' <<<"$OUT")
if [[ $T1 =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$ ]]; then pass; else
    fail "append result carries RFC 3339 times" "$OUT"; fi
expect_eq "append result has the local mode's shape" \
    "{\"first_position\":1,\"last_position\":3,\"events\":[{\"id\":\"$ID1\",\"stream\":\"orders/1\",\"version\":1,\"position\":1,\"time\":\"$T1\"},{\"id\":\"$ID2\",\"stream\":\"orders/1\",\"version\":2,\"position\":2,\"time\":\"$T2\"},{\"id\":\"$ID3\",\"stream\":\"orders/1\",\"version\":3,\"position\":3,\"time\":\"$T3\"}]}" \
    "$OUT"
E1="{\"position\":1,\"stream\":\"orders/1\",\"version\":1,\"id\":\"$ID1\",\"type\":\"OrderPlaced\",\"time\":\"$T1\",\"data\":$DATA1}"
E2="{\"position\":2,\"stream\":\"orders/1\",\"version\":2,\"id\":\"$ID2\",\"type\":\"OrderPaid\",\"time\":\"$T2\",\"data\":$DATA2,\"metadata\":$META2}"
E3="{\"position\":3,\"stream\":\"orders/1\",\"version\":3,\"id\":\"$ID3\",\"type\":\"OrderShipped\",\"time\":\"$T3\",\"data\":null}"
run "$EVS" --url "$U" read
expect_eq "read via --url: data bytes intact (129.95, emoji, big number, escapes)" \
    "$E1"$'\n'"$E2"$'\n'"$E3" "$OUT"

# Repeating the same append (same ids) is idempotent: 200, the original result.
run "$EVS" --url "$U" append orders/1 <<EOF
{"id":"$ID1","type":"OrderPlaced","data":$DATA1}
{"id":"$ID2","type":"OrderPaid","data":$DATA2,"metadata":$META2}
{"id":"$ID3","type":"OrderShipped"}
EOF
expect_eq "a repeated append exits 0" 0 "$RC"
expect_has "and prints the original result" "$OUT" "\"first_position\":1,\"last_position\":3,"
expect_has "with a note that nothing new was written" "$ERR" "already stored"

# ---- conflicts ---------------------------------------------------------------------
run "$EVS" --url "$U" append orders/1 --expected-version 1 <<<'{"type":"Late"}'
expect_eq "conflict via --url exits 1" 1 "$RC"
expect_eq "conflict: the server's 409 in one line" \
    "evstore: append: wrong expected version for stream 'orders/1': expected 1, actual 3" "$ERR"
run "$EVS" --url "$U" append orders/1 --expected-version no_stream <<<'{"type":"Late"}'
expect_eq "conflict with no_stream" \
    "1:evstore: append: wrong expected version for stream 'orders/1': expected no_stream, actual 3" \
    "$RC:$ERR"
run "$EVS" --url "$U" append nosuch/1 --expected-version exists <<<'{"type":"Late"}'
expect_eq "conflict with exists" \
    "1:evstore: append: wrong expected version for stream 'nosuch/1': expected exists, actual 0" \
    "$RC:$ERR"
run "$EVS" --url "$U" append orders/1 -e 3 <<<'{"type":"OrderClosed","data":[1,"two",3.0]}'
expect_has "append with the right expected version" "$RC:$OUT" \
    '0:{"first_position":4,"last_position":4,"events":[{"id":"'
run "$EVS" --url "$U" append customers/7 --expected-version no_stream <<'EOF'
{"type":"CustomerAdded","data":{"name":"Zoë"}}
{"type":"CustomerRenamed","data":{"name":"Zoe"}}
EOF
expect_has "append to a new stream with no_stream" "$RC:$OUT" '0:{"first_position":5,"last_position":6,'
run "$EVS" --url "$U" append orders/1 <<<'{"type":"X","bogus":1}'
expect_has "an invalid event is refused before it is sent" "$RC:$ERR" "1:evstore: append: stdin: "
expect_has "naming the field" "$ERR" "bogus"
run "$EVS" --url "$U" append "$WEIRD" <<<'{"type":"Weird","data":"percent-encoded"}'
expect_has "append to a name full of URL syntax" "$RC:$OUT" "0:{\"first_position\":7,"
expect_has "the name comes back intact" "$OUT" "\"stream\":\"$WEIRD\","
run "$EVS" --url "$U" append "$DOTS" <<<'{"type":"Dots"}'
expect_has "append to a name with dot steps" "$RC:$OUT" "\"stream\":\"$DOTS\",\"version\":1,\"position\":8,"
run "$EVS" --url "$U" stats
expect_has "failed appends changed nothing" "$OUT" '"events":8,'

# ---- every reading command, recorded for the comparison with --data ---------------------
# Each case: a name, then the arguments after "evstore --url|--data X".
CASES=(
    "read|read"
    "read stream|read orders/1"
    "read stream backward limit|read orders/1 --backward --limit 2"
    "read stream from|read orders/1 --from 2"
    "read global from|read --from 3"
    "read from past the end|read --from 99"
    "read -b -n 1|read -b -n 1"
    "read backward from 0|read --backward --from 0"
    "read pretty|read --pretty orders/1 --limit 1"
    "read type|read --type OrderPaid"
    "read two types|read --type OrderPaid --type CustomerRenamed"
    "read prefix|read --prefix customers/"
    "read prefix and type|read --prefix customers/ --type CustomerAdded"
    "read stream outside the prefix|read orders/1 --prefix customers/"
    "read weird name|read $WEIRD"
    "read dot name|read $DOTS"
    "read missing stream|read nosuch/stream"
    "get|get $ID2"
    "get upper case|get 0190A5C8-0000-7000-8000-000000000003"
    "get unknown|get 0190a5c8-0000-7000-8000-0000000000ff"
    "streams|streams"
    "streams prefix|streams --prefix ord"
    "streams weird prefix|streams --prefix odd name/a+"
    "streams pretty|streams --pretty"
    "export|export"
    "export from to|export --from 2 --to 3"
    "export from|export --from 7"
)
# Names with spaces cannot ride in a word-split list: these cases take them whole.
url_case() { # NAME ARGS... with the global option first
    local name=$1 mode=$2 where=$3
    shift 3
    run "$EVS" "$mode" "$where" "$@"
    printf '%s\n' "$RC" >"$T/case.$name.$mode.rc"
    cp "$T/out" "$T/case.$name.$mode.out"
    cp "$T/err" "$T/case.$name.$mode.err"
}
run_cases() { # MODE WHERE
    local c name args i=0
    for c in "${CASES[@]}"; do
        i=$((i + 1))
        name=${c%%|*}
        args=${c#*|}
        case $name in
        "read weird name") url_case "$i" "$1" "$2" read "$WEIRD" ;;
        "read dot name") url_case "$i" "$1" "$2" read "$DOTS" ;;
        "streams weird prefix") url_case "$i" "$1" "$2" streams --prefix "odd name/a+" ;;
        *) # shellcheck disable=SC2086
            url_case "$i" "$1" "$2" $args ;;
        esac
    done
    url_case export-o "$1" "$2" export -o "$T/export.$1.jsonl"
}
run_cases --url "$U"
run "$EVS" --url "$U" stats
URL_STATS=$OUT
run "$EVS" read --url "$U" --limit 1
expect_eq "--url after the command" "0:$E1" "$RC:$OUT"
run env EVSTORE_URL="$U" "$EVS" read --limit 1
expect_eq "EVSTORE_URL selects the server" "0:$E1" "$RC:$OUT"
run "$EVS" --url "$U" verify
expect_eq "verify via --url is refused: exit 2" 2 "$RC"
expect_has "saying it is offline only" "$ERR" "offline only"

# ==== 2. the same commands on the directory, with the server stopped =======================
stop_server "$S1"
run_cases --data "$D"
i=0
for c in "${CASES[@]}" "export -o|"; do
    i=$((i + 1))
    name=${c%%|*}
    k=$i
    [[ $name == "export -o" ]] && k=export-o
    ldata=$(cat "$T/case.$k.--data.rc")
    lurl=$(cat "$T/case.$k.--url.rc")
    expect_eq "$name: exit code via --url equals --data" "$ldata" "$lurl"
    if cmp -s "$T/case.$k.--data.out" "$T/case.$k.--url.out"; then pass; else
        fail "$name: output via --url equals --data byte for byte" \
            "--data: $(head -c 400 "$T/case.$k.--data.out")" \
            "--url:  $(head -c 400 "$T/case.$k.--url.out")"
    fi
    if [[ $ldata != 0 ]]; then
        expect_eq "$name: the error line via --url equals --data" \
            "$(cat "$T/case.$k.--data.err")" "$(cat "$T/case.$k.--url.err")"
    fi
done
expect_eq "the comparison covered every case" "$((${#CASES[@]} + 1))" "$i"
if cmp -s "$T/export.--url.jsonl" "$T/export.--data.jsonl" && [[ -s $T/export.--url.jsonl ]]; then
    pass; else fail "export -o via --url equals export -o via --data, byte for byte"; fi
expect_eq "export via --url has every event" 8 "$(lines "$T/export.--url.jsonl")"
expect_has "the weird name was read back by name" "$(cat "$T/case.15.--url.out")" \
    '"type":"Weird","time":'
run "$EVS" --data "$D" stats
for f in events streams segments bytes position; do
    lv=$(sed -n "s/.*\"$f\":\([0-9]*\).*/\1/p" <<<"$OUT")
    uv=$(sed -n "s/.*\"$f\":\([0-9]*\).*/\1/p" <<<"$URL_STATS")
    expect_eq "stats: $f via --url equals --data" "$lv" "$uv"
done
expect_has "stats via --url is the server's own object" "$URL_STATS" '"uptime_seconds":'
expect_has "with the server's fsync policy" "$URL_STATS" '"fsync":"always"'

# ---- connection problems and usage ---------------------------------------------------
run "$EVS" --url "$U" read
expect_eq "a stopped server: exit 1" 1 "$RC"
expect_eq "connection refused: one clear line naming the URL" \
    "evstore: cannot connect to $U: connection refused (is evstored running and listening there?)" \
    "$ERR"
run "$EVS" --url "ftp://127.0.0.1:$PORT" read
expect_has "an unsupported scheme is a usage error" "$RC:$ERR" "2:evstore: --url ftp://"
run "$EVS" --url "$U" --data "$D" read
expect_eq "--url with --data is a usage error" 2 "$RC"
run env EVSTORE_URL="$U" "$EVS" --data "$D" read --limit 1
expect_eq "--data beats EVSTORE_URL" "0:$E1" "$RC:$OUT"
run "$EVS" --url "$U" --token $'bad\ntoken' read
expect_eq "a token with a control character is a usage error" 2 "$RC"
run "$EVS" --url "$U" append orders/1 --expected-version nonsense <<<'{"type":"X"}'
expect_eq "bad --expected-version is still a usage error" 2 "$RC"

# ==== 3. import through a server ============================================================
D2="$T/d2"
start_server "$D2"
S2=$SPID
U2=$URL
run "$EVS" --url "$U2" import "$T/export.--data.jsonl"
expect_eq "import via --url" '0:{"events":8,"first_position":1,"last_position":8}' "$RC:$OUT"
run "$EVS" --url "$U2" export -o "$T/export2.jsonl"
strip_time() { sed 's/"time":"[^"]*",//' "$1"; }
if diff <(strip_time "$T/export.--data.jsonl") <(strip_time "$T/export2.jsonl") >"$T/diff"; then
    pass; else fail "export -> import via --url -> export is identical apart from times" \
    "$(head -n 5 "$T/diff")"; fi
run "$EVS" --url "$U2" import --batch 3 "$T/export.--data.jsonl"
expect_eq "re-import of ids already stored exits 1" 1 "$RC"
expect_has "and names the line" "$ERR" "line 1: event id $ID1 is already in the store"
expect_has "and says nothing was imported" "$ERR" "8 bad lines; nothing was imported"
cat >"$T/bad.jsonl" <<EOF
{"stream":"a","type":"One","data":1}
{"stream":"a","type":"Two","data":
{"stream":"a","type":"Three"}
{"stream":"a","data":4}
EOF
run "$EVS" --url "$U2" import "$T/bad.jsonl"
URL_BAD="$RC:$ERR"
run "$EVS" --data "$T/never" import "$T/bad.jsonl"
expect_eq "bad input: the same report via --url as via --data" "$RC:$ERR" "$URL_BAD"
expect_has "every bad line named" "$URL_BAD" "2 bad lines; nothing was imported"
run "$EVS" --url "$U2" stats
expect_has "rejected imports wrote nothing" "$OUT" '"events":8,'

# A failure mid-way: the third batch breaks an expectation on the server.
cat >"$T/midway.jsonl" <<'EOF'
{"stream":"mid/1","type":"A"}
{"stream":"mid/1","type":"B"}
{"stream":"mid/2","type":"C"}
{"stream":"mid/2","type":"D"}
{"stream":"mid/1","type":"E","expected_version":99}
{"stream":"mid/1","type":"F"}
EOF
run "$EVS" --url "$U2" import --batch 2 "$T/midway.jsonl"
expect_eq "a server error mid-way exits 1" 1 "$RC"
expect_eq "says which line failed, how many batches landed and why" \
    "evstore: import: $T/midway.jsonl: line 5 (after 2 batches, 4 events, were imported): wrong expected version for stream 'mid/1': expected 99, actual 2" \
    "$ERR"
run "$EVS" --url "$U2" streams --prefix mid/
expect_eq "exactly the landed batches are stored" \
    $'{"stream":"mid/1","version":2}\n{"stream":"mid/2","version":2}' "$OUT"
D3="$T/d3"
run "$EVS" --data "$D3" import --batch 2 "$T/midway.jsonl"
expect_eq "the local import reports the same failure the same way" \
    "evstore: import: $T/midway.jsonl: line 5 (after 2 batches, 4 events, were imported): wrong expected version for stream 'mid/1': expected 99, actual 2" \
    "$ERR"

# Many events in small batches, streamed export of them.
for ((i = 1; i <= 2500; i++)); do
    printf '{"stream":"bulk/%d","type":"Tick","data":{"i":%d,"pad":"%0100d"}}\n' $((i % 7)) "$i" 0
done >"$T/bulk.jsonl"
run "$EVS" --url "$U2" import --batch 300 "$T/bulk.jsonl"
expect_eq "bulk import via --url" '0:{"events":2500,"first_position":13,"last_position":2512}' "$RC:$OUT"
run "$EVS" --url "$U2" read bulk/3 --backward --limit 1
expect_has "bulk: last event of bulk/3" "$OUT" '{"position":2507,"stream":"bulk/3","version":357,'
run "$EVS" --url "$U2" export --from 13 -o "$T/bulk.url.jsonl"
expect_eq "bulk export via --url" "0:2500" "$RC:$(lines "$T/bulk.url.jsonl")"
stop_server "$S2"
run "$EVS" --data "$D2" export --from 13 -o "$T/bulk.data.jsonl"
if cmp -s "$T/bulk.url.jsonl" "$T/bulk.data.jsonl"; then pass; else
    fail "bulk export via --url equals --data byte for byte"; fi

# ==== 4. --follow =========================================================================
start_server "$D"
S1=$SPID
U=$URL
FOUT="$T/follow.out"
"$EVS" --url "$U" read --follow >"$FOUT" 2>"$T/follow.err" &
FPID=$!
BG_PIDS+=("$FPID")
if wait_lines "$FOUT" 8; then pass; else fail "--follow prints the existing events first" "$(cat "$FOUT")"; fi
run "$EVS" --url "$U" append live/1 <<<'{"type":"Live","data":{"n":1}}'
if wait_lines "$FOUT" 9; then pass; else fail "--follow prints an event appended later" "$(cat "$FOUT")"; fi
expect_has "the followed event" "$(tail -n 1 "$FOUT")" '"position":9,"stream":"live/1","version":1,'

# Across a restart of the server: it reconnects from the next position.
stop_server "$S1"
FIXED_PORT=$PORT start_server "$D"
S1=$SPID
run "$EVS" --url "$U" append live/1 <<<'{"type":"Live","data":{"n":2}}'
if wait_lines "$FOUT" 10; then pass; else
    fail "--follow reconnects after a server restart" "$(cat "$FOUT")" "$(cat "$T/follow.err")"; fi
expect_has "and goes on from the next position" "$(tail -n 1 "$FOUT")" '"position":10,"stream":"live/1","version":2,'
expect_has "saying so on stderr" "$(cat "$T/follow.err")" "reconnecting from position 10"
# Idle past a heartbeat (5 s): heartbeats are not printed.
sleep 6
run "$EVS" --url "$U" append live/1 <<<'{"type":"Live","data":{"n":3}}'
if wait_lines "$FOUT" 11; then pass; else fail "--follow still live after a heartbeat"; fi
expect_eq "no event twice, no heartbeat line" "1 2 3 4 5 6 7 8 9 10 11" \
    "$(sed 's/{"position":\([0-9]*\),.*/\1/' "$FOUT" | tr '\n' ' ' | sed 's/ $//')"
kill -TERM "$FPID"
frc=0
wait "$FPID" || frc=$?
expect_eq "--follow via --url ends with exit 0 on SIGTERM" 0 "$frc"

# Following a stream that does not exist yet, with a limit that ends it.
FOUT2="$T/follow2.out"
"$EVS" --url "$U" read "later/$WEIRD" --follow --limit 2 >"$FOUT2" 2>"$T/follow2.err" &
FPID2=$!
BG_PIDS+=("$FPID2")
sleep 0.3
run "$EVS" --url "$U" append "later/$WEIRD" <<<'{"type":"A"}'
run "$EVS" --url "$U" append other/1 <<<'{"type":"Noise"}'
run "$EVS" --url "$U" append "later/$WEIRD" <<<'{"type":"B"}'
for ((i = 0; i < 200; i++)); do kill -0 "$FPID2" 2>/dev/null || break; sleep 0.05; done
frc=0
if kill -0 "$FPID2" 2>/dev/null; then kill "$FPID2"; frc=timeout; fi
wait "$FPID2" || frc=$?
expect_eq "--follow --limit 2 on a new stream ends by itself" 0 "$frc"
expect_eq "it saw both events of that stream only" "A B" \
    "$(sed 's/.*"type":"\([^"]*\)".*/\1/' "$FOUT2" | tr '\n' ' ' | sed 's/ $//')"
run "$EVS" --url "$U" read --follow --backward
expect_eq "--follow with --backward is a usage error" 2 "$RC"
stop_server "$S1"

# ==== 5. bearer tokens ======================================================================
WTOK=write-token-$$
RTOK=read-token-$$
PTOK=orders-token-$$
hash() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
{
    echo "# test tokens"
    echo "$(hash "$WTOK") write"
    echo "$(hash "$RTOK") read"
    echo "$(hash "$PTOK") write orders/"
} >"$T/tokens"
D4="$T/d4"
start_server "$D4" --auth-tokens "$T/tokens"
S4=$SPID
U4=$URL
run "$EVS" --url "$U4" read
expect_eq "no token: exit 1" 1 "$RC"
expect_eq "no token: the server's 401 message" \
    "evstore: reading the global log: a valid token is required: send 'Authorization: Bearer <token>' (unauthorized)" \
    "$ERR"
run "$EVS" --url "$U4" --token wrong-token stats
expect_eq "a wrong token: 401" \
    "1:evstore: stats: a valid token is required: send 'Authorization: Bearer <token>' (unauthorized)" \
    "$RC:$ERR"
run "$EVS" --url "$U4" --token "$RTOK" append orders/9 <<<'{"type":"Nope"}'
expect_eq "a read token cannot append: 403" \
    "1:evstore: append: this token may only read (forbidden)" "$RC:$ERR"
run "$EVS" --url "$U4" --token "$WTOK" append orders/9 <<<'{"type":"Yes"}'
expect_has "the write token appends" "$RC:$OUT" '0:{"first_position":1,"last_position":1,'
run env EVSTORE_TOKEN="$WTOK" "$EVS" --url "$U4" append customers/9 <<<'{"type":"Yes"}'
expect_has "EVSTORE_TOKEN is used" "$RC:$OUT" '0:{"first_position":2,"last_position":2,'
run "$EVS" --url "$U4" --token "$RTOK" read
expect_eq "the read token reads" "0:2" "$RC:$(grep -c . <<<"$OUT")"
run "$EVS" --url "$U4" --token "$PTOK" append customers/9 <<<'{"type":"Nope"}'
expect_eq "a prefix token outside its prefix: 403" \
    "1:evstore: append: this token covers only streams starting with 'orders/' (forbidden)" "$RC:$ERR"
run "$EVS" --url "$U4" --token "$PTOK" import - <<<'{"stream":"customers/10","type":"Nope"}'
expect_has "import outside the prefix: 403 with how far it got" "$RC:$ERR" \
    "1:evstore: import: stdin: line 1 (after 0 batches, 0 events, were imported): this token covers only streams starting with 'orders/' (forbidden)"
run "$EVS" --url "$U4" --token "$PTOK" streams
expect_eq "a prefix token lists its own streams" '0:{"stream":"orders/9","version":1}' "$RC:$OUT"
run "$EVS" --url "$U4" --token "$WTOK" stats
expect_has "stats with a token" "$RC:$OUT" '0:{"events":2,'
stop_server "$S4"

# ==== 6. TLS with a self-signed certificate (when openssl is there) =========================
if command -v openssl >/dev/null 2>&1 &&
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
        -addext "subjectAltName=IP:127.0.0.1" -keyout "$T/key.pem" -out "$T/cert.pem" \
        >/dev/null 2>&1; then
    start_server "$T/d5" --tls-cert "$T/cert.pem" --tls-key "$T/key.pem"
    S5=$SPID
    U5=$URL
    run "$EVS" --url "$U5" --cacert "$T/cert.pem" append tls/1 <<<'{"type":"Secure"}'
    expect_has "https with --cacert" "$RC:$OUT" '0:{"first_position":1,'
    run env EVSTORE_CACERT="$T/cert.pem" "$EVS" --url "$U5" read tls/1
    expect_has "EVSTORE_CACERT" "$RC:$OUT" '0:{"position":1,"stream":"tls/1",'
    run "$EVS" --url "$U5" read
    expect_eq "an unknown certificate is refused: exit 1" 1 "$RC"
    expect_has "with a hint at --cacert" "$ERR" "--cacert FILE"
    run "$EVS" --url "$U5" --insecure read
    expect_has "--insecure works" "$RC:$OUT" '0:{"position":1,'
    expect_has "but warns" "$ERR" "evstore: warning: --insecure"
    stop_server "$S5"
else
    echo "test_cli_url: openssl cannot make a certificate here; TLS checks skipped" >&2
fi

lib_finish
