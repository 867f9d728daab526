# ExESDB build. `make` builds the core, the CLI and the tests; README names
# the targets. Built files go to build/ and priv/, never into git.

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wno-unused-parameter
CPPFLAGS += -D_GNU_SOURCE -Ic_src/core
LDLIBS  := -llmdb -lpthread

BUILD   ?= build
CORE_SRC := $(wildcard c_src/core/*.c)
CORE_OBJ := $(patsubst c_src/core/%.c,$(BUILD)/core/%.o,$(CORE_SRC))
CORE_LIB := $(BUILD)/libesdb_core.a
# The protocol tables (c_src/proto) the NIF and the C node decode over.
PROTO_SRC := $(wildcard c_src/proto/*.c)
PROTO_DEPS := c_src/proto/*.[ch]
TEST_SRC := $(wildcard test/c/*.c)
TEST_BIN := $(BUILD)/esdb_tests
BENCH_BIN := $(BUILD)/esdb_bench
CTL_BIN := priv/ex_esdb_ctl
CNODE_BIN := priv/ex_esdb_cnode
# The durability tests' LD_PRELOAD shim and the process it runs in.
FAULT_BINS := $(BUILD)/esdb_io_shim.so $(BUILD)/esdb_fault_child
NIF_SO  := priv/ex_esdb_nif.so
ERTS_INCLUDE ?= $(shell erl -noshell -eval 'io:format("~s/erts-~s/include", [code:root_dir(), erlang:system_info(version)]), halt().' 2>/dev/null)

# Debian packages the build, the tests and the benchmarks need.
DEB_PKGS := build-essential liblmdb-dev lmdb-utils valgrind clang \
	clang-format libclang-rt-14-dev zlib1g-dev erlang-nox erlang-dev erlang-eunit \
	erlang-proper elixir rebar3 \
	libuv1-dev liblz4-dev autoconf automake libtool pkg-config nftables

.PHONY: all nif raft raft-optional test-raft cnode test-cnode asan-cnode deps run test test-c test-c-log test-replica asan-replica test-elixir test-erlang test-consumers test-commanded chaos chaos-faults chaos-cnode chaos-cluster cluster-demo asan valgrind fuzz bench fmt fmt-check clean

all: raft-optional $(CORE_LIB) $(CTL_BIN) $(CNODE_BIN) $(TEST_BIN) $(NIF_SO) $(FAULT_BINS)

# What `mix compile` and `rebar3 compile` need: the NIF, the CLI and the
# C node.
nif: $(NIF_SO) $(CTL_BIN) $(CNODE_BIN)

deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "deps: all present"; fi

# Cluster mode's raft: 0.22.1 from Debian trixie's source package, checked
# and patched by c_src/replica/build_raft.sh, built once per checkout into
# build/raft (lib/libraft.a, static and PIC; include/), never committed.
# Code that uses raft compiles with RAFT_CFLAGS and links RAFT_LIBS.
# `make raft` builds it or fails saying why (build/raft/missing); the
# default build tries once and goes on without cluster support, which the
# NIF then reports (build/gen/cluster_support.h). `make nif` (what mix and
# rebar3 consumers run) never fetches or builds raft.
RAFT_DIR    := build/raft
RAFT_LIB    := $(RAFT_DIR)/lib/libraft.a
RAFT_CFLAGS := -I$(RAFT_DIR)/include
RAFT_LIBS   := $(RAFT_LIB) -luv -llz4
RAFT_INPUTS := c_src/replica/build_raft.sh c_src/replica/raft_patchset.sh \
	c_src/replica/raft_0.22.1.orig.tar.gz.sha256 \
	$(wildcard c_src/replica/patches/*.patch)
RAFT_STAMP  := $(RAFT_DIR)/patchset.stamp
RAFT_CURRENT = c_src/replica/raft_patchset.sh --check $(RAFT_DIR)
CLUSTER_H   := build/gen/cluster_support.h

raft: $(RAFT_LIB)

$(RAFT_LIB): $(RAFT_INPUTS) $(RAFT_STAMP)
	c_src/replica/build_raft.sh $(RAFT_DIR)

# Newer than libraft.a whenever that was built from another patch set than
# c_src/replica/patches (lib/patchset, c_src/replica/raft_patchset.sh): an
# older checkout's or a restored cache's library is rebuilt whatever the
# files' times, and never linked meanwhile (RAFT_CURRENT).
$(RAFT_STAMP): FORCE
	@mkdir -p $(RAFT_DIR)
	@if c_src/replica/raft_patchset.sh --check $(RAFT_DIR); then \
	  [ -f $@ ] || touch -r $(RAFT_LIB) $@; \
	else touch $@; fi

# A failed attempt is not retried until the inputs change or `make raft`.
raft-optional:
	@if [ -f $(RAFT_DIR)/missing ] && [ -z "$$(find $(RAFT_INPUTS) -newer $(RAFT_DIR)/missing)" ]; then \
	  echo "cluster support absent: $$(cat $(RAFT_DIR)/missing)"; \
	else $(MAKE) --no-print-directory raft || echo "cluster support absent; the single-node build goes on"; fi

# Whether raft is built, for the NIF, and libraft.a's hash (the NIF and the
# C node relink when raft is rebuilt); rewritten only when that changes.
$(CLUSTER_H): FORCE
	@mkdir -p $(dir $@)
	@c_src/replica/cluster_support_h.sh $(RAFT_DIR) > $@.tmp
	@cmp -s $@.tmp $@ || mv $@.tmp $@; rm -f $@.tmp
FORCE:

$(BUILD)/core/%.o: c_src/core/%.c c_src/core/*.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -fPIC -pthread -c $< -o $@

$(CORE_LIB): $(CORE_OBJ)
	rm -f $@
	ar rcs $@ $^

# The CLI prints Erlang terms with erl_interface's ei (erlang-dev).
EI_DIR ?= $(shell erl -noshell -eval 'io:format("~s", [code:lib_dir(erl_interface)]), halt().' 2>/dev/null)

# The tools' one JSON writer (the CLI's --json, the bench's lines).
JSON_SRC := c_src/json/json.c c_src/json/json.h

$(CTL_BIN): c_src/cli/*.c c_src/cli/*.h $(JSON_SRC) $(CORE_LIB)
	@mkdir -p priv
	$(CC) $(CPPFLAGS) -Ic_src/json -I$(EI_DIR)/include $(CFLAGS) $(WARN) -pthread c_src/cli/*.c c_src/json/json.c $(CORE_LIB) \
	  -L$(EI_DIR)/lib -lei $(LDLIBS) -o $@

# The C node (c_src/cnode) over the core and erl_interface's ei.
cnode: $(CNODE_BIN)

# With raft built, it can run its store as a replica (c_src/cnode/cluster.c).
CNODE_CLUSTER = $$(if $(RAFT_CURRENT); then echo "-DESDB_CNODE_CLUSTER -Ic_src/replica $(RAFT_CFLAGS) c_src/replica/*.c $(RAFT_LIBS)"; fi)
$(CNODE_BIN): c_src/cnode/*.c c_src/cnode/*.h $(PROTO_DEPS) $(CORE_LIB) $(CLUSTER_H) $(wildcard c_src/replica/*.[ch])
	@mkdir -p priv
	$(CC) $(CPPFLAGS) -Ic_src/proto -I$(EI_DIR)/include $(CFLAGS) $(WARN) -pthread c_src/cnode/*.c $(PROTO_SRC) $(CNODE_CLUSTER) $(CORE_LIB) \
	  -L$(EI_DIR)/lib -lei $(LDLIBS) -lz -o $@

# With raft built (checked when linking: `all` may have just built it),
# the NIF carries the replica and links raft statically (c_src/nif/cluster.c).
NIF_CLUSTER = $$(if $(RAFT_CURRENT); then echo "-Ic_src/replica $(RAFT_CFLAGS) c_src/replica/*.c $(RAFT_LIBS) -Wl,--exclude-libs,libraft.a"; fi)
$(NIF_SO): c_src/nif/*.c c_src/nif/*.h $(PROTO_DEPS) $(CORE_LIB) $(CLUSTER_H) $(wildcard c_src/replica/*.[ch])
	@mkdir -p priv
	$(CC) $(CPPFLAGS) -Ic_src/proto -I$(ERTS_INCLUDE) -I$(dir $(CLUSTER_H)) $(CFLAGS) $(WARN) -fPIC -shared -pthread \
	  c_src/nif/*.c $(PROTO_SRC) $(NIF_CLUSTER) $(CORE_LIB) $(LDLIBS) -lz -o $@

# The tests include the CLI's term printer (c_src/cli/term.c) and the C
# node's term validator (c_src/cnode/term_check.c) to fuzz them, and its
# cookie reader and envelope parser; and the tools' JSON writer.
$(TEST_BIN): $(TEST_SRC) test/c/*.h c_src/cli/term.[ch] c_src/cnode/term_check.[ch] c_src/cnode/cookie.[ch] c_src/cnode/envelope.[ch] $(PROTO_DEPS) $(JSON_SRC) $(CORE_LIB)
	$(CC) $(CPPFLAGS) -Itest/c -Ic_src/cli -Ic_src/cnode -Ic_src/proto -Ic_src/json -I$(EI_DIR)/include $(CFLAGS) $(WARN) -pthread \
	  $(TEST_SRC) c_src/cli/term.c c_src/cnode/term_check.c c_src/cnode/cookie.c c_src/cnode/envelope.c $(PROTO_SRC) c_src/json/json.c $(CORE_LIB) -L$(EI_DIR)/lib -lei $(LDLIBS) -lm -o $@

$(BUILD)/esdb_io_shim.so: test/c/fault/io_shim.c
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -fPIC -shared -pthread $< -ldl -o $@

# The chaos partitions' LD_PRELOAD shim: a peer's connections from its
# own loopback address (test/support/chaos/partition.ex).
$(BUILD)/esdb_bind_shim.so: test/c/fault/bind_shim.c
	@mkdir -p $(BUILD)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -fPIC -shared $< -ldl -o $@

$(BUILD)/esdb_fault_child: test/c/fault/fault_child.c $(CORE_LIB)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -pthread $< $(CORE_LIB) $(LDLIBS) -o $@

$(BENCH_BIN): c_src/bench/*.c $(JSON_SRC) $(CORE_LIB)
	$(CC) $(CPPFLAGS) -Ic_src/json $(CFLAGS) $(WARN) -pthread c_src/bench/*.c c_src/json/json.c $(CORE_LIB) $(LDLIBS) -o $@

# An IEx shell with a demo store in ./data (EX_ESDB_DATA_DIR overrides).
DATA_DIR := $(or $(EX_ESDB_DATA_DIR),data)
run: deps
	$(MAKE) nif
	EX_ESDB_DATA_DIR=$(DATA_DIR) iex -S mix run -e "ExESDB.Demo.start()"

# The C suite; ESDB_SEED picks the randomized tests' seed.
test-c: $(TEST_BIN) $(CTL_BIN) $(FAULT_BINS)
	$(TEST_BIN)

# The store suite again, committing through a log-shaped path with its own
# indexes (test/c/commit_log.c) instead of the local writer.
test-c-log: $(TEST_BIN) $(CTL_BIN) $(FAULT_BINS)
	ESDB_TEST_COMMIT_PATH=log $(TEST_BIN)

# The replica (c_src/replica, raft over TCP): its own test binary, real
# processes on loopback, kept out of valgrind. ESDB_REPLICA_KILLS scales
# the leader-kill loop. Needs raft (`make raft`, RAFT_CFLAGS/RAFT_LIBS).
REPLICA_SRC := $(wildcard c_src/replica/*.c)
REPLICA_TEST_SRC := $(wildcard test/c/replica/*.c) test/c/harness.c \
	test/c/helpers.c test/c/commit_log.c
REPLICA_TEST_BIN := $(BUILD)/esdb_replica_tests
$(REPLICA_TEST_BIN): $(REPLICA_SRC) c_src/replica/*.h $(REPLICA_TEST_SRC) \
	test/c/*.h test/c/replica/*.h $(CORE_LIB) $(RAFT_LIB)
	$(CC) $(CPPFLAGS) -Ic_src/replica -Itest/c -Itest/c/replica $(RAFT_CFLAGS) \
	  $(CFLAGS) $(WARN) -pthread $(REPLICA_SRC) $(REPLICA_TEST_SRC) \
	  $(CORE_LIB) $(RAFT_LIBS) $(LDLIBS) -o $@

test-replica: $(REPLICA_TEST_BIN)
	$(REPLICA_TEST_BIN)

# raft alone (c_src/raftbench, N processes on loopback, trivial FSM): the
# baseline benchmark and the tests of raft as built (test/c/raft: the
# snapshot_pending patch; the store's model test on 3 and 5 servers in
# raft's fixture, ESDB_RAFT_MODEL_OPS steps each). Real TCP and kills:
# kept out of valgrind.
RAFT_BENCH_BIN := $(BUILD)/esdb_raft_bench
RAFT_TEST_BIN := $(BUILD)/esdb_raft_tests
$(RAFT_BENCH_BIN): c_src/raftbench/*.[ch] $(RAFT_LIB)
	$(CC) $(CPPFLAGS) $(RAFT_CFLAGS) $(CFLAGS) $(WARN) c_src/raftbench/*.c $(RAFT_LIBS) -o $@

$(RAFT_TEST_BIN): test/c/raft/*.c c_src/raftbench/raft3.[ch] test/c/harness.[ch] test/c/helpers.[ch] $(CORE_LIB) $(RAFT_LIB)
	$(CC) $(CPPFLAGS) -Itest/c -Ic_src/raftbench $(RAFT_CFLAGS) $(CFLAGS) $(WARN) -pthread \
	  test/c/raft/*.c c_src/raftbench/raft3.c test/c/harness.c test/c/helpers.c test/c/commit_log.c $(CORE_LIB) $(RAFT_LIBS) $(LDLIBS) -o $@

test-raft: $(RAFT_TEST_BIN)
	$(RAFT_TEST_BIN)

# The cluster benchmarks (c_src/clusterbench): 3 replica processes driven
# by the tests' harness (test/c/replica/cluster.c), each line after the
# raft3 line it is compared with, in the same run.
CLUSTER_BENCH_BIN := $(BUILD)/esdb_cluster_bench
CLUSTER_BENCH_SRC := c_src/clusterbench/*.c c_src/raftbench/raft3.c \
	c_src/raftbench/raft3_bench.c test/c/replica/cluster.c test/c/helpers.c \
	test/c/replica/spawn.c test/c/commit_log.c $(REPLICA_SRC)
$(CLUSTER_BENCH_BIN): $(CLUSTER_BENCH_SRC) c_src/raftbench/*.h c_src/replica/*.h \
	test/c/*.h test/c/replica/*.h $(CORE_LIB) $(RAFT_LIB)
	$(CC) $(CPPFLAGS) -Ic_src/replica -Ic_src/raftbench -Itest/c -Itest/c/replica \
	  $(RAFT_CFLAGS) $(CFLAGS) $(WARN) -pthread $(CLUSTER_BENCH_SRC) \
	  $(CORE_LIB) $(RAFT_LIBS) $(LDLIBS) -o $@

# Everything CI runs; ExUnit last so its summary closes the output.
test: deps
	$(MAKE) raft-optional
	$(MAKE) fmt-check test-c test-c-log test-replica asan-replica test-raft asan valgrind fuzz test-erlang test-consumers asan-cnode test-elixir

test-elixir: nif $(BUILD)/esdb_cnode_probe $(BUILD)/esdb_bind_shim.so
	MIX_ENV=test mix test

# The chaos workload and history checker (test/support/chaos) for
# CHAOS_SECONDS against the single-node store, CHAOS_RATE operations/s
# per client; then mixed faults (kill -9 and restart, pauses, partitions
# of raft and distribution: nft as root) for CHAOS_SECONDS on a
# CHAOS_NODES-node cluster, CHAOS_FAULT_RATE operations/s per client;
# history, anomalies and summary (with figures per fault kind) as JSON
# lines under CHAOS_RESULTS. `make test` runs both briefly.
CHAOS_SECONDS ?= 60
CHAOS_RATE ?= 200
CHAOS_NODES ?= 3
CHAOS_FAULT_RATE ?= 20
CHAOS_RESULTS ?= $(CURDIR)/$(BUILD)/chaos
# CHAOS_SAMPLE=1: chaos-faults also samples every node's raft progress
# and replica thread waits every 20 ms (samples.jsonl in the results;
# test/support/chaos/sampler.ex)
CHAOS_SAMPLE ?= 0
chaos: nif $(BUILD)/esdb_bind_shim.so
	ESDB_CHAOS_SECONDS=$(CHAOS_SECONDS) ESDB_CHAOS_RATE=$(CHAOS_RATE) ESDB_CHAOS_RESULTS=$(CHAOS_RESULTS) \
	  MIX_ENV=test mix test test/ex_esdb/chaos_workload_test.exs
	$(MAKE) $(if $(filter 1,$(CHAOS_CNODE)),chaos-cnode,chaos-faults)

# Only the cluster part of `make chaos` (docs/RELIABILITY.md's runs).
chaos-faults: nif $(BUILD)/esdb_bind_shim.so
	ESDB_CHAOS_SAMPLE=$(CHAOS_SAMPLE) ESDB_CHAOS_FAULTS=1 ESDB_CHAOS_NODES=$(CHAOS_NODES) ESDB_CHAOS_SECONDS=$(CHAOS_SECONDS) \
	  ESDB_CHAOS_RATE=$(CHAOS_FAULT_RATE) ESDB_CHAOS_RESULTS=$(CHAOS_RESULTS) \
	  MIX_ENV=test mix test test/ex_esdb/chaos_faults_test.exs --only chaos_long

# Mixed faults against CHAOS_NODES C node replicas (priv/ex_esdb_cnode
# --raft-*) with BEAM client nodes on the C node backend, for CHAOS_SECONDS
# (test/ex_esdb/chaos_cnode_test.exs); `make chaos CHAOS_CNODE=1` runs
# it in place of chaos-faults.
chaos-cnode: nif $(BUILD)/esdb_bind_shim.so
	ESDB_CHAOS_CNODE=1 ESDB_CHAOS_NODES=$(CHAOS_NODES) ESDB_CHAOS_SECONDS=$(CHAOS_SECONDS) ESDB_CHAOS_RATE=$(CHAOS_FAULT_RATE) \
	  ESDB_CHAOS_RESULTS=$(CHAOS_RESULTS) \
	  MIX_ENV=test mix test test/ex_esdb/chaos_cnode_test.exs --only chaos_long

# The same on 3 :peer nodes in cluster mode: no faults, the leader
# stopped, the leader paused past the election timeout four times.
chaos-cluster: nif $(BUILD)/esdb_bind_shim.so
	ESDB_CHAOS_PAUSE=1 ESDB_CHAOS_RESULTS=$(CHAOS_RESULTS) \
	  MIX_ENV=test mix test test/ex_esdb/chaos_cluster_test.exs test/ex_esdb/chaos_pause_test.exs

# Three db_type: :cluster nodes on this machine (n1..n3@127.0.0.1, own
# data dirs and raft ports, formed from seed_nodes): a write on one, read
# on another, the leader stopped, a write after (examples/cluster/run.sh;
# README "Cluster mode from Elixir"). Needs raft: `make raft` first.
cluster-demo: raft nif
	examples/cluster/run.sh

# The C node as a process, from ExUnit (also part of test-elixir):
# handshake, requests, wrong cookie, oversized and malformed frames; the
# C node backend: conformance, launcher, kill -9 of C node and clients;
# subscriptions through sessions.
CNODE_TESTS := test/ex_esdb/cnode_test.exs test/ex_esdb/cnode_session_test.exs test/ex_esdb/cnode_copy_serve_test.exs test/ex_esdb/cnode_persistent_owner_test.exs \
	test/ex_esdb/cnode_backend_test.exs test/ex_esdb/cnode_write_timeout_test.exs \
	test/ex_esdb/streams_cnode_test.exs test/ex_esdb/subscriptions/cnode_subscriptions_test.exs
test-cnode: nif $(BUILD)/esdb_cnode_probe
	MIX_ENV=test mix test $(CNODE_TESTS)

# The same ExUnit tests against the C node built with ASan+UBSan; with
# raft built, the C node carries the replica (c_src/replica compiled with
# the sanitizers, as in asan-replica; libraft.a itself uninstrumented) and
# the C node cluster tests run too. The C nodes' sanitizer reports go to
# files (their output is read by the tests, not shown): any report,
# leaks included (C nodes whose stdin closes stop and are checked; those
# killed -9 are not), fails the target. lsan.supp: raft's own leaks.
CNODE_CLUSTER_TESTS := test/ex_esdb/cnode_cluster_test.exs \
	test/ex_esdb/cnode_cluster_barrier_test.exs \
	test/ex_esdb/cnode_cluster_late_write_test.exs \
	test/ex_esdb/cnode_cluster_member_name_test.exs \
	test/ex_esdb/cnode_cluster_reads_test.exs \
	test/ex_esdb/cnode_cluster_unreachable_test.exs \
	test/ex_esdb/cnode_cluster_wiped_test.exs test/ex_esdb/cnode_copy_test.exs \
	test/ex_esdb/cnode_launcher_cluster_test.exs test/ex_esdb/cnode_cluster_transfer_test.exs \
	test/ex_esdb/cnode_cluster_rejoin_test.exs test/ex_esdb/cnode_cluster_claim_test.exs \
	test/ex_esdb/cnode_cluster_silent_leader_test.exs test/ex_esdb/cnode_cluster_watch_test.exs \
	test/ex_esdb/cnode_cluster_owner_write_test.exs test/ex_esdb/cnode_cluster_unknown_index_test.exs \
	test/ex_esdb/cnode_cluster_subscribe_start_test.exs \
	test/ex_esdb/cnode_raft_address_test.exs test/ex_esdb/streams_cnode_cluster_test.exs \
	test/ex_esdb/subscriptions/cnode_cluster_subscriptions_test.exs
ASAN_CNODE_REPORTS := $(CURDIR)/build/asan/cnode_reports
asan-cnode: nif $(BUILD)/esdb_cnode_probe
	$(MAKE) BUILD=build/asan CC=clang CFLAGS="$(SAN_CFLAGS)" \
	  build/asan/libesdb_core.a
	clang $(CPPFLAGS) -Ic_src/proto -I$(EI_DIR)/include $(SAN_CFLAGS) $(WARN) -pthread c_src/cnode/*.c $(PROTO_SRC) \
	  $(CNODE_CLUSTER) build/asan/libesdb_core.a -L$(EI_DIR)/lib -lei $(LDLIBS) -lz -o build/asan/ex_esdb_cnode
	rm -rf $(ASAN_CNODE_REPORTS) && mkdir -p $(ASAN_CNODE_REPORTS)
	@tests="$(CNODE_TESTS)"; \
	if $(RAFT_CURRENT); then tests="$$tests $(CNODE_CLUSTER_TESTS)"; \
	else echo "asan-cnode: no raft built, the C node cluster tests left out"; fi; \
	ASAN_OPTIONS=detect_leaks=1:log_path=$(ASAN_CNODE_REPORTS)/asan \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/test/c/replica/lsan.supp:print_suppressions=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:log_path=$(ASAN_CNODE_REPORTS)/ubsan \
	  ESDB_CNODE_BIN=$(CURDIR)/build/asan/ex_esdb_cnode MIX_ENV=test mix test $$tests; rc=$$?; \
	for i in $$(seq 300); do pidof $(CURDIR)/build/asan/ex_esdb_cnode >/dev/null || break; sleep 0.1; done; \
	bad=$$(grep -l -E "ERROR: |runtime error: |SUMMARY: " $(ASAN_CNODE_REPORTS)/* 2>/dev/null); \
	if [ -n "$$bad" ]; then echo "asan-cnode: sanitizer reports from the C nodes:"; cat $$bad; exit 1; fi; \
	exit $$rc

# Sends raw distribution frames to a C node (test/cnode/probe.c): what no
# BEAM node would send.
$(BUILD)/esdb_cnode_probe: test/cnode/probe.c
	@mkdir -p $(BUILD)
	$(CC) $(CPPFLAGS) -I$(EI_DIR)/include $(CFLAGS) $(WARN) -pthread $< \
	  -L$(EI_DIR)/lib -lei -lpthread -o $@

test-erlang: nif
	rebar3 eunit

# Commanded's own adapter test cases against ExESDB.Commanded.Adapter. Not
# part of `make test` (CI has no Commanded): needs COMMANDED_PATH, a Commanded
# 1.4.9 checkout, with telemetry 1.3.0, telemetry_registry 0.3.2, backoff 1.1.6
# and jason 1.4.4 beside it (or in COMMANDED_DEPS_PATH). Builds offline into
# _build/commanded (mix.exs).
test-commanded:
	@if [ -z "$(COMMANDED_PATH)" ] || [ ! -f "$(COMMANDED_PATH)/mix.exs" ]; then \
	  echo "test-commanded skipped: set COMMANDED_PATH to a Commanded 1.4.9 checkout" \
	    "(telemetry, telemetry_registry, backoff, jason beside it or in COMMANDED_DEPS_PATH)"; \
	else \
	  COMMANDED_PATH="$(COMMANDED_PATH)" MIX_ENV=test mix test test/commanded; \
	fi

# ex_esdb as a dependency of a throwaway Mix project and rebar3 project.
test-consumers: nif
	test/consumers/mix_consumer.sh
	test/consumers/rebar3_consumer.sh

# The same suite under AddressSanitizer + UBSan, in a separate build tree.
SAN_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=all
asan: $(CTL_BIN) $(FAULT_BINS)
	$(MAKE) BUILD=build/asan CC=clang CFLAGS="$(SAN_CFLAGS)" \
	  build/asan/esdb_tests
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ESDB_CRASH_KILLS=5 ESDB_CORRUPT_RUNS=100 \
	  ESDB_POWERLOSS_SEEDS=30 build/asan/esdb_tests

# The replica suite under ASan+UBSan, fewer kills. Its node processes are
# leak-checked when they exit; test/c/replica/lsan.supp names a leak
# inside raft itself. Nodes are started by fork+exec (spawn.c): forked
# alone from the multi-threaded test process, one hung in CI on ASan's
# allocator lock.
asan-replica: $(RAFT_LIB)
	$(MAKE) BUILD=build/asan CC=clang CFLAGS="$(SAN_CFLAGS)" \
	  build/asan/esdb_replica_tests
	ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=test/c/replica/lsan.supp \
	  UBSAN_OPTIONS=print_stacktrace=1 ESDB_REPLICA_KILLS=2 ESDB_PARTITION_CYCLES=1 build/asan/esdb_replica_tests

valgrind: $(TEST_BIN) $(FAULT_BINS)
	ESDB_MODEL_OPS=3000 ESDB_CRASH_KILLS=3 ESDB_CORRUPT_RUNS=0 ESDB_POWERLOSS_SEEDS=0 ESDB_TERM_FUZZ=3000 ESDB_CNODE_TERM_FUZZ=3000 valgrind --error-exitcode=99 --fair-sched=yes --leak-check=full \
	  --errors-for-leak-kinds=definite --show-possibly-lost=no --trace-children=no $(TEST_BIN)

# libFuzzer targets for the record and command decoders, with ASan and
# UBSan (SAN_CFLAGS); ESDB_FUZZ_SECONDS per target (20 in make test;
# docs/TESTING.md has longer runs). Corpora stay in build/fuzz/corpus-*.
ESDB_FUZZ_SECONDS ?= 20
FUZZ_TARGETS := records commands cnode_frames
fuzz: $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_TARGETS))
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus-$$t; \
	  echo "fuzz_$$t: $(ESDB_FUZZ_SECONDS) s"; \
	  if build/fuzz/fuzz_$$t -max_total_time=$(ESDB_FUZZ_SECONDS) \
	    -print_final_stats=1 build/fuzz/corpus-$$t > build/fuzz/$$t.log 2>&1; \
	  then grep -E "number_of_executed_units|Done" build/fuzz/$$t.log; \
	  else tail -40 build/fuzz/$$t.log; exit 1; fi; \
	done

# The C node's validator, envelope parsers and argument decoders, with ei
# decoding what they accept.
CNODE_FUZZ_SRC := c_src/cnode/term_check.c c_src/cnode/envelope.c c_src/cnode/args.c c_src/cnode/session_ops.c
build/fuzz/fuzz_cnode_frames: c_src/fuzz/fuzz_cnode_frames.c $(CNODE_FUZZ_SRC) c_src/cnode/*.h $(PROTO_DEPS) c_src/core/*.c c_src/core/*.h
	$(MAKE) BUILD=build/fuzz CC=clang \
	  CFLAGS="$(SAN_CFLAGS) -fsanitize=fuzzer-no-link" build/fuzz/libesdb_core.a
	clang $(CPPFLAGS) -Ic_src/cnode -Ic_src/proto -I$(EI_DIR)/include $(SAN_CFLAGS) -fsanitize=fuzzer $(WARN) \
	  $< $(CNODE_FUZZ_SRC) $(PROTO_SRC) build/fuzz/libesdb_core.a -L$(EI_DIR)/lib -lei $(LDLIBS) -lz -o $@

build/fuzz/fuzz_%: c_src/fuzz/fuzz_%.c c_src/core/*.c c_src/core/*.h
	$(MAKE) BUILD=build/fuzz CC=clang \
	  CFLAGS="$(SAN_CFLAGS) -fsanitize=fuzzer-no-link" build/fuzz/libesdb_core.a
	clang $(CPPFLAGS) $(SAN_CFLAGS) -fsanitize=fuzzer $(WARN) $< \
	  build/fuzz/libesdb_core.a $(LDLIBS) -o $@

# Benchmarks write under $(BENCH_DIR) (on the data disk by default).
BENCH_DIR ?= $(BUILD)/bench-data
# The C runs the BEAM runs are compared with; the runs that build
# multi-GB stores go last, as their writeback slows every flush after.
BENCH_FAST := raw_fdatasync,append_single_durable,append_single_no_meta_sync,append_concurrent64_durable,append_concurrent64_no_meta_sync,append_concurrent64_threads_durable,append_batch100_one_stream_durable,append_batch100_one_stream_no_meta_sync,append_concurrent64_batch100_durable,append_batch100_10k_streams_durable,read_stream_forward,read_all_forward
bench: $(BENCH_BIN) nif
	@mkdir -p $(BENCH_DIR)
	$(BENCH_BIN) --only $(BENCH_FAST) $(BENCH_DIR) | tee $(BUILD)/bench-c.json
	ESDB_C_BENCH_JSON=$(BUILD)/bench-c.json MIX_ENV=prod mix run bench/beam_bench.exs $(BENCH_DIR)
	MIX_ENV=prod mix run bench/cnode_bench.exs $(BENCH_DIR)
	@# raft alone (raft3_*) and the store's cluster (cluster3_*), 3 processes
	@# on loopback, interleaved in one run: the ratios are of the same run.
	@if [ -f $(RAFT_LIB) ]; then $(MAKE) --no-print-directory $(CLUSTER_BENCH_BIN) && \
	  $(CLUSTER_BENCH_BIN) $(BENCH_DIR) | tee $(BUILD)/bench-raft.json; \
	else echo "raft3/cluster3 benchmarks skipped: raft is not built (make raft)"; fi
	$(BENCH_BIN) --only reopen_10m,append_latency $(BENCH_DIR) | grep -v '"machine"'
	@if [ -n "$(COMMANDED_PATH)" ] && [ -f "$(COMMANDED_PATH)/mix.exs" ]; then \
	  COMMANDED_PATH="$(COMMANDED_PATH)" MIX_ENV=test mix run bench/commanded_bench.exs $(BENCH_DIR)/commanded; \
	else echo "commanded bench skipped: set COMMANDED_PATH (see make test-commanded)"; fi

fmt:
	clang-format -i c_src/*/*.[ch] test/c/*.[ch] test/c/fault/*.c test/c/replica/*.[ch] test/c/raft/*.[ch] test/cnode/*.c
	mix format

fmt-check:
	clang-format --dry-run --Werror c_src/*/*.[ch] test/c/*.[ch] test/c/fault/*.c test/c/replica/*.[ch] test/c/raft/*.[ch] test/cnode/*.c
	mix format --check-formatted

clean:
	rm -rf build _build _rebar3 priv/*.so $(CTL_BIN) $(CNODE_BIN)
