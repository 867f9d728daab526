defmodule ExESDB.ClusterGatewayDeadlineTest do
  # One try of the gateway (connect to the leader's node, then the call
  # there) ends by the caller's deadline: before, the connect and the
  # call each had the whole time left, so a try could take the caller's
  # timeout twice. Three :peer nodes, raft on loopback; the caller is a
  # follower not connected to the leader, whose VM is paused (SIGSTOP)
  # while the connect waits, and whose writer is held in its flush
  # (build/esdb_io_shim.so, ESDB_SHIM_HOLD_SYNC) so its answer takes the
  # whole time it is given. The election timeout is long enough that no
  # election happens meanwhile (the try is not given up on a move).
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers

  alias ExESDB.Test.{ClusterPeer, PeerCluster}

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 120_000

  @shim Path.expand("build/esdb_io_shim.so")
  @store :gdtest
  @election_timeout 4_000
  @timeout 2_000
  # how long the leader's VM is paused while the caller connects
  @pause 1_200

  setup do
    ctx =
      PeerCluster.start(@store, 3,
        election_timeout: @election_timeout,
        heartbeat: 100,
        durability: :no_meta_sync,
        env: fn ctx, i ->
          [
            {~c"LD_PRELOAD", String.to_charlist(@shim)},
            {~c"ESDB_SHIM_HOLD_SYNC", String.to_charlist(hold(ctx, i))}
          ]
        end
      )

    Map.put(ctx, :hold, hold(ctx, PeerCluster.index_of(ctx, ctx.leader)))
  end

  # the file that, while it exists, holds node i's writer in its flush
  defp hold(ctx, i), do: Path.join(ctx.dir, "hold#{i}")

  # (a test's skip tag replaces the module's: both conditions here)
  @tag skip:
         (not cluster_support?() && "no raft in this build (make raft)") ||
           (not File.exists?(Path.expand("build/esdb_io_shim.so")) && "run make first")
  test "a try's connect and call to the leader share the caller's timeout", ctx do
    %{leader: leader, follower: f} = ctx
    assert {_, {:ok, 1}} = :erpc.call(f, ClusterPeer, :timed_append, [@store, "s", 5_000])

    # the leader's writer held; its VM paused; the follower not connected to it
    File.write!(ctx.hold, "")
    pid = to_string(:erpc.call(leader, :os, :getpid, []))
    pause_os_process!(pid)

    try do
      true = :erpc.call(f, :erlang, :disconnect_node, [leader])
      refute leader in :erpc.call(f, Node, :list, [])

      write =
        Task.async(fn ->
          :erpc.call(f, ClusterPeer, :timed_append, [@store, "s", @timeout], 30_000)
        end)

      # the connect waits on the paused VM; resumed, it completes with
      # part of the timeout used (the pause places the fault; the
      # result is the try's duration)
      Process.sleep(@pause)
      {_, 0} = System.cmd("kill", ["-CONT", pid])
      {ms, reply} = Task.await(write, 30_000)

      # before: about @pause + @timeout (the call had the whole timeout
      # again after the connect)
      assert ms < @timeout + div(@pause, 2), "took #{ms} ms with a #{@timeout} ms timeout"

      # sent to the leader: :outcome_unknown, or :timeout when the leader
      # withdrew it still queued (its proposer waits for the entry before,
      # held in the flush): then never applied. The next append, once the
      # flush goes, shows which.
      assert reply in [{:error, :outcome_unknown}, {:error, :timeout}]
      File.rm(ctx.hold)
      assert {_, {:ok, v}} = :erpc.call(leader, ClusterPeer, :timed_append, [@store, "s", 10_000])
      if reply == {:error, :timeout}, do: assert(v == 2, "a write answered :timeout was applied")
      assert v in [2, 3]
    after
      System.cmd("kill", ["-CONT", pid])
      File.rm(ctx.hold)
    end
  end
end
