defmodule ExESDB.ClusterWipedSeedTest do
  # A seed that lost its data directory, restarted while the other seeds'
  # VMs are up but none runs the store (a whole cluster restarting, the
  # wiped seed first): it must not write the seed configuration (it
  # would come back as the voter it was, with an empty log and no memory
  # of its vote). The others answer that they hold the store's raft state
  # on their disks, so it waits until one runs the store, then comes back
  # as a new member from a copy. Before: `initial_cluster: :auto` took
  # their answers for a first formation and bootstrapped. Three :peer
  # nodes, raft over TCP on loopback.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  import ExESDB.Test.PeerCluster

  alias ExESDB.Cluster.Seeding

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 240_000

  @store :wstest

  setup do
    ctx = context(@store, 3, 3)
    on_exit(fn -> File.rm_rf(ctx.dir) end)
    ctx
  end

  defp seed_id(ctx, node), do: Enum.find_index(Enum.sort(ctx.seeds), &(&1 == node)) + 1

  defp raft_state?(ctx, i),
    do: File.exists?(Path.join([data_dir(ctx, i), "#{@store}", "raft", "node_id"]))

  defp rounds(ctx, node) do
    case :erpc.call(node, Seeding, :forming_status, [ctx.store]) do
      {:forming, n} -> n
      :no -> 0
    end
  catch
    _, _ -> 0
  end

  # the first warning logged (forwarded from a peer) that contains text
  defp warned_with(text) do
    receive do
      {:log, :warning, msg} -> if msg =~ text, do: msg, else: warned_with(text)
    after
      30_000 -> flunk("no warning with #{inspect(text)}")
    end
  end

  test "a wiped seed waits while the seeds up hold raft state, then comes back from a copy", ctx do
    for i <- 1..3, do: boot(ctx, i)
    for i <- 1..3, do: start_store(ctx, i)
    nodes = ctx.seeds
    leader = agreed_leader(ctx, nodes)
    acked = append_n(ctx, leader, "s", 10)
    assert_same_replicas(ctx, nodes)

    [a, b, w] = nodes
    [ai, bi, wi] = Enum.map(nodes, &index_of(ctx, &1))

    wait_until(fn ->
      Enum.all?([a, b], fn n ->
        {:ok, m} = :erpc.call(n, ExESDB.Cluster, :member_nodes, [ctx.store])
        w in Map.values(m)
      end)
    end)

    # A's store stops, its VM stays (it remembers where its store was);
    # B's VM restarts without the store, its data_dir in its config
    :ok = :erpc.call(a, ExESDB.System, :stop, [ctx.store])
    stop(ctx, bi)
    boot(ctx, bi)
    :ok = :erpc.call(b, Application, :put_env, [:ex_esdb, :data_dir, data_dir(ctx, bi)])

    # W loses its disk and starts: it asks, and waits
    wipe(ctx, wi)
    boot(ctx, wi)
    ExESDB.Test.LogForward.add(w, self())
    starting = Task.async(fn -> start_store(ctx, wi) end)
    wait_until(fn -> raft_state?(ctx, wi) or rounds(ctx, w) >= 3 end, 60_000)
    refute raft_state?(ctx, wi), "the wiped seed bootstrapped as the voter it was"
    assert Task.yield(starting, 0) == nil

    for n <- [a, b],
        do: assert(:erpc.call(n, Seeding, :state, [ctx.store]) == {:error, :has_raft_state})

    # its warning says what it waits for: a member running the store
    # (before: "waits before it bootstraps", which it never does here)
    warned = warned_with("has no raft state")
    assert warned =~ "has no raft state and waits until a member runs the store"
    refute warned =~ "bootstraps:"

    # A and B run the store again: W comes back as a new member from a
    # copy, with every acknowledged event
    start_store(ctx, ai)
    start_store(ctx, bi)
    assert :ok = Task.await(starting, 120_000)
    wait_running(ctx, w)
    assert info(ctx, w).id != seed_id(ctx, w)
    acked = acked ++ append_n(ctx, w, "s", 3)
    events = assert_same_replicas(ctx, nodes, 60_000)
    assert missing(events, acked) == []
  end
end
