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

    # elsewhere after a barrier (a plain read there may not have it yet)
    for n <- nodes do
      :ok = :erpc.call(n, ExESDB.Cluster, :barrier, [s])
      assert {:ok, 3} = :erpc.call(n, GatewayAPI, :get_version, [s, "a"])
    end
  end

  test "a persistent subscription saved on a peer is acked from here", %{store: s} do
    [p | _] = peers()
    {:ok, 3} = GatewayAPI.append_events(s, "a", events(3))
    me = self()

    assert :ok =
             :erpc.call(p, GatewayAPI, :save_subscription, [s, :by_stream, "$a", "on-peer", 0, me])

    assert_receive {:subscribed, sub}, 5_000
    # it runs on the leader, wherever that is
    assert {:ok, ^sub} = ExESDB.Subscriptions.whereis(s, "on-peer")
    evs = next_events()
    assert :ok = GatewayAPI.ack_event(s, "on-peer", me, List.last(evs))

    ExESDB.Test.ClusterHelpers.wait_until(fn ->
      {:ok, subs} = GatewayAPI.get_subscriptions(s)
      match?([%{name: "on-peer", checkpoint: 3}], subs)
    end)
  end

  test "a transient subscriber here sees appends made on a peer", %{store: s} do
    assert :ok = GatewayAPI.save_subscription(s, :by_stream, "$all")
    [p | _] = peers()
    {:ok, 1} = :erpc.call(p, GatewayAPI, :append_events, [s, "x", events(1)])
    assert [%{stream_id: "x", event_number: 1}] = next_events()
  end
end
