defmodule ExESDB.ClusterMemberRecordsTest do
  # Member records ("ex_esdb:member:<node>" checkpoints) are data: reading
  # them must not make atoms (a forged or stray record naming nodes
  # without end would fill the atom table and kill the VM).
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers

  alias ExESDB.Backend.Cluster, as: Backend

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"

  setup context, do: ExESDB.Test.ClusterBackend.start_store(context)

  test "a record naming a node no atom names makes no atom", %{store: store} do
    name = "never_a_node_#{ExESDB.Test.Unique.id()}@nowhere"
    {:ok, s} = ExESDB.Store.fetch(store)

    assert :ok = Backend.submit(s, {:checkpoint_put, "ex_esdb:member:" <> name, 99, "x"})

    assert wait_until(fn ->
             match?({:ok, %{^name => 99}}, ExESDB.Cluster.Seeding.recorded(s))
           end)

    assert {:ok, nodes} = ExESDB.Cluster.member_nodes(store)
    refute Map.has_key?(nodes, 99)
    assert Backend.node_of(s.handle, 99) == nil
    assert_raise ArgumentError, fn -> String.to_existing_atom(name) end
  end
end
