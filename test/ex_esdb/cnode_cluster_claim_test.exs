defmodule ExESDB.CNodeClusterClaimTest do
  # A persistent subscription name has one owner across a cluster of C
  # nodes: its claim is taken at the leading C node, follows leadership,
  # and the owner's checkpoint writes go through its claim (refused once
  # the claim is lost). Three C nodes (priv/ex_esdb_cnode --raft-*); two
  # stores of this VM, homed on two different C nodes, play two clients
  # (each has its own session). Real OS processes, real distribution.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.Test.{CNodeCluster, FollowSubscriber, FollowWriter, ManualSubscriber}

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 180_000

  setup do
    dir = tmp_dir!("ex_esdb_cnclaim")
    cns = CNodeCluster.start(dir)
    l = CNodeCluster.leader(cns)
    [f1, f2] = Enum.sort_by(cns -- [l], & &1.id)
    %{dir: dir, cns: cns, l: l, f1: f1, f2: f2}
  end

  # A store of this VM homed on C node `home`, its relays to the other
  # C nodes up.
  defp store_on(ctx, home) do
    store = :"cnclaim_#{ExESDB.Test.Unique.id()}"
    dir = Path.join(ctx.dir, "#{store}")
    opts = CNodeCluster.system_opts(store, dir, home, ctx.cns) ++ [timeout: 10_000]
    start_supervised!(Supervisor.child_spec({ExESDB.System, opts}, id: store))

    for cn <- ctx.cns -- [home],
        do: wait_until(fn -> Process.whereis(:"exesdb_cnode_relay_#{store}@#{cn.name}") end)

    store
  end

  defp call(node, request, ms), do: CNodeCluster.call(node, request, ms)

  # Leadership from `from` to `to` (raft's transfer, asked again while it
  # answers :timeout on a loaded machine); once every C node names `to`.
  defp transfer(ctx, from, to) do
    name = to.name

    result =
      Enum.reduce_while(1..5, nil, fn _, _ ->
        case call(from.name, {:cluster_transfer, to.id}, 15_000) do
          {:error, :timeout} -> {:cont, :timeout}
          other -> {:halt, other}
        end
      end)

    assert result in [:ok, {:error, {:not_leader, name}}]
    assert CNodeCluster.leader(ctx.cns).name == name
  end

  # The checkpoint of `name` as the leader has it, after a barrier.
  defp checkpoint(store, name) do
    {:ok, s} = ExESDB.Store.fetch(store)
    :ok = ExESDB.Backend.CNode.barrier(s)
    {:ok, {_, cp, _, _}} = s.backend.checkpoint_get(s, name)
    cp
  end

  test "clients of two different C nodes subscribing one name: the second is refused", ctx do
    a = store_on(ctx, ctx.f1)
    b = store_on(ctx, ctx.f2)
    {:ok, _} = FollowWriter.append(a, "s", 3)

    {:ok, _pid, _sub} = FollowSubscriber.start(a, "one-owner", "s", self())

    assert {:error, :subscription_already_exists} =
             FollowSubscriber.start(b, "one-owner", "s", self())

    # a client of the leader too
    c = store_on(ctx, ctx.l)

    assert {:error, :subscription_already_exists} =
             FollowSubscriber.start(c, "one-owner", "s", self())

    # another name is free for it
    assert {:ok, _, _} = FollowSubscriber.start(b, "another", "s", self())
  end

  test "a leader change moves the claim: every event written across it reaches the " <>
         "subscriber in order, no gap, and there is one owner afterwards",
       ctx do
    a = store_on(ctx, ctx.f1)
    b = store_on(ctx, ctx.f2)
    {:ok, _} = FollowWriter.append(a, "s", 20)
    {:ok, sub_pid, sub} = FollowSubscriber.start(a, "moving", "s", self())
    mref = Process.monitor(sub)

    writer = Task.async(fn -> for _ <- 1..40, do: FollowWriter.append(a, "s", 5) end)
    # the transfer while the writer writes
    transfer(ctx, ctx.l, ctx.f2)
    Task.await(writer, 120_000)
    total = 20 + 40 * 5

    assert_no_gap(seen_all(sub_pid, total, []), total)

    # the subscription still runs, its claim at the new leader: the other
    # client cannot take the name, and its acks are written there
    refute_received {:DOWN, ^mref, _, _, _}

    assert {:error, :subscription_already_exists} = FollowSubscriber.start(b, "moving", "s", self())

    wait_until(fn -> checkpoint(b, "moving") == total end, 30_000)
  end

  test "a kill -9 of the leading C node moves the claim: no gap, one owner afterwards", ctx do
    a = store_on(ctx, ctx.f1)
    b = store_on(ctx, ctx.f2)
    {:ok, _} = FollowWriter.append(a, "s", 20)
    {:ok, sub_pid, sub} = FollowSubscriber.start(a, "killed", "s", self())
    mref = Process.monitor(sub)

    writer = Task.async(fn -> for _ <- 1..40, do: FollowWriter.append(a, "s", 5) end)
    System.cmd("kill", ["-9", "#{ctx.l.os_pid}"])
    Task.await(writer, 120_000)
    total = 20 + 40 * 5

    assert_no_gap(seen_all(sub_pid, total, []), total)
    refute_received {:DOWN, ^mref, _, _, _}

    assert {:error, :subscription_already_exists} = FollowSubscriber.start(b, "killed", "s", self())

    wait_until(fn -> checkpoint(b, "killed") == total end, 30_000)
  end

  test "a leading C node that falls silent (SIGSTOP) loses its claims once another " <>
         "leads in a later term: the owner takes the name again there, no gap",
       ctx do
    a = store_on(ctx, ctx.f1)
    b = store_on(ctx, ctx.f2)
    {:ok, _} = FollowWriter.append(a, "s", 20)
    {:ok, sub_pid, sub} = FollowSubscriber.start(a, "silent", "s", self())
    mref = Process.monitor(sub)

    pause_os_process!(ctx.l.os_pid)
    on_exit(fn -> System.cmd("kill", ["-CONT", "#{ctx.l.os_pid}"]) end)
    new_leader = CNodeCluster.leader([ctx.f1, ctx.f2])
    assert new_leader.name != ctx.l.name

    for _ <- 1..20, do: FollowWriter.append(a, "s", 5)
    total = 20 + 20 * 5
    assert_no_gap(seen_all(sub_pid, total, []), total)
    refute_received {:DOWN, ^mref, _, _, _}

    # the owner's claim moved to the new leader (the silent one's is
    # dead): the other client is refused, the owner's acks are written
    assert {:error, :subscription_already_exists} = FollowSubscriber.start(b, "silent", "s", self())

    wait_until(fn -> checkpoint(b, "silent") == total end, 30_000)
  end

  # From the first event, in order, never past one not seen yet (at least
  # once: a delivery may go back and come again).
  defp assert_no_gap(seen, total) do
    assert hd(seen) == 1

    for [a, b] <- Enum.chunk_every(seen, 2, 1, :discard),
        do: assert(b <= a + 1, "a gap: #{b} after #{a}")

    assert Enum.uniq(seen) |> Enum.sort() == Enum.to_list(1..total)
  end

  defp seen_all(pid, total, acc) do
    if MapSet.subset?(MapSet.new(1..total), MapSet.new(acc)) do
      acc
    else
      receive do
        {:seen, ^pid, ns} -> seen_all(pid, total, acc ++ ns)
      after
        60_000 -> flunk("saw #{length(acc)} of #{total} events")
      end
    end
  end

  test "an owner that lost its claim cannot write its checkpoint", ctx do
    a = store_on(ctx, ctx.f1)
    b = store_on(ctx, ctx.f2)
    {:ok, _} = FollowWriter.append(a, "s", 10)

    {a_sub, a_pid} = ManualSubscriber.start(a, "fenced", "s")
    ManualSubscriber.seen_upto(a_sub, 10)
    # the old owner hears of nothing until its claim is gone and another
    # owner runs
    :ok = :sys.suspend(a_pid)
    amref = Process.monitor(a_pid)
    transfer(ctx, ctx.l, ctx.f2)

    {b_sub, _b_pid} = ManualSubscriber.start(b, "fenced", "s")
    ManualSubscriber.seen_upto(b_sub, 10)
    send(b_sub, {:ack, 3})
    wait_until(fn -> checkpoint(b, "fenced") == 3 end, 30_000)

    # the old owner's subscriber acks everything: its subscription
    # (resumed) must not write it
    send(a_sub, {:ack, 10})
    # (the ack reached the old owner's mailbox before it is resumed)
    wait_until(fn ->
      match?({:message_queue_len, n} when n > 0, Process.info(a_pid, :message_queue_len))
    end)

    :ok = :sys.resume(a_pid)

    wait_until(
      fn ->
        checkpoint(b, "fenced") != 3 or not Process.alive?(a_pid)
      end,
      30_000
    )

    assert checkpoint(b, "fenced") == 3
    assert_receive {:DOWN, ^amref, _, _, {:shutdown, :subscription_already_exists}}, 30_000
    assert checkpoint(b, "fenced") == 3
  end
end
