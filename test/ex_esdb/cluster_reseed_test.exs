defmodule ExESDB.ClusterReseedTest do
  # A replica that lost its data directory, or fell behind the entries
  # raft keeps, comes back from a copy of a member's store
  # (ExESDB.Cluster.Seeding), on three real BEAM nodes (:peer), raft over
  # TCP on loopback.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  import ExESDB.Test.PeerCluster

  alias ExESDB.Test.ClusterPeer

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 180_000

  @store :rstest

  setup do
    ctx = context(@store, 4, 3)
    on_exit(fn -> File.rm_rf(ctx.dir) end)
    ctx
  end

  # Every member's node is recorded in the replicated state of `node`'s
  # replica (what a wiped seed asks about when it comes back).
  defp wait_recorded(ctx, node, nodes) do
    wait_until(fn ->
      {:ok, m} = :erpc.call(node, ExESDB.Cluster, :member_nodes, [ctx.store])
      Enum.all?(nodes, &(&1 in Map.values(m)))
    end)
  end

  # The members as `node` knows them once they are `nodes`, every one a
  # voter (a member that came back under a new id is named once its
  # record is applied there).
  defp wait_voters(ctx, node, nodes, new \\ nil) do
    wait_until(
      fn ->
        ms = members(ctx, node)

        Enum.sort(Enum.map(ms, &elem(&1, 1))) == Enum.sort(nodes) and
          Enum.all?(ms, &(elem(&1, 2) == :voter)) and
          (new == nil or elem(List.keyfind(ms, new, 1), 0) != seed_id(ctx, new)) and ms
      end,
      30_000
    )
  end

  defp seed_id(ctx, node), do: Enum.find_index(Enum.sort(ctx.seeds), &(&1 == node)) + 1

  test "a wiped seed comes back as a new member and does not vote as the voter it was", ctx do
    for i <- 1..3, do: boot(ctx, i)
    for i <- 1..3, do: start_store(ctx, i)
    nodes = ctx.seeds
    a = agreed_leader(ctx, nodes)
    [b, w] = nodes -- [a]
    for n <- nodes, do: wait_recorded(ctx, n, nodes)

    # B stops; what A acknowledges now is on A and W only
    stop(ctx, index_of(ctx, b))
    acked = append_n(ctx, a, "w", 20)
    assert_same_replicas(ctx, [a, w])

    # W loses its disk, A stops: B and the wiped W are up, A is down
    wipe(ctx, index_of(ctx, w))
    stop(ctx, index_of(ctx, a))
    boot(ctx, index_of(ctx, b))
    start_store(ctx, index_of(ctx, b))
    boot(ctx, index_of(ctx, w))
    start_store(ctx, index_of(ctx, w))

    # Had W forgotten its vote as the voter it was, B (without the 20
    # events) would now win W's vote and lead; give it the time to.
    try do
      wait_until(fn -> info(ctx, b).leader != nil or info(ctx, w).leader != nil end, 3_000)
    rescue
      _ -> :no_leader
    end

    # a write on B, while A comes back
    late = ExESDB.UUID.uuid4()
    task = Task.async(fn -> :erpc.call(b, ClusterPeer, :append, [@store, "late", late], 60_000) end)
    boot(ctx, index_of(ctx, a))
    start_store(ctx, index_of(ctx, a))
    acked = if match?({:ok, _}, Task.await(task, 70_000)), do: [late | acked], else: acked

    # every acknowledged write on every node (before: the 20 were lost
    # on B, the leader W's vote made, and on W)
    try do
      wait_until(fn -> Enum.all?(nodes, &(missing(dump(ctx, &1), acked) == [])) end, 60_000)
    rescue
      _ ->
        lost = for n <- nodes, do: {n, length(missing(dump(ctx, n), acked))}
        flunk("acknowledged writes lost: #{inspect(lost)}")
    end

    events = assert_same_replicas(ctx, nodes, 60_000)
    assert length(events) == 21 or length(events) == 20

    # W is a voter under a new id; its old one is gone; one cluster
    leader = agreed_leader(ctx, nodes)

    ms = wait_voters(ctx, leader, nodes, w)
    {w_id, ^w, :voter} = List.keyfind(ms, w, 1)
    assert w_id != seed_id(ctx, w)
    assert info(ctx, w).id == w_id
    for n <- nodes, do: assert(wait_voters(ctx, n, nodes) == ms)
  end

  test "a wiped follower catches up from a copy while writes go on; writes on it land everywhere",
       ctx do
    for i <- 1..3, do: boot(ctx, i)
    for i <- 1..3, do: start_store(ctx, i)
    nodes = ctx.seeds
    leader = agreed_leader(ctx, nodes)
    w = hd(nodes -- [leader])
    for n <- nodes, do: wait_recorded(ctx, n, nodes)
    acked = append_n(ctx, leader, "s", 30)

    wipe(ctx, index_of(ctx, w))
    acked = acked ++ append_n(ctx, leader, "s", 30)
    boot(ctx, index_of(ctx, w))
    start_store(ctx, index_of(ctx, w))

    ms = wait_voters(ctx, leader, nodes, w)
    assert elem(List.keyfind(ms, w, 1), 0) != seed_id(ctx, w)

    acked = acked ++ append_n(ctx, w, "s", 10)
    events = assert_same_replicas(ctx, nodes)
    assert missing(events, acked) == []
    assert Enum.map(events, &elem(&1, 0)) == Enum.to_list(1..70)
  end

  # Raft takes a (marker) snapshot every 32 entries and keeps 128 after
  # it: a follower 400 entries behind gets a marker its store is behind.
  @small_snapshots [snapshot_threshold: 32, snapshot_trailing_bytes: 1]

  test "a follower restarted after the others took snapshots beyond its log catches up from a copy",
       ctx do
    for i <- 1..3, do: boot(ctx, i)
    for i <- 1..3, do: start_store(ctx, i, @small_snapshots)
    nodes = ctx.seeds
    leader = agreed_leader(ctx, nodes)
    f = hd(nodes -- [leader])
    acked = append_n(ctx, leader, "s", 10)
    assert_same_replicas(ctx, nodes)

    stop(ctx, index_of(ctx, f))
    acked = acked ++ append_n(ctx, leader, "s", 400)
    boot(ctx, index_of(ctx, f))
    start_store(ctx, index_of(ctx, f), @small_snapshots)

    events = assert_same_replicas(ctx, nodes, 60_000)
    assert missing(events, acked) == []
    assert Enum.map(events, &elem(&1, 0)) == Enum.to_list(1..410)
    # the same member, running, writing
    wait_running(ctx, f)
    assert info(ctx, f).id == seed_id(ctx, f)
    acked = acked ++ append_n(ctx, f, "s", 5)
    assert missing(assert_same_replicas(ctx, nodes), acked) == []
  end

  test "a node added while writes go on, with snapshots passing it, ends with the same contents",
       ctx do
    for i <- 1..4, do: boot(ctx, i)
    for i <- 1..3, do: start_store(ctx, i, @small_snapshots)
    seeds = ctx.seeds
    leader = agreed_leader(ctx, seeds)
    append_n(ctx, leader, "s", 300)
    test = self()

    writer =
      spawn_link(fn ->
        ids = Stream.repeatedly(&ExESDB.UUID.uuid4/0)

        Enum.reduce_while(ids, [], fn id, acc ->
          receive do
            :stop -> {:halt, send(test, {:acked, acc})}
          after
            0 ->
              {:ok, _} = :erpc.call(leader, ClusterPeer, :append, [@store, "w", id])
              {:cont, [id | acc]}
          end
        end)
      end)

    joiner = node_of(ctx, 4)
    start_store(ctx, 4, [join: true] ++ @small_snapshots)
    # raft's snapshots may pass the joiner's copy while it is caught up:
    # it restarts from a newer copy and the add is asked again
    wait_until(
      fn -> :erpc.call(hd(seeds), ExESDB.Cluster, :add, [@store, joiner]) == :ok end,
      60_000
    )

    all = seeds ++ [joiner]
    wait_voters(ctx, leader, all)
    # more entries, through the joiner, past the next snapshots
    wait_running(ctx, joiner)
    append_n(ctx, joiner, "j", 200)
    send(writer, :stop)
    assert_receive {:acked, acked}, 30_000

    events = assert_same_replicas(ctx, all, 60_000)
    assert missing(events, acked) == []
    assert info(ctx, joiner).failure == nil
  end

  test "a single-node store becomes the first member of a cluster; others join from copies of it",
       ctx do
    for i <- 1..3, do: boot(ctx, i)
    first = node_of(ctx, 1)
    # a single-node store with events, then stopped
    start_store(ctx, 1, db_type: :single)
    before = append_n(ctx, first, "old", 20)
    stop(ctx, 1)

    # the same directory in cluster mode, this node the one seed (with
    # the three seeds, a store holding commands is refused: the others
    # would bootstrap empty)
    boot(ctx, 1)

    # the refusal comes back as start's error, or as the exit of its link
    # when that reaches the calling process first
    refused =
      try do
        :erpc.call(first, ClusterPeer, :start, [store_opts(ctx, 1)])
      catch
        :exit, {:signal, {:shutdown, {:failed_to_start_child, ExESDB.Store, reason}}} -> reason
      else
        {:error, {:shutdown, {:failed_to_start_child, ExESDB.Store, reason}}} -> reason
        other -> other
      end

    assert {:cannot_open_store, _, :invalid_argument} = refused
    start_store(ctx, 1, seed_nodes: [first])
    assert agreed_leader(ctx, [first]) == first
    acked = before ++ append_n(ctx, first, "new", 5)
    assert info(ctx, first).id == 1

    for i <- 2..3 do
      start_store(ctx, i, join: true, seed_nodes: [first])
      n = node_of(ctx, i)
      wait_until(fn -> :erpc.call(first, ExESDB.Cluster, :add, [@store, n]) == :ok end, 60_000)
    end

    nodes = Enum.map(1..3, &node_of(ctx, &1))
    wait_voters(ctx, first, nodes)
    acked = acked ++ append_n(ctx, node_of(ctx, 3), "new", 5)
    events = assert_same_replicas(ctx, nodes)
    assert missing(events, acked) == []
    assert Enum.map(events, &elem(&1, 0)) == Enum.to_list(1..30)
  end

  test "a follower whose raft state cannot be read comes back from a copy under a new id", ctx do
    for i <- 1..3, do: boot(ctx, i)
    for i <- 1..3, do: start_store(ctx, i)
    nodes = ctx.seeds
    leader = agreed_leader(ctx, nodes)
    f = hd(nodes -- [leader])
    for n <- nodes, do: wait_recorded(ctx, n, nodes)
    acked = append_n(ctx, leader, "s", 20)
    assert_same_replicas(ctx, nodes)

    # raft refuses metadata of the wrong size (as it refuses a log that
    # ends before its snapshot, canonical/raft #199): the node cannot
    # start as the member it was
    stop(ctx, index_of(ctx, f))
    meta = Path.join([data_dir(ctx, index_of(ctx, f)), "rstest", "raft", "metadata1"])
    File.write!(meta, "garbage", [:append])
    acked = acked ++ append_n(ctx, leader, "s", 10)
    boot(ctx, index_of(ctx, f))
    start_store(ctx, index_of(ctx, f))

    ms = wait_voters(ctx, leader, nodes, f)
    assert elem(List.keyfind(ms, f, 1), 0) != seed_id(ctx, f)
    acked = acked ++ append_n(ctx, f, "s", 5)
    events = assert_same_replicas(ctx, nodes)
    assert missing(events, acked) == []
    assert Enum.map(events, &elem(&1, 0)) == Enum.to_list(1..35)
  end
end
