defmodule ExESDB.PersistentLifecycleTest do
  # A persistent subscription's life: how it is created, resumed, redefined,
  # raced while stopping and shut down.
  use ExUnit.Case, async: true

  alias ExESDB.{NewEvent, Streams, Subscriptions}
  import ExESDB.Test.SubscriptionHelpers, only: [receive_events: 0]

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  defp append(s, stream, n) do
    events = for _ <- 1..n, do: %NewEvent{event_type: "t", data: %{}}
    {:ok, v} = Streams.append_events(s, stream, :any, events)
    v
  end

  defp stop_and_wait(s, sub) do
    ref = Process.monitor(sub)
    :ok = Subscriptions.unsubscribe(s, sub)
    assert_receive {:DOWN, ^ref, :process, ^sub, _}
  end

  test "a stream subscription started at :current keeps its starting point", %{store: s} do
    append(s, "a", 2)

    {:ok, sub} =
      Subscriptions.subscribe_to(s, "cur", {:by_stream, "a"}, self(), start_from: :current)

    stop_and_wait(s, sub)
    append(s, "a", 2)
    # resumes from where it started, not from the stream's new end
    {:ok, _} = Subscriptions.subscribe_to(s, "cur", {:by_stream, "a"})
    assert Enum.map(receive_events(), & &1.event_number) == [3, 4]
  end

  test "a subscription at :current that saw nothing can be deleted", %{store: s} do
    append(s, "a", 1)

    {:ok, _} =
      Subscriptions.subscribe_to(s, "cur2", {:by_stream, "a"}, self(), start_from: :current)

    assert :ok = Subscriptions.delete_subscription(s, "cur2")
  end

  test "reusing a name with another selector is refused", %{store: s} do
    append(s, "a", 3)
    {:ok, sub} = Subscriptions.subscribe_to(s, "same", {:by_stream, "$all"})
    assert length(receive_events()) == 3
    stop_and_wait(s, sub)

    assert {:error, :subscription_definition_changed} =
             Subscriptions.subscribe_to(s, "same", {:by_stream, "a"})

    assert {:error, :subscription_definition_changed} =
             Subscriptions.subscribe_to(s, "same", {:by_event_type, "t"})

    # the same definition still resumes
    {:ok, _} = Subscriptions.subscribe_to(s, "same", {:by_stream, "$all"})
  end

  test "a name whose checkpoint another API wrote (bytes, not a definition) is taken", %{
    store: s
  } do
    {:ok, store} = ExESDB.Store.fetch(s)
    :ok = :ex_esdb.put_checkpoint(store.handle, "erl", 5, "opaque bytes")

    assert {:error, :subscription_definition_changed} =
             Subscriptions.subscribe_to(s, "erl", {:by_stream, "$all"})
  end

  test "subscribing while the only subscriber's subscription stops never crashes the caller",
       %{store: s} do
    append(s, "a", 1)

    for i <- 1..50 do
      name = "race-#{i}"
      first = spawn(fn -> receive(do: (:never -> :ok)) end)
      {:ok, _} = Subscriptions.subscribe_to(s, name, {:by_stream, "$all"}, first)
      Process.exit(first, :kill)

      # before the subscription saw its subscriber go it is still taken
      # (Commanded retries on that), after it a new one starts; the call
      # never exits
      pid = subscribe_until_ok(s, name, 100)
      assert_receive {:subscribed, ^pid}
      stop_and_wait(s, pid)
    end
  end

  defp subscribe_until_ok(s, name, tries) do
    case Subscriptions.subscribe_to(s, name, {:by_stream, "$all"}) do
      {:ok, pid} ->
        pid

      {:error, :subscription_already_exists} when tries > 0 ->
        Process.sleep(10)
        subscribe_until_ok(s, name, tries - 1)
    end
  end

  # unsubscribe and delete_subscription watch the subscription to wait
  # for its end: an ended one's watch must not leave a :DOWN behind
  test "unsubscribing or deleting an ended subscription leaves nothing in the mailbox",
       %{store: s} do
    {:ok, sub} = Subscriptions.subscribe_to(s, "over", {:by_stream, "$all"})
    ref = Process.monitor(sub)
    Process.exit(sub, :kill)
    assert_receive {:DOWN, ^ref, :process, ^sub, :killed}
    assert :ok = Subscriptions.unsubscribe(s, sub)
    assert {:error, :subscription_not_found} = ExESDB.GatewayAPI.ack_event(s, "over", self(), 0)
    assert :ok = Subscriptions.delete_subscription(s, "over")
    refute_received {:DOWN, _, :process, _, _}
  end

  test "the subscription traps exits, so a shutdown writes its checkpoint", %{
    store: s,
    store_opts: opts
  } do
    append(s, "a", 4)
    {:ok, sub} = Subscriptions.subscribe_to(s, "durable", {:by_stream, "$all"})
    assert {:trap_exit, true} = Process.info(sub, :trap_exit)
    [_, second | _] = receive_events()
    Subscriptions.ack_event(s, sub, second)
    # the ack (a cast from this process) is handled before this call
    assert 2 = GenServer.call(sub, :checkpoint)
    stop_supervised!(ExESDB.System.system_name(s))
    start_supervised!({ExESDB.System, opts})
    {:ok, _} = Subscriptions.subscribe_to(s, "durable", {:by_stream, "$all"})
    assert Enum.map(receive_events(), & &1.position) == [3, 4]
  end

  test "an exit signal from another process acts as it would without trapping exits", %{
    store: s
  } do
    append(s, "a", 3)
    {:ok, sub} = Subscriptions.subscribe_to(s, "signals", {:by_stream, "$all"})
    [first | _] = receive_events()
    Subscriptions.ack_event(s, sub, first)
    ref = Process.monitor(sub)
    # :normal from a process that is not its parent is ignored
    Process.exit(sub, :normal)
    assert 1 = GenServer.call(sub, :checkpoint)
    # any other reason stops it with that reason, the checkpoint written
    # (as Commanded's tests stop a subscription: Process.exit(pid, :shutdown))
    Process.exit(sub, :shutdown)
    assert_receive {:DOWN, ^ref, :process, ^sub, :shutdown}
    {:ok, _} = Subscriptions.subscribe_to(s, "signals", {:by_stream, "$all"})
    assert Enum.map(receive_events(), & &1.position) == [2, 3]
  end
