defmodule ExESDB.ClusterDeleteTimeoutTest do
  # delete_subscription called on a follower runs on the leader
  # (ExESDB.Subscriptions.Placement); when the leader does not answer
  # within the caller's time, the delete may still be applied there (it
  # is in the subscription's mailbox): the answer is {:error,
  # :outcome_unknown}, README's shape for a write that may be in, not
  # {:error, :timeout}, which says withdrawn, never applied. The
  # subscription on the leader is suspended (:sys) while the delete
  # reaches it, then resumed: the delete is applied after the answer.
  # Three :peer nodes.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.Chaos.Cluster

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 120_000

  @store :cldeltimeout

  test "a delete the leader does not answer in time: :outcome_unknown, applied after" do
    ctx = Cluster.start(@store, 3, timeout: 2_000)
    l = ctx.leader
    f = hd(ctx.nodes -- [l])
    # (its subscriber a process on the leader, where it runs)
    assert {{:ok, sub}, {:ok, _}} =
             :erpc.call(l, ExESDB.Test.ClusterPeer, :subscribe_to_and_read, [@store, "slow"])

    :ok = :erpc.call(l, :sys, :suspend, [sub])

    assert {:error, :outcome_unknown} =
             :erpc.call(f, ExESDB.Subscriptions, :delete_subscription, [@store, "slow"], 60_000)

    :ok = :erpc.call(l, :sys, :resume, [sub])

    assert wait_until(
             fn ->
               :erpc.call(l, ExESDB.Subscriptions, :get_subscriptions, [@store]) == {:ok, []}
             end,
             30_000
           )
  end
end
