defmodule ExESDB.ReadAheadDownTest do
  # A page read ahead (ExESDB.ReadAhead) whose process dies without a
  # result, while its reader waits for it: the reader reads that page
  # itself, from the same place, and goes on; no event lost or doubled,
  # no error of a new shape. Real store (ExESDB.Test.GatedBackend holds
  # the read ahead until the test kills it).
  use ExUnit.Case, async: false

  import ExESDB.Test.SubscriptionHelpers
  alias ExESDB.{Streams, Subscriptions}
  alias ExESDB.Test.GatedBackend

  defp none(_command, _opts), do: false

  # in ReadAhead.next, waiting for the page
  defp waiting?(pid),
    do:
      match?(
        {:current_function, {ExESDB.ReadAhead, :next, _}},
        Process.info(pid, :current_function)
      )

  test "a lazy stream whose read-ahead dies while it waits reads the page itself" do
    %{store: store} = GatedBackend.start(%{}, &none/2)
    append(store, "s", 1200)
    GatedBackend.hold_read_page(store)
    {:ok, stream} = Streams.stream_forward(store, "s", 1, 300)
    me = self()

    reader =
      spawn(fn ->
        send(me, {:read, self(), Enum.map(stream, & &1.event_number)})
      end)

    mref = Process.monitor(reader)
    assert_receive {:read_page_held, ahead}, 30_000

    # the reader has used its first page and waits for the next
    wait_until(fn -> waiting?(reader) end, 30_000)

    Process.exit(ahead, :kill)
    assert_receive {:read, ^reader, numbers}, 30_000
    assert numbers == Enum.to_list(1..1200)
    assert_receive {:DOWN, ^mref, _, _, :normal}
  end

  test "a catching-up subscription whose read-ahead dies while it waits reads on, no gap" do
    %{store: store} = GatedBackend.start(%{}, &none/2)
    append(store, "s", 3000)
    GatedBackend.hold_read_page(store)
    {:ok, sub} = Subscriptions.subscribe_to(store, "ahead_down", {:by_stream, "s"}, self())
    assert_receive {:subscribed, ^sub}
    mref = Process.monitor(sub)
    assert_receive {:read_page_held, ahead}, 30_000
    # acks until it waits on the page read ahead
    events = ack_until_waiting(store, sub, [])
    Process.exit(ahead, :kill)
    events = ack_until(store, sub, 3000, events)
    assert Enum.map(events, & &1.event_number) == Enum.to_list(1..3000)
    refute_received {:DOWN, ^mref, _, _, _}
  end

  defp ack_until_waiting(store, sub, acc) do
    if waiting?(sub) do
      acc
    else
      receive do
        {:events, evs} ->
          Subscriptions.ack_event(store, sub, List.last(evs))
          ack_until_waiting(store, sub, acc ++ evs)
      after
        30_000 -> flunk("the subscription never waited on its read-ahead")
      end
    end
  end
end
