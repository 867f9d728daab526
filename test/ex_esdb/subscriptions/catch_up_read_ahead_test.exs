defmodule ExESDB.Subscriptions.CatchUpReadAheadTest do
  # A persistent subscription catching up reads its next page ahead
  # (ExESDB.ReadAhead) while it hands out the last: every event comes
  # once and in order, a page that arrives while the subscription does
  # something else is kept, and a page read ahead that said :eof is not
  # taken for the end when live events were dropped since.
  use ExUnit.Case, async: true

  import ExESDB.Test.SubscriptionHelpers, only: [wait_until: 1]

  alias ExESDB.{NewEvent, Streams, Subscriptions}

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  defp append(store, stream, n) do
    events = for i <- 1..n, do: %NewEvent{event_type: "t", data: i}
    {:ok, _} = Streams.append_events(store, stream, :any, events)
  end

  defp ack_all(_store, _sub, n, acc) when length(acc) >= n, do: Enum.reverse(acc)

  defp ack_all(store, sub, n, acc) do
    receive do
      {:events, events} ->
        :ok = Subscriptions.ack_event(store, sub, List.last(events))
        ack_all(store, sub, n, Enum.reverse(Enum.map(events, & &1.position), acc))
    after
      10_000 -> flunk("#{length(acc)} events of #{n}")
    end
  end

  test "events appended after a page read ahead said :eof reach a subscription catching up",
       %{store: store} do
    append(store, "a", 3001)
    # buffer_size 10 and nothing acked: the queue fills with the third
    # page (1,000 a page) and the subscription stops reading, the page
    # after it (the last event, :eof) read ahead
    {:ok, sub} =
      Subscriptions.subscribe_to(store, "ahead", {:by_stream, "$all"}, self(), buffer_size: 10)

    assert_receive {:subscribed, ^sub}, 5_000
    wait_until(fn -> :sys.get_state(sub).sub.pending_n > 2000 end)
    wait_until(fn -> :sys.get_state(sub).ahead.result != nil end)
    assert :sys.get_state(sub).sub.catching_up
    # delivered live while catching up: dropped, to be read from the store
    append(store, "a", 5)
    :sys.get_state(sub)
    assert ack_all(store, sub, 3006, []) == Enum.to_list(1..3006)
  end

  test "a long catch-up with live events appended meanwhile: each event once, in order",
       %{store: store} do
    append(store, "a", 4500)

    {:ok, sub} =
      Subscriptions.subscribe_to(store, "long", {:by_stream, "$all"}, self(), buffer_size: 300)

    writer = Task.async(fn -> for _ <- 1..5, do: append(store, "b", 100) end)
    assert ack_all(store, sub, 5000, []) == Enum.to_list(1..5000)
    Task.await(writer, 30_000)
    refute_receive {:events, _}, 200
  end
end
