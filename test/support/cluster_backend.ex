defmodule ExESDB.Test.ClusterBackend do
  @moduledoc false
  # For the conformance suites on a cluster: start_store(context) starts a
  # fresh cluster store (db_type: :cluster) on three nodes, this VM and
  # two :peer nodes, raft on loopback, for one test. The peers are
  # started once per test run by a process of their own and kept.

  import ExESDB.Test.ClusterHelpers

  def start_store(context) do
    store = :"cstore_#{ExESDB.Test.Unique.id()}"
    dir = Path.join(System.tmp_dir!(), "ex_esdb_test/#{store}")
    local = [data_dir: "#{dir}/local"] ++ start_peers(store, dir, context)
    {:ok, pid} = ExUnit.Callbacks.start_supervised({ExESDB.System, local})
    wait_leader(store)
    %{store: store, data_dir: "#{dir}/local", system: pid, store_opts: local}
  end

  @doc """
  Start `store` on the two peers (data under `dir`, removed first and
  after the test) and answer the cluster options for this node's
  member of it, without its `data_dir`: for a store this node starts
  its own way (the Commanded adapter's child_spec).
  """
  def start_peers(store, dir, context) do
    peers = peers()
    File.rm_rf!(dir)
    seeds = [node() | peers]
    addrs = Map.new(Enum.zip(seeds, free_ports(3)), fn {n, p} -> {n, "127.0.0.1:#{p}"} end)

    opts =
      [
        store_id: store,
        db_type: :cluster,
        seed_nodes: seeds,
        raft_addresses: addrs,
        election_timeout: 200,
        heartbeat: 20,
        durability: :nosync
      ] ++ Map.get(context, :store_opts, [])

    for p <- peers do
      load_test_module(p, context)
      :ok = :erpc.call(p, ExESDB.Test.ClusterPeer, :start, [[data_dir: "#{dir}/#{p}"] ++ opts])
    end

    ExUnit.Callbacks.on_exit(fn ->
      for p <- peers, do: :erpc.call(p, ExESDB.System, :stop, [store])
      File.rm_rf(dir)
    end)

    opts
  end

  @doc "Wait until every node of `store`'s cluster knows its leader."
  def wait_leader(store) do
    wait_until(fn ->
      Enum.all?([node() | peers()], fn n ->
        match?({:ok, %{leader: l}} when l != nil, :erpc.call(n, ExESDB.Cluster, :info, [store]))
      end)
    end)
  end

  @doc """
  For `@after_compile {ExESDB.Test.ClusterBackend, :keep_code}` in a test
  module: its code is kept, to be loaded on the peers. A persistent
  subscription runs on the leader, which calls the test's funs
  (partition_by, transform); test modules are compiled in memory, out of
  the peers' code path.
  """
  def keep_code(env, bytecode),
    do: :persistent_term.put({__MODULE__, :code, env.module}, bytecode)

  @doc """
  A compiler tracer (`Code.put_compiler_option(:tracers, [...])`, set by
  test_helper.exs for test/commanded) keeping the code of every module
  compiled under `ExESDB.Commanded.`: Commanded's test cases define their
  event structs inside the test module, and the leader's transform decodes
  into them.
  """
  def trace({:on_module, bin, _}, %{module: mod}) when is_binary(bin) do
    if String.starts_with?(Atom.to_string(mod), "Elixir.ExESDB.Commanded."),
      do: :persistent_term.put({__MODULE__, :code, mod}, bin)

    :ok
  end

  def trace(_event, _env), do: :ok

  # The test module and the modules defined inside it, as kept.
  defp load_test_module(peer, context) do
    with mod when is_atom(mod) <- Map.get(context, :module) do
      prefix = "#{mod}."

      for {{__MODULE__, :code, m}, bin} <- :persistent_term.get(),
          m == mod or String.starts_with?(Atom.to_string(m), prefix),
          :erpc.call(peer, :code, :is_loaded, [m]) == false do
        {:module, ^m} = :erpc.call(peer, :code, :load_binary, [m, ~c"#{m}.beam", bin])
      end
    end
  end

  # Stop this node's system (its replica; the peers keep theirs).
  def stop_store(%{store: store}),
    do: ExUnit.Callbacks.stop_supervised!(ExESDB.System.system_name(store))

  # Stop this node's system and start it again on the same data: its
  # replica rejoins from its raft log.
  def restart_store(%{store: store, store_opts: opts}) do
    ExUnit.Callbacks.stop_supervised!(ExESDB.System.system_name(store))
    ExUnit.Callbacks.start_supervised!({ExESDB.System, opts})
    wait_until(fn -> match?({:ok, %{leader: l}} when l != nil, ExESDB.Cluster.info(store)) end)
    :ok
  end

  # The two peer nodes, started on first use and held by a process that
  # outlives the tests.
  defp peers do
    case :persistent_term.get({__MODULE__, :peers}, nil) do
      nil ->
        caller = self()

        spawn(fn ->
          # kept for the whole run: out of global's mesh with other
          # tests' peers (connections are made as calls need them)
          args =
            [~c"-connect_all", ~c"false"] ++
              [~c"-kernel", ~c"prevent_overlapping_partitions", ~c"false"] ++
              Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

          u = ExESDB.Test.Unique.id()

          nodes =
            for i <- 1..2 do
              {:ok, _peer, node} = ExESDB.Test.Peer.start(%{name: :"cpeer#{u}_#{i}", args: args})
              node
            end

          :persistent_term.put({__MODULE__, :peers}, nodes)
          send(caller, {:peers, nodes})
          Process.sleep(:infinity)
        end)

        receive do
          {:peers, nodes} -> nodes
        after
          30_000 -> raise "peer nodes did not start"
        end

      nodes ->
        nodes
    end
  end
end
