defmodule ExESDB.ClusterIsolatedLeaderTest do
  # As cluster_silent_leader_test, with the leader cut off (raft and BEAM
  # distribution packets dropped both ways, ExESDB.Chaos.Partition)
  # instead of paused: the try sent to it stalls on a blackholed
  # connection, and is given up once the gateway's replica sees the new
  # leader.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers

  alias ExESDB.Chaos.{Cluster, Partition}
  alias ExESDB.Test.ClusterPeer

  @moduletag skip:
               (cond do
                  not cluster_support?() -> "no raft in this build (make raft)"
                  not Partition.available?() -> "no nft (root) or bind shim here"
                  true -> false
                end)
  @moduletag timeout: 120_000

  @store :isotest
  @timeout 10_000

  setup do
    Partition.setup(Cluster.start(@store, 3))
  end

  test "a write to a cut-off leader is taken by the new leader, once", ctx do
    follower = hd(ctx.nodes -- [ctx.leader])
    assert {_, {:ok, 1}} = :erpc.call(follower, ClusterPeer, :timed_append, [@store, "s", 2000])

    Partition.split(ctx, [[ctx.leader], ctx.nodes -- [ctx.leader]])
    {ms, reply} = :erpc.call(follower, ClusterPeer, :timed_append, [@store, "s", @timeout], 30_000)

    assert reply == {:ok, 2}
    assert ms < div(@timeout, 2), "took #{ms} ms (election timeout #{ctx.election_timeout})"

    Partition.heal(ctx)
    ids = :erpc.call(follower, ClusterPeer, :read_ids, [@store, "s", true])
    assert length(ids) == 2 and Enum.uniq(ids) == ids

    for n <- ctx.nodes do
      assert wait_until(
               fn -> :erpc.call(n, ClusterPeer, :read_ids, [@store, "s", false]) == ids end,
               30_000
             )
    end
  end
end
