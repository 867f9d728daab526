defmodule ExESDB.CNodeClusterSubscribeStartTest do
  # Read-your-writes for where a subscription starts, on a cluster of C
  # nodes: a write whose wait for the store's own C node (a follower)
  # ran out marks the reads here to wait for it (fresh/2); a subscribe
  # started at that C node must wait too, or it starts before the write
  # ("events committed from now on") and is pushed the caller's own
  # acknowledged write once that C node applies it. Before, it was. The
  # follower is held behind (its raft port's packets dropped, nftables)
  # while the leader takes the append (its timeout 1 s, the store's 30
  # s), and let catch up once the subscribe started. Three C nodes,
  # election timeout 5 s (the cut follower keeps its leader meanwhile).
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.{NewEvent, Streams, Subscriptions}
  alias ExESDB.Chaos.Partition
  alias ExESDB.Test.CNodeCluster

  @moduletag skip:
               (cond do
                  not cluster_support?() -> "no raft in this build (make raft)"
                  not Partition.available?() -> "no nft (root) here"
                  true -> false
                end)
  @moduletag timeout: 180_000

  setup do
    Partition.setup(%{dir: ExESDB.Test.ClusterHelpers.tmp_dir!("ex_esdb_cnsubstart")})
  end

  defp raft_port(cn), do: cn.address |> String.split(":") |> List.last()
  defp event(n), do: [NewEvent.new(event_type: "t", data: n)]

  test "a subscribe after a write whose wait ran out starts after that write", ctx do
    cns = CNodeCluster.start(ctx.dir, "nosync", extra: ["--raft-election-timeout-ms", "5000"])
    [f | _] = cns -- [CNodeCluster.leader(cns)]
    store = :"cnsubstart_#{ExESDB.Test.Unique.id()}"
    opts = CNodeCluster.system_opts(store, ctx.dir, f, cns) ++ [timeout: 30_000]
    start_supervised!({ExESDB.System, opts})

    for cn <- cns -- [f],
        do: wait_until(fn -> Process.whereis(:"exesdb_cnode_relay_#{store}@#{cn.name}") end)

    {:ok, 1} = Streams.append_events(store, "a", :any, event(1))

    Partition.cut_port(ctx, raft_port(f))
    # acknowledged; the follower not reached within the append's time
    assert {:ok, 2} = Streams.append_events(store, "a", :any, event(2), timeout: 1_000)

    test = self()
    subscribing = Task.async(fn -> Subscriptions.subscribe(store, {:by_stream, "$all"}, test) end)
    Partition.heal(ctx)
    assert {:ok, _} = Task.await(subscribing, 60_000)

    {:ok, 3} = Streams.append_events(store, "a", :any, event(3))
    assert_receive {:events, events}, 30_000
    assert [3] == Enum.map(events, & &1.position)
  end
end
