# Top-level driver: CMake does the building, this file gives the commands a
# new user types. Every target installs what is missing first.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
DATA       ?= ./data
SHELL      := /bin/bash

.PHONY: all deps build test test-fast test-asan run torture bench bench-peers bench-quick bench-big bench-plots fuzz clean

all: build

deps:
	@scripts/install-deps

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DEVS_SANITIZE=ON -DEVS_BUILD_BENCH=OFF

# The whole suite twice: a normal build, then under ASan+UBSan (leaks included).
# ctest's summary line of the sanitizer run ends the output.
test: build $(ASAN_BUILD)/CMakeCache.txt
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS)

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

run: build
	@if [ -x $(BUILD)/evstored ]; then exec $(BUILD)/evstored --data $(DATA) --listen 127.0.0.1:2114; \
	else echo "evstored is not built yet (the HTTP server is issue #3); the CLI works: $(BUILD)/evstore --data $(DATA) ..."; exit 1; fi

# Crash torture, TORTURE_MINUTES in all (default 10): a third for the engine,
# two thirds for the server (its rounds are about 15 times longer):
#  1. torture_engine: random power cuts (simulated, through the fault-injecting
#     I/O layer; under --fsync always, and under interval/never where only
#     what a completed sync covered must survive), I/O error injection and
#     kill -9 rounds of a library writer;
#  2. torture_server: the real evstored under concurrent HTTP writers, watchers
#     and readers, SIGKILLed at random moments, restarted and checked;
#  3. then the full-size load and abuse run (EVS_ABUSE_SCALE=10 test_abuse,
#     about a minute more).
# Each check covers every acknowledged event, contiguity and whole batches. A
# failing round prints its seed and the command that replays it.
# TORTURE_ROUNDS=N bounds each torture to N rounds as well; TORTURE_SEED=S
# replays a run (docs/RELIABILITY.md).
TORTURE_MINUTES ?= 10
TORTURE_ROUNDS  ?=
TORTURE_SEED    ?=
TORTURE_ARGS = $(if $(TORTURE_ROUNDS),--rounds $(TORTURE_ROUNDS)) $(if $(TORTURE_SEED),--seed $(TORTURE_SEED))
torture: build
	@mkdir -p $(BUILD)/testtmp
	$(BUILD)/tests/torture_engine --seconds $$(( $(TORTURE_MINUTES) * 20 )) $(TORTURE_ARGS)
	EVS_BIN=$(CURDIR)/$(BUILD) EVS_TEST_TMP=$(CURDIR)/$(BUILD)/testtmp \
	  $(BUILD)/tests/torture_server --seconds $$(( $(TORTURE_MINUTES) * 40 )) $(TORTURE_ARGS)
	EVS_ABUSE_SCALE=10 EVS_BIN=$(CURDIR)/$(BUILD) EVS_TEST_TMP=$(CURDIR)/$(BUILD)/testtmp $(BUILD)/tests/test_abuse

# Benchmarks print this machine's limits (fsync latency, sequential write
# bandwidth) beside every figure; see docs/BENCHMARKS.md. BENCH_ARGS passes
# options through (e.g. BENCH_ARGS='--wait-quiet 300' on a shared machine).
# Peers (Redis, PostgreSQL, SQLite, NATS) and gnuplot are installed for the
# benchmarks only.
bench-peers:
	@scripts/install-bench-peers
	@test ! -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) >/dev/null

bench: bench-peers build
	$(BUILD)/bench/bench_engine $(BENCH_ARGS)
	$(BUILD)/bench/bench_http $(BENCH_HTTP_ARGS)
	@$(MAKE) --no-print-directory bench-plots

bench-quick: bench-peers build
	$(BUILD)/bench/bench_engine --quick $(BENCH_ARGS)
	$(BUILD)/bench/bench_http --quick $(BENCH_HTTP_ARGS)

# The growth curves at 0, 1 M and 10 M events (the docs' images come from this).
bench-big: bench-peers build
	$(BUILD)/bench/bench_engine --big $(BENCH_ARGS)
	@$(MAKE) --no-print-directory bench-plots

# docs/growth-{open,recovery,read,rss}.png from the last bench_engine run's
# growth.dat (one point per store size it measured: 0 and 1 M for `make
# bench`, 0, 1 M and 10 M for `make bench-big`).
GROWTH_DAT ?= $(BUILD)/bench/growth.dat
PLOT_DIR   ?= docs
bench-plots:
	@command -v gnuplot >/dev/null || { echo "bench-plots: gnuplot is not installed (scripts/install-bench-peers)"; exit 1; }
	@test -f $(GROWTH_DAT) || { echo "bench-plots: $(GROWTH_DAT) is missing: run bench_engine first (make bench)"; exit 1; }
	gnuplot -e "datafile='$(GROWTH_DAT)'; outdir='$(PLOT_DIR)'" bench/growth.gp
	@echo "bench-plots: $(PLOT_DIR)/growth-{open,recovery,read,rss}.png from $(GROWTH_DAT)"