end

defmodule ExESDB.PersistentGapTest do
  # A delivery that does not continue from what the subscription saw last
  # sends it back to the store. The NIF sends such a delivery after events
  # it never saw (another process wrote them) or a fan-out it could not
  # build; here the test sends one itself, as a record the store does not
  # hold yet at a position past a gap.
  use ExUnit.Case, async: true

  alias ExESDB.{NewEvent, Streams, Subscriptions}
  import ExESDB.Test.SubscriptionHelpers, only: [receive_events: 0]

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  defp append(s, stream, type \\ "t") do
    {:ok, _} = Streams.append_events(s, stream, :any, [%NewEvent{event_type: type, data: %{}}])
    {:ok, [rec]} = Streams.get_events(s, stream, 1, 1)
    rec
  end

  defp live(s, name, selector) do
    {:ok, sub} = Subscriptions.subscribe_to(s, name, selector, self(), start_from: :current)
    assert_receive {:subscribed, ^sub}
    sub
  end

  test "$all: a delivery past a gap is read from the store instead", %{store: s} do
    rec = append(s, "a")
    sub = live(s, "all", {:by_stream, "$all"})
    send(sub, {:events, [%{rec | position: 3}], 1})
    append(s, "b")
    append(s, "c")
    assert Enum.map(receive_events(), &{&1.position, &1.stream_id}) == [{2, "b"}, {3, "c"}]
  end

  test "a stream: a delivery past a version gap is read from the store instead", %{store: s} do
    rec = append(s, "a")
    sub = live(s, "one", {:by_stream, "a"})
    send(sub, {:events, [%{rec | event_number: 3, position: 9}], 1})
    append(s, "a")
    append(s, "a")
    assert Enum.map(receive_events(), &{&1.event_number, &1.position}) == [{2, 2}, {3, 3}]
  end

  test "a type: a delivery that vouches only for later commits is read from the store instead",
       %{store: s} do
    rec = append(s, "a", "u")
    sub = live(s, "type", {:by_event_type, "u"})
    send(sub, {:events, [%{rec | position: 3}], 3})
    append(s, "b", "u")
    append(s, "c", "u")
    assert Enum.map(receive_events(), &{&1.position, &1.stream_id}) == [{2, "b"}, {3, "c"}]
  end
end
