defmodule ExESDB.Subscriptions.ClusterPlacementTest do
  # Persistent subscriptions on a 3-node cluster (this VM and two :peer
  # nodes) hold their guarantees across nodes: one subscription per name
  # in the cluster, a delete from any node stops it where it runs, and a
  # deleted checkpoint does not come back.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers, only: [cluster_support?: 0]
  import ExESDB.Test.SubscriptionHelpers

  alias ExESDB.Subscriptions
  alias ExESDB.Test.{ClusterBackend, FollowSubscriber}

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 120_000

  setup context, do: ClusterBackend.start_store(context)

  defp peers, do: :persistent_term.get({ClusterBackend, :peers})

  # The stored checkpoint as this node reads it after a barrier.
  defp stored(store, name) do
    :ok = ExESDB.Cluster.barrier(store)
    {:ok, s} = ExESDB.Store.fetch(store)

    case s.backend.checkpoint_get(s, name) do
      {:ok, {_, checkpoint, _, _}} -> checkpoint
      {:error, :subscription_not_found} -> nil
    end
  end

  @tag store_opts: [timeout: 2_000]
  test "a start on the leader that ends after its remote caller timed out leaves no subscriber behind",
       %{store: s} do
    {:ok, leader} = ExESDB.Cluster.leader(s)
    caller = Enum.find([node() | peers()], &(&1 != leader))
    # the leader's starts hang (a slow checkpoint round) until resumed
    sup = Subscriptions.supervisor(s)
    :ok = :erpc.call(leader, :sys, :suspend, [sup])
    me = self()

    assert {:error, :timeout} =
             :erpc.call(caller, Subscriptions, :subscribe_to, [s, "late", {:by_stream, "s"}, me])

    :ok = :erpc.call(leader, :sys, :resume, [sup])
    # (the supervisor answers this after the start it held)
    _ = :erpc.call(leader, :sys, :get_state, [sup])
    # the start went on on the leader, then its subscriber left: nothing runs
    wait_until(fn ->
      :erpc.call(leader, Subscriptions, :whereis_persistent, [s, "late"]) ==
        {:error, :subscription_not_found}
    end)
  end

  test "one subscription per name in the cluster: a second subscriber on another node finds it taken",
       %{store: s} do
    [a, b] = peers()
    assert {:ok, _, sub} = :erpc.call(a, FollowSubscriber, :start, [s, "one", "s", self()])

    assert {:error, :subscription_already_exists} =
             :erpc.call(b, FollowSubscriber, :start, [s, "one", "s", self()])

    assert {:ok, [%{name: "one", running: true}]} = Subscriptions.get_subscriptions(s)
    assert alive?(sub)
  end

  test "a delete on another node stops the subscription where it runs; its checkpoint stays deleted",
       %{store: s} do
    [a, b] = peers()
    append(s, "s", 5)
    assert {:ok, subscriber, sub} = :erpc.call(a, FollowSubscriber, :start, [s, "del", "s", self()])
    ref = Process.monitor(sub)
    wait_until(fn -> stored(s, "del") == 5 end)

    assert :ok = :erpc.call(b, Subscriptions, :delete_subscription, [s, "del"])
    assert_receive {:DOWN, ^ref, :process, ^sub, _}, 5_000
    # events after the delete reach no subscription of the old one
    append(s, "s", 5)
    assert stored(s, "del") == nil
    assert {:ok, []} = Subscriptions.get_subscriptions(s)
    refute_received {:seen, ^subscriber, [6 | _]}
  end

  test "acks written while the subscription is deleted: the checkpoint does not come back",
       %{store: s} do
    append(s, "s", 300)
    {:ok, sub} = Subscriptions.subscribe_to(s, "acks", {:by_stream, "s"}, self())
    events = receive_n(300, [])
    # every event acked on its own, then the delete at once
    Enum.each(events, &Subscriptions.ack_event(s, sub, &1))
    assert :ok = Subscriptions.delete_subscription(s, "acks")
    assert stored(s, "acks") == nil
    # a checkpoint write still on its way would land within a few rounds
    for _ <- 1..20, do: assert(stored(s, "acks") == nil)
  end

  test "the gateway: a caller's sync delete lands after its async writes sent before",
       %{store: store} do
    {:ok, s} = ExESDB.Store.fetch(store)
    definition = :erlang.term_to_binary(%{})

    for c <- 1..100 do
      :ok =
        s.backend.submit(s, {:checkpoint_put, "relayed", c, definition},
          async: true,
          ref: make_ref()
        )
    end

    assert :ok = s.backend.submit(s, {:checkpoint_delete, "relayed"}, [])
    assert stored(store, "relayed") == nil
  end

  test "a subscription gone before its subscriber's attachment was made: the subscriber follows it",
       %{store: s} do
    # (a leadership change right after the start stops it that early)
    {:ok, sub} = Subscriptions.subscribe_to(s, "early", {:by_stream, "s"})
    assert_receive {:subscribed, ^sub}
    :ok = Subscriptions.unsubscribe(s, sub)
    refute alive?(sub)

    spec = {"early", {:by_stream, "s"}, self(), []}
    :ok = GenServer.call(:"exesdb_placement_#{s}", {:attach, sub, spec})
    assert_receive {:subscribed, again}, 10_000
    assert again != sub
  end

  test "follow_leader: false: a subscriber whose subscription went is left to subscribe again itself",
       %{store: s} do
    # (a Commanded handler restarting on its subscription's DOWN: a move
    # by the store as well would hold the name on the new leader)
    opts = [follow_leader: false]
    {:ok, sub} = Subscriptions.subscribe_to(s, "own", {:by_stream, "s"}, self(), opts)
    assert_receive {:subscribed, ^sub}
    :ok = Subscriptions.unsubscribe(s, sub)
    refute alive?(sub)

    placement = :"exesdb_placement_#{s}"
    :ok = GenServer.call(placement, {:attach, sub, {"own", {:by_stream, "s"}, self(), opts}})
    # its DOWN (:noproc) handled: no move started
    _ = :sys.get_state(placement)
    assert {:ok, again} = Subscriptions.subscribe_to(s, "own", {:by_stream, "s"}, self(), opts)
    assert_receive {:subscribed, ^again}
    refute_received {:subscribed, _}
  end

  defp receive_n(n, acc) when length(acc) >= n, do: acc

  defp receive_n(n, acc) do
    receive do
      {:events, evs} -> receive_n(n, acc ++ evs)
    after
      5_000 -> acc
    end
  end
end
