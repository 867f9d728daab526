defmodule ExESDB.StreamsErlangApiClusterTest do
  # The stream/snapshot conformance suite through the Erlang API
  # (:ex_esdb, attached to the store) on a 3-node cluster: writes go
  # through the gateway to the leader, reads are this node's replica's.
  use ExESDB.StreamsConformance,
    backend: ExESDB.Test.ErlangApiCluster,
    api: ExESDB.Test.ErlangApi,
    async: false

  @moduletag skip:
               not ExESDB.Test.ClusterHelpers.cluster_support?() &&
                 "no raft in this build (make raft)"

  test "appends on every node, each read at once where it was made", %{store_id: id} do
    nodes = [node() | :persistent_term.get({ExESDB.Test.ClusterBackend, :peers})]

    for {n, i} <- Enum.with_index(nodes, 1) do
      uuid = :ex_esdb.uuid_v4()

      assert {{:ok, %{version: ^i}}, true} =
               :erpc.call(n, ExESDB.Test.ClusterPeer, :erlang_append_and_read, [id, "e", uuid])
    end
  end

  test "attach: a store that does not run" do
    assert {:error, :store_not_started} = :ex_esdb.attach(:no_such_store)
    assert {:error, {:invalid_store_id, "x"}} = :ex_esdb.attach("x")
  end
end

defmodule ExESDB.Subscriptions.TransientErlangApiClusterTest do
  # The transient subscription suite through the Erlang API on a 3-node
  # cluster.
  use ExESDB.SubscriptionsConformance.Transient,
    backend: ExESDB.Test.ErlangApiCluster,
    api: ExESDB.Test.ErlangApi,
    async: false

  @moduletag skip:
               not ExESDB.Test.ClusterHelpers.cluster_support?() &&
                 "no raft in this build (make raft)"
end

defmodule ExESDB.Subscriptions.TransientCreditErlangApiClusterTest do
  # Transient subscription credit through the Erlang API on a 3-node
  # cluster.
  use ExESDB.SubscriptionsConformance.TransientCredit,
    backend: ExESDB.Test.ErlangApiCluster,
    api: ExESDB.Test.ErlangApi,
    async: false

  @moduletag skip:
               not ExESDB.Test.ClusterHelpers.cluster_support?() &&
                 "no raft in this build (make raft)"
end
