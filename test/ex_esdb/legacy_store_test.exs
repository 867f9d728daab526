defmodule ExESDB.LegacyStoreTest do
  # A store written before payloads recorded their encodings: the Elixir
  # API wrote term_to_binary bytes the store kept as plain bytes. Read
  # through the Elixir API they are the terms they were written as (with
  # the same checks as terms recorded as such); through the Erlang API the
  # same bytes; and new writes into the upgraded store keep their exact
  # encodings.
  #
  # The fixture is generated, not shipped: a store written through today's
  # APIs is dumped (mdb_dump), every record rewritten the way the code
  # before the encoding flags wrote it (record version 1, no term bits,
  # CRC-32C resealed: the layouts differ in nothing else, docs/FORMAT.md)
  # and loaded back (mdb_load).
  use ExUnit.Case, async: true
  import Bitwise
  import ExESDB.Test.Crc32c
  import ExESDB.Test.SubscriptionHelpers, only: [receive_events: 0]

  alias ExESDB.{NewEvent, Snapshots, Streams, Subscriptions}
  alias ExESDB.Schema.SnapshotRecord

  @events [
    {%{amount: 5, tags: [:opened, "x"], at: {2026, 12, 1}}, %{user: "u1"}},
    {[1, 2.5, -70_000, 1 <<< 100, <<1::3>>], nil},
    {:binary.copy("big", 30_000), %{nested: %{deep: [a: {1, 2}]}}}
  ]
  @snapshot {%{balance: 10, history: Enum.to_list(1..50)}, %{schema: 2}}

  setup context do
    ExESDB.Test.NifBackend.start_store(context)
  end

  defp handle(store) do
    {:ok, s} = ExESDB.Store.fetch(store)
    s.handle
  end

  defp any, do: :any

  # What the code before the encoding flags left on disk.
  defp write_legacy(%{store: store, data_dir: dir}) do
    events = for {d, m} <- @events, do: %NewEvent{event_type: "opened", data: d, metadata: m}
    assert {:ok, 3} = Streams.append_events(store, "acct", :no_stream, events)
    {data, meta} = @snapshot

    snap = %SnapshotRecord{source_uuid: "acct", source_version: 3, source_type: "Acct"}
    assert :ok = Snapshots.record_snapshot(store, %{snap | data: data, metadata: meta})
    assert {:ok, sub} = Subscriptions.subscribe_to(store, "legacy-sub", {:by_stream, "acct"})
    assert [_ | _] = receive_events()
    assert :ok = Subscriptions.unsubscribe(store, sub)

    # The Erlang API's bytes, and what the old Elixir API wrote for a fun:
    # term_to_binary of it, stored as plain bytes like everything then.
    h = handle(store)
    evil = :erlang.term_to_binary(fn -> :ran end)
    ev = fn data -> %{event_type: "t", data: data, metadata: <<>>} end
    assert {:ok, _} = :ex_esdb.append(h, "raw", any(), [ev.("plain bytes")])
    assert {:ok, _} = :ex_esdb.append(h, "etf", any(), [ev.(etf())])
    assert {:ok, _} = :ex_esdb.append(h, "evil", any(), [ev.(evil)])
    assert :ok = :ex_esdb.put_snapshot(h, "raw", 1, "T", "plain bytes", <<>>)
    assert :ok = :ex_esdb.put_snapshot(h, "etf", 1, "T", etf(), <<>>)
    assert :ok = :ex_esdb.put_snapshot(h, "evil", 1, "T", evil, <<>>)

    :ok = stop_supervised(ExESDB.System.system_name(store))
    downgrade(Path.join(dir, Atom.to_string(store)))

    {:ok, _} =
      start_supervised({ExESDB.System, [store_id: store, data_dir: dir, durability: :nosync]})

    %{evil: evil}
  end

  defp etf, do: :erlang.term_to_binary(%{looks: :like_a_term})

  describe "a store written before encodings were recorded" do
    setup context do
      write_legacy(context)
    end

    test "events read back through the Elixir API as the terms written", %{store: store} do
      assert {:ok, records} = Streams.get_events(store, "acct", 1, 10)
      assert for(r <- records, do: {r.data, r.metadata}) == @events

      assert {:ok, stream} = Streams.stream_forward(store, "acct", 1, 2)
      assert for(r <- stream, do: {r.data, r.metadata}) == @events
      assert {:ok, [%{data: %{looks: :like_a_term}}]} = Streams.get_events(store, "etf", 1, 1)
    end

    test "a snapshot reads back as the terms written", %{store: store} do
      {data, meta} = @snapshot

      assert {:ok, %SnapshotRecord{data: ^data, metadata: ^meta, source_version: 3}} =
               Snapshots.read_snapshot(store, "acct")

      assert {:ok, %{data: %{looks: :like_a_term}, metadata: nil}} =
               Snapshots.read_snapshot(store, "etf")
    end

    test "bytes that are no term read as bytes, empty ones as nil", %{store: store} do
      assert {:ok, [%{data: "plain bytes", metadata: nil}]} = Streams.get_events(store, "raw", 1, 1)

      assert {:ok, %{data: "plain bytes", metadata: nil}} = Snapshots.read_snapshot(store, "raw")
    end

    test "a payload holding a fun is refused, event and snapshot", %{store: store} do
      assert Streams.get_events(store, "evil", 1, 1) == {:error, {:undecodable, :fun}}
      assert Snapshots.read_snapshot(store, "evil") == {:error, {:undecodable, :fun}}
    end

    test "the Erlang API reads the same bytes", %{store: store, evil: evil} do
      h = handle(store)
      assert {:ok, events} = :ex_esdb.read_stream(h, "acct", 1, 10, :forward)

      assert for(e <- events, do: {e.data, e.metadata}) ==
               for({d, m} <- @events, do: {:erlang.term_to_binary(d), :erlang.term_to_binary(m)})

      {data, meta} = @snapshot
      assert {:ok, snap} = :ex_esdb.get_snapshot(h, "acct")

      assert {snap.data, snap.metadata} ==
               {:erlang.term_to_binary(data), :erlang.term_to_binary(meta)}

      assert {:ok, %{data: ^evil}} = :ex_esdb.get_snapshot(h, "evil")
      assert {:ok, [%{data: ^evil}]} = :ex_esdb.read_stream(h, "evil", 1, 1, :forward)
    end

    test "a persistent subscription resumes and delivers the terms", %{store: store} do
      assert {:ok, [%{name: "legacy-sub", selector: {:by_stream, "acct"}}]} =
               Subscriptions.get_subscriptions(store)

      assert {:ok, _} =
               Subscriptions.subscribe_to(store, "legacy-sub", {:by_stream, "acct"}, self(),
                 start_from: :origin
               )

      assert [_ | _] = records = receive_events()
      assert for(r <- records, do: {r.data, r.metadata}) == Enum.take(@events, length(records))
    end

    test "new writes keep their exact encodings beside the legacy records", %{store: store} do
      h = handle(store)
      # the same bytes as the legacy "etf" event, now recorded as bytes
      assert {:ok, _} =
               :ex_esdb.append(h, "etf", any(), [%{event_type: "t", data: etf(), metadata: <<>>}])

      assert {:ok, [old, new]} = Streams.get_events(store, "etf", 1, 2)
      assert {old.data, new.data} == {%{looks: :like_a_term}, etf()}

      assert {:ok, 4} =
               Streams.append_events(store, "acct", 3, [
                 %NewEvent{event_type: "t", data: %{new: true}, metadata: %{}}
               ])

      assert {:ok, records} = Streams.get_events(store, "acct", 1, 10)

      assert for(r <- records, do: {r.data, r.metadata}) ==
               @events ++ [{%{new: true}, %{}}]

      assert :ok = :ex_esdb.put_snapshot(h, "etf", 2, "T", etf(), <<>>)
      assert {:ok, %{data: bytes}} = Snapshots.read_snapshot(store, "etf")
      assert bytes == etf()
      {data, _} = @snapshot
      assert {:ok, %{data: ^data}} = Snapshots.read_snapshot(store, "acct")
    end
  end

  # ---- the fixture generator -------------------------------------------

  # Every record of a closed store as the code before the encoding flags
  # wrote it.
  defp downgrade(path) do
    {dump, 0} = System.cmd("mdb_dump", ["-a", path])
    {lines, _db} = Enum.map_reduce(String.split(dump, "\n"), nil, &downgrade_line/2)
    dump_file = path <> ".dump"
    File.write!(dump_file, Enum.join(lines, "\n"))
    loaded = path <> ".loaded"
    File.rm_rf!(loaded)
    File.mkdir_p!(loaded)
    {_, 0} = System.cmd("mdb_load", ["-f", dump_file, loaded], stderr_to_stdout: true)
    File.rename!(Path.join(loaded, "data.mdb"), Path.join(path, "data.mdb"))
    File.rm!(Path.join(path, "lock.mdb"))
    File.rm_rf!(loaded)
    File.rm!(dump_file)
  end

  # Lines of mdb_dump's bytevalue format: a header naming the database,
  # then key and value lines (a space and hex) alternating.
  @record_dbs ~w(events streams types snapshots subscriptions meta)
  defp downgrade_line("database=" <> db = line, _), do: {line, {db, :key}}

  defp downgrade_line(" " <> hex = line, {db, :key}),
    do: {line, {db, {:value, Base.decode16!(hex, case: :lower)}}}

  defp downgrade_line(" " <> hex, {db, {:value, key}}) when db in @record_dbs do
    value = Base.decode16!(hex, case: :lower)
    # meta holds one record, "limits"; "format" is no record
    value = if db == "meta" and key != "limits", do: value, else: to_version_1(value)
    {" " <> Base.encode16(value, case: :lower), {db, :key}}
  end

  defp downgrade_line(" " <> _ = line, {db, {:value, _}}), do: {line, {db, :key}}
  defp downgrade_line(line, db), do: {line, db}

  # Version 1, the payloads' term bits (events 0xC, snapshots 0x3) clear.
  defp to_version_1(<<_version, kind, flags::little-16, _crc::32, body::binary>>) do
    bits = %{1 => 0xC, 4 => 0x3}[kind] || 0
    head = <<1, kind, flags &&& bnot(bits)::little-16>>
    head <> <<crc32c(head <> body)::little-32>> <> body
  end
end
