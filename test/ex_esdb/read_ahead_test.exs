defmodule ExESDB.ReadAheadTest do
  # Lazy reads read their next page ahead in a process of their own
  # (ExESDB.ReadAhead) while the reader builds the current one's records
  # on its own scheduler: the reader makes no read of the store after the
  # first page, gets every event once and in order, and leaves nothing
  # behind (no process, no message) when it stops early or dies. The two
  # halves (read_page, page_records) give what read_records gives.
  #
  # Not async: it sets call trace patterns, which are global.
  use ExUnit.Case, async: false

  alias ExESDB.{NewEvent, Streams}

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  @meta :binary.copy(<<0x5A>>, 32)
  @format {ExESDB.EventRecord, true, :tuples}

  defp events(n, from),
    do: for(i <- from..(from + n - 1), do: %NewEvent{event_type: "t", data: i, metadata: @meta})

  # 3,000 events of "s" in appends of 300, interleaved with 100 of "o".
  defp setup_events(store) do
    for k <- 0..9 do
      {:ok, _} = Streams.append_events(store, "s", :any, events(300, k * 300 + 1))
      {:ok, _} = Streams.append_events(store, "o", :any, events(100, 100_000 + k * 100))
    end
  end

  defp handle(store) do
    {:ok, s} = ExESDB.Store.fetch(store)
    s.handle
  end

  # Trace messages of calls made so far, every one delivered.
  defp calls(pid) do
    ref = :erlang.trace_delivered(pid)
    assert_receive {:trace_delivered, ^pid, ^ref}, 30_000
    collect([])
  end

  defp collect(acc) do
    receive do
      {:trace, pid, :call, {:ex_esdb_backend, f, _}} -> collect([{pid, f} | acc])
    after
      0 -> Enum.reverse(acc)
    end
  end

  test "a lazy read's pages after the first are read by another process, every event once",
       %{store: store} do
    setup_events(store)
    {:ok, eager} = Streams.get_all_events(store, 1, 10_000)
    me = self()

    for {make, expect} <- [
          {fn -> Streams.all_forward(store, 1, 1000) end, eager},
          {fn -> Streams.all_backward(store, :end, 1000) end, Enum.reverse(eager)},
          {fn -> Streams.stream_forward(store, "s", 1, 1000) end,
           Enum.filter(eager, &(&1.stream_id == "s"))}
        ] do
      reader =
        spawn(fn ->
          receive do
            :go ->
              {:ok, s} = make.()
              send(me, {:read, self(), Enum.to_list(s)})
          end
        end)

      :erlang.trace_pattern({:ex_esdb_backend, :read_records, 6}, true, [:local])
      :erlang.trace_pattern({:ex_esdb_backend, :read_page, 5}, true, [:local])
      :erlang.trace(reader, true, [:call, :set_on_spawn])
      send(reader, :go)
      assert_receive {:read, ^reader, got}, 30_000
      all = calls(:all)
      :erlang.trace_pattern({:ex_esdb_backend, :_, :_}, false, [:local])

      assert got == expect
      # the first page is read by the reader (an error up front), the
      # rest ahead of it by another process
      assert for({^reader, f} <- all, do: f) == [:read_records]
      pages = for {pid, :read_page} <- all, pid != reader, do: pid
      assert length(pages) == div(length(expect) - 512 + 511, 512)
      assert length(Enum.uniq(pages)) == 1
    end

    # small pieces are read by the reader (a page's messages would cost
    # more than its overlap saves)
    reader =
      spawn(fn ->
        receive do
          :go ->
            {:ok, s} = Streams.all_forward(store, 1, 100)
            send(me, {:read, self(), Enum.to_list(s)})
        end
      end)

    :erlang.trace_pattern({:ex_esdb_backend, :read_records, 6}, true, [:local])
    :erlang.trace_pattern({:ex_esdb_backend, :read_page, 5}, true, [:local])
    :erlang.trace(reader, true, [:call, :set_on_spawn])
    send(reader, :go)
    assert_receive {:read, ^reader, got}, 30_000
    all = calls(:all)
    :erlang.trace_pattern({:ex_esdb_backend, :_, :_}, false, [:local])
    assert got == eager
    assert all == for(_ <- 1..40, do: {reader, :read_records})
  end

  test "a lazy read stopped early or whose reader dies leaves no process or message",
       %{store: store} do
    setup_events(store)
    me = self()

    reader =
      spawn(fn ->
        receive do: (:go -> :ok)
        {:ok, s} = Streams.all_forward(store, 1, 1000)
        # into the third page: the read-ahead is reading the fourth
        send(me, {:took, Enum.map(Enum.take(s, 1100), & &1.position)})

        receive do
          :mailbox -> send(me, {:mailbox, Process.info(self(), :messages)})
        end

        receive do: (:never -> :ok)
      end)

    :erlang.trace(reader, true, [:procs])
    send(reader, :go)
    assert_receive {:took, positions}, 30_000
    assert positions == Enum.to_list(1..1100)
    assert_receive {:trace, ^reader, :spawn, ahead, _}, 30_000
    ref = Process.monitor(ahead)
    assert_receive {:DOWN, ^ref, :process, ^ahead, _}, 30_000
    send(reader, :mailbox)
    assert_receive {:mailbox, {:messages, []}}, 30_000

    # a reader that dies mid-stream: its read-ahead ends
    reader =
      spawn(fn ->
        receive do: (:go -> :ok)
        {:ok, s} = Streams.all_forward(store, 1, 1000)

        Enum.each(s, fn r ->
          if r.position == 1000 do
            send(me, :midway)
            receive do: (:never -> :ok)
          end
        end)
      end)

    :erlang.trace(reader, true, [:procs])
    send(reader, :go)
    assert_receive :midway, 30_000
    assert_receive {:trace, ^reader, :spawn, ahead, _}, 30_000
    ref = Process.monitor(ahead)
    Process.exit(reader, :kill)
    assert_receive {:DOWN, ^ref, :process, ^ahead, _}, 30_000
  end

  test "read_page and page_records give read_records' records and errors", %{store: store} do
    setup_events(store)
    h = handle(store)

    for source <- [:all, {:stream, "s"}, {:stream, "o"}, {:type, "t"}],
        dir <- [:forward, :backward],
        from <- [0, 1, 777, 5000],
        count <- [1, 100, 512],
        format <- [@format, {ExESDB.EventRecord, false, :tuples}, {ExESDB.EventRecord, true}] do
      from = if dir == :backward and from == 0, do: 0xFFFFFFFFFFFFFFFF, else: from
      {:ok, records, next} = :ex_esdb_nif.read_records(h, source, from, count, dir, format)
      assert {:ok, page, ^next} = :ex_esdb_nif.read_page(h, source, from, count, dir)
      assert :ex_esdb_nif.page_records(page, format) == {:ok, records}
      # a page may be built again, by another process too
      assert Task.await(Task.async(fn -> :ex_esdb_nif.page_records(page, format) end)) ==
               {:ok, records}
    end

    assert :ex_esdb_nif.read_page(h, {:stream, "nope"}, 1, 10, :forward) ==
             :ex_esdb_nif.read_records(h, {:stream, "nope"}, 1, 10, :forward, @format)

    assert_raise ArgumentError, fn -> :ex_esdb_nif.page_records(make_ref(), @format) end
    {:ok, page, _} = :ex_esdb_nif.read_page(h, :all, 1, 10, :forward)
    assert_raise ArgumentError, fn -> :ex_esdb_nif.page_records(page, :bad) end
    assert_raise ArgumentError, fn -> :ex_esdb_nif.read_page(h, :bad, 1, 10, :forward) end

    # a page outlives its store's close
    {:ok, records, _} = :ex_esdb_nif.read_records(h, :all, 1, 10, :forward, @format)
    ExESDB.Test.NifBackend.stop_store(%{store: store})
    assert :ex_esdb_nif.page_records(page, @format) == {:ok, records}
    assert :ex_esdb_nif.read_page(h, :all, 1, 10, :forward) == {:error, :closed}
  end

  test "a page of more than 256 KiB is built as a small one is", %{store: store} do
    # 512 events of 1 KiB: built on a dirty CPU scheduler
    big = for i <- 1..512, do: %NewEvent{event_type: "t", data: :binary.copy(<<i>>, 1024)}
    {:ok, _} = Streams.append_events(store, "big", :any, big)
    h = handle(store)
    {:ok, records, :eof} = :ex_esdb_nif.read_records(h, :all, 1, 512, :forward, @format)
    {:ok, page, :eof} = :ex_esdb_nif.read_page(h, :all, 1, 512, :forward)
    assert :ex_esdb_nif.page_records(page, @format) == {:ok, records}
    assert length(records) == 512

    {:ok, s} = Streams.all_forward(store, 1, 100)
    assert Enum.map(s, & &1.data) == for(i <- 1..512, do: :binary.copy(<<i>>, 1024))
  end
end
