#!/bin/sh
# `make cluster-demo`: three nodes of a db_type: :cluster store on this
# machine (n1, n2, n3 @127.0.0.1), each with its own data directory and
# raft port, formed from seed_nodes; a fourth node (the driver, drive.exs)
# writes on one and reads on another, stops the leader and writes again.
# Every node's log is in $DEMO_DIR (build/cluster-demo). Ports: raft on
# $DEMO_RAFT_PORT+1..+3 (7420 unless set), or the three of
# $DEMO_RAFT_PORTS ("p1 p2 p3"). $DEMO_PREFIX goes before every node name
# (the test that runs this demo keeps its names apart from others').
set -eu
cd "$(dirname "$0")/../.."
DEMO_DIR=${DEMO_DIR:-build/cluster-demo}
BASE=${DEMO_RAFT_PORT:-7420}
PORTS=${DEMO_RAFT_PORTS:-"$((BASE + 1)) $((BASE + 2)) $((BASE + 3))"}
P=${DEMO_PREFIX:-}
COOKIE=ex_esdb_cluster_demo
STORE=demo
set -- $PORTS
NODES="${P}n1@127.0.0.1,${P}n2@127.0.0.1,${P}n3@127.0.0.1"
ADDRS="${P}n1@127.0.0.1=127.0.0.1:$1,${P}n2@127.0.0.1=127.0.0.1:$2,${P}n3@127.0.0.1=127.0.0.1:$3"

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
mix compile >/dev/null
epmd -daemon -address 127.0.0.1

PIDS=""
stop_nodes() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
}
trap stop_nodes EXIT INT TERM

for i in 1 2 3; do
    # the same variables a node of a real deployment would be given
    EX_ESDB_DB_TYPE=cluster EX_ESDB_STORE_ID=$STORE \
    EX_ESDB_DATA_DIR="$DEMO_DIR/n$i" \
    EX_ESDB_SEED_NODES=$NODES EX_ESDB_RAFT_ADDRESSES=$ADDRS \
        elixir --name "${P}n$i@127.0.0.1" --cookie $COOKIE \
        -S mix run --no-compile --no-halt examples/cluster/node.exs \
        >"$DEMO_DIR/n$i.log" 2>&1 &
    PIDS="$PIDS $!"
done

# The driver watches a member stop on purpose: global's partition
# guard would only log about it.
if elixir --name "${P}driver@127.0.0.1" --cookie $COOKIE \
    --erl "-kernel prevent_overlapping_partitions false" \
    -S mix run --no-compile examples/cluster/drive.exs \
    $STORE "${P}n1@127.0.0.1" "${P}n2@127.0.0.1" "${P}n3@127.0.0.1"; then
    exit 0
else
    echo "cluster demo: FAIL (node logs in $DEMO_DIR)" >&2
    for i in 1 2 3; do echo "--- n$i"; tail -20 "$DEMO_DIR/n$i.log"; done >&2
    exit 1
fi
