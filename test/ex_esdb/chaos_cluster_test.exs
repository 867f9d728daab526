defmodule ExESDB.ChaosClusterTest do
  # Issue 14: the chaos workload and checker on a 3-node cluster (:peer
  # nodes, raft over loopback): clients on every node, local reads; once
  # without faults, once with the leader stopped under load (the
  # survivors' final state checked).
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers

  alias ExESDB.Chaos.Workload
  alias ExESDB.Test.ClusterPeer

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 300_000

  @store :chaos

  setup do
    u = System.unique_integer([:positive])
    dir = Path.join(System.tmp_dir!(), "ex_esdb_chaos_#{u}")
    File.rm_rf!(dir)
    [_, host] = node() |> Atom.to_string() |> String.split("@")
    names = for i <- 1..3, do: :"ch#{u}_#{i}"
    seeds = for n <- names, do: :"#{n}@#{host}"
    addrs = Map.new(Enum.zip(seeds, free_ports(3)), fn {n, p} -> {n, "127.0.0.1:#{p}"} end)
    on_exit(fn -> File.rm_rf(dir) end)

    args =
      [~c"-kernel", ~c"prevent_overlapping_partitions", ~c"false"] ++
        Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

    # the peers are linked to the test process: they stop with it
    peers =
      for n <- names do
        {:ok, peer, _node} = :peer.start(%{name: n, args: args})
        peer
      end

    for {node, i} <- Enum.with_index(seeds, 1) do
      opts = [
        store_id: @store,
        data_dir: Path.join(dir, "n#{i}"),
        db_type: :cluster,
        seed_nodes: seeds,
        raft_addresses: addrs,
        election_timeout: 500,
        heartbeat: 50,
        timeout: 10_000,
        durability: :nosync
      ]

      :ok = :erpc.call(node, ClusterPeer, :start, [opts])
    end

    leader = agreed_leader(seeds)
    %{nodes: seeds, peers: Map.new(Enum.zip(seeds, peers)), leader: leader, dir: dir}
  end

  defp info(node), do: elem(:erpc.call(node, ExESDB.Cluster, :info, [@store]), 1)

  defp agreed_leader(nodes) do
    wait_until(fn ->
      leaders = Enum.map(nodes, &info(&1).leader)
      l = hd(leaders)
      l in nodes and Enum.all?(leaders, &(&1 == l)) and l
    end)
  end

  defp run(ctx, opts) do
    [
      store: @store,
      nodes: ctx.nodes,
      clients: 6,
      ops: 40,
      subscribers: 0,
      consistency: :local,
      label: "cluster3"
    ]
    |> Keyword.merge(opts)
    |> Keyword.merge(Workload.env_opts())
    |> Workload.run()
  end

  test "a workload on three nodes passes the checker", ctx do
    %{verdict: v} = run(ctx, subscribers: 3)
    assert v.valid?, inspect(v.anomalies, pretty: true, limit: 30)
    assert v.stats.acknowledged > 0 and v.stats.replicas == 3
    assert v.stats.deliveries >= 3 * v.stats.events[hd(ctx.nodes)]
  end

  test "the leader stopped under load: the survivors pass the checker", ctx do
    survivors = ctx.nodes -- [ctx.leader]

    nemesis = fn ->
      # some load acknowledged first
      wait_until(fn -> info(ctx.leader).applied > 50 end, 30_000)
      :peer.stop(ctx.peers[ctx.leader])
      assert agreed_leader(survivors) != ctx.leader
    end

    %{verdict: v} = run(ctx, nemesis: nemesis, replicas: survivors, ops: 80)
    assert v.valid?, inspect(v.anomalies, pretty: true, limit: 30)
    assert v.stats.acknowledged > 0 and v.stats.replicas == 2
  end
end
