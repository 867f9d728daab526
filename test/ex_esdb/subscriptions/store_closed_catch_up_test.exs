defmodule ExESDB.Subscriptions.StoreClosedCatchUpTest do
  # A store that closes under a persistent subscription with a read due
  # before the end of its membership reaches it (a C node stopping
  # answers reads {:error, :closed} before its session's end comes; seen
  # in a C node test's teardown; here a NIF store closed by hand): the
  # subscription does not fail with {:catch_up_failed, :closed} (an error
  # log, its subscribers' monitors told a failure), it waits to join
  # again, as when the end of its membership comes first.
  use ExUnit.Case, async: true

  import ExESDB.Test.SubscriptionHelpers
  import ExUnit.CaptureLog

  alias ExESDB.{Streams, Subscriptions}

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  test "a read answered :closed is no failure of the subscription", %{store: s} do
    {:ok, _} = Streams.append_events(s, "a", :any, for(_ <- 1..2500, do: ev()))

    {:ok, sub} =
      Subscriptions.subscribe_to(s, "closing", {:by_stream, "$all"}, self(), buffer_size: 10)

    assert_receive {:subscribed, ^sub}, 5_000
    wait_until(fn -> not :sys.get_state(sub).sub.catching_up end, 30_000)
    mon = Process.monitor(sub)

    log =
      capture_log(fn ->
        :ok = :sys.suspend(sub)
        # live events past its queue's bound: it goes back to reading
        for _ <- 1..16,
            do: {:ok, _} = Streams.append_events(s, "a", :any, for(_ <- 1..100, do: ev()))

        wait_until(fn -> delivered?(sub, 4100) end)
        # its read is due before the store closes
        send(sub, :catch_up)
        {:ok, store} = ExESDB.Store.fetch(s)
        :ok = store.backend.close(store.handle)
        :ok = :sys.resume(sub)
        # the end of its membership handled after the read
        wait_until(fn -> :sys.get_state(sub).member == nil end, 10_000)
      end)

    refute_received {:DOWN, ^mon, _, _, _}
    refute log =~ "catch_up_failed"
  end

  defp delivered?(sub, position) do
    {:messages, msgs} = Process.info(sub, :messages)

    Enum.any?(msgs, fn
      {:events, [_ | _] = records, _since} -> List.last(records).position == position
      _ -> false
    end)
  end
end
