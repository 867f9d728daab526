defmodule ExESDB.Test.PeerCluster do
  @moduledoc false
  # A cluster of :peer nodes for the cluster tests: start a whole
  # cluster (start/3), or start and stop a node's VM and its store, wipe
  # its data directory, and compare replicas.

  import ExESDB.Test.ClusterHelpers

  alias ExESDB.Test.ClusterPeer

  @doc "A context for n nodes, the first `seeds` of them the seed list."
  def context(store, n, seeds) do
    u = ExESDB.Test.Unique.id()
    dir = Path.join(System.tmp_dir!(), "ex_esdb_peers_#{u}")
    File.rm_rf!(dir)
    [_, host] = node() |> Atom.to_string() |> String.split("@")
    names = for i <- 1..n, do: :"rs#{u}_#{i}"
    all = for name <- names, do: :"#{name}@#{host}"
    addrs = Map.new(Enum.zip(all, free_ports(n)), fn {nd, p} -> {nd, "127.0.0.1:#{p}"} end)

    %{
      store: store,
      dir: dir,
      names: names,
      all: all,
      seeds: Enum.take(all, seeds),
      addrs: addrs,
      peers: :ets.new(:peers, [:public, :set])
    }
  end

  @doc """
  A running cluster of n nodes, every one a seed, for a test's setup:
  context/3's map with nodes, the leader they agree on and a follower.
  opts: store options for every node (over store_opts/3's), and :env,
  fn ctx, i -> node i's OS environment.
  """
  def start(store, n, opts \\ []) do
    {env, opts} = Keyword.pop(opts, :env, fn _, _ -> [] end)
    ctx = context(store, n, n)
    File.mkdir_p!(ctx.dir)
    ExUnit.Callbacks.on_exit(fn -> File.rm_rf(ctx.dir) end)
    for i <- 1..n, do: boot(ctx, i, env.(ctx, i))
    tasks = for i <- 1..n, do: Task.async(fn -> start_store(ctx, i, opts) end)
    Enum.each(tasks, &Task.await(&1, 125_000))
    leader = agreed_leader(ctx, ctx.all, 60_000)
    Map.merge(ctx, %{nodes: ctx.all, leader: leader, follower: hd(ctx.all -- [leader])})
  end

  def node_of(ctx, i), do: Enum.at(ctx.all, i - 1)
  def index_of(ctx, node), do: Enum.find_index(ctx.all, &(&1 == node)) + 1

  @doc "Start the VM of node i (without the store), with env its OS environment."
  def boot(ctx, i, env \\ []) do
    # a stopped peer must not make global cut the others' connections
    args =
      [~c"-connect_all", ~c"false"] ++
        [~c"-kernel", ~c"prevent_overlapping_partitions", ~c"false"] ++
        Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

    # a VM's boot may take over :peer's default 15 s on a loaded machine
    {:ok, peer, node} =
      ExESDB.Test.Peer.start(%{
        name: Enum.at(ctx.names, i - 1),
        args: args,
        env: env,
        wait_boot: 60_000
      })

    :ets.insert(ctx.peers, {i, peer})
    node
  end

  def data_dir(ctx, i), do: Path.join(ctx.dir, "n#{i}")

  def start_store(ctx, i, extra \\ []) do
    :ok = :erpc.call(node_of(ctx, i), ClusterPeer, :start, [store_opts(ctx, i, extra)], 120_000)
  end

  def store_opts(ctx, i, extra \\ []) do
    Keyword.merge(
      [
        store_id: ctx.store,
        data_dir: data_dir(ctx, i),
        db_type: :cluster,
        seed_nodes: Enum.shuffle(ctx.seeds),
        raft_addresses: ctx.addrs,
        election_timeout: 500,
        heartbeat: 20,
        timeout: 10_000,
        durability: :nosync
      ],
      extra
    )
  end

  def stop(ctx, i) do
    [{^i, peer}] = :ets.lookup(ctx.peers, i)
    :peer.stop(peer)
    :ets.delete(ctx.peers, i)
  end

  @doc "Stop node i and remove its data directory (a lost disk)."
  def wipe(ctx, i) do
    stop(ctx, i)
    File.rm_rf!(data_dir(ctx, i))
  end

  def info(ctx, node), do: elem(:erpc.call(node, ExESDB.Cluster, :info, [ctx.store]), 1)

  @doc "The leader every given node agrees on."
  def agreed_leader(ctx, nodes, ms \\ 20_000) do
    wait_until(
      fn ->
        leaders = Enum.map(nodes, &info(ctx, &1).leader)
        l = hd(leaders)
        l in nodes and Enum.all?(leaders, &(&1 == l)) and l
      end,
      ms
    )
  end

  def members(ctx, node) do
    {:ok, ms} = :erpc.call(node, ExESDB.Cluster, :members, [ctx.store])
    ms
  end

  def dump(ctx, node), do: :erpc.call(node, ClusterPeer, :dump, [ctx.store])

  @doc "Every given replica ends with the same events: those events."
  def assert_same_replicas(ctx, nodes, ms \\ 30_000) do
    wait_until(fn -> same?(ctx, nodes) end, ms)
    dump(ctx, hd(nodes))
  end

  # a store restarting (from a copy of a member's) is not the same yet
  defp same?(ctx, nodes) do
    nodes |> Enum.map(&dump(ctx, &1)) |> Enum.uniq() |> length() == 1
  catch
    _, _ -> false
  end

  @doc "Wait until node's replica runs (its store restarts from a copy when it needs one)."
  def wait_running(ctx, node, ms \\ 60_000) do
    wait_until(
      fn ->
        try do
          i = info(ctx, node)
          i.failure == nil and not i.needs_copy
        catch
          _, _ -> false
        end
      end,
      ms
    )
  end

  @doc "n one-event appends on node, their ids (each acknowledged)."
  def append_n(ctx, node, stream, n) do
    for _ <- 1..n do
      id = ExESDB.UUID.uuid4()
      {:ok, _} = :erpc.call(node, ClusterPeer, :append, [ctx.store, stream, id])
      id
    end
  end

  def bin(id), do: elem(ExESDB.UUID.to_binary(id), 1)

  @doc "The acknowledged ids absent from events."
  def missing(events, acked) do
    ids = MapSet.new(events, &elem(&1, 3))
    for id <- acked, not MapSet.member?(ids, bin(id)), do: id
  end
end
