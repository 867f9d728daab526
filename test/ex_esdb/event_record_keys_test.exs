defmodule ExESDB.EventRecordKeysTest do
  # The NIF builds %ExESDB.EventRecord{} maps itself (reads, transient
  # deliveries, persistent ones): their keys must be the struct's fields,
  # no more, no fewer, whatever the serializer.
  use ExUnit.Case, async: true

  alias ExESDB.{EventRecord, NewEvent, Streams, Subscriptions}

  @fields %EventRecord{} |> Map.keys() |> Enum.sort()

  for {name, serializer} <- [default: nil, raw: ExESDB.Test.RawSerializer] do
    test "records of reads and deliveries have exactly the struct's fields (#{name} serializer)" do
      opts = if unquote(serializer), do: [serializer: unquote(serializer)], else: []
      %{store: s} = ExESDB.Test.NifBackend.start_store(%{store_opts: opts})
      {:ok, store} = ExESDB.Store.fetch(s)
      {data, meta} = if unquote(serializer), do: {"bytes", "meta"}, else: {%{n: 1}, %{}}

      # what the backend hands back before Elixir touches it
      {:ok, member, _} = store.backend.subscribe(store, self(), :all, [])
      {:ok, _, _} = store.backend.subscribe(store, self(), {:stream, "a"}, shape: :ranged)

      {:ok, 1} =
        Streams.append_events(s, "a", :any, [%NewEvent{event_type: "t", data: data, metadata: meta}])

      assert_receive {:events, [plain]}, 5_000
      assert_receive {:events, [ranged], _since}, 5_000
      {:ok, [read], :eof} = store.backend.read(store, {:stream, "a"}, 1, 10, :forward)

      for record <- [plain, ranged, read] do
        assert %EventRecord{} = record
        assert record |> Map.keys() |> Enum.sort() == @fields
      end

      :ok = store.backend.unsubscribe(store, member)
      # and what the API hands out
      {:ok, [event]} = Streams.get_events(s, "a", 1, 1)
      assert event |> Map.keys() |> Enum.sort() == @fields
      {:ok, _} = Subscriptions.subscribe_to(s, "keys", {:by_stream, "$all"})
      assert_receive {:events, [delivered]}, 5_000
      assert delivered |> Map.keys() |> Enum.sort() == @fields
    end
  end
end
