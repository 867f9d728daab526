defmodule ExESDB.ReadRecordTuplesTest do
  # Reads through the NIF backend answer a tuple per event and the
  # backend builds the records (EventRecord.from_tuples/1): they must
  # equal the NIF's own record maps field for field, and, built from a
  # literal keys tuple, a send must copy no keys (that is what makes a
  # persistent subscription's catch-up cheaper: docs/PERFORMANCE.md).
  use ExUnit.Case, async: true

  alias ExESDB.{EventRecord, NewEvent, Streams}

  setup context do
    ExESDB.Test.NifBackend.start_store(context)
  end

  defp uuid, do: NewEvent.new(event_type: "x").event_id

  # Three appends (three created times), ids set and absent, payloads of
  # several kinds and sizes, two streams and two types.
  defp append_mixed(store) do
    for {stream, k} <- [{"a", 1}, {"b", 2}, {"a", 3}] do
      events =
        for i <- 1..40 do
          %NewEvent{
            event_id: uuid(),
            event_type: if(rem(i, 3) == 0, do: "t1", else: "t2"),
            data: Enum.at([%{n: i, k: k}, :binary.copy(<<i>>, 100), nil, "", {:t, i}], rem(i, 5)),
            metadata: if(rem(i, 2) == 0, do: %{i: i}, else: :binary.copy(<<k>>, 70)),
            causation_id: if(rem(i, 4) == 0, do: uuid()),
            correlation_id: if(rem(i, 7) == 0, do: uuid())
          }
        end

      {:ok, _} = Streams.append_events(store, stream, :any, events)
    end
  end

  defp nif_maps(s, source, from, direction, decode) do
    {module, decode} = ExESDB.EventCodec.format(s, decode)
    :ex_esdb_backend.read_records(s.handle, source, from, 1000, direction, {module, decode})
  end

  test "records built from the NIF's tuples equal its record maps", %{store: store} do
    append_mixed(store)
    {:ok, s} = ExESDB.Store.fetch(store)

    for source <- [:all, {:stream, "a"}, {:stream, "b"}, {:type, "t1"}],
        {from, direction} <- [{0, :forward}, {17, :forward}, {0xFFFFFFFFFFFFFFFF, :backward}],
        decode <- [true, false],
        # (a type is read forward only)
        not (match?({:type, _}, source) and direction == :backward) do
      {:ok, maps, next} = nif_maps(s, source, from, direction, decode)
      assert maps != []
      assert {:ok, ^maps, ^next} = s.backend.read(s, source, from, 1000, direction, decode: decode)
    end

    # the events of one append share one DateTime, as the NIF's do
    {:ok, [r1, r2 | _], _} = s.backend.read(s, {:stream, "b"}, 1, 10, :forward)
    assert :erts_debug.same(r1.created_at, r2.created_at)
    assert %EventRecord{} = r1
    assert DateTime.to_unix(r1.created_at, :microsecond) == r1.created_epoch
  end

  test "bad formats are refused", %{store: store} do
    {:ok, s} = ExESDB.Store.fetch(store)

    for format <- [{EventRecord, true, :maps}, {EventRecord, true, :tuples, 1}, {1, true, :tuples}] do
      assert_raise ArgumentError, fn ->
        :ex_esdb_backend.read_records(s.handle, :all, 0, 10, :forward, format)
      end
    end
  end

  # Words a message holding `term` takes in an off-heap receiver's queue
  # (the VM allocates exactly what the copy needs).
  defp message_words(term) do
    pid = :erlang.spawn_opt(fn -> receive do: (:stop -> :ok) end, message_queue_data: :off_heap)
    {:memory, before} = :erlang.process_info(pid, :memory)
    send(pid, {:m, term})
    {:memory, after_send} = :erlang.process_info(pid, :memory)
    send(pid, :stop)
    div(after_send - before, :erlang.system_info(:wordsize))
  end

  test "a record read shares its keys: a send copies neither its keys nor its DateTime's",
       %{store: store} do
    append_mixed(store)
    {:ok, s} = ExESDB.Store.fetch(store)
    {:ok, maps, _} = nif_maps(s, :all, 0, :forward, true)
    {:ok, records, _} = s.backend.read(s, :all, 0, 1000, :forward)
    n = length(records)
    assert n == 120

    # 13 keys + the tuple's header, for the record and for its DateTime
    keys_words = 2 * 14
    assert message_words(records) <= message_words(maps) - n * keys_words
  end
end
