defmodule ExESDB.LimitsTest do
  # A store's limits through the Elixir API: the store's own (raised or
  # lowered at start), named when exceeded, kept by the store.
  use ExUnit.Case, async: true

  alias ExESDB.{NewEvent, Snapshots, Streams, Test.NifBackend}

  defp ev(n), do: %NewEvent{event_type: "t", data: n}

  @tag store_opts: [limits: [max_stream_id: 4096, max_append_events: 20_000]]
  test "limits raised at start are the store's", context do
    %{store: s} = NifBackend.start_store(context)
    long = String.duplicate("s", 2000)
    assert {:ok, 1} = Streams.append_events(s, long, :any, [ev(1)])
    assert {:ok, 15_000} = Streams.append_events(s, "many", :any, Enum.map(1..15_000, &ev/1))
  end

  @tag store_opts: [limits: [max_stream_id: 8, max_append_events: 2, max_key: 4]]
  test "an exceeded limit is named with its value", context do
    %{store: s} = NifBackend.start_store(context)

    assert {:error, {:limit_exceeded, :max_stream_id, 8}} =
             Streams.append_events(s, "longer-than-8", :any, [ev(1)])

    assert {:error, {:limit_exceeded, :max_append_events, 2}} =
             Streams.append_events(s, "s", :any, [ev(1), ev(2), ev(3)])

    assert {:error, {:limit_exceeded, :max_key, 4}} =
             Snapshots.record_snapshot(s, %ExESDB.Schema.SnapshotRecord{
               source_uuid: "longer",
               source_version: 1,
               source_type: "t",
               data: 1
             })
  end

  # Item 13: the count is checked before any event is encoded, so a list
  # far over the limit is refused without serializing it.
  @tag store_opts: [limits: [max_append_events: 2]]
  test "the event count is checked before the events are encoded", context do
    %{store: s} = NifBackend.start_store(context)

    assert {:error, {:limit_exceeded, :max_append_events, 2}} =
             Streams.append_events(s, "s", :any, [ev(1), ev(2), :not_an_event])
  end
end
