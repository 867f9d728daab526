defmodule ExESDB.Chaos.Cluster do
  @moduledoc false
  # A cluster store on n :peer nodes (raft over loopback) for the chaos
  # tests, and the workload run against it with their defaults.

  import ExESDB.Test.ClusterHelpers

  alias ExESDB.Chaos.Workload
  alias ExESDB.Test.ClusterPeer

  @doc "Start n peers with `store` in cluster mode; call from a test's setup."
  def start(store, n) do
    u = System.unique_integer([:positive])
    dir = Path.join(System.tmp_dir!(), "ex_esdb_chaos_#{u}")
    File.rm_rf!(dir)
    [_, host] = node() |> Atom.to_string() |> String.split("@")
    names = for i <- 1..n, do: :"ch#{u}_#{i}"
    seeds = for name <- names, do: :"#{name}@#{host}"
    addrs = Map.new(Enum.zip(seeds, free_ports(n)), fn {s, p} -> {s, "127.0.0.1:#{p}"} end)
    ExUnit.Callbacks.on_exit(fn -> File.rm_rf(dir) end)

    # a stopped peer must not make global cut the others' connections
    args =
      [~c"-kernel", ~c"prevent_overlapping_partitions", ~c"false"] ++
        Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

    # the peers are linked to the test process: they stop with it
    peers =
      for name <- names do
        {:ok, peer, _node} = :peer.start(%{name: name, args: args})
        peer
      end

    for {node, i} <- Enum.with_index(seeds, 1) do
      opts = [
        store_id: store,
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

    %{
      store: store,
      nodes: seeds,
      peers: Map.new(Enum.zip(seeds, peers)),
      leader: agreed_leader(store, seeds),
      dir: dir
    }
  end

  def info(store, node), do: elem(:erpc.call(node, ExESDB.Cluster, :info, [store]), 1)

  @doc "The leader every given node agrees on (bounded wait)."
  def agreed_leader(store, nodes) do
    wait_until(fn ->
      leaders = Enum.map(nodes, &info(store, &1).leader)
      l = hd(leaders)
      l in nodes and Enum.all?(leaders, &(&1 == l)) and l
    end)
  end

  @doc "The workload on the cluster: 6 clients × 40 operations, local reads."
  def run(ctx, opts) do
    [
      store: ctx.store,
      nodes: ctx.nodes,
      clients: 6,
      ops: 40,
      subscribers: 0,
      consistency: :local,
      label: "cluster#{length(ctx.nodes)}"
    ]
    |> Keyword.merge(opts)
    |> Keyword.merge(Workload.env_opts())
    |> Workload.run()
  end
end
