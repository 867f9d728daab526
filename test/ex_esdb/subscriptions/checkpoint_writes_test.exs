defmodule ExESDB.Subscriptions.CheckpointWritesTest do
  # How a persistent subscription writes its checkpoint: acks that come
  # while a write is in flight are coalesced into the next write (one
  # write at a time, each with the latest checkpoint), and a delete waits
  # for the write in flight, so a deleted checkpoint never comes back.
  use ExUnit.Case, async: false

  import ExESDB.Test.SubscriptionHelpers

  alias ExESDB.Subscriptions
  alias ExESDB.Test.GatedBackend

  defp put?({:checkpoint_put, _, _, _}, opts), do: opts[:async] == true
  defp put?(_, _), do: false

  defp puts_submitted(acc \\ 0) do
    receive do
      {:submit, {:checkpoint_put, _, _, _}} -> puts_submitted(acc + 1)
    after
      0 -> acc
    end
  end

  defp stored(store, name) do
    {:ok, s} = ExESDB.Store.fetch(store)

    case s.backend.checkpoint_get(s, name) do
      {:ok, {_, checkpoint, _, _}} -> checkpoint
      {:error, :subscription_not_found} -> nil
    end
  end

  test "acks that come while a checkpoint write is in flight are written as one" do
    %{store: store} = GatedBackend.start(%{}, &put?/2)
    append(store, "s", 1000)
    {:ok, sub} = Subscriptions.subscribe_to(store, "batched", {:by_stream, "s"}, self())
    assert_receive {:subscribed, ^sub}
    events = ack_each_until(store, sub, 1000, [])
    assert length(events) == 1000
    # the first ack's write is held (a slow round); the other 999 acks
    # have all been handled meanwhile
    assert_receive {:gated, {:checkpoint_put, "batched", _, _}, _}
    assert GenServer.call(sub, :checkpoint) == 1000
    GatedBackend.release(store)
    ExESDB.Test.ClusterHelpers.wait_until(fn -> stored(store, "batched") == 1000 end)
    # the sync write at creation, the held one, then one for the rest
    assert puts_submitted() <= 3
  end

  test "a delete waits for the checkpoint write in flight: the checkpoint does not come back" do
    %{store: store} = GatedBackend.start(%{}, &put?/2)
    append(store, "s", 10)
    {:ok, sub} = Subscriptions.subscribe_to(store, "deleted", {:by_stream, "s"}, self())
    assert_receive {:subscribed, ^sub}
    [_ | _] = ack_each_until(store, sub, 10, [])
    assert_receive {:gated, {:checkpoint_put, "deleted", _, _}, _}

    # the delete goes while the write is held; the write lands when released
    deleting = Task.async(fn -> Subscriptions.delete_subscription(store, "deleted") end)
    # (a delete that does not wait is submitted now: give it the time to
    # be; the stored checkpoint below decides)
    receive do
      {:submit, {:checkpoint_delete, "deleted"}} -> :ok
    after
      500 -> :ok
    end

    GatedBackend.release(store)
    assert :ok = Task.await(deleting)
    assert_receive {:done, {:checkpoint_put, "deleted", _, _}}
    assert stored(store, "deleted") == nil
  end

  test "deleting the checkpoint of a subscription not running holds no other start meanwhile" do
    delete? = fn cmd, _opts -> match?({:checkpoint_delete, "idle"}, cmd) end
    %{store: store} = GatedBackend.start(%{}, delete?)
    {:ok, sub} = Subscriptions.subscribe_to(store, "idle", {:by_stream, "s"}, self())
    :ok = Subscriptions.unsubscribe(store, sub)

    # the delete is held in the store (a slow round)
    deleting = Task.async(fn -> Subscriptions.delete_subscription(store, "idle") end)
    assert_receive {:gated, {:checkpoint_delete, "idle"}, _}, 5_000

    # another subscription starts meanwhile (the subscriptions' supervisor
    # is not waiting on the delete)
    other = Task.async(fn -> Subscriptions.subscribe_to(store, "other", {:by_stream, "s"}) end)
    assert {:ok, {:ok, _}} = Task.yield(other, 5_000)

    # a subscribe_to of the name being deleted starts after the delete
    again = Task.async(fn -> Subscriptions.subscribe_to(store, "idle", {:by_stream, "s"}) end)
    GatedBackend.release(store)
    assert :ok = Task.await(deleting)
    assert {:ok, _} = Task.await(again)
  end

  test "a checkpoint write refused in the call is tried again" do
    %{store: store} = GatedBackend.start(%{}, &put?/2, mode: :refuse)
    append(store, "s", 10)
    {:ok, sub} = Subscriptions.subscribe_to(store, "refused", {:by_stream, "s"}, self())
    assert_receive {:subscribed, ^sub}
    [_ | _] = ack_each_until(store, sub, 10, [])
    assert_receive {:refused, {:checkpoint_put, "refused", _, _}}
    # tried again while refused, and written once the store takes it
    assert_receive {:refused, {:checkpoint_put, "refused", _, _}}, 5_000
    GatedBackend.release(store)
    ExESDB.Test.ClusterHelpers.wait_until(fn -> stored(store, "refused") == 10 end)
  end

  test "a delete is not held by a refused checkpoint write" do
    %{store: store} = GatedBackend.start(%{}, &put?/2, mode: :refuse)
    append(store, "s", 10)
    {:ok, sub} = Subscriptions.subscribe_to(store, "refused_del", {:by_stream, "s"}, self())
    assert_receive {:subscribed, ^sub}
    [_ | _] = ack_each_until(store, sub, 10, [])
    assert_receive {:refused, {:checkpoint_put, "refused_del", _, _}}
    assert :ok = Subscriptions.delete_subscription(store, "refused_del")
    assert stored(store, "refused_del") == nil
  end

  test "a checkpoint write never answered is given up after the store's timeout and tried again" do
    %{store: store} = GatedBackend.start(%{}, &put?/2, mode: :drop, timeout: 300)
    append(store, "s", 10)
    {:ok, sub} = Subscriptions.subscribe_to(store, "dropped", {:by_stream, "s"}, self())
    assert_receive {:subscribed, ^sub}
    [_ | _] = ack_each_until(store, sub, 10, [])
    assert_receive {:dropped, {:checkpoint_put, "dropped", _, _}}
    # a delete meanwhile waits at most for that bound
    deleting = Task.async(fn -> Subscriptions.delete_subscription(store, "dropped") end)
    assert {:ok, :ok} = Task.yield(deleting, 5_000)
    assert stored(store, "dropped") == nil
  end

  test "a checkpoint write never answered is written again once the store answers" do
    %{store: store} = GatedBackend.start(%{}, &put?/2, mode: :drop, timeout: 300)
    append(store, "s", 10)
    {:ok, sub} = Subscriptions.subscribe_to(store, "dropped2", {:by_stream, "s"}, self())
    assert_receive {:subscribed, ^sub}
    [_ | _] = ack_each_until(store, sub, 10, [])
    assert_receive {:dropped, {:checkpoint_put, "dropped2", _, _}}
    GatedBackend.release(store)
    ExESDB.Test.ClusterHelpers.wait_until(fn -> stored(store, "dropped2") == 10 end)
  end

  # Receive until n events came, acking each event on its own.
  defp ack_each_until(_store, _sub, n, acc) when length(acc) >= n, do: acc

  defp ack_each_until(store, sub, n, acc) do
    receive do
      {:events, evs} ->
        Enum.each(evs, &Subscriptions.ack_event(store, sub, &1))
        ack_each_until(store, sub, n, acc ++ evs)
    after
      3000 -> acc
    end
  end
end
