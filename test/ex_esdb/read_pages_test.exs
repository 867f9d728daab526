defmodule ExESDB.ReadPagesTest do
  # Reads come in pages bounded by count and by bytes (max_read_bytes);
  # a page cut short is not the end: every reader follows the explicit
  # continuation until :eof.
  use ExUnit.Case, async: true

  alias ExESDB.{NewEvent, Streams, Subscriptions}

  # A 4 KiB budget and events of ~1 KiB: pages of 3 or so, so a batch of
  # 10 is always cut short.
  @moduletag store_opts: [limits: [max_read_bytes: 4096]]
  @n 20

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  defp big(i), do: %NewEvent{event_type: "big", data: %{i: i, pad: String.duplicate("x", 1000)}}

  defp append_big(store, stream, range) do
    {:ok, _} = Streams.append_events(store, stream, :any, Enum.map(range, &big/1))
  end

  defp setup_big(store) do
    # interleaved with a second stream so versions and positions differ
    for i <- 1..@n do
      append_big(store, "big", [i])

      {:ok, _} =
        Streams.append_events(store, "other", :any, [%NewEvent{event_type: "small", data: i}])
    end
  end

  test "one page is cut by bytes and says where the next starts", %{store: store} do
    setup_big(store)
    {:ok, page, next} = Streams.read_page(store, "big", 1, 10)
    assert length(page) < 10
    assert next == length(page) + 1

    # following next to :eof gives every event once, in order
    all = follow(store, "big", 1, :forward)
    assert Enum.map(all, & &1.data.i) == Enum.to_list(1..@n)
    back = follow(store, "big", :end, :backward)
    assert Enum.map(back, & &1.data.i) == Enum.to_list(@n..1)
    assert length(follow(store, "$all", 0, :forward)) == 2 * @n
    by_type = follow(store, {:type, "big"}, 0, :forward)
    assert Enum.map(by_type, & &1.position) == Enum.to_list(1..(2 * @n - 1)//2)

    assert {:ok, [], :eof} = Streams.read_page(store, "big", @n + 1, 10)

    assert {:error, {:invalid_source, _}} =
             Streams.read_page(store, {:type, "big"}, 0, 10, :backward)
  end

  defp follow(store, source, start, direction, acc \\ []) do
    {:ok, page, next} = Streams.read_page(store, source, start, 10, direction)
    if next == :eof, do: acc ++ page, else: follow(store, source, next, direction, acc ++ page)
  end

  test "lazy streams and counted reads read past pages cut short", %{store: store} do
    setup_big(store)
    ids = fn events -> Enum.map(events, & &1.data.i) end

    {:ok, fwd} = Streams.stream_forward(store, "big", 1, 10)
    assert ids.(Enum.to_list(fwd)) == Enum.to_list(1..@n)
    {:ok, bwd} = Streams.stream_backward(store, "big", :end, 10)
    assert ids.(Enum.to_list(bwd)) == Enum.to_list(@n..1)
    {:ok, all} = Streams.all_forward(store, 1, 10)
    assert Enum.count(all) == 2 * @n
    {:ok, all_back} = Streams.all_backward(store, :end, 10)
    assert Enum.map(all_back, & &1.position) == Enum.to_list((2 * @n)..1)

    assert {:ok, events} = Streams.get_events(store, "big", 1, 15)
    assert ids.(events) == Enum.to_list(1..15)
    assert {:ok, events} = Streams.get_events(store, "big", :end, 100, :backward)
    assert ids.(events) == Enum.to_list(@n..1)
    assert {:ok, events} = Streams.get_all_events(store, 1, 100)
    assert length(events) == 2 * @n
    assert {:ok, events} = Streams.get_events_by_type(store, "big", 0, 100)
    assert ids.(events) == Enum.to_list(1..@n)
  end

  test "a persistent subscription catches up past pages cut short", %{store: store} do
    append_big(store, "big", 1..@n)

    {:ok, sub} =
      Subscriptions.subscribe_to(store, "catch-up", {:by_stream, "big"}, self(), buffer_size: 100)

    events = receive_acking(store, sub, @n, [])
    assert Enum.map(events, & &1.data.i) == Enum.to_list(1..@n)

    # and then goes live
    append_big(store, "big", [@n + 1])
    assert [%{event_number: 21}] = receive_acking(store, sub, 1, [])
  end

  defp receive_acking(_store, _sub, n, acc) when length(acc) >= n, do: acc

  defp receive_acking(store, sub, n, acc) do
    receive do
      {:events, events} ->
        Subscriptions.ack_event(store, sub, List.last(events))
        receive_acking(store, sub, n, acc ++ events)
    after
      2000 -> flunk("got #{length(acc)} of #{n} events")
    end
  end
end

defmodule ExESDB.ReadPastTenThousandTest do
  # Issue 10 item 20: batches above the NIF's 10,000-event page.
  use ExUnit.Case, async: true

  alias ExESDB.{NewEvent, Streams}

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  @tag timeout: 120_000
  test "lazy streams with read_batch_size above 10,000 read every event", %{store: store} do
    for _ <- 1..3 do
      {:ok, _} =
        Streams.append_events(
          store,
          "s",
          :any,
          for(i <- 1..5_000, do: %NewEvent{event_type: "t", data: i})
        )
    end

    {:ok, fwd} = Streams.stream_forward(store, "s", 1, 20_000)
    assert Enum.count(fwd) == 15_000
    {:ok, all} = Streams.all_forward(store, 1, 20_000)
    assert Enum.count(all) == 15_000
    {:ok, bwd} = Streams.stream_backward(store, "s", :end, 20_000)
    assert Enum.map(bwd, & &1.event_number) == Enum.to_list(15_000..1)
    {:ok, events} = Streams.get_events(store, "s", 1, 20_000)
    assert length(events) == 15_000
  end
end
