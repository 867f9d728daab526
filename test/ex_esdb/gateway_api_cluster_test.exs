defmodule ExESDB.GatewayAPIClusterTest do
  # ExESDB.GatewayAPI on a 3-node cluster (this VM and two :peer nodes,
  # raft on loopback): the same cases as on a single node, and calls made
  # on every node.
  use ExESDB.GatewayAPIConformance, backend: ExESDB.Test.ClusterBackend, async: false

  @moduletag skip:
               not ExESDB.Test.ClusterHelpers.cluster_support?() &&
                 "no raft in this build (make raft)"

  defp peers, do: :persistent_term.get({ExESDB.Test.ClusterBackend, :peers})

  test "appends on every node, each read at once where it was made", %{store: s} do
    nodes = [node() | peers()]

    for {n, i} <- Enum.with_index(nodes, 1) do
      ev = NewEvent.new(event_type: "t", data: i)
      assert {:ok, ^i} = :erpc.call(n, GatewayAPI, :append_events, [s, "a", i - 1, [ev]])
      assert {:ok, evs} = :erpc.call(n, GatewayAPI, :get_events, [s, "a", 0, 10])
      assert List.last(evs).event_id == ev.event_id
    end

    for n <- nodes, do: assert({:ok, 3} = :erpc.call(n, GatewayAPI, :get_version, [s, "a"]))
  end

  test "a transient subscriber here sees appends made on a peer", %{store: s} do
    assert :ok = GatewayAPI.save_subscription(s, :by_stream, "$all")
    [p | _] = peers()
    {:ok, 1} = :erpc.call(p, GatewayAPI, :append_events, [s, "x", events(1)])
    assert [%{stream_id: "x", event_number: 1}] = next_events()
  end
end
