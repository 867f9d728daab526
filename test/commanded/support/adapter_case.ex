defmodule ExESDB.Commanded.AdapterCase do
  @moduledoc false
  # Compiled only with COMMANDED_PATH set (mix.exs). Starts
  # ExESDB.Commanded.Adapter for each test the way Commanded's own
  # InMemoryTestCase starts its InMemory adapter: child_spec/2, every child
  # under the test supervisor, event_store_meta into the context. Each store
  # gets a fresh directory under the system temp dir, removed afterwards.
  use ExUnit.CaseTemplate

  alias Commanded.Serialization.JsonSerializer
  alias ExESDB.Commanded.Adapter
  alias ExESDB.Test.{ClusterBackend, ClusterHelpers}

  # @moduletag cnode: true: the store in a C node (backend: :cnode)
  # @moduletag cluster: true: the store a member of a 3-node cluster, this
  # node and the two :peer nodes of ExESDB.Test.ClusterBackend
  setup context do
    {:ok, event_store_meta} =
      cond do
        context[:cnode] -> start_event_store(backend: :cnode)
        context[:cluster] -> start_cluster_event_store(context)
        true -> start_event_store([])
      end

    [event_store_meta: event_store_meta]
  end

  # Commanded's one case that calls Process.alive?/1 on the subscription
  # (local pids only): its subscription runs here, this node leading.
  @local_subscription :"test subscription process should not stop subscriber process when subscription down"

  @doc """
  The adapter's store on this node as a member of a 3-node cluster, the
  peers' members started first. A peer leads (this node's writes go
  through the gateway, persistent subscriptions run there) unless the
  context's `leader: :here`.
  """
  def start_cluster_event_store(context, config \\ []) do
    {:ok, _, %{store: store}} = Adapter.child_spec(Adapter, config)
    dir = Path.join(System.tmp_dir!(), "ex_esdb_commanded_#{ExESDB.Test.Unique.id()}")
    opts = ClusterBackend.start_peers(store, dir, context)
    {:ok, meta} = start_event_store(config ++ [data_dir: "#{dir}/local"] ++ opts)
    ClusterBackend.wait_leader(store)
    here? = context[:leader] == :here or context[:test] == @local_subscription
    lead(store, if(here?, do: node(), else: hd(:persistent_term.get({ClusterBackend, :peers}))))
    {:ok, meta}
  end

  @doc """
  Hand `store`'s leadership to `target`; returns once every member names it.
  A transfer no node took up in time (`:timeout`, under load) is tried again.
  """
  def lead(store, target) do
    nodes = [node() | :persistent_term.get({ClusterBackend, :peers})]

    ClusterHelpers.wait_until(
      fn ->
        if ExESDB.Cluster.leader(store) != {:ok, target}, do: ExESDB.Cluster.transfer(store, target)
        Enum.all?(nodes, &(:erpc.call(&1, ExESDB.Cluster, :leader, [store]) == {:ok, target}))
      end,
      30_000
    )
  end

  @doc "Start one adapter instance under the test supervisor; `{:ok, event_store_meta}`."
  def start_event_store(config) do
    data_dir = Path.join(System.tmp_dir!(), "ex_esdb_commanded_#{ExESDB.Test.Unique.id()}")

    on_exit(fn -> File.rm_rf!(data_dir) end)

    config =
      config
      |> Keyword.put_new(:serializer, JsonSerializer)
      |> Keyword.put_new(:data_dir, data_dir)
      |> Keyword.put_new(:durability, :nosync)

    {:ok, child_spec, event_store_meta} = Adapter.child_spec(Adapter, config)

    for child <- List.wrap(child_spec) do
      start_supervised!(child)
    end

    {:ok, event_store_meta}
  end
end
