defmodule ExESDB.ClusterSubscriptionFollowerTest do
  # Read-your-writes for subscribe_to and delete_subscription called on a
  # follower: they run on the leader (ExESDB.Subscriptions.Placement),
  # which writes or deletes the checkpoint in its own replica; once the
  # call answers on the follower, a read there (here the Erlang API's
  # get_checkpoint, which passes no barrier) sees it, as after any other
  # write through the gateway (docs/CLUSTER.md, "What an acknowledgement
  # means"). The follower's raft connections to the leader are cut
  # (nftables; distribution stays) while the leader takes the write with
  # the third node, and healed once the leader applied it; before, the
  # call answered with the follower still behind and the read there
  # missed it. Three :peer nodes; election timeout 5 s, so the cut
  # follower keeps its leader meanwhile.
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

  @store :subfoltest

  setup do
    Partition.setup(Cluster.start(@store, 3, election_timeout: 5_000))
  end

  defp on(node, f, a), do: :erpc.call(node, ClusterPeer, f, a, 60_000)

  # `call` on the follower `f` with its raft links to the leader cut,
  # healed once the leader's replica satisfies `applied?`: its answer.
  defp held_back(ctx, f, call, applied?) do
    Partition.cut(ctx, [{f, ctx.leader}], only: :raft)
    task = Task.async(call)
    assert wait_until(fn -> applied?.(ctx.leader) end, 30_000)
    Partition.heal(ctx)
    Task.await(task, 60_000)
  end

  defp leader_checkpoint(l, name) do
    {:ok, h} = :erpc.call(l, :ex_esdb, :attach, [@store])
    :erpc.call(l, :ex_esdb, :get_checkpoint, [h, name])
  end

  test "subscribe_to and delete_subscription on a follower: its reads see them at once", ctx do
    f = hd(ctx.nodes -- [ctx.leader])

    assert {{:ok, _}, {:ok, _}} =
             held_back(
               ctx,
               f,
               fn -> on(f, :subscribe_to_and_read, [@store, "p"]) end,
               &match?({:ok, _}, leader_checkpoint(&1, "p"))
             )

    # (the follower caught up and heard the leader again)
    assert wait_until(fn -> on(f, :checkpoint, [@store, "p"]) != nil end, 30_000)

    assert {:ok, {:error, :subscription_not_found}} =
             held_back(
               ctx,
               f,
               fn -> on(f, :delete_subscription_and_read, [@store, "p"]) end,
               &match?({:error, :subscription_not_found}, leader_checkpoint(&1, "p"))
             )
  end
end
