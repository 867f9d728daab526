defmodule ExESDB.ClusterTransferTest do
  # A transfer to no node in particular asks every other voter for its
  # info (1 s) to pick one; a voter whose VM is stopped or down must not
  # take the caller with it (before: the ask raised in a task linked to
  # the caller, {:erpc, :timeout} or {:erpc, :noconnection}, and the
  # exit killed it; through a follower: {:error, :outcome_unknown}).
  # Three :peer nodes, raft over TCP on loopback.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  import ExESDB.Test.PeerCluster

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 300_000

  @store :cttest

  test "transfer to no node goes to the voter that answered; a stopped or down one is not picked" do
    ctx = start(@store, 3)
    l = ctx.leader
    [a, b] = ctx.nodes -- [l]

    # a's VM stopped (SIGSTOP): it does not answer; writes go on
    # without it, so raft's own choice could not be it either
    os_pid = :erpc.call(a, :os, :getpid, [])
    pause_os_process!(os_pid)
    append_n(ctx, l, "s", 3)
    assert :ok = transfer_ok(l)
    assert agreed_leader(ctx, [l, b], 30_000) in [l, b]

    # a follower's VM down (no connection)
    {_, 0} = System.cmd("kill", ["-CONT", "#{os_pid}"])
    leader = agreed_leader(ctx, ctx.nodes, 60_000)
    [down | _] = ctx.nodes -- [leader]
    stop(ctx, index_of(ctx, down))
    live = ctx.nodes -- [down]
    append_n(ctx, leader, "s", 3)
    assert :ok = transfer_ok(leader)

    # asked through a follower: routed to the leader, answered there
    follower = hd(live -- [agreed_leader(ctx, live, 30_000)])
    assert :ok = transfer_ok(follower)
  end

  # The transfer called on node n as an operator would, until it
  # returns :ok (:timeout when the chosen voter did not take leadership
  # within an election timeout on a loaded machine: tried again). A
  # raise or an exit of the calling process fails the test.
  defp transfer_ok(n) do
    wait_until(
      fn ->
        case :erpc.call(n, ExESDB.Cluster, :transfer, [@store, nil], 60_000) do
          :ok -> :ok
          {:error, :timeout} -> false
          {:error, {:not_leader, _}} -> false
          other -> flunk("transfer on #{n}: #{inspect(other)}")
        end
      end,
      60_000
    )
  end
end
