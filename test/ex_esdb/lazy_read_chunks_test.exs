defmodule ExESDB.LazyReadChunksTest do
  # Lazy streams read the store in pieces smaller than a large
  # read_batch_size (the backend's read_piece/0), so that a read's records stay
  # well under the heap size at which the VM moves the reader's garbage
  # collection to a dirty CPU scheduler. What the caller gets must not
  # change: every event once, in order, across the pieces' boundaries.
  use ExUnit.Case, async: true

  alias ExESDB.{EventRecord, NewEvent, Streams}

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  @data :binary.copy(<<0xA5>>, 100)
  @meta :binary.copy(<<0x5A>>, 32)

  # ERTS's ERTS_POTENTIALLY_LONG_GC_HSIZE (erl_gc.c): a collection of a
  # young heap plus heap fragments plus stack above this many words runs
  # on a dirty CPU scheduler.
  @dirty_gc_words 131_072

  defp events(n, from),
    do: for(i <- from..(from + n - 1), do: %NewEvent{event_type: "t", data: i, metadata: @meta})

  # 2,600 events in appends of 200 to "s" interleaved with appends of 100
  # to "o": positions and versions differ, pieces cut across appends.
  defp setup_events(store) do
    for k <- 0..12 do
      {:ok, _} = Streams.append_events(store, "s", :any, events(200, k * 200 + 1))
      {:ok, _} = Streams.append_events(store, "o", :any, events(100, 100_000 + k * 100))
    end
  end

  test "lazy reads with batches above, at and below a piece give every event once, in order",
       %{store: store} do
    setup_events(store)
    {:ok, all_eager} = Streams.get_all_events(store, 1, 10_000)
    assert length(all_eager) == 3900
    assert Enum.map(all_eager, & &1.position) == Enum.to_list(1..3900)

    for batch <- [1, 7, 511, 512, 513, 1000, 1024, 2600, 5000] do
      {:ok, s} = Streams.stream_forward(store, "s", 1, batch)
      fwd = Enum.to_list(s)
      assert Enum.map(fwd, & &1.data) == Enum.to_list(1..2600), "batch #{batch}"
      assert Enum.map(fwd, & &1.event_number) == Enum.to_list(1..2600)

      {:ok, s} = Streams.stream_backward(store, "s", :end, batch)
      assert Enum.map(Enum.to_list(s), & &1.data) == Enum.to_list(2600..1), "batch #{batch}"

      {:ok, s} = Streams.stream_forward(store, "s", 777, batch)
      assert Enum.map(Enum.to_list(s), & &1.data) == Enum.to_list(777..2600)

      {:ok, s} = Streams.all_forward(store, 1, batch)
      assert Enum.to_list(s) == all_eager, "batch #{batch}"

      {:ok, s} = Streams.all_backward(store, :end, batch)
      assert Enum.to_list(s) == Enum.reverse(all_eager), "batch #{batch}"

      {:ok, s} = Streams.all_forward(store, 1001, batch)
      assert Enum.map(Enum.to_list(s), & &1.position) == Enum.to_list(1001..3900)
    end

    # taking a part stops early and still gives the first events in order
    {:ok, s} = Streams.stream_forward(store, "s", 1, 1000)
    assert Enum.map(Enum.take(s, 700), & &1.data) == Enum.to_list(1..700)

    assert {:error, :stream_not_found} = Streams.stream_forward(store, "nope", 1, 1000)
  end

  # A reader counting a lazy stream read 1,000 at a time (as
  # beam_read_*_forward does): with the store's whole page of 1,000
  # records in its heap at once, each collection was ~144,000 words
  # (docs/PERFORMANCE.md, session 7) and went to a dirty CPU scheduler.
  test "a reader's collections stay under the dirty-scheduler size with batches of 1,000",
       %{store: store} do
    for i <- 1..8 do
      evs = for _ <- 1..1000, do: %NewEvent{event_type: "bench", data: @data, metadata: @meta}
      {:ok, _} = Streams.append_events(store, "r-#{rem(i, 3)}", :any, evs)
    end

    for read <- [
          fn -> Streams.all_forward(store, 1, 1000) end,
          fn -> Streams.stream_forward(store, "r-1", 1, 1000) end
        ] do
      test = self()

      reader =
        spawn_link(fn ->
          receive do
            :go -> :ok
          end

          {:ok, s} = read.()
          n = Enum.reduce(s, 0, fn %EventRecord{}, n -> n + 1 end)
          send(test, {:read, self(), n})
        end)

      :erlang.trace(reader, true, [:garbage_collection])
      send(reader, :go)
      assert_receive {:read, ^reader, n}, 60_000
      assert n in [3000, 8000]
      ref = :erlang.trace_delivered(reader)
      assert_receive {:trace_delivered, ^reader, ^ref}, 60_000
      sizes = collection_sizes(reader, [])
      assert sizes != []
      assert Enum.max(sizes) < @dirty_gc_words, inspect(Enum.sort(sizes, :desc) |> Enum.take(5))
    end
  end

  defp collection_sizes(pid, acc) do
    receive do
      {:trace, ^pid, kind, info} when kind in [:gc_minor_start, :gc_major_start] ->
        words = info[:heap_size] + info[:mbuf_size] + info[:stack_size]
        collection_sizes(pid, [words | acc])

      {:trace, ^pid, _, _} ->
        collection_sizes(pid, acc)
    after
      0 -> acc
    end
  end
end
