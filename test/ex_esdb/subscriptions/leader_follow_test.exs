defmodule ExESDB.Subscriptions.LeaderFollowTest do
  # Cluster mode on three :peer nodes: a persistent subscription runs on
  # the leader and follows leadership. Its subscriber on a follower keeps
  # receiving when the leader is stopped mid-stream: every event at least
  # once, in order, no gap.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers

  alias ExESDB.Test.{FollowSubscriber, FollowWriter, PeerCluster}

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 180_000

  @store :lftest

  setup do
    PeerCluster.start(@store, 3)
  end

  defp leader_of(nodes), do: PeerCluster.agreed_leader(%{store: @store}, nodes, 10_000)

  test "the leader stopped mid-stream: the subscription goes on on the new leader, no gap", ctx do
    leader = leader_of(ctx.nodes)
    [follower, writer] = ctx.nodes -- [leader]

    assert {:ok, subscriber, sub} =
             :erpc.call(follower, FollowSubscriber, :start, [@store, "follow", "s", self()])

    # it runs on the leader, whichever node it was asked on
    assert node(sub) == leader
    assert_receive {:subscribed, ^subscriber, ^leader}, 5_000

    # 10 events per append from the other follower, in the background
    parent = self()

    spawn_link(fn ->
      for i <- 1..40 do
        {:ok, _} = :erpc.call(writer, FollowWriter, :append, [@store, "s", 10], 60_000)

        if i == 10, do: send(parent, :tenth)
      end

      send(parent, :written)
    end)

    assert_receive :tenth, 30_000
    # mid-stream: the subscriber has events, more are coming
    seen = receive_seen(subscriber, [], &(length(&1) >= 50))
    PeerCluster.stop(ctx, PeerCluster.index_of(ctx, leader))

    survivors = ctx.nodes -- [leader]
    new_leader = leader_of(survivors)
    assert_receive {:subscribed, ^subscriber, ^new_leader}, 30_000
    assert_receive :written, 60_000

    {:ok, last} = :erpc.call(writer, ExESDB.Streams, :get_version, [@store, "s"])
    assert last == 400
    seen = receive_seen(subscriber, seen, &(List.last(&1) == last))

    # every event at least once, in order, no gap: each one is at most
    # one past the highest seen before it (events after the checkpoint
    # come again from the new leader)
    Enum.reduce(seen, 0, fn n, top ->
      assert n <= top + 1, "event #{n} after #{top}: a gap"
      max(n, top)
    end)

    assert Enum.uniq(Enum.sort(seen)) == Enum.to_list(1..last)
  end

  test "a planned transfer: the subscription moves; its subscriber on the old leader follows it",
       ctx do
    leader = leader_of(ctx.nodes)
    [target, writer] = ctx.nodes -- [leader]

    assert {:ok, subscriber, sub} =
             :erpc.call(leader, FollowSubscriber, :start, [@store, "moves", "s", self()])

    assert node(sub) == leader
    assert_receive {:subscribed, ^subscriber, ^leader}, 5_000
    {:ok, _} = :erpc.call(writer, FollowWriter, :append, [@store, "s", 30], 60_000)
    seen = receive_seen(subscriber, [], &(length(&1) >= 30))

    assert :ok = transfer_to(ctx.nodes, writer, target)
    assert_receive {:subscribed, ^subscriber, ^target}, 30_000
    # the old instance is gone from the old leader
    refute :erpc.call(leader, Process, :alive?, [sub])

    {:ok, _} = :erpc.call(writer, FollowWriter, :append, [@store, "s", 30], 60_000)
    seen = receive_seen(subscriber, seen, &(List.last(&1) == 60))

    Enum.reduce(seen, 0, fn n, top ->
      assert n <= top + 1, "event #{n} after #{top}: a gap"
      max(n, top)
    end)

    assert Enum.uniq(Enum.sort(seen)) == Enum.to_list(1..60)
  end

  test "leadership moved three times while events are written: no gap", ctx do
    leader = leader_of(ctx.nodes)
    [follower | _] = ctx.nodes -- [leader]

    assert {:ok, subscriber, _sub} =
             :erpc.call(follower, FollowSubscriber, :start, [@store, "thrice", "s", self()])

    parent = self()

    spawn_link(fn ->
      for _ <- 1..30,
          do: {:ok, _} = :erpc.call(follower, FollowWriter, :append, [@store, "s", 5], 60_000)

      send(parent, :written)
    end)

    # each transfer to a node that does not lead, once the subscription
    # runs on the leader before it
    Enum.reduce(1..3, leader, fn _, from ->
      assert_receive {:subscribed, ^subscriber, ^from}, 30_000
      to = hd(ctx.nodes -- [from])
      assert :ok = transfer_to(ctx.nodes, to, to)
      to
    end)

    assert_receive :written, 60_000
    seen = receive_seen(subscriber, [], &(&1 != [] and Enum.max(&1) == 150))

    Enum.reduce(seen, 0, fn n, top ->
      assert n <= top + 1, "event #{n} after #{top}: a gap"
      max(n, top)
    end)

    assert Enum.uniq(Enum.sort(seen)) == Enum.to_list(1..150)
  end

  # Leadership handed to `target`, asked on node `via`. A transfer answers
  # {:error, :timeout} when no node took over within an election timeout
  # (ExESDB.Cluster.transfer/2), as happens on a loaded machine; the
  # target may still win the election it started. Once leadership has
  # settled, asked again while the target does not lead: at most `tries`
  # times; any other answer stands.
  defp transfer_to(nodes, via, target, tries \\ 5) do
    case :erpc.call(via, ExESDB.Cluster, :transfer, [@store, target]) do
      {:error, :timeout} when tries > 1 ->
        if leader_of(nodes) == target, do: :ok, else: transfer_to(nodes, via, target, tries - 1)

      reply ->
        reply
    end
  end

  # The event numbers the subscriber reports, until `done?` holds for
  # them (each message within 30 s of the last).
  defp receive_seen(subscriber, acc, done?) do
    if done?.(acc) do
      acc
    else
      receive do
        {:seen, ^subscriber, numbers} -> receive_seen(subscriber, acc ++ numbers, done?)
      after
        30_000 -> flunk("the subscriber saw #{length(acc)} events, then nothing")
      end
    end
  end
end
