defmodule ExESDB.ClusterSilentLeaderTest do
  # A write routed to a leader that stopped answering waits there only
  # until this node's replica sees leadership move, then goes to the new
  # leader marked as a retry (chaos runs: a paused leader held writes
  # for the caller's whole 10 s timeout although a new leader was
  # elected within 1-2 election timeouts). Three :peer nodes, raft on
  # loopback; the leader is paused with SIGSTOP.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers

  alias ExESDB.Streams
  alias ExESDB.Test.{ClusterPeer, PeerCluster}

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 120_000

  @store :sltest
  @election_timeout 500
  @timeout 10_000

  setup do
    PeerCluster.start(@store, 3, election_timeout: @election_timeout, heartbeat: 50)
  end

  test "a write to a paused leader is taken by the new leader, once", ctx do
    # the stream's first event, before the fault (the whole timeout: on a
    # loaded machine the follower's first try, its connect to the leader
    # included, took more than 2 s)
    assert {_, {:ok, 1}} =
             :erpc.call(ctx.follower, ClusterPeer, :timed_append, [@store, "s", @timeout], 30_000)

    pid = to_string(:erpc.call(ctx.leader, :os, :getpid, []))
    pause_os_process!(pid)

    {ms, reply} =
      try do
        :erpc.call(ctx.follower, ClusterPeer, :timed_append, [@store, "s", @timeout], 30_000)
      after
        System.cmd("kill", ["-CONT", pid])
      end

    # a new leader within 1-2 election timeouts; the write follows it
    # well before the caller's timeout (half of it: a loaded machine)
    assert reply == {:ok, 2}
    assert ms < div(@timeout, 2), "took #{ms} ms (election timeout #{@election_timeout})"

    # the old leader, resumed, got the first try too: it is not applied
    # a second time on any replica
    ids = :erpc.call(ctx.follower, ClusterPeer, :read_ids, [@store, "s", true])
    assert length(ids) == 2 and Enum.uniq(ids) == ids

    for n <- ctx.nodes do
      assert wait_until(
               fn -> :erpc.call(n, ClusterPeer, :read_ids, [@store, "s", false]) == ids end,
               30_000
             )
    end
  end

  # The chaos run at e4b5ef8: a first try sent to a leader cut off by a
  # partition stayed in the TCP connection; the gateway resent it to the
  # new leader (marked, applied: the caller had {:ok, _}); after the heal
  # the first try arrived, 3 s late, at the same node, elected leader again
  # in a later term, which applied it as a new append: the event twice.
  test "a try that reaches a leader elected after it was sent is refused, not applied", ctx do
    ev = ExESDB.NewEvent.new(event_type: "t", data: 1)
    cmd = :erpc.call(ctx.follower, ClusterPeer, :append_command, [@store, "late", :any, [ev]])
    term = info(ctx.follower).term

    # the resend, marked, applied; the stream goes on
    assert {:ok, 1} =
             :erpc.call(ctx.follower, Streams, :append_events, [
               @store,
               "late",
               :any,
               [ev],
               [retry: true]
             ])

    assert {_, {:ok, 2}} =
             :erpc.call(ctx.follower, ClusterPeer, :timed_append, [@store, "late", 5000])

    # leadership moves: a later term
    other = hd(ctx.nodes -- [ctx.leader])
    assert :ok = :erpc.call(ctx.leader, ExESDB.Cluster, :transfer, [@store, other])
    assert wait_until(fn -> info(other).leader? and info(other).term > term end, 30_000)

    # the first try arrives
    reply =
      :erpc.call(other, ExESDB.Backend.Cluster, :submit_on_leader, [
        @store,
        cmd,
        5000,
        term,
        later()
      ])

    assert reply == {:error, :not_leader}
    ids = :erpc.call(other, ClusterPeer, :read_ids, [@store, "late", true])
    assert length(ids) == 2 and Enum.uniq(ids) == ids

    # sent in the leader's own term, it is applied
    now = info(other).term
    ev2 = ExESDB.NewEvent.new(event_type: "t", data: 2)
    cmd2 = :erpc.call(other, ClusterPeer, :append_command, [@store, "late", :any, [ev2]])

    assert {:applied, _, {:ok, 3, _}} =
             :erpc.call(other, ExESDB.Backend.Cluster, :submit_on_leader, [
               @store,
               cmd2,
               5000,
               now,
               later()
             ])
  end

  # The same late try in the leader's own term, arriving after the
  # caller's deadline (the gateway answered :outcome_unknown; the
  # caller's marked retry may have been applied before it).
  test "a try that reaches the leader after its caller's deadline is refused, not applied", ctx do
    ev = ExESDB.NewEvent.new(event_type: "t", data: 1)
    cmd = :erpc.call(ctx.leader, ClusterPeer, :append_command, [@store, "overdue", :any, [ev]])
    term = info(ctx.leader).term
    until = System.system_time(:millisecond) - 1

    assert {:error, :timeout} =
             :erpc.call(ctx.leader, ExESDB.Backend.Cluster, :submit_on_leader, [
               @store,
               cmd,
               5000,
               term,
               until
             ])

    assert :erpc.call(ctx.leader, ClusterPeer, :read_ids, [@store, "overdue", true]) == []
  end

  # A try that arrives with less time left than the gateway keeps for
  # the reply (@reply_margin) is refused too: the leader's clock and the
  # gateway's agree only within a skew (docs/CLUSTER.md, "Clocks"), and
  # its caller would answer before the write's reply reached it.
  test "a try that reaches the leader within the reply margin of its deadline is refused",
       ctx do
    ev = ExESDB.NewEvent.new(event_type: "t", data: 1)
    cmd = :erpc.call(ctx.leader, ClusterPeer, :append_command, [@store, "margin", :any, [ev]])
    term = info(ctx.leader).term
    until = System.system_time(:millisecond) + 20

    assert {:error, :timeout} =
             :erpc.call(ctx.leader, ExESDB.Backend.Cluster, :submit_on_leader, [
               @store,
               cmd,
               5000,
               term,
               until
             ])

    assert :erpc.call(ctx.leader, ClusterPeer, :read_ids, [@store, "margin", true]) == []
  end

  defp later, do: System.system_time(:millisecond) + 5000

  defp info(node), do: elem(:erpc.call(node, ExESDB.Cluster, :info, [@store]), 1)
end
