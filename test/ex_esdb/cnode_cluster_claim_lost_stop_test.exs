defmodule ExESDB.CNodeClusterClaimLostStopTest do
  # A persistent subscription whose claim is lost (the leading C node
  # holding it fell silent: SIGSTOP) and that is stopped before it took
  # the name again writes no last checkpoint (no C node would take it:
  # the claim is gone), so it ends at once instead of waiting the
  # store's timeout on the silent C node (which can overrun its
  # supervisor's shutdown time). Three C nodes (priv/ex_esdb_cnode
  # --raft-*), a store of this VM homed on a follower. Real OS processes.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.Test.{CNodeCluster, FollowSubscriber, FollowWriter}

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 180_000

  # far above the bound the stop is awaited within
  @store_timeout 60_000

  setup do
    dir = tmp_dir!("ex_esdb_cnclstop")
    cns = CNodeCluster.start(dir)
    l = CNodeCluster.leader(cns)
    [f1, _f2] = Enum.sort_by(cns -- [l], & &1.id)
    store = :"cnclstop_#{ExESDB.Test.Unique.id()}"

    opts =
      CNodeCluster.system_opts(store, Path.join(dir, "#{store}"), f1, cns) ++
        [timeout: @store_timeout]

    start_supervised!(Supervisor.child_spec({ExESDB.System, opts}, id: store))

    for cn <- cns -- [f1],
        do: wait_until(fn -> Process.whereis(:"exesdb_cnode_relay_#{store}@#{cn.name}") end)

    %{store: store, l: l}
  end

  defp claim_lost?(pid) do
    {:messages, msgs} = Process.info(pid, :messages)
    Enum.any?(msgs, &match?({:subscription_down, _, :claim_lost}, &1))
  end

  test "a subscription stopped while its claim is lost ends without a last write", ctx do
    {:ok, _} = FollowWriter.append(ctx.store, "s", 5)
    {:ok, _pid, sub} = FollowSubscriber.start(ctx.store, "stopped", "s", self())
    assert_receive {:seen, _, _}, 30_000

    # it hears of nothing until its claim is lost and it is stopped
    :ok = :sys.suspend(sub)
    mref = Process.monitor(sub)
    pause_os_process!(ctx.l.os_pid)
    on_exit(fn -> System.cmd("kill", ["-CONT", "#{ctx.l.os_pid}"]) end)
    wait_until(fn -> claim_lost?(sub) end, 60_000)

    Process.exit(sub, :shutdown)
    :ok = :sys.resume(sub)
    assert_receive {:DOWN, ^mref, _, _, :shutdown}, div(@store_timeout, 4)
  end
end
