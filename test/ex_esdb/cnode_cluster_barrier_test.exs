defmodule ExESDB.CNodeClusterBarrierTest do
  # ExESDB.Cluster.barrier/2 on the C node backend with a cluster of C
  # nodes: the client's own C node a follower; after the barrier a read
  # there sees every write the leader acknowledged before it; a follower
  # left alone (its two peers killed) refuses with :no_quorum. The same
  # with a read's consistency: :linearizable option. Real OS
  # processes, distribution and raft on loopback.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.{Cluster, Streams}
  alias ExESDB.Test.CNodeCluster

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 180_000

  setup do
    %{dir: ExESDB.Test.ClusterHelpers.tmp_dir!("ex_esdb_cnb")}
  end

  defp call(node, request), do: CNodeCluster.call(node, request)

  test "a barrier read on a follower's client sees a write acknowledged at the leader; " <>
         "a minority refuses",
       %{dir: dir} do
    cns = CNodeCluster.start(dir)
    l = CNodeCluster.leader(cns)
    [f, g] = cns -- [l]
    store = :"cnb_#{ExESDB.Test.Unique.id()}"
    start_supervised!({ExESDB.System, CNodeCluster.system_opts(store, dir, f, cns)})

    for cn <- [l, g],
        do: wait_until(fn -> Process.whereis(:"exesdb_cnode_relay_#{store}@#{cn.name}") end)

    for i <- 1..30 do
      e = {ExESDB.UUID.uuid4_binary(), "t", "d#{i}", "", nil, nil}
      assert {:ok, ^i, _} = call(l.name, {:append, "s", i - 1, [e]})
      assert Cluster.barrier(store) == :ok
      assert {:ok, ^i} = Streams.get_version(store, "s")
    end

    # the follower stopped while the leader takes 300 more writes: once
    # it runs again it is behind, and the barrier waits for it
    pause_os_process!(f.os_pid)
    on_exit(fn -> System.cmd("kill", ["-CONT", "#{f.os_pid}"]) end)

    for i <- 31..330 do
      e = {ExESDB.UUID.uuid4_binary(), "t", :binary.copy("d", 4096), "", nil, nil}
      assert {:ok, ^i, _} = call(l.name, {:append, "s", i - 1, [e]})
    end

    {_, 0} = System.cmd("kill", ["-CONT", "#{f.os_pid}"])
    assert Cluster.barrier(store) == :ok
    assert {:ok, 330} = Streams.get_version(store, "s")

    # the same as one call: a read with consistency: :linearizable
    pause_os_process!(f.os_pid)

    for i <- 331..630 do
      e = {ExESDB.UUID.uuid4_binary(), "t", :binary.copy("d", 4096), "", nil, nil}
      assert {:ok, ^i, _} = call(l.name, {:append, "s", i - 1, [e]})
    end

    {_, 0} = System.cmd("kill", ["-CONT", "#{f.os_pid}"])
    assert {:ok, 630} = Streams.get_version(store, "s", consistency: :linearizable)

    for cn <- [l, g], do: System.cmd("kill", ["-9", "#{cn.os_pid}"])
    assert {:error, :no_quorum} = Cluster.barrier(store, 1_500)

    assert {:error, :no_quorum} =
             Streams.get_version(store, "s", consistency: :linearizable, timeout: 1_500)

    assert {:ok, 630} = Streams.get_version(store, "s")
  end
end
