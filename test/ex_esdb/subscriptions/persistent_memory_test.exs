defmodule ExESDB.Subscriptions.PersistentMemoryTest do
  # What a persistent subscription holds while its subscriber holds events
  # unacked: for $all (and event types) their cursors only, not a copy of
  # each record (which its garbage collections copied again and again).
  use ExUnit.Case, async: true

  import ExESDB.Test.SubscriptionHelpers

  alias ExESDB.Subscriptions

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  test "a subscription on $all keeps no copy of the events its subscriber holds unacked",
       %{store: s} do
    n = 5000
    for _ <- 1..5, do: append(s, "m", div(n, 5))

    {:ok, sub} = Subscriptions.subscribe_to(s, "mem", {:by_stream, "$all"}, self(), buffer_size: n)

    held = receive_all(n, [])
    assert length(held) == n
    wait_until(fn -> :sys.get_state(sub).sub.pending_n == 0 end)

    :erlang.garbage_collect(sub)
    {:total_heap_size, words} = Process.info(sub, :total_heap_size)
    # the records alone are over 40 words each (200,000 for these)
    assert words < 40_000, "the subscription's heap holds #{words} words"
    # every event still comes once and the checkpoint follows the ack
    Subscriptions.ack_event(s, sub, List.last(held))
    wait_until(fn -> GenServer.call(sub, :checkpoint) == n end)
  end

  test "an event type's subscriber that goes: what it held unacked is read again and goes " <>
         "to the other, in order, before anything newer",
       %{store: s} do
    opts = [concurrency_limit: 2, buffer_size: 3]
    me = self()
    selector = {:by_event_type, "t"}

    leaver =
      spawn(fn ->
        {:ok, sub} = Subscriptions.subscribe_to(s, "leave-t", selector, self(), opts)
        send(me, {:in, sub})
        receive do: ({:events, evs} -> send(me, {:leaver_got, evs}))
        receive do: (:leave -> send(me, {:left, Subscriptions.unsubscribe(s, sub)}))
        Process.sleep(:infinity)
      end)

    assert_receive {:in, sub}, 5_000
    {:ok, ^sub} = Subscriptions.subscribe_to(s, "leave-t", selector, self(), opts)
    # events of another type between them: the type's positions are sparse
    mixed = for i <- 1..12, do: ev(if(rem(i, 2) == 1, do: "t", else: "other"), %{})
    {:ok, _} = ExESDB.Streams.append_events(s, "x", :any, mixed)
    assert_receive {:leaver_got, held}, 3_000
    mine = receive_events()
    assert length(held) == 3 and length(mine) == 3
    send(leaver, :leave)
    assert_receive {:left, :ok}, 5_000
    append(s, "x", 1, "t")
    Subscriptions.ack_event(s, sub, List.last(mine))
    again = receive_events()
    # the same events (read again: equal records), then the newer one
    assert again == held
    Subscriptions.ack_event(s, sub, List.last(again))
    assert positions(receive_events()) == [13]
    Process.exit(leaver, :kill)
  end

  defp receive_all(n, acc) when length(acc) >= n, do: acc

  defp receive_all(n, acc) do
    receive do
      {:events, evs} -> receive_all(n, acc ++ evs)
    after
      5_000 -> acc
    end
  end
end
