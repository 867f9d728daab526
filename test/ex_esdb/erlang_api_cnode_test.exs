defmodule ExESDB.StreamsErlangApiCNodeTest do
  # The stream/snapshot conformance suite through the Erlang API
  # (:ex_esdb, attached to the store) on the C node backend: the store in
  # priv/ex_esdb_cnode, reached through ExESDB.Backend.CNode.
  use ExESDB.StreamsConformance,
    backend: ExESDB.Test.ErlangApiCNode,
    api: ExESDB.Test.ErlangApi,
    async: true

  test "checkpoints, limits, stats, verify and backup through the Erlang API", %{store: s} = ctx do
    assert :ok = :ex_esdb.put_checkpoint(s, "c", 7, "def")
    assert {:ok, %{name: "c", checkpoint: 7, definition: "def"}} = :ex_esdb.get_checkpoint(s, "c")
    assert {:ok, [%{name: "c"}]} = :ex_esdb.checkpoints(s)
    assert {:error, :subscription_not_found} = :ex_esdb.get_checkpoint(s, "none")
    assert :ok = :ex_esdb.delete_checkpoint(s, "c")
    assert {:ok, %{max_append_events: n}} = :ex_esdb.limits(s)
    assert is_integer(n)

    # a long append is checked against max_append_events first
    events = for _ <- 1..(n + 1), do: %{event_type: "t"}

    assert {:error, {:limit_exceeded, :max_append_events, ^n}} =
             :ex_esdb.append(s, "l", :any, events)

    assert {:ok, %{version: 1}} = :ex_esdb.append(s, "a", :any, [%{event_type: "t", data: "x"}])
    assert {:ok, %{events: 1}} = :ex_esdb.stats(s)
    assert :ok = :ex_esdb.verify(s)
    dest = Path.join(ctx.data_dir, "backup")
    assert :ok = :ex_esdb.backup(s, dest)
    assert File.exists?(Path.join(dest, "data.mdb"))
  end
end

defmodule ExESDB.Subscriptions.TransientErlangApiCNodeTest do
  # The transient subscription suites through the Erlang API on the C
  # node backend.
  use ExESDB.SubscriptionsConformance.Transient,
    backend: ExESDB.Test.ErlangApiCNode,
    api: ExESDB.Test.ErlangApi,
    async: true
end

defmodule ExESDB.Subscriptions.TransientCreditErlangApiCNodeTest do
  use ExESDB.SubscriptionsConformance.TransientCredit,
    backend: ExESDB.Test.ErlangApiCNode,
    api: ExESDB.Test.ErlangApi,
    async: true
end

defmodule ExESDB.StreamsErlangApiCNodeClusterTest do
  # The same suite through the Erlang API on a cluster of three C node
  # replicas, the store's own C node a follower.
  use ExESDB.StreamsConformance,
    backend: ExESDB.Test.ErlangApiCNodeCluster,
    api: ExESDB.Test.ErlangApi,
    async: false

  @moduletag skip:
               not ExESDB.Test.ClusterHelpers.cluster_support?() &&
                 "no raft in this build (make raft)"
end
