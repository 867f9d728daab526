defmodule ExESDB.CNodeClusterReadsTest do
  # Read-your-writes on the C node backend with a cluster of C nodes
  # when the store's own C node (where reads go) was down as a write was
  # acknowledged by the leader: found by the chaos run with C node
  # clients (chaos_cnode_test, a read after a follower's kill and restart
  # missed the reading node's own acknowledged append). Real C nodes,
  # client :peer nodes, kill -9, SIGSTOP (ExESDB.Chaos.CNodes).
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers

  alias ExESDB.Chaos.CNodes
  alias ExESDB.Test.ClusterPeer

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 180_000

  test "a write acknowledged while the reading node's C node was down is read there once " <>
         "it came back: the read waits until that C node applied it" do
    ctx = CNodes.start(:"cncr_#{ExESDB.Test.Unique.id()}", 3)
    l = CNodes.leader(ctx, ctx.cnodes)
    [f, g] = ctx.cnodes -- [l]
    client = ctx.client_of[f]
    id0 = ExESDB.UUID.uuid4()
    assert {:ok, 1} = :erpc.call(client, ClusterPeer, :append, [ctx.store, "ryw", id0])

    # f down: the write goes to the leader, f cannot be waited for
    :ok = CNodes.kill(ctx, f)
    CNodes.await_down(f)
    id = ExESDB.UUID.uuid4()
    assert {:ok, 2} = :erpc.call(client, ClusterPeer, :append, [ctx.store, "ryw", id])

    # f back, but nothing reaches it until the other two resume: it
    # holds the first event only
    :ok = CNodes.pause(ctx, l)
    :ok = CNodes.pause(ctx, g)
    :ok = CNodes.restart(ctx, f)

    wait_until(
      fn -> :erpc.call(client, CNodes, :relays_up?, [ctx.store, f, [f]]) end,
      10_000
    )

    assert {:ok, [_], _} = CNodes.call(f, {:read_stream, "ryw", 0, 10, :forward})

    read =
      Task.async(fn ->
        :erpc.call(client, ExESDB.Chaos.Target.Local, :stream_ids, [ctx.store, "ryw"])
      end)

    # a stale answer comes at once; a read that waits answers after the resume
    stale = Task.yield(read, 500)
    :ok = CNodes.resume(ctx, l)
    :ok = CNodes.resume(ctx, g)
    assert {:ok, {:ok, [^id0, ^id]}} = stale || Task.yield(read, 15_000)
  end
end
