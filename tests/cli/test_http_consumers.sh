#!/usr/bin/env bash
# test_http_consumers.sh — black-box tests of /projections/{name} and
# /consumers/{name} in evstored, with curl: every route and error code,
# reads forward/backward/from/limit, watches (plain and SSE with
# Last-Event-ID), the rules for reserved "$" streams, state bytes kept
# exactly, and projections and consumers surviving a restart, the deletion
# of every *.idx file, and a read-only follower.
#
#   bash tests/cli/test_http_consumers.sh BUILD_DIR
#
# Starts BUILD_DIR/evstored on a free loopback port with a scratch --data
# directory under ${EVS_TEST_TMP:-/tmp}, polls /health, and stops it with
# SIGTERM (exit status 0 required). Keeps going after a failure so one run
# shows everything that is wrong; exits non-zero if anything failed.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lib_init http_consumers "${1:-}" evstored
command -v curl >/dev/null || { echo "test_http_consumers: curl is required" >&2; exit 1; }
SERVER_OPTS=(--log-level info --heartbeat 1)

# req METHOD PATH [BODY] [curl options...]: sets CODE and BODY (the response).
req() {
    local m=$1 p=$2
    shift 2
    local data=()
    if (($# > 0)); then data=(--data-binary "$1"); shift; fi
    CODE=$(curl -s -o "$T/resp" -w '%{http_code}' -X "$m" "${data[@]}" "$@" "$URL$p" || true)
    BODY=$(cat "$T/resp" 2>/dev/null || true)
}
# check NAME METHOD PATH BODY STATUS [NEEDLE]: one request, its status, a piece of its answer.
check() {
    local name=$1 m=$2 p=$3 b=$4 st=$5 needle=${6:-}
    if [[ -n $b ]]; then req "$m" "$p" "$b"; else req "$m" "$p"; fi
    expect_eq "$name: status" "$st" "$CODE"
    [[ -n $needle ]] && expect_has "$name: answer" "$BODY" "$needle"
    return 0
}
# positions: the "position" fields of JSON Lines in BODY, space-separated.
positions() { grep -o '^{"position":[0-9]*' <<<"$BODY" | cut -d: -f2 | tr '\n' ' ' | sed 's/ $//'; }
# wait_events FILE N: until FILE holds at least N event lines (heartbeats are blank lines); about 15 s at most.
wait_events() {
    local i
    for ((i = 0; i < 300; i++)); do
        [[ -f $1 && $(grep -c '"position":' "$1") -ge $2 ]] && return 0
        sleep 0.05
    done
    return 1
}

D="$T/data"
start_server "$D"
W=$SPID

# ---- a log to project ----------------------------------------------------------------
check "append orders/1" POST /streams/orders/1 '[{"type":"OrderPlaced","data":{"n":1}},{"type":"Other"}]' 201  # 1,2
check "append users/1" POST /streams/users/1 '{"type":"OrderPlaced","data":{"n":2}}' 201                        # 3
check "append orders/2" POST /streams/orders/2 '{"type":"OrderShipped","data":{"n":3}}' 201                     # 4

# ---- reserved "$" streams --------------------------------------------------------------
check "user append to a \$ stream" POST '/streams/$projections/x' '{"type":"X"}' 400 'stream names starting with $ are reserved'
check "multi-stream append naming a \$ stream" POST /events '[{"stream":"$consumers/y","type":"X"}]' 400 'reserved'

# ---- projections: PUT -----------------------------------------------------------------
check "define projection" PUT /projections/orders '{"stream_prefix":"orders/","types":["OrderShipped","OrderPlaced"]}' 201 \
    '{"name":"orders","types":["OrderPlaced","OrderShipped"],"stream_prefix":"orders/","defined_at":5'            # 5
check "define again, same filter (types as a set)" PUT /projections/orders '{"types":["OrderPlaced","OrderShipped","OrderPlaced"],"stream_prefix":"orders/"}' 200 '"name":"orders"'
check "define again, another filter" PUT /projections/orders '{"types":["OrderPlaced"]}' 409 '"error":"already_exists"'
check "define: invalid JSON" PUT /projections/p2 '{"types":[' 400 '"error":"invalid_json"'
check "define: unknown field" PUT /projections/p2 '{"types":["A"],"stream":"x"}' 400 "unknown field 'stream'"
check "define: empty filter" PUT /projections/p2 '{}' 400 'needs types, stream_prefix or both'
check "define: types not an array" PUT /projections/p2 '{"types":"A"}' 400 'types must be a non-empty array'
check "define: empty types" PUT /projections/p2 '{"types":[]}' 400 'invalid_parameter'
check "define: a type with a control character" PUT /projections/p2 '{"types":["a\nb"]}' 400 'types[0]'
check "define: not an object" PUT /projections/p2 '["A"]' 400 'must be an object'
check "define: name with a control character" PUT '/projections/a%0Ab' '{"types":["A"]}' 400 'projection names'
check "projection: POST" POST /projections/orders '{}' 405 'method_not_allowed'
check "define: second projection" PUT /projections/placed '{"types":["OrderPlaced"]}' 201                        # 6

# ---- projections: GET -----------------------------------------------------------------
req GET /projections/orders
expect_eq "read projection: status" 200 "$CODE"
expect_eq "read projection: positions" "1 4" "$(positions)"
expect_has "read projection: served lines" "$BODY" '{"position":1,"stream":"orders/1","version":1,'
expect_has "read projection: data" "$BODY" '"type":"OrderPlaced","time":'
req GET /projections/placed
expect_eq "read projection 2: positions (users/1 too)" "1 3" "$(positions)"
req GET '/projections/orders?direction=backward'
expect_eq "backward" "4 1" "$(positions)"
req GET '/projections/orders?from=2'
expect_eq "from is an inclusive position" "4" "$(positions)"
req GET '/projections/orders?limit=1'
expect_eq "limit" "1" "$(positions)"
req GET '/projections/orders?from=3&direction=backward'
expect_eq "backward from" "1" "$(positions)"
req GET '/projections/orders?from=100'
expect_eq "from past the end: status" 200 "$CODE"
expect_eq "from past the end: nothing" "" "$BODY"
check "read: type is refused" GET '/projections/orders?type=X' '' 400 'own filter'
check "read: bad direction" GET '/projections/orders?direction=up' '' 400 'direction'
check "read: bad limit" GET '/projections/orders?limit=-1' '' 400 'limit'
check "read: watch backward" GET '/projections/orders?watch=true&direction=backward' '' 400 'watch'
check "read: unknown query parameter" GET '/projections/orders?limt=1' '' 400 "unknown query parameter 'limt'"
check "define: a query parameter" PUT '/projections/orders?x=1' '{"types":["A"]}' 400 "unknown query parameter 'x'"
check "read: unknown projection" GET /projections/nope '' 404 '"error":"not_found"'
check "read: unknown projection, watching" GET '/projections/nope?watch=true' '' 404 'not_found'

# the global log skips "$" streams unless the prefix asks for them
req GET /events
expect_eq "global read skips system streams" "1 2 3 4" "$(positions)"
req GET '/events?stream_prefix=$projections/'
expect_eq "a \$ prefix shows them" "5 6" "$(positions)"
req GET /streams
expect_not "stream list hides system streams" "$BODY" '$projections'
req GET '/streams/$projections/orders'
expect_eq "a system stream read by name" "5" "$(positions)"

# ---- watching a projection ----------------------------------------------------------------
curl -sN "$URL/projections/orders?watch=true&from=2" >"$T/watch1" 2>/dev/null &
BG_PIDS+=($!)
WATCH1=$!
curl -sN -H 'Accept: text/event-stream' -H 'Last-Event-ID: 1' "$URL/projections/orders?watch=true" >"$T/sse1" 2>/dev/null &
BG_PIDS+=($!)
SSE1=$!
wait_events "$T/watch1" 1 || fail "watch: the existing match arrives"
check "append non-matching" POST /streams/users/9 '{"type":"OrderShipped"}' 201                                  # 7
check "append matching" POST /streams/orders/9 '{"type":"OrderShipped","data":{"w":1}}' 201                       # 8
wait_events "$T/watch1" 2 || fail "watch: the new match arrives"
W1=$(grep '"position"' "$T/watch1" | grep -o '^{"position":[0-9]*' | cut -d: -f2 | tr '\n' ' ')
expect_eq "watch: only matches, in order" "4 8 " "$W1"
for ((i = 0; i < 100; i++)); do grep -q '^id: 8$' "$T/sse1" && break; sleep 0.05; done
expect_eq "SSE: ids are positions, resumed after Last-Event-ID" "4 8" "$(grep '^id: ' "$T/sse1" | cut -d' ' -f2 | tr '\n' ' ' | sed 's/ $//')"
expect_has "SSE: event names are types" "$(cat "$T/sse1")" "event: OrderShipped"
kill "$WATCH1" "$SSE1" 2>/dev/null || true

# ---- consumers: PUT and GET -------------------------------------------------------------
check "create consumer" PUT /consumers/c1 '{ "stream_prefix" : "orders/" }' 201 '{"name":"c1","position":0,"state":null,"definition":{"stream_prefix":"orders/"}}'  # 9
check "create again, same definition" PUT /consumers/c1 '{"stream_prefix":"orders/"}' 200 '"position":0'
check "create again, another definition" PUT /consumers/c1 '{"stream":"orders/1"}' 409 '"error":"already_exists"'
check "create: invalid JSON" PUT /consumers/c2 '{"stream":' 400 'invalid_json'
check "create: unknown field" PUT /consumers/c2 '{"stream":"a","from":1}' 400 "unknown field 'from'"
check "create: two kinds" PUT /consumers/c2 '{"stream":"a","types":["A"]}' 400 'exactly one'
check "create: empty object" PUT /consumers/c2 '{}' 400 'exactly one'
check "create: bad stream name" PUT /consumers/c2 '{"stream":""}' 400 'invalid_stream_name'
check "create: projection not defined" PUT /consumers/c2 '{"projection":"nope"}' 400 "projection 'nope' is not defined"
check "create: name ending in /events" PUT /consumers/x/events '{"stream":"a"}' 400 'may not end in /events'
check "create: not an object" PUT /consumers/c2 '"x"' 400 'must be an object'
check "create: stream consumer" PUT /consumers/s1 '{"stream":"orders/1"}' 201                                     # 10
check "create: types consumer" PUT /consumers/t1 '{"types":["OrderShipped"]}' 201                                  # 11
check "create: projection consumer" PUT /consumers/team/p1 '{"projection":"orders"}' 201 '"name":"team/p1"'       # 12
check "get consumer" GET /consumers/c1 '' 200 '{"name":"c1","position":0,"state":null,"definition":{"stream_prefix":"orders/"}}'
check "get unknown consumer" GET /consumers/nope '' 404 '"error":"not_found"'
check "consumer: PATCH" PATCH /consumers/c1 '' 405 'method_not_allowed'
check "consumer: POST without /checkpoint" POST /consumers/c1 '{}' 405 'method_not_allowed'

# ---- consumers: events -----------------------------------------------------------------
req GET /consumers/c1/events
expect_eq "events of a prefix consumer" "1 2 4 8" "$(positions)"
req GET /consumers/s1/events
expect_eq "events of a stream consumer" "1 2" "$(positions)"
req GET /consumers/t1/events
expect_eq "events of a types consumer" "4 7 8" "$(positions)"
req GET /consumers/team/p1/events
expect_eq "events of a projection consumer" "1 4 8" "$(positions)"
req GET '/consumers/c1/events?limit=2'
expect_eq "events with limit" "1 2" "$(positions)"
check "events: from is refused" GET '/consumers/c1/events?from=3' '' 400 'after its checkpoint'
check "events: unknown consumer" GET /consumers/nope/events '' 404 'not_found'
check "events: unknown query parameter" GET '/consumers/c1/events?watc=true' '' 400 "unknown query parameter 'watc'"
check "get consumer: a query parameter" GET '/consumers/c1?limit=1' '' 400 "unknown query parameter 'limit'"

# ---- consumers: checkpoint ------------------------------------------------------------------
STATE='{ "total" : 129.95, "big":123456789012345678901234567890, "s":"snow ☃ 🎉 \u00e9", "l":[1, {"k":null}] }'
STATE_MIN='{"total":129.95,"big":123456789012345678901234567890,"s":"snow ☃ 🎉 \u00e9","l":[1,{"k":null}]}'
check "checkpoint" POST /consumers/c1/checkpoint "{\"position\":2,\"state\":$STATE}" 200 "\"position\":2,\"state\":$STATE_MIN"
check "get after checkpoint: the state's bytes" GET /consumers/c1 '' 200 "{\"name\":\"c1\",\"position\":2,\"state\":$STATE_MIN,"
req GET /consumers/c1/events
expect_eq "events after the checkpoint" "4 8" "$(positions)"
check "checkpoint without state keeps it" POST /consumers/c1/checkpoint '{"position":4}' 200 "\"position\":4,\"state\":$STATE_MIN"
check "checkpoint with state null clears it" POST /consumers/c1/checkpoint '{"state":null,"position":4}' 200 '"position":4,"state":null'
check "checkpoint beyond the store" POST /consumers/c1/checkpoint '{"position":100000}' 400 'beyond the store'
check "checkpoint: position missing" POST /consumers/c1/checkpoint '{"state":1}' 400 'position is required'
check "checkpoint: negative position" POST /consumers/c1/checkpoint '{"position":-1}' 400 'non-negative integer'
check "checkpoint: position not a number" POST /consumers/c1/checkpoint '{"position":"4"}' 400 'non-negative integer'
check "checkpoint: state with a duplicate key" POST /consumers/c1/checkpoint '{"position":4,"state":{"a":1,"a":2}}' 400 'state is not valid JSON'
check "checkpoint: state not JSON" POST /consumers/c1/checkpoint '{"position":4,"state":tru}' 400 'state is not valid JSON'
check "checkpoint: not an object" POST /consumers/c1/checkpoint '[4]' 400 'must be an object'
check "checkpoint: text after the object" POST /consumers/c1/checkpoint '{"position":4} x' 400 'invalid_json'
check "checkpoint: unknown field" POST /consumers/c1/checkpoint '{"position":4,"stat":1}' 400 "unknown field 'stat'"
check "checkpoint: invalid JSON" POST /consumers/c1/checkpoint '{"position":4,' 400 'invalid_json'
check "checkpoint: duplicate key" POST /consumers/c1/checkpoint '{"position":4,"position":5}' 400 "duplicate field 'position'"
check "checkpoint: unknown consumer" POST /consumers/nope/checkpoint '{"position":1}' 404 'not_found'
{ printf '{"position":4,"state":"'; head -c 1100000 /dev/zero | tr '\0' x; printf '"}'; } >"$T/big.json"
check "checkpoint: state too large" POST /consumers/c1/checkpoint "@$T/big.json" 413 'payload_too_large'
check "checkpoint stream consumer" POST /consumers/s1/checkpoint '{"position":1,"state":[1,2]}' 200 '"state":[1,2]'
req GET /consumers/s1/events
expect_eq "stream consumer after position 1" "2" "$(positions)"
check "checkpoint projection consumer" POST /consumers/team/p1/checkpoint '{"position":4,"state":{"seen":2}}' 200

# watching a consumer's events
curl -sN "$URL/consumers/t1/events?watch=true" >"$T/watch2" 2>/dev/null &
BG_PIDS+=($!)
WATCH2=$!
wait_events "$T/watch2" 3 || fail "consumer watch: existing events arrive"
check "append for the consumer" POST /streams/any/1 '{"type":"OrderShipped","data":{"late":true}}' 201
wait_events "$T/watch2" 4 || fail "consumer watch: the new event arrives"
expect_has "consumer watch: the new event" "$(tail -n 1 "$T/watch2")" '"data":{"late":true}'
kill "$WATCH2" 2>/dev/null || true

# ---- delete and re-create ---------------------------------------------------------------------
check "delete consumer" DELETE /consumers/s1 '' 204
check "delete consumer again" DELETE /consumers/s1 '' 404 'not_found'
check "get deleted consumer" GET /consumers/s1 '' 404 'not_found'
check "checkpoint deleted consumer" POST /consumers/s1/checkpoint '{"position":1}' 404 'not_found'
check "re-create: back at 0, state null" PUT /consumers/s1 '{"stream":"orders/1"}' 201 '"position":0,"state":null'
check "delete projection" PUT /projections/gone '{"types":["Other"]}' 201
check "delete projection: 204" DELETE /projections/gone '' 204
check "delete projection again" DELETE /projections/gone '' 404 'not_found'
check "read deleted projection" GET /projections/gone '' 404 'not_found'

# ---- a read-only follower serves them; writes are refused --------------------------------------
SAVE_URL=$URL
start_server "$D" --read-only
RO=$SPID
check "follower: get consumer" GET /consumers/c1 '' 200 '"position":4,"state":null'
req GET /projections/orders
expect_eq "follower: read projection" "1 4 8" "$(positions)"
check "follower: checkpoint refused" POST /consumers/c1/checkpoint '{"position":1}' 503 'unavailable'
check "follower: define refused" PUT /projections/x '{"types":["A"]}' 503 'unavailable'
stop_server "$RO"
URL=$SAVE_URL

# ---- restart: everything is still there ----------------------------------------------------------
req GET /projections/orders
P_BEFORE=$BODY
req GET /consumers/team/p1
C_BEFORE=$BODY
stop_server "$W"
start_server "$D"
W=$SPID
req GET /projections/orders
expect_eq "after restart: projection reads the same" "$P_BEFORE" "$BODY"
req GET /consumers/team/p1
expect_eq "after restart: consumer the same" "$C_BEFORE" "$BODY"
expect_has "after restart: its state" "$BODY" '"position":4,"state":{"seen":2}'
req GET /consumers/team/p1/events
expect_eq "after restart: events after the checkpoint" "8" "$(positions)"

# ---- and after deleting every *.idx ---------------------------------------------------------------
stop_server "$W"
rm -f "$D"/*.idx
start_server "$D"
W=$SPID
req GET /projections/orders
expect_eq "after deleting *.idx: projection reads the same" "$P_BEFORE" "$BODY"
req GET /consumers/team/p1
expect_eq "after deleting *.idx: consumer the same" "$C_BEFORE" "$BODY"
check "after deleting *.idx: new events still projected" POST /streams/orders/3 '{"type":"OrderPlaced"}' 201
req GET '/projections/orders?direction=backward&limit=1'
expect_has "after deleting *.idx: the newest match" "$BODY" '"stream":"orders/3"'
ls "$D"/projection-*.idx >/dev/null 2>&1 && pass || fail "the projection index files are rebuilt"
stop_server "$W"

lib_finish
