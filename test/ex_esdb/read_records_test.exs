defmodule ExESDB.ReadRecordsTest do
  # Records as reads build them: data and metadata of every size come back
  # as written (the NIF hands binaries over 64 bytes out as slices of
  # shared chunks), a slice keeps at most one chunk alive, and
  # `decode: false` gives the stored bytes.
  use ExUnit.Case, async: true

  alias ExESDB.{NewEvent, Streams}

  # c_src/nif/records.c: CHUNK_BYTES and BIG_PAYLOAD
  @chunk 16 * 1024
  @big div(@chunk, 4)

  @sizes [0, 1, 63, 64, 65, 100, 1000, @big - 1, @big, @big + 1, @chunk, 3 * @chunk]

  setup context do
    ExESDB.Test.NifBackend.start_store(context)
  end

  defp bin(n, seed), do: :binary.copy(<<rem(seed, 251)>>, n)

  # Payloads of every size boundary, binaries and other terms mixed, in
  # an order that makes chunks fill up at different events.
  defp payloads do
    for i <- 1..600 do
      size = Enum.at(@sizes, rem(i * 7, length(@sizes)))

      data =
        case rem(i, 5) do
          0 -> %{n: i, bin: bin(size, i)}
          1 -> nil
          _ -> bin(size, i)
        end

      {data, bin(Enum.at(@sizes, rem(i * 3, length(@sizes))), i + 1)}
    end
  end

  defp append(store, stream, pairs) do
    events = for {d, m} <- pairs, do: %NewEvent{event_type: "t", data: d, metadata: m}
    {:ok, _} = Streams.append_events(store, stream, :any, events)
  end

  defp data_and_meta(records), do: for(r <- records, do: {r.data, r.metadata})

  test "data and metadata of every size read back as written, in pages of any size", %{
    store: store
  } do
    pairs = payloads()
    append(store, "s", pairs)

    # empty binaries were written as terms: they read back as written
    {:ok, all} = Streams.get_events(store, "s", 1, 10_000)
    assert data_and_meta(all) == pairs

    for batch <- [1, 7, 256, 1000] do
      {:ok, stream} = Streams.stream_forward(store, "s", 1, batch)
      assert data_and_meta(Enum.to_list(stream)) == pairs
    end

    {:ok, all} = Streams.get_all_events(store, 1, 10_000)
    assert data_and_meta(all) == pairs
  end

  test "a binary kept alone keeps at most one chunk alive", %{store: store} do
    pairs = for i <- 1..1000, do: {bin(100, i), bin(32, i)}
    append(store, "small", pairs)
    append(store, "big", [{bin(@big + 1, 1), nil}])

    {:ok, records} = Streams.get_events(store, "small", 1, 1000)

    for r <- records do
      assert :binary.referenced_byte_size(r.data) <= @chunk
      assert :binary.referenced_byte_size(r.metadata) == 32
    end

    {:ok, [big]} = Streams.get_events(store, "big", 1, 1)
    assert :binary.referenced_byte_size(big.data) == @big + 1
  end

  describe "decode: false" do
    test "gives the serializer's bytes, read the same way on every read", %{store: store} do
      pairs = payloads()
      append(store, "s", pairs)

      stored =
        for {d, m} <- pairs do
          {:erlang.term_to_binary(d), :erlang.term_to_binary(m)}
        end

      {:ok, raw} = Streams.get_events(store, "s", 1, 10_000, :forward, decode: false)
      assert data_and_meta(raw) == stored

      {:ok, stream} = Streams.stream_forward(store, "s", 1, 100, decode: false)
      assert data_and_meta(Enum.to_list(stream)) == stored

      {:ok, stream} = Streams.stream_backward(store, "s", :end, 100, decode: false)
      assert data_and_meta(Enum.to_list(stream)) == Enum.reverse(stored)

      {:ok, all} = Streams.get_all_events(store, 1, 10_000, :forward, decode: false)
      assert data_and_meta(all) == stored

      {:ok, stream} = Streams.all_forward(store, 1, 100, decode: false)
      assert data_and_meta(Enum.to_list(stream)) == stored

      {:ok, typed} = Streams.get_events_by_type(store, "t", 1, 10_000, decode: false)
      assert data_and_meta(typed) == stored

      {:ok, page, _next} = Streams.read_page(store, "s", 1, 3, :forward, decode: false)
      assert data_and_meta(page) == Enum.take(stored, 3)

      # the serializer decodes them (with the store's checks) to the terms
      decoded =
        for {d, m} <- data_and_meta(raw) do
          {ExESDB.Serializer.Term.deserialize(d, []), ExESDB.Serializer.Term.deserialize(m, [])}
        end

      assert decoded == pairs
      {:ok, default} = Streams.get_events(store, "s", 1, 10_000, :forward, decode: true)
      assert data_and_meta(default) == pairs
    end

    @tag store_opts: [serializer: ExESDB.Test.PrefixSerializer]
    test "skips another serializer's deserialize", %{store: store} do
      events = for i <- 1..3, do: %NewEvent{event_type: "t", data: "d#{i}", metadata: "m#{i}"}
      {:ok, 3} = Streams.append_events(store, "p", :any, events)
      {:ok, decoded} = Streams.get_events(store, "p", 1, 3)
      assert data_and_meta(decoded) == for(i <- 1..3, do: {{"d#{i}", "t"}, {"m#{i}", "t"}})
      {:ok, raw} = Streams.get_events(store, "p", 1, 3, :forward, decode: false)
      assert data_and_meta(raw) == for(i <- 1..3, do: {serialize("d#{i}"), serialize("m#{i}")})
    end

    test "unknown options and values are refused", %{store: store} do
      append(store, "s", [{1, 2}])

      assert Streams.get_events(store, "s", 1, 1, :forward, decode: 1) ==
               {:error, {:invalid_option, {:decode, 1}}}

      assert Streams.stream_forward(store, "s", 1, 10, lazy: true) ==
               {:error, {:invalid_option, {:lazy, true}}}

      assert Streams.read_page(store, "s", 1, 1, :forward, :raw) ==
               {:error, {:invalid_options, :raw}}
    end
  end

  defp serialize(term), do: ExESDB.Test.PrefixSerializer.serialize(term)
end
