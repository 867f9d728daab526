defmodule ExESDB.CNodeClusterOwnerWriteTest do
  # Read-your-writes for a persistent subscription's own checkpoint
  # writes on a cluster of C nodes: they go through the name's claim to
  # the leader, and the store's reads go to the store's own C node, here
  # a follower. A delete_subscription answered :ok must not be followed
  # by a get_subscriptions that still lists the name. The follower is
  # held back (SIGSTOP) while the leader commits the delete, then goes
  # on; before, the read reached it before it had applied the delete (it
  # failed once in CI under ASan without the stop).
  # Three C nodes (priv/ex_esdb_cnode --raft-*, election timeout 500 ms).
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.Subscriptions
  alias ExESDB.Test.CNodeCluster

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 180_000

  setup do
    %{dir: ExESDB.Test.ClusterHelpers.tmp_dir!("ex_esdb_cnowner")}
  end

  test "a checkpoint deleted through the leader is gone from the follower's reads", %{dir: dir} do
    cns = CNodeCluster.start(dir)
    l = CNodeCluster.leader(cns)
    [f, _] = cns -- [l]
    store = :"cnowner_#{ExESDB.Test.Unique.id()}"
    opts = CNodeCluster.system_opts(store, dir, f, cns) ++ [timeout: 30_000]
    start_supervised!({ExESDB.System, opts})

    for cn <- cns -- [f],
        do: wait_until(fn -> Process.whereis(:"exesdb_cnode_relay_#{store}@#{cn.name}") end)

    {:ok, sub} = Subscriptions.subscribe_to(store, "gone", {:by_event_type, "t"})
    assert {:ok, [%{name: "gone"}]} = Subscriptions.get_subscriptions(store)

    pause_os_process!(f.os_pid)
    on_exit(fn -> System.cmd("kill", ["-CONT", "#{f.os_pid}"]) end)
    ref = Process.monitor(sub)
    assert :ok = Subscriptions.delete_subscription(store, "gone")
    {_, 0} = System.cmd("kill", ["-CONT", "#{f.os_pid}"])
    assert_receive {:DOWN, ^ref, :process, ^sub, _}, 30_000

    assert {:ok, []} = Subscriptions.get_subscriptions(store)
    assert {:error, :subscription_not_found} = Subscriptions.delete_subscription(store, "gone")
  end
end