# libFuzzer (clang): every tests/fuzz/fuzz_*.c for FUZZ_SECONDS each, starting
# from its corpus in tests/fuzz/corpus/<name>/ (with the dictionary
# tests/fuzz/<name>.dict if there is one). New inputs go to
# build-fuzz/corpus/; crashes to build-fuzz/crashes/ (copy one into the
# repository corpus to keep it as a regression input: `make test` replays it).
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
fuzz: deps
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DEVS_BUILD_FUZZ=ON \
	  -DEVS_SANITIZE=ON -DEVS_BUILD_BENCH=OFF -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
	@mkdir -p $(FUZZ_BUILD)/crashes
	@set -e; for src in tests/fuzz/fuzz_*.c; do \
	  name=$$(basename $$src .c); short=$${name#fuzz_}; \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$short tests/fuzz/corpus/$$short; \
	  echo "== $$name for $(FUZZ_SECONDS)s"; \
	  dict=; test -f tests/fuzz/$$short.dict && dict=-dict=tests/fuzz/$$short.dict; \
	  $(FUZZ_BUILD)/tests/fuzz/$$name -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $$dict \
	    -artifact_prefix=$(FUZZ_BUILD)/crashes/$$short- \
	    $(FUZZ_BUILD)/corpus/$$short tests/fuzz/corpus/$$short 2>&1 | grep -E '^(Done|stat::number_of_executed_units|==.*ERROR|SUMMARY)' ; \
	  test $${PIPESTATUS[0]} -eq 0 || { echo "$$name found a crash: see $(FUZZ_BUILD)/crashes/"; exit 1; }; \
	done

# ---- [reliability] ThreadSanitizer and valgrind (docs/RELIABILITY.md) ----
.PHONY: tsan valgrind

# ThreadSanitizer (clang) over the tests that run threads against one store or
# one server (evstored is built with TSan too). Every process, servers and
# forked children included, writes its reports to $(TSAN_BUILD)/tsan-logs/;
# any report fails the target and is printed. tests/tsan.supp may name only
# third-party libraries, never our code.
TSAN_BUILD ?= build-tsan
TSAN_TESTS ?= test_store_concurrency|test_store_process|test_store_reopen|test_store_read|test_index_thread|test_lsm|test_vfs|test_json|test_consumers|test_projections|test_http_concurrency|test_http_watch|test_abuse|test_backup
tsan: deps
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEVS_TSAN=ON -DEVS_BUILD_BENCH=OFF
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	@rm -rf $(TSAN_BUILD)/tsan-logs && mkdir -p $(TSAN_BUILD)/tsan-logs
	@cd $(TSAN_BUILD) && TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp log_path=$(CURDIR)/$(TSAN_BUILD)/tsan-logs/tsan second_deadlock_stack=1" \
	  ctest --output-on-failure -j $(JOBS) -R '^($(TSAN_TESTS))$$'; st=$$?; \
	  n=$$(cat tsan-logs/tsan.* 2>/dev/null | grep -c '^WARNING: ThreadSanitizer' || true); \
	  if [ "$$n" != 0 ]; then cat tsan-logs/tsan.*; \
	    echo "ThreadSanitizer: $$n report(s), above (one file per process in $(TSAN_BUILD)/tsan-logs/)"; exit 1; fi; \
	  echo "ThreadSanitizer: no reports"; exit $$st

# valgrind memcheck over the engine unit tests, in a Debug build without
# sanitizers. Left out: the HTTP tests (the server is another process they
# exec; ASan/LSan check it in `make test`) and the crash, fault and power-cut
# tests (hundreds of forked, SIGKILLed rounds: hours under valgrind; ASan
# checks them in `make test`).
VALGRIND_BUILD ?= build-valgrind
VALGRIND_TESTS ?= test_errors test_json test_vfs test_lsm test_store_append test_store_read test_store_reopen \
                  test_store_concurrency test_store_checkpoint test_store_process test_projections test_consumers
valgrind: deps
	@command -v valgrind >/dev/null || { echo "installing valgrind"; \
	  $$([ "$$(id -u)" -ne 0 ] && echo sudo) apt-get install -y -qq --no-install-recommends valgrind; }
	cmake -S . -B $(VALGRIND_BUILD) -DCMAKE_BUILD_TYPE=Debug -DEVS_BUILD_BENCH=OFF
	cmake --build $(VALGRIND_BUILD) -j $(JOBS) --target $(VALGRIND_TESTS)
	@mkdir -p $(VALGRIND_BUILD)/testtmp $(VALGRIND_BUILD)/valgrind; rm -f $(VALGRIND_BUILD)/valgrind/*; fails=; \
	for t in $(VALGRIND_TESTS); do \
	  start=$$(date +%s); \
	  if EVS_TEST_TMP=$(CURDIR)/$(VALGRIND_BUILD)/testtmp EVS_BIN=$(CURDIR)/$(VALGRIND_BUILD) timeout 3600 \
	     valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
	       --log-file=$(VALGRIND_BUILD)/valgrind/$$t.%p.log $(VALGRIND_BUILD)/tests/$$t >$(VALGRIND_BUILD)/valgrind/$$t.out 2>&1; \
	  then echo "valgrind $$t: clean ($$(( $$(date +%s) - start )) s)"; \
	  else echo "valgrind $$t: FAILED ($$(( $$(date +%s) - start )) s)"; fails="$$fails $$t"; \
	    tail -n 30 $(VALGRIND_BUILD)/valgrind/$$t.out; \
	    for f in $(VALGRIND_BUILD)/valgrind/$$t.*.log; do [ -s $$f ] && head -n 60 $$f; done; fi; \
	done; \
	test -z "$$fails" || { echo "valgrind found errors in:$$fails (logs in $(VALGRIND_BUILD)/valgrind/)"; exit 1; }; \
	echo "valgrind: no errors, no definite leaks"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
