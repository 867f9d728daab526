defmodule ExESDB.ClusterCopyLeaderTest do
  # A replica waiting for a copy of a member's store (`needs_copy`) that
  # leads refuses writes: it hands leadership to another voter instead
  # of holding it (before: it kept it, and every write answered
  # :no_quorum / :not_leader until its copy came), and a transfer named
  # at it is refused (`{:cannot_lead, node}`). Three :peer nodes,
  # raft over TCP on loopback; the copy is held off by a directory where
  # the incoming copy's file would be written (its fetch fails with
  # EISDIR and is retried).
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  import ExESDB.Test.PeerCluster

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 180_000

  @store :cltest
  # a (marker) snapshot every 32 entries, 128 kept: 400 entries behind
  # is beyond the trailing window
  @small_snapshots [snapshot_threshold: 32, snapshot_trailing_bytes: 1]

  setup do
    ctx = context(@store, 3, 3)
    on_exit(fn -> File.rm_rf(ctx.dir) end)
    ctx
  end

  test "a leader waiting for a copy hands leadership to a voter; writes go on", ctx do
    for i <- 1..3, do: boot(ctx, i)
    for i <- 1..3, do: start_store(ctx, i, @small_snapshots)
    nodes = ctx.seeds
    # f: the lowest raft id, the voter raft itself picks first for a
    # transfer to no node in particular
    f = hd(nodes)
    leader = agreed_leader(ctx, nodes)

    leader =
      if leader == f do
        :ok = :erpc.call(f, ExESDB.Cluster, :transfer, [@store, Enum.at(nodes, 1)], 60_000)
        wait_until(fn -> (l = agreed_leader(ctx, nodes)) != f and l end, 30_000)
      else
        leader
      end

    acked = append_n(ctx, leader, "s", 10)
    assert_same_replicas(ctx, nodes)

    fi = index_of(ctx, f)
    stop(ctx, fi)
    acked = acked ++ append_n(ctx, leader, "s", 400)
    blocker = Path.join([data_dir(ctx, fi), "#{@store}", "data.mdb.incoming.tmp"])
    File.mkdir_p!(blocker)
    boot(ctx, fi)
    start_store(ctx, fi, @small_snapshots)
    wait_until(fn -> info(ctx, f).needs_copy end, 60_000)

    # A transfer named at f is refused at once, asked on the leader, on
    # the other follower or on f itself, and f never leads (before: raft
    # handed f leadership, f handed it on, and the call answered :ok or
    # :timeout)
    l0 = agreed_leader(ctx, nodes)
    watcher = :erpc.call(f, ExESDB.Test.ClusterPeer, :watch_leading, [@store, self()])

    for n <- [l0 | nodes -- [l0]] do
      assert {:error, {:cannot_lead, ^f}} =
               :erpc.call(n, ExESDB.Cluster, :transfer, [@store, f], 60_000),
             "transfer to f asked on #{n}"
    end

    send(watcher, :stop)
    assert_receive {:led, ^watcher, []}, 30_000

    # f takes leadership while it still waits for its copy, by raft's
    # transfer on the leader, below the refusal above (two elections:
    # f's, then the one it hands leadership on with; it answers :timeout
    # when f handed leadership back to the leader before it looked, and
    # is tried again when f did not take it)
    t0 = info(ctx, f).term
    fid = info(ctx, f).id

    wait_until(
      fn ->
        l = info(ctx, leader).leader

        if l not in [nil, f],
          do: :erpc.call(l, ExESDB.Backend.Cluster, :transfer_on_leader, [@store, fid], 60_000)

        info(ctx, f).term >= t0 + 2
      end,
      60_000
    )

    # it hands it on to a voter that is not waiting (its C replica does,
    # c_src/replica), and writes through the others are acknowledged
    wait_until(fn -> info(ctx, f).leader not in [nil, f] end, 20_000)
    assert info(ctx, f).needs_copy
    acked = acked ++ Enum.flat_map(nodes -- [f], &append_n(ctx, &1, "s", 3))

    # a planned transfer to no node in particular goes to the voter that
    # can serve, never through f (before: raft picked f, which led in a
    # term of its own only to hand leadership on)
    l1 = agreed_leader(ctx, nodes)
    [g] = nodes -- [f, l1]
    # (an election of its own at load 20+ may follow: the term may move
    # on and leadership end elsewhere, but f never leads)
    t1 = info(ctx, f).term
    watcher = :erpc.call(f, ExESDB.Test.ClusterPeer, :watch_leading, [@store, self()])
    assert :ok = :erpc.call(l1, ExESDB.Cluster, :transfer, [@store, nil], 60_000)
    l2 = agreed_leader(ctx, nodes)
    send(watcher, :stop)
    assert_receive {:led, ^watcher, led}, 30_000
    assert led == [], "f led in terms #{inspect(led, charlists: :as_lists)} (term before: #{t1})"
    assert l2 != f
    t2 = info(ctx, f).term
    assert t2 >= t1 + 1
    # one election only: the transfer's, won by g
    if t2 == t1 + 1, do: assert(l2 == g)
    assert info(ctx, f).needs_copy

    # the copy allowed in: f catches up with every acknowledged write
    File.rm_rf!(blocker)
    wait_running(ctx, f)
    acked = acked ++ append_n(ctx, f, "s", 5)
    events = assert_same_replicas(ctx, nodes, 60_000)
    assert missing(events, acked) == []
  end
end
