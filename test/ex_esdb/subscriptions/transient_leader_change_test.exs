defmodule ExESDB.Subscriptions.TransientLeaderChangeTest do
  # Cluster mode on three :peer nodes: a transient subscription lives on
  # the replica it was made on, which fans out what it applies, whoever
  # leads. Its subscriber, on a node that stays up, sees every event
  # exactly once and in order across the leader's stop and a planned
  # transfer: no gap, nothing twice.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers

  alias ExESDB.Test.{FollowWriter, PeerCluster}

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 180_000

  @store :tlctest

  setup do
    PeerCluster.start(@store, 3)
  end

  test "a transient subscriber on a follower: every event once, in order, across the leader's stop and a transfer",
       ctx do
    [follower, writer] = ctx.nodes -- [ctx.leader]

    # made on the follower, each for a collector here: the follower's
    # relay carries them
    parent = self()

    subscribe = fn selector ->
      collector = spawn_link(fn -> collect(parent, selector, []) end)

      assert {:ok, _} =
               :erpc.call(follower, ExESDB.Subscriptions, :subscribe, [
                 @store,
                 selector,
                 collector,
                 [credit: :infinity]
               ])
    end

    subscribe.({:by_stream, "s"})
    subscribe.({:by_stream, "$all"})

    spawn_link(fn ->
      for i <- 1..40 do
        {:ok, _} = :erpc.call(writer, FollowWriter, :append, [@store, "s", 5], 60_000)
        if i == 10, do: send(parent, :tenth)
        if i == 25, do: send(parent, :twenty_fifth)
      end

      send(parent, :written)
    end)

    assert_receive :tenth, 30_000
    PeerCluster.stop(ctx, PeerCluster.index_of(ctx, ctx.leader))
    survivors = [follower, writer]
    new_leader = PeerCluster.agreed_leader(ctx, survivors, 30_000)

    # then leadership moved to the other survivor, planned, while writing
    assert_receive :twenty_fifth, 60_000
    to = hd(survivors -- [new_leader])
    transfer(ctx, new_leader, to)
    assert_receive :written, 60_000
    # read on the writing node, which has applied its own appends
    {:ok, 200} = :erpc.call(writer, ExESDB.Streams, :get_version, [@store, "s"])
    s_events = collected({:by_stream, "s"})
    all_events = collected({:by_stream, "$all"})

    # the stream: versions 1..200, each once, in order
    assert Enum.map(s_events, & &1.stream_version) == Enum.to_list(1..200)

    # $all: positions without a gap or a repeat, and the stream's events
    # in them in the same order (the store's own records may be there too)
    positions = Enum.map(all_events, & &1.position)
    first = hd(positions)
    assert positions == Enum.to_list(first..(first + length(positions) - 1))

    assert Enum.map(Enum.filter(all_events, &(&1.stream_id == "s")), & &1.event_id) ==
             Enum.map(s_events, & &1.event_id)
  end

  # What the collector of `selector` kept; fails at once when its
  # subscription ended instead.
  defp collected(selector) do
    receive do
      {:collected, ^selector, events} -> events
      {:ended, ^selector, ended} -> flunk("#{inspect(selector)} ended: #{inspect(ended)}")
    after
      60_000 -> flunk("#{inspect(selector)}: no 200th event of s within 60 s")
    end
  end

  # A subscriber: keeps the events it is sent until the stream's 200th,
  # then sends them to the test; an overflow or an end is sent as is.
  defp collect(parent, selector, acc) do
    receive do
      {:events, events} ->
        acc = acc ++ events

        if Enum.any?(events, &(&1.stream_id == "s" and &1.stream_version == 200)),
          do: send(parent, {:collected, selector, acc}),
          else: collect(parent, selector, acc)

      {tag, _sub, _detail} = ended when tag in [:subscription_overflow, :subscription_down] ->
        send(parent, {:ended, selector, ended})
    end
  end

  # Leadership handed to `to` from `from`, once both agree on a leader.
  # A transfer may answer :timeout on a loaded machine (no node took
  # over within an election timeout); the cluster still has a leader.
  defp transfer(ctx, from, to) do
    case :erpc.call(from, ExESDB.Cluster, :transfer, [@store, to], 60_000) do
      :ok -> :ok
      {:error, :timeout} -> :ok
    end

    PeerCluster.agreed_leader(ctx, [from, to], 30_000)
  end
end
